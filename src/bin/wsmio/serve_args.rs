//! The flags of `wsmio serve` (each with an environment variable and a
//! documented default) and their checks.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ValueEnum;
use wsmio::pubsub::HostPolicy;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// One node, everything in memory (no setup).
    Memory,
    /// Many nodes over Redis: one sequence per topic, durable history,
    /// presence on every node (see docs/CLUSTER.md).
    Redis,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SlowConsumer {
    /// Close the connection with 1008 when its queue is full.
    Close,
    /// Drop deliveries and report the gap to the client.
    Drop,
}

/// A feature turned on or off.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WSMIO_LISTEN", default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Most simultaneous WebSocket connections (an upgrade past it gets
    /// 503); connections still in their handshake are bounded apart by
    /// --max-pending-handshakes. The open-file limit is raised to fit both
    /// if the hard limit allows.
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,
    /// Connections still in their handshake (past it the oldest is dropped,
    /// with 408 if its request had not arrived), so that slow handshakes
    /// cannot take the slots of upgraded connections.
    #[arg(long, env = "WSMIO_MAX_PENDING_HANDSHAKES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_pending_handshakes: u64,
    /// The accept queue asked of listen(2) (default: --max-connections,
    /// between 128 and 4,096; the kernel caps it at net.core.somaxconn,
    /// and the startup log says so when that is lower).
    #[arg(long, env = "WSMIO_LISTEN_BACKLOG",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub listen_backlog: Option<u32>,
    /// Connections accepted per loop turn (the rest of a reconnect storm
    /// next turn, after the open connections' reads and writes).
    #[arg(long, env = "WSMIO_ACCEPTS_PER_TURN", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub accepts_per_turn: u64,
    /// Bytes of input all connections together may hold in partial
    /// messages and request heads; past it the largest holders are closed
    /// with 1013 (503 during the handshake).
    #[arg(long, env = "WSMIO_MAX_BUFFERED_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_buffered_bytes: u64,
    /// Largest message a client may send, in bytes (close 1009 above it).
    #[arg(long, env = "WSMIO_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_size: u64,
    /// Seconds of silence before the server pings a client (0: no heartbeat).
    #[arg(long, env = "WSMIO_IDLE_TIMEOUT", default_value_t = 30)]
    pub idle_timeout: u64,
    /// Seconds a client has to answer that ping before it is closed (≥ 1).
    #[arg(long, env = "WSMIO_PONG_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pong_timeout: u64,
    /// Seconds allowed to send the HTTP upgrade request (≥ 1).
    #[arg(long, env = "WSMIO_HANDSHAKE_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout: u64,
    /// Outbound queue per connection, in bytes, before the slow-consumer
    /// policy applies (≥ 1024; drain events come below a quarter of it).
    #[arg(long, env = "WSMIO_MAX_QUEUED_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..(1 << 48)))]
    pub max_queued_bytes: u64,
    /// What to do with a client whose queue is full.
    #[arg(long, env = "WSMIO_SLOW_CONSUMER", value_enum, default_value = "close")]
    pub slow_consumer: SlowConsumer,
    /// Seconds a graceful shutdown waits for clients to read what is queued
    /// and close (a second SIGINT/SIGTERM exits at once).
    #[arg(long, env = "WSMIO_SHUTDOWN_TIMEOUT", default_value_t = 5)]
    pub shutdown_timeout: u64,
    /// HS256 secret for client tokens; without it, anonymous users are
    /// admitted. Must not be empty; use at least 32 random bytes.
    #[arg(long, env = "WSMIO_AUTH_SECRET", hide_env_values = true, value_parser = secret)]
    pub auth_secret: Option<String>,
    /// This server's name as a token audience: tokens must carry it in
    /// `aud`. Without it, tokens that have an `aud` are refused.
    #[arg(long, env = "WSMIO_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Issuer tokens must name in `iss` (default: not checked).
    #[arg(long, env = "WSMIO_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, env = "WSMIO_TOKEN_LEEWAY", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub token_leeway: u64,
    /// Allowed browser origins, comma-separated; `*` allows any; empty: same host only.
    #[arg(long, env = "WSMIO_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Allowed `Host` names, comma-separated (`.example.com` also admits
    /// subdomains; IP literals always pass); `*` allows any. `auto`: only
    /// `localhost` names when listening on loopback, against DNS rebinding;
    /// any name otherwise.
    #[arg(long, env = "WSMIO_ALLOWED_HOSTS", default_value = "auto", value_parser = host_list)]
    pub allowed_hosts: String,
    /// Deliveries kept per topic for resume.
    #[arg(long, env = "WSMIO_HISTORY_LEN", default_value_t = 100)]
    pub history_len: usize,
    /// Seconds a delivery is kept for resume.
    #[arg(long, env = "WSMIO_HISTORY_AGE", default_value_t = 600)]
    pub history_age: u64,
    /// Bytes of history kept in all topics together.
    #[arg(long, env = "WSMIO_MAX_HISTORY_BYTES", default_value_t = 64 << 20)]
    pub max_history_bytes: usize,
    /// Subscriptions per connection.
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_CONN", default_value_t = 100)]
    pub max_topics_per_conn: usize,
    /// Topics on this node, user inboxes not counted (>= 1; see
    /// --max-inboxes).
    #[arg(long, env = "WSMIO_MAX_TOPICS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_topics: u64,
    /// User inboxes (`@user`) on this node, apart from --max-topics so
    /// that a full table of rooms never breaks direct messages (>= 1).
    #[arg(long, env = "WSMIO_MAX_INBOXES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_inboxes: u64,
    /// Open connections per user (0: no limit); past it the upgrade gets 429.
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS_PER_USER", default_value_t = 64)]
    pub max_connections_per_user: usize,
    /// Open connections per network address (0: no limit; set 0 behind a
    /// proxy, where every client has the proxy's address).
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub max_connections_per_ip: usize,
    /// Subscriptions per user on all its connections (its inbox not
    /// counted; 0: no limit).
    #[arg(long, env = "WSMIO_MAX_SUBSCRIPTIONS_PER_USER", default_value_t = 1000)]
    pub max_subscriptions_per_user: usize,
    /// Topics a user may have created that still exist (0: no limit).
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_USER", default_value_t = 1000)]
    pub max_topics_per_user: usize,
    /// Topics the anonymous users of one address may have created that
    /// still exist (0: no limit).
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_IP", default_value_t = 10_000)]
    pub max_topics_per_ip: usize,
    /// Seconds a user's acknowledged positions are kept after its last ack
    /// (in Redis with --engine redis).
    #[arg(long, env = "WSMIO_SESSION_TTL", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl: u64,
    /// Acknowledged positions kept per user (>= 1).
    #[arg(long, env = "WSMIO_MAX_POSITIONS_PER_USER", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_positions_per_user: u64,
    /// Acknowledged positions of all users together, memory engine (>= 1;
    /// the oldest sessions go past it).
    #[arg(long, env = "WSMIO_MAX_POSITIONS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_positions: u64,
    /// Seconds an idempotency key is remembered: a retried pub or dm with
    /// the same key within it gets the original ack (>= 1).
    #[arg(long, env = "WSMIO_IDEMPOTENCY_WINDOW", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_window: u64,
    /// Idempotency keys kept at once, memory engine (>= 1).
    #[arg(long, env = "WSMIO_MAX_IDEMPOTENCY_KEYS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_idempotency_keys: u64,
    /// Most members a topic may have for its subscribers to get each join
    /// and leave (`presence_diff`); past it they get the count instead
    /// (`presence_count`, at most once a second per topic).
    #[arg(long, env = "WSMIO_PRESENCE_EVENTS_MAX", default_value_t = 100)]
    pub presence_events_max: usize,
    /// Seconds after which deliveries a connection has not acknowledged
    /// (on a topic it acknowledges) are sent to it again, from history
    /// (0, the default: off). Clients drop the duplicates by seq.
    #[arg(long, env = "WSMIO_REDELIVER_AFTER", default_value_t = 0)]
    pub redeliver_after: u64,
    /// Redeliveries of the same unacknowledged deliveries before waiting
    /// for the connection's ack to move.
    #[arg(long, env = "WSMIO_REDELIVER_ATTEMPTS", default_value_t = 3)]
    pub redeliver_attempts: u32,
    /// Requests run per loop turn; past it a connection's requests wait
    /// for the next turns (round robin) and it is not read meanwhile.
    #[arg(long, env = "WSMIO_REQUESTS_PER_TURN", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests_per_turn: u64,
    /// Fan-out sends per loop turn; a bigger fan-out goes on in the next
    /// turns, after everyone else's reads and writes.
    #[arg(long, env = "WSMIO_FANOUT_PER_TURN", default_value_t = 16_384,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub fanout_per_turn: u64,
    /// Fan-out bytes per loop turn (as --fanout-per-turn, for large
    /// messages).
    #[arg(long, env = "WSMIO_FANOUT_BYTES_PER_TURN", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub fanout_bytes_per_turn: u64,
    /// Bytes the waiting fan-outs may owe before connections that publish
    /// are not read (and the engine's deliveries wait) until it is half.
    #[arg(long, env = "WSMIO_MAX_FANOUT_BACKLOG", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_fanout_backlog: u64,
    /// Sustained requests per second per connection (> 0).
    #[arg(long, env = "WSMIO_RATE", default_value_t = 50.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Request burst per connection (≥ 1; the default lets a reconnecting
    /// client resubscribe and ask presence on 100 topics at once).
    #[arg(long, env = "WSMIO_BURST", default_value_t = wsmio::pubsub::hub::DEFAULT_RATE_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,
    /// This node's name in deliveries.
    #[arg(long, env = "WSMIO_NODE", default_value = "local")]
    pub node: String,
    /// Where topics' sequence numbers, history and presence live.
    #[arg(long, env = "WSMIO_ENGINE", value_enum, default_value = "memory")]
    pub engine: EngineKind,
    /// Redis for `--engine redis`: redis://[user:password@]host:port/db
    /// (Redis >= 6.2, one server, not Redis Cluster).
    #[arg(
        long,
        env = "WSMIO_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub redis_url: String,
    /// Prefix of every Redis key and channel: clusters that share a Redis
    /// need different ones.
    #[arg(long, env = "WSMIO_REDIS_PREFIX", default_value = "wsmio:")]
    pub redis_prefix: String,
    /// Seconds without a heartbeat after which a node is taken for dead
    /// and its members leave (>= 1; heartbeats every third of it).
    #[arg(long, env = "WSMIO_NODE_TTL", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_ttl: u64,
    /// Seconds to connect to, read from or write to Redis before it counts
    /// as down (>= 1).
    #[arg(long, env = "WSMIO_REDIS_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub redis_timeout: u64,
    /// Busy polling: microseconds the event loop keeps polling before it
    /// sleeps (0 = off; at most 10,000). Lower latency for a whole CPU core.
    #[arg(long, env = "WSMIO_BUSY_POLL_US", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll_us: u64,
    /// Bytes the allocator may keep free inside its heaps (glibc): past
    /// it, checked every second, the free pages go back to the system, as
    /// after a reconnect storm (0 = never).
    #[arg(long, env = "WSMIO_MEMORY_TRIM_SLACK", default_value_t = 4 << 20)]
    pub memory_trim_slack: u64,
    /// permessage-deflate (RFC 7692) for clients that offer it (every
    /// browser does): deliveries compressed once per publish and shared.
    #[arg(long, env = "WSMIO_DEFLATE", value_enum, default_value = "on")]
    pub deflate: Switch,
    /// Messages shorter than this many bytes go uncompressed (compressed
    /// alone, short JSON barely shrinks).
    #[arg(long, env = "WSMIO_DEFLATE_THRESHOLD", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    pub deflate_threshold: u64,
    /// zlib compression level, 1 (fastest) to 9 (smallest).
    #[arg(long, env = "WSMIO_DEFLATE_LEVEL", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=9))]
    pub deflate_level: u8,
    /// Largest window the server compresses with (2^N bytes, 9 to 15).
    #[arg(long, env = "WSMIO_DEFLATE_SERVER_MAX_WINDOW_BITS", default_value_t = 15,
          value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_server_max_window_bits: u8,
    /// Largest window clients may compress with (2^N bytes, 9 to 15), when
    /// they allow the server to choose (browsers do).
    #[arg(long, env = "WSMIO_DEFLATE_CLIENT_MAX_WINDOW_BITS", default_value_t = 15,
          value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_client_max_window_bits: u8,
    /// Server context takeover: keep the server's compression window
    /// between messages (better on a connection's own replies; 137-380 KiB
    /// per connection while idle). Shared deliveries never use it.
    #[arg(
        long,
        env = "WSMIO_DEFLATE_SERVER_CONTEXT_TAKEOVER",
        value_enum,
        default_value = "off"
    )]
    pub deflate_server_context_takeover: Switch,
    /// Client context takeover: let clients keep their window between
    /// messages (smaller publishes; 47 KiB per connection on the server
    /// while idle).
    #[arg(
        long,
        env = "WSMIO_DEFLATE_CLIENT_CONTEXT_TAKEOVER",
        value_enum,
        default_value = "off"
    )]
    pub deflate_client_context_takeover: Switch,
    /// PEM certificate chain: serve wss:// and https:// (needs --tls-key).
    #[arg(long, env = "WSMIO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WSMIO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Shortest secret accepted without a warning: RFC 7518 §3.2 wants an
/// HS256 key of at least 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// An auth secret: an empty one (e.g. `WSMIO_AUTH_SECRET=` from an unset
/// variable) would turn on auth with a key anyone can sign with.
pub fn secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the auth secret is empty: anyone could sign tokens with it".into());
    }
    if s.len() < MIN_SECRET_LEN {
        log::warn!(
            "the auth secret is {} bytes; RFC 7518 asks for at least {MIN_SECRET_LEN} random bytes for HS256",
            s.len()
        );
    }
    Ok(s.to_string())
}

/// An `--allowed-hosts` value whose entries can all match some `Host`.
fn host_list(s: &str) -> Result<String, String> {
    HostPolicy::parse(s, true).map(|_| s.to_string())
}

/// A request rate: finite and above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a number above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}
