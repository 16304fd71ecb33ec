//! The `wsmio` server binary: the pub/sub hub with its demo page.
//!
//! `wsmio serve` runs it (every flag has an environment variable, see
//! `wsmio serve --help`); `wsmio token` mints an HS256 token for testing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use wsmio::pubsub::auth::TokenRules;
use wsmio::pubsub::engine::redis::{RedisConfig, RedisEngine};
use wsmio::pubsub::{HostPolicy, Hub, HubConfig, OriginPolicy};
use wsmio::reactor::DeflateSettings;
use wsmio::{Config, FullQueuePolicy, Server};

/// The demo chat page served at `/`.
const DEMO_PAGE: &str = include_str!("demo.html");

#[derive(Parser)]
#[command(name = "wsmio", version, about = "wsmio: a WebSocket pub/sub hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (WebSocket at /ws, demo page at /, /healthz, /metrics).
    Serve(Box<ServeArgs>),
    /// Print an HS256 token for the given user (for tests and the demo).
    Token(TokenArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// One node, everything in memory (no setup).
    Memory,
    /// Many nodes over Redis: one sequence per topic, durable history,
    /// presence on every node (see docs/CLUSTER.md).
    Redis,
}

#[derive(Clone, Copy, ValueEnum)]
enum SlowConsumer {
    /// Close the connection with 1008 when its queue is full.
    Close,
    /// Drop deliveries and report the gap to the client.
    Drop,
}

