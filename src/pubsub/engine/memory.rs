//! The memory engine: one node, every topic's sequence counter, history
//! and members in this process. The hub's default (`--engine memory`).
//!
//! Bounded like the rest of the hub: at most `max_topics` shared topics and
//! `max_inboxes` user inboxes (`@user`, a class of their own, so that a
//! full table of rooms never breaks direct messages), and
//! `max_history_bytes` of history in all of them (over it, the histories
//! published to longest ago are cleared; their numbers go on, so a resume
//! reports the loss). At a class's limit, its topics with nothing in them
//! are dropped, then those without subscribers whose last delivery is
//! oldest; topics with subscribers are never dropped.
//!
//! A new topic is charged to its creator ([`Creator`]: a user, or the
//! address of anonymous users), who may keep at most its quota of them;
//! the charge ends when the topic is dropped.
//!
//! Dropping a topic forgets its sequence counter. So that a resuming
//! client can never take a recreated topic's numbers for the old ones, a
//! topic created after a numbered topic (one that had deliveries) was
//! dropped numbers its deliveries in an epoch of its own: the node's
//! epoch, `.`, and how many numbered topics had been dropped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use super::dedup::{self, Dedup};
use super::sessions::{AckRefused, Sessions};
use super::{
    check_ack, AckError, Creator, Engine, EngineError, EngineEvent, EngineStats, Fetched, Members,
    OpId, Outcome, Page, Position, Publish, Receipt, Sequenced,
};
use crate::pubsub::history::{History, Stored};
use crate::pubsub::protocol::Delivery;
use crate::reactor::Frame;

/// What bounds the memory engine (from the hub's configuration).
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    /// Most shared topics (not inboxes); at the limit, idle topics and
    /// then those without subscribers whose last delivery is oldest are
    /// dropped.
    pub max_topics: usize,
    /// Most user inboxes (`@user`), bounded apart from the shared topics.
    pub max_inboxes: usize,
    /// Most frame bytes in all histories together; over it, the histories
    /// of the topics published to longest ago are cleared (their sequence
    /// numbers go on, so a resume reports what was lost).
    pub max_history_bytes: usize,
    /// Deliveries kept per topic.
    pub history_len: usize,
    /// Oldest delivery kept, in ms.
    pub history_age_ms: u64,
    /// A user's acknowledged positions live this long after its last ack.
    pub session_ttl_ms: u64,
    /// Acknowledged positions per user.
    pub max_positions_per_user: usize,
    /// Acknowledged positions of all users together.
    pub max_positions: usize,
    /// How long an idempotency key is remembered.
    pub idempotency_window_ms: u64,
    /// Idempotency keys remembered at once.
    pub max_idempotency_keys: usize,
}

impl MemoryLimits {
    /// The hub's defaults for everything but the topic table.
    pub fn new(
        max_topics: usize,
        max_history_bytes: usize,
        history_len: usize,
        history_age_ms: u64,
    ) -> Self {
        MemoryLimits {
            max_topics,
            max_inboxes: max_topics,
            max_history_bytes,
            history_len,
            history_age_ms,
            session_ttl_ms: 24 * 3600 * 1000,
            max_positions_per_user: 1000,
            max_positions: 1_000_000,
            idempotency_window_ms: 5 * 60 * 1000,
            max_idempotency_keys: 100_000,
        }
    }
}

/// After a pass that could not make room for a new topic, refuse new
/// topics for this long rather than scan the table again for each.
const FULL_BACKOFF: Duration = Duration::from_secs(1);

/// One topic: its numbering, its history, its members.
#[derive(Debug)]
struct Topic {
    /// The epoch its sequence numbers belong to: the node's, with a suffix
    /// if topics were dropped before this one was created.
    epoch: String,
    /// Last sequence number given out in this epoch (0: none yet).
    seq: u64,
    /// Recent deliveries for resume.
    history: History,
    /// Local subscriptions ([`Engine::attach`] minus [`Engine::detach`]).
    attached: u32,
    /// Distinct users subscribed, with their number of connections.
    /// (Ordered, so that `presence` pages by name.)
    members: BTreeMap<String, u32>,
    /// Who it is charged to.
    creator: Option<Box<str>>,
}

impl Topic {
    /// Nothing in it: no subscribers, no history.
    fn is_idle(&self) -> bool {
        self.attached == 0 && self.history.is_empty()
    }
}

