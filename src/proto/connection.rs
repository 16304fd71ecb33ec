//! A complete sans-IO WebSocket connection after the handshake: bytes in,
//! events and bytes out.
//!
//! [`Connection`] joins a [`Receiver`] and a [`Sender`] and applies the RFC's
//! automatic replies: a pong for every ping (§5.5.2), the close reply
//! (§5.5.1), and a close frame with the right code when the peer violates the
//! protocol (§7.1.7). Output accumulates in an internal buffer that the
//! caller drains ([`Connection::output`], [`Connection::consume_output`]);
//! its size is bounded only by draining it after each `receive` (the reactor
//! applies its own queue limits instead), and [`Connection::output`] shows
//! how much is waiting.
//! It owns no socket and reads no clock; timers belong to the caller.
//!
//! The reactor uses [`Receiver`] and [`Sender`] directly (its queues give
//! copy-free sends), calling the same [`Sender`] rules.

use super::close::{CloseCode, CloseState};
use super::error::Error;
use super::frame::{OpCode, Role};
use super::limits::Limits;
use super::receiver::{Chunk, Handler, Message, Receiver};
use super::sender::Sender;

/// What [`Connection::receive`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message.
    Message(Message<'a>),
    /// A data chunk ([`super::Delivery::Chunks`] mode).
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

/// A WebSocket connection in either role, after the opening handshake.
#[derive(Debug)]
pub struct Connection {
    rx: Receiver,
    limits: Limits,
    tx: Sender,
    out: Vec<u8>,
    out_pos: usize,
}

struct Auto<'a, F> {
    tx: &'a mut Sender,
    out: &'a mut Vec<u8>,
    f: F,
}

impl<F: FnMut(Event<'_>)> Handler for Auto<'_, F> {
    fn on_message(&mut self, msg: Message<'_>) {
        (self.f)(Event::Message(msg));
    }
    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        (self.f)(Event::Chunk(chunk));
    }
    fn on_ping(&mut self, payload: &[u8]) {
        // RFC 6455 §5.5.2: answer with a pong with the same payload.
        if let Some(f) = self.tx.pong(payload) {
            self.out.extend_from_slice(f.as_bytes());
        }
        (self.f)(Event::Ping(payload));
    }
    fn on_pong(&mut self, payload: &[u8]) {
        (self.f)(Event::Pong(payload));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        // RFC 6455 §5.5.1: reply with a close frame (echoing the code) unless
        // ours was sent already.
        if let Some(f) = self.tx.close_reply(code) {
            self.out.extend_from_slice(f.as_bytes());
        }
        (self.f)(Event::Close { code, reason });
    }
}

impl Connection {
    /// A connection for `role` with read `limits`.
    pub fn new(role: Role, limits: Limits) -> Self {
        Connection::from_parts(Receiver::new(role), Sender::new(role), limits)
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
    /// automatic replies go to the output. On a protocol violation the close
    /// frame with the error's code is queued and the error returned.
    pub fn receive(
        &mut self,
        input: &mut [u8],
        on_event: impl FnMut(Event<'_>),
    ) -> Result<(), Error> {
        let mut auto = Auto {
            tx: &mut self.tx,
            out: &mut self.out,
            f: on_event,
        };
        let r = self.rx.receive(input, &self.limits, &mut auto);
        if let Err(e) = r {
            // RFC 6455 §7.1.7: _Fail the WebSocket Connection_.
            if let Some(f) = self.tx.fail(e) {
                self.out.extend_from_slice(f.as_bytes());
            }
            // Nothing more will be read: no close reply is awaited.
            self.tx.mark_closed();
        }
        r
    }

    /// Queue a whole message.
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), Error> {
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        self.tx.encode_data(op, true, msg.as_bytes(), &mut self.out)
    }

    /// Queue one frame of a fragmented message (see [`Sender::data_header`]).
    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<(), Error> {
        self.tx.encode_data(opcode, fin, payload, &mut self.out)
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
    use crate::proto::Delivery;

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
            delivery: Delivery::Chunks,
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
