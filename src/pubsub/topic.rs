//! A topic: its subscribers (for fan-out), its members (for presence), its
//! sequence counter and its history.

use std::collections::HashMap;

use super::history::History;
use crate::reactor::{ConnId, ConnIdMap};

/// One topic on this node.
#[derive(Debug)]
pub struct Topic {
    /// The epoch its sequence numbers belong to: the node's, with a suffix
    /// if topics were dropped before this one was created (see
    /// [`super::topics`]).
    pub epoch: String,
    /// Last sequence number given out in this epoch (0: none yet).
    pub seq: u64,
    /// Local subscribers, in a vector for fast fan-out; `index` finds a
    /// subscriber's position for O(1) removal.
    subs: Vec<ConnId>,
    index: ConnIdMap<usize>,
    /// Subscribers still being sent their resume replay from history:
    /// live fan-out skips them until they are caught up, so what they get
    /// stays in sequence order. Usually empty.
    held: Vec<ConnId>,
    /// Distinct users subscribed, with their number of connections.
    members: HashMap<String, u32>,
    /// Recent deliveries for resume.
    pub history: History,
}

impl Topic {
    /// An empty topic numbering its deliveries in `epoch`.
    pub fn new(history: History, epoch: String) -> Self {
        Topic {
            epoch,
            seq: 0,
            subs: Vec::new(),
            index: ConnIdMap::default(),
            held: Vec::new(),
            members: HashMap::new(),
            history,
        }
    }

    /// Subscribers, for fan-out.
    pub fn subscribers(&self) -> &[ConnId] {
        &self.subs
    }

    /// Subscribers that live fan-out skips (catching up from history).
    pub fn held(&self) -> &[ConnId] {
        &self.held
    }

    /// Skip subscriber `id` in live fan-out until [`Topic::release`].
    pub fn hold(&mut self, id: ConnId) {
        if self.has(id) && !self.held.contains(&id) {
            self.held.push(id);
        }
    }

    /// Live fan-out reaches `id` again.
    pub fn release(&mut self, id: ConnId) {
        self.held.retain(|&h| h != id);
    }

    /// Is `id` subscribed?
    pub fn has(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    /// Add a subscriber of `user`. Returns true if the user just joined
    /// (their first connection here).
    pub fn add(&mut self, id: ConnId, user: &str) -> bool {
        if self.index.contains_key(&id) {
            return false;
        }
        self.index.insert(id, self.subs.len());
        self.subs.push(id);
        let n = self.members.entry(user.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Remove a subscriber. Returns true if the user just left (their last
    /// connection here).
    pub fn remove(&mut self, id: ConnId, user: &str) -> bool {
        let Some(pos) = self.index.remove(&id) else {
            return false;
        };
        self.release(id);
        self.subs.swap_remove(pos);
        if let Some(&moved) = self.subs.get(pos) {
            self.index.insert(moved, pos);
        }
        match self.members.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.members.remove(user);
                true
            }
            None => false,
        }
    }

    /// Distinct users, sorted.
    pub fn members(&self) -> Vec<&str> {
        let mut m: Vec<&str> = self.members.keys().map(String::as_str).collect();
        m.sort_unstable();
        m
    }

    /// Is the topic useless now (no subscribers, no history)?
    pub fn is_idle(&self) -> bool {
        self.subs.is_empty() && self.history.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_and_removal() {
        let mut t = Topic::new(History::new(10, 1000), "e".into());
        let a = ConnId::from_u64(1);
        let b = ConnId::from_u64(2);
        let c = ConnId::from_u64(3);
        assert!(t.add(a, "alice"));
        assert!(!t.add(b, "alice"));
        assert!(t.add(c, "bob"));
        assert_eq!(t.members(), ["alice", "bob"]);
        assert!(!t.remove(a, "alice"));
        assert!(t.has(b) && t.has(c) && !t.has(a));
        t.hold(b);
        t.hold(b);
        assert_eq!(t.held(), [b]);
        assert!(t.remove(b, "alice"));
        assert!(t.held().is_empty());
        assert_eq!(t.subscribers(), [c]);
        assert_eq!(t.members(), ["bob"]);
    }
}