/// The memory engine.
#[derive(Debug)]
pub struct MemoryEngine {
    node: String,
    epoch: String,
    map: HashMap<String, Topic>,
    /// Inboxes in `map`.
    inboxes: usize,
    /// Topics charged to each creator.
    created: HashMap<Box<str>, usize>,
    limits: MemoryLimits,
    /// Numbered topics dropped so far (names the epoch of topics created
    /// after).
    dropped: u64,
    /// Frame bytes in all histories.
    history_bytes: usize,
    /// No new topic of a class (shared, inbox) before this time: the last
    /// pass found no room (monotonic, so a wall-clock step cannot stretch
    /// it).
    full_until: [Option<Instant>; 2],
    /// Acknowledged positions.
    sessions: Sessions,
    /// Idempotency keys within their window.
    dedup: Dedup,
}

/// Inboxes are a class of their own: `@user`.
fn is_inbox(name: &str) -> bool {
    name.starts_with('@')
}

impl MemoryEngine {
    /// An empty engine for node `node` whose sequence numbers belong to
    /// `epoch` (random per process: a restart starts new numbers).
    pub fn new(node: &str, epoch: String, limits: MemoryLimits) -> Self {
        MemoryEngine {
            node: node.to_string(),
            epoch,
            map: HashMap::new(),
            inboxes: 0,
            created: HashMap::new(),
            limits,
            dropped: 0,
            history_bytes: 0,
            full_until: [None, None],
            sessions: Sessions::new(
                limits.session_ttl_ms,
                limits.max_positions_per_user,
                limits.max_positions,
            ),
            dedup: Dedup::new(limits.idempotency_window_ms, limits.max_idempotency_keys),
        }
    }

    /// Topics held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No topics.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The topic `name`, created if needed and charged to `creator`.
    /// Refused when its class is at its limit and no topic can be dropped
    /// to make room (then, for a second, new topics of that class are
    /// refused without another pass), or when `creator` is at its quota.
    fn entry(&mut self, name: &str, creator: Creator<'_>) -> Result<&mut Topic, EngineError> {
        if !self.map.contains_key(name) {
            if creator.quota > 0
                && self.created.get(creator.key).copied().unwrap_or(0) >= creator.quota
            {
                return Err(EngineError::QuotaExceeded);
            }
            let inbox = is_inbox(name);
            let (count, max) = match inbox {
                true => (self.inboxes, self.limits.max_inboxes),
                false => (self.map.len() - self.inboxes, self.limits.max_topics),
            };
            if count >= max && !self.make_room(inbox) {
                return Err(EngineError::TooManyTopics);
            }
            let epoch = match self.dropped {
                0 => self.epoch.clone(),
                n => format!("{}.{n}", self.epoch),
            };
            let limits = self.limits;
            let topic = Topic {
                epoch,
                seq: 0,
                history: History::new(limits.history_len, limits.history_age_ms),
                attached: 0,
                members: BTreeMap::new(),
                creator: (creator.quota > 0).then(|| Box::from(creator.key)),
            };
            if let Some(c) = &topic.creator {
                *self.created.entry(c.clone()).or_insert(0) += 1;
            }
            self.inboxes += usize::from(inbox);
            self.map.insert(name.to_string(), topic);
        }
        self.map.get_mut(name).ok_or(EngineError::TooManyTopics)
    }

    /// Forget a topic taken out of the table: its history bytes, its class
    /// count, its creator's charge, and (if it had deliveries) that its
    /// numbers are gone (the next epochs say so).
    fn forget(&mut self, name: &str, t: Topic) {
        self.history_bytes -= t.history.bytes();
        self.inboxes -= usize::from(is_inbox(name));
        self.dropped += u64::from(t.seq > 0);
        if let Some(c) = t.creator {
            if let Some(n) = self.created.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    self.created.remove(&c);
                }
            }
        }
    }

    /// Drop topics of a class (inboxes or shared) until there is room for
    /// one more (and some to spare, so the pass, O(n log n), runs once per
    /// `max / 16` new topics).
    fn make_room(&mut self, inbox: bool) -> bool {
        let class = usize::from(inbox);
        let max = match inbox {
            true => self.limits.max_inboxes,
            false => self.limits.max_topics,
        };
        let now = Instant::now();
        if self.full_until[class].is_some_and(|until| now < until) {
            return false;
        }
        let count = |e: &Self| match inbox {
            true => e.inboxes,
            false => e.map.len() - e.inboxes,
        };
        let target = max.saturating_sub((max / 16).max(1));
        // Nothing in them first, then no subscribers, oldest publish first.
        let mut old: Vec<(bool, u64, String)> = self
            .map
            .iter()
            .filter(|(k, t)| is_inbox(k) == inbox && t.attached == 0)
            .map(|(k, t)| (!t.is_idle(), t.history.last_ts().unwrap_or(0), k.clone()))
            .collect();
        old.sort_unstable();
        for (_, _, name) in old {
            if count(self) <= target {
                break;
            }
            if let Some(t) = self.map.remove(&name) {
                self.forget(&name, t);
            }
        }
        let room = count(self) < max;
        self.full_until[class] = (!room).then(|| now + FULL_BACKOFF);
        room
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

    /// Drop `name` if nothing is left in it.
    fn drop_if_idle(&mut self, name: &str) {
        if self.map.get(name).is_some_and(Topic::is_idle) {
            if let Some(t) = self.map.remove(name) {
                self.forget(name, t);
            }
        }
    }
}

