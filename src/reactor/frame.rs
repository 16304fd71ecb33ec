//! What goes out: a message framed once and shared among recipients
//! ([`Frame`]), and what became of a send ([`SendStatus`]).

use std::sync::Arc;

use crate::proto::frame::EncodedHeader;
use crate::proto::{Message, OpCode};

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the queue is below the backpressure limit.
    Sent,
    /// Queued, but the queue is above [`super::Config::backpressure_limit`]:
    /// slow down. [`super::Handler::drain`] follows when it falls below again.
    Backpressured,
    /// Not queued: the queue is at [`super::Config::max_queued_bytes`]. With
    /// [`super::FullQueuePolicy::Close`] the connection is being closed too.
    Dropped,
    /// Not queued: the connection is closed, closing, or the id is stale.
    Closed,
}

/// A message framed once and shared: no recipient re-frames it. A queue
/// references the bytes, or copies them into its buffer when the frame is at
/// most [`COPY_SHARED_MAX`](super::write_queue::COPY_SHARED_MAX) bytes
/// (cheaper than a reference for small frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub(crate) bytes: Arc<[u8]>,
}

impl Frame {
    /// Frame a whole message (server role: unmasked).
    pub fn new(msg: Message<'_>) -> Self {
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let payload = msg.as_bytes();
        let h = EncodedHeader::new(true, op, None, payload.len() as u64);
        let mut v = Vec::with_capacity(h.as_bytes().len() + payload.len());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(payload);
        Frame { bytes: v.into() }
    }

    /// Frame a text message.
    pub fn text(s: &str) -> Self {
        Frame::new(Message::Text(s))
    }

    /// Frame a binary message.
    pub fn binary(b: &[u8]) -> Self {
        Frame::new(Message::Binary(b))
    }

    /// Several framed messages as one unit, sent back to back: a queue
    /// takes them with one reference instead of one copy per message (how
    /// the hub queues a burst of deliveries to each subscriber). The bytes
    /// are copied once here; one frame is returned as itself, none gives an
    /// empty unit that sends nothing.
    pub fn batch(frames: &[Frame]) -> Self {
        if let [one] = frames {
            return one.clone();
        }
        let len = frames.iter().map(|f| f.bytes.len()).sum();
        let mut v = Vec::with_capacity(len);
        for f in frames {
            v.extend_from_slice(&f.bytes);
        }
        Frame { bytes: v.into() }
    }

    /// The encoded frame (or frames, for a [`Frame::batch`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
