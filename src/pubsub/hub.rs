//! The hub: a [`Handler`] that turns the reactor into a pub/sub server.
//! This file holds its state and routes the reactor's callbacks; each job
//! has a room of its own:
//!
//! - `gate.rs`: the upgrade checks (path, Host, Origin, token) and the
//!   plain HTTP routes (`/`, `/healthz`, `/readyz`, `/metrics`);
//! - `request.rs`: one request from a client, parsed and routed, in order
//!   per topic;
//! - `publish.rs`: `pub` and `dm` — sequenced by the engine, acked;
//! - `subscribe.rs`: `sub` and `unsub`, with the resume that `since` asks;
//! - `replay.rs`: a resume replay, paced by the client's queue;
//! - `presence.rs`: `presence` answers, a page at a time;
//! - `presence_feed.rs`: joins and leaves told to a topic's subscribers,
//!   coalesced per loop turn, a count past `presence_events_max`;
//! - `fanout.rs`: local fan-out (encode once, share the frame) and every
//!   send, behind the batch of held deliveries;
//! - `events.rs`: what the engine reports (its results, deliveries that
//!   other nodes sequenced).
//!
//! Flow of a publish: rights and rate limit → the engine gives the topic's
//! next sequence number, keeps the delivery in history and carries it to
//! the other nodes → the delivery is framed **once** ([`Frame`](crate::reactor::Frame)) → every
//! local subscriber's queue references the same bytes.

use std::collections::HashMap;
use std::net::IpAddr;

use super::auth::inbox_topic;
use super::auth::Identity;
use super::batch::Batch;
use super::client::Client;
use super::config::HubConfig;
use super::engine::memory::{MemoryEngine, MemoryLimits};
use super::engine::{Engine, OpId};
use super::fanout_queue::FanoutQueue;
use super::local::LocalTopics;
use super::metrics::Metrics;
use super::pacing::Pacing;
use super::presence_feed::PresenceFeed;
use super::protocol::Event;
use super::protocol::{self, ErrorCode};
use super::quota::Quotas;
use super::ratelimit::TokenBucket;
use crate::proto::handshake::HttpRequest;
use crate::reactor::{CloseInfo, ConnId, ConnIdMap, Ctx, Handler, HttpResponse, Upgrade};
use crate::{CloseCode, Message};

pub use super::config::DEFAULT_RATE_BURST;

/// The pub/sub hub.
pub struct Hub {
    pub(super) config: HubConfig,
    pub(super) engine: Box<dyn Engine + Send>,
    /// This node's subscriptions.
    pub(super) local: LocalTopics,
    pub(super) clients: ConnIdMap<Client>,
    /// Identities (and addresses) between the upgrade and `open`.
    pub(super) pending: ConnIdMap<(Identity, Option<IpAddr>)>,
    /// What each user and address holds (see `quota.rs`).
    pub(super) quotas: Quotas,
    pub(super) metrics: Metrics,
    pub(super) anon_counter: u64,
    /// Deliveries of the current read (or engine wake-up) not yet queued;
    /// empty between them.
    pub(super) batch: Batch,
    /// Engine operations the hub waits for, by id.
    pub(super) ops: HashMap<OpId, Op>,
    pub(super) next_op: OpId,
    /// Presence changes not yet told (see `presence_feed.rs`).
    pub(super) presence: PresenceFeed,
    /// Fan-outs larger than a turn's budget (see `fanout_queue.rs`).
    pub(super) fanout: FanoutQueue,
    /// Requests past a turn's budget (see `pacing.rs`).
    pub(super) pacing: Pacing,
    /// Connections with topics watched for redelivery, and whether its
    /// timer is set (see `redeliver.rs`).
    pub(super) watched: Vec<ConnId>,
    pub(super) redeliver_armed: bool,
}

/// The hub's timer for throttled `presence_count`s
/// ([`Handler::timer`] token).
pub(super) const TIMER_PRESENCE: u64 = 1;

/// The hub's timer for redelivery (see `redeliver.rs`).
pub(super) const TIMER_REDELIVER: u64 = 2;