/// A feature turned on or off.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WSMIO_LISTEN", default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Most simultaneous WebSocket connections (an upgrade past it gets
    /// 503); connections still in their handshake are bounded apart by
    /// --max-pending-handshakes. The open-file limit is raised to fit both
    /// if the hard limit allows.
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: u64,
    /// Connections still in their handshake (past it the oldest is dropped,
    /// with 408 if its request had not arrived), so that slow handshakes
    /// cannot take the slots of upgraded connections.
    #[arg(long, env = "WSMIO_MAX_PENDING_HANDSHAKES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_pending_handshakes: u64,
    /// The accept queue asked of listen(2) (default: --max-connections,
    /// between 128 and 4,096; the kernel caps it at net.core.somaxconn,
    /// and the startup log says so when that is lower).
    #[arg(long, env = "WSMIO_LISTEN_BACKLOG",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    listen_backlog: Option<u32>,
    /// Connections accepted per loop turn (the rest of a reconnect storm
    /// next turn, after the open connections' reads and writes).
    #[arg(long, env = "WSMIO_ACCEPTS_PER_TURN", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    accepts_per_turn: u64,
    /// Bytes of input all connections together may hold in partial
    /// messages and request heads; past it the largest holders are closed
    /// with 1013 (503 during the handshake).
    #[arg(long, env = "WSMIO_MAX_BUFFERED_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_buffered_bytes: u64,
    /// Largest message a client may send, in bytes (close 1009 above it).
    #[arg(long, env = "WSMIO_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_message_size: u64,
    /// Seconds of silence before the server pings a client (0: no heartbeat).
    #[arg(long, env = "WSMIO_IDLE_TIMEOUT", default_value_t = 30)]
    idle_timeout: u64,
    /// Seconds a client has to answer that ping before it is closed (≥ 1).
    #[arg(long, env = "WSMIO_PONG_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pong_timeout: u64,
    /// Seconds allowed to send the HTTP upgrade request (≥ 1).
    #[arg(long, env = "WSMIO_HANDSHAKE_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    handshake_timeout: u64,
    /// Outbound queue per connection, in bytes, before the slow-consumer
    /// policy applies (≥ 1024; drain events come below a quarter of it).
    #[arg(long, env = "WSMIO_MAX_QUEUED_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..(1 << 48)))]
    max_queued_bytes: u64,
    /// What to do with a client whose queue is full.
    #[arg(long, env = "WSMIO_SLOW_CONSUMER", value_enum, default_value = "close")]
    slow_consumer: SlowConsumer,
    /// Seconds a graceful shutdown waits for clients to read what is queued
    /// and close (a second SIGINT/SIGTERM exits at once).
    #[arg(long, env = "WSMIO_SHUTDOWN_TIMEOUT", default_value_t = 5)]
    shutdown_timeout: u64,
    /// HS256 secret for client tokens; without it, anonymous users are
    /// admitted. Must not be empty; use at least 32 random bytes.
    #[arg(long, env = "WSMIO_AUTH_SECRET", hide_env_values = true, value_parser = secret)]
    auth_secret: Option<String>,
    /// This server's name as a token audience: tokens must carry it in
    /// `aud`. Without it, tokens that have an `aud` are refused.
    #[arg(long, env = "WSMIO_TOKEN_AUDIENCE")]
    token_audience: Option<String>,
    /// Issuer tokens must name in `iss` (default: not checked).
    #[arg(long, env = "WSMIO_TOKEN_ISSUER")]
    token_issuer: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, env = "WSMIO_TOKEN_LEEWAY", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    token_leeway: u64,
    /// Allowed browser origins, comma-separated; `*` allows any; empty: same host only.
    #[arg(long, env = "WSMIO_ALLOWED_ORIGINS", default_value = "")]
    allowed_origins: String,
    /// Allowed `Host` names, comma-separated (`.example.com` also admits
    /// subdomains; IP literals always pass); `*` allows any. `auto`: only
    /// `localhost` names when listening on loopback, against DNS rebinding;
    /// any name otherwise.
    #[arg(long, env = "WSMIO_ALLOWED_HOSTS", default_value = "auto", value_parser = host_list)]
    allowed_hosts: String,
    /// Deliveries kept per topic for resume.
    #[arg(long, env = "WSMIO_HISTORY_LEN", default_value_t = 100)]
    history_len: usize,
    /// Seconds a delivery is kept for resume.
    #[arg(long, env = "WSMIO_HISTORY_AGE", default_value_t = 600)]
    history_age: u64,
    /// Bytes of history kept in all topics together.
    #[arg(long, env = "WSMIO_MAX_HISTORY_BYTES", default_value_t = 64 << 20)]
    max_history_bytes: usize,
    /// Subscriptions per connection.
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_CONN", default_value_t = 100)]
    max_topics_per_conn: usize,
    /// Topics on this node, user inboxes not counted (>= 1; see
    /// --max-inboxes).
    #[arg(long, env = "WSMIO_MAX_TOPICS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_topics: u64,
    /// User inboxes (`@user`) on this node, apart from --max-topics so
    /// that a full table of rooms never breaks direct messages (>= 1).
    #[arg(long, env = "WSMIO_MAX_INBOXES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_inboxes: u64,
    /// Open connections per user (0: no limit); past it the upgrade gets 429.
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS_PER_USER", default_value_t = 64)]
    max_connections_per_user: usize,
    /// Open connections per network address (0: no limit; set 0 behind a
    /// proxy, where every client has the proxy's address).
    #[arg(long, env = "WSMIO_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    max_connections_per_ip: usize,
    /// Subscriptions per user on all its connections (its inbox not
    /// counted; 0: no limit).
    #[arg(long, env = "WSMIO_MAX_SUBSCRIPTIONS_PER_USER", default_value_t = 1000)]
    max_subscriptions_per_user: usize,
    /// Topics a user may have created that still exist (0: no limit).
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_USER", default_value_t = 1000)]
    max_topics_per_user: usize,
    /// Topics the anonymous users of one address may have created that
    /// still exist (0: no limit).
    #[arg(long, env = "WSMIO_MAX_TOPICS_PER_IP", default_value_t = 10_000)]
    max_topics_per_ip: usize,
    /// Seconds a user's acknowledged positions are kept after its last ack
    /// (in Redis with --engine redis).
    #[arg(long, env = "WSMIO_SESSION_TTL", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    session_ttl: u64,
    /// Acknowledged positions kept per user (>= 1).
    #[arg(long, env = "WSMIO_MAX_POSITIONS_PER_USER", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_positions_per_user: u64,
    /// Acknowledged positions of all users together, memory engine (>= 1;
    /// the oldest sessions go past it).
    #[arg(long, env = "WSMIO_MAX_POSITIONS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_positions: u64,
    /// Seconds an idempotency key is remembered: a retried pub or dm with
    /// the same key within it gets the original ack (>= 1).
    #[arg(long, env = "WSMIO_IDEMPOTENCY_WINDOW", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    idempotency_window: u64,
    /// Idempotency keys kept at once, memory engine (>= 1).
    #[arg(long, env = "WSMIO_MAX_IDEMPOTENCY_KEYS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_idempotency_keys: u64,
    /// Most members a topic may have for its subscribers to get each join
    /// and leave (`presence_diff`); past it they get the count instead
    /// (`presence_count`, at most once a second per topic).
    #[arg(long, env = "WSMIO_PRESENCE_EVENTS_MAX", default_value_t = 100)]
    presence_events_max: usize,
    /// Seconds after which deliveries a connection has not acknowledged
    /// (on a topic it acknowledges) are sent to it again, from history
    /// (0, the default: off). Clients drop the duplicates by seq.
    #[arg(long, env = "WSMIO_REDELIVER_AFTER", default_value_t = 0)]
    redeliver_after: u64,
    /// Redeliveries of the same unacknowledged deliveries before waiting
    /// for the connection's ack to move.
    #[arg(long, env = "WSMIO_REDELIVER_ATTEMPTS", default_value_t = 3)]
    redeliver_attempts: u32,
    /// Requests run per loop turn; past it a connection's requests wait
    /// for the next turns (round robin) and it is not read meanwhile.
    #[arg(long, env = "WSMIO_REQUESTS_PER_TURN", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..))]
    requests_per_turn: u64,
    /// Fan-out sends per loop turn; a bigger fan-out goes on in the next
    /// turns, after everyone else's reads and writes.
    #[arg(long, env = "WSMIO_FANOUT_PER_TURN", default_value_t = 16_384,
          value_parser = clap::value_parser!(u64).range(1..))]
    fanout_per_turn: u64,
    /// Fan-out bytes per loop turn (as --fanout-per-turn, for large
    /// messages).
    #[arg(long, env = "WSMIO_FANOUT_BYTES_PER_TURN", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    fanout_bytes_per_turn: u64,
    /// Bytes the waiting fan-outs may owe before connections that publish
    /// are not read (and the engine's deliveries wait) until it is half.
    #[arg(long, env = "WSMIO_MAX_FANOUT_BACKLOG", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_fanout_backlog: u64,
    /// Sustained requests per second per connection (> 0).
    #[arg(long, env = "WSMIO_RATE", default_value_t = 50.0, value_parser = positive_rate)]
    rate: f64,
    /// Request burst per connection (≥ 1; the default lets a reconnecting
    /// client resubscribe and ask presence on 100 topics at once).
    #[arg(long, env = "WSMIO_BURST", default_value_t = wsmio::pubsub::hub::DEFAULT_RATE_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
    /// This node's name in deliveries.
    #[arg(long, env = "WSMIO_NODE", default_value = "local")]
    node: String,
    /// Where topics' sequence numbers, history and presence live.
    #[arg(long, env = "WSMIO_ENGINE", value_enum, default_value = "memory")]
    engine: EngineKind,
    /// Redis for `--engine redis`: redis://[user:password@]host:port/db
    /// (Redis >= 6.2, one server, not Redis Cluster).
    #[arg(
        long,
        env = "WSMIO_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379/0"
    )]
    redis_url: String,
    /// Prefix of every Redis key and channel: clusters that share a Redis
    /// need different ones.
    #[arg(long, env = "WSMIO_REDIS_PREFIX", default_value = "wsmio:")]
    redis_prefix: String,
    /// Seconds without a heartbeat after which a node is taken for dead
    /// and its members leave (>= 1; heartbeats every third of it).
    #[arg(long, env = "WSMIO_NODE_TTL", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    node_ttl: u64,
    /// Seconds to connect to, read from or write to Redis before it counts
    /// as down (>= 1).
    #[arg(long, env = "WSMIO_REDIS_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    redis_timeout: u64,
    /// Busy polling: microseconds the event loop keeps polling before it
    /// sleeps (0 = off; at most 10,000). Lower latency for a whole CPU core.
    #[arg(long, env = "WSMIO_BUSY_POLL_US", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    busy_poll_us: u64,
    /// permessage-deflate (RFC 7692) for clients that offer it (every
    /// browser does): deliveries compressed once per publish and shared.
    #[arg(long, env = "WSMIO_DEFLATE", value_enum, default_value = "on")]
    deflate: Switch,
    /// Messages shorter than this many bytes go uncompressed (compressed
    /// alone, short JSON barely shrinks).
    #[arg(long, env = "WSMIO_DEFLATE_THRESHOLD", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    deflate_threshold: u64,
    /// zlib compression level, 1 (fastest) to 9 (smallest).
    #[arg(long, env = "WSMIO_DEFLATE_LEVEL", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=9))]
    deflate_level: u8,
    /// Largest window the server compresses with (2^N bytes, 9 to 15).
    #[arg(long, env = "WSMIO_DEFLATE_SERVER_MAX_WINDOW_BITS", default_value_t = 15,
          value_parser = clap::value_parser!(u8).range(9..=15))]
    deflate_server_max_window_bits: u8,
    /// Largest window clients may compress with (2^N bytes, 9 to 15), when
    /// they allow the server to choose (browsers do).
    #[arg(long, env = "WSMIO_DEFLATE_CLIENT_MAX_WINDOW_BITS", default_value_t = 15,
          value_parser = clap::value_parser!(u8).range(9..=15))]
    deflate_client_max_window_bits: u8,
    /// Server context takeover: keep the server's compression window
    /// between messages (better on a connection's own replies; 137-380 KiB
    /// per connection while idle). Shared deliveries never use it.
    #[arg(
        long,
        env = "WSMIO_DEFLATE_SERVER_CONTEXT_TAKEOVER",
        value_enum,
        default_value = "off"
    )]
    deflate_server_context_takeover: Switch,
    /// Client context takeover: let clients keep their window between
    /// messages (smaller publishes; 47 KiB per connection on the server
    /// while idle).
    #[arg(
        long,
        env = "WSMIO_DEFLATE_CLIENT_CONTEXT_TAKEOVER",
        value_enum,
        default_value = "off"
    )]
    deflate_client_context_takeover: Switch,
    /// PEM certificate chain: serve wss:// and https:// (needs --tls-key).
    #[arg(long, env = "WSMIO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WSMIO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The HS256 secret (the server's --auth-secret).
    #[arg(long, env = "WSMIO_AUTH_SECRET", hide_env_values = true, value_parser = secret)]
    secret: String,
    /// User id.
    #[arg(long)]
    user: String,
    /// Topic patterns the user may subscribe to (repeatable; `room.*`, `*`).
    #[arg(long = "subscribe", default_value = "*")]
    subscribe: Vec<String>,
    /// Topic patterns the user may publish on (repeatable).
    #[arg(long = "publish", default_value = "*")]
    publish: Vec<String>,
    /// User-id patterns the user may send direct messages to (repeatable).
    #[arg(long = "dm", default_value = "*")]
    dm: Vec<String>,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Audience (`aud`): the server's --token-audience.
    #[arg(long)]
    audience: Option<String>,
    /// Issuer (`iss`): the server's --token-issuer.
    #[arg(long)]
    issuer: Option<String>,
}

