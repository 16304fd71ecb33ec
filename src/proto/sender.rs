//! The write side of a connection: frame headers, masking for the client
//! role, outgoing fragmentation and the close handshake state (RFC 6455
//! §5.1, §5.4, §5.5, §7).
//!
//! The sender never owns an output buffer: it returns headers (and, for
//! control frames, whole frames) on the stack, and the caller puts them in
//! whatever queue it has. That keeps large payloads copy-free on the server
//! side (header and payload can go out in one `writev`).
//!
//! With permessage-deflate negotiated (`Sender::with_deflate`, feature
//! `deflate`) it also owns the connection's compressor (RFC 7692 §7.2.1):
//! [`Sender::encode_message`] compresses messages from a size threshold
//! on, `Sender::compress_message` does it for a caller with its own
//! queue, and `Sender::admit_shared_compressed` lets a frame compressed
//! once for many connections (the hub's fan-out) go out on this one.

use super::close::{CloseCode, CloseState};
#[cfg(feature = "deflate")]
use super::deflate::{prepend, Deflater};
use super::error::Error;
#[cfg(feature = "deflate")]
use super::frame::RSV1;
use super::frame::{EncodedHeader, OpCode, Role, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::receiver::Message;

#[cfg(feature = "deflate")]
mod compressed;

/// A complete control frame (ping, pong or close), encoded on the stack.
#[derive(Clone, Copy)]
pub struct ControlFrame {
    bytes: [u8; MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlFrame {
    fn new(opcode: OpCode, mask: Option<[u8; 4]>, parts: &[&[u8]]) -> Result<ControlFrame, Error> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // RFC 6455 §5.5: control payloads are at most 125 bytes.
        if len > MAX_CONTROL_PAYLOAD {
            return Err(Error::ControlPayloadTooLong);
        }
        let header = EncodedHeader::new(true, opcode, mask, len as u64);
        let h = header.as_bytes();
        let mut bytes = [0u8; MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD];
        bytes[..h.len()].copy_from_slice(h);
        let mut pos = h.len();
        for p in parts {
            bytes[pos..pos + p.len()].copy_from_slice(p);
            pos += p.len();
        }
        if let Some(key) = mask {
            apply_mask(&mut bytes[h.len()..pos], key, 0);
        }
        Ok(ControlFrame {
            bytes,
            len: pos as u8,
        })
    }

    /// The frame on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for ControlFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlFrame({:02x?})", self.as_bytes())
    }
}

/// Source of masking keys for the client role (RFC 6455 §5.3: "derived from
/// a strong source of entropy", fresh for every frame). Keys are drawn from
/// the OS generator 64 at a time; a key is never reused, and when the
/// generator fails no key is made up: the frame fails with
/// [`Error::MaskKeyUnavailable`] (the next frame tries the generator again).
struct MaskKeys {
    pool: [u8; 256],
    /// Next unused byte of `pool`; `pool.len()` when it is used up (or was
    /// never filled).
    pos: usize,
    fixed: Option<[u8; 4]>,
    /// Fills the pool: the OS generator (a failing one in tests).
    fill: fn(&mut [u8]) -> Result<(), Error>,
}

/// The OS random generator.
fn os_random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::getrandom(buf).map_err(|_| Error::MaskKeyUnavailable)
}

impl MaskKeys {
    fn new(fill: fn(&mut [u8]) -> Result<(), Error>) -> Self {
        MaskKeys {
            pool: [0; 256],
            pos: 256,
            fixed: None,
            fill,
        }
    }

    fn next(&mut self) -> Result<[u8; 4], Error> {
        if let Some(k) = self.fixed {
            return Ok(k);
        }
        if self.pos + 4 > self.pool.len() {
            // `pos` moves only after a successful fill, so a failed one
            // leaves the pool marked used up: no key from a stale (or, the
            // first time, all-zero) pool.
            (self.fill)(&mut self.pool)?;
            self.pos = 0;
        }
        let k = [
            self.pool[self.pos],
            self.pool[self.pos + 1],
            self.pool[self.pos + 2],
            self.pool[self.pos + 3],
        ];
        self.pos += 4;
        Ok(k)
    }
}

