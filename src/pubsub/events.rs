//! What the engine reports, handled on the loop thread when it wakes the
//! hub: results the hub waited for (publishes, attaches, history, members)
//! and deliveries for local subscribers, whichever node took them.
//!
//! At most `EVENTS_PER_WAKE` per wake-up; if more wait, the hub asks the
//! loop for another wake-up after the other connections had their turn.
//! Consecutive deliveries of one topic are held and queued to each
//! subscriber in one piece, as for one read (see `fanout.rs`).

use super::engine::{EngineError, EngineEvent, Position, Receipt};
use super::hub::{Hub, Op, EVENTS_PER_WAKE};
use super::missed::record_gap;
use super::protocol::Event;
use crate::reactor::{ConnId, Ctx};

impl Hub {
    /// Handle what the engine has for us.
    pub(super) fn engine_events(&mut self, ctx: &mut Ctx<'_>) {
        if self.fanout_over() {
            // Deliveries wait in the engine until the queue is shorter
            // (the queue's own wake-up comes back here).
            return;
        }
        for _ in 0..EVENTS_PER_WAKE {
            let Some(ev) = self.engine.poll() else {
                self.release(ctx);
                return;
            };
            self.engine_event(ctx, ev);
        }
        self.release(ctx);
        // More may wait: after the others' turn.
        ctx.wake();
    }

    fn engine_event(&mut self, ctx: &mut Ctx<'_>, ev: EngineEvent) {
        match ev {
            EngineEvent::Deliver {
                topic,
                seq,
                frame,
                exclude,
            } => match exclude {
                None => self.fan_out_batched(ctx, &topic, seq, frame),
                Some(id) => {
                    self.fan_out(ctx, &topic, seq, &frame, Some(id));
                    self.skip_in_replay(id, &topic, seq);
                }
            },
            EngineEvent::Published { op, result } => self.published(ctx, op, result),
            EngineEvent::Acked { op, topic, result } => {
                if let Some(Op::Acked { conn }) = self.ops.remove(&op) {
                    self.acked_found(ctx, conn, &topic, op, result);
                }
            }
            EngineEvent::Attached { topic, result } => self.attached(ctx, &topic, result),
            EngineEvent::Fetched { op, topic, result } => {
                if let Some(Op::Fetch { conn }) = self.ops.remove(&op) {
                    self.fetched(ctx, conn, &topic, op, result);
                }
            }
            EngineEvent::Members { op, topic, result } => {
                if let Some(Op::Members { conn, req }) = self.ops.remove(&op) {
                    self.members_reply(ctx, conn, req, &topic, result);
                }
            }
            EngineEvent::Presence {
                topic,
                user,
                joined,
                count,
            } => self.announce(ctx, &topic, &user, joined, count),
            EngineEvent::Gap {
                topic,
                epoch,
                from,
                to,
            } => self.lost_for_all(ctx, &topic, &epoch, from, to),
            EngineEvent::EpochChanged { topic, position } => self.reset(ctx, &topic, &position),
            EngineEvent::Ready(ready) => {
                if ready {
                    log::info!("engine {}: ready", self.engine.kind());
                } else {
                    log::warn!(
                        "engine {}: unavailable; publishes are refused",
                        self.engine.kind()
                    );
                }
            }
        }
    }

    /// A pending publish was stored (ack it) or not (say why).
    fn published(&mut self, ctx: &mut Ctx<'_>, op: u64, result: Result<Receipt, EngineError>) {
        match &result {
            Ok(r) if r.duplicate => self.metrics.duplicates += 1,
            Ok(_) => self.metrics.publishes += 1,
            Err(_) => {}
        }
        let Some(Op::Publish {
            conn,
            req,
            to,
            exclude_self,
        }) = self.ops.remove(&op)
        else {
            return;
        };
        match result {
            Ok(r) => {
                if exclude_self && !r.duplicate {
                    self.skip_in_replay(conn, &r.topic, r.position.seq);
                }
                if req.is_some() || r.duplicate {
                    let p = &r.position;
                    let receipt = (r.topic.as_str(), p.seq, Some(p.epoch.as_str()), r.duplicate);
                    self.ack_publish(ctx, conn, req, to.as_deref(), receipt);
                }
            }
            Err(e) => self.engine_error(ctx, conn, req, &e),
        }
    }

    /// Deliveries `from..=to` of `topic` cannot reach this node's
    /// subscribers: each gets a `gap` (those catching up find the hole in
    /// their replay and report it there).
    fn lost_for_all(&mut self, ctx: &mut Ctx<'_>, topic: &str, epoch: &str, from: u64, to: u64) {
        self.release(ctx);
        self.settle(ctx, topic);
        let Some(t) = self.local.get(topic) else {
            return;
        };
        let live: Vec<ConnId> = t
            .subscribers()
            .iter()
            .filter(|s| !t.held().contains(s))
            .copied()
            .collect();
        self.metrics
            .drop_n("engine_gap", (to - from + 1) * live.len() as u64);
        let ev = Event::Gap {
            topic,
            from,
            to,
            epoch,
        }
        .encode();
        for id in live {
            if self.send(ctx, id, &ev) == crate::reactor::SendStatus::Dropped {
                // Not even the gap fits: report it when the queue drains.
                if let Some(c) = self.clients.get_mut(&id) {
                    record_gap(&mut c.gaps, topic, epoch, from, to);
                }
            }
        }
    }

    /// `topic`'s numbering started over: tell its local subscribers.
    fn reset(&mut self, ctx: &mut Ctx<'_>, topic: &str, p: &Position) {
        let ev = Event::Reset {
            topic,
            epoch: &p.epoch,
            seq: p.seq,
        }
        .encode();
        self.notify(ctx, topic, &ev);
    }
}
