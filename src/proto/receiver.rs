//! The read side of a connection: a streaming frame parser and message
//! assembler (RFC 6455 §5).
//!
//! Bytes go in as they come off the wire, in pieces of any size, and events
//! come out through a [`ReceiveHandler`]. Every byte handed in is consumed: the only
//! state kept between calls is a partial header (at most 14 bytes), the
//! current frame's remaining length and mask phase, the UTF-8 state, and —
//! only while they are split across reads — a control frame's payload so far
//! (its own buffer of at most 125 bytes) and a message's bytes so far. A
//! message or control frame that arrives whole in one read is delivered
//! straight from the caller's buffer, unmasked in place, without a copy.
//!
//! With permessage-deflate negotiated (`Receiver::with_deflate`, feature
//! `deflate`), a message whose first frame has RSV1 takes the compressed
//! path of `receiver/compressed.rs` (RFC 7692 §6.2) from its payload on;
//! everything up to the payload — headers, limits, fragmentation, control
//! frames — is the same code for both.

use super::close::{parse_close_payload, BadClose, CloseCode};
use super::error::Error;
use super::frame::{self, FrameHeader, OpCode, Role, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1};
use super::limits::{DeliveryMode, Limits};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
#[cfg(feature = "deflate")]
use super::{deflate::Inflater, extension::DeflateParams};

#[cfg(feature = "deflate")]
mod compressed;

/// A complete data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, already validated as UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

/// A piece of a data message, in [`DeliveryMode::Chunks`] mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// True if the message is text (its chunks may split a code point; the
    /// message as a whole is validated).
    pub text: bool,
    /// The bytes, unmasked.
    pub data: &'a [u8],
    /// First chunk of its message.
    pub first: bool,
    /// Last chunk of its message (the message is complete and valid).
    pub last: bool,
}

/// Receives the events of [`Receiver::receive`].
pub trait ReceiveHandler {
    /// A complete data message ([`DeliveryMode::Messages`] mode).
    fn on_message(&mut self, msg: Message<'_>);
    /// A piece of a data message ([`DeliveryMode::Chunks`] mode).
    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        let _ = chunk;
    }
    /// A ping arrived. RFC 6455 §5.5.2: the endpoint MUST answer with a pong
    /// carrying the same payload (see [`super::Sender::pong`]).
    fn on_ping(&mut self, payload: &[u8]);
    /// A pong arrived (§5.5.3; may be unsolicited).
    fn on_pong(&mut self, payload: &[u8]) {
        let _ = payload;
    }
    /// The peer's close frame arrived, already validated. Nothing after it is
    /// read (§5.5.1); answer with [`super::Sender::close_reply`].
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str);
}

/// Where the parser is within the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting header bytes.
    Header,
    /// Reading `remaining` payload bytes.
    Payload,
    /// A close frame was received or the input was invalid: ignore the rest.
    Done,
}

/// The data message being read, from its first frame to the one with FIN:
/// its type, and whether its first frame had RSV1 (RFC 7692 §6: the
/// whole message is compressed). One byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Binary,
    CompressedText,
    CompressedBinary,
}

impl Open {
    fn new(opcode: OpCode, compressed: bool) -> Open {
        match (opcode == OpCode::Text, compressed) {
            (true, false) => Open::Text,
            (false, false) => Open::Binary,
            (true, true) => Open::CompressedText,
            (false, true) => Open::CompressedBinary,
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Open::Text | Open::CompressedText)
    }

    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    fn is_compressed(self) -> bool {
        matches!(self, Open::CompressedText | Open::CompressedBinary)
    }
}

