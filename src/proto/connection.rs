//! The protocol core: one place where what the peer sends meets the write
//! side, and the RFC's automatic replies are decided — a pong for every ping
//! (§5.5.2), the close reply (§5.5.1), and a close frame with the right code
//! when the peer violates the protocol (§7.1.7).
//!
//! [`receive`] runs bytes through a [`Receiver`] and answers through a
//! [`Sink`], which supplies the connection's [`Sender`] and takes the
//! replies and the events. It has two front-ends (as rustls puts one
//! `ConnectionCore` under both of its connection types):
//!
//! - [`Connection`], the smallest complete sans-IO WebSocket: its own output
//!   buffer, events to a closure. Output accumulates until the caller drains
//!   it ([`Connection::output`], [`Connection::consume_output`]); its size is
//!   bounded only by draining it after each `receive`. The fuzzers and
//!   property tests drive it.
//! - the reactor (`reactor/read.rs`): replies go to the connection's write
//!   queue, messages to the application's handler as slices of the loop's
//!   read buffer, and the handler may send on the same connection meanwhile
//!   — which is why the core reaches the sender through the sink instead of
//!   holding it. `examples/autobahn_client.rs` is a third, as a client.
//!
//! It owns no socket and reads no clock; timers belong to the caller.
//!
//! permessage-deflate (RFC 7692) needs nothing here: the receiver inflates
//! and the sender compresses, each built for the negotiated parameters
//! (`Receiver::with_deflate`, `Sender::with_deflate`, or
//! `Connection::with_deflate` for both), and the automatic replies are
//! control frames, never compressed (§6).

use super::close::{CloseCode, CloseState};
#[cfg(feature = "deflate")]
use super::deflate::Compression;
use super::error::Error;
#[cfg(feature = "deflate")]
use super::extension::DeflateParams;
use super::frame::{OpCode, Role};
use super::limits::Limits;
use super::receiver::{Chunk, Message, ReceiveHandler, Receiver};
use super::sender::{ControlFrame, Sender};

/// What a front-end gives the protocol core while it reads the peer's bytes
/// ([`receive`]): the connection's write side, a place for the automatic
/// replies, and somewhere for the events to go.
pub trait Sink {
    /// The connection's write side (`None` if the connection is gone).
    /// Automatic replies are framed with it, so they follow its rules:
    /// nothing after our close frame (§5.5.1), masked in the client role.
    fn sender(&mut self) -> Option<&mut Sender>;

    /// Queue an automatic reply: a pong, the close reply, or the close frame
    /// that fails the connection. It must not be dropped for a full queue.
    fn send_control(&mut self, frame: &ControlFrame);

    /// A complete data message ([`super::DeliveryMode::Messages`]).
    fn on_message(&mut self, msg: Message<'_>);

    /// A piece of a data message ([`super::DeliveryMode::Chunks`]).
    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        let _ = chunk;
    }

    /// A ping arrived; its pong is already queued.
    fn on_ping(&mut self, payload: &[u8]) {
        let _ = payload;
    }

    /// A pong arrived (§5.5.3; may be unsolicited).
    fn on_pong(&mut self, payload: &[u8]) {
        let _ = payload;
    }

    /// The peer's close frame arrived, valid; our reply, if one is due, is
    /// already queued. Nothing more will be read.
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        let _ = (code, reason);
    }
}

/// Read `input` (unmasked in place) through `rx` and answer as RFC 6455
/// requires, through `sink`: the pong for each ping, the close reply, and on
/// a protocol violation the close frame with the violation's code, before
/// the error is returned. Events go to `sink` after their reply is queued.
/// Nothing more is read after the peer's close frame or a violation.
#[inline]
pub fn receive<S: Sink>(
    rx: &mut Receiver,
    input: &mut [u8],
    limits: &Limits,
    sink: &mut S,
) -> Result<(), Error> {
    let r = rx.receive(input, limits, &mut Replies(&mut *sink));
    if let Err(e) = r {
        // RFC 6455 §7.1.7: _Fail the WebSocket Connection_ with the code for
        // the violation (none if our close frame is already out).
        if let Some(f) = sink.sender().and_then(|tx| tx.fail(e)) {
            sink.send_control(&f);
        }
    }
    r
}

