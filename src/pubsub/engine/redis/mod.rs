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
//! The hub's calls (the `Engine` trait): `seam.rs`; settings: `config.rs`;
//! keys and message formats: `wire.rs`. Operator's guide: `docs/CLUSTER.md`.

mod commands;
mod config;
mod feed;
mod scripts;
mod seam;
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
pub use self::config::RedisConfig;
use self::feed::{Action, Arrival, Feed, State};
use self::stats::Stats;
use self::subscriber::{SubCommand, SubEvent};
use self::wire::Keys;
use super::{Engine, EngineError, EngineEvent, Fetched, Members, OpId, Position, Receipt};
use crate::pubsub::history::Stored;
use crate::reactor::{ConnId, Frame, Handle};

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

/// The wait between reconnects to Redis: the hub client's backoff (full
/// jitter, started over only after a connection that lasted
/// [`Backoff::STABLE`]) from 100 ms up to 5 s, never under 10 ms.
#[derive(Debug, Default)]
struct Backoff {
    run: crate::pubsub::hub_client::backoff::Backoff,
    rng: crate::pubsub::hub_client::OsRandom,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);
    const STABLE: Duration = Duration::from_secs(10);
    /// Never a busy loop, whatever the jitter draws.
    const FLOOR: Duration = Duration::from_millis(10);

    fn new() -> Self {
        Backoff::default()
    }

    /// The next wait.
    fn next(&mut self) -> Duration {
        let (_, wait) = self.run.next(Self::BASE, Self::CAP, &mut self.rng);
        wait.max(Self::FLOOR)
    }

    /// A connection made at `since` ended: start over if it was stable.
    fn ended(&mut self, since: Instant) {
        self.run.connection_ended(since.elapsed(), Self::STABLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_between_its_floor_and_cap_and_starts_over_when_stable() {
        let mut b = Backoff::new();
        for _ in 0..40 {
            let d = b.next();
            assert!(d >= Backoff::FLOOR && d <= Backoff::CAP, "{d:?}");
        }
        // A stable connection starts it over: the next wait is at most BASE.
        b.ended(Instant::now() - Backoff::STABLE);
        for _ in 0..20 {
            assert!(b.next() <= Backoff::BASE.max(Backoff::FLOOR));
            b.ended(Instant::now() - Backoff::STABLE);
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://…@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
