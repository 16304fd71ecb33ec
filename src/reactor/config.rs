//! Server configuration. Every limit is named here with its default.

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use super::clock::Clock;
#[cfg(feature = "deflate")]
use super::deflate::DeflateSettings;
use crate::proto::handshake::{HeadLimits, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEAD_SIZE};
use crate::proto::{DeliveryMode, Limits};

/// Longest [`Config::busy_poll`] honoured; longer settings are clamped to it
/// so that a mistyped value cannot keep a loop spinning for seconds between
/// sleeps.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// The derived [`Config::listen_backlog`] is never below this: the fixed
/// backlog the loop had before it was configurable.
const MIN_DEFAULT_BACKLOG: u32 = 128;
/// The derived [`Config::listen_backlog`] is never above this: Linux's
/// default `net.core.somaxconn` (since 5.4), which caps any larger request.
const MAX_DEFAULT_BACKLOG: u32 = 4096;

/// What happens to a data send when a connection's queue is full
/// ([`Config::max_queued_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FullQueuePolicy {
    /// Refuse the send ([`super::SendStatus::Dropped`]); the connection
    /// stays open. The embedder decides what a gap means.
    Drop,
    /// Close the connection with 1008 ("send queue full"): a consumer that
    /// cannot keep up is cut off. The default.
    #[default]
    Close,
}

