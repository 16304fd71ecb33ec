//! One connection's state in the loop's slab.

use std::io;
use std::net::SocketAddr;

use super::client_options::{ClientOptions, ConnectError, Refusal};
use super::handler::Upgrade;
use super::stream::Stream;
use super::timer::Millis;
use super::url::WsUrl;
use super::write_queue::WriteQueue;
use crate::proto::extension::Accepted;
use crate::proto::handshake::{ClientHandshake, HeadBuffer, HttpRequest};
use crate::proto::{Receiver, Role, Sender};

/// Where a connection is in its life. What only one phase needs lives in
/// that phase's variant: its deadline (loop milliseconds; `Open` derives its
/// own), the heartbeat state, how the connection came to finish.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Collecting the request head (bounded by `max_head_size`; a buffer
    /// only if it arrives in pieces) until `deadline`, then `408`.
    Handshake {
        head: Option<Box<HeadBuffer>>,
        deadline: Millis,
    },
    /// The request head is in and the handler deferred its answer
    /// (`Upgrade::defer`): waiting for `Ctx::answer_upgrade` until the
    /// handshake's deadline, then `503`.
    Deferred(Box<Deferred>),
    /// A client connection (`Ctx::connect`, `connect.rs`): resolving its
    /// host off the loop, or connecting TCP to each address in turn, until
    /// the connect timeout.
    Connecting(Box<Dial>),
    /// A client connection whose upgrade request is on its way
    /// (`client_handshake.rs`): TLS for `wss://`, then the response head
    /// (and a refusal's bounded body) until the handshake timeout.
    Requested(Box<Dial>),
    /// Upgraded; frames flow both ways. `pong_due`: a heartbeat ping went
    /// out and some byte from the peer is due by then (else close 1001);
    /// `None`: the idle timer runs from the last read.
    Open { pong_due: Option<Millis> },
    /// Our close frame is sent; waiting for the peer's (RFC 6455 §7.1.2)
    /// until `deadline`. Its data is still delivered.
    Closing { deadline: Millis },
    /// Nothing more to exchange (close frames crossed, the connection
    /// failed, or an HTTP response is on its way): flush the queue, then
    /// close TCP first (§7.1.1) — at once after a complete close handshake
    /// with nothing left unread, otherwise by shutting down our side and
    /// waiting for the peer's TCP close until the deadline.
    Finishing(Finish),
}

/// An upgrade request waiting for the application's answer: what carrying
/// the answer out needs.
#[derive(Debug)]
pub(crate) struct Deferred {
    /// The request, validated (RFC 6455 §4.2.1).
    pub req: HttpRequest,
    /// The permessage-deflate agreement, settled before the handler saw
    /// the request (RFC 7692 §5).
    pub deflate: Option<Accepted>,
    /// Bytes that came after the head (a client must wait for the answer,
    /// RFC 6455 §4.1, but may not), at most `max_head_size`.
    pub rest: Vec<u8>,
    /// Bytes counted against `max_buffered_bytes`: the head's length and
    /// `rest`'s capacity.
    pub held: usize,
    /// The head's length (the constant part of `held`).
    pub head_len: usize,
    /// The handshake's deadline: unanswered by then, `503`.
    pub deadline: Millis,
    /// The answer, once given, until the loop carries it out.
    pub answer: Option<Upgrade>,
}

/// What a client connection needs until its handshake is done: the
/// `Connecting` and `Requested` phases' state (see `connect.rs`, `client_handshake.rs`).
#[derive(Debug)]
pub(crate) struct Dial {
    pub url: WsUrl,
    pub options: ClientOptions,
    /// Our side of the handshake: checks the response.
    pub hs: ClientHandshake,
    /// The upgrade request, queued once TCP is up.
    pub request: Vec<u8>,
    /// Addresses still to try, the next one last.
    pub addrs: Vec<SocketAddr>,
    /// Why the last address failed.
    pub last_error: Option<io::Error>,
    /// The phase's deadline: the connect timeout, then the handshake's.
    pub deadline: Millis,
    /// When the current address is given up for the next one: the time
    /// left shared among the addresses left, so that one that drops SYNs
    /// (a dead IPv6 route, say) does not take the whole connect timeout.
    pub attempt_deadline: Millis,
    /// The response head so far (at most `MAX_RESPONSE_HEAD` bytes).
    pub head: Vec<u8>,
    /// A response other than `101`: its body being read.
    pub refusal: Option<Refusal>,
    /// Why it failed, told to `Handler::connect_failed` at removal.
    pub error: Option<ConnectError>,
}

impl Dial {
    /// Why the handshake did not complete: the error noted, else the
    /// refusal read so far, else a connection cut during the handshake.
    pub fn failure(&mut self) -> ConnectError {
        if let Some(e) = self.error.take() {
            return e;
        }
        if let Some(r) = self.refusal.take() {
            return r.into_error();
        }
        ConnectError::Handshake("connection closed during the handshake")
    }
}

/// What the `Finishing` phase knows: how the connection got there and how
/// far its TCP close has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finish {
    /// Given up then (the close timeout, or the shutdown deadline).
    pub deadline: Millis,
    /// It was upgraded: the handler saw `open`, so it will see `close`
    /// (false after a plain HTTP response or a refused upgrade).
    pub upgraded: bool,
    /// The peer's close frame came first (the close was the peer's).
    pub by_peer: bool,
    /// Our write side is shut down (the queue was flushed).
    pub write_shut: bool,
    /// The peer closed its side of TCP while we were still flushing.
    pub peer_eof: bool,
}