/// Shortest secret accepted without a warning: RFC 7518 §3.2 wants an
/// HS256 key of at least 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// An auth secret: an empty one (e.g. `WSMIO_AUTH_SECRET=` from an unset
/// variable) would turn on auth with a key anyone can sign with.
fn secret(s: &str) -> Result<String, String> {
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

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Token(args) => {
            token(args);
            Ok(())
        }
    };
    if let Err(e) = result {
        log::error!("{e}");
        std::process::exit(1);
    }
}

fn token(a: TokenArgs) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({
        "sub": a.user, "exp": now + a.ttl, "iat": now,
        "subscribe": a.subscribe, "publish": a.publish, "dm": a.dm,
    });
    if let Some(aud) = a.audience {
        claims["aud"] = aud.into();
    }
    if let Some(iss) = a.issuer {
        claims["iss"] = iss.into();
    }
    println!(
        "{}",
        wsmio::pubsub::auth::sign_jwt(&claims, a.secret.as_bytes())
    );
}

fn serve(a: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    fit_open_file_limit((a.max_connections + a.max_pending_handshakes) as usize);
    let config = reactor_config(&a)?;
    let tls = config.serves_tls();
    let hub_config = hub_config(&a)?;
    if hub_config.auth_secret.is_none() {
        log::warn!("no --auth-secret: admitting anonymous users with generated ids");
        if hub_config.hosts == HostPolicy::Any {
            log::warn!("anonymous users and any Host name: a DNS-rebinding page can reach this hub; name the hosts with --allowed-hosts");
        }
    }
    let server = Server::bind(a.listen, config)?;
    // The engine before the "listening" line: a bad --redis-url stops here.
    let hub = match a.engine {
        EngineKind::Memory => Hub::new(hub_config),
        EngineKind::Redis => {
            let engine = RedisEngine::start(redis_config(&a), server.handle())?;
            Hub::with_engine(hub_config, Box::new(engine))
        }
    };
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    log::info!(
        "wsmio hub listening: {ws}://{0}/ws, demo {http}://{0}/, metrics {http}://{0}/metrics",
        server.local_addr()
    );
    shut_down_on_signals(server.handle())?;
    let hub = server.run(hub)?;
    log::info!(
        "stopped: {} connections served, {} publishes",
        hub.metrics().connections_total,
        hub.metrics().publishes
    );
    Ok(())
}

