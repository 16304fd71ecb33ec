//! The Redis engine: many hub nodes behind a load balancer, one Redis
//! between them (`wsmio serve --engine redis --redis-url …`).
//!
//! - **One sequence per topic for the whole cluster.** A publish runs one
//!   script in Redis (`scripts.rs`): the topic's counter, the append to its
//!   history (a Redis Stream, bounded by `--history-len` and
//!   `--history-age`) and the message to the other nodes, atomically. A
//!   topic's epoch lives in Redis: restarting nodes keeps it; only losing
//!   Redis's data changes it.
//! - **Fan-out across nodes, encoded once.** Each node listens only on the
//!   channels of topics it has subscribers for (`subscriber.rs`), frames
//!   each delivery once and fans it out locally as the memory engine does.
//! - **In order, no duplicates, no silent loss.** Redis pub/sub is
//!   at-most-once; a node that sees a topic's seq jump fetches the missing
//!   deliveries from history before delivering anything newer, and reports
//!   what history lost as a `gap` (`feed.rs`).
//! - **Presence on every node**, with heartbeats: a node that dies without
//!   a goodbye has its members removed within `--node-ttl`.
//! - **Never blocks the loop.** Redis I/O runs on two threads of the
//!   engine (`commands.rs`, `subscriber.rs`); the loop queues operations
//!   (bounded) and takes results when a thread wakes it. Operations queued
//!   together go in one pipeline.
//!
//! Keys and message formats: `wire.rs`. Operator's guide: `docs/CLUSTER.md`.

mod commands;
mod feed;
mod scripts;
mod stats;
mod subscriber;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::commands::{Command, Entry, FetchFor, Reply};
use self::feed::{Action, Arrival, Feed, State};
use self::stats::Stats;
use self::subscriber::{SubCommand, SubEvent};
use self::wire::Keys;
use super::{
    check_ack, AckError, Creator, Engine, EngineError, EngineEvent, EngineStats, Fetched, Members,
    OpId, Outcome, Page, Position, Publish, Receipt, Sequenced,
};
use crate::pubsub::history::Stored;
use crate::pubsub::protocol::Delivery;
use crate::reactor::{ConnId, Frame, Handle};

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

/// A publish sent and not yet seen back.
#[derive(Debug)]
struct InFlight {
    op: OpId,
    topic: String,
    exclude: Option<ConnId>,
    /// Its `Published` event went out (from the reply or from the
    /// delivery, whichever came first).
    acked: bool,
}

/// Own publishes kept for their delivery at most; past it the oldest
/// acked ones are forgotten (their delivery then reaches even an
/// `exclude_self` publisher).
const MAX_IN_FLIGHT: usize = 1 << 16;

/// Results taken from the threads per `poll` refill.
const REFILL: usize = 256;

/// The Redis engine.
pub struct RedisEngine {
    cfg: RedisConfig,
    keys: Keys,
    instance: String,
    commands: SyncSender<Command>,
    replies: Receiver<Reply>,
    subscriptions: Sender<SubCommand>,
    inbound: Receiver<SubEvent>,
    feeds: HashMap<String, Feed>,
    events: VecDeque<EngineEvent>,
    in_flight: HashMap<u64, InFlight>,
    next_publish: u64,
    next_gen: u64,
    commands_up: bool,
    subscriber_up: bool,
    /// This node's connections per (topic, user), to add them again if
    /// Redis lost them.
    members: HashMap<(String, String), u32>,
    /// Acks not yet sent, per (user, topic): the newest position of each
    /// (acks are cumulative, so several coalesce into one write).
    acks: HashMap<String, HashMap<String, Position>>,
    /// A batch of acks is on its way to Redis (one at a time: the rest
    /// coalesce meanwhile).
    acks_in_flight: bool,
    stats: Arc<Stats>,
    threads: Vec<JoinHandle<()>>,
    /// Loop time, from the last call that passed it (cache age).
    now_ms: u64,
}

