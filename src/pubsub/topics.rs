//! The node's table of topics and the limits that bound it: how many
//! topics, and how many bytes of history all of them hold together.
//!
//! Dropping a topic forgets its sequence counter. So that a resuming client
//! can never take a recreated topic's numbers for the old ones, a topic
//! created after a numbered topic (one that had deliveries) was dropped
//! numbers its deliveries in an epoch of its own: the node's epoch, `.`,
//! and how many numbered topics had been dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::history::{History, Stored};
use super::topic::Topic;
use crate::reactor::Frame;

/// What bounds the table (from the hub's configuration).
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    /// Most topics; at the limit, idle topics and then those without
    /// subscribers whose last delivery is oldest are dropped.
    pub max_topics: usize,
    /// Most frame bytes in all histories together; over it, the histories
    /// of the topics published to longest ago are cleared (their sequence
    /// numbers go on, so a resume reports what was lost).
    pub max_history_bytes: usize,
    /// Deliveries kept per topic.
    pub history_len: usize,
    /// Oldest delivery kept, in ms.
    pub history_age_ms: u64,
}

/// After a pass that could not make room for a new topic, refuse new
/// topics for this long rather than scan the table again for each.
const FULL_BACKOFF: Duration = Duration::from_secs(1);

/// The topics of this node.
#[derive(Debug)]
pub struct Topics {
    map: HashMap<String, Topic>,
    limits: TopicLimits,
    node_epoch: String,
    /// Numbered topics dropped so far (names the epoch of topics created
    /// after).
    dropped: u64,
    /// Frame bytes in all histories.
    history_bytes: usize,
    /// No new topic before this time: the last pass found no room
    /// (monotonic, so a wall-clock step cannot stretch it).
    full_until: Option<Instant>,
}

impl Topics {
    /// An empty table on a node with epoch `node_epoch`, bounded by `limits`.
    pub fn new(node_epoch: String, limits: TopicLimits) -> Self {
        Topics {
            map: HashMap::new(),
            limits,
            node_epoch,
            dropped: 0,
            history_bytes: 0,
            full_until: None,
        }
    }

    /// Topics on this node.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No topics.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Frame bytes held in all histories.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// The topic `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<&Topic> {
        self.map.get(name)
    }

    /// The topic `name`, if it exists, to change its subscribers (its
    /// history changes only through [`Topics::publish`] and
    /// [`Topics::trim`], which keep the byte count).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Topic> {
        self.map.get_mut(name)
    }

    /// The topic `name`, created if needed. `None` when the node is at
    /// [`TopicLimits::max_topics`] and no topic can be dropped to make room
    /// (then, for a second, new topics are refused without another pass).
    pub fn entry(&mut self, name: &str) -> Option<&mut Topic> {
        if !self.map.contains_key(name) {
            let limits = self.limits;
            if self.map.len() >= limits.max_topics && !self.make_room() {
                return None;
            }
            let epoch = match self.dropped {
                0 => self.node_epoch.clone(),
                n => format!("{}.{n}", self.node_epoch),
            };
            let history = History::new(limits.history_len, limits.history_age_ms);
            self.map
                .insert(name.to_string(), Topic::new(history, epoch));
        }
        self.map.get_mut(name)
    }

    /// Drop topics until there is room for one more (and some to spare, so
    /// the pass, O(n log n), runs once per `max_topics / 16` new topics).
    fn make_room(&mut self) -> bool {
        let max = self.limits.max_topics;
        let now = Instant::now();
        if self.full_until.is_some_and(|until| now < until) {
            return false;
        }
        let mut dropped = 0;
        self.map.retain(|_, t| {
            let idle = t.is_idle();
            dropped += u64::from(idle && t.seq > 0);
            !idle
        });
        let target = max.saturating_sub((max / 16).max(1));
        if self.map.len() > target {
            let mut old: Vec<(u64, String)> = self
                .map
                .iter()
                .filter(|(_, t)| t.subscribers().is_empty())
                .map(|(k, t)| (t.history.last_ts().unwrap_or(0), k.clone()))
                .collect();
            old.sort_unstable();
            let excess = self.map.len() - target;
            for (_, name) in old.into_iter().take(excess) {
                if let Some(t) = self.map.remove(&name) {
                    self.history_bytes -= t.history.bytes();
                    dropped += u64::from(t.seq > 0);
                }
            }
        }
        self.dropped += dropped;
        let room = self.map.len() < max;
        self.full_until = (!room).then(|| now + FULL_BACKOFF);
        room
    }

    /// Give the next sequence number of `name` (created if needed; `None`
    /// as for [`Topics::entry`]) to a delivery, framed by
    /// `frame(topic's epoch, seq)` at server time `now_ms`; keep it in the
    /// topic's history (forgetting what is too old there) and all histories
    /// within [`TopicLimits::max_history_bytes`]. Returns the seq and frame.
    pub fn publish(
        &mut self,
        name: &str,
        now_ms: u64,
        frame: impl FnOnce(&str, u64) -> Frame,
    ) -> Option<(u64, Frame)> {
        // The history is reached through `entry`'s borrow: no further hash
        // lookup of the name per publish.
        let t = self.entry(name)?;
        t.seq += 1;
        let seq = t.seq;
        let f = frame(&t.epoch, seq);
        let before = t.history.bytes();
        t.history.trim(now_ms);
        t.history.push(Stored {
            seq,
            ts: now_ms,
            frame: f.clone(),
        });
        let after = t.history.bytes();
        self.history_bytes = self.history_bytes - before + after;
        if self.history_bytes > self.limits.max_history_bytes {
            self.shed();
        }
        Some((seq, f))
    }

    /// Forget what is too old in `name`'s history.
    pub fn trim(&mut self, name: &str, now_ms: u64) {
        if let Some(t) = self.map.get_mut(name) {
            let before = t.history.bytes();
            t.history.trim(now_ms);
            self.history_bytes = self.history_bytes - before + t.history.bytes();
        }
    }

    /// Clear the histories published to longest ago until all of them hold
    /// at most three quarters of the budget (so this O(n log n) pass is
    /// rare).
    fn shed(&mut self) {
        let budget = self.limits.max_history_bytes;
        let mut old: Vec<(u64, String)> = self
            .map
            .iter()
            .filter_map(|(k, t)| Some((t.history.last_ts()?, k.clone())))
            .collect();
        old.sort_unstable();
        for (_, name) in old {
            if self.history_bytes <= budget / 4 * 3 {
                break;
            }
            if let Some(t) = self.map.get_mut(&name) {
                self.history_bytes -= t.history.bytes();
                t.history.clear();
            }
        }
    }

    /// Remove `id`'s subscription to `name` (see [`Topic::remove`]) and drop
    /// the topic if nothing is left in it. Returns true if the user left.
    pub fn unsubscribe(&mut self, name: &str, id: crate::reactor::ConnId, user: &str) -> bool {
        let Some(t) = self.map.get_mut(name) else {
            return false;
        };
        let left = t.remove(id, user);
        if t.is_idle() {
            self.dropped += u64::from(t.seq > 0);
            self.map.remove(name);
        }
        left
    }
}
