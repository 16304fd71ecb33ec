//! This node's subscriptions: for each topic, the local connections that
//! get its deliveries. Sequence numbers, history and members are the
//! engine's (`engine/`); this table is what local fan-out walks.

use std::collections::HashMap;

use crate::reactor::{ConnId, ConnIdMap};

/// The local subscribers of one topic.
#[derive(Debug, Default)]
pub(super) struct LocalTopic {
    /// Subscribers, in a vector for fast fan-out; `index` finds a
    /// subscriber's position for O(1) removal.
    subs: Vec<ConnId>,
    index: ConnIdMap<usize>,
    /// Subscribers that live fan-out skips: still being sent their resume
    /// replay from history (so what they get stays in sequence order), or
    /// waiting for the engine to answer their subscription. Usually empty.
    held: Vec<ConnId>,
    /// Fan-outs of this topic waiting in the hub's queue: while there are
    /// any, the subscribers and the held ones must not change (the hub
    /// settles them first, see `fanout_queue.rs`).
    jobs: u32,
}

impl LocalTopic {
    /// Subscribers, for fan-out.
    pub fn subscribers(&self) -> &[ConnId] {
        &self.subs
    }

    /// Subscribers that live fan-out skips.
    pub fn held(&self) -> &[ConnId] {
        &self.held
    }

    /// Is `id` subscribed?
    pub fn has(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    /// Fan-outs waiting.
    pub fn jobs(&self) -> u32 {
        self.jobs
    }

    /// One more (`1`) or one fewer (`-1`) fan-out waiting.
    pub fn jobs_changed(&mut self, delta: i32) {
        self.jobs = self.jobs.saturating_add_signed(delta);
    }

    /// Skip subscriber `id` in live fan-out until [`LocalTopic::release`].
    pub fn hold(&mut self, id: ConnId) {
        debug_assert_eq!(self.jobs, 0, "hold with fan-outs waiting");
        if self.has(id) && !self.held.contains(&id) {
            self.held.push(id);
        }
    }

    /// Live fan-out reaches `id` again.
    pub fn release(&mut self, id: ConnId) {
        debug_assert_eq!(self.jobs, 0, "release with fan-outs waiting");
        self.held.retain(|&h| h != id);
    }

    fn add(&mut self, id: ConnId) -> bool {
        debug_assert_eq!(self.jobs, 0, "a subscriber added with fan-outs waiting");
        if self.index.contains_key(&id) {
            return false;
        }
        self.index.insert(id, self.subs.len());
        self.subs.push(id);
        true
    }

    fn remove(&mut self, id: ConnId) -> bool {
        debug_assert_eq!(self.jobs, 0, "a subscriber removed with fan-outs waiting");
        let Some(pos) = self.index.remove(&id) else {
            return false;
        };
        self.release(id);
        self.subs.swap_remove(pos);
        if let Some(&moved) = self.subs.get(pos) {
            self.index.insert(moved, pos);
        }
        true
    }
}

/// Every topic with local subscribers (a topic leaves with its last one).
#[derive(Debug, Default)]
pub(super) struct LocalTopics {
    map: HashMap<String, LocalTopic>,
    /// Subscriptions in all topics.
    count: usize,
}

impl LocalTopics {
    /// The local subscribers of `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<&LocalTopic> {
        self.map.get(topic)
    }

    /// The same, to hold or release a subscriber.
    pub fn get_mut(&mut self, topic: &str) -> Option<&mut LocalTopic> {
        self.map.get_mut(topic)
    }

    /// Add subscriber `id` to `topic`. False if it was already there.
    pub fn add(&mut self, topic: &str, id: ConnId) -> bool {
        let added = match self.map.get_mut(topic) {
            Some(t) => t.add(id),
            None => {
                let mut t = LocalTopic::default();
                t.add(id);
                self.map.insert(topic.to_string(), t);
                true
            }
        };
        self.count += usize::from(added);
        added
    }

    /// Remove subscriber `id` from `topic` (the topic goes with its last
    /// subscriber). False if it was not there.
    pub fn remove(&mut self, topic: &str, id: ConnId) -> bool {
        let Some(t) = self.map.get_mut(topic) else {
            return false;
        };
        let removed = t.remove(id);
        if t.subs.is_empty() {
            self.map.remove(topic);
        }
        self.count -= usize::from(removed);
        removed
    }

    /// Topics with local subscribers.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Subscriptions in all topics.
    pub fn subscriptions(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_holds_and_removal() {
        let mut t = LocalTopics::default();
        let a = ConnId::from_u64(1);
        let b = ConnId::from_u64(2);
        let c = ConnId::from_u64(3);
        assert!(t.add("x", a) && t.add("x", b) && t.add("x", c));
        assert!(!t.add("x", b), "already there");
        assert_eq!(t.subscriptions(), 3);
        assert!(t.remove("x", a));
        let x = t.get_mut("x").unwrap();
        assert!(x.has(b) && x.has(c) && !x.has(a));
        x.hold(b);
        x.hold(b);
        x.hold(a); // not a subscriber: ignored
        assert_eq!(x.held(), [b]);
        assert!(t.remove("x", b));
        let x = t.get("x").unwrap();
        assert!(x.held().is_empty(), "removal releases");
        assert_eq!(x.subscribers(), [c]);
        assert!(t.remove("x", c));
        assert!(t.get("x").is_none() && t.len() == 0 && t.subscriptions() == 0);
        assert!(!t.remove("x", c));
    }
}