/// The reactor's settings from the flags.
fn reactor_config(a: &ServeArgs) -> Result<Config, Box<dyn std::error::Error>> {
    let max_queued_bytes = a.max_queued_bytes as usize;
    let config = Config {
        max_pending_handshakes: a.max_pending_handshakes as usize,
        accepts_per_turn: a.accepts_per_turn as usize,
        max_buffered_bytes: a.max_buffered_bytes as usize,
        listen_backlog: a.listen_backlog,
        ..Config::default()
    }
    .with_max_connections(a.max_connections as usize)
    .with_max_message_size(a.max_message_size)
    .with_max_frame_size(a.max_message_size)
    .with_idle_timeout((a.idle_timeout > 0).then(|| Duration::from_secs(a.idle_timeout)))
    .with_pong_timeout(Duration::from_secs(a.pong_timeout))
    .with_handshake_timeout(Duration::from_secs(a.handshake_timeout))
    .with_max_queued_bytes(max_queued_bytes)
    .with_backpressure_limit(max_queued_bytes / 4)
    .with_full_queue_policy(match a.slow_consumer {
        SlowConsumer::Close => FullQueuePolicy::Close,
        SlowConsumer::Drop => FullQueuePolicy::Drop,
    })
    .with_shutdown_timeout(Duration::from_secs(a.shutdown_timeout))
    .with_busy_poll((a.busy_poll_us > 0).then(|| Duration::from_micros(a.busy_poll_us)))
    .with_shutdown_reason("server restarting, reconnect later");
    let config = match deflate_settings(a) {
        Some(d) => config.with_deflate(d),
        None => config,
    };
    Ok(match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            config.with_tls(wsmio::reactor::tls::server_config_from_pem(cert, key)?)
        }
        _ => config,
    })
}

