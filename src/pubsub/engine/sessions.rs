//! Acknowledged positions kept in memory (the memory engine's sessions):
//! for each user and topic, the last `(epoch, seq)` the user said it
//! processed, so that a new connection (another device, a reinstalled
//! app) can resume from there (`"since":"acked"`).
//!
//! Bounded three ways: a session (one user's positions) expires
//! `ttl_ms` after its last ack (at most a second later); a user keeps at most `max_per_user`
//! positions (an ack for one more topic is refused); all sessions
//! together keep at most `max_positions`, past which the sessions acked
//! longest ago are dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::Position;

/// Why an ack was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRefused {
    /// The user keeps `max_per_user` positions already.
    TooManyTopics,
}

/// One user's positions.
#[derive(Debug)]
struct Session {
    /// The user (shared with the key in [`Sessions::order`]).
    name: Arc<str>,
    positions: HashMap<Box<str>, (Arc<str>, u64)>,
    /// When it was last acked (the loop's clock, ms; moved in steps of
    /// [`TOUCH_STEP_MS`]).
    touched: u64,
}

/// A session's time of last ack is moved at most this often (ms), so that
/// acks in a burst do not reorder [`Sessions::order`] each time (sessions
/// expire this much later at most; their time-to-live is hours).
const TOUCH_STEP_MS: u64 = 1000;

/// The sessions of all users.
#[derive(Debug)]
pub struct Sessions {
    users: HashMap<Arc<str>, Session>,
    /// Sessions by last ack, oldest first.
    order: BTreeSet<(u64, Arc<str>)>,
    positions: usize,
    ttl_ms: u64,
    max_per_user: usize,
    max_positions: usize,
}

impl Sessions {
    /// Sessions that expire `ttl_ms` after their last ack, at most
    /// `max_per_user` topics per user and `max_positions` in all.
    pub fn new(ttl_ms: u64, max_per_user: usize, max_positions: usize) -> Self {
        Sessions {
            users: HashMap::new(),
            order: BTreeSet::new(),
            positions: 0,
            ttl_ms,
            max_per_user: max_per_user.max(1),
            max_positions: max_positions.max(1),
        }
    }

    /// Users with a session.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user has a session.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Positions kept in all sessions.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Store that `user` processed `topic` up to `seq` of `epoch`
    /// (cumulative: an older seq of the same epoch does not move it
    /// back). Allocates only for a new user, a new topic or a new epoch.
    pub fn ack(
        &mut self,
        user: &str,
        topic: &str,
        epoch: &str,
        seq: u64,
        now_ms: u64,
    ) -> Result<(), AckRefused> {
        self.expire(now_ms);
        let s = match self.users.get_mut(user) {
            Some(s) => s,
            None => {
                let name: Arc<str> = Arc::from(user);
                self.order.insert((now_ms, name.clone()));
                let s = Session {
                    name: name.clone(),
                    positions: HashMap::new(),
                    touched: now_ms,
                };
                self.users.entry(name).or_insert(s)
            }
        };
        if now_ms >= s.touched + TOUCH_STEP_MS {
            self.order.remove(&(s.touched, s.name.clone()));
            s.touched = now_ms;
            self.order.insert((now_ms, s.name.clone()));
        }
        let full = s.positions.len() >= self.max_per_user;
        let result = match s.positions.get_mut(topic) {
            Some((e, last)) if **e == *epoch => {
                *last = (*last).max(seq);
                Ok(())
            }
            Some((e, last)) => {
                *e = Arc::from(epoch);
                *last = seq;
                Ok(())
            }
            None if full => Err(AckRefused::TooManyTopics),
            None => {
                s.positions
                    .insert(Box::from(topic), (Arc::from(epoch), seq));
                self.positions += 1;
                Ok(())
            }
        };
        self.shed();
        result
    }

    /// The position `user` acknowledged in `topic`, if any.
    pub fn get(&mut self, user: &str, topic: &str, now_ms: u64) -> Option<Position> {
        self.expire(now_ms);
        let (epoch, seq) = self.users.get(user)?.positions.get(topic)?;
        Some(Position {
            epoch: epoch.to_string(),
            seq: *seq,
        })
    }

    /// Drop the sessions acked longer than the time-to-live ago.
    fn expire(&mut self, now_ms: u64) {
        while let Some((touched, _)) = self.order.first() {
            if now_ms.saturating_sub(*touched) <= self.ttl_ms + TOUCH_STEP_MS {
                break;
            }
            self.drop_oldest();
        }
    }