/// Configuration of a [`super::Server`]. Build it from `Config::default()`
/// with the `with_*` methods; every field has a documented default, and
/// new fields come with new setters (the struct is `#[non_exhaustive]`).
///
/// ```
/// use std::time::Duration;
/// use wsmio::{Config, FullQueuePolicy};
///
/// let config = Config::default()
///     .with_max_message_size(1 << 20) // close 1009 above 1 MiB
///     .with_idle_timeout(Some(Duration::from_secs(20))) // ping after 20 s of silence
///     .with_max_queued_bytes(512 * 1024)
///     .with_full_queue_policy(FullQueuePolicy::Drop); // refuse sends, keep the connection
/// assert_eq!(config.max_connections, 10_000); // the rest keep their defaults
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest request head (default 8 KiB); over it: `431`.
    pub max_head_size: usize,
    /// Most request headers (default 64); over it: `431`.
    pub max_headers: usize,
    /// Largest frame payload accepted (default 16 MiB); over it: close 1009.
    pub max_frame_size: u64,
    /// Largest message accepted (default 16 MiB); over it: close 1009.
    pub max_message_size: u64,
    /// Whole messages (default) or streamed chunks.
    pub delivery: DeliveryMode,
    /// Time allowed from accept to a complete request head (default 5 s);
    /// then `408` and close.
    pub handshake_timeout: Duration,
    /// Silence after which the server sends a ping (default 30 s). `None`
    /// disables heartbeats.
    pub idle_timeout: Option<Duration>,
    /// Time allowed for any byte after a heartbeat ping (default 30 s); then
    /// close 1001.
    pub pong_timeout: Duration,
    /// Time allowed for the peer's close frame (and TCP close) after ours
    /// (default 5 s); then the TCP connection is closed.
    pub close_timeout: Duration,
    /// Queued outbound bytes above which a send reports
    /// [`super::SendStatus::Backpressured`] and a drain event follows
    /// (default 256 KiB).
    pub backpressure_limit: usize,
    /// Queued outbound bytes at which data sends stop being accepted
    /// (default 4 MiB); then [`Config::full_queue_policy`] applies. Below it
    /// a message is queued whole, so the queue holds at most this plus one
    /// message once a flush has found the peer behind. Sends only queue and
    /// the loop writes at the end of the turn, so within a turn a queue
    /// whose last flush wrote everything also takes what the socket's send
    /// buffer has room for (what that flush hands to the kernel).
    pub max_queued_bytes: usize,
    /// Drop or close when the queue is full (default close).
    pub full_queue_policy: FullQueuePolicy,
    /// Room kept above `max_queued_bytes` (or above the queue's length after
    /// a whole message took it past that) for pongs and close frames, which
    /// are never dropped (default 4 KiB). Past it the peer is not reading at
    /// all and the TCP connection is closed.
    pub control_reserve: usize,
    /// Most upgraded connections at once (default 10,000): WebSocket
    /// connections, open or closing. Past it a new connection is refused
    /// with `503` at accept, and an upgrade request that finds the limit
    /// reached meanwhile with `503` at the upgrade. Connections still in
    /// their handshake (and plain HTTP exchanges) do not count here but
    /// against [`Config::max_pending_handshakes`], so a fleet of slow
    /// handshakes cannot take the slots of upgraded connections. The
    /// process holds at most this plus `max_pending_handshakes` sockets.
    pub max_connections: usize,
    /// Most connections that are not upgraded at once (default 4,096):
    /// those waiting for or reading their request head, and those whose
    /// HTTP answer (a plain response or a refused upgrade) is on its way
    /// out. When a new connection would pass it, the oldest of them is
    /// dropped to make room — answered `408` first if its head had not
    /// come yet — as nginx and uWebSockets drop slow clients: a real
    /// client sends its head with its first packets and is done within a
    /// round trip or two, so the oldest is the slowest. The default is
    /// the default accept queue's length: a whole queue of clients
    /// reconnecting at once may be handshaking together (over TLS on a
    /// slow network each takes round trips) without dropping any of them,
    /// while a slow fleet can hold at most 4,096 descriptors and, with the
    /// default `max_head_size`, 32 MiB of partial heads (counted in
    /// [`Config::max_buffered_bytes`] as well). At least 1.
    pub max_pending_handshakes: usize,
    /// The accept queue's length asked of `listen(2)` (`None`, the
    /// default: [`Config::max_connections`], at least 128 and at most
    /// 4,096). Connections the kernel has completed wait there until the
    /// loop accepts them; when it is full the kernel drops new SYNs and
    /// each such client waits a second or more for its retry. A
    /// reconnect storm after a deploy brings every client back at once,
    /// so the queue should match the connection limit; 4,096 is Linux's
    /// own ceiling by default (`net.core.somaxconn` since 5.4), so the
    /// default asks for no more than it gets. The kernel caps whatever is
    /// asked at `net.core.somaxconn`; [`super::Server::bind`] logs a
    /// warning when that is lower than asked.
    pub listen_backlog: Option<u32>,
    /// Connections accepted per loop turn (default 256). A reconnect
    /// storm is accepted in slices: the connections already open get
    /// their reads, timers and writes between slices, and the rest of the
    /// queue is accepted next turn (no new readiness event is needed). 256
    /// accepts cost the loop about a millisecond; a full 4,096-entry queue
    /// drains in 16 turns. At least 1.
    pub accepts_per_turn: usize,
    /// Bytes of input all connections together may hold (default
    /// 256 MiB): messages being reassembled (the receive buffer of a
    /// message split over reads or frames) and request heads that came in
    /// pieces, counted by the capacity of their buffers. Each connection
    /// is bounded by `max_message_size` and `max_head_size`; this bounds
    /// their sum. Past it, the largest holders are closed with 1013 (Try
    /// Again Later, RFC 6455 §7.4.1 / the IANA registry: the message was
    /// within the limits, the server is short of memory) — a holder still
    /// in its handshake gets `503` — until the total is at most 7/8 of
    /// the limit (one pass makes room for more than the next read).
    /// Closing, not pausing: a paused connection would keep holding its
    /// buffer, and if every holder were paused none could finish its
    /// message. The check runs after each read, so the total may pass the
    /// limit by what one read adds before it acts. The default fits 16
    /// messages of the default 16 MiB `max_message_size` at once, or every
    /// one of the default 10,000 connections midway through a 26 KiB
    /// message. Output queues are bounded per connection by
    /// `max_queued_bytes` and are not counted here; nor are TLS records
    /// inside rustls (at most one record per connection).
    pub max_buffered_bytes: usize,
    /// Most application timers set at once through
    /// [`super::Ctx::set_timer`] (default 65,536; each costs about 48
    /// bytes). Past it `set_timer` fails with
    /// [`super::TimerError::Full`].
    pub max_timers: usize,
    /// Most commands waiting from [`super::Handle`]s (default 4096); a full
    /// queue makes `Handle` calls fail with `HandleError::Full`.
    pub command_queue: usize,
    /// How long a graceful shutdown waits for close replies (default 5 s).
    pub shutdown_timeout: Duration,
    /// Bytes read per `read` call into the loop's shared buffer (default
    /// 256 KiB; one buffer per loop, not per connection).
    pub read_buffer_size: usize,
    /// Reads of one connection per readiness event (default 4, so up to
    /// 1 MiB with the default buffer). A peer that keeps its socket full
    /// gets this many, then waits for the other connections and the timers
    /// of the turn; its input is read again next turn. At least 1.
    pub reads_per_turn: usize,
    /// Busy polling (default off). Before the loop sleeps in `epoll_wait` it
    /// keeps polling without sleeping for up to this long (at most
    /// [`MAX_BUSY_POLL`], never past the next timer), so bytes that arrive
    /// meanwhile are handled without waking a sleeping thread — the largest
    /// part of a round trip on a virtual machine. The price is CPU: the loop
    /// spins for this long after every burst of work, and keeps a core busy
    /// while messages arrive more often than this. An idle loop sleeps.
    pub busy_poll: Option<Duration>,
    /// The reason in the 1001 close frame of a graceful shutdown (default
    /// "server shutting down").
    pub shutdown_reason: String,
    /// Where the loop reads the time (default: the system's monotonic
    /// clock). Tests drive timers with a [`super::ManualClock`] instead of
    /// sleeping.
    pub clock: Clock,
    /// Serve TLS (wss://, https://) with this rustls configuration (default
    /// none: plain TCP). See [`super::tls::server_config_from_pem`]. Needs
    /// the `tls` feature.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it
    /// (default `None`: declined, as without the feature). With it, the
    /// upgrade answers the first acceptable offer (§5; a malformed
    /// `Sec-WebSocket-Extensions` gets `400`), sends are compressed from
    /// `compression.min_size` bytes on, and a shared [`super::Frame`] is
    /// compressed once for all such connections. Received messages inflate
    /// within `max_message_size` (a message that would pass it: 1009), and
    /// are delivered like any other — whole, or in
    /// [`DeliveryMode::Chunks`](crate::proto::DeliveryMode::Chunks) mode as the
    /// inflated bytes, at most 4 KiB per chunk. Compression state is held
    /// only while a message is being (de)compressed unless context
    /// takeover is agreed (then 47 KiB to inflate, 137–380 KiB to deflate
    /// per connection, not counted in `max_buffered_bytes`). Needs the
    /// `deflate` feature.
    #[cfg(feature = "deflate")]
    pub deflate: Option<DeflateSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_frame_size: crate::proto::limits::DEFAULT_MAX_FRAME_SIZE,
            max_message_size: crate::proto::limits::DEFAULT_MAX_MESSAGE_SIZE,
            delivery: DeliveryMode::Messages,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            backpressure_limit: 256 * 1024,
            max_queued_bytes: 4 * 1024 * 1024,
            full_queue_policy: FullQueuePolicy::Close,
            control_reserve: 4096,
            max_connections: 10_000,
            max_pending_handshakes: 4096,
            listen_backlog: None,
            accepts_per_turn: 256,
            max_buffered_bytes: 256 << 20,
            max_timers: 65_536,
            command_queue: 4096,
            shutdown_timeout: Duration::from_secs(5),
            read_buffer_size: 256 * 1024,
            reads_per_turn: 4,
            busy_poll: None,
            shutdown_reason: "server shutting down".into(),
            clock: Clock::System,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

