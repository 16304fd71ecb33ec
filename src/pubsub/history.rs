//! A topic's bounded history: the last deliveries, by count and by age,
//! for replay after a reconnect.

use std::collections::VecDeque;

use crate::reactor::Frame;

/// One stored delivery: its sequence number, when it was stored, and the
/// encoded frame as it was sent (shared with the live fan-out, not copied).
#[derive(Debug, Clone)]
pub struct Stored {
    /// Sequence number within the topic and epoch.
    pub seq: u64,
    /// When it was stored, in ms on the hub's monotonic clock (the age
    /// limit's clock; the frame carries the wall-clock `ts`).
    pub ts: u64,
    /// The delivery frame.
    pub frame: Frame,
}

/// The ring.
#[derive(Debug)]
pub struct History {
    items: VecDeque<Stored>,
    /// Frame bytes held (for the node's history budget).
    bytes: usize,
    max_len: usize,
    max_age_ms: u64,
}

impl History {
    /// A history keeping at most `max_len` items, none older than
    /// `max_age_ms`.
    pub fn new(max_len: usize, max_age_ms: u64) -> Self {
        History {
            items: VecDeque::new(),
            bytes: 0,
            max_len,
            max_age_ms,
        }
    }

    /// Append a delivery (sequence numbers must increase).
    pub fn push(&mut self, item: Stored) {
        if self.max_len == 0 {
            return;
        }
        while self.items.len() >= self.max_len {
            self.pop();
        }
        self.bytes += item.frame.as_bytes().len();
        self.items.push_back(item);
    }

    /// Forget items older than the age limit.
    pub fn trim(&mut self, now_ms: u64) {
        while let Some(front) = self.items.front() {
            if now_ms.saturating_sub(front.ts) > self.max_age_ms {
                self.pop();
            } else {
                break;
            }
        }
    }

    /// Forget everything (the topic's sequence numbers go on).
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }

    fn pop(&mut self) {
        if let Some(old) = self.items.pop_front() {
            self.bytes -= old.frame.as_bytes().len();
        }
    }

    /// Frame bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Server time of the newest item.
    pub fn last_ts(&self) -> Option<u64> {
        self.items.back().map(|s| s.ts)
    }

    /// Items stored.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sequence number of the oldest item.
    pub fn first_seq(&self) -> Option<u64> {
        self.items.front().map(|s| s.seq)
    }

    /// Items after seq `after`, oldest first, at most `max` (the frames
    /// are shared, not copied).
    pub fn after(&self, after: u64, max: usize) -> Vec<Stored> {
        // Sequence numbers increase along the ring (not always by one: an
        // engine's copy may have holes where deliveries were lost).
        let skip = self.items.partition_point(|s| s.seq <= after);
        self.items.iter().skip(skip).take(max).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, ts: u64) -> Stored {
        Stored {
            seq,
            ts,
            frame: Frame::text(&seq.to_string()),
        }
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut h = History::new(3, 1000);
        for s in 1..=5 {
            h.push(item(s, s * 100));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.bytes(), 9); // 2-byte header + 1 digit each
        let seqs = |v: Vec<Stored>| v.iter().map(|s| s.seq).collect::<Vec<_>>();
        assert_eq!(seqs(h.after(1, 10)), [3, 4, 5]);
        assert_eq!(seqs(h.after(3, 10)), [4, 5]);
        assert_eq!(seqs(h.after(2, 2)), [3, 4]);
        assert!(seqs(h.after(5, 10)).is_empty());
        assert!(seqs(h.after(99, 10)).is_empty());
        assert_eq!(h.first_seq(), Some(3));
        h.trim(1450);
        assert_eq!(h.len(), 1);
        assert_eq!((h.bytes(), h.last_ts()), (3, Some(500)));
        h.clear();
        assert!(h.is_empty() && h.bytes() == 0);
    }
}