    /// Drop the sessions acked longest ago until all positions fit.
    fn shed(&mut self) {
        while self.positions > self.max_positions && !self.order.is_empty() {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, user)) = self.order.pop_first() {
            if let Some(s) = self.users.remove(&user) {
                self.positions -= s.positions.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(epoch: &str, seq: u64) -> Position {
        Position {
            epoch: epoch.into(),
            seq,
        }
    }

    #[test]
    fn cumulative_positions_per_user_and_topic() {
        let mut s = Sessions::new(1000, 2, 100);
        assert_eq!(s.ack("alice", "t", "e", 5, 0), Ok(()));
        assert_eq!(s.ack("alice", "t", "e", 3, 1), Ok(()), "older: kept at 5");
        assert_eq!(s.get("alice", "t", 2), Some(pos("e", 5)));
        assert_eq!(
            s.ack("alice", "t", "f", 1, 3),
            Ok(()),
            "a new epoch replaces"
        );
        assert_eq!(s.get("alice", "t", 4), Some(pos("f", 1)));
        assert_eq!(s.ack("alice", "u", "e", 1, 5), Ok(()));
        assert_eq!(
            s.ack("alice", "v", "e", 1, 6),
            Err(AckRefused::TooManyTopics)
        );
        assert_eq!(s.get("bob", "t", 7), None);
        assert_eq!((s.len(), s.positions()), (1, 2));
    }

    #[test]
    fn sessions_expire_and_the_oldest_go_past_the_bound() {
        let mut s = Sessions::new(10_000, 10, 3);
        s.ack("a", "t1", "e", 1, 0).unwrap();
        s.ack("a", "t2", "e", 1, 0).unwrap();
        s.ack("b", "t1", "e", 1, 1000).unwrap();
        assert_eq!(s.positions(), 3);
        // A fourth position: a's session (acked longest ago) goes.
        s.ack("c", "t1", "e", 1, 2000).unwrap();
        assert_eq!(s.get("a", "t1", 2000), None);
        assert_eq!((s.len(), s.positions()), (2, 2));
        // b's session expires 10 s after its last ack (plus at most the
        // 1 s step of its time); c's lives on.
        assert!(s.get("b", "t1", 11_000).is_some());
        assert_eq!(s.get("b", "t1", 12_001), None);
        assert!(s.get("c", "t1", 12_001).is_some());
        // An ack refreshes a session.
        s.ack("c", "t1", "e", 2, 12_500).unwrap();
        assert_eq!(s.get("c", "t1", 23_000), Some(pos("e", 2)));
        assert_eq!(s.get("c", "t1", 23_501), None);
    }

    #[test]
    fn acks_in_a_burst_leave_the_order_alone() {
        let mut s = Sessions::new(10_000, 10, 100);
        s.ack("a", "t", "e", 1, 0).unwrap();
        s.ack("b", "t", "e", 1, 10).unwrap();
        for ms in 0..999 {
            s.ack("a", "t", "e", ms, ms).unwrap();
        }
        assert_eq!(s.order.first().map(|(t, u)| (*t, &**u)), Some((0, "a")));
        s.ack("a", "t", "e", 1000, 1000).unwrap();
        assert_eq!(s.order.first().map(|(t, u)| (*t, &**u)), Some((10, "b")));
        assert_eq!(s.order.len(), 2);
    }

    /// 10,000 users acking 100 topics each: bounded by `max_positions`,
    /// and what that bound costs in memory (the figure the docs quote).
    #[test]
    fn ten_thousand_users_acking_a_hundred_topics_stay_bounded() {
        let mut s = Sessions::new(u64::MAX / 2, 100, 1_000_000);
        let topics: Vec<String> = (0..100).map(|t| format!("room.{t}")).collect();
        for u in 0..10_000 {
            let user = format!("user-{u}");
            for t in &topics {
                s.ack(&user, t, "5be0c2a9d1f4", 42, u).unwrap();
            }
        }
        assert_eq!((s.len(), s.positions()), (10_000, 1_000_000));
        // One more user: the oldest session makes room.
        s.ack("late", "room.1", "e", 1, 20_000).unwrap();
        assert!(s.positions() <= 1_000_000);
        assert_eq!(s.get("user-0", "room.1", 20_000), None);
    }
}
