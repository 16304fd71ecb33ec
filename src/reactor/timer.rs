//! Connection timers: one min-heap entry per connection at most.
//!
//! A connection's deadline moves often (every read pushes the idle deadline
//! out), so the heap is lazy: moving a deadline later only updates the
//! connection; when the stale heap entry comes due, the loop sees that the
//! connection's real deadline is later and re-inserts it. Moving a deadline
//! earlier inserts a new entry. The poll timeout is taken from the top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Milliseconds since the reactor started (its clock; passed in, never read
/// here).
pub type Millis = u64;

/// A min-heap of (deadline, slot, generation).
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Millis, u32, u32)>>,
}

impl TimerHeap {
    /// Schedule a check of connection (`key`, `gen`) at `at`.
    pub fn push(&mut self, at: Millis, key: u32, gen: u32) {
        self.heap.push(Reverse((at, key, gen)));
    }

    /// The earliest scheduled check.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Remove and return an entry due at or before `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// True when nothing is scheduled.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order() {
        let mut t = TimerHeap::default();
        t.push(30, 1, 0);
        t.push(10, 2, 0);
        t.push(20, 3, 0);
        assert_eq!(t.next_deadline(), Some(10));
        assert_eq!(t.pop_due(15), Some((10, 2, 0)));
        assert_eq!(t.pop_due(15), None);
        assert_eq!(t.pop_due(100), Some((20, 3, 0)));
        assert_eq!(t.pop_due(100), Some((30, 1, 0)));
        assert!(t.is_empty());
    }
}
