//! The Redis engine's settings (`wsmio serve --redis-*`, `--node`,
//! `--history-*`, …), each with its default.

use std::time::Duration;

/// The Redis engine's settings; every field has a documented default.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (default
    /// `redis://127.0.0.1:6379/0`). Redis ≥ 6.2, a single server (with
    /// replicas or Sentinel in front if you like), not Redis Cluster.
    pub url: String,
    /// Prefix of every key and channel (default `wsmio:`): clusters that
    /// share a Redis use different prefixes. (Pub/sub channels are not
    /// per database: the prefix is what keeps two clusters apart.)
    pub prefix: String,
    /// This node's name, carried in the deliveries it sequences.
    pub node: String,
    /// Deliveries kept per topic in Redis and in each node's copy
    /// (default 100).
    pub history_len: usize,
    /// Oldest delivery kept (default 10 min).
    pub history_age: Duration,
    /// How long a topic's epoch and counter live in Redis after its last
    /// publish (default 24 h, at least `history_age`). A topic idle for
    /// longer starts a new epoch: a resume then says `epoch_changed`.
    pub topic_ttl: Duration,
    /// A node that sent no heartbeat for this long is taken for dead and
    /// its members leave every topic (default 6 s; heartbeats every third
    /// of it).
    pub node_ttl: Duration,
    /// Connect, read and write timeout towards Redis (default 5 s); a
    /// server that does not answer within it counts as down.
    pub timeout: Duration,
    /// Operations that may wait for the command thread (default 65,536);
    /// past it, publishes are refused `unavailable`.
    pub max_pending: usize,
    /// Deliveries the subscriber thread may hand over before it waits for
    /// the loop (default 65,536; see `subscriber.rs`).
    pub max_inbound: usize,
    /// Frame bytes of every topic's copy on this node together (default
    /// 64 MiB); over it, the copies of the topics delivered to longest ago
    /// are cleared (resumes then read Redis).
    pub max_cache_bytes: usize,
    /// A user's acknowledged positions live this long in Redis after its
    /// last ack (default 24 h).
    pub session_ttl: Duration,
    /// Acknowledged positions per user (default 1,000); an ack for one
    /// more topic is not stored (counted in the engine's errors).
    pub max_positions_per_user: usize,
    /// How long an idempotency key is remembered (default 5 min).
    pub idempotency_window: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: "wsmio:".into(),
            node: "local".into(),
            history_len: 100,
            history_age: Duration::from_secs(600),
            topic_ttl: Duration::from_secs(24 * 3600),
            node_ttl: Duration::from_secs(6),
            timeout: Duration::from_secs(5),
            max_pending: 65_536,
            max_inbound: 65_536,
            max_cache_bytes: 64 << 20,
            session_ttl: Duration::from_secs(24 * 3600),
            max_positions_per_user: 1000,
            idempotency_window: Duration::from_secs(300),
        }
    }
}
