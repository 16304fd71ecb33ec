//! A resume replay: the deliveries a client missed, sent out of history
//! and paced by its send queue. What does not fit now follows as the queue
//! drains (a `drain` event), before any live delivery of the topic: the
//! subscriber is *held* meanwhile, and live fan-out skips it.
//!
//! The replay takes deliveries first from what was fetched from the
//! engine's history (older than this node's copy; Redis engine), then from
//! the node's own copy ([`crate::pubsub::engine::Engine::history`]) until
//! it has caught up with the topic. Deliveries that left history before
//! their turn are reported as a `gap`.

use super::history::Stored;
use super::hub::Hub;
use super::missed::{lost_ranges, CatchUp, MAX_SKIP};
use super::protocol::Event;
use crate::reactor::{ConnId, Ctx, SendStatus};

/// Deliveries taken from the engine's copy per step of a replay.
const STEP: usize = 64;

impl Hub {
    /// Send `id` the deliveries of `cu.topic` from seq `cu.next` on until
    /// its queue passes the soft limit. Returns what is left (a drain
    /// event will continue it), or `None` once caught up.
    pub(super) fn replay(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        mut cu: CatchUp,
    ) -> Option<CatchUp> {
        let hard = ctx.config().max_queued_bytes;
        loop {
            // The topic's last seq: a replay that reaches it is done.
            let current = self.engine.position(&cu.topic).map_or(0, |p| p.seq);
            let step = self.next_step(ctx, &mut cu);
            let first = step.first().map_or(current + 1, |s| s.seq);
            if first > cu.next {
                if ctx.queued_bytes(id).unwrap_or(0) >= hard {
                    // Not even the gap event fits: wait for the drain.
                    ctx.want_drain(id);
                    return Some(cu);
                }
                // What left history before its turn, except the client's own
                // `exclude_self` publishes (never owed to it).
                let epoch = self
                    .engine
                    .topic_epoch(&cu.topic)
                    .unwrap_or_default()
                    .to_string();
                for (a, b) in lost_ranges(cu.next, first, &cu.skip) {
                    let ev = Event::Gap {
                        topic: &cu.topic,
                        from: a,
                        to: b,
                        epoch: &epoch,
                    };
                    self.send_event(ctx, id, &ev);
                }
                cu.next = first;
            }
            if step.is_empty() {
                return None; // caught up
            }
            // Sent straight out of history (the frames are shared, not
            // copied).
            for s in step {
                if s.seq < cu.next {
                    continue;
                }
                if cu.skip.contains(&s.seq) {
                    cu.next = s.seq + 1;
                    continue;
                }
                // Never push a full queue (its policy could close the client).
                if ctx.queued_bytes(id).unwrap_or(0) >= hard {
                    return self.later(ctx, id, cu);
                }
                let st = ctx.send_frame(id, &s.frame);
                self.metrics
                    .sent(st, s.frame.as_bytes().len(), || ctx.queued_bytes(id));
                match st {
                    SendStatus::Sent => cu.next = s.seq + 1,
                    SendStatus::Backpressured if s.seq >= current => return None,
                    SendStatus::Backpressured => {
                        cu.next = s.seq + 1;
                        return self.later(ctx, id, cu);
                    }
                    SendStatus::Dropped => return self.later(ctx, id, cu),
                    SendStatus::Closed => return None,
                }
            }
        }
    }

    /// The next deliveries to replay from `cu.next` on: what was fetched,
    /// then the engine's copy.
    fn next_step(&mut self, ctx: &Ctx<'_>, cu: &mut CatchUp) -> Vec<Stored> {
        while cu.fetched.front().is_some_and(|s| s.seq < cu.next) {
            cu.fetched.pop_front();
        }
        if !cu.fetched.is_empty() {
            let n = cu.fetched.len().min(STEP);
            return cu.fetched.drain(..n).collect();
        }
        let after = cu.next.saturating_sub(1);
        self.engine.history(&cu.topic, after, STEP, ctx.now_ms()).0
    }

    /// The replay stopped at a full queue: continue when it drains.
    fn later(&mut self, ctx: &mut Ctx<'_>, id: ConnId, mut cu: CatchUp) -> Option<CatchUp> {
        cu.skip.retain(|&s| s >= cu.next);
        ctx.want_drain(id);
        Some(cu)
    }

    /// Record where `id`'s replay of `topic` stands: live fan-out skips it
    /// while `pending` is set.
    pub(super) fn set_catch_up(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        topic: &str,
        pending: Option<CatchUp>,
    ) {
        self.settle(ctx, topic);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.catch_up.retain(|cu| cu.topic != topic);
        let Some(t) = self.local.get_mut(topic) else {
            return;
        };
        match pending {
            Some(cu) => {
                c.catch_up.push(cu);
                t.hold(id);
            }
            None => t.release(id),
        }
    }

    /// `id`, catching up on `topic`, published `seq` with `exclude_self`:
    /// its replay must not bring it back.
    pub(super) fn skip_in_replay(&mut self, id: ConnId, topic: &str, seq: u64) {
        self.watch_own(id, topic, seq);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(cu) = c.catch_up.iter_mut().find(|cu| cu.topic == topic) {
            if cu.skip.len() < MAX_SKIP {
                cu.skip.push(seq);
            }
        }
    }
}
