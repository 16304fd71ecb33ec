//! The subscriber thread: one connection in Redis's subscribe mode,
//! listening on the channels of the topics this node has subscribers for
//! (and on its own control channel, which wakes it when the loop wants a
//! channel added or removed: it waits on the connection, up to
//! `POLL_EVERY`, otherwise).
//!
//! Each delivery is framed here, once, off the loop thread. The queue to
//! the loop is bounded: when the loop is behind, this thread waits, Redis
//! holds what follows in its output buffer for this client, and past
//! Redis's `client-output-buffer-limit` for pub/sub it drops the
//! connection — the engine then reconnects and fetches what it missed
//! from history. Nothing grows without bound here.
//!
//! After (re)connecting it subscribes to every channel it should be on and
//! says so; the engine then compares each topic with Redis
//! (`Feed::resync`), as anything published meanwhile was missed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use super::feed::Arrival;
use super::stats::Stats;
use super::wire::{ChannelMsg, Keys};
use crate::reactor::Frame;

/// Longest wait on the connection before the thread looks at its queue
/// anyway (the control channel normally wakes it at once).
const POLL_EVERY: Duration = Duration::from_millis(250);

/// What the loop asks of the thread.
#[derive(Debug)]
pub(super) enum SubCommand {
    /// Listen on `topic`'s channel (attach number `gen`).
    Subscribe { topic: String, gen: u64 },
    /// Stop listening on `topic`'s channel.
    Unsubscribe { topic: String },
    /// End the thread.
    Stop,
}

/// What the thread reports.
#[derive(Debug)]
pub(super) enum SubEvent {
    /// Listening on `topic`'s channel (attach number `gen`).
    Subscribed { topic: String, gen: u64 },
    /// A delivery on `topic`'s channel.
    Delivery { topic: String, arrival: Arrival },
    /// A presence change on `topic`'s channel.
    Presence {
        topic: String,
        user: String,
        joined: bool,
        /// Distinct members after the change.
        count: u64,
    },
    /// Connected and subscribed to everything again (`true`), or cut off.
    Up(bool),
}

/// What the thread needs.
pub(super) struct Setup {
    pub client: redis::Client,
    pub keys: Keys,
    pub instance: String,
    pub timeout: Duration,
    pub stats: Arc<Stats>,
    pub wake: Box<dyn Fn() + Send>,
}

/// Why the inner loop ended.
enum End {
    Stop,
    Reconnect(String),
}

/// Run the subscriber thread until `Stop` (or the loop is gone).
pub(super) fn run(s: Setup, rx: Receiver<SubCommand>, tx: SyncSender<SubEvent>) {
    // Channels to be on: topic → attach number.
    let mut wanted: HashMap<String, u64> = HashMap::new();
    let mut backoff = super::Backoff::new();
    let send = |e: SubEvent| {
        let ok = tx.send(e).is_ok();
        (s.wake)();
        ok
    };
    loop {
        // Take what was asked while cut off.
        loop {
            match rx.try_recv() {
                Ok(SubCommand::Subscribe { topic, gen }) => {
                    wanted.insert(topic, gen);
                }
                Ok(SubCommand::Unsubscribe { topic }) => {
                    wanted.remove(&topic);
                }
                Ok(SubCommand::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        let mut con = match s.client.get_connection_with_timeout(s.timeout) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("redis subscriber: {e}; retrying");
                std::thread::sleep(backoff.next());
                continue;
            }
        };
        let since = std::time::Instant::now();
        match listen(&s, &mut con, &rx, &mut wanted, &send) {
            End::Stop => return,
            End::Reconnect(e) => {
                log::warn!("redis subscriber: {e}; reconnecting");
                s.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if !send(SubEvent::Up(false)) {
                    return;
                }
                // Only a connection that lasted resets the backoff: a
                // server that accepts and drops at once is not hammered.
                backoff.ended(since);
                std::thread::sleep(backoff.next());
            }
        }
    }
}

/// Subscribe to everything wanted, then relay messages and apply the
/// loop's requests until the connection fails or `Stop`.
fn listen(
    s: &Setup,
    con: &mut redis::Connection,
    rx: &Receiver<SubCommand>,
    wanted: &mut HashMap<String, u64>,
    send: &impl Fn(SubEvent) -> bool,
) -> End {
    let mut ps = con.as_pubsub();
    if let Err(e) = ps.set_read_timeout(Some(POLL_EVERY)) {
        return End::Reconnect(e.to_string());
    }
    let mut channels: Vec<String> = wanted.keys().map(|t| s.keys.channel(t)).collect();
    channels.push(s.keys.control(&s.instance));
    if let Err(e) = ps.subscribe(channels) {
        return End::Reconnect(e.to_string());
    }
    for (topic, &gen) in wanted.iter() {
        let topic = topic.clone();
        if !send(SubEvent::Subscribed { topic, gen }) {
            return End::Stop;
        }
    }
    if !send(SubEvent::Up(true)) {
        return End::Stop;
    }
    loop {
        // The loop's requests first, in order.
        if let Some(end) = apply(s, &mut ps, rx, wanted, send) {
            return end;
        }
        let msg = match ps.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return End::Reconnect(e.to_string()),
        };
        let Some(topic) = s.keys.topic_of(msg.get_channel_name()) else {
            continue; // the control channel: just a wake-up
        };
        if !wanted.contains_key(topic) {
            continue; // left already
        }
        s.stats.messages.fetch_add(1, Ordering::Relaxed);
        if !relay(topic, msg.get_payload_bytes(), send) {
            return End::Stop;
        }
    }
}

