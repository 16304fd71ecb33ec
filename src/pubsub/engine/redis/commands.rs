//! The command thread: one connection to Redis, every operation the loop
//! queued meanwhile sent as one pipeline (one round trip for all the
//! publishes of a burst), replies mapped back and handed to the loop.
//!
//! It reconnects with exponential backoff and full jitter. While it is
//! cut off, queued operations fail at once (`unavailable`); those sent in
//! a pipeline that failed may have run (`maybe_stored`). Every
//! `heartbeat` it keeps this node listed and clears what dead nodes left
//! (see `scripts.rs`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Cmd, Connection, Value};

use super::scripts::Scripts;
use super::stats::Stats;
use super::wire::Keys;
use crate::pubsub::engine::{EngineError, OpId};

mod replies;
use replies::{position_reply_rev, reply};

/// Operations sent per pipeline at most.
const MAX_BATCH: usize = 1024;

/// What the loop asks of Redis.
#[derive(Debug)]
pub(super) enum Command {
    /// Run the publish script (`n`: this instance's publish number), with
    /// the publisher's idempotency key `(user, key)` if it has one.
    Publish {
        n: u64,
        topic: String,
        tag: String,
        head: Vec<u8>,
        tail: Vec<u8>,
        idempotency: Option<(String, String)>,
    },
    /// Store acknowledged positions: (user, topic, epoch, seq) each.
    Acks(Vec<(String, String, String, u64)>),
    /// A user's acknowledged position in a topic, for lookup `op`.
    Acked {
        op: OpId,
        user: String,
        topic: String,
    },
    /// Read (or create) a topic's position, for attach number `gen`.
    Attach { topic: String, gen: u64 },
    /// History after `after`, for a fill or a resume.
    Fetch {
        topic: String,
        after: u64,
        purpose: FetchFor,
    },
    /// A connection of `user` subscribed to or left `topic` (`delta`
    /// connections; more than one when presence is added again).
    Presence {
        topic: String,
        user: String,
        delta: i64,
    },
    /// One page of a topic's members, for `presence` request `op`: up to
    /// `limit` names after `after` (empty: from the first).
    Members {
        op: OpId,
        topic: String,
        after: String,
        limit: usize,
    },
    /// Wake the subscriber thread (it waits on its connection).
    WakeSubscriber,
    /// Leave the cluster and end the thread.
    Stop,
}

/// Why history is fetched.
#[derive(Debug, Clone, Copy)]
pub(super) enum FetchFor {
    /// To fill a hole in a feed.
    Fill,
    /// For a resume (the hub's operation `op`).
    Resume(OpId),
}

/// Where the publish script stored a publish.
#[derive(Debug)]
pub(super) struct Published {
    pub seq: u64,
    pub epoch: String,
    /// A retry of an earlier publish (same idempotency key).
    pub duplicate: bool,
    /// The original's topic (for a duplicate).
    pub topic: String,
}

/// One history entry as Redis returns it.
#[derive(Debug)]
pub(super) struct Entry {
    pub seq: u64,
    pub ts: u64,
    pub text: Vec<u8>,
    pub tag: String,
}

/// What the thread reports.
#[derive(Debug)]
pub(super) enum Reply {
    Published {
        n: u64,
        result: Result<Published, EngineError>,
    },
    /// A batch of acks was stored; `refused` of them were over the
    /// per-user limit.
    AcksDone { refused: usize },
    Acked {
        op: OpId,
        topic: String,
        result: Result<Option<(String, u64)>, EngineError>,
    },
    Attached {
        topic: String,
        gen: u64,
        result: Result<(String, u64), EngineError>,
    },
    Fetched {
        topic: String,
        after: u64,
        purpose: FetchFor,
        result: Result<(String, u64, Vec<Entry>), EngineError>,
    },
    Members {
        op: OpId,
        topic: String,
        /// The page asked for.
        limit: usize,
        /// The member count and up to `limit + 1` names.
        result: Result<(u64, Vec<String>), EngineError>,
    },
    /// The connection is up (after connecting) or down.
    Connected(bool),
    /// Other nodes took this one for dead and removed its members: add
    /// them again.
    Rejoin,
}

/// What the thread needs.
pub(super) struct Setup {
    pub client: redis::Client,
    pub keys: Keys,
    pub instance: String,
    pub history_len: usize,
    pub history_age_ms: u64,
    pub meta_ttl_ms: u64,
    pub session_ttl_ms: u64,
    pub max_positions_per_user: usize,
    pub idempotency_window_ms: u64,
    pub node_ttl: Duration,
    pub timeout: Duration,
    pub stats: Arc<Stats>,
    /// Tells the loop that replies wait.
    pub wake: Box<dyn Fn() + Send>,
}