/// The receiver's events, with the automatic replies applied on the way to
/// the sink.
struct Replies<'a, S>(&'a mut S);

impl<S: Sink> ReceiveHandler for Replies<'_, S> {
    #[inline]
    fn on_message(&mut self, msg: Message<'_>) {
        self.0.on_message(msg);
    }

    #[inline]
    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        self.0.on_chunk(chunk);
    }

    fn on_ping(&mut self, payload: &[u8]) {
        // RFC 6455 §5.5.2: answer with a pong with the same payload (none
        // once our close frame is out).
        if let Some(f) = self.0.sender().and_then(|tx| tx.pong(payload)) {
            self.0.send_control(&f);
        }
        self.0.on_ping(payload);
    }

    fn on_pong(&mut self, payload: &[u8]) {
        self.0.on_pong(payload);
    }

    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        // RFC 6455 §5.5.1: reply with a close frame echoing the code, unless
        // ours was sent already (then the handshake is complete).
        if let Some(f) = self.0.sender().and_then(|tx| tx.close_reply(code)) {
            self.0.send_control(&f);
        }
        self.0.on_close(code, reason);
    }
}

/// What [`Connection::receive`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message.
    Message(Message<'a>),
    /// A data chunk ([`super::DeliveryMode::Chunks`] mode).
    Chunk(Chunk<'a>),
    /// A ping (the pong is already queued).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (our reply, if due, is already queued).
    Close {
        /// The code, if the frame had one.
        code: Option<CloseCode>,
        /// The reason (valid UTF-8).
        reason: &'a str,
    },
}

/// A WebSocket connection in either role, after the opening handshake, with
/// its own output buffer: the buffered front-end of [`receive`].
///
/// ```
/// use wsmio::proto::{CloseCode, CloseState, Connection, Event, Limits, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Limits::default());
/// let mut server = Connection::new(Role::Server, Limits::default());
/// // What one writes the other reads; here the "socket" is a Vec.
/// fn carry(from: &mut Connection) -> Vec<u8> {
///     let bytes = from.output().to_vec();
///     from.consume_output(bytes.len());
///     bytes
/// }
///
/// client.send(Message::Text("hello")).unwrap();
/// client.ping(b"still there?").unwrap();
/// let mut got = Vec::new();
/// server
///     .receive(&mut carry(&mut client), |ev| got.push(format!("{ev:?}")))
///     .unwrap();
/// assert_eq!(got[0], r#"Message(Text("hello"))"#);
///
/// // The server's pong was queued by the core (RFC 6455 §5.5.2).
/// let mut pong = None;
/// client
///     .receive(&mut carry(&mut server), |ev| {
///         if let Event::Pong(p) = ev {
///             pong = Some(p.to_vec());
///         }
///     })
///     .unwrap();
/// assert_eq!(pong.as_deref(), Some(&b"still there?"[..]));
///
/// // The close handshake: the client's reply is automatic too (§5.5.1).
/// server.close(Some(CloseCode::NORMAL), "bye").unwrap();
/// client.receive(&mut carry(&mut server), |_| {}).unwrap();
/// server.receive(&mut carry(&mut client), |_| {}).unwrap();
/// assert_eq!(server.close_state(), CloseState::Closed);
/// ```
#[derive(Debug)]
pub struct Connection {
    rx: Receiver,
    limits: Limits,
    tx: Sender,
    out: Vec<u8>,
    out_pos: usize,
}

/// [`Connection`]'s sink: replies into its output buffer, events to the
/// caller's closure.
struct Buffered<'a, F> {
    tx: &'a mut Sender,
    out: &'a mut Vec<u8>,
    f: F,
}

impl<F: FnMut(Event<'_>)> Sink for Buffered<'_, F> {
    fn sender(&mut self) -> Option<&mut Sender> {
        Some(self.tx)
    }
    fn send_control(&mut self, frame: &ControlFrame) {
        self.out.extend_from_slice(frame.as_bytes());
    }
    fn on_message(&mut self, msg: Message<'_>) {
        (self.f)(Event::Message(msg));
    }
    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        (self.f)(Event::Chunk(chunk));
    }
    fn on_ping(&mut self, payload: &[u8]) {
        (self.f)(Event::Ping(payload));
    }
    fn on_pong(&mut self, payload: &[u8]) {
        (self.f)(Event::Pong(payload));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        (self.f)(Event::Close { code, reason });
    }
}