/// Where an outgoing fragmented message stands (RFC 6455 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    /// None open: the next data frame starts a message.
    None,
    /// An uncompressed message is open (a frame without FIN was sent).
    Plain,
    /// A compressed message is open: its first frame had RSV1, and its
    /// continuations carry the rest of the compressor's output (RFC 7692
    /// §6, §7.2.1).
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    Compressed,
}

/// What only some senders need, boxed so that a server without compression
/// allocates nothing and a `Sender` stays 16 bytes.
#[derive(Default)]
struct Extras {
    /// Client role: masking keys (in their own box: a server with
    /// compression needs none of their 256 bytes).
    keys: Option<Box<MaskKeys>>,
    /// permessage-deflate was negotiated: the outgoing compressor.
    #[cfg(feature = "deflate")]
    deflate: Option<Compressor>,
}

/// The outgoing direction of permessage-deflate: the compressor (its window
/// allocated only while a message is compressed, unless context takeover
/// was agreed) and the size from which messages are compressed.
#[cfg(feature = "deflate")]
struct Compressor {
    deflater: Deflater,
    min_size: usize,
}

/// Framing state of the write side: headers (masked in the client role,
/// RFC 6455 §5.3), fragmentation (§5.4), control frames (§5.5) and "nothing
/// after our close frame" (§5.5.1).
///
/// ```
/// use wsmio::proto::{CloseCode, Message, Role, Sender};
///
/// let mut tx = Sender::new(Role::Server);
/// let mut out = Vec::new();
/// tx.encode_message(Message::Text("Hello"), &mut out).unwrap();
/// assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']); // RFC 6455 §5.7
/// let close = tx.close(Some(CloseCode::NORMAL), "bye").unwrap();
/// assert_eq!(close.as_bytes()[..4], [0x88, 0x05, 0x03, 0xe8]);
/// // Once our close frame is out, no more data (§5.5.1).
/// assert!(tx.encode_message(Message::Text("late"), &mut out).is_err());
/// ```
pub struct Sender {
    role: Role,
    close: CloseState,
    fragment: Fragment,
    /// Masking keys (client), the compressor (deflate); `None` for a plain
    /// server.
    extras: Option<Box<Extras>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("role", &self.role)
            .field("close", &self.close)
            .field("fragment", &self.fragment)
            .field("deflate", &self.deflate_negotiated())
            .finish()
    }
}

impl Sender {
    /// A sender for `role`. The server role allocates nothing.
    pub fn new(role: Role) -> Self {
        let extras = match role {
            Role::Server => None,
            Role::Client => {
                let mut extras = Box::<Extras>::default();
                extras.keys = Some(Box::new(MaskKeys::new(os_random)));
                Some(extras)
            }
        };
        Sender {
            role,
            close: CloseState::Open,
            fragment: Fragment::None,
            extras,
        }
    }

    /// A client sender that masks every frame with `key`. Only for tests and
    /// fuzzing, where output must be reproducible: RFC 6455 §5.3 requires
    /// an unpredictable key per frame in real use.
    pub fn client_with_fixed_mask(key: [u8; 4]) -> Self {
        let mut s = Sender::new(Role::Client);
        if let Some(k) = s.keys_mut() {
            k.fixed = Some(key);
        }
        s
    }

    fn keys_mut(&mut self) -> Option<&mut MaskKeys> {
        self.extras.as_mut()?.keys.as_deref_mut()
    }

    /// Was permessage-deflate negotiated (may this sender compress)?
    pub fn deflate_negotiated(&self) -> bool {
        #[cfg(feature = "deflate")]
        if self.extras.as_ref().is_some_and(|e| e.deflate.is_some()) {
            return true;
        }
        false
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The close handshake state.
    pub fn close_state(&self) -> CloseState {
        self.close
    }

    /// The masking key for the next frame: `None` for a server, a fresh key
    /// for a client.
    #[inline]
    fn next_mask(&mut self) -> Result<Option<[u8; 4]>, Error> {
        // RFC 6455 §5.1: a client MUST mask every frame; a server MUST NOT.
        self.keys_mut().map(|k| k.next()).transpose()
    }

    /// Header of a data frame carrying `len` payload bytes. `opcode` is Text
    /// or Binary for the first frame of a message, Continuation after;
    /// `fin` ends the message. The caller writes the payload after the
    /// header, masked with `header.mask` if set (client role).
    ///
    /// The frame is uncompressed (RSV1 clear), which is always allowed
    /// (RFC 7692 §6: compression is per message); a continuation of a
    /// compressed message is not (use `Sender::encode_compressed_data`).
    pub fn data_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        len: u64,
    ) -> Result<EncodedHeader, Error> {
        self.frame_header(opcode, fin, Fragment::Plain, len)
    }

