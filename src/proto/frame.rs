//! The frame header (RFC 6455 §5.2): opcodes, decoding with validation
//! before any payload byte is looked at, and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               | Masking-key, if MASK set to 1 |
//! +-------------------------------+-------------------------------+
//! ```

use super::error::Error;

/// Longest possible frame header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// RFC 6455 §5.5: control frame payloads are at most 125 bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1 in [`FrameHeader::rsv`] (and in `rsv_allowed`): permessage-deflate's
/// "Per-Message Compressed" bit (RFC 7692 §6). RSV2 is 0x2, RSV3 0x1.
pub const RSV1: u8 = 0x4;

/// Frame opcodes (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: first frame of a text message.
    Text = 0x1,
    /// 0x2: first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Decode the 4-bit opcode; reserved values are an error (§5.2).
    #[inline]
    pub fn from_bits(bits: u8) -> Result<OpCode, Error> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(Error::ReservedOpcode(other)),
        })
    }

    /// RFC 6455 §5.5: opcodes with the high bit set are control frames.
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection we are; decides masking (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Sends masked frames with a fresh key each, receives unmasked ones.
    Client,
}

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: last frame of a message.
    pub fin: bool,
    /// The three RSV bits, as the top nibble's low 3 bits (RSV1 = 0x4).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Bytes on the wire of an unmasked (server) frame carrying `payload_len`
/// bytes: RFC 6455 §5.2, a 2-byte header, plus 2 bytes of length from 126
/// bytes on and 8 from 65,536 on.
pub fn unmasked_frame_len(payload_len: usize) -> usize {
    let ext = match payload_len {
        0..=125 => 0,
        126..=65_535 => 2,
        _ => 8,
    };
    2 + ext + payload_len
}

/// How many header bytes a frame needs, known from its first two bytes.
#[inline]
pub fn header_len(second_byte: u8) -> usize {
    let ext = match second_byte & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Check the first two bytes, before anything else about the frame is read
/// (no allocation can happen on behalf of a frame that fails here).
///
/// `role` is the receiver's role; `rsv_allowed` are the RSV bits a
/// negotiated extension has given meaning to: [`RSV1`] once
/// permessage-deflate is agreed, else none.
#[inline]
pub fn check_first_bytes(b0: u8, b1: u8, role: Role, rsv_allowed: u8) -> Result<OpCode, Error> {
    // RFC 6455 §5.2: RSV1-3 MUST be 0 unless an extension defines them.
    if (b0 >> 4) & 0x7 & !rsv_allowed != 0 {
        return Err(Error::ReservedBits);
    }
    // RFC 6455 §5.2: reserved opcodes MUST fail the connection.
    let opcode = OpCode::from_bits(b0 & 0x0F)?;
    // RFC 7692 §6: RSV1 only on the first frame of a data message; a
    // receiver of it on a control or continuation frame MUST fail.
    if b0 & (RSV1 << 4) != 0 && (opcode.is_control() || opcode == OpCode::Continuation) {
        return Err(Error::MisplacedRsv1);
    }
    if opcode.is_control() {
        // RFC 6455 §5.5: control frames MUST NOT be fragmented ...
        if b0 & 0x80 == 0 {
            return Err(Error::FragmentedControl);
        }
        // ... and MUST have a payload length of 125 bytes or less.
        if (b1 & 0x7F) as usize > MAX_CONTROL_PAYLOAD {
            return Err(Error::ControlTooLong);
        }
    }
    // RFC 6455 §5.1: a server MUST close on an unmasked frame; a client MUST
    // close on a masked frame.
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(Error::UnmaskedFrame),
        (Role::Client, true) => return Err(Error::MaskedFrame),
        _ => {}
    }
    Ok(opcode)
}