/// Run the command thread until `Stop` (or the loop is gone).
pub(super) fn run(s: Setup, rx: Receiver<Command>, tx: Sender<Reply>) {
    let mut t = Thread {
        scripts: Scripts::new(),
        con: None,
        backoff: super::Backoff::new(),
        next_heartbeat: Instant::now(),
        epochs: EpochSource::new(),
        listed: false,
        since: Instant::now(),
        s,
        rx,
        tx,
    };
    while t.turn() {}
}

/// The command thread's state.
struct Thread {
    s: Setup,
    rx: Receiver<Command>,
    tx: Sender<Reply>,
    scripts: Scripts,
    con: Option<Connection>,
    backoff: super::Backoff,
    next_heartbeat: Instant,
    epochs: EpochSource,
    /// This process has been listed once: from then on a heartbeat that
    /// finds it missing means Redis lost it, or the others took it for
    /// dead.
    listed: bool,
    /// When the connection was made.
    since: Instant,
}

impl Thread {
    /// One pipeline (or one connection attempt); false ends the thread.
    fn turn(&mut self) -> bool {
        if self.con.is_none() {
            return self.connect();
        }
        let Some(batch) = self.next_batch() else {
            return false;
        };
        let stop = batch.iter().any(|c| matches!(c, Command::Stop));
        let heartbeat = Instant::now() >= self.next_heartbeat;
        if heartbeat {
            self.next_heartbeat = Instant::now() + self.s.node_ttl / 3;
        }
        self.s
            .stats
            .pending
            .fetch_sub(batch.len() as i64, Ordering::Relaxed);
        let Some(c) = self.con.as_mut() else {
            return true;
        };
        let done = round_trip(
            c,
            &self.s,
            &self.scripts,
            &mut self.epochs,
            batch,
            heartbeat,
            stop,
        );
        let alive = match done {
            Ok(replies) => self.hand_over(replies),
            Err((e, replies)) => {
                log::warn!("redis: {e}; reconnecting");
                self.s.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                self.con = None;
                // Only a connection that lasted resets the backoff.
                self.backoff.ended(self.since);
                self.hand_over(replies) && self.send(Reply::Connected(false))
            }
        };
        alive && !stop
    }

    /// Connect; if that fails, fail what is asked meanwhile (nothing was
    /// sent) until it is time to try again. False ends the thread.
    fn connect(&mut self) -> bool {
        match connect(&self.s, &self.scripts) {
            Ok(c) => {
                self.con = Some(c);
                self.since = Instant::now();
                self.next_heartbeat = Instant::now();
                self.send(Reply::Connected(true))
            }
            Err(e) => {
                log::warn!("redis: {e}; retrying");
                self.s.stats.errors.io.fetch_add(1, Ordering::Relaxed);
                let until = Instant::now() + self.backoff.next();
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
                        Ok(c) => {
                            if let Some(r) = failure(c, false, &self.s.stats) {
                                self.send(r);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => return true,
                    }
                }
            }
        }
    }