/// Subscribe and unsubscribe as the loop asked; `Some` ends `listen`.
fn apply(
    s: &Setup,
    ps: &mut redis::PubSub<'_>,
    rx: &Receiver<SubCommand>,
    wanted: &mut HashMap<String, u64>,
    send: &impl Fn(SubEvent) -> bool,
) -> Option<End> {
    loop {
        match rx.try_recv() {
            Ok(SubCommand::Subscribe { topic, gen }) => {
                let done = ps.subscribe(s.keys.channel(&topic));
                wanted.insert(topic.clone(), gen);
                if let Err(e) = done {
                    return Some(End::Reconnect(e.to_string()));
                }
                if !send(SubEvent::Subscribed { topic, gen }) {
                    return Some(End::Stop);
                }
            }
            Ok(SubCommand::Unsubscribe { topic }) => {
                wanted.remove(&topic);
                if let Err(e) = ps.unsubscribe(s.keys.channel(&topic)) {
                    return Some(End::Reconnect(e.to_string()));
                }
            }
            Ok(SubCommand::Stop) | Err(TryRecvError::Disconnected) => return Some(End::Stop),
            Err(TryRecvError::Empty) => return None,
        }
    }
}

/// Hand the loop what a message on `topic`'s channel says (a delivery,
/// a batch of them, a presence change); false if the loop is gone.
fn relay(topic: &str, payload: &[u8], send: &impl Fn(SubEvent) -> bool) -> bool {
    let delivery = |seq, epoch, tag, text| {
        arrival(topic, seq, epoch, tag, text).map(|arrival| SubEvent::Delivery {
            topic: topic.to_string(),
            arrival,
        })
    };
    match ChannelMsg::parse(payload) {
        Some(ChannelMsg::Delivery {
            seq,
            epoch,
            tag,
            text,
        }) => delivery(seq, epoch, tag, text).is_none_or(&send),
        Some(ChannelMsg::Batch {
            first,
            epoch,
            entries,
        }) => entries
            .iter()
            .enumerate()
            .all(|(i, (tag, text))| delivery(first + i as u64, epoch, tag, text).is_none_or(&send)),
        Some(ChannelMsg::Presence {
            joined,
            user,
            count,
            ..
        }) => send(SubEvent::Presence {
            topic: topic.to_string(),
            user: user.to_string(),
            joined,
            count,
        }),
        None => true,
    }
}

/// A delivery framed once, here (a JSON text is UTF-8: anything else is
/// dropped, logged).
fn arrival(topic: &str, seq: u64, epoch: &str, tag: &str, text: &[u8]) -> Option<Arrival> {
    let Ok(text) = std::str::from_utf8(text) else {
        log::warn!("redis: delivery {seq} on {topic} is not UTF-8; dropped");
        return None;
    };
    Some(Arrival {
        seq,
        epoch: epoch.to_string(),
        frame: Frame::text(text),
        tag: tag.to_string(),
    })
}