impl Engine for MemoryEngine {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The next seq of the topic (created if needed), the delivery framed
    /// once and kept in history. History is stamped with the loop's
    /// monotonic clock (`now_ms`), which its age limit runs on, so a
    /// wall-clock step neither keeps nor drops history early.
    fn publish(&mut self, p: &Publish<'_>, now_ms: u64) -> Result<Outcome<Sequenced>, EngineError> {
        if let Some(key) = p.idempotency_key {
            if let Some(s) = self.dedup.get(p.from, key, now_ms) {
                return Ok(Outcome::Done(Sequenced::Duplicate(Receipt {
                    topic: s.topic.clone(),
                    position: s.position.clone(),
                    duplicate: true,
                })));
            }
        }
        let node = std::mem::take(&mut self.node);
        let t = match self.entry(p.topic, p.creator) {
            Ok(t) => t,
            Err(e) => {
                self.node = node;
                return Err(e);
            }
        };
        t.seq += 1;
        let seq = t.seq;
        let text = Delivery {
            topic: p.topic,
            seq,
            epoch: &t.epoch,
            node: &node,
            from: p.from,
            ts: p.ts,
            data: p.data,
        }
        .encode();
        let frame = Frame::text(&text);
        let before = t.history.bytes();
        t.history.trim(now_ms);
        t.history.push(Stored {
            seq,
            ts: now_ms,
            frame: frame.clone(),
        });
        let after = t.history.bytes();
        // Where a retry with the same key will be sent back to.
        let receipt = p.idempotency_key.map(|key| {
            let position = Position {
                epoch: t.epoch.clone(),
                seq,
            };
            (key, position)
        });
        self.node = node;
        self.history_bytes = self.history_bytes - before + after;
        if let Some((key, position)) = receipt {
            let topic = p.topic.to_string();
            self.dedup
                .insert(p.from, key, dedup::Stored { topic, position }, now_ms);
        }
        if self.history_bytes > self.limits.max_history_bytes {
            self.shed();
        }
        Ok(Outcome::Done(Sequenced::New { seq, frame }))
    }

    fn position(&self, topic: &str) -> Option<Position> {
        self.map.get(topic).map(|t| Position {
            epoch: t.epoch.clone(),
            seq: t.seq,
        })
    }

    fn head(&self, topic: &str) -> Option<(&str, u64)> {
        self.map.get(topic).map(|t| (t.epoch.as_str(), t.seq))
    }

    fn attach(
        &mut self,
        topic: &str,
        creator: Creator<'_>,
    ) -> Result<Outcome<Position>, EngineError> {
        let t = self.entry(topic, creator)?;
        t.attached += 1;
        Ok(Outcome::Done(Position {
            epoch: t.epoch.clone(),
            seq: t.seq,
        }))
    }

    fn detach(&mut self, topic: &str) {
        if let Some(t) = self.map.get_mut(topic) {
            t.attached = t.attached.saturating_sub(1);
        }
        self.drop_if_idle(topic);
    }

    fn history(&mut self, topic: &str, after: u64, max: usize, now_ms: u64) -> (Vec<Stored>, bool) {
        let Some(t) = self.map.get_mut(topic) else {
            return (Vec::new(), true);
        };
        let before = t.history.bytes();
        t.history.trim(now_ms);
        self.history_bytes = self.history_bytes - before + t.history.bytes();
        let items = t.history.after(after, max);
        (items, true)
    }

