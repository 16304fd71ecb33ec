//! The idempotency window kept in memory (the memory engine): for each
//! user and idempotency key, where the publish that carried it was stored,
//! so that a retry within the window gets the original ack instead of a
//! second delivery.
//!
//! Bounded: a key is kept `window_ms`, and at most `max_keys` keys are
//! kept; past that the oldest are forgotten before their window ends
//! (counted in [`Dedup::forgotten_early`]).

use std::collections::{HashMap, VecDeque};

use super::Position;

/// Where a publish was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its topic (a `dm`: the recipient's inbox).
    pub topic: String,
    /// Its position there.
    pub position: Position,
}

/// A user and one of its keys.
type Key = (Box<str>, Box<str>);

/// The window.
#[derive(Debug)]
pub struct Dedup {
    keys: HashMap<Key, Stored>,
    /// Keys in the order they were stored (which is their expiry order:
    /// the window is the same for all), with when they expire.
    order: VecDeque<(u64, Key)>,
    window_ms: u64,
    max_keys: usize,
    forgotten_early: u64,
}

impl Dedup {
    /// A window of `window_ms` for at most `max_keys` keys.
    pub fn new(window_ms: u64, max_keys: usize) -> Self {
        Dedup {
            keys: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
            max_keys: max_keys.max(1),
            forgotten_early: 0,
        }
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys dropped for the bound before their window ended.
    pub fn forgotten_early(&self) -> u64 {
        self.forgotten_early
    }

    /// Where `user`'s publish with `key` was stored, if within the window.
    pub fn get(&mut self, user: &str, key: &str, now_ms: u64) -> Option<&Stored> {
        self.expire(now_ms);
        self.keys.get(&(Box::from(user), Box::from(key)))
    }

    /// Remember where `user`'s publish with `key` was stored.
    pub fn insert(&mut self, user: &str, key: &str, stored: Stored, now_ms: u64) {
        self.expire(now_ms);
        while self.keys.len() >= self.max_keys {
            if let Some((_, k)) = self.order.pop_front() {
                self.keys.remove(&k);
                self.forgotten_early += 1;
            } else {
                break;
            }
        }
        let k = (Box::from(user), Box::from(key));
        if self.keys.insert(k.clone(), stored).is_none() {
            self.order
                .push_back((now_ms.saturating_add(self.window_ms), k));
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while self.order.front().is_some_and(|(at, _)| *at <= now_ms) {
            if let Some((_, k)) = self.order.pop_front() {
                self.keys.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64) -> Stored {
        Stored {
            topic: "t".into(),
            position: Position {
                epoch: "e".into(),
                seq,
            },
        }
    }

    #[test]
    fn keys_live_for_the_window_per_user() {
        let mut d = Dedup::new(1000, 10);
        d.insert("alice", "k1", stored(1), 0);
        assert_eq!(d.get("alice", "k1", 999), Some(&stored(1)));
        assert_eq!(d.get("bob", "k1", 999), None, "keys are per user");
        assert_eq!(d.get("alice", "k2", 999), None);
        assert_eq!(d.get("alice", "k1", 1000), None, "the window is over");
        assert!(d.is_empty());
    }

    #[test]
    fn past_the_bound_the_oldest_are_forgotten_early() {
        let mut d = Dedup::new(1000, 2);
        d.insert("a", "1", stored(1), 0);
        d.insert("a", "2", stored(2), 1);
        d.insert("a", "3", stored(3), 2);
        assert_eq!(d.len(), 2);
        assert_eq!(d.get("a", "1", 3), None);
        assert_eq!(d.get("a", "3", 3), Some(&stored(3)));
        assert_eq!(d.forgotten_early(), 1);
    }
}
