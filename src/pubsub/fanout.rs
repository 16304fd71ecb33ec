//! Local fan-out and every send of the hub.
//!
//! A delivery is framed once and queued to every local subscriber (the
//! queue copies small frames and references large ones). Consecutive
//! deliveries of one topic produced by one read, or by one engine
//! wake-up, are held in the [`Batch`](super::batch::Batch) and queued to
//! each subscriber as one piece when it ends ([`Hub::release`]).
//!
//! The one rule that keeps order: what is held goes out before anything
//! else the hub sends or changes. Every send and close goes through this
//! file's [`Hub::send`], [`Hub::close_conn`] and [`Hub::fan_out`], and the
//! two changes that matter — adding and removing a subscriber — through
//! `subscribe.rs`, all of which release first. Fan-outs larger than a loop
//! turn's budget go on in later turns (`fanout_queue.rs`).

use super::hub::Hub;
use super::protocol::{ErrorCode, Event};
use crate::proto::frame::unmasked_frame_len;
use crate::reactor::{ConnId, Ctx, Frame, SendStatus};
use crate::CloseCode;

impl Hub {
    /// Send one message (not a delivery) to `id`.
    pub(super) fn send(&mut self, ctx: &mut Ctx<'_>, id: ConnId, text: &str) -> SendStatus {
        self.release(ctx);
        let s = ctx.send_text(id, text);
        self.metrics
            .sent(s, unmasked_frame_len(text.len()), || ctx.queued_bytes(id));
        s
    }

    /// Send a typed event to `id`.
    pub(super) fn send_event(&mut self, ctx: &mut Ctx<'_>, id: ConnId, ev: &Event<'_>) {
        let text = ev.encode();
        // The outcome is counted in `metrics.sent`.
        let _ = self.send(ctx, id, &text);
    }

    /// Answer request `req` of `id` with an error.
    pub(super) fn error(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        code: ErrorCode,
        msg: &str,
    ) {
        self.send_event(ctx, id, &Event::error(req, code, msg));
    }

    /// Start closing `id` (after what is held went out).
    pub(super) fn close_conn(&mut self, ctx: &mut Ctx<'_>, id: ConnId, code: CloseCode, why: &str) {
        self.release(ctx);
        ctx.close(id, code, why);
    }

    /// Queue `frame` (the delivery `seq` of `topic`) to every local
    /// subscriber but `exclude`.
    pub fn fan_out(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        seq: u64,
        frame: &Frame,
        exclude: Option<ConnId>,
    ) {
        self.release(ctx);
        self.deliver(ctx, topic, Some(seq..=seq), frame, exclude);
    }

    /// Hold delivery `seq` of `topic` until the read (or wake-up) is done
    /// (see `batch.rs`); what is held already goes first if it cannot join.
    pub(super) fn fan_out_batched(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        seq: u64,
        frame: Frame,
    ) {
        if !self.batch.fits(topic, seq, frame.as_bytes().len()) {
            self.release(ctx);
        }
        self.batch.push(topic, seq, frame);
    }

    /// Queue the held deliveries to every subscriber of their topic.
    pub(super) fn release(&mut self, ctx: &mut Ctx<'_>) {
        if self.batch.is_empty() {
            return;
        }
        let frame = self.batch.take();
        let topic = std::mem::take(&mut self.batch.topic);
        let seqs = self.batch.first..=self.batch.last;
        self.deliver(ctx, &topic, Some(seqs), &frame, None);
        self.batch.topic = topic;
    }

    /// What `id` is owed once its queue drains: the `gap`s of deliveries
    /// dropped for a full queue, then the rest of unfinished resume
    /// replays.
    pub(super) fn owed(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let gaps = std::mem::take(&mut c.gaps);
        let catch_up = std::mem::take(&mut c.catch_up);
        for g in gaps {
            let ev = Event::Gap {
                topic: &g.topic,
                from: g.first,
                to: g.last,
                epoch: &g.epoch,
            };
            self.send_event(ctx, id, &ev);
        }
        for cu in catch_up {
            let topic = cu.topic.clone();
            let pending = self.replay(ctx, id, cu);
            self.set_catch_up(ctx, id, &topic, pending);
        }
    }
}
