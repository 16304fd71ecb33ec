//! The hub's settings ([`HubConfig`]), every one with a documented default.

use std::time::Duration;

use super::auth::TokenRules;
use super::browser::{HostPolicy, OriginPolicy};

/// Default request burst: a reconnecting client that resubscribes (with
/// `since`) and asks `presence` for each of its allowed
/// `max_topics_per_conn` (100) topics must not be rate-limited.
pub const DEFAULT_RATE_BURST: u32 = 256;

/// Hub settings; every field has a documented default.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This node's name, carried in every delivery (default `local`).
    pub node: String,
    /// HS256 secret for tokens. `None` (default): anonymous users with
    /// generated ids may do anything.
    pub auth_secret: Option<Vec<u8>>,
    /// What tokens must satisfy besides their signature: audience, issuer,
    /// clock skew (default: no `aud` allowed, any `iss`, no skew).
    pub token_rules: TokenRules,
    /// Allowed browser origins (default: same host only).
    pub origins: OriginPolicy,
    /// Allowed `Host` names, checked on every request (default: any; the
    /// binary admits only local names when it listens on loopback). The
    /// defence against DNS rebinding: see [`super::browser`].
    pub hosts: HostPolicy,
    /// Path of the WebSocket endpoint (default `/ws`).
    pub ws_path: String,
    /// Deliveries kept per topic for resume (default 100).
    pub history_len: usize,
    /// Oldest delivery kept for resume (default 10 min).
    pub history_age: Duration,
    /// Subscriptions per connection (default 100).
    pub max_topics_per_conn: usize,
    /// Topics on this node (default 100,000). At the limit, topics with
    /// nothing in them are dropped, then those without subscribers whose
    /// last delivery is oldest; if none can go, a new topic is refused
    /// (`too_many_topics`).
    pub max_topics: usize,
    /// User inboxes (`@user`) on this node (default 100,000), bounded
    /// apart from `max_topics` so that a full table of rooms never breaks
    /// direct messages.
    pub max_inboxes: usize,
    /// Open connections per user (default 64; 0: no limit); past it the
    /// upgrade is refused with `429`.
    pub max_connections_per_user: usize,
    /// Open connections per network address (default 1,024; 0: no limit;
    /// behind a proxy every client has its address: set 0 there); past it
    /// the upgrade is refused with `429`.
    pub max_connections_per_ip: usize,
    /// Subscriptions per user on all its connections together, its own
    /// inbox not counted (default 1,000; 0: no limit).
    pub max_subscriptions_per_user: usize,
    /// Topics one user may have created that still exist (default 1,000;
    /// 0: no limit). Memory engine: its topic table is what it protects.
    pub max_topics_per_user: usize,
    /// The same for all anonymous users of one network address together
    /// (default 10,000, a tenth of `max_topics`; 0: no limit).
    pub max_topics_per_ip: usize,
    /// A user's acknowledged positions are kept this long after its last
    /// `ack` (default 24 h).
    pub session_ttl: Duration,
    /// Acknowledged positions kept per user (default 1,000): an `ack` for
    /// one more topic is refused (`too_many_topics`).
    pub max_positions_per_user: usize,
    /// Acknowledged positions of all users together, memory engine
    /// (default 1,000,000, about 100 MB); past it the sessions acked
    /// longest ago are dropped. (The Redis engine keeps them in Redis.)
    pub max_positions: usize,
    /// How long an idempotency key is remembered (default 5 min): a
    /// retry within it gets the original ack.
    pub idempotency_window: Duration,
    /// Idempotency keys kept at once, memory engine (default 100,000);
    /// past it the oldest are forgotten before their window ends.
    pub max_idempotency_keys: usize,
    /// Frame bytes kept in all topics' histories together (default
    /// 64 MiB). Over it, the histories of the topics published to longest
    /// ago are cleared; their sequence numbers go on, so a resume reports
    /// the loss.
    pub max_history_bytes: usize,
    /// Sustained requests per second per connection (default 50).
    pub rate_per_sec: f64,
    /// Burst of requests per connection (default [`DEFAULT_RATE_BURST`],
    /// 256).
    pub rate_burst: u32,
    /// Consecutive rate-limited requests after which the connection is
    /// closed with 1008 (default 50).
    pub rate_violation_limit: u32,
    /// Most members a topic may have for its subscribers to be told each
    /// join and leave (`presence_diff`, default 100); past it they get
    /// the member count instead (`presence_count`, at most once a second
    /// per topic). Bounds the cost of presence to one message per
    /// subscriber per loop turn.
    pub presence_events_max: usize,
    /// Redeliver, on the same connection, deliveries of a topic the
    /// connection acknowledges that stay unacknowledged this long
    /// (default `None`: off). Clients get duplicates they must drop by
    /// `seq`; see `redeliver.rs`.
    pub redeliver_after: Option<Duration>,
    /// Redeliveries of the same unacknowledged deliveries before the hub
    /// waits for the connection's ack to move (default 3).
    pub redeliver_attempts: u32,
    /// Requests run per loop turn (default 2,048, a few milliseconds):
    /// past it a connection's requests wait for the next turns (taken
    /// round robin) and it is not read meanwhile, so that clients sending
    /// hundreds of requests at once do not hold up the others.
    pub requests_per_turn: usize,
    /// Sends of fan-out per loop turn (default 16,384): a fan-out that
    /// would pass it (with `fanout_bytes_per_turn`) goes on in the next
    /// turns, after the loop has read, accepted and written for everyone
    /// else. About a millisecond of work; enough for three publishes to
    /// 5,000 subscribers per turn.
    pub fanout_per_turn: usize,
    /// Bytes of fan-out per loop turn (default 4 MiB): what the turn's
    /// writes can take in a few milliseconds. One 64 KiB message to 64
    /// subscribers per turn.
    pub fanout_bytes_per_turn: usize,
    /// Bytes the waiting fan-outs may owe (default 64 MiB) before the
    /// hub stops reading connections that publish (and the engine's
    /// deliveries wait); reading resumes below half of it.
    pub max_fanout_backlog: usize,
    /// The page served at `/` (the binary embeds the demo page).
    pub index_html: Option<&'static str>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            node: "local".into(),
            auth_secret: None,
            token_rules: TokenRules::default(),
            origins: OriginPolicy::SameHost,
            hosts: HostPolicy::Any,
            ws_path: "/ws".into(),
            history_len: 100,
            history_age: Duration::from_secs(600),
            max_topics_per_conn: 100,
            max_topics: 100_000,
            max_inboxes: 100_000,
            max_connections_per_user: 64,
            max_connections_per_ip: 1024,
            max_subscriptions_per_user: 1000,
            max_topics_per_user: 1000,
            max_topics_per_ip: 10_000,
            session_ttl: Duration::from_secs(24 * 3600),
            max_positions_per_user: 1000,
            max_positions: 1_000_000,
            idempotency_window: Duration::from_secs(300),
            max_idempotency_keys: 100_000,
            max_history_bytes: 64 << 20,
            rate_per_sec: 50.0,
            rate_burst: DEFAULT_RATE_BURST,
            rate_violation_limit: 50,
            presence_events_max: 100,
            redeliver_after: None,
            redeliver_attempts: 3,
            requests_per_turn: 2048,
            fanout_per_turn: 16_384,
            fanout_bytes_per_turn: 4 << 20,
            max_fanout_backlog: 64 << 20,
            index_html: None,
        }
    }
}
