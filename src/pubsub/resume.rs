//! The resume a `sub` asks for with `since`: where to start (a position
//! the client kept, or — `"since":"acked"` — the user's stored
//! acknowledged position, looked up in the engine), whether history older
//! than this node's copy must be fetched first (Redis engine), what the
//! ack reports (`recovered`, `lost`, `epoch_changed`, `replayed`,
//! `acked`), and the start of the paced replay (`replay.rs`).

use super::client::{PendingSub, ResumeFrom, Stage};
use super::engine::{EngineError, Fetched, Outcome, Position};
use super::hub::{Hub, Op};
use super::missed::CatchUp;
use super::protocol::{Acked, Event, Resume, Since};
use crate::reactor::{ConnId, Ctx};

/// Where a replay starts and what the ack says.
struct Plan {
    /// Replay what came after this seq (`None`: no resume).
    after: Option<u64>,
    /// The client's numbers are not this epoch's.
    epoch_changed: bool,
    /// The first seq history has after `after`.
    first: Option<u64>,
}

impl Hub {
    /// Complete a subscription whose position is known: resolve
    /// `"since":"acked"`, fetch what this node lacks, ack, replay, and
    /// announce a new member.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        since: Option<Resume>,
        mut from: ResumeFrom,
        new: bool,
    ) {
        let since = match since {
            Some(Resume::Acked) => match self.stored_position(ctx, id, req, topic, &from, new) {
                Some(found) => {
                    from.acked = Some(found.clone());
                    self.metrics.positions_restored += u64::from(found.is_some());
                    found.map(|p| Since {
                        epoch: p.epoch,
                        seq: p.seq,
                    })
                }
                None => return, // pending, or failed and answered
            },
            Some(Resume::From(s)) => Some(s),
            None => None,
        };
        let now = ctx.now_ms();
        let pos = &from.position;
        // A seq beyond ours is not one of ours either.
        let start = since
            .as_ref()
            .map(|s| match s.epoch == pos.epoch && s.seq <= pos.seq {
                true => (s.seq, false),
                false => (0, true),
            });
        if let Some((after, _)) = start {
            if from.fetched.is_empty() && self.needs_fetch(topic, after, pos.seq, now) {
                return self.fetch_first(ctx, id, req, topic, since, from, new, after);
            }
        }
        let first = start.and_then(|(after, _)| {
            from.fetched
                .iter()
                .find(|s| s.seq > after)
                .map(|s| s.seq)
                .or_else(|| {
                    let (items, _) = self.engine.history(topic, after, 1, now);
                    items.first().map(|s| s.seq)
                })
        });
        let plan = Plan {
            after: start.map(|(a, _)| a),
            epoch_changed: start.is_some_and(|(_, changed)| changed),
            first,
        };
        self.ack_and_replay(ctx, id, req, topic, from, plan);
        self.subscribed(ctx, id, topic, new);
    }

    /// The position `"since":"acked"` stands for: `Some(found)` now, or
    /// `None` when the lookup is pending (the subscription waits) or
    /// failed (the client was answered, and the subscription stands
    /// without a resume).
    fn stored_position(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        from: &ResumeFrom,
        new: bool,
    ) -> Option<Option<Position>> {
        if let Some(found) = &from.acked {
            return Some(found.clone());
        }
        let op = self.op_id();
        let now = ctx.now_ms();
        let user = self.clients.get(&id)?.who.user.clone();
        match self.engine.acked(&user, topic, op, now) {
            Ok(Outcome::Done(found)) => Some(found),
            Ok(Outcome::Pending) => {
                self.ops.insert(op, Op::Acked { conn: id });
                let p = PendingSub {
                    topic: topic.to_string(),
                    req,
                    since: Some(Resume::Acked),
                    new,
                    acked: None,
                    stage: Stage::Acked { op },
                };
                self.wait_for_engine(ctx, id, p);
                None
            }
            Err(e) => {
                self.engine_error(ctx, id, req, &e);
                self.release_held(ctx, id, topic);
                self.subscribed(ctx, id, topic, new);
                None
            }
        }
    }

    /// The resume needs history older than this node holds: fetch it,
    /// then resume with it.
    #[allow(clippy::too_many_arguments)]
    fn fetch_first(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        since: Option<Since>,
        from: ResumeFrom,
        new: bool,
        after: u64,
    ) {
        let op = self.op_id();
        let since = since.map(Resume::From);
        match self.engine.fetch(topic, after, op) {
            Ok(Outcome::Done(f)) => {
                let from = ResumeFrom {
                    position: f.position,
                    fetched: f.items,
                    acked: from.acked,
                };
                self.resume(ctx, id, req, topic, since, from, new);
            }
            Ok(Outcome::Pending) => {
                self.ops.insert(op, Op::Fetch { conn: id });
                let p = PendingSub {
                    topic: topic.to_string(),
                    req,
                    since,
                    new,
                    acked: from.acked,
                    stage: Stage::Fetching { op },
                };
                self.wait_for_engine(ctx, id, p);
            }
            Err(e) => {
                // Subscribed, but the resume cannot be served now: say so
                // (the client may resume again later).
                self.engine_error(ctx, id, req, &e);
                self.release_held(ctx, id, topic);
                self.subscribed(ctx, id, topic, new);
            }
        }
    }

    /// The ack, then the paced replay (or the release of a subscriber
    /// held for the engine).
    fn ack_and_replay(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        from: ResumeFrom,
        plan: Plan,
    ) {
        let pos = &from.position;
        let (recovered, lost, replayed) = match (plan.after, plan.epoch_changed) {
            (None, _) => (true, 0, 0),
            (Some(after), false) => {
                let missed = pos.seq - after;
                let have = plan.first.map_or(0, |f| (pos.seq + 1).saturating_sub(f));
                (have >= missed, missed.saturating_sub(have), have)
            }
            // Another epoch (the node restarted, the topic was dropped and
            // recreated, or the engine lost its data): replay what there
            // is; recovery is incomplete.
            (Some(_), true) => (
                false,
                0,
                plan.first.map_or(0, |f| (pos.seq + 1).saturating_sub(f)),
            ),
        };
        let acked = match &from.acked {
            None => Acked::Absent,
            Some(None) => Acked::None,
            Some(Some(p)) => Acked::At {
                epoch: &p.epoch,
                seq: p.seq,
            },
        };
        let ack = Event::SubAck {
            id: req,
            op: "sub",
            topic,
            epoch: &pos.epoch,
            seq: pos.seq,
            resumed: plan.after.is_some(),
            recovered,
            lost,
            epoch_changed: plan.epoch_changed,
            replayed,
            acked,
        }
        .encode();
        let _ = self.send(ctx, id, &ack);
        if plan.after.is_none() {
            // A `sub` without `since` leaves an unfinished replay as it is,
            // and releases a subscriber held for the engine.
            let replaying = self
                .clients
                .get(&id)
                .is_some_and(|c| c.catch_up.iter().any(|cu| cu.topic == topic));
            if !replaying {
                self.release_held(ctx, id, topic);
            }
            return;
        }
        // The resume supersedes gaps still to be reported for the topic:
        // the ack's `lost` and the replay say it all. What does not fit now
        // follows as the queue drains, before any live delivery.
        if let Some(c) = self.clients.get_mut(&id) {
            c.gaps.retain(|g| g.topic != topic);
        }
        let pending = plan
            .first
            .map(|next| CatchUp::new(topic, next, from.fetched));
        let pending = pending.and_then(|cu| self.replay(ctx, id, cu));
        self.set_catch_up(ctx, id, topic, pending);
    }

    /// Whether a resume after `after` needs history older than what this
    /// node holds of `topic` (whose last seq is `last`).
    fn needs_fetch(&mut self, topic: &str, after: u64, last: u64, now: u64) -> bool {
        if after >= last {
            return false;
        }
        let (items, complete) = self.engine.history(topic, after, 1, now);
        !complete && items.first().is_none_or(|s| s.seq > after + 1)
    }

    /// Live fan-out reaches `id` on `topic` again.
    fn release_held(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) {
        self.settle(ctx, topic);
        if let Some(t) = self.local.get_mut(topic) {
            t.release(id);
        }
    }

    /// History for a pending resume arrived (or could not be read).
    pub(super) fn fetched(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        topic: &str,
        op: u64,
        result: Result<Fetched, EngineError>,
    ) {
        let Some(p) = self.take_waiting(
            id,
            topic,
            |s| matches!(s, Stage::Fetching { op: o } if *o == op),
        ) else {
            return;
        };
        match result {
            Ok(f) => {
                let from = ResumeFrom {
                    position: f.position,
                    fetched: f.items,
                    acked: p.acked,
                };
                self.resume(ctx, id, p.req, topic, p.since, from, p.new);
            }
            Err(e) => {
                self.engine_error(ctx, id, p.req, &e);
                self.release_held(ctx, id, topic);
                self.subscribed(ctx, id, topic, p.new);
            }
        }
        self.run_waiting(ctx, id, topic);
    }

    /// The acknowledged position for a pending `"since":"acked"` arrived
    /// (or could not be read).
    pub(super) fn acked_found(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        topic: &str,
        op: u64,
        result: Result<Option<Position>, EngineError>,
    ) {
        let Some(p) = self.take_waiting(
            id,
            topic,
            |s| matches!(s, Stage::Acked { op: o } if *o == op),
        ) else {
            return;
        };
        match result {
            Ok(found) => match self.engine.position(topic) {
                Some(position) => {
                    let from = ResumeFrom {
                        position,
                        fetched: Vec::new(),
                        acked: Some(found),
                    };
                    self.resume(ctx, id, p.req, topic, p.since, from, p.new);
                }
                None => self.release_held(ctx, id, topic),
            },
            Err(e) => {
                self.engine_error(ctx, id, p.req, &e);
                self.release_held(ctx, id, topic);
                self.subscribed(ctx, id, topic, p.new);
            }
        }
        self.run_waiting(ctx, id, topic);
    }

    /// Take `id`'s pending subscription of `topic` in a stage `stage`
    /// accepts.
    fn take_waiting(
        &mut self,
        id: ConnId,
        topic: &str,
        stage: impl Fn(&Stage) -> bool,
    ) -> Option<PendingSub> {
        let c = self.clients.get_mut(&id)?;
        let i = c
            .pending
            .iter()
            .position(|p| p.topic == topic && stage(&p.stage))?;
        Some(c.pending.swap_remove(i))
    }
}