/// Decode a complete header from `buf` (which holds at least
/// `header_len(buf[1])` bytes), validating it.
#[inline]
pub fn decode_header(buf: &[u8], role: Role, rsv_allowed: u8) -> Result<FrameHeader, Error> {
    let (b0, b1) = (buf[0], buf[1]);
    let opcode = check_first_bytes(b0, b1, role, rsv_allowed)?;
    let mut pos = 2;
    let payload_len = match b1 & 0x7F {
        126 => {
            let n = u16::from_be_bytes([buf[2], buf[3]]) as u64;
            pos += 2;
            // RFC 6455 §5.2: the minimal number of bytes MUST be used.
            if n < 126 {
                return Err(Error::NonMinimalLength);
            }
            n
        }
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(be);
            pos += 8;
            // RFC 6455 §5.2: the most significant bit MUST be 0.
            if n >> 63 != 0 {
                return Err(Error::LengthOverflow);
            }
            if n <= u16::MAX as u64 {
                return Err(Error::NonMinimalLength);
            }
            n
        }
        n => n as u64,
    };
    let mask = if b1 & 0x80 != 0 {
        Some([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]])
    } else {
        None
    };
    Ok(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode,
        mask,
        payload_len,
    })
}

/// Encode a header into `out`; returns its length. RSV bits clear: see
/// [`encode_header_rsv`] for a compressed message's first frame.
#[inline]
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    encode_header_rsv(out, fin, 0, opcode, mask, payload_len)
}

/// [`encode_header`] with the RSV bits `rsv` (as in [`FrameHeader::rsv`]):
/// [`RSV1`] marks the first frame of a compressed message (RFC 7692 §6).
///
/// ```
/// use wsmio::proto::frame::{encode_header_rsv, OpCode, MAX_HEADER_LEN, RSV1};
///
/// let mut h = [0u8; MAX_HEADER_LEN];
/// let n = encode_header_rsv(&mut h, true, RSV1, OpCode::Text, None, 7);
/// assert_eq!(&h[..n], [0xC1, 0x07]); // FIN + RSV1 + text, 7 bytes
/// ```
#[inline]
pub fn encode_header_rsv(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    out[0] = (if fin { 0x80 } else { 0 }) | (rsv & 0x7) << 4 | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = 2;
    if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
    } else if payload_len <= u16::MAX as u64 {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        pos = 4;
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        pos = 10;
    }
    if let Some(key) = mask {
        out[pos..pos + 4].copy_from_slice(&key);
        pos += 4;
    }
    pos
}

/// An encoded header on the stack, ready to be written before its payload.
#[derive(Debug, Clone, Copy)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
    /// The key the payload must be masked with (client role only).
    pub mask: Option<[u8; 4]>,
}

impl EncodedHeader {
    /// Encode a header.
    #[inline]
    pub fn new(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> Self {
        EncodedHeader::with_rsv(fin, 0, opcode, mask, payload_len)
    }

    /// Encode a header with RSV bits (see [`encode_header_rsv`]).
    ///
    /// ```
    /// use wsmio::proto::frame::{EncodedHeader, OpCode, RSV1};
    ///
    /// // The first frame of a compressed binary message, more to follow.
    /// let h = EncodedHeader::with_rsv(false, RSV1, OpCode::Binary, None, 300);
    /// assert_eq!(h.as_bytes(), [0x42, 126, 0x01, 0x2c]);
    /// ```
    #[inline]
    pub fn with_rsv(
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload_len: u64,
    ) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = encode_header_rsv(&mut bytes, fin, rsv, opcode, mask, payload_len) as u8;
        EncodedHeader { bytes, len, mask }
    }