    fn fetch(
        &mut self,
        topic: &str,
        after: u64,
        op: OpId,
    ) -> Result<Outcome<Fetched>, EngineError> {
        // Everything is here already; answer from memory.
        let _ = op;
        let Some(t) = self.map.get(topic) else {
            return Ok(Outcome::Done(Fetched {
                position: Position::default(),
                items: Vec::new(),
            }));
        };
        Ok(Outcome::Done(Fetched {
            position: Position {
                epoch: t.epoch.clone(),
                seq: t.seq,
            },
            items: t.history.after(after, usize::MAX),
        }))
    }

    fn join(&mut self, topic: &str, user: &str) -> Option<u64> {
        let t = self.map.get_mut(topic)?;
        let n = t.members.entry(user.to_string()).or_insert(0);
        *n += 1;
        (*n == 1).then_some(t.members.len() as u64)
    }

    fn leave(&mut self, topic: &str, user: &str) -> Option<u64> {
        let t = self.map.get_mut(topic)?;
        let n = t.members.get_mut(user)?;
        if *n > 1 {
            *n -= 1;
            return None;
        }
        t.members.remove(user);
        Some(t.members.len() as u64)
    }

    fn members(
        &mut self,
        topic: &str,
        page: &Page,
        op: OpId,
    ) -> Result<Outcome<Members>, EngineError> {
        let _ = op;
        let Some(t) = self.map.get(topic) else {
            return Ok(Outcome::Done(Members::default()));
        };
        // The cursor is the last name of the previous page.
        let from = match &page.cursor {
            Some(c) => Bound::Excluded(c.as_str()),
            None => Bound::Unbounded,
        };
        let limit = page.limit.max(1);
        let mut users: Vec<String> = t
            .members
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit + 1)
            .map(|(u, _)| u.clone())
            .collect();
        let more = users.len() > limit;
        users.truncate(limit);
        let next = more.then(|| users.last().cloned()).flatten();
        Ok(Outcome::Done(Members {
            users,
            count: t.members.len() as u64,
            next,
        }))
    }

    fn ack(
        &mut self,
        user: &str,
        topic: &str,
        seq: u64,
        epoch: Option<&str>,
        now_ms: u64,
    ) -> Result<(), AckError> {
        let t = self.map.get(topic).ok_or(AckError::Unknown)?;
        check_ack(&t.epoch, t.seq, seq, epoch)?;
        self.sessions
            .ack(user, topic, &t.epoch, seq, now_ms)
            .map_err(|AckRefused::TooManyTopics| AckError::Engine(EngineError::TooManyPositions))
    }

    fn acked(
        &mut self,
        user: &str,
        topic: &str,
        op: OpId,
        now_ms: u64,
    ) -> Result<Outcome<Option<Position>>, EngineError> {
        let _ = op;
        Ok(Outcome::Done(self.sessions.get(user, topic, now_ms)))
    }

    fn poll(&mut self) -> Option<EngineEvent> {
        None
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            topics: self.map.len() as u64,
            history_bytes: self.history_bytes as u64,
            sessions: self.sessions.len() as u64,
            positions: self.sessions.positions() as u64,
            idempotency_keys: self.dedup.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANYONE: Creator<'static> = Creator {
        key: "u:x",
        quota: 0,
    };

    fn engine(max_topics: usize) -> MemoryEngine {
        MemoryEngine::new(
            "n",
            "e".into(),
            MemoryLimits {
                max_inboxes: 2,
                ..MemoryLimits::new(max_topics, 1 << 20, 10, 60_000)
            },
        )
    }

    fn publish(e: &mut MemoryEngine, topic: &str) -> Result<u64, EngineError> {
        publish_as(e, topic, ANYONE)
    }

    fn publish_as(
        e: &mut MemoryEngine,
        topic: &str,
        creator: Creator<'_>,
    ) -> Result<u64, EngineError> {
        let p = Publish {
            op: 0,
            topic,
            from: "u",
            data: "1",
            ts: 0,
            exclude: None,
            creator,
            idempotency_key: None,
        };
        match e.publish(&p, 0)? {
            Outcome::Done(Sequenced::New { seq, .. }) => Ok(seq),
            other => panic!("the memory engine numbers a publish at once: {other:?}"),
        }
    }

    #[test]
    fn numbers_history_and_members() {
        let mut e = engine(10);
        assert!(matches!(
            e.attach("t", ANYONE),
            Ok(Outcome::Done(Position { seq: 0, .. }))
        ));
        assert_eq!(publish(&mut e, "t"), Ok(1));
        assert_eq!(publish(&mut e, "t"), Ok(2));
        let (items, complete) = e.history("t", 1, 10, 0);
        assert!(complete);
        assert_eq!(items.iter().map(|s| s.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(e.join("t", "alice"), Some(1));
        assert_eq!(e.join("t", "alice"), None, "a second connection of alice");
        assert_eq!(e.join("t", "bob"), Some(2));
        assert_eq!(e.leave("t", "alice"), None);
        let all = Page {
            cursor: None,
            limit: 10,
        };
        match e.members("t", &all, 0) {
            Ok(Outcome::Done(m)) => assert_eq!(
                (m.users, m.count, m.next),
                (vec!["alice".into(), "bob".into()], 2, None)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.leave("t", "alice"), Some(1));
        assert_eq!(e.position("t").map(|p| p.seq), Some(2));
    }

    #[test]
    fn members_are_paged_by_name() {
        let mut e = engine(10);
        assert!(e.attach("t", ANYONE).is_ok());
        for u in ["d", "a", "c", "b", "e"] {
            e.join("t", u);
        }
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let page = Page { cursor, limit: 2 };
            let Ok(Outcome::Done(m)) = e.members("t", &page, 0) else {
                panic!()
            };
            assert_eq!(m.count, 5);
            pages.push(m.users);
            cursor = m.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(pages, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        // Exactly full pages: the last one says so without an empty page.
        let page = Page {
            cursor: Some("c".into()),
            limit: 2,
        };
        let Ok(Outcome::Done(m)) = e.members("t", &page, 0) else {
            panic!()
        };
        assert_eq!((m.users, m.next), (vec!["d".to_string(), "e".into()], None));
        // A cursor past everyone, or not a member: the names after it.
        let page = Page {
            cursor: Some("bb".into()),
            limit: 9,
        };
        let Ok(Outcome::Done(m)) = e.members("t", &page, 0) else {
            panic!()
        };
        assert_eq!(m.users, ["c", "d", "e"]);
    }

    #[test]
    fn a_full_table_drops_idle_topics_and_renumbers_recreated_ones() {
        let mut e = engine(2);
        assert_eq!(publish(&mut e, "a"), Ok(1));
        assert!(matches!(e.attach("b", ANYONE), Ok(Outcome::Done(_))));
        // Full: "a" has history but no subscribers, so it goes.
        assert!(matches!(e.attach("c", ANYONE), Ok(Outcome::Done(_))));
        assert!(e.position("a").is_none());
        // Full of attached topics: no room.
        assert_eq!(publish(&mut e, "d"), Err(EngineError::TooManyTopics));
        e.detach("b");
        assert!(e.position("b").is_none(), "an empty topic goes at once");
        // A recreated numbered topic has an epoch of its own.
        assert_eq!(publish(&mut e, "a"), Ok(1));
        assert_eq!(e.position("a").map(|p| p.epoch), Some("e.1".into()));
    }

    #[test]
    fn inboxes_have_room_of_their_own_and_creators_a_quota() {
        let mut e = engine(2);
        assert!(matches!(e.attach("a", ANYONE), Ok(Outcome::Done(_))));
        assert!(matches!(e.attach("b", ANYONE), Ok(Outcome::Done(_))));
        assert_eq!(publish(&mut e, "c"), Err(EngineError::TooManyTopics));
        // The shared table is full; inboxes still come and go.
        assert!(matches!(e.attach("@alice", ANYONE), Ok(Outcome::Done(_))));
        assert_eq!(publish(&mut e, "@bob"), Ok(1));
        // Two inboxes: the unsubscribed one (bob's, with history) makes room.
        assert!(matches!(e.attach("@carol", ANYONE), Ok(Outcome::Done(_))));
        assert!(e.position("@bob").is_none());
        assert!(e.position("@alice").is_some());

        let mut e = engine(100);
        let mallory = Creator {
            key: "ip:10.0.0.9",
            quota: 2,
        };
        assert!(matches!(e.attach("m1", mallory), Ok(Outcome::Done(_))));
        assert_eq!(publish_as(&mut e, "m2", mallory), Ok(1));
        assert!(matches!(
            e.attach("m3", mallory),
            Err(EngineError::QuotaExceeded)
        ));
        // Existing topics are not charged again; others are not limited.
        assert!(matches!(e.attach("m1", mallory), Ok(Outcome::Done(_))));
        assert!(matches!(e.attach("m3", ANYONE), Ok(Outcome::Done(_))));
        // A dropped topic gives its charge back.
        e.detach("m1");
        e.detach("m1");
        assert!(e.position("m1").is_none());
        assert!(matches!(e.attach("m4", mallory), Ok(Outcome::Done(_))));
    }
}