    /// What waits, up to [`MAX_BATCH`] (waiting until the next heartbeat
    /// for the first); `None` once the loop is gone.
    fn next_batch(&mut self) -> Option<Vec<Command>> {
        let wait = self
            .next_heartbeat
            .saturating_duration_since(Instant::now());
        let mut batch = Vec::new();
        match self.rx.recv_timeout(wait) {
            Ok(cmd) => batch.push(cmd),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Hand the replies to the loop; false if it is gone.
    fn hand_over(&mut self, replies: Vec<Reply>) -> bool {
        for r in replies {
            if let Reply::Rejoin = r {
                if !std::mem::replace(&mut self.listed, true) {
                    continue; // the first heartbeat lists it
                }
                log::warn!(
                    "redis: this node ({}) was not listed (Redis lost it, or the others took it for dead); adding its members again",
                    self.s.instance
                );
            }
            if !self.send(r) {
                return false;
            }
        }
        true
    }

    fn send(&self, r: Reply) -> bool {
        let ok = self.tx.send(r).is_ok();
        (self.s.wake)();
        ok
    }
}

/// Connect, load the scripts, set the timeouts.
fn connect(s: &Setup, scripts: &Scripts) -> redis::RedisResult<Connection> {
    let mut c = s.client.get_connection_with_timeout(s.timeout)?;
    c.set_read_timeout(Some(s.timeout))?;
    c.set_write_timeout(Some(s.timeout))?;
    for script in scripts.all() {
        script.load(&mut c)?;
    }
    Ok(c)
}

/// The answer `unavailable` to `c` (it was not sent, or its pipeline
/// failed: `maybe_stored`), if it expects an answer.
fn failure(c: Command, maybe_stored: bool, stats: &Stats) -> Option<Reply> {
    let e = EngineError::Unavailable { maybe_stored };
    let r = match c {
        Command::Publish { n, .. } => Reply::Published { n, result: Err(e) },
        Command::Attach { topic, gen } => Reply::Attached {
            topic,
            gen,
            result: Err(e),
        },
        Command::Fetch {
            topic,
            after,
            purpose,
        } => Reply::Fetched {
            topic,
            after,
            purpose,
            result: Err(e),
        },
        Command::Members {
            op, topic, limit, ..
        } => Reply::Members {
            op,
            topic,
            limit,
            result: Err(e),
        },
        Command::Acked { op, topic, .. } => Reply::Acked {
            op,
            topic,
            result: Err(e),
        },
        // The positions are lost with the connection; the next acks store
        // newer ones (they are cumulative).
        Command::Acks(acks) => Reply::AcksDone {
            refused: acks.len(),
        },
        Command::Presence { .. } | Command::WakeSubscriber | Command::Stop => return None,
    };
    stats.errors.unavailable.fetch_add(1, Ordering::Relaxed);
    Some(r)
}

/// Epochs for topics that start (or start over) in Redis: random per
/// thread, then counted, so two are never alike.
struct EpochSource {
    base: u64,
    n: u64,
}

impl EpochSource {
    fn new() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        EpochSource {
            base: u64::from_le_bytes(b),
            n: 0,
        }
    }

    fn next(&mut self) -> String {
        self.n += 1;
        // 48 bits, as the memory engine's (12 hex digits).
        format!(
            "{:012x}",
            (self.base ^ self.n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 16
        )
    }
}

/// An operation in the pipeline and what its reply answers.
enum Sent {
    Publish(u64),
    /// Publishes of one topic in one run, in seq order.
    PublishBatch(String, Vec<u64>),
    /// One ack of a batch; `last` ends the batch.
    Ack {
        last: bool,
    },
    Acked(OpId, String),
    Attach(String, u64),
    Fetch(String, u64, FetchFor),
    Presence,
    Members(OpId, String, usize),
    Wake,
    Heartbeat,
    Goodbye,
}

/// One pipeline: build it, send it, map the replies. On a connection
/// error, the replies are the failures of everything in it.
#[allow(clippy::too_many_arguments)]
fn round_trip(
    con: &mut Connection,
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
    batch: Vec<Command>,
    heartbeat: bool,
    stop: bool,
) -> Result<Vec<Reply>, (redis::RedisError, Vec<Reply>)> {
    let (pipe, sent) = pipeline(s, scripts, epochs, &batch, heartbeat, stop);
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let bytes = pipe.get_packed_pipeline();
    use redis::ConnectionLike;
    let values = match con.req_packed_commands(&bytes, 0, sent.len()) {
        Ok(v) => v,
        Err(e) => {
            s.stats.errors.io.fetch_add(1, Ordering::Relaxed);
            let replies = batch
                .into_iter()
                .filter_map(|c| failure(c, true, &s.stats))
                .collect();
            return Err((e, replies));
        }
    };
    s.stats.round_trip(started.elapsed(), sent.len());
    Ok(map_replies(s, sent, values))
}

/// The pipeline for `batch` (publishes of one topic grouped, see
/// [`publish_group`]), with the heartbeat and the goodbye when due, and
/// what each command's reply answers.
fn pipeline(
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
    batch: &[Command],
    heartbeat: bool,
    stop: bool,
) -> (redis::Pipeline, Vec<Sent>) {
    let mut pipe = redis::pipe();
    let mut sent = Vec::with_capacity(batch.len() + 1);
    let mut i = 0;
    while i < batch.len() {
        let group = publish_group(&batch[i..]);
        if group > 1 {
            let (cmd, what) = publish_batch(&batch[i..i + group], s, scripts, epochs);
            pipe.add_command(cmd);
            sent.push(what);
        } else {
            for (cmd, what) in commands(&batch[i], s, scripts, epochs) {
                pipe.add_command(cmd);
                sent.push(what);
            }
        }
        i += group.max(1);
    }
    if heartbeat {
        let hb = evalsha(&scripts.heartbeat, &[s.keys.nodes()])
            .arg(&s.instance)
            .arg(s.node_ttl.as_millis() as u64)
            .arg(s.keys.prefix())
            .arg(1000)
            .arg(super::wall_ms())
            .to_owned();
        pipe.add_command(hb);
        sent.push(Sent::Heartbeat);
    }
    if stop {
        let bye = evalsha(&scripts.goodbye, &[s.keys.nodes()])
            .arg(&s.instance)
            .arg(s.keys.prefix())
            .arg(super::wall_ms())
            .to_owned();
        pipe.add_command(bye);
        sent.push(Sent::Goodbye);
    }
    (pipe, sent)
}

/// The replies `values` of the pipeline `sent` described.
fn map_replies(s: &Setup, sent: Vec<Sent>, values: Vec<Value>) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(values.len());
    let mut refused = 0;
    for (what, v) in sent.into_iter().zip(values) {
        if let Value::ServerError(e) = &v {
            s.stats.errors.server.fetch_add(1, Ordering::Relaxed);
            match what {
                // Without them dead nodes are never cleared.
                Sent::Heartbeat | Sent::Goodbye => log::error!("redis: membership script: {e:?}"),
                _ => log::warn!("redis: {e:?}"),
            }
        }
        match what {
            Sent::PublishBatch(topic, ns) => {
                let first = position_reply_rev(&v);
                for (i, n) in ns.into_iter().enumerate() {
                    let result = match &first {
                        Some((first, epoch)) => Ok(Published {
                            seq: first + i as u64,
                            epoch: epoch.clone(),
                            duplicate: false,
                            topic: topic.clone(),
                        }),
                        None => Err(EngineError::Unavailable { maybe_stored: true }),
                    };
                    replies.push(Reply::Published { n, result });
                }
            }
            Sent::Ack { last } => {
                refused += usize::from(!matches!(v, Value::Int(1)));
                if last {
                    replies.push(Reply::AcksDone { refused });
                    refused = 0;
                }
            }
            what => replies.extend(reply(what, v)),
        }
    }
    replies
}

/// `EVALSHA` of `script` with `keys` (arguments follow).
fn evalsha(script: &redis::Script, keys: &[String]) -> Cmd {
    let mut c = redis::cmd("EVALSHA");
    c.arg(script.get_hash()).arg(keys.len());
    for k in keys {
        c.arg(k);
    }
    c
}

/// Publishes sent as one `publish_batch` run at most, and their bytes.
const GROUP_MAX: usize = 64;
const GROUP_MAX_BYTES: usize = 256 * 1024;

/// How many commands at the front of `cs` are publishes of one topic
/// without an idempotency key (a keyed one runs alone: its check and its
/// receipt are per publish), within [`GROUP_MAX`] and
/// [`GROUP_MAX_BYTES`].
fn publish_group(cs: &[Command]) -> usize {
    let Some(Command::Publish {
        topic,
        idempotency: None,
        ..
    }) = cs.first()
    else {
        return 0;
    };
    let mut bytes = 0;
    cs.iter()
        .take(GROUP_MAX)
        .take_while(|c| match c {
            Command::Publish {
                topic: t,
                idempotency: None,
                head,
                tail,
                ..
            } if t == topic => {
                bytes += head.len() + tail.len();
                bytes <= GROUP_MAX_BYTES
            }
            _ => false,
        })
        .count()
}

/// One `publish_batch` run for the publishes `group` (see
/// [`publish_group`]).
fn publish_batch(
    group: &[Command],
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
) -> (Cmd, Sent) {
    let k = &s.keys;
    let Some(Command::Publish { topic, .. }) = group.first() else {
        unreachable!("publish_group counts publishes only")
    };
    let mut cmd = evalsha(&scripts.publish_batch, &[k.meta(topic), k.history(topic)]);
    cmd.arg(k.channel(topic))
        .arg(epochs.next())
        .arg(s.history_len)
        .arg(s.history_age_ms)
        .arg(s.meta_ttl_ms)
        .arg(group.len());
    let mut ns = Vec::with_capacity(group.len());
    for c in group {
        if let Command::Publish {
            n, tag, head, tail, ..
        } = c
        {
            cmd.arg(head.as_slice()).arg(tail.as_slice()).arg(tag);
            ns.push(*n);
        }
    }
    (cmd, Sent::PublishBatch(topic.clone(), ns))
}

/// The Redis commands for `c`.
fn commands(
    c: &Command,
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
) -> Vec<(Cmd, Sent)> {
    let k = &s.keys;
    if let Command::Acks(acks) = c {
        let n = acks.len();
        return acks
            .iter()
            .enumerate()
            .map(|(i, (user, topic, epoch, seq))| {
                let cmd = evalsha(&scripts.ack, &[k.session(user)])
                    .arg(topic)
                    .arg(epoch)
                    .arg(*seq)
                    .arg(s.session_ttl_ms)
                    .arg(s.max_positions_per_user)
                    .to_owned();
                (cmd, Sent::Ack { last: i + 1 == n })
            })
            .collect();
    }
    command(c, s, scripts, epochs).into_iter().collect()
}

/// The `publish` run for one publish `c` (a keyed one, or one alone).
fn publish_command(
    c: &Command,
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
) -> Option<(Cmd, Sent)> {
    let Command::Publish {
        n,
        topic,
        tag,
        head,
        tail,
        idempotency,
    } = c
    else {
        return None;
    };
    let k = &s.keys;
    let idem = match idempotency {
        Some((user, key)) => k.idempotency(user, key),
        None => k.idempotency("", ""),
    };
    let cmd = evalsha(&scripts.publish, &[k.meta(topic), k.history(topic), idem])
        .arg(k.channel(topic))
        .arg(epochs.next())
        .arg(head.as_slice())
        .arg(tail.as_slice())
        .arg(tag)
        .arg(s.history_len)
        .arg(s.history_age_ms)
        .arg(s.meta_ttl_ms)
        .arg(if idempotency.is_some() { "1" } else { "" })
        .arg(s.idempotency_window_ms)
        .arg(topic)
        .to_owned();
    Some((cmd, Sent::Publish(*n)))
}

/// The Redis command for `c` (one command).
fn command(
    c: &Command,
    s: &Setup,
    scripts: &Scripts,
    epochs: &mut EpochSource,
) -> Option<(Cmd, Sent)> {
    let k = &s.keys;
    Some(match c {
        Command::Publish { .. } => return publish_command(c, s, scripts, epochs),
        Command::Acked { op, user, topic } => {
            let cmd = redis::cmd("HGET")
                .arg(k.session(user))
                .arg(topic)
                .to_owned();
            (cmd, Sent::Acked(*op, topic.clone()))
        }
        Command::Acks(_) => return None,
        Command::Attach { topic, gen } => {
            let cmd = evalsha(&scripts.attach, &[k.meta(topic), k.history(topic)])
                .arg(epochs.next())
                .arg(s.meta_ttl_ms)
                .to_owned();
            (cmd, Sent::Attach(topic.clone(), *gen))
        }
        Command::Fetch {
            topic,
            after,
            purpose,
        } => {
            let cmd = evalsha(&scripts.fetch, &[k.meta(topic), k.history(topic)])
                .arg(*after)
                .arg(s.history_len.max(1))
                .arg(s.history_age_ms)
                .arg(epochs.next())
                .arg(s.meta_ttl_ms)
                .to_owned();
            (cmd, Sent::Fetch(topic.clone(), *after, *purpose))
        }
        Command::Presence { topic, user, delta } => {
            let cmd = evalsha(
                &scripts.presence,
                &[
                    k.members(topic),
                    k.node_members(&s.instance),
                    k.member_names(topic),
                ],
            )
            .arg(user)
            .arg(*delta)
            .arg(Keys::node_member_field(topic, user))
            .arg(k.channel(topic))
            .arg(super::wall_ms())
            .to_owned();
            (cmd, Sent::Presence)
        }
        Command::Members {
            op,
            topic,
            after,
            limit,
        } => {
            let cmd = evalsha(&scripts.members, &[k.member_names(topic)])
                .arg(after)
                .arg(*limit)
                .to_owned();
            (cmd, Sent::Members(*op, topic.clone(), *limit))
        }
        Command::WakeSubscriber => {
            let cmd = redis::cmd("PUBLISH")
                .arg(k.control(&s.instance))
                .arg("w")
                .to_owned();
            (cmd, Sent::Wake)
        }
        Command::Stop => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_differ() {
        let mut e = EpochSource::new();
        let (a, b) = (e.next(), e.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
    }
}
