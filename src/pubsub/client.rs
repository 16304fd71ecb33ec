//! One connected client's state: who it is, what it subscribed to, its
//! rate limit, and what it is still owed or waits for.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::auth::Identity;
use super::engine::{OpId, Position};
use super::history::Stored;
use super::missed::{CatchUp, Gap};
use super::protocol::Resume;
use super::ratelimit::TokenBucket;
use super::redeliver::Watch;

/// Requests a client may have waiting behind its pending subscriptions
/// (see [`Client::waiting`]); one more is refused with `rate_limited`.
pub(super) const MAX_WAITING: usize = 256;

/// One connected client.
#[derive(Debug)]
pub(super) struct Client {
    pub who: Identity,
    /// The peer's address (per-address quotas).
    pub ip: Option<IpAddr>,
    /// Who the topics it creates are charged to (see `quota.rs`).
    pub creator: String,
    /// Its subscriptions, pending ones included.
    pub topics: Vec<String>,
    pub bucket: TokenBucket,
    /// When the token expires, on the loop's monotonic clock
    /// (`Ctx::now_ms`, which the rate limiter also runs on: a wall-clock
    /// step neither starves nor floods it).
    pub expires_ms: Option<u64>,
    /// Rate-limited requests in a row.
    pub violations: u32,
    /// Deliveries dropped for a full queue, reported when it drains.
    pub gaps: Vec<Gap>,
    /// Resume replays not finished for a full queue. Continued when the
    /// queue drains; at most one per subscription.
    pub catch_up: Vec<CatchUp>,
    /// Subscriptions the engine has not answered yet (an engine with
    /// other nodes attaches a topic, or reads history, over the network).
    pub pending: Vec<PendingSub>,
    /// Requests that arrived while a subscription of their topic was
    /// pending, in arrival order: they run when it is answered, so a
    /// client's requests on one topic take effect in the order sent (a
    /// `pub` after a `sub` reaches the subscriber). At most
    /// [`MAX_WAITING`].
    pub waiting: VecDeque<Waiting>,
    /// Requests read past the loop turn's request budget, in order: they
    /// run on later turns, and the connection is not read meanwhile (see
    /// `pacing.rs`).
    pub deferred: VecDeque<Box<str>>,
    /// Why it is not read: `reading::Hold` bits (0: it is read).
    pub holds: u8,
    /// Topics it acknowledges, watched for redelivery (only with
    /// `redeliver_after`; see `redeliver.rs`).
    pub watches: Vec<Watch>,
    /// Listed in `Hub::watched` (so an ack need not search that list).
    pub watched: bool,
}

impl Client {
    pub fn new(
        who: Identity,
        ip: Option<IpAddr>,
        bucket: TokenBucket,
        expires_ms: Option<u64>,
    ) -> Self {
        Client {
            creator: super::quota::creator_key(&who, ip),
            who,
            ip,
            topics: Vec::new(),
            bucket,
            expires_ms,
            violations: 0,
            gaps: Vec::new(),
            catch_up: Vec::new(),
            pending: Vec::new(),
            waiting: VecDeque::new(),
            deferred: VecDeque::new(),
            holds: 0,
            watches: Vec::new(),
            watched: false,
        }
    }

    /// Its token's `exp` has passed (`now` from `Ctx::now_ms`).
    pub fn token_expired(&self, now: u64) -> bool {
        self.expires_ms.is_some_and(|at| now >= at)
    }

    /// Subscribed to `topic` (or subscribing)?
    pub fn has(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }

    /// Must a request on `topic` wait (a subscription of it is pending, or
    /// earlier requests on it wait)?
    pub fn must_wait(&self, topic: &str) -> bool {
        self.pending.iter().any(|p| p.topic == topic)
            || self.waiting.iter().any(|w| w.topic == topic)
    }

    /// The pending subscription of `topic`, taken out.
    pub fn take_pending(&mut self, topic: &str) -> Option<PendingSub> {
        let i = self.pending.iter().position(|p| p.topic == topic)?;
        Some(self.pending.swap_remove(i))
    }
}

/// A `sub` the engine has not answered yet.
#[derive(Debug)]
pub(super) struct PendingSub {
    pub topic: String,
    /// The request's id.
    pub req: Option<u64>,
    /// Its resume point.
    pub since: Option<Resume>,
    /// A new subscription (its `join` and count are due when answered).
    pub new: bool,
    /// `"since":"acked"` resolved already (see `ResumeFrom::acked`).
    pub acked: Option<Option<Position>>,
    /// What it waits for.
    pub stage: Stage,
}

/// What a pending subscription waits for.
#[derive(Debug)]
pub(super) enum Stage {
    /// The engine attaches the topic on this node.
    Attaching,
    /// History older than this node's copy, fetched for the resume.
    Fetching {
        /// The fetch's id.
        op: OpId,
    },
    /// The user's acknowledged position (`"since":"acked"`).
    Acked {
        /// The lookup's id.
        op: OpId,
    },
}

/// A request that waits behind a pending subscription of its topic.
#[derive(Debug)]
pub(super) struct Waiting {
    pub topic: String,
    /// The request as sent.
    pub text: String,
}

/// What a resume needs: where the topic stands, and what history it
/// replays from.
#[derive(Debug)]
pub(super) struct ResumeFrom {
    pub position: Position,
    /// Deliveries fetched from the engine (older than this node's copy),
    /// replayed before what the node holds. Empty for the memory engine.
    pub fetched: Vec<Stored>,
    /// With `"since":"acked"`: the stored position it was resolved to
    /// (`Some(None)`: none was stored); `None` otherwise.
    pub acked: Option<Option<Position>>,
}

impl ResumeFrom {
    /// At `position`, nothing fetched or resolved yet.
    pub fn at(position: Position) -> Self {
        ResumeFrom {
            position,
            fetched: Vec::new(),
            acked: None,
        }
    }
}
