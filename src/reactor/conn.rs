//! One connection's state in the loop's slab.

use super::stream::Stream;
use super::timer::Millis;
use super::write_queue::WriteQueue;
use crate::proto::handshake::HeadBuffer;
use crate::proto::{Receiver, Role, Sender};

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Collecting the request head (bounded by `max_head_size`); a buffer
    /// only if it arrives in pieces.
    Handshake(Option<Box<HeadBuffer>>),
    /// Upgraded; frames flow both ways.
    Open,
    /// Our close frame is sent; waiting for the peer's (RFC 6455 §7.1.2).
    /// Its data is still delivered.
    Closing,
    /// Nothing more to exchange (close frames crossed, the connection
    /// failed, or an HTTP response is on its way): flush the queue, then
    /// close TCP first (§7.1.1) — at once after a complete close handshake
    /// with nothing left unread, otherwise by shutting down our side and
    /// waiting for the peer's TCP close up to the close timeout.
    Finishing,
}

/// A connection. Kept small: an idle open connection owns no heap memory.
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
    /// Explicit deadline of the current phase (handshake, pong, close).
    pub deadline: Millis,
    /// Deadline of this connection's live entry in the timer heap (0: none).
    pub heap_at: Millis,
    /// The close code to report (0 until a close frame went either way).
    pub close_code: u16,
    pub ping_sent: bool,
    pub by_peer: bool,
    /// Upgraded (the handler saw `open`, so it will see `close`).
    pub opened: bool,
    /// In the loop's flush list.
    pub dirty: bool,
    /// A send reported backpressure; a drain event is owed.
    pub backpressured: bool,
    /// Reading stopped because the queue is over its limit.
    pub read_paused: bool,
    /// On the loop's list of connections to read again next turn (their
    /// read budget ran out).
    pub unread: bool,
    /// Our write side is shut down (Finishing, queue flushed).
    pub write_shut: bool,
    /// The peer closed its side of TCP while we were still flushing.
    pub peer_eof: bool,
    /// Tear down without further writes (peer not reading at all, I/O error).
    pub abort: bool,
}

impl Conn {
    /// A just-accepted connection (at loop time `now`) waiting for its
    /// request head until `deadline`. Nothing is allocated.
    pub fn new(stream: Stream, gen: u32, now: Millis, deadline: Millis) -> Conn {
        Conn {
            stream,
            gen,
            phase: Phase::Handshake(None),
            rx: Receiver::new(Role::Server),
            tx: Sender::new(Role::Server),
            wq: WriteQueue::default(),
            data_mark: 0,
            last_read: now,
            deadline,
            heap_at: 0,
            close_code: 0,
            ping_sent: false,
            by_peer: false,
            opened: false,
            dirty: false,
            backpressured: false,
            read_paused: false,
            unread: false,
            write_shut: false,
            peer_eof: false,
            abort: false,
        }
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
            || matches!(self.phase, Phase::Finishing)
    }
}

#[cfg(test)]
mod tests {
    /// The per-connection state is what an idle connection costs (besides
    /// one timer-heap entry); keep it small.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<super::Conn>();
        assert!(size <= 192, "Conn grew to {size} bytes");
        assert!(std::mem::size_of::<crate::proto::Receiver>() <= 48);
    }
}
