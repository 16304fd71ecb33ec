//! Typed protocol errors. Each maps to the close code the RFC asks for.

use super::close::CloseCode;

/// A violation found in what the peer sent (after the handshake), or a
/// misuse of the API. [`Error::close_code`] gives the code to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// RFC 6455 §5.2: an RSV bit is set but no extension was negotiated.
    ReservedBits,
    /// RFC 6455 §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    ReservedOpcode(u8),
    /// RFC 6455 §5.5: control frames MUST NOT be fragmented.
    FragmentedControl,
    /// RFC 6455 §5.5: control frame payloads are at most 125 bytes.
    ControlTooLong,
    /// RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
    LengthOverflow,
    /// RFC 6455 §5.2: the minimal number of bytes MUST be used for the length.
    NonMinimalLength,
    /// RFC 6455 §5.1: a server MUST close on an unmasked client frame.
    UnmaskedFrame,
    /// RFC 6455 §5.1: a client MUST close on a masked server frame.
    MaskedFrame,
    /// RFC 6455 §5.4: a continuation frame without a message in progress.
    UnexpectedContinuation,
    /// RFC 6455 §5.4: a new data frame while a fragmented message is open.
    ExpectedContinuation,
    /// A frame longer than the configured maximum (close 1009).
    FrameTooBig,
    /// A message longer than the configured maximum (close 1009).
    MessageTooBig,
    /// RFC 6455 §8.1: text that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// RFC 6455 §5.5.1: a close payload of 1 byte or with an invalid code.
    InvalidClosePayload,
    /// RFC 6455 §5.5.1: a close reason that is not UTF-8 (close 1007).
    InvalidCloseReason,
    /// Data arrived after the peer's close frame (it is ignored; reported so
    /// the caller may count it).
    DataAfterClose,
    /// API misuse: sending after a close frame was sent (§5.5.1).
    AlreadyClosed,
    /// API misuse: a control payload longer than 125 bytes.
    ControlPayloadTooLong,
    /// API misuse: a close code that may not be sent (§7.4.1), e.g. 1005.
    InvalidCloseCode,
    /// API misuse: a data frame while an outgoing fragmented message is open,
    /// or a continuation without one.
    BadFragmentSequence,
    /// A client frame could not be masked: the OS random generator failed,
    /// and RFC 6455 §5.3 asks for an unpredictable key per frame.
    MaskKeyUnavailable,
    /// RFC 7692 §6: RSV1 ("Per-Message Compressed") on a control frame or a
    /// continuation frame, where permessage-deflate was negotiated (without
    /// it, RSV1 anywhere is [`Error::ReservedBits`]).
    MisplacedRsv1,
    /// RFC 7692 §6.2: a compressed message that is not a valid DEFLATE
    /// stream (close 1007; see `proto::deflate::InflateError::Corrupt`).
    InvalidCompressedData,
    /// The compressor failed (a bug or a failed allocation, not the peer's
    /// doing): close 1011.
    CompressionFailed,
}

impl Error {
    /// The close code RFC 6455 §7.4.1 assigns to this failure.
    pub fn close_code(self) -> CloseCode {
        match self {
            Error::InvalidUtf8 | Error::InvalidCloseReason | Error::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Error::FrameTooBig | Error::MessageTooBig => CloseCode::TOO_BIG,
            Error::AlreadyClosed
            | Error::ControlPayloadTooLong
            | Error::InvalidCloseCode
            | Error::BadFragmentSequence
            | Error::MaskKeyUnavailable
            | Error::CompressionFailed => CloseCode::INTERNAL,
            _ => CloseCode::PROTOCOL,
        }
    }

    /// A short reason for the close frame and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Error::ReservedBits => "reserved bits set",
            Error::ReservedOpcode(_) => "reserved opcode",
            Error::FragmentedControl => "fragmented control frame",
            Error::ControlTooLong => "control frame over 125 bytes",
            Error::LengthOverflow => "frame length overflow",
            Error::NonMinimalLength => "non-minimal length encoding",
            Error::UnmaskedFrame => "unmasked client frame",
            Error::MaskedFrame => "masked server frame",
            Error::UnexpectedContinuation => "continuation without a message",
            Error::ExpectedContinuation => "expected a continuation frame",
            Error::FrameTooBig => "frame too big",
            Error::MessageTooBig => "message too big",
            Error::InvalidUtf8 => "invalid UTF-8 in text",
            Error::InvalidClosePayload => "invalid close payload",
            Error::InvalidCloseReason => "invalid UTF-8 in close reason",
            Error::DataAfterClose => "data after close",
            Error::AlreadyClosed => "already closed",
            Error::ControlPayloadTooLong => "control payload over 125 bytes",
            Error::InvalidCloseCode => "close code not allowed on the wire",
            Error::BadFragmentSequence => "bad outgoing fragment sequence",
            Error::MaskKeyUnavailable => "no masking key: the OS random generator failed",
            Error::MisplacedRsv1 => "RSV1 on a control or continuation frame",
            Error::InvalidCompressedData => "invalid compressed data",
            Error::CompressionFailed => "compressor failed",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for Error {}
