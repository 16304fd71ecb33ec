//! What goes out: a message framed once and shared among recipients
//! ([`Frame`]), and what became of a send ([`SendStatus`]).

use std::sync::Arc;

#[cfg(feature = "deflate")]
use super::compressed_frame::Encodings;

use crate::proto::frame::EncodedHeader;
use crate::proto::{Message, OpCode};

/// What became of a send. Worth a look: `Dropped` means the message is
/// lost (the queue was full), `Backpressured` that the peer reads slower
/// than you send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a send may be dropped (full queue) or refused (closed connection)"]
#[non_exhaustive]
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
/// most 512 bytes (cheaper than a reference for small frames).
///
/// With the `deflate` feature, a frame of at least 64 payload bytes is
/// also compressed once for every connection that agreed to
/// permessage-deflate (RFC 7692): on the loop thread, the first time it
/// goes to such a connection, and kept with the frame (and its clones) for
/// the next ones. Connections without the extension get the plain bytes.
/// A frame made while no connection of the process had agreed to the
/// extension carries nothing for it (no allocation) and goes plain to
/// every connection.
/// A frame is `Send` and `Sync`: [`super::Handle`]s take frames from other
/// threads.
///
/// ```
/// use wsmio::{ConnId, Ctx, Frame, SendStatus};
///
/// // One frame for a whole room: framed here, once.
/// fn announce(ctx: &mut Ctx<'_>, room: &[ConnId], text: &str) -> usize {
///     let frame = Frame::text(text);
///     room.iter()
///         .filter(|&&id| matches!(ctx.send_frame(id, &frame), SendStatus::Sent))
///         .count()
/// }
/// // The bytes on the wire (server role: unmasked, RFC 6455 §5.2).
/// assert_eq!(Frame::text("hi").as_bytes(), [0x81, 0x02, b'h', b'i']);
/// ```
#[derive(Clone)]
pub struct Frame {
    pub(crate) bytes: Arc<[u8]>,
    /// Compressed encodings, made on first use (`compressed_frame.rs`).
    #[cfg(feature = "deflate")]
    pub(crate) compressed: Option<Arc<Encodings>>,
}

/// Two frames are equal when their bytes on the wire (uncompressed) are.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("bytes", &self.bytes).finish()
    }
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
        Frame {
            bytes: v.into(),
            #[cfg(feature = "deflate")]
            compressed: Encodings::message(msg.is_text(), h.as_bytes().len(), payload.len()),
        }
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
    /// empty unit that sends nothing. Compressed (feature `deflate`), the
    /// unit is its members' compressed frames, each made once per member.
    pub fn batch(frames: &[Frame]) -> Self {
        if let [one] = frames {
            return one.clone();
        }
        let len = frames.iter().map(|f| f.bytes.len()).sum();
        let mut v = Vec::with_capacity(len);
        for f in frames {
            v.extend_from_slice(&f.bytes);
        }
        Frame {
            bytes: v.into(),
            #[cfg(feature = "deflate")]
            compressed: Encodings::batch(frames),
        }
    }

    /// The encoded frame (or frames, for a [`Frame::batch`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