/// A control frame's payload collected across reads (RFC 6455 §5.5: at most
/// 125 bytes, checked at its header).
#[derive(Debug)]
struct ControlBuf {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl Default for ControlBuf {
    fn default() -> Self {
        ControlBuf {
            bytes: [0; MAX_CONTROL_PAYLOAD],
            len: 0,
        }
    }
}

impl ControlBuf {
    fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let start = self.len as usize;
        let end = start + chunk.len();
        // Within 125 bytes: the header said so (§5.5).
        let room = self
            .bytes
            .get_mut(start..end)
            .ok_or(Error::ControlTooLong)?;
        room.copy_from_slice(chunk);
        self.len = end as u8;
        Ok(())
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// State that exists only while a header, a control frame or a message
/// spans reads (or a message is fragmented). Boxed, and freed as soon as
/// it is empty again: an idle connection holds none.
#[derive(Debug, Default)]
struct Partial {
    /// Header bytes collected so far.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    /// The current control frame's payload, when it spans reads.
    control: ControlBuf,
    /// The open message's bytes so far ([`DeliveryMode::Messages`]).
    message: Vec<u8>,
}

impl Partial {
    fn is_empty(&self) -> bool {
        self.header_len == 0 && self.control.len == 0 && self.message.is_empty()
    }
}

/// The streaming frame parser and message assembler.
///
/// Every byte takes one forward path: `header` reads a frame header and
/// checks it (`start_frame`), then `payload` unmasks each piece of the
/// payload and hands it to `control_payload` or `data_payload`, which
/// deliver what is complete. `small_frame` is a shortcut for the commonest
/// frame (whole, small, final, in one read) that takes the same decisions in
/// one place.
///
/// Its state is 40 bytes, 48 with the `deflate` feature (asserted by the
/// reactor's connection-size test): everything else is boxed and allocated
/// only while needed.
///
/// Events go to a [`ReceiveHandler`]; the automatic replies (pong, close
/// reply) are the caller's, or [`super::Connection`]'s, which joins a
/// receiver with a [`super::Sender`].
///
/// ```
/// use wsmio::proto::{CloseCode, Limits, Message, ReceiveHandler, Receiver, Role};
///
/// #[derive(Default)]
/// struct Texts(Vec<String>);
///
/// impl ReceiveHandler for Texts {
///     fn on_message(&mut self, msg: Message<'_>) {
///         if let Message::Text(t) = msg {
///             self.0.push(t.to_string());
///         }
///     }
///     fn on_ping(&mut self, _payload: &[u8]) {}
///     fn on_close(&mut self, _code: Option<CloseCode>, _reason: &str) {}
/// }
///
/// let mut rx = Receiver::new(Role::Server);
/// let mut texts = Texts::default();
/// // RFC 6455 §5.7: a masked "Hello", fed in two reads (unmasked in place).
/// let mut frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (first, second) = frame.split_at_mut(4);
/// rx.receive(first, &Limits::default(), &mut texts).unwrap();
/// rx.receive(second, &Limits::default(), &mut texts).unwrap();
/// assert_eq!(texts.0, ["Hello"]);
/// ```
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    stage: Stage,
    // --- the frame being read ---
    opcode: OpCode,
    fin: bool,
    /// The frame's masking key. Whether there is one is derived from the
    /// role: `check_first_bytes` admits only masked frames to a server and
    /// only unmasked ones to a client (RFC 6455 §5.1).
    mask: [u8; 4],
    phase: u8,
    remaining: u64,
    // --- the message being read ---
    /// Set while a data message is open (between its first frame and the
    /// frame with FIN).
    message: Option<Open>,
    /// Bytes of the open message so far, across frames.
    message_len: u64,
    /// A chunk of the open message was delivered ([`DeliveryMode::Chunks`]).
    chunk_sent: bool,
    utf8: Utf8Validator,
    /// Split headers, control payloads and messages, allocated only while
    /// needed.
    partial: Option<Box<Partial>>,
    /// permessage-deflate was negotiated: the decompressor of the incoming
    /// direction (RFC 7692 §7.2.2). The box is 32 bytes; the inflate window
    /// inside it exists only while a compressed message is being read,
    /// unless the peer may use context takeover.
    #[cfg(feature = "deflate")]
    inflater: Option<Box<Inflater>>,
}

impl Receiver {
    /// A receiver for `role`. Allocates nothing. The [`Limits`] are passed
    /// to each [`Receiver::receive`] call: they are configuration shared by
    /// all connections, so they take no room in each one's state.
    pub fn new(role: Role) -> Self {
        Receiver {
            role,
            stage: Stage::Header,
            opcode: OpCode::Binary,
            fin: false,
            mask: [0; 4],
            phase: 0,
            remaining: 0,
            message: None,
            message_len: 0,
            chunk_sent: false,
            utf8: Utf8Validator::new(),
            partial: None,
            #[cfg(feature = "deflate")]
            inflater: None,
        }
    }

