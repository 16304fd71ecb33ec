//! Presence events that scale: the joins and leaves of one loop turn go
//! out as one `presence_diff` per topic, and a topic with more than
//! `presence_events_max` members gets a `presence_count` instead, at most
//! once per second.
//!
//! Without this, each join is sent to every member: N members joining
//! one topic cost N² copies (5,000 members: 12.5 million). With it a turn
//! costs one message per subscriber at most, and a big topic one per
//! second. Pusher caps presence channels for the same reason.
//!
//! Changes are gathered while the loop reads ([`Hub::announce`]) and sent
//! from the hub's `wake`, which the reactor runs after the turn's reads
//! ([`Hub::flush_presence`]); throttled counts wait for a timer
//! ([`Hub::presence_tick`]).

use std::collections::HashMap;
use std::time::Duration;

use super::hub::{wall_ms, Hub, TIMER_PRESENCE};
use super::protocol::Event;
use crate::reactor::Ctx;

/// Least time between two `presence_count`s of one topic, ms.
pub const PRESENCE_COUNT_INTERVAL_MS: u64 = 1000;

/// The presence changes not yet sent, and the throttle of counts.
#[derive(Debug, Default)]
pub(super) struct PresenceFeed {
    /// Changes since the last flush, per topic.
    pending: HashMap<String, Diff>,
    /// Topics over the cap: when their count was last sent.
    counts: HashMap<String, Throttle>,
    /// A flush is owed (the loop was asked to call `wake`).
    armed: bool,
    /// Loop time of the [`Hub::presence_tick`] a timer is set for.
    tick_at: Option<u64>,
}

/// One topic's changes of the turn.
#[derive(Debug, Default)]
struct Diff {
    joins: Vec<String>,
    leaves: Vec<String>,
    /// Members after the latest change.
    count: u64,
    /// More changes than the cap: only the count goes out.
    overflow: bool,
}

/// A topic over the cap.
#[derive(Debug)]
struct Throttle {
    /// Loop time its count was last sent.
    sent_at: u64,
    /// The count sent then.
    sent: u64,
    /// The newest count.
    count: u64,
}

impl Diff {
    /// Add one change; a leave cancels a join of the same turn and the
    /// other way round (the members are then as they were).
    fn push(&mut self, user: &str, joined: bool, max: usize) {
        if self.overflow {
            return;
        }
        let (add, undo) = match joined {
            true => (&mut self.joins, &mut self.leaves),
            false => (&mut self.leaves, &mut self.joins),
        };
        match undo.iter().position(|u| u == user) {
            Some(i) => {
                undo.remove(i);
            }
            None => add.push(user.to_string()),
        }
        if self.joins.len() + self.leaves.len() > max {
            self.overflow = true;
            self.joins = Vec::new();
            self.leaves = Vec::new();
        }
    }
}

impl Hub {
    /// `user` joined or left `topic`, which has `count` members now: told
    /// to the topic's local subscribers at the end of the loop turn.
    pub(super) fn announce(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        user: &str,
        joined: bool,
        count: u64,
    ) {
        // Inboxes have one member; nobody is told about them.
        if topic.starts_with('@') || self.local.get(topic).is_none() {
            return;
        }
        let max = self.config.presence_events_max;
        let feed = &mut self.presence;
        let diff = match feed.pending.get_mut(topic) {
            Some(d) => d,
            None => feed.pending.entry(topic.to_string()).or_default(),
        };
        diff.count = count;
        diff.push(user, joined, max);
        if !feed.armed {
            feed.armed = true;
            ctx.wake();
        }
    }