impl Connection {
    /// A connection for `role` with read `limits`.
    pub fn new(role: Role, limits: Limits) -> Self {
        Connection::from_parts(Receiver::new(role), Sender::new(role), limits)
    }

    /// A connection for `role` that negotiated permessage-deflate with
    /// `params` (RFC 7692 §7.1): compressed messages are inflated within
    /// `limits`, and [`Connection::send`] compresses as `compression` says.
    ///
    /// ```
    /// use wsmio::proto::deflate::Compression;
    /// use wsmio::proto::extension::{negotiate_client, negotiate_server, DeflateConfig, Offer};
    /// use wsmio::proto::{Connection, Event, Limits, Message, Role};
    ///
    /// // The handshake: the client's offer, the server's answer.
    /// let offer = Offer::from_config(&DeflateConfig::default());
    /// let accepted = negotiate_server([offer.header_value().as_bytes()], &DeflateConfig::default())
    ///     .unwrap()
    ///     .unwrap();
    /// let answer = accepted.response.header_value();
    /// let agreed = negotiate_client(&offer, [answer.as_bytes()]).unwrap().unwrap();
    ///
    /// let mut server = Connection::with_deflate(Role::Server, Limits::default(), accepted.params, Compression::default());
    /// let mut client = Connection::with_deflate(Role::Client, Limits::default(), agreed, Compression::default());
    /// let text = "a JSON-like message, ".repeat(8);
    /// client.send(Message::Text(&text)).unwrap();
    /// let mut wire = client.output().to_vec();
    /// assert!(wire.len() < text.len()); // compressed, header and mask included
    /// let mut got = String::new();
    /// server.receive(&mut wire, |e| if let Event::Message(Message::Text(t)) = e { got = t.into() }).unwrap();
    /// assert_eq!(got, text);
    /// ```
    #[cfg(feature = "deflate")]
    pub fn with_deflate(
        role: Role,
        limits: Limits,
        params: DeflateParams,
        compression: Compression,
    ) -> Self {
        Connection::from_parts(
            Receiver::with_deflate(role, params),
            Sender::with_deflate(role, params, compression),
            limits,
        )
    }

    /// A connection from a receiver and sender (e.g. a client sender with a
    /// fixed mask for reproducible tests) and read limits.
    pub fn from_parts(rx: Receiver, tx: Sender, limits: Limits) -> Self {
        Connection {
            rx,
            limits,
            tx,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Feed received bytes (unmasked in place). Events go to `on_event`;
    /// automatic replies go to the output (see [`receive`]). On a protocol
    /// violation the close frame with the error's code is queued and the
    /// error returned.
    pub fn receive(
        &mut self,
        input: &mut [u8],
        on_event: impl FnMut(Event<'_>),
    ) -> Result<(), Error> {
        let mut sink = Buffered {
            tx: &mut self.tx,
            out: &mut self.out,
            f: on_event,
        };
        let r = receive(&mut self.rx, input, &self.limits, &mut sink);
        if r.is_err() {
            // Nothing more will be read: no close reply is awaited.
            self.tx.mark_closed();
        }
        r
    }

    /// Queue a whole message: compressed if permessage-deflate was
    /// negotiated and the message is long enough (see
    /// [`Sender::encode_message`]).
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.tx.encode_message(msg, &mut self.out)
    }

    /// Queue one frame of a fragmented message, uncompressed (see
    /// [`Sender::data_header`]).
    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<(), Error> {
        self.tx.encode_data(opcode, fin, payload, &mut self.out)
    }

    /// Queue one frame of a fragmented message, compressed if
    /// permessage-deflate was negotiated (see
    /// [`Sender::encode_compressed_data`]).
    #[cfg(feature = "deflate")]
    pub fn send_compressed_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        part: &[u8],
    ) -> Result<(), Error> {
        self.tx
            .encode_compressed_data(opcode, fin, part, &mut self.out)
    }

    /// Queue a ping.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let f = self.tx.ping(payload)?;
        self.out.extend_from_slice(f.as_bytes());
        Ok(())
    }

