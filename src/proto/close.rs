//! Close codes, close frame payloads and the close handshake state
//! (RFC 6455 §5.5.1, §7.1, §7.4).

use super::utf8::Utf8Validator;

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. MUST NOT be sent (§7.4.1).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a close frame. MUST NOT be sent (§7.4.1).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (bad UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) the server did not negotiate a required extension.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: (server) unexpected internal condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: (server) restarting; the client may reconnect (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: (server) overloaded; try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: (gateway) the upstream server sent an invalid response (IANA
    /// registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// May this code appear in a close frame on the wire?
    ///
    /// RFC 6455 §7.4.1/§7.4.2 and the IANA registry: 1000–1003 and 1007–1011
    /// are defined by the RFC and 1012–1014 were registered since; 1004 is
    /// reserved; 1005, 1006 and 1015 MUST NOT be sent; 0–999 and other codes
    /// below 3000 are not in use; 3000–3999 are registered by libraries and
    /// 4000–4999 are private.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a received close frame payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadClose {
    /// A 1-byte payload (§5.5.1: a body starts with a 2-byte code) or a code
    /// not allowed on the wire: close with 1002.
    Protocol,
    /// The reason is not UTF-8 (§5.5.1): close with 1007.
    Utf8,
}

/// Parse a received close frame payload (RFC 6455 §5.5.1): empty, or a 2-byte
/// big-endian code followed by a UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<CloseCode>, &str), BadClose> {
    match payload.len() {
        0 => Ok((None, "")),
        1 => Err(BadClose::Protocol),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(BadClose::Protocol);
            }
            let mut v = Utf8Validator::new();
            v.feed(&payload[2..])
                .and_then(|_| v.finish())
                .map_err(|_| BadClose::Utf8)?;
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| BadClose::Utf8)?;
            Ok((Some(code), reason))
        }
    }
}

/// Where a connection is in the close handshake (RFC 6455 §7.1).
///
/// Sending and receiving are tracked separately: the connection is fully
/// closed once a close frame has gone each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseState {
    /// No close frame sent or received: data flows both ways.
    #[default]
    Open,
    /// We sent a close frame and wait for the peer's (§7.1.2). We MUST NOT
    /// send data any more (§5.5.1); received data is still delivered.
    SentClose,
    /// The peer's close frame arrived; ours is queued as the reply. Nothing
    /// more is read.
    ReceivedClose,
    /// Both close frames crossed: the TCP connection can be closed. The
    /// server closes it first (§7.1.1).
    Closed,
}

impl CloseState {
    /// May a data frame or ping still be sent?
    pub fn can_send_data(self) -> bool {
        self == CloseState::Open
    }

    /// Has a close frame been sent already? (§5.5.1: never send a second.)
    pub fn close_sent(self) -> bool {
        matches!(self, CloseState::SentClose | CloseState::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_classes() {
        for c in 0..=6000u16 {
            let valid = CloseCode(c).is_valid_on_wire();
            let expect = (1000..=1003).contains(&c)
                || (1007..=1014).contains(&c)
                || (3000..=4999).contains(&c);
            assert_eq!(valid, expect, "{c}");
        }
        for c in [1004, 1005, 1006, 1015, 0, 999, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(c).is_valid_on_wire());
        }
        // Registered with IANA after the RFC: Service Restart, Try Again
        // Later, Bad Gateway.
        for c in [1012, 1013, 1014] {
            assert!(CloseCode(c).is_valid_on_wire());
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(b""), Ok((None, "")));
        assert_eq!(parse_close_payload(b"\x03"), Err(BadClose::Protocol));
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye"),
            Ok((Some(CloseCode::NORMAL), "bye"))
        );
        assert_eq!(parse_close_payload(b"\x03\xed"), Err(BadClose::Protocol));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(BadClose::Utf8));
    }
}