    /// A receiver for `role` on a connection that negotiated
    /// permessage-deflate with `params` (RFC 7692 §7.1): RSV1 marks a
    /// compressed message (§6), which is inflated as it arrives, its
    /// decompressed size counted against [`Limits::max_message_size`] before
    /// it is produced. Allocates the decompressor's 32-byte box; its window
    /// (about 47 KiB) only while a compressed message is read, or from the
    /// first one on if the peer may use context takeover.
    ///
    /// ```
    /// use wsmio::proto::extension::{DeflateConfig, Offer, negotiate_server};
    /// use wsmio::proto::{Limits, Message, Receiver, Role};
    ///
    /// let offer = Offer::from_config(&DeflateConfig::default()).header_value();
    /// let agreed = negotiate_server([offer.as_bytes()], &DeflateConfig::default())
    ///     .unwrap()
    ///     .unwrap();
    /// let mut rx = Receiver::with_deflate(Role::Client, agreed.params);
    /// // RFC 7692 §7.2.3.1: "Hello", compressed, from a server.
    /// let mut frame = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    /// struct Print;
    /// impl wsmio::proto::ReceiveHandler for Print {
    ///     fn on_message(&mut self, m: Message<'_>) { assert_eq!(m, Message::Text("Hello")) }
    ///     fn on_ping(&mut self, _: &[u8]) {}
    ///     fn on_close(&mut self, _: Option<wsmio::proto::CloseCode>, _: &str) {}
    /// }
    /// rx.receive(&mut frame, &Limits::default(), &mut Print).unwrap();
    /// ```
    #[cfg(feature = "deflate")]
    pub fn with_deflate(role: Role, params: DeflateParams) -> Self {
        let mut rx = Receiver::new(role);
        // The limit is set from `Limits` at the start of each message.
        rx.inflater = Some(Box::new(Inflater::new(params.incoming(role), 0)));
        rx
    }

    /// Was permessage-deflate negotiated (RSV1 allowed on a message's first
    /// frame)?
    pub fn deflate_negotiated(&self) -> bool {
        self.rsv_allowed() != 0
    }

    /// The RSV bits a negotiated extension gave meaning to (RFC 6455 §5.2).
    #[inline]
    fn rsv_allowed(&self) -> u8 {
        #[cfg(feature = "deflate")]
        if self.inflater.is_some() {
            return RSV1;
        }
        0
    }

    /// True once a close frame was received or the input was found invalid;
    /// further input is ignored.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// True while the parser is in the middle of a frame or message (a
    /// clean point to stop reading is when this is false).
    pub fn is_mid_message(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| p.header_len != 0)
            || self.stage == Stage::Payload
            || self.message.is_some()
    }