impl RedisEngine {
    /// Start the engine's threads; they connect in the background (the
    /// engine is not [`Engine::ready`] until they have). Fails only on a
    /// URL that cannot be used. `handle` wakes the loop the hub runs on.
    pub fn start(cfg: RedisConfig, handle: Handle) -> Result<RedisEngine, String> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| format!("--redis-url {:?}: {e}", cfg.url))?;
        let keys = Keys::new(&cfg.prefix);
        let instance = crate::pubsub::hub::random_hex(6);
        let stats = Arc::new(Stats::default());
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(cfg.max_pending.max(1));
        let (reply_tx, reply_rx) = mpsc::channel();
        let (sub_tx, sub_rx) = mpsc::channel();
        let (in_tx, in_rx) = mpsc::sync_channel(cfg.max_inbound.max(1));
        let age_ms = cfg.history_age.as_millis() as u64;
        let wake = |h: Handle| -> Box<dyn Fn() + Send> {
            Box::new(move || {
                let _ = h.wake();
            })
        };
        let setup = commands::Setup {
            client: client.clone(),
            keys: keys.clone(),
            instance: instance.clone(),
            history_len: cfg.history_len,
            history_age_ms: age_ms,
            meta_ttl_ms: cfg.topic_ttl.max(cfg.history_age).as_millis() as u64,
            session_ttl_ms: cfg.session_ttl.as_millis().max(1) as u64,
            max_positions_per_user: cfg.max_positions_per_user.max(1),
            idempotency_window_ms: cfg.idempotency_window.as_millis().max(1) as u64,
            node_ttl: cfg.node_ttl.max(Duration::from_millis(300)),
            timeout: cfg.timeout,
            stats: stats.clone(),
            wake: wake(handle.clone()),
        };
        let t1 = std::thread::Builder::new()
            .name("wsmio-redis-cmd".into())
            .spawn(move || commands::run(setup, cmd_rx, reply_tx))
            .map_err(|e| e.to_string())?;
        let setup = subscriber::Setup {
            client,
            keys: keys.clone(),
            instance: instance.clone(),
            timeout: cfg.timeout,
            stats: stats.clone(),
            wake: wake(handle),
        };
        let t2 = std::thread::Builder::new()
            .name("wsmio-redis-sub".into())
            .spawn(move || subscriber::run(setup, sub_rx, in_tx))
            .map_err(|e| e.to_string())?;
        log::info!(
            "engine redis: node {} instance {instance}, {} (prefix {:?})",
            cfg.node,
            redact(&cfg.url),
            cfg.prefix
        );
        Ok(RedisEngine {
            cfg,
            keys,
            instance,
            commands: cmd_tx,
            replies: reply_rx,
            subscriptions: sub_tx,
            inbound: in_rx,
            feeds: HashMap::new(),
            events: VecDeque::new(),
            in_flight: HashMap::new(),
            next_publish: 0,
            next_gen: 0,
            commands_up: false,
            subscriber_up: false,
            members: HashMap::new(),
            acks: HashMap::new(),
            acks_in_flight: false,
            stats,
            threads: vec![t1, t2],
            now_ms: 0,
        })
    }

    /// This process's instance id (in origin tags and the node set).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Queue `c` for the command thread; false if the queue is full or
    /// the thread is gone.
    fn command(&self, c: Command) -> bool {
        match self.commands.try_send(c) {
            Ok(()) => {
                self.stats.pending.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                log::warn!(
                    "redis: {} operations waiting; refusing more",
                    self.cfg.max_pending
                );
                self.stats
                    .errors
                    .unavailable
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn unavailable() -> EngineError {
        EngineError::Unavailable {
            maybe_stored: false,
        }
    }

    /// Ask the subscriber thread for `c` (and wake it).
    fn subscriber(&self, c: SubCommand) {
        let _ = self.subscriptions.send(c);
        self.command(Command::WakeSubscriber);
    }

    /// Take what the threads have (a bounded amount) and turn it into
    /// events.
    fn refill(&mut self) {
        for _ in 0..REFILL {
            match self.inbound.try_recv() {
                Ok(ev) => self.on_inbound(ev),
                Err(_) => break,
            }
        }
        for _ in 0..REFILL {
            match self.replies.try_recv() {
                Ok(r) => self.on_reply(r),
                Err(_) => break,
            }
        }
    }

    fn set_up(&mut self, commands: Option<bool>, subscriber: Option<bool>) {
        let was = self.ready();
        if let Some(c) = commands {
            self.commands_up = c;
        }
        if let Some(s) = subscriber {
            self.subscriber_up = s;
        }
        if self.ready() != was {
            self.events.push_back(EngineEvent::Ready(self.ready()));
        }
        if self.ready() && !was {
            // Whatever was published while either connection was down may
            // have been missed, and a fill that failed meanwhile is not
            // retried by anything else when no delivery follows: compare
            // every topic with history now that both connections are up.
            let topics: Vec<String> = self.feeds.keys().cloned().collect();
            for t in topics {
                if let Some(f) = self.feeds.get_mut(&t) {
                    let actions = f.resync();
                    self.run(&t, actions);
                }
            }
        }
    }

    fn on_inbound(&mut self, ev: SubEvent) {
        match ev {
            SubEvent::Subscribed { topic, gen } => {
                let Some(f) = self.feeds.get_mut(&topic) else {
                    return;
                };
                if f.state == (State::Subscribing { gen }) {
                    f.state = State::Positioning { gen };
                    if !self.command(Command::Attach {
                        topic: topic.clone(),
                        gen,
                    }) {
                        self.attach_failed(&topic, Self::unavailable());
                    }
                }
            }
            SubEvent::Delivery { topic, arrival } => {
                let now = self.now_ms;
                let Some(f) = self.feeds.get_mut(&topic) else {
                    return;
                };
                let actions = f.arrive(arrival, now);
                self.run(&topic, actions);
            }
            SubEvent::Presence {
                topic,
                user,
                joined,
                count,
            } => {
                if self
                    .feeds
                    .get(&topic)
                    .is_some_and(|f| f.state == State::Live)
                {
                    self.events.push_back(EngineEvent::Presence {
                        topic,
                        user,
                        joined,
                        count,
                    });
                }
            }
            SubEvent::Up(up) => self.set_up(None, Some(up)),
        }
    }

    fn on_reply(&mut self, r: Reply) {
        match r {
            Reply::Published { n, result } => self.on_published(n, result),
            Reply::Attached { topic, gen, result } => {
                let now = self.now_ms;
                let Some(f) = self.feeds.get_mut(&topic) else {
                    return;
                };
                if f.state != (State::Positioning { gen }) {
                    return;
                }
                match result {
                    Ok((epoch, seq)) => {
                        let position = Position {
                            epoch: epoch.clone(),
                            seq,
                        };
                        self.events.push_back(EngineEvent::Attached {
                            topic: topic.clone(),
                            result: Ok(position),
                        });
                        let actions = f.positioned(&epoch, seq, now);
                        self.run(&topic, actions);
                    }
                    Err(e) => self.attach_failed(&topic, e),
                }
            }
            Reply::Fetched {
                topic,
                after,
                purpose,
                result,
            } => self.on_fetched(topic, after, purpose, result),
            Reply::Members {
                op,
                topic,
                limit,
                result,
            } => {
                let result = result.map(|(count, mut users)| {
                    let more = users.len() > limit;
                    users.truncate(limit);
                    let next = more.then(|| users.last().cloned()).flatten();
                    Members { users, count, next }
                });
                self.events
                    .push_back(EngineEvent::Members { op, topic, result });
            }
            Reply::Connected(up) => self.set_up(Some(up), None),
            Reply::AcksDone { refused } => {
                self.acks_in_flight = false;
                if refused > 0 {
                    log::debug!("redis: {refused} acks over the per-user limit or lost");
                    self.stats
                        .acks_refused
                        .fetch_add(refused as u64, Ordering::Relaxed);
                }
                self.send_acks();
            }
            Reply::Acked { op, topic, result } => {
                let result = result.map(|p| p.map(|(epoch, seq)| Position { epoch, seq }));
                self.events
                    .push_back(EngineEvent::Acked { op, topic, result });
            }
            Reply::Rejoin => {
                for ((topic, user), &n) in &self.members {
                    let c = Command::Presence {
                        topic: topic.clone(),
                        user: user.clone(),
                        delta: i64::from(n),
                    };
                    if !self.command(c) {
                        break;
                    }
                }
            }
        }
    }

    /// The attach of `topic` failed: the subscriptions that waited for it
    /// are refused (the hub detaches them one by one).
    fn attach_failed(&mut self, topic: &str, e: EngineError) {
        if let Some(f) = self.feeds.get_mut(topic) {
            // Attached again by the next `attach`.
            f.state = State::Subscribing { gen: 0 };
        }
        self.events.push_back(EngineEvent::Attached {
            topic: topic.to_string(),
            result: Err(e),
        });
    }

    fn on_published(&mut self, n: u64, result: Result<commands::Published, EngineError>) {
        let Some(p) = self.in_flight.get_mut(&n) else {
            return;
        };
        let keep = match &result {
            // A duplicate is not delivered again.
            Ok(r) if r.duplicate => false,
            // Its delivery will come back if the topic is attached here;
            // only an exclusion still needs it then.
            Ok(r) => {
                p.exclude.is_some()
                    && self
                        .feeds
                        .get(&p.topic)
                        .is_some_and(|f| f.state == State::Live && f.last < r.seq)
            }
            Err(_) => false,
        };
        if !p.acked {
            p.acked = true;
            let result = result.map(|r| Receipt {
                topic: r.topic,
                position: Position {
                    epoch: r.epoch,
                    seq: r.seq,
                },
                duplicate: r.duplicate,
            });
            self.events
                .push_back(EngineEvent::Published { op: p.op, result });
        }
        if !keep {
            self.in_flight.remove(&n);
        }
    }

    fn on_fetched(
        &mut self,
        topic: String,
        after: u64,
        purpose: FetchFor,
        result: Result<(String, u64, Vec<Entry>), EngineError>,
    ) {
        let now = self.now_ms;
        match purpose {
            FetchFor::Fill => {
                let Some(f) = self.feeds.get_mut(&topic) else {
                    return;
                };
                self.stats.fills.fetch_add(1, Ordering::Relaxed);
                let actions = match result {
                    Ok((epoch, seq, entries)) => {
                        let arrivals = entries
                            .into_iter()
                            .filter_map(|e| arrival(e, &epoch))
                            .collect();
                        f.filled(&epoch, seq, arrivals, self.cfg.history_len.max(1), now)
                    }
                    // Tried again at the next delivery, or when both
                    // connections are up again (`set_up`).
                    Err(_) => {
                        let _ = after;
                        f.failed_fill();
                        Vec::new()
                    }
                };
                self.run(&topic, actions);
            }
            FetchFor::Resume(op) => {
                let result = result.map(|(epoch, seq, entries)| Fetched {
                    items: entries
                        .into_iter()
                        .filter_map(|e| {
                            let ts = e.ts;
                            arrival(e, &epoch).map(|a| Stored {
                                seq: a.seq,
                                ts,
                                frame: a.frame,
                            })
                        })
                        .collect(),
                    position: Position { epoch, seq },
                });
                self.events
                    .push_back(EngineEvent::Fetched { op, topic, result });
            }
        }
    }

    /// Carry out what a feed asked for.
    fn run(&mut self, topic: &str, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Deliver(a) => self.deliver(topic, a),
                Action::Gap { epoch, from, to } => {
                    self.stats.lost.fetch_add(to - from + 1, Ordering::Relaxed);
                    self.events.push_back(EngineEvent::Gap {
                        topic: topic.to_string(),
                        epoch,
                        from,
                        to,
                    });
                }
                Action::Reset { epoch } => self.events.push_back(EngineEvent::EpochChanged {
                    topic: topic.to_string(),
                    position: Position { epoch, seq: 0 },
                }),
                Action::Fetch { after } => {
                    let c = Command::Fetch {
                        topic: topic.to_string(),
                        after,
                        purpose: FetchFor::Fill,
                    };
                    if !self.command(c) {
                        if let Some(f) = self.feeds.get_mut(topic) {
                            f.failed_fill();
                        }
                    }
                }
            }
        }
        self.shed_cache();
    }

    /// A delivery for the local subscribers; an own publish is acked
    /// first if its reply has not come yet.
    fn deliver(&mut self, topic: &str, a: Arrival) {
        let mut exclude = None;
        if let Some(n) = wire::own_publish(&self.instance, &a.tag) {
            if let Some(p) = self.in_flight.remove(&n) {
                exclude = p.exclude;
                if !p.acked {
                    let receipt = Receipt {
                        topic: p.topic,
                        position: Position {
                            epoch: a.epoch.clone(),
                            seq: a.seq,
                        },
                        duplicate: false,
                    };
                    self.events.push_back(EngineEvent::Published {
                        op: p.op,
                        result: Ok(receipt),
                    });
                    // Its reply will find nothing to do.
                    self.in_flight.insert(
                        n,
                        InFlight {
                            op: p.op,
                            topic: String::new(),
                            exclude: None,
                            acked: true,
                        },
                    );
                }
            }
        }
        self.events.push_back(EngineEvent::Deliver {
            topic: topic.to_string(),
            seq: a.seq,
            frame: a.frame,
            exclude,
        });
    }

    /// Keep every topic's copy within `max_cache_bytes`: clear the copies
    /// delivered to longest ago (only resumes need them; they read Redis).
    fn shed_cache(&mut self) {
        let total: usize = self.feeds.values().map(|f| f.cache.bytes()).sum();
        if total <= self.cfg.max_cache_bytes {
            return;
        }
        let mut old: Vec<(u64, String)> = self
            .feeds
            .iter()
            .filter_map(|(k, f)| Some((f.cache.last_ts()?, k.clone())))
            .collect();
        old.sort_unstable();
        let mut left = total;
        for (_, name) in old {
            if left <= self.cfg.max_cache_bytes / 4 * 3 {
                break;
            }
            if let Some(f) = self.feeds.get_mut(&name) {
                left -= f.cache.bytes();
                f.cache.clear();
            }
        }
    }

    /// Send the coalesced acks as one batch, unless one is on its way.
    fn send_acks(&mut self) {
        if self.acks_in_flight || self.acks.is_empty() {
            return;
        }
        let batch = self
            .acks
            .drain()
            .flat_map(|(user, topics)| {
                topics
                    .into_iter()
                    .map(move |(topic, p)| (user.clone(), topic, p.epoch, p.seq))
            })
            .collect();
        self.acks_in_flight = self.command(Command::Acks(batch));
    }

    /// Forget acked publishes whose delivery did not come, past the bound.
    fn bound_in_flight(&mut self) {
        if self.in_flight.len() <= MAX_IN_FLIGHT {
            return;
        }
        let mut acked: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, p)| p.acked)
            .map(|(&n, _)| n)
            .collect();
        acked.sort_unstable();
        let excess = self.in_flight.len() - MAX_IN_FLIGHT / 2;
        for n in acked.into_iter().take(excess) {
            self.in_flight.remove(&n);
        }
    }
}

