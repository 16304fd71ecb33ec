//! Redelivery (`--redeliver-after`, off by default): deliveries a
//! connection has not acknowledged a deadline after they were outstanding
//! are sent to it again, from history, on the same connection.
//!
//! Only topics a connection acknowledges are watched (its first `ack` of
//! a topic opts it in), so fan-out costs nothing more. A timer looks at
//! them every quarter of the deadline: when the topic has deliveries past
//! the connection's acknowledged seq, they are marked with the time; if the
//! ack has not passed the mark a deadline later, everything after the ack
//! is replayed (as a resume replay, paced by the connection's queue, live
//! deliveries after it). At most `redeliver_attempts` times for one mark,
//! then the connection is left alone until its ack moves.
//!
//! The trade-off: a slow client gets duplicates, which it must drop by
//! `seq` (deliveries of one topic are numbered, so that is one comparison);
//! in return a client that lost a message on the way into its processing
//! (a crashed worker, a dropped callback) gets it again without
//! reconnecting. Message brokers with manual acknowledgement do the same.

use std::time::Duration;

use super::hub::{Hub, TIMER_REDELIVER};
use super::missed::CatchUp;
use crate::reactor::{ConnId, Ctx};

/// Own `exclude_self` publishes remembered per watched topic (never sent
/// to the connection, so never owed to it).
const MAX_OWN: usize = 16;

/// One watched (connection, topic).
#[derive(Debug)]
pub(super) struct Watch {
    pub topic: String,
    /// The connection's acknowledged seq.
    acked: u64,
    /// Deliveries up to this seq were outstanding at `since` (loop ms).
    mark: Option<(u64, u64)>,
    /// Redeliveries made for the current mark.
    attempts: u32,
    /// Own `exclude_self` publishes after `acked`.
    own: Vec<u64>,
}

impl Watch {
    /// Skip the connection's own publishes right after its ack.
    fn settle_own(&mut self) {
        self.own.retain(|&s| s > self.acked);
        while let Some(i) = self.own.iter().position(|&s| s == self.acked + 1) {
            self.acked += 1;
            self.own.swap_remove(i);
        }
    }
}

/// What the timer decided for one watch.
enum Due {
    Nothing,
    Redeliver { after: u64 },
}

impl Hub {
    /// `id` acknowledged `topic` up to `seq`: watch it (first ack) or move
    /// its position.
    pub(super) fn watch_ack(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str, seq: u64) {
        if self.config.redeliver_after.is_none() {
            return;
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        match c.watches.iter_mut().find(|w| w.topic == topic) {
            Some(w) => {
                if seq > w.acked {
                    w.acked = seq;
                    w.attempts = 0;
                    w.settle_own();
                }
            }
            None => c.watches.push(Watch {
                topic: topic.to_string(),
                acked: seq,
                mark: None,
                attempts: 0,
                own: Vec::new(),
            }),
        }
        if !c.watched {
            c.watched = true;
            self.watched.push(id);
        }
        self.arm_redeliver(ctx);
    }

    /// `id` published `seq` on `topic` with `exclude_self`: not owed to it.
    pub(super) fn watch_own(&mut self, id: ConnId, topic: &str, seq: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(w) = c.watches.iter_mut().find(|w| w.topic == topic) {
            if w.own.len() < MAX_OWN {
                w.own.push(seq);
                w.settle_own();
            }
        }
    }

    fn arm_redeliver(&mut self, ctx: &mut Ctx<'_>) {
        let Some(after) = self.config.redeliver_after else {
            return;
        };
        if !self.redeliver_armed {
            let every = (after / 4).max(Duration::from_millis(10));
            self.redeliver_armed = ctx.set_timer(every, TIMER_REDELIVER).is_ok();
        }
    }

    /// The redelivery timer: look at every watched topic.
    pub(super) fn redeliver_tick(&mut self, ctx: &mut Ctx<'_>) {
        self.redeliver_armed = false;
        let ids = std::mem::take(&mut self.watched);
        for id in ids {
            let Some(c) = self.clients.get(&id) else {
                continue; // closed
            };
            let topics: Vec<String> = c.watches.iter().map(|w| w.topic.clone()).collect();
            for topic in topics {
                if let Due::Redeliver { after } = self.check_watch(ctx, id, &topic) {
                    self.redeliver(ctx, id, &topic, after);
                }
            }
            if let Some(c) = self.clients.get_mut(&id) {
                c.watched = !c.watches.is_empty();
                if c.watched {
                    self.watched.push(id);
                }
            }
        }
        if !self.watched.is_empty() {
            self.arm_redeliver(ctx);
        }
    }

    fn check_watch(&mut self, ctx: &Ctx<'_>, id: ConnId, topic: &str) -> Due {
        let now = ctx.now_ms();
        let deadline = self
            .config
            .redeliver_after
            .map_or(u64::MAX, |d| d.as_millis() as u64);
        let max_attempts = self.config.redeliver_attempts;
        let head = self.engine.head(topic).map(|(_, seq)| seq);
        let Some(c) = self.clients.get_mut(&id) else {
            return Due::Nothing;
        };
        let replaying = c.catch_up.iter().any(|cu| cu.topic == topic);
        let Some(w) = c.watches.iter_mut().find(|w| w.topic == topic) else {
            return Due::Nothing;
        };
        let Some(head) = head.filter(|&h| h > w.acked) else {
            w.mark = None;
            return Due::Nothing;
        };
        match w.mark {
            // Acked past the mark, or nothing marked yet: mark what is
            // outstanding now.
            Some((m, _)) if w.acked >= m => w.mark = Some((head, now)),
            None => w.mark = Some((head, now)),
            Some((_, since)) if now.saturating_sub(since) < deadline || replaying => {}
            Some(_) if w.attempts >= max_attempts => {}
            Some(_) => {
                w.attempts += 1;
                w.mark = Some((head, now));
                return Due::Redeliver { after: w.acked };
            }
        }
        Due::Nothing
    }

    /// Send `id` everything of `topic` after `after` again, as a replay.
    fn redeliver(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str, after: u64) {
        self.settle(ctx, topic);
        let head = self.engine.head(topic).map_or(after, |(_, seq)| seq);
        self.metrics.redeliveries += head.saturating_sub(after);
        let mut cu = CatchUp::new(topic, after + 1, Vec::new());
        if let Some(w) = self
            .clients
            .get(&id)
            .and_then(|c| c.watches.iter().find(|w| w.topic == topic))
        {
            cu.skip.extend_from_slice(&w.own);
        }
        let pending = self.replay(ctx, id, cu);
        self.set_catch_up(ctx, id, topic, pending);
    }
}

#[cfg(test)]
mod tests {
    use super::Watch;

    #[test]
    fn own_publishes_right_after_the_ack_count_as_acked() {
        let mut w = Watch {
            topic: "t".into(),
            acked: 4,
            mark: None,
            attempts: 0,
            own: vec![7, 5, 3],
        };
        w.settle_own();
        assert_eq!((w.acked, w.own.as_slice()), (5, &[7][..]));
        w.acked = 6;
        w.settle_own();
        assert_eq!((w.acked, w.own.len()), (7, 0));
    }
}