    /// Bytes held for a message or control frame split across reads.
    pub fn buffered(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |p| p.message.len() + p.control.len as usize)
    }

    /// Capacity of the message reassembly buffer (0 when idle).
    pub fn buffer_capacity(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.message.capacity())
    }

    fn partial(&mut self) -> &mut Partial {
        self.partial.get_or_insert_with(Box::default)
    }

    /// Consume `input` (unmasking it in place) and report what it completes.
    ///
    /// On a protocol violation returns the [`Error`] (its
    /// [`Error::close_code`] is what to close with) and ignores all later
    /// input, as it does after a close frame.
    pub fn receive<H: ReceiveHandler>(
        &mut self,
        mut input: &mut [u8],
        limits: &Limits,
        h: &mut H,
    ) -> Result<(), Error> {
        while !input.is_empty() {
            let used = match self.stage {
                Stage::Done => return Ok(()),
                Stage::Header => self.header(input, limits, h),
                Stage::Payload => {
                    let n = self.remaining.min(input.len() as u64) as usize;
                    self.payload(&mut input[..n], limits, h).map(|()| n)
                }
            };
            match used {
                Ok(n) => input = &mut std::mem::take(&mut input)[n..],
                Err(e) => return Err(self.fail(e)),
            }
        }
        if self.partial.as_ref().is_some_and(|p| p.is_empty()) {
            self.partial = None;
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.stop();
        e
    }

    /// Nothing more will be read (a close frame or a violation): free what
    /// a message in progress holds, and the decompressor's window (RFC 7692
    /// §7.2.2 state is of no use after the last message).
    fn stop(&mut self) {
        self.stage = Stage::Done;
        self.partial = None;
        #[cfg(feature = "deflate")]
        if let Some(inf) = self.inflater.as_mut() {
            inf.abort();
        }
    }

    /// Step 1: a frame header at the start of `input` (or its rest, after a
    /// piece that came in an earlier read). Returns the bytes used.
    fn header<H: ReceiveHandler>(
        &mut self,
        input: &mut [u8],
        limits: &Limits,
        h: &mut H,
    ) -> Result<usize, Error> {
        if self.partial.is_none() && self.message.is_none() {
            // Fast path for the common case: a whole, small, final data
            // frame at the start of `input`.
            let used = self.small_frame(input, limits, h)?;
            if used > 0 {
                return Ok(used);
            }
        }
        let used = self.read_header(input, limits)?;
        if self.stage == Stage::Payload && self.remaining == 0 {
            // An empty frame is complete with its header.
            self.payload(&mut [], limits, h)?;
        }
        Ok(used)
    }

    /// A complete, unfragmented, masked text or binary frame of at most 125
    /// bytes, whole in `input`, delivered straight from it (the same rules
    /// as the general path, checked in one place for speed). Returns the
    /// bytes used, or 0 when the frame is not of that shape.
    #[inline]
    fn small_frame<H: ReceiveHandler>(
        &mut self,
        input: &mut [u8],
        limits: &Limits,
        h: &mut H,
    ) -> Result<usize, Error> {
        if input.len() < 6 || self.role != Role::Server || limits.delivery != DeliveryMode::Messages
        {
            return Ok(0);
        }
        let (b0, b1) = (input[0], input[1]);
        // FIN, no RSV bits, opcode 1 or 2; MASK set, 7-bit length.
        let len = (b1 & 0x7F) as usize;
        if !(b0 == 0x81 || b0 == 0x82) || b1 & 0x80 == 0 || len > 125 || input.len() < 6 + len {
            return Ok(0);
        }
        if len as u64 > limits.max_frame_size || len as u64 > limits.max_message_size {
            return Ok(0); // the general path reports the size error
        }
        let key = [input[2], input[3], input[4], input[5]];
        let payload = &mut input[6..6 + len];
        apply_mask(payload, key, 0);
        let text = b0 == 0x81;
        if text && !payload.is_ascii() {
            // RFC 6455 §8.1: a text message must be valid UTF-8.
            let mut v = Utf8Validator::new();
            v.feed(payload)
                .and_then(|_| v.finish())
                .map_err(|_| Error::InvalidUtf8)?;
        }
        deliver(h, text, payload);
        Ok(6 + len)
    }

    /// Collect header bytes; returns how many of `input` were used. Moves to
    /// `Stage::Payload` once the header is complete and valid.
    fn read_header(&mut self, input: &[u8], limits: &Limits) -> Result<usize, Error> {
        let have = self.partial.as_ref().map_or(0, |p| p.header_len as usize);
        // Fast path: the whole header is in `input`.
        if have == 0 && input.len() >= 2 {
            let need = frame::header_len(input[1]);
            if input.len() >= need {
                let h = frame::decode_header(&input[..need], self.role, self.rsv_allowed())?;
                self.start_frame(h, limits)?;
                return Ok(need);
            }
        }
        // Slow path: accumulate. The first two bytes are validated as soon
        // as they are here, before waiting for the rest.
        let (role, rsv_allowed) = (self.role, self.rsv_allowed());
        let p = self.partial();
        let mut used = 0;
        let mut have = have;
        if have < 2 {
            let take = (2 - have).min(input.len());
            p.header[have..have + take].copy_from_slice(&input[..take]);
            have += take;
            used += take;
            if have < 2 {
                p.header_len = have as u8;
                return Ok(used);
            }
            frame::check_first_bytes(p.header[0], p.header[1], role, rsv_allowed)?;
        }
        let need = frame::header_len(p.header[1]);
        let take = (need - have).min(input.len() - used);
        p.header[have..have + take].copy_from_slice(&input[used..used + take]);
        have += take;
        used += take;
        if have < need {
            p.header_len = have as u8;
            return Ok(used);
        }
        p.header_len = 0;
        let h = frame::decode_header(&p.header[..need], role, rsv_allowed)?;
        self.start_frame(h, limits)?;
        Ok(used)
    }

    /// Apply the frame-level rules that need the message state.
    fn start_frame(&mut self, h: FrameHeader, limits: &Limits) -> Result<(), Error> {
        // Control frames are bounded by 125 bytes (§5.5) whatever the limit.
        if h.payload_len > limits.max_frame_size && !h.opcode.is_control() {
            return Err(Error::FrameTooBig);
        }
        if !h.opcode.is_control() {
            // RFC 6455 §5.4: fragments of one message are not interleaved
            // with another message's.
            match (h.opcode, self.message) {
                (OpCode::Continuation, None) => return Err(Error::UnexpectedContinuation),
                (OpCode::Continuation, Some(_)) => {}
                (_, Some(_)) => return Err(Error::ExpectedContinuation),
                (op, None) => {
                    // RFC 7692 §6: RSV1 on the first frame marks the whole
                    // message compressed (`check_first_bytes` let it through
                    // only if negotiated, and only here).
                    let open = Open::new(op, h.rsv & RSV1 != 0);
                    self.message = Some(open);
                    self.message_len = 0;
                    self.chunk_sent = false;
                    #[cfg(feature = "deflate")]
                    if open.is_compressed() {
                        self.start_compressed(limits);
                    }
                }
            }
            self.message_len = self
                .message_len
                .checked_add(h.payload_len)
                .filter(|&n| n <= limits.max_message_size)
                .ok_or(Error::MessageTooBig)?;
        }
        self.opcode = h.opcode;
        self.fin = h.fin;
        self.mask = h.mask.unwrap_or_default();
        self.phase = 0;
        self.remaining = h.payload_len;
        self.stage = Stage::Payload;
        Ok(())
    }

    /// Step 2: `chunk`, the next payload bytes of the current frame (empty
    /// for an empty frame): unmask it (§5.3) and pass it on.
    fn payload<H: ReceiveHandler>(
        &mut self,
        chunk: &mut [u8],
        limits: &Limits,
        h: &mut H,
    ) -> Result<(), Error> {
        if self.role == Role::Server {
            self.phase = apply_mask(chunk, self.mask, self.phase as usize) as u8;
        }
        self.remaining -= chunk.len() as u64;
        let frame_done = self.remaining == 0;
        if frame_done {
            self.stage = Stage::Header;
        }
        if self.opcode.is_control() {
            self.control_payload(chunk, frame_done, h)
        } else {
            self.data_payload(chunk, frame_done, limits, h)
        }
    }

    /// Step 3a: a piece of a control frame (§5.5). Acted on once complete:
    /// straight from the read when the whole payload is in it, otherwise
    /// from the pieces collected in the control buffer.
    fn control_payload<H: ReceiveHandler>(
        &mut self,
        chunk: &[u8],
        frame_done: bool,
        h: &mut H,
    ) -> Result<(), Error> {
        let held = self.partial.as_ref().map_or(0, |p| p.control.len);
        if frame_done && held == 0 {
            return self.control_frame(chunk, h);
        }
        self.partial().control.push(chunk)?;
        if !frame_done {
            return Ok(());
        }
        // Complete: taken out of the buffer (which is left empty) and acted on.
        let payload = std::mem::take(&mut self.partial().control);
        self.control_frame(payload.as_slice(), h)
    }

    /// A complete control frame's `payload`: report a ping or pong; validate
    /// a close frame, report it, and stop reading (§5.5.1).
    fn control_frame<H: ReceiveHandler>(&mut self, payload: &[u8], h: &mut H) -> Result<(), Error> {
        match self.opcode {
            OpCode::Ping => h.on_ping(payload),
            OpCode::Pong => h.on_pong(payload),
            _ => {
                let (code, reason) = parse_close_payload(payload).map_err(|e| match e {
                    BadClose::Protocol => Error::InvalidClosePayload,
                    BadClose::Utf8 => Error::InvalidCloseReason,
                })?;
                h.on_close(code, reason);
                self.stop();
            }
        }
        Ok(())
    }

    /// Step 3b: a piece of a data message. Text is validated as it comes
    /// (§8.1); the piece is then delivered as a chunk, or — in
    /// [`DeliveryMode::Messages`] — the message is delivered once complete:
    /// straight from the read when nothing of it came before, otherwise
    /// from the message buffer.
    fn data_payload<H: ReceiveHandler>(
        &mut self,
        chunk: &[u8],
        frame_done: bool,
        limits: &Limits,
        h: &mut H,
    ) -> Result<(), Error> {
        let Some(open) = self.message else {
            return Err(Error::UnexpectedContinuation); // start_frame opened it
        };
        #[cfg(feature = "deflate")]
        if open.is_compressed() {
            return self.compressed_payload(chunk, frame_done, limits, h);
        }
        let text = open.is_text();
        let message_done = frame_done && self.fin;
        if text {
            self.utf8.feed(chunk).map_err(|_| Error::InvalidUtf8)?;
            if message_done {
                self.utf8.finish().map_err(|_| Error::InvalidUtf8)?;
            }
        }
        if message_done {
            self.message = None;
        }
        if limits.delivery == DeliveryMode::Chunks {
            // The first chunk of the message (empty fragments included).
            let first = !self.chunk_sent;
            self.chunk_sent = true;
            h.on_chunk(Chunk {
                text,
                data: chunk,
                first,
                last: message_done,
            });
            return Ok(());
        }
        let held = self.partial.as_ref().map_or(0, |p| p.message.len());
        if message_done && held == 0 {
            // The whole message is in this read (earlier fragments, if
            // any, were empty): no copy.
            deliver(h, text, chunk);
            return Ok(());
        }
        if !chunk.is_empty() {
            append_bounded(&mut self.partial().message, chunk, limits);
        }
        if message_done {
            if let Some(p) = self.partial.as_mut() {
                // Taken out: the buffer is freed once delivered.
                let message = std::mem::take(&mut p.message);
                deliver(h, text, &message);
            }
        }
        Ok(())
    }
}

/// Append `bytes` to the reassembly buffer, doubling its capacity as `Vec`
/// does but never past what the limits allow it to hold, so a connection at
/// [`Limits::max_message_size`] takes that much memory, not twice it.
fn append_bounded(buf: &mut Vec<u8>, bytes: &[u8], limits: &Limits) {
    let need = buf.len() + bytes.len();
    if need > buf.capacity() {
        let most = usize::try_from(limits.max_message_size)
            .unwrap_or(usize::MAX)
            .max(need);
        let target = buf.capacity().saturating_mul(2).clamp(need, most);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

fn deliver<H: ReceiveHandler>(h: &mut H, text: bool, bytes: &[u8]) {
    if text {
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: every byte of this message went through `Utf8Validator`
        // and `finish` succeeded, so `bytes` is valid UTF-8. The validator is
        // checked against `std::str::from_utf8` in unit tests, proptests and
        // the `connection` fuzz target.
        let s = unsafe { std::str::from_utf8_unchecked(bytes) };
        h.on_message(Message::Text(s));
    } else {
        h.on_message(Message::Binary(bytes));
    }
}

#[cfg(test)]
mod tests;