/// permessage-deflate from the flags (`None`: `--deflate off`). No server
/// context takeover by default: a delivery is then compressed once and
/// the same bytes go to every subscriber that agreed to the extension.
fn deflate_settings(a: &ServeArgs) -> Option<DeflateSettings> {
    if a.deflate == Switch::Off {
        return None;
    }
    let mut d = DeflateSettings::default();
    d.negotiation.outgoing_context_takeover = a.deflate_server_context_takeover == Switch::On;
    d.negotiation.incoming_context_takeover = a.deflate_client_context_takeover == Switch::On;
    d.negotiation.outgoing_max_window_bits = a.deflate_server_max_window_bits;
    d.negotiation.incoming_max_window_bits = a.deflate_client_max_window_bits;
    d.compression.options.level = a.deflate_level;
    d.compression.min_size = usize::try_from(a.deflate_threshold).unwrap_or(usize::MAX);
    Some(d)
}

/// The hub's settings from the flags.
fn hub_config(a: &ServeArgs) -> Result<HubConfig, String> {
    Ok(HubConfig {
        node: a.node.clone(),
        auth_secret: a.auth_secret.clone().map(String::into_bytes),
        token_rules: TokenRules {
            audience: a.token_audience.clone(),
            issuer: a.token_issuer.clone(),
            leeway_secs: a.token_leeway,
        },
        origins: OriginPolicy::parse(&a.allowed_origins),
        hosts: HostPolicy::parse(&a.allowed_hosts, a.listen.ip().to_canonical().is_loopback())
            .map_err(|e| format!("--allowed-hosts: {e}"))?,
        history_len: a.history_len,
        history_age: Duration::from_secs(a.history_age),
        max_history_bytes: a.max_history_bytes,
        max_topics_per_conn: a.max_topics_per_conn,
        max_topics: a.max_topics as usize,
        max_inboxes: a.max_inboxes as usize,
        max_connections_per_user: a.max_connections_per_user,
        max_connections_per_ip: a.max_connections_per_ip,
        max_subscriptions_per_user: a.max_subscriptions_per_user,
        max_topics_per_user: a.max_topics_per_user,
        max_topics_per_ip: a.max_topics_per_ip,
        session_ttl: Duration::from_secs(a.session_ttl),
        max_positions_per_user: a.max_positions_per_user as usize,
        max_positions: a.max_positions as usize,
        idempotency_window: Duration::from_secs(a.idempotency_window),
        max_idempotency_keys: a.max_idempotency_keys as usize,
        presence_events_max: a.presence_events_max,
        redeliver_after: (a.redeliver_after > 0).then(|| Duration::from_secs(a.redeliver_after)),
        redeliver_attempts: a.redeliver_attempts,
        requests_per_turn: a.requests_per_turn as usize,
        fanout_per_turn: a.fanout_per_turn as usize,
        fanout_bytes_per_turn: a.fanout_bytes_per_turn as usize,
        max_fanout_backlog: a.max_fanout_backlog as usize,
        rate_per_sec: a.rate,
        rate_burst: a.burst,
        index_html: Some(DEMO_PAGE),
        ..HubConfig::default()
    })
}