    /// Start the close handshake.
    pub fn close(&mut self, code: Option<CloseCode>, reason: &str) -> Result<(), Error> {
        let f = self.tx.close(code, reason)?;
        self.out.extend_from_slice(f.as_bytes());
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// Mark `n` output bytes as written (an offset cursor: no memmove).
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = self.out_pos.saturating_add(n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// The close handshake state.
    pub fn close_state(&self) -> CloseState {
        self.tx.close_state()
    }

    /// Nothing more will be read (close received or input invalid).
    pub fn is_read_closed(&self) -> bool {
        self.rx.is_done()
    }

    /// The read side, for inspection.
    pub fn receiver(&self) -> &Receiver {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DeliveryMode;

    /// A masked frame with first byte `b0` (FIN + opcode), as a client sends it.
    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let opcode = OpCode::from_bits(b0 & 0x0f).unwrap();
        let h = crate::proto::frame::EncodedHeader::new(
            b0 & 0x80 != 0,
            opcode,
            Some(key),
            payload.len() as u64,
        );
        let mut out = h.as_bytes().to_vec();
        let start = out.len();
        out.extend_from_slice(payload);
        crate::proto::mask::apply_mask(&mut out[start..], key, 0);
        out
    }

    fn collect(c: &mut Connection, bytes: &[u8]) -> (Vec<String>, Result<(), Error>) {
        let mut ev = Vec::new();
        let mut b = bytes.to_vec();
        let r = c.receive(&mut b, |e| ev.push(format!("{e:?}")));
        (ev, r)
    }

    #[test]
    fn echo_ping_and_close() {
        let mut c = Connection::new(Role::Server, Limits::default());
        let mut input = masked(0x81, b"Hello");
        input.extend(masked(0x89, b"hb"));
        let (ev, r) = collect(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(ev, ["Message(Text(\"Hello\"))", "Ping([104, 98])"]);
        assert_eq!(c.output(), [0x8a, 0x02, b'h', b'b']);
        c.consume_output(4);
        // Close with 1000 is echoed.
        let mut s = Sender::client_with_fixed_mask([9, 9, 9, 9]);
        let f = s.close(Some(CloseCode::NORMAL), "").unwrap();
        let (_, r) = collect(&mut c, f.as_bytes());
        assert!(r.is_ok());
        assert_eq!(c.output(), [0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(c.close_state(), CloseState::Closed);
        assert_eq!(c.send(Message::Text("late")), Err(Error::AlreadyClosed));
    }

    #[test]
    fn violation_sends_the_right_close_code() {
        let mut c = Connection::new(Role::Server, Limits::default());
        let (_, r) = collect(&mut c, &[0x81, 0x00]); // unmasked
        assert_eq!(r, Err(Error::UnmaskedFrame));
        assert_eq!(&c.output()[..4], [0x88, c.output()[1], 0x03, 0xea]);
        // Bad UTF-8 → 1007.
        let mut c = Connection::new(Role::Server, Limits::default());
        let (_, r) = collect(&mut c, &masked(0x81, b"\xff"));
        assert_eq!(r, Err(Error::InvalidUtf8));
        assert_eq!(&c.output()[2..4], 1007u16.to_be_bytes());
    }

    #[test]
    fn fragments_with_interleaved_ping_and_size_limit() {
        let limits = Limits {
            max_message_size: 8,
            ..Limits::default()
        };
        let mut c = Connection::new(Role::Server, limits);
        let mut input = masked(0x01, b"Hel");
        input.extend(masked(0x89, b""));
        input.extend(masked(0x80, b"lo"));
        let (ev, r) = collect(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(ev, ["Ping([])", "Message(Text(\"Hello\"))"]);
        let mut input = masked(0x02, b"12345");
        input.extend(masked(0x80, b"6789"));
        let (_, r) = collect(&mut c, &input);
        assert_eq!(r, Err(Error::MessageTooBig));
    }

    #[test]
    fn chunk_delivery() {
        let limits = Limits {
            delivery: DeliveryMode::Chunks,
            ..Limits::default()
        };
        let mut c = Connection::new(Role::Server, limits);
        let input = masked(0x82, b"abcdef");
        let mut ev = Vec::new();
        for piece in input.chunks(4) {
            let mut p = piece.to_vec();
            c.receive(&mut p, |e| {
                if let Event::Chunk(ch) = e {
                    ev.push((ch.data.to_vec(), ch.first, ch.last));
                }
            })
            .unwrap();
        }
        let joined: Vec<u8> = ev.iter().flat_map(|e| e.0.clone()).collect();
        assert_eq!(joined, b"abcdef");
        assert!(ev.first().unwrap().1 && ev.last().unwrap().2);
    }

    /// A sink of another front-end: replies in the order they are due,
    /// between the events, through a sender that may be gone.
    struct Log {
        tx: Option<Sender>,
        seen: Vec<String>,
    }

    impl Sink for Log {
        fn sender(&mut self) -> Option<&mut Sender> {
            self.tx.as_mut()
        }
        fn send_control(&mut self, frame: &ControlFrame) {
            self.seen.push(format!("reply {:02x?}", frame.as_bytes()));
        }
        fn on_message(&mut self, msg: Message<'_>) {
            self.seen.push(format!("{msg:?}"));
        }
        fn on_ping(&mut self, payload: &[u8]) {
            self.seen.push(format!("ping {payload:?}"));
        }
        fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
            self.seen.push(format!("close {code:?}"));
        }
    }

    #[test]
    fn the_core_replies_through_any_sink() {
        let mut input = masked(0x89, b"p");
        input.extend(masked(0x82, b"m"));
        input.extend(masked(0x88, &[0x03, 0xe8]));
        let mut sink = Log {
            tx: Some(Sender::new(Role::Server)),
            seen: Vec::new(),
        };
        let mut rx = Receiver::new(Role::Server);
        receive(&mut rx, &mut input.clone(), &Limits::default(), &mut sink).unwrap();
        assert_eq!(
            sink.seen,
            [
                "reply [8a, 01, 70]",
                "ping [112]",
                "Binary([109])",
                "reply [88, 02, 03, e8]",
                "close Some(CloseCode(1000))",
            ]
        );
        // A connection that is gone: the events, no replies.
        sink.tx = None;
        sink.seen.clear();
        let mut rx = Receiver::new(Role::Server);
        receive(&mut rx, &mut input, &Limits::default(), &mut sink).unwrap();
        assert_eq!(
            sink.seen,
            ["ping [112]", "Binary([109])", "close Some(CloseCode(1000))"]
        );
        // A violation: the failure's close frame, then the error.
        sink.tx = Some(Sender::new(Role::Server));
        sink.seen.clear();
        let mut rx = Receiver::new(Role::Server);
        let r = receive(
            &mut rx,
            &mut masked(0x81, b"\xff"),
            &Limits::default(),
            &mut sink,
        );
        assert_eq!(r, Err(Error::InvalidUtf8));
        assert_eq!(sink.seen.len(), 1);
        assert!(sink.seen[0].starts_with("reply [88, "), "{:?}", sink.seen);
        assert_eq!(
            sink.tx.map(|t| t.close_state()),
            Some(CloseState::SentClose)
        );
    }

    #[test]
    fn client_role_rejects_masked_frames() {
        let mut c = Connection::new(Role::Client, Limits::default());
        let (_, r) = collect(&mut c, &masked(0x81, b"x"));
        assert_eq!(r, Err(Error::MaskedFrame));
        let mut c = Connection::new(Role::Client, Limits::default());
        let (ev, r) = collect(&mut c, &[0x81, 0x02, b'h', b'i']);
        assert!(r.is_ok());
        assert_eq!(ev, ["Message(Text(\"hi\"))"]);
        // Its own frames are masked.
        c.send(Message::Binary(b"x")).unwrap();
        assert_eq!(c.output()[1] & 0x80, 0x80);
    }
}