macro_rules! with {
    ($(#[$doc:meta] $name:ident: $field:ident: $ty:ty),* $(,)?) => {
        impl Config {
            $(
                #[$doc]
                #[must_use = "a `with_*` setter returns the changed configuration"]
                pub fn $name(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*
        }
    };
}

with! {
    /// Set [`Config::max_head_size`].
    with_max_head_size: max_head_size: usize,
    /// Set [`Config::max_headers`].
    with_max_headers: max_headers: usize,
    /// Set [`Config::max_frame_size`].
    with_max_frame_size: max_frame_size: u64,
    /// Set [`Config::max_message_size`].
    with_max_message_size: max_message_size: u64,
    /// Set [`Config::delivery`].
    with_delivery: delivery: DeliveryMode,
    /// Set [`Config::handshake_timeout`].
    with_handshake_timeout: handshake_timeout: Duration,
    /// Set [`Config::idle_timeout`].
    with_idle_timeout: idle_timeout: Option<Duration>,
    /// Set [`Config::pong_timeout`].
    with_pong_timeout: pong_timeout: Duration,
    /// Set [`Config::close_timeout`].
    with_close_timeout: close_timeout: Duration,
    /// Set [`Config::backpressure_limit`].
    with_backpressure_limit: backpressure_limit: usize,
    /// Set [`Config::max_queued_bytes`].
    with_max_queued_bytes: max_queued_bytes: usize,
    /// Set [`Config::full_queue_policy`].
    with_full_queue_policy: full_queue_policy: FullQueuePolicy,
    /// Set [`Config::control_reserve`].
    with_control_reserve: control_reserve: usize,
    /// Set [`Config::max_connections`].
    with_max_connections: max_connections: usize,
    /// Set [`Config::max_pending_handshakes`].
    with_max_pending_handshakes: max_pending_handshakes: usize,
    /// Set [`Config::accepts_per_turn`].
    with_accepts_per_turn: accepts_per_turn: usize,
    /// Set [`Config::max_buffered_bytes`].
    with_max_buffered_bytes: max_buffered_bytes: usize,
    /// Set [`Config::max_timers`].
    with_max_timers: max_timers: usize,
    /// Set [`Config::command_queue`].
    with_command_queue: command_queue: usize,
    /// Set [`Config::shutdown_timeout`].
    with_shutdown_timeout: shutdown_timeout: Duration,
    /// Set [`Config::read_buffer_size`].
    with_read_buffer_size: read_buffer_size: usize,
    /// Set [`Config::reads_per_turn`].
    with_reads_per_turn: reads_per_turn: usize,
    /// Set [`Config::busy_poll`].
    with_busy_poll: busy_poll: Option<Duration>,
}

impl Config {
    /// Set [`Config::shutdown_reason`].
    #[must_use = "a `with_*` setter returns the changed configuration"]
    pub fn with_shutdown_reason(mut self, reason: &str) -> Self {
        self.shutdown_reason = reason.to_string();
        self
    }

    /// Set [`Config::listen_backlog`] (`None`: derived from
    /// `max_connections`).
    #[must_use = "a `with_*` setter returns the changed configuration"]
    pub fn with_listen_backlog(mut self, backlog: impl Into<Option<u32>>) -> Self {
        self.listen_backlog = backlog.into();
        self
    }

    /// Set [`Config::clock`] (a [`super::ManualClock`] converts into one).
    #[must_use = "a `with_*` setter returns the changed configuration"]
    pub fn with_clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Set [`Config::tls`].
    #[cfg(feature = "tls")]
    #[must_use = "a `with_*` setter returns the changed configuration"]
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Offer permessage-deflate: set [`Config::deflate`].
    #[cfg(feature = "deflate")]
    #[must_use = "a `with_*` setter returns the changed configuration"]
    pub fn with_deflate(mut self, settings: DeflateSettings) -> Self {
        self.deflate = Some(settings);
        self
    }
}

impl Config {
    /// Whether connections speak TLS (set by `Config::with_tls`, with the
    /// `tls` feature).
    pub fn serves_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The accept queue's length to ask of `listen(2)`: see
    /// [`Config::listen_backlog`].
    pub fn backlog(&self) -> u32 {
        self.listen_backlog.unwrap_or_else(|| {
            u32::try_from(self.max_connections)
                .unwrap_or(u32::MAX)
                .clamp(MIN_DEFAULT_BACKLOG, MAX_DEFAULT_BACKLOG)
        })
    }

    /// The protocol core's read limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_size: self.max_frame_size.min(self.max_message_size),
            max_message_size: self.max_message_size,
            delivery: self.delivery,
        }
    }

    /// The handshake's head limits.
    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_head_size: self.max_head_size,
            max_headers: self.max_headers,
        }
    }
}