    /// May a data frame of a `kind` message go out now?
    fn check_frame(&self, opcode: OpCode, kind: Fragment) -> Result<(), Error> {
        // RFC 6455 §5.5.1: after sending a close frame, no more data.
        if !self.close.can_send_data() {
            return Err(Error::AlreadyClosed);
        }
        // RFC 6455 §5.4: a fragmented message is Text/Binary, then
        // Continuation frames, the last with FIN (all of one kind).
        match (opcode, self.fragment) {
            (OpCode::Continuation, f) if f == kind => Ok(()),
            (OpCode::Text | OpCode::Binary, Fragment::None) => Ok(()),
            _ => Err(Error::BadFragmentSequence),
        }
    }

    /// The header of a data frame of a `kind` message (RSV1 on the first
    /// frame of a compressed one, RFC 7692 §6), its state moved on.
    fn frame_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        kind: Fragment,
        len: u64,
    ) -> Result<EncodedHeader, Error> {
        self.check_frame(opcode, kind)?;
        let mask = self.next_mask()?;
        self.fragment = if fin { Fragment::None } else { kind };
        #[cfg(feature = "deflate")]
        if kind == Fragment::Compressed && opcode != OpCode::Continuation {
            return Ok(EncodedHeader::with_rsv(fin, RSV1, opcode, mask, len));
        }
        Ok(EncodedHeader::new(fin, opcode, mask, len))
    }

    /// Check that a whole, already-encoded data message (e.g. a shared
    /// broadcast frame) may be sent now: not after our close (§5.5.1), not
    /// inside an outgoing fragmented message (§5.4).
    pub fn check_whole_message(&self) -> Result<(), Error> {
        if !self.close.can_send_data() {
            return Err(Error::AlreadyClosed);
        }
        if self.fragment != Fragment::None {
            return Err(Error::BadFragmentSequence);
        }
        Ok(())
    }

    /// The 2-byte header of a whole (FIN) text or binary message of at most
    /// 125 bytes, for the server role — the hot path of small sends. `None`
    /// when such a frame may not be sent now (after our close, inside an
    /// outgoing fragmented message) or needs masking (client role): use
    /// [`Sender::data_header`] then. The frame is uncompressed, which is
    /// valid with permessage-deflate too.
    #[inline]
    pub fn small_server_header(&self, text: bool, len: usize) -> Option<[u8; 2]> {
        if self.role == Role::Client
            || self.fragment != Fragment::None
            || !self.close.can_send_data()
            || len > 125
        {
            return None;
        }
        let op = if text { OpCode::Text } else { OpCode::Binary };
        Some([0x80 | op as u8, len as u8])
    }

    /// Encode a whole data frame into `out` (copying and, for a client,
    /// masking the payload).
    pub fn encode_data(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let h = self.data_header(opcode, fin, payload.len() as u64)?;
        out.extend_from_slice(h.as_bytes());
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = h.mask {
            apply_mask(&mut out[start..], key, 0);
        }
        Ok(())
    }

    /// Encode a whole message into `out`: compressed when permessage-deflate
    /// was negotiated and the message is at least `Compression::min_size`
    /// long (and, without context takeover, shrinks), otherwise as it is.
    ///
    /// ```
    /// use wsmio::proto::{Message, Role, Sender};
    ///
    /// let mut tx = Sender::new(Role::Server);
    /// let mut out = Vec::new();
    /// tx.encode_message(Message::Text("hi"), &mut out).unwrap();
    /// assert_eq!(out, [0x81, 0x02, b'h', b'i']);
    /// ```
    pub fn encode_message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        #[cfg(feature = "deflate")]
        {
            let start = out.len();
            if let Some(h) = self.compress_message(op, msg.as_bytes(), out)? {
                finish_frame(out, start, &h);
                return Ok(());
            }
        }
        self.encode_data(op, true, msg.as_bytes(), out)
    }

    /// A ping (§5.5.2). Not allowed after our close frame.
    pub fn ping(&mut self, payload: &[u8]) -> Result<ControlFrame, Error> {
        if self.close.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let mask = self.next_mask()?;
        ControlFrame::new(OpCode::Ping, mask, &[payload])
    }

    /// The pong answering a ping (§5.5.2: same payload). Returns `None` once
    /// our close frame is sent (nothing follows a close frame), or for a
    /// client whose OS random generator failed (no masking key).
    pub fn pong(&mut self, ping_payload: &[u8]) -> Option<ControlFrame> {
        if self.close.close_sent() {
            return None;
        }
        let mask = self.next_mask().ok()?;
        // A received ping payload is at most 125 bytes (checked at its header).
        ControlFrame::new(OpCode::Pong, mask, &[ping_payload]).ok()
    }

    /// Start the close handshake (§5.5.1, §7.1.2). The reason is truncated to
    /// fit the 125-byte limit at a character boundary. Errors if a close frame
    /// was already sent (never send a second one) or the code may not be sent.
    pub fn close(&mut self, code: Option<CloseCode>, reason: &str) -> Result<ControlFrame, Error> {
        if self.close.close_sent() {
            return Err(Error::AlreadyClosed);
        }
        let frame = match code {
            None => {
                let mask = self.next_mask()?;
                ControlFrame::new(OpCode::Close, mask, &[])?
            }
            Some(c) => {
                // RFC 6455 §7.4.1: 1005, 1006, 1015 MUST NOT be sent.
                if !c.is_valid_on_wire() {
                    return Err(Error::InvalidCloseCode);
                }
                let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mask = self.next_mask()?;
                ControlFrame::new(
                    OpCode::Close,
                    mask,
                    &[&c.0.to_be_bytes(), &reason.as_bytes()[..end]],
                )?
            }
        };
        self.close = match self.close {
            CloseState::ReceivedClose => CloseState::Closed,
            _ => CloseState::SentClose,
        };
        Ok(frame)
    }

    /// The peer's close frame arrived (§5.5.1): record it and return our
    /// reply, echoing the peer's code (none if it sent none), unless we had
    /// sent our close already — then the handshake is complete.
    pub fn close_reply(&mut self, code: Option<CloseCode>) -> Option<ControlFrame> {
        match self.close {
            CloseState::SentClose => {
                self.close = CloseState::Closed;
                None
            }
            CloseState::Open => {
                self.close = CloseState::ReceivedClose;
                self.close(code, "").ok()
            }
            CloseState::ReceivedClose | CloseState::Closed => None,
        }
    }

    /// Fail the connection (§7.1.7): the close frame for `error`, unless a
    /// close frame was already sent.
    pub fn fail(&mut self, error: Error) -> Option<ControlFrame> {
        self.close(Some(error.close_code()), error.reason()).ok()
    }

    /// Record that the peer's close arrived after ours, or that the
    /// connection is being torn down: no more frames of any kind.
    pub fn mark_closed(&mut self) {
        self.close = CloseState::Closed;
    }
}

