//! The engine: where a topic's sequence numbers, history and presence
//! live, and how deliveries reach the other nodes. The hub (`hub.rs` and
//! its rooms) owns connections, the protocol and local fan-out; it asks
//! the engine for everything that must be the same on every node.
//!
//! Two engines implement [`Engine`]:
//! - [`memory`]: one node, everything in this process (the default);
//! - `redis` (feature `redis`): many nodes over Redis — one sequence per
//!   topic for the whole cluster, history in Redis Streams, presence with
//!   node heartbeats.
//!
//! An engine answers at once when it can ([`Outcome::Done`]) and later
//! otherwise ([`Outcome::Pending`]): then an [`EngineEvent`] brings the
//! result, and [`Engine::poll`] hands it over on the loop thread (the
//! engine calls [`crate::reactor::Handle::wake`] when events wait). Local
//! deliveries of an engine that has other nodes come as
//! [`EngineEvent::Deliver`], in sequence order per topic, whichever node
//! took the publish.

pub mod dedup;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sessions;

use super::history::Stored;
use crate::reactor::{ConnId, Frame};

/// Identifies an operation the hub waits for (a publish, a history fetch,
/// a presence query); chosen by the hub, echoed in the event.
pub type OpId = u64;

/// A result now, or an [`EngineEvent`] later.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The result.
    Done(T),
    /// An event carries the result later.
    Pending,
}

/// Why an engine could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// A new topic does not fit (the memory engine's `max_topics`).
    TooManyTopics,
    /// The topic is new, and whoever would create it keeps as many topics
    /// as their quota allows ([`Creator::quota`]).
    QuotaExceeded,
    /// The user keeps as many acknowledged positions as allowed.
    TooManyPositions,
    /// The engine's backing store cannot be reached. `maybe_stored`: the
    /// operation was sent before the connection failed, so it may have
    /// taken effect (a publish may still be delivered); retry with an
    /// idempotency key to be sure.
    Unavailable {
        /// The operation may have taken effect.
        maybe_stored: bool,
    },
}

/// Why an [`Engine::ack`] was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// This node does not know the topic's position (not attached here,
    /// or not answered yet).
    Unknown,
    /// The ack names an epoch that is not the topic's.
    OtherEpoch,
    /// The seq is past the topic's last delivery.
    Ahead,
    /// As for any operation.
    Engine(EngineError),
}

/// Check an ack of `seq` (naming `claimed` as its epoch, if it does)
/// against a topic at `last` in `epoch`.
pub(crate) fn check_ack(
    epoch: &str,
    last: u64,
    seq: u64,
    claimed: Option<&str>,
) -> Result<(), AckError> {
    if claimed.is_some_and(|c| c != epoch) {
        return Err(AckError::OtherEpoch);
    }
    if seq > last {
        return Err(AckError::Ahead);
    }
    Ok(())
}

/// Who a new topic is charged to, and how many such topics they may keep
/// at once. An engine whose topic table is bounded on this node (the
/// memory engine) refuses a new topic past the quota, so that one user
/// (or, for anonymous users, one address) cannot fill the table for
/// everyone; an engine that keeps topics elsewhere (Redis, bounded by its
/// memory and time-to-live) may ignore it.
#[derive(Debug, Clone, Copy)]
pub struct Creator<'a> {
    /// `u:{user}` or `ip:{address}`.
    pub key: &'a str,
    /// Topics this creator may keep (0: no quota).
    pub quota: usize,
}

/// A publish to sequence.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The hub's id for this publish (echoed in [`EngineEvent::Published`]).
    pub op: OpId,
    /// Topic name (valid, see `protocol::valid_topic`).
    pub topic: &'a str,
    /// The publisher's user id.
    pub from: &'a str,
    /// The payload, raw JSON.
    pub data: &'a str,
    /// Wall-clock ms since the Unix epoch (the delivery's `ts`).
    pub ts: u64,
    /// A local connection that must not get this delivery
    /// (`exclude_self`); carried through to [`EngineEvent::Deliver`].
    pub exclude: Option<ConnId>,
    /// Who a new topic would be charged to.
    pub creator: Creator<'a>,
    /// The publisher's idempotency key: a publish with a key this user
    /// used within the engine's window is not stored again; its original
    /// receipt is returned ([`Sequenced::Duplicate`]).
    pub idempotency_key: Option<&'a str>,
}

/// A publish the engine sequenced at once (memory engine).
#[derive(Debug, Clone)]
pub enum Sequenced {
    /// Numbered now: fan it out.
    New {
        /// Its sequence number in the topic's epoch ([`Engine::position`]).
        seq: u64,
        /// The delivery, framed once.
        frame: Frame,
    },
    /// A retry (same idempotency key): stored before, not again; nothing
    /// to deliver.
    Duplicate(Receipt),
}