/// A history entry as a delivery of epoch `epoch`.
fn arrival(e: Entry, epoch: &str) -> Option<Arrival> {
    let text = String::from_utf8(e.text).ok()?;
    Some(Arrival {
        seq: e.seq,
        epoch: epoch.to_string(),
        frame: Frame::text(&text),
        tag: e.tag,
    })
}

impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    /// This process's instance id: each topic has its own epoch in Redis.
    fn epoch(&self) -> &str {
        &self.instance
    }

    fn ready(&self) -> bool {
        self.commands_up && self.subscriber_up
    }

    fn publish(&mut self, p: &Publish<'_>, now_ms: u64) -> Result<Outcome<Sequenced>, EngineError> {
        self.now_ms = now_ms;
        if !self.ready() {
            self.stats
                .errors
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Err(Self::unavailable());
        }
        self.next_publish += 1;
        let n = self.next_publish;
        let (head, tail) = Delivery {
            topic: p.topic,
            seq: 0,
            epoch: "",
            node: &self.cfg.node,
            from: p.from,
            ts: p.ts,
            data: p.data,
        }
        .parts();
        let c = Command::Publish {
            n,
            topic: p.topic.to_string(),
            tag: wire::tag(&self.instance, n),
            head,
            tail,
            idempotency: p
                .idempotency_key
                .map(|k| (p.from.to_string(), k.to_string())),
        };
        if !self.command(c) {
            return Err(Self::unavailable());
        }
        self.stats.publishes.fetch_add(1, Ordering::Relaxed);
        self.in_flight.insert(
            n,
            InFlight {
                op: p.op,
                topic: p.topic.to_string(),
                exclude: p.exclude,
                acked: false,
            },
        );
        self.bound_in_flight();
        Ok(Outcome::Pending)
    }

    fn position(&self, topic: &str) -> Option<Position> {
        let f = self.feeds.get(topic)?;
        (f.state == State::Live).then(|| Position {
            epoch: f.epoch.clone(),
            seq: f.last,
        })
    }

    fn head(&self, topic: &str) -> Option<(&str, u64)> {
        let f = self.feeds.get(topic)?;
        (f.state == State::Live).then_some((f.epoch.as_str(), f.last))
    }

    /// Topics live in Redis, bounded by its memory and their time-to-live:
    /// the creator's quota is not checked here.
    fn attach(
        &mut self,
        topic: &str,
        _creator: Creator<'_>,
    ) -> Result<Outcome<Position>, EngineError> {
        if let Some(f) = self.feeds.get_mut(topic) {
            f.attaches += 1;
            return Ok(match f.state {
                State::Live => Outcome::Done(Position {
                    epoch: f.epoch.clone(),
                    seq: f.last,
                }),
                // A failed attach starts again.
                State::Subscribing { gen: 0 } => {
                    self.next_gen += 1;
                    let gen = self.next_gen;
                    f.state = State::Subscribing { gen };
                    let topic = topic.to_string();
                    self.subscriber(SubCommand::Subscribe { topic, gen });
                    Outcome::Pending
                }
                _ => Outcome::Pending,
            });
        }
        if !self.ready() {
            return Err(Self::unavailable());
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        let age = self.cfg.history_age.as_millis() as u64;
        self.feeds
            .insert(topic.to_string(), Feed::new(gen, self.cfg.history_len, age));
        let topic = topic.to_string();
        self.subscriber(SubCommand::Subscribe { topic, gen });
        Ok(Outcome::Pending)
    }

    fn detach(&mut self, topic: &str) {
        let Some(f) = self.feeds.get_mut(topic) else {
            return;
        };
        f.attaches = f.attaches.saturating_sub(1);
        if f.attaches == 0 {
            self.feeds.remove(topic);
            self.in_flight.retain(|_, p| p.topic != topic || !p.acked);
            let topic = topic.to_string();
            self.subscriber(SubCommand::Unsubscribe { topic });
        }
    }

    fn history(&mut self, topic: &str, after: u64, max: usize, now_ms: u64) -> (Vec<Stored>, bool) {
        self.now_ms = now_ms;
        let Some(f) = self.feeds.get_mut(topic) else {
            return (Vec::new(), false);
        };
        if f.state != State::Live {
            return (Vec::new(), false);
        }
        f.cache.trim(now_ms);
        // Complete if the copy reaches back to `after` (or nothing is owed).
        let complete = after >= f.last || f.cache.first_seq().is_some_and(|s| s <= after + 1);
        (f.cache.after(after, max), complete)
    }

    fn fetch(
        &mut self,
        topic: &str,
        after: u64,
        op: OpId,
    ) -> Result<Outcome<Fetched>, EngineError> {
        let c = Command::Fetch {
            topic: topic.to_string(),
            after,
            purpose: FetchFor::Resume(op),
        };
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    fn join(&mut self, topic: &str, user: &str) -> Option<u64> {
        *self
            .members
            .entry((topic.to_string(), user.to_string()))
            .or_insert(0) += 1;
        self.command(Command::Presence {
            topic: topic.to_string(),
            user: user.to_string(),
            delta: 1,
        });
        None
    }

    fn leave(&mut self, topic: &str, user: &str) -> Option<u64> {
        let key = (topic.to_string(), user.to_string());
        match self.members.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.members.remove(&key);
            }
            None => return None,
        }
        self.command(Command::Presence {
            topic: key.0,
            user: key.1,
            delta: -1,
        });
        None
    }

    fn members(
        &mut self,
        topic: &str,
        page: &Page,
        op: OpId,
    ) -> Result<Outcome<Members>, EngineError> {
        let c = Command::Members {
            op,
            topic: topic.to_string(),
            after: page.cursor.clone().unwrap_or_default(),
            limit: page.limit.max(1),
        };
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    /// Coalesced: the newest position per user and topic goes to Redis
    /// with the next batch (one batch in flight at a time), so a client
    /// acking every delivery costs about one write per round trip.
    fn ack(
        &mut self,
        user: &str,
        topic: &str,
        seq: u64,
        claimed: Option<&str>,
        now_ms: u64,
    ) -> Result<(), AckError> {
        self.now_ms = now_ms;
        let f = self.feeds.get(topic).filter(|f| f.state == State::Live);
        let f = f.ok_or(AckError::Unknown)?;
        check_ack(&f.epoch, f.last, seq, claimed)?;
        let epoch = f.epoch.as_str();
        let topics = match self.acks.get_mut(user) {
            Some(t) => t,
            None => self.acks.entry(user.to_string()).or_default(),
        };
        match topics.get_mut(topic) {
            Some(p) if p.epoch == epoch && p.seq >= seq => {}
            Some(p) if p.epoch == epoch => p.seq = seq,
            Some(p) => {
                p.epoch = epoch.to_string();
                p.seq = seq;
            }
            None => {
                let p = Position {
                    epoch: epoch.to_string(),
                    seq,
                };
                topics.insert(topic.to_string(), p);
            }
        }
        self.send_acks();
        Ok(())
    }

    fn acked(
        &mut self,
        user: &str,
        topic: &str,
        op: OpId,
        now_ms: u64,
    ) -> Result<Outcome<Option<Position>>, EngineError> {
        self.now_ms = now_ms;
        // Not sent yet: this node knows the newest.
        if let Some(p) = self.acks.get(user).and_then(|t| t.get(topic)) {
            return Ok(Outcome::Done(Some(p.clone())));
        }
        let c = Command::Acked {
            op,
            user: user.to_string(),
            topic: topic.to_string(),
        };
        // Queued behind any ack batch on its way: Redis answers after it.
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    fn poll(&mut self) -> Option<EngineEvent> {
        if self.events.is_empty() {
            self.refill();
        }
        self.events.pop_front()
    }

    /// Sessions and idempotency keys are kept in Redis, not counted here.
    fn stats(&self) -> EngineStats {
        EngineStats {
            topics: self.feeds.len() as u64,
            history_bytes: self.feeds.values().map(|f| f.cache.bytes() as u64).sum(),
            ..EngineStats::default()
        }
    }

    fn render_metrics(&self, out: &mut String) {
        self.stats.render(self.ready(), out);
    }
}

impl Drop for RedisEngine {
    /// Leave the cluster: the command thread runs what is queued (the
    /// leaves of the connections that closed in the shutdown), then the
    /// goodbye script. Bounded by the Redis timeout.
    fn drop(&mut self) {
        let _ = self.subscriptions.send(SubCommand::Stop);
        let _ = self.commands.send(Command::Stop);
        let _ = self.keys.prefix();
        let deadline = Instant::now() + self.cfg.timeout + Duration::from_secs(1);
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// A URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Wall-clock ms since the Unix epoch.
fn wall_ms() -> u64 {
    crate::pubsub::hub::wall_ms()
}

/// Exponential backoff with full jitter between reconnects: 100 ms,
/// doubling, at most 5 s, each wait a random part of that. A connection
/// that lasted [`Backoff::STABLE`] starts it over.
#[derive(Debug)]
struct Backoff {
    n: u32,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);
    const STABLE: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Backoff { n: 0 }
    }

    /// The next wait.
    fn next(&mut self) -> Duration {
        let ceiling = Self::BASE
            .saturating_mul(1u32 << self.n.min(16))
            .min(Self::CAP);
        self.n = self.n.saturating_add(1);
        let mut r = [0u8; 4];
        let _ = getrandom::getrandom(&mut r);
        let frac = f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX);
        // Full jitter, but never a busy loop.
        ceiling.mul_f64(frac).max(Duration::from_millis(10))
    }

    /// A connection made at `since` ended: start over if it was stable.
    fn ended(&mut self, since: Instant) {
        if since.elapsed() >= Self::STABLE {
            self.n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        for _ in 0..40 {
            let d = b.next();
            assert!(d >= Duration::from_millis(10) && d <= Backoff::CAP, "{d:?}");
        }
        b.ended(Instant::now());
        assert!(b.n > 0, "a short connection does not reset it");
        b.ended(Instant::now() - Backoff::STABLE);
        assert_eq!(b.n, 0);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://…@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