/// An engine operation the hub waits for, and whom it answers.
#[derive(Debug)]
pub(super) enum Op {
    /// A `pub` or `dm`.
    Publish {
        conn: ConnId,
        req: Option<u64>,
        /// The recipient of a `dm`.
        to: Option<String>,
        exclude_self: bool,
    },
    /// History fetched for a pending subscription's resume.
    Fetch { conn: ConnId },
    /// A `presence` request.
    Members { conn: ConnId, req: Option<u64> },
    /// The acknowledged position for a pending `"since":"acked"`.
    Acked { conn: ConnId },
}

impl Op {
    /// The connection it answers.
    pub(super) fn conn(&self) -> ConnId {
        match self {
            Op::Publish { conn, .. }
            | Op::Fetch { conn }
            | Op::Members { conn, .. }
            | Op::Acked { conn } => *conn,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (delivery timestamps).
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Engine events handled per wake-up before the loop's other work gets a
/// turn (the rest follow on the next turn).
pub(super) const EVENTS_PER_WAKE: usize = 4096;

/// `bytes` random bytes in hex (epochs, anonymous user ids).
pub(super) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Hub {
    /// A hub on the memory engine, with a fresh random epoch.
    pub fn new(config: HubConfig) -> Self {
        let limits = MemoryLimits {
            max_inboxes: config.max_inboxes,
            session_ttl_ms: config.session_ttl.as_millis() as u64,
            max_positions_per_user: config.max_positions_per_user,
            max_positions: config.max_positions,
            idempotency_window_ms: config.idempotency_window.as_millis() as u64,
            max_idempotency_keys: config.max_idempotency_keys,
            ..MemoryLimits::new(
                config.max_topics,
                config.max_history_bytes,
                config.history_len,
                config.history_age.as_millis() as u64,
            )
        };
        let engine = MemoryEngine::new(&config.node, random_hex(6), limits);
        Hub::with_engine(config, Box::new(engine))
    }

    /// A hub on `engine` (for example the Redis engine, for many nodes).
    pub fn with_engine(config: HubConfig, engine: Box<dyn Engine + Send>) -> Self {
        Hub {
            config,
            engine,
            local: LocalTopics::default(),
            clients: ConnIdMap::default(),
            pending: ConnIdMap::default(),
            quotas: Quotas::default(),
            metrics: Metrics::default(),
            anon_counter: 0,
            batch: Batch::default(),
            ops: HashMap::new(),
            next_op: 1,
            presence: PresenceFeed::default(),
            fanout: FanoutQueue::default(),
            pacing: Pacing::default(),
            watched: Vec::new(),
            redeliver_armed: false,
        }
    }

    /// The engine's epoch (see [`Engine::epoch`]).
    pub fn epoch(&self) -> &str {
        self.engine.epoch()
    }

    /// The epoch of `topic`'s sequence numbers, if this node knows it.
    pub fn topic_epoch(&self, topic: &str) -> Option<String> {
        self.engine.position(topic).map(|p| p.epoch)
    }

    /// Current metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A fresh id for an engine operation.
    pub(super) fn op_id(&mut self) -> OpId {
        let id = self.next_op;
        self.next_op = self.next_op.wrapping_add(1).max(1);
        id
    }

    /// Close `id`, whose token has expired, with 1008 (checked on every
    /// request and every heartbeat pong, so a silent client is closed
    /// within the idle timeout).
    #[cold]
    fn close_expired(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.metrics.drop("token_expired");
        self.close_conn(ctx, id, CloseCode::POLICY, "token expired");
    }

    /// A new connection: its state, the `welcome`, and its inbox (every
    /// connection receives its user's direct messages).
    fn welcome(&mut self, ctx: &mut Ctx<'_>, id: ConnId, who: Identity, ip: Option<IpAddr>) {
        self.metrics.connections_current += 1;
        self.metrics.connections_total += 1;
        let now = ctx.now_ms();
        let wall = wall_ms();
        let expires_ms = who
            .expires_ms
            .map(|exp| now.saturating_add(exp.saturating_sub(wall)));
        let inbox = inbox_topic(&who.user);
        let welcome = Event::Welcome {
            user: &who.user,
            anonymous: who.anonymous,
            node: &self.config.node,
            epoch: self.engine.epoch(),
            inbox: &inbox,
            engine: self.engine.kind(),
            presence_events_max: self.config.presence_events_max,
        }
        .encode();
        let bucket = TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst, now);
        self.clients
            .insert(id, Client::new(who, ip, bucket, expires_ms));
        let _ = self.send(ctx, id, &welcome);
        self.subscribe(ctx, id, None, &inbox, None);
    }

    /// A connection is gone: its subscriptions end (`leave` events where
    /// it was its user's last), and what waited for the engine on its
    /// behalf is forgotten.
    fn goodbye(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let topics = c.topics.clone();
        for t in topics {
            self.unsubscribe(ctx, id, &t);
        }
        if let Some(c) = self.clients.remove(&id) {
            self.quotas.disconnected(&c.who.user, c.ip);
        }
        self.ops.retain(|_, op| op.conn() != id);
        self.metrics.connections_current = self.metrics.connections_current.saturating_sub(1);
    }

    /// Take one request's worth from `id`'s rate limit; false if it is
    /// over (the request was answered `rate_limited`, or the connection
    /// closed after too many in a row).
    fn rate_limit(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: &Message<'_>) -> bool {
        let now = ctx.now_ms();
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        if c.bucket.try_take(now) {
            c.violations = 0;
            return true;
        }
        c.violations += 1;
        self.metrics.drop("rate_limited");
        if c.violations >= self.config.rate_violation_limit {
            self.close_conn(ctx, id, CloseCode::POLICY, "rate limit exceeded");
        } else {
            // The request is dropped unread, but its id is echoed so the
            // client knows which one to retry.
            let rid = match msg {
                Message::Text(t) => protocol::request_id(t),
                Message::Binary(_) => None,
            };
            let e = "rate limit exceeded; request dropped";
            self.error(ctx, id, rid, ErrorCode::RateLimited, e);
        }
        false
    }
}

impl Handler for Hub {
    // The hub keeps its clients in maps of its own (`clients`, `pending`).
    type Conn = ();

    fn upgrade(&mut self, ctx: &mut Ctx<'_>, id: ConnId, req: &HttpRequest) -> Upgrade {
        let secure = ctx.config().serves_tls();
        let ip = ctx.peer_addr(id).map(|a| a.ip().to_canonical());
        self.check_upgrade(id, req, secure, ip)
    }

    fn http(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> HttpResponse {
        self.route_http(req, &ctx.stats())
    }

    fn rejected(&mut self, _ctx: &mut Ctx<'_>, status: u16, _reason: &'static str) {
        self.count_rejection(status);
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let Some((who, ip)) = self.pending.remove(&id) else {
            self.close_conn(ctx, id, CloseCode::INTERNAL, "no identity");
            return;
        };
        self.welcome(ctx, id, who, ip);
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        self.metrics.messages_in += 1;
        self.metrics.bytes_in += msg.as_bytes().len() as u64;
        let now = ctx.now_ms();
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if c.token_expired(now) {
            self.close_expired(ctx, id);
            return;
        }
        if !self.rate_limit(ctx, id, &msg) {
            return;
        }
        match msg {
            Message::Text(t) => self.paced_request(ctx, id, t),
            // RFC 6455 §7.4.1: 1003 for a data type the endpoint cannot accept.
            Message::Binary(_) => self.close_conn(
                ctx,
                id,
                CloseCode::UNSUPPORTED,
                "the hub protocol is JSON text",
            ),
        }
    }

    fn read_done(&mut self, ctx: &mut Ctx<'_>, _id: ConnId) {
        self.release(ctx);
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.release(ctx);
        self.owed(ctx, id);
    }

    fn pong(&mut self, ctx: &mut Ctx<'_>, id: ConnId, _payload: &[u8]) {
        let now = ctx.now_ms();
        if self.clients.get(&id).is_some_and(|c| c.token_expired(now)) {
            self.close_expired(ctx, id);
        }
    }

    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        // A new turn's fan-out budget: the queue first, then what the
        // engine brought (which waits while the queue is long).
        self.run_fanout(ctx);
        self.run_deferred(ctx);
        self.engine_events(ctx);
        self.flush_presence(ctx);
    }

    fn timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        match token {
            TIMER_PRESENCE => self.presence_tick(ctx),
            TIMER_REDELIVER => self.redeliver_tick(ctx),
            _ => {}
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        self.release(ctx);
        self.metrics.close(info.code.0);
        if let Some((who, ip)) = self.pending.remove(&id) {
            self.quotas.disconnected(&who.user, ip);
        }
        self.goodbye(ctx, id);
    }
}