/// Where a publish was stored: what its ack says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Its topic (a `dm`: the recipient's inbox).
    pub topic: String,
    /// Its position there.
    pub position: Position,
    /// A retry of a publish stored before (same idempotency key).
    pub duplicate: bool,
}

/// Where a topic stands: its epoch and the last sequence number given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// The epoch its numbers belong to.
    pub epoch: String,
    /// The last sequence number given out (0: none yet).
    pub seq: u64,
}

/// Deliveries fetched from the engine's history for a resume.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The topic's position when they were read.
    pub position: Position,
    /// Deliveries after the requested seq, oldest first (the rest is
    /// gone from history).
    pub items: Vec<Stored>,
}

/// Who is subscribed to a topic, on every node: one page of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// Distinct users on this page (sorted with the memory engine; in
    /// Redis's hash order with the Redis engine).
    pub users: Vec<String>,
    /// Distinct users in all.
    pub count: u64,
    /// Where the next page starts (`None`: this was the last one).
    /// Opaque to the client, which sends it back as `cursor`.
    pub next: Option<String>,
}

/// Which page of a topic's members a `presence` request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Where to start: a previous page's [`Members::next`] (`None`: the
    /// first page).
    pub cursor: Option<String>,
    /// Most users on the page (at least 1; the hub bounds it).
    pub limit: usize,
}

/// What an engine reports on the loop thread ([`Engine::poll`]).
#[derive(Debug)]
pub enum EngineEvent {
    /// A pending publish was stored (or not). Comes before its delivery.
    Published {
        /// The publish's id.
        op: OpId,
        /// Where it was stored, or why it failed.
        result: Result<Receipt, EngineError>,
    },
    /// A pending [`Engine::acked`] lookup finished.
    Acked {
        /// The lookup's id.
        op: OpId,
        /// Topic.
        topic: String,
        /// The stored position (`None`: nothing stored), or why it could
        /// not be read.
        result: Result<Option<Position>, EngineError>,
    },
    /// A pending [`Engine::attach`] finished: live deliveries of `topic`
    /// after `result`'s seq follow as [`EngineEvent::Deliver`].
    Attached {
        /// Topic.
        topic: String,
        /// Its position, or why it could not be attached.
        result: Result<Position, EngineError>,
    },
    /// A pending [`Engine::fetch`] finished.
    Fetched {
        /// The fetch's id.
        op: OpId,
        /// Topic.
        topic: String,
        /// What history holds, or why it could not be read.
        result: Result<Fetched, EngineError>,
    },
    /// A delivery for the local subscribers of an attached topic, in
    /// sequence order per topic.
    Deliver {
        /// Topic.
        topic: String,
        /// Its sequence number (in the topic's current epoch).
        seq: u64,
        /// The delivery, framed once.
        frame: Frame,
        /// A local connection that must not get it (`exclude_self`).
        exclude: Option<ConnId>,
    },
    /// Deliveries `from..=to` of `topic` are lost for this node's
    /// subscribers (missed while the engine was cut off, and gone from
    /// history): they get a `gap`.
    Gap {
        /// Topic.
        topic: String,
        /// Epoch of the lost numbers.
        epoch: String,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// The topic's numbering started over (its data in the engine was
    /// lost): local subscribers are told; later deliveries are numbered
    /// in `position.epoch`.
    EpochChanged {
        /// Topic.
        topic: String,
        /// The new position.
        position: Position,
    },
    /// A user joined (first connection anywhere) or left (last one) a
    /// topic that has local subscribers.
    Presence {
        /// Topic.
        topic: String,
        /// User id.
        user: String,
        /// Joined (else left).
        joined: bool,
        /// Distinct members of the topic right after the change.
        count: u64,
    },
    /// A pending [`Engine::members`] query finished.
    Members {
        /// The query's id.
        op: OpId,
        /// Topic.
        topic: String,
        /// The members, or why they could not be read.
        result: Result<Members, EngineError>,
    },
    /// The engine can take publishes again (`true`) or not (`false`);
    /// `/readyz` follows it.
    Ready(bool),
}

/// Sizes for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    /// Topics the engine holds on this node.
    pub topics: u64,
    /// Frame bytes of history held on this node.
    pub history_bytes: u64,
    /// Users with stored acknowledged positions (kept on this node).
    pub sessions: u64,
    /// Acknowledged positions stored (kept on this node).
    pub positions: u64,
    /// Idempotency keys within their window (kept on this node).
    pub idempotency_keys: u64,
}