/// The Redis engine's settings from the flags.
fn redis_config(a: &ServeArgs) -> RedisConfig {
    RedisConfig {
        url: a.redis_url.clone(),
        prefix: a.redis_prefix.clone(),
        node: a.node.clone(),
        history_len: a.history_len,
        history_age: Duration::from_secs(a.history_age),
        node_ttl: Duration::from_secs(a.node_ttl),
        timeout: Duration::from_secs(a.redis_timeout),
        max_cache_bytes: a.max_history_bytes,
        session_ttl: Duration::from_secs(a.session_ttl),
        max_positions_per_user: a.max_positions_per_user as usize,
        idempotency_window: Duration::from_secs(a.idempotency_window),
        ..RedisConfig::default()
    }
}

/// SIGINT/SIGTERM: a graceful shutdown (close 1001 to everyone, drain,
/// exit 0); a second one exits at once (status 130).
fn shut_down_on_signals(handle: wsmio::Handle) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(sig) = signals.next() {
            log::info!("signal {sig}: shutting down (again to exit at once)");
            let _ = handle.shutdown();
        }
        // Keep the handlers installed: a second signal ends the wait.
        if let Some(sig) = signals.next() {
            log::warn!("signal {sig} again: exiting without waiting for clients");
            std::process::exit(130);
        }
    });
    Ok(())
}

/// File descriptors needed besides the connections: std streams, epoll,
/// waker, listener, the spare accept descriptor, signal pipe, TLS files.
const FD_HEADROOM: libc::rlim_t = 64;

/// Raise the soft open-file limit (often 1024) towards the hard limit so
/// that `sockets` (connections and handshakes) fit; warn if they cannot
/// (connections past the limit are refused with 503).
fn fit_open_file_limit(sockets: usize) {
    let want = (sockets as libc::rlim_t).saturating_add(FD_HEADROOM);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur < want {
        log::warn!(
            "open-file limit {} (hard {}) is below --max-connections + --max-pending-handshakes \
             ({sockets}) + {FD_HEADROOM}: connections past it are refused with 503",
            lim.rlim_cur,
            lim.rlim_max
        );
    }
}