/// Put header `h` before the payload written to `out[start..]`, masking
/// the payload with its key (client role).
#[cfg(feature = "deflate")]
fn finish_frame(out: &mut Vec<u8>, start: usize, h: &EncodedHeader) {
    prepend(out, start, h.as_bytes());
    if let Some(key) = h.mask {
        apply_mask(&mut out[start + h.as_bytes().len()..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_unmasked() {
        let mut s = Sender::new(Role::Server);
        let mut out = Vec::new();
        s.encode_data(OpCode::Text, true, b"Hello", &mut out)
            .unwrap();
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    }

    #[test]
    fn client_frames_are_masked() {
        // RFC 6455 §5.7: masked "Hello".
        let mut s = Sender::client_with_fixed_mask([0x37, 0xfa, 0x21, 0x3d]);
        let mut out = Vec::new();
        s.encode_data(OpCode::Text, true, b"Hello", &mut out)
            .unwrap();
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // Random keys differ from frame to frame.
        let mut s = Sender::new(Role::Client);
        let a = s.data_header(OpCode::Binary, true, 1).unwrap().mask;
        let b = s.data_header(OpCode::Binary, true, 1).unwrap().mask;
        assert!(a.is_some() && a != b);
    }

    #[test]
    fn close_handshake_rules() {
        let mut s = Sender::new(Role::Server);
        let f = s.close(Some(CloseCode::NORMAL), "bye").unwrap();
        assert_eq!(f.as_bytes(), [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
        // Never a second close, never data after close.
        assert_eq!(s.close(None, "").unwrap_err(), Error::AlreadyClosed);
        assert_eq!(
            s.data_header(OpCode::Text, true, 1).unwrap_err(),
            Error::AlreadyClosed
        );
        assert!(s.pong(b"x").is_none());
        // The peer's reply completes the handshake without another frame.
        assert!(s.close_reply(Some(CloseCode::NORMAL)).is_none());
        assert_eq!(s.close_state(), CloseState::Closed);

        // Peer-initiated: echo the code.
        let mut s = Sender::new(Role::Server);
        let f = s.close_reply(Some(CloseCode(4000))).unwrap();
        assert_eq!(f.as_bytes(), [0x88, 0x02, 0x0f, 0xa0]);
        assert_eq!(s.close_state(), CloseState::Closed);
        let mut s = Sender::new(Role::Server);
        assert_eq!(s.close_reply(None).unwrap().as_bytes(), [0x88, 0x00]);
        // Codes that must not be sent are refused.
        let mut s = Sender::new(Role::Server);
        assert_eq!(
            s.close(Some(CloseCode::NO_STATUS), "").unwrap_err(),
            Error::InvalidCloseCode
        );
    }

    #[test]
    fn long_reason_is_truncated_on_a_char_boundary() {
        let mut s = Sender::new(Role::Server);
        let reason = "é".repeat(100);
        let f = s.close(Some(CloseCode::NORMAL), &reason).unwrap();
        assert!(f.as_bytes().len() <= 2 + 125);
        assert!(std::str::from_utf8(&f.as_bytes()[4..]).is_ok());
    }

    /// RFC 6455 §5.3: no frame goes out with a made-up key. A generator that
    /// fails makes every frame fail (not mask with the all-zero pool it
    /// starts with), and the next frame tries it again.
    #[test]
    fn a_failing_random_generator_fails_the_frame() {
        fn broken(_: &mut [u8]) -> Result<(), Error> {
            Err(Error::MaskKeyUnavailable)
        }
        let mut s = Sender::new(Role::Client);
        if let Some(e) = s.extras.as_mut() {
            e.keys = Some(Box::new(MaskKeys::new(broken)));
        }
        let unavailable = Err(Error::MaskKeyUnavailable);
        assert_eq!(
            s.data_header(OpCode::Text, false, 1).map(|_| ()),
            unavailable
        );
        assert_eq!(s.ping(b"").map(|_| ()), unavailable);
        assert!(s.pong(b"").is_none());
        assert_eq!(s.close(None, "").map(|_| ()), unavailable);
        assert_eq!(
            s.encode_data(OpCode::Text, true, b"x", &mut Vec::new()),
            unavailable
        );
        // Nothing changed: no fragment opened, no close sent.
        assert_eq!(s.check_whole_message(), Ok(()));
        assert_eq!(s.close_state(), CloseState::Open);
        // Once the generator works again, frames are masked again.
        if let Some(k) = s.keys_mut() {
            k.fill = os_random;
        }
        assert!(s.data_header(OpCode::Text, true, 1).unwrap().mask.is_some());
        assert_eq!(Error::MaskKeyUnavailable.close_code(), CloseCode::INTERNAL);
    }

    #[test]
    fn fragment_sequence() {
        let mut s = Sender::new(Role::Server);
        assert!(s.data_header(OpCode::Continuation, true, 1).is_err());
        s.data_header(OpCode::Text, false, 1).unwrap();
        assert!(s.data_header(OpCode::Binary, true, 1).is_err());
        s.data_header(OpCode::Continuation, true, 1).unwrap();
        s.data_header(OpCode::Binary, true, 1).unwrap();
    }
}