impl Phase {
    /// Open: upgraded, and no close frame either way yet.
    pub fn is_open(&self) -> bool {
        matches!(self, Phase::Open { .. })
    }

    /// Upgraded (the handler saw `open`, so it will see `close`).
    pub fn upgraded(&self) -> bool {
        match self {
            Phase::Handshake { .. }
            | Phase::Deferred(_)
            | Phase::Connecting(_)
            | Phase::Requested(_) => false,
            Phase::Open { .. } | Phase::Closing { .. } => true,
            Phase::Finishing(f) => f.upgraded,
        }
    }
}

/// Capacity of the request head buffer in `phase` (0 outside the
/// handshake, or when the head came in one read), or what a deferred
/// upgrade holds.
pub(crate) fn head_capacity(phase: &Phase) -> usize {
    match phase {
        Phase::Handshake {
            head: Some(buf), ..
        } => buf.capacity(),
        Phase::Deferred(d) => d.held,
        _ => 0,
    }
}

/// A connection. Kept small: an idle open connection owns no heap memory.
/// Besides the phase, its flags are the loop's bookkeeping, which holds in
/// every phase (list membership, flow control, teardown).
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: Stream,
    pub gen: u32,
    pub phase: Phase,
    pub rx: Receiver,
    pub tx: Sender,
    pub wq: WriteQueue,
    /// Queue length just after the last data message was queued. A message
    /// is taken whole below `max_queued_bytes`, so data alone may pass that
    /// limit; the control reserve counts from the higher of the two.
    pub data_mark: usize,
    /// Time of the last read (idle timer base) or of accept.
    pub last_read: Millis,
    /// Deadline of this connection's live entry in the timer heap (0: none).
    pub heap_at: Millis,
    /// The close code to report (0 until a close frame went either way).
    pub close_code: u16,
    /// In the loop's flush list.
    pub dirty: bool,
    /// A send reported backpressure; a drain event is owed.
    pub backpressured: bool,
    /// Reading stopped because the queue is over its limit.
    pub read_paused: bool,
    /// Reading stopped by the application (`Ctx::pause_reading`), whatever
    /// the queue does, until `Ctx::resume_reading`. Holds while the
    /// handshake runs and while open: a connection that starts closing has
    /// it lifted (`Core::close`, `Core::finish`), so the close handshake
    /// can complete.
    pub app_paused: bool,
    /// The receiver held a buffer after its last input (so its capacity
    /// is worth asking before the next; see `read::feed`).
    pub rx_held: bool,
    /// On the loop's list of connections to read again next turn (their
    /// read budget ran out).
    pub unread: bool,
    /// Tear down without further writes (peer not reading at all, I/O error).
    pub abort: bool,
    /// The last flush could not write the whole queue: the peer is not
    /// keeping up, so `max_queued_bytes` binds at once (see
    /// `Core::queue_full`).
    pub backlogged: bool,
    /// permessage-deflate was agreed: counted while the connection lives
    /// (frames carry compressed encodings only while some peer can use
    /// them).
    #[cfg(feature = "deflate")]
    pub deflate_peer: Option<super::compressed_frame::DeflatePeer>,
}

impl Conn {
    /// A just-accepted connection (at loop time `now`) waiting for its
    /// request head until `deadline`. Nothing is allocated.
    pub fn new(stream: Stream, gen: u32, now: Millis, deadline: Millis) -> Conn {
        Conn {
            stream,
            gen,
            phase: Phase::Handshake {
                head: None,
                deadline,
            },
            rx: Receiver::new(Role::Server),
            tx: Sender::new(Role::Server),
            wq: WriteQueue::default(),
            data_mark: 0,
            last_read: now,
            heap_at: 0,
            close_code: 0,
            dirty: false,
            backpressured: false,
            read_paused: false,
            app_paused: false,
            rx_held: false,
            unread: false,
            abort: false,
            backlogged: false,
            #[cfg(feature = "deflate")]
            deflate_peer: None,
        }
    }

    /// The peer closed its side of TCP while we were finishing.
    pub fn peer_eof(&self) -> bool {
        matches!(self.phase, Phase::Finishing(f) if f.peer_eof)
    }

    /// Input bytes this connection holds, as counted against
    /// `Config::max_buffered_bytes`: the message being reassembled and a
    /// request head collected in pieces (their buffers' capacity).
    pub fn held(&self) -> usize {
        self.rx.buffer_capacity() + head_capacity(&self.phase)
    }

    /// Whether a writable socket gives this connection anything to do:
    /// queued bytes, TLS records, a drain event owed, a paused read to
    /// resume, or the end of its life. (Every readiness event says "writable"
    /// while the send buffer has room; listing the connection for nothing
    /// would cost a flush.)
    pub fn wants_flush(&self) -> bool {
        !self.wq.is_empty()
            || self.stream.is_tls()
            || self.backpressured
            || self.read_paused
            || self.abort
            || matches!(self.phase, Phase::Finishing(_) | Phase::Connecting(_))
    }
}

#[cfg(test)]
mod tests {
    /// The per-connection state is what an idle connection costs (besides
    /// one timer-heap entry); keep it small.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        // Debug builds of mio carry a selector id in every socket, which
        // leaves `Stream` (plain, TLS, or no socket yet) no niche for its
        // tag: 8 bytes more there, none in release.
        let limit = if cfg!(debug_assertions) { 200 } else { 192 };
        assert!(size <= limit, "Conn grew to {size} bytes");
        if !cfg!(debug_assertions) {
            assert!(std::mem::size_of::<super::Stream>() <= 16);
        }
        assert!(std::mem::size_of::<crate::proto::Receiver>() <= 48);
    }
}
