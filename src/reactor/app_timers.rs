//! Application timers: [`Ctx::set_timer`](super::Ctx::set_timer) schedules
//! a call of [`Handler::timer`](super::Handler::timer) on the loop's clock
//! (so a [`ManualClock`](super::ManualClock) drives them in tests), and
//! [`Ctx::cancel_timer`](super::Ctx::cancel_timer) takes it back.
//!
//! The timers live in a slab (at most [`Config::max_timers`] of them) and
//! a min-heap of (deadline, generation, slot): timers due at the same time
//! fire in the order they were set (the generation counts every set). Cancelling frees the slot at
//! once and leaves the heap entry to be skipped when it comes due; when
//! stale entries outnumber the live ones the heap is rebuilt, so set and
//! cancel churn cannot grow it without bound.
//!
//! [`Config::max_timers`]: super::Config::max_timers

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use slab::Slab;

use super::timer::Millis;

/// A timer set with [`Ctx::set_timer`](super::Ctx::set_timer); cancel it
/// with [`Ctx::cancel_timer`](super::Ctx::cancel_timer). Once it fired or
/// was cancelled the id is dead: it never reaches a later timer that reuses
/// its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    gen: u32,
}

/// Why [`Ctx::set_timer`](super::Ctx::set_timer) did not set a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerError {
    /// [`Config::max_timers`](super::Config::max_timers) timers are set
    /// already.
    Full,
}

impl std::fmt::Display for TimerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimerError::Full => f.write_str("too many application timers"),
        }
    }
}

impl std::error::Error for TimerError {}

#[derive(Debug)]
struct Entry {
    gen: u32,
    token: u64,
}

/// The loop's application timers.
#[derive(Debug)]
pub(crate) struct AppTimers {
    live: Slab<Entry>,
    heap: BinaryHeap<Reverse<(Millis, u32, u32)>>,
    next_gen: u32,
    /// The heap's earliest deadline (`Millis::MAX`: none), kept so that the
    /// loop's look at it before every sleep is one load.
    next_at: Millis,
}

impl Default for AppTimers {
    fn default() -> Self {
        AppTimers {
            live: Slab::new(),
            heap: BinaryHeap::new(),
            next_gen: 0,
            next_at: Millis::MAX,
        }
    }
}

impl AppTimers {
    /// Call back with `token` at loop time `at`; at most `max` timers.
    pub fn set(&mut self, at: Millis, token: u64, max: usize) -> Result<TimerId, TimerError> {
        if self.live.len() >= max {
            return Err(TimerError::Full);
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let key = self.live.insert(Entry { gen, token });
        let Ok(key) = u32::try_from(key) else {
            // More than 4 billion slots: `max` allows no such thing.
            self.live.remove(key);
            return Err(TimerError::Full);
        };
        self.heap.push(Reverse((at, gen, key)));
        self.next_at = self.next_at.min(at);
        Ok(TimerId { key, gen })
    }

    /// Take back timer `id`; `false` if it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let key = id.key as usize;
        if self.live.get(key).is_none_or(|e| e.gen != id.gen) {
            return false;
        }
        self.live.remove(key);
        if self.heap.len() > 2 * self.live.len() + 64 {
            self.compact();
        }
        true
    }

    /// Drop the heap entries of cancelled timers.
    fn compact(&mut self) {
        let live = &self.live;
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_vec()
            .into_iter()
            .filter(|Reverse((_, gen, key))| live.get(*key as usize).is_some_and(|e| e.gen == *gen))
            .collect();
        self.note_next();
    }

    fn note_next(&mut self) {
        self.next_at = self
            .heap
            .peek()
            .map_or(Millis::MAX, |Reverse((at, _, _))| *at);
    }

    /// Take every timer due at `now` into `due` (as (id, token), in
    /// deadline order). Timers set while these are called back are not
    /// among them, even if already due: they wait for the next turn.
    pub fn take_due(&mut self, now: Millis, due: &mut Vec<(TimerId, u64)>) {
        while let Some(&Reverse((at, gen, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.live.get(key as usize).is_some_and(|e| e.gen == gen) {
                let e = self.live.remove(key as usize);
                due.push((TimerId { key, gen }, e.token));
            }
        }
        self.note_next();
    }

    /// The earliest deadline (possibly of a cancelled timer: waking for it
    /// costs one empty turn).
    #[inline]
    pub fn next_deadline(&self) -> Option<Millis> {
        (self.next_at != Millis::MAX).then_some(self.next_at)
    }

    /// Whether a timer may be due at `now` (one comparison).
    #[inline]
    pub fn due_by(&self, now: Millis) -> bool {
        self.next_at <= now
    }

    /// Timers set and not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(t: &mut AppTimers, now: Millis) -> Vec<u64> {
        let mut v = Vec::new();
        t.take_due(now, &mut v);
        v.into_iter().map(|(_, token)| token).collect()
    }

    #[test]
    fn fire_in_deadline_order_once() {
        let mut t = AppTimers::default();
        t.set(30, 3, 10).unwrap();
        t.set(10, 1, 10).unwrap();
        t.set(20, 2, 10).unwrap();
        assert_eq!(t.next_deadline(), Some(10));
        assert_eq!(due(&mut t, 9), Vec::<u64>::new());
        assert_eq!(due(&mut t, 20), [1, 2]);
        assert_eq!(due(&mut t, 100), [3]);
        assert_eq!(due(&mut t, 1000), Vec::<u64>::new());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancel_is_exact_and_bounded() {
        let mut t = AppTimers::default();
        let a = t.set(10, 1, 2).unwrap();
        let b = t.set(10, 2, 2).unwrap();
        assert_eq!(t.set(10, 3, 2), Err(TimerError::Full));
        assert!(t.cancel(a));
        assert!(!t.cancel(a), "cancelled twice");
        // a's slot is reused; a's id must not reach the new timer.
        let c = t.set(10, 3, 2).unwrap();
        assert!(!t.cancel(a));
        assert_eq!(due(&mut t, 10), [2, 3]);
        assert!(!t.cancel(b), "already fired");
        assert!(!t.cancel(c));
    }

    #[test]
    fn churn_does_not_grow_the_heap() {
        let mut t = AppTimers::default();
        let keep = t.set(1_000_000, 0, 10).unwrap();
        for i in 0..100_000u64 {
            let id = t.set(500_000 + i, i, 10).unwrap();
            assert!(t.cancel(id));
        }
        assert!(t.heap.len() <= 2 * t.len() + 65, "{}", t.heap.len());
        assert!(t.cancel(keep));
    }
}
