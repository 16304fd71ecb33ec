//! Deliveries held back while one read is handled, so that each subscriber's
//! queue takes them in one piece.
//!
//! A publisher that pipelines N publishes to a topic produces N deliveries
//! within one read. Queued one by one, every subscriber's queue copies N
//! frames. Held here until the read is done, they reach each subscriber as
//! one shared [`Frame::batch`]: one reference per subscriber, and the kernel
//! copies from one buffer that stays in cache (uWebSockets' `TopicTree`
//! drains a subscriber's messages of a loop turn in one piece too).
//!
//! Order is unchanged: the hub sends the held deliveries before anything
//! else it sends, so every connection sees exactly what it saw without the
//! batch, in the same order.

use crate::reactor::Frame;

/// Most bytes of deliveries held for one topic; a delivery that would pass
/// it sends the held ones first. It bounds how far one batch can take a
/// subscriber's queue past its limit.
pub const MAX_BATCH_BYTES: usize = 16 * 1024;

/// Consecutive deliveries of one topic, not yet queued to its subscribers.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The topic of the held deliveries (kept between batches: no
    /// allocation per batch).
    pub topic: String,
    /// Sequence number of the first held delivery.
    pub first: u64,
    /// Sequence number of the last held delivery.
    pub last: u64,
    frames: Vec<Frame>,
    bytes: usize,
}

impl Batch {
    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether delivery `seq` of `topic` (`len` bytes) can join: same topic,
    /// next sequence number, within [`MAX_BATCH_BYTES`]. Always true when
    /// nothing is held.
    pub fn fits(&self, topic: &str, seq: u64, len: usize) -> bool {
        self.is_empty()
            || (self.topic == topic && seq == self.last + 1 && self.bytes + len <= MAX_BATCH_BYTES)
    }

    /// Hold delivery `seq` of `topic`; the caller checked [`Batch::fits`].
    pub fn push(&mut self, topic: &str, seq: u64, frame: Frame) {
        if self.is_empty() {
            self.topic.clear();
            self.topic.push_str(topic);
            self.first = seq;
        }
        self.last = seq;
        self.bytes += frame.as_bytes().len();
        self.frames.push(frame);
    }

    /// The held deliveries as one frame unit; the batch is empty afterwards
    /// (`topic`, `first` and `last` still describe what was taken).
    pub fn take(&mut self) -> Frame {
        let f = Frame::batch(&self.frames);
        self.frames.clear();
        self.bytes = 0;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_consecutive_deliveries_of_one_topic_within_the_bound() {
        let mut b = Batch::default();
        let f = Frame::text("x");
        assert!(b.fits("a", 7, 3));
        b.push("a", 7, f.clone());
        assert!(b.fits("a", 8, 3));
        assert!(!b.fits("b", 8, 3), "another topic");
        assert!(!b.fits("a", 9, 3), "not the next sequence number");
        assert!(!b.fits("a", 8, MAX_BATCH_BYTES), "over the byte bound");
        b.push("a", 8, Frame::text("yz"));
        assert_eq!((b.first, b.last), (7, 8));
        // Two frames back to back, in order, each with its own header.
        assert_eq!(b.take().as_bytes(), b"\x81\x01x\x81\x02yz");
        assert!(b.is_empty());
        assert!(b.fits("b", 1, MAX_BATCH_BYTES));
        // One held frame is sent as itself, not copied.
        b.push("b", 1, f.clone());
        assert_eq!(b.take(), f);
        assert_eq!(b.topic, "b");
    }
}