/// The engine seam. Every method runs on the loop thread and must not
/// block; an engine that does I/O does it on threads of its own.
pub trait Engine {
    /// `memory` or `redis` (logs and metrics).
    fn kind(&self) -> &'static str;

    /// The epoch in the `welcome` message: what a restart of this node
    /// changes (memory engine) or the cluster's (Redis engine).
    fn epoch(&self) -> &str;

    /// Whether publishes can be taken now (`/readyz`).
    fn ready(&self) -> bool {
        true
    }

    /// Sequence a publish: the next seq of its topic, kept in history, on
    /// its way to every node. `Done` (memory): fan it out now;
    /// `Pending`: [`EngineEvent::Published`] follows, then the delivery
    /// as [`EngineEvent::Deliver`] if the topic is attached.
    fn publish(&mut self, p: &Publish<'_>, now_ms: u64) -> Result<Outcome<Sequenced>, EngineError>;

    /// The topic's current position, if this node knows it (an attached
    /// topic, or any topic of the memory engine).
    fn position(&self, topic: &str) -> Option<Position>;

    /// The topic's epoch and last seq, if this node knows them (as
    /// [`Engine::position`], without a copy: the epoch is in every
    /// publish ack, and both are checked on every `ack`).
    fn head(&self, topic: &str) -> Option<(&str, u64)>;

    /// The topic's epoch, if this node knows it (see [`Engine::head`]).
    fn topic_epoch(&self, topic: &str) -> Option<&str> {
        self.head(topic).map(|(epoch, _)| epoch)
    }

    /// A local connection subscribes to `topic`: make its deliveries
    /// reach this node. `Done` with the current position, or `Pending`
    /// ([`EngineEvent::Attached`] follows). Counted: every `attach` that
    /// did not return an error is matched by one [`Engine::detach`]. A new
    /// topic is charged to `creator`.
    fn attach(
        &mut self,
        topic: &str,
        creator: Creator<'_>,
    ) -> Result<Outcome<Position>, EngineError>;

    /// A local subscription to `topic` ended.
    fn detach(&mut self, topic: &str);

    /// Deliveries of `topic` this node holds, oldest first, after seq
    /// `after`, at most `max` (`now_ms`: the loop's clock, for the age
    /// limit). The bool says whether that is everything the topic has
    /// after `after` (true) or older ones may be fetched with
    /// [`Engine::fetch`] (false: the node's copy starts later).
    fn history(&mut self, topic: &str, after: u64, max: usize, now_ms: u64) -> (Vec<Stored>, bool);

    /// Read `topic`'s history after `after` from where it is kept
    /// ([`EngineEvent::Fetched`] follows). The memory engine holds it all
    /// and never needs this.
    fn fetch(&mut self, topic: &str, after: u64, op: OpId)
        -> Result<Outcome<Fetched>, EngineError>;

    /// `user` subscribed to `topic` on this node (every connection).
    /// Returns the topic's member count if that made the user a member
    /// (its first connection anywhere): announce the join now. Engines
    /// with other nodes return `None` and report joins as
    /// [`EngineEvent::Presence`] instead.
    fn join(&mut self, topic: &str, user: &str) -> Option<u64>;

    /// The opposite of [`Engine::join`]: the member count left if the user
    /// is no longer a member anywhere (announce the leave now).
    fn leave(&mut self, topic: &str, user: &str) -> Option<u64>;

    /// One page of `topic`'s members on every node.
    fn members(
        &mut self,
        topic: &str,
        page: &Page,
        op: OpId,
    ) -> Result<Outcome<Members>, EngineError>;

    /// `user` processed `topic` up to `seq` (cumulative) of the topic's
    /// current epoch, which the ack may name (`epoch`, checked). Stored
    /// for the user's next `"since":"acked"`, on any node; an engine that
    /// writes elsewhere may do so later (several acks of a topic
    /// coalesce). On the hot path of clients that ack often: no
    /// allocation once the user and topic are known.
    fn ack(
        &mut self,
        user: &str,
        topic: &str,
        seq: u64,
        epoch: Option<&str>,
        now_ms: u64,
    ) -> Result<(), AckError>;

    /// The position `user` acknowledged in `topic` (`None`: nothing
    /// stored): `Done`, or `Pending` ([`EngineEvent::Acked`] follows).
    fn acked(
        &mut self,
        user: &str,
        topic: &str,
        op: OpId,
        now_ms: u64,
    ) -> Result<Outcome<Option<Position>>, EngineError>;

    /// The next event, if any.
    fn poll(&mut self) -> Option<EngineEvent>;

    /// Sizes for `/metrics`.
    fn stats(&self) -> EngineStats;

    /// The engine's own metrics, in the Prometheus text format.
    fn render_metrics(&self, out: &mut String) {
        let _ = out;
    }
}