    /// The header bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.7 examples.
    #[test]
    fn rfc_examples() {
        // A single-frame unmasked text message "Hello".
        let h = decode_header(&[0x81, 0x05], Role::Client, 0).unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len), (true, OpCode::Text, 5));
        // A single-frame masked text message "Hello".
        let f = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = decode_header(&f, Role::Server, 0).unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut p = f[6..].to_vec();
        super::super::mask::apply_mask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(p, b"Hello");
        // Fragmented unmasked text "Hel" + "lo".
        let h = decode_header(&[0x01, 0x03], Role::Client, 0).unwrap();
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let h = decode_header(&[0x80, 0x02], Role::Client, 0).unwrap();
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // Unmasked ping "Hello", masked pong "Hello".
        let h = decode_header(&[0x89, 0x05], Role::Client, 0).unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
        let h = decode_header(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d], Role::Server, 0).unwrap();
        assert_eq!(h.opcode, OpCode::Pong);
        // 256 bytes binary in one unmasked frame; 64 KiB likewise.
        let h = decode_header(&[0x82, 0x7E, 0x01, 0x00], Role::Client, 0).unwrap();
        assert_eq!(h.payload_len, 256);
        let b = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        assert_eq!(
            decode_header(&b, Role::Client, 0).unwrap().payload_len,
            65536
        );
        // And encoding gives the same bytes back.
        let e = EncodedHeader::new(true, OpCode::Binary, None, 65536);
        assert_eq!(e.as_bytes(), &b);
        let e = EncodedHeader::new(true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5);
        assert_eq!(e.as_bytes(), &f[..6]);
    }

    #[test]
    fn header_violations() {
        let s = Role::Server;
        assert_eq!(
            check_first_bytes(0xC1, 0x80, s, 0),
            Err(Error::ReservedBits)
        );
        assert_eq!(
            check_first_bytes(0x83, 0x80, s, 0),
            Err(Error::ReservedOpcode(3))
        );
        assert_eq!(
            check_first_bytes(0x8B, 0x80, s, 0),
            Err(Error::ReservedOpcode(0xB))
        );
        assert_eq!(
            check_first_bytes(0x09, 0x80, s, 0),
            Err(Error::FragmentedControl)
        );
        assert_eq!(
            check_first_bytes(0x89, 0xFE, s, 0),
            Err(Error::ControlTooLong)
        );
        assert_eq!(
            check_first_bytes(0x81, 0x05, s, 0),
            Err(Error::UnmaskedFrame)
        );
        assert_eq!(
            check_first_bytes(0x81, 0x85, Role::Client, 0),
            Err(Error::MaskedFrame)
        );
        let b = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_header(&b, s, 0), Err(Error::LengthOverflow));
        let b = [0x82, 0xFE, 0x00, 0x10, 1, 2, 3, 4];
        assert_eq!(decode_header(&b, s, 0), Err(Error::NonMinimalLength));
    }

    /// RFC 7692 §6: with RSV1 allowed, it passes only on a text or binary
    /// frame; RSV2 and RSV3 never do.
    #[test]
    fn rsv1_only_on_a_data_message_start() {
        let (s, r) = (Role::Server, RSV1);
        assert_eq!(check_first_bytes(0xC1, 0x80, s, r), Ok(OpCode::Text));
        assert_eq!(check_first_bytes(0x42, 0x80, s, r), Ok(OpCode::Binary));
        for b0 in [0xC0, 0x40, 0xC9, 0xCA, 0xC8] {
            assert_eq!(
                check_first_bytes(b0, 0x80, s, r),
                Err(Error::MisplacedRsv1),
                "{b0:#x}"
            );
        }
        // Not negotiated: a reserved bit, whatever the frame.
        for b0 in [0xC1, 0xC0, 0xC9] {
            assert_eq!(check_first_bytes(b0, 0x80, s, 0), Err(Error::ReservedBits));
        }
        for b0 in [0xA1, 0x91, 0xE1, 0xF2] {
            assert_eq!(check_first_bytes(b0, 0x80, s, r), Err(Error::ReservedBits));
        }
        let h = decode_header(&[0xC1, 0x80, 1, 2, 3, 4], s, r).unwrap();
        assert_eq!(h.rsv, RSV1);
        let e = EncodedHeader::with_rsv(true, RSV1, OpCode::Text, Some([1, 2, 3, 4]), 0);
        assert_eq!(e.as_bytes(), [0xC1, 0x80, 1, 2, 3, 4]);
    }

    #[test]
    fn header_len_from_second_byte() {
        assert_eq!(header_len(0x05), 2);
        assert_eq!(header_len(0x85), 6);
        assert_eq!(header_len(0xFE), 8);
        assert_eq!(header_len(0xFF), 14);
    }
}