    /// Send the turn's presence changes: a `presence_diff` per topic with
    /// at most `presence_events_max` members, a (throttled)
    /// `presence_count` for the others.
    pub(super) fn flush_presence(&mut self, ctx: &mut Ctx<'_>) {
        if !self.presence.armed {
            return;
        }
        self.presence.armed = false;
        let pending = std::mem::take(&mut self.presence.pending);
        let now = ctx.now_ms();
        let max = self.config.presence_events_max as u64;
        for (topic, d) in pending {
            if d.count <= max && !d.overflow {
                self.presence.counts.remove(&topic);
                if d.joins.is_empty() && d.leaves.is_empty() {
                    continue;
                }
                self.metrics.presence_diffs += 1;
                let ev = Event::PresenceDiff {
                    topic: &topic,
                    joins: &d.joins,
                    leaves: &d.leaves,
                    count: d.count,
                    ts: wall_ms(),
                };
                self.notify(ctx, &topic, &ev.encode());
            } else {
                self.count_changed(ctx, topic, d.count, now);
            }
        }
    }

    /// `topic` is over the cap (or had more changes in one turn than the
    /// cap) and has `count` members: send the count now if its last one
    /// is a second old, else when [`Hub::presence_tick`] comes.
    fn count_changed(&mut self, ctx: &mut Ctx<'_>, topic: String, count: u64, now: u64) {
        let t = self
            .presence
            .counts
            .entry(topic.clone())
            .or_insert(Throttle {
                sent_at: 0,
                sent: u64::MAX,
                count,
            });
        t.count = count;
        let due = t.sent_at.saturating_add(PRESENCE_COUNT_INTERVAL_MS);
        if t.sent_at == 0 || now >= due {
            t.sent_at = now.max(1);
            t.sent = count;
            self.send_count(ctx, &topic, count);
        } else {
            self.tick_by(ctx, due, now);
        }
    }

    /// Have [`Hub::presence_tick`] run by loop time `at` (one timer: a new
    /// one only if it must come sooner).
    fn tick_by(&mut self, ctx: &mut Ctx<'_>, at: u64, now: u64) {
        if self.presence.tick_at.is_some_and(|t| t <= at) {
            return;
        }
        self.presence.tick_at = Some(at);
        let after = Duration::from_millis(at.saturating_sub(now));
        if ctx.set_timer(after, TIMER_PRESENCE).is_err() {
            // No timer left: the next flush or tick sends it.
            self.presence.tick_at = None;
        }
    }

    fn send_count(&mut self, ctx: &mut Ctx<'_>, topic: &str, count: u64) {
        self.metrics.presence_counts += 1;
        let ev = Event::PresenceCount {
            topic,
            count,
            ts: wall_ms(),
        };
        self.notify(ctx, topic, &ev.encode());
    }

    /// The throttled counts that are due, and the topics over the cap that
    /// no local subscriber is left to hear about.
    pub(super) fn presence_tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_ms();
        self.presence.tick_at = None;
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        let local = &self.local;
        self.presence.counts.retain(|topic, t| {
            if local.get(topic).is_none() {
                return false;
            }
            if t.count != t.sent {
                let at = t.sent_at + PRESENCE_COUNT_INTERVAL_MS;
                if now >= at {
                    t.sent_at = now;
                    t.sent = t.count;
                    due.push((topic.clone(), t.count));
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            true
        });
        for (topic, count) in due {
            self.send_count(ctx, &topic, count);
        }
        if let Some(at) = next {
            self.tick_by(ctx, at, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Diff;

    #[test]
    fn a_turn_nets_out_and_overflows_past_the_cap() {
        let mut d = Diff::default();
        d.push("a", true, 3);
        d.push("b", true, 3);
        d.push("a", false, 3);
        assert_eq!(
            (d.joins.as_slice(), d.leaves.len()),
            (&["b".to_string()][..], 0)
        );
        d.push("c", false, 3);
        d.push("c", true, 3);
        assert_eq!(d.joins, ["b"]);
        assert!(d.leaves.is_empty());
        for u in ["x", "y", "z"] {
            d.push(u, true, 3);
        }
        assert!(d.overflow);
        assert!(d.joins.is_empty() && d.leaves.is_empty());
        d.push("w", true, 3);
        assert!(d.joins.is_empty());
    }
}
