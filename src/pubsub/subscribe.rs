//! `sub` and `unsub`: the checks, the local subscription, the engine's
//! attach, and the resume that `since` asks for (what to replay, and what
//! the ack reports: `recovered`, `lost`, `epoch_changed`, `replayed`).
//!
//! A subscription is added to the local table at once; while the engine
//! has not answered (it attaches the topic, or fetches older history for
//! the resume) the subscriber is *held*: live fan-out skips it, so what
//! it gets starts with the ack and stays in sequence order.

use super::auth::inbox_topic;
use super::client::{PendingSub, ResumeFrom, Stage};
use super::engine::{Creator, EngineError, Fetched, Outcome, Position};
use super::hub::{wall_ms, Hub, Op};
use super::missed::CatchUp;
use super::protocol::{self, ErrorCode, Event, Since};
use super::quota;
use crate::reactor::{ConnId, Ctx};

impl Hub {
    pub(super) fn subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        since: Option<Since>,
    ) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !protocol::valid_topic(topic) {
            return self.error(ctx, id, req, ErrorCode::BadTopic, "invalid topic name");
        }
        if !c.who.may_subscribe(topic) {
            let e = "not allowed to subscribe to this topic";
            return self.error(ctx, id, req, ErrorCode::Forbidden, e);
        }
        if c.has(topic) {
            // Subscribed already: only a resume has something to do.
            let Some(position) = self.engine.position(topic) else {
                return;
            };
            let from = ResumeFrom {
                position,
                fetched: Vec::new(),
            };
            return self.resume(ctx, id, req, topic, since, from, false);
        }
        // The automatic inbox subscription does not count; other users'
        // inboxes (a token may allow `@*`) do.
        let inbox = inbox_topic(&c.who.user);
        let own = c.topics.iter().filter(|t| **t != inbox).count();
        if topic != inbox && own >= self.config.max_topics_per_conn {
            let e = "subscription limit reached";
            return self.error(ctx, id, req, ErrorCode::TooManyTopics, e);
        }
        if topic != inbox {
            if let Err(hit) = self.quotas.subscribe(&self.config, &c.who.user) {
                self.metrics.quota(hit);
                let e = "subscription limit of this user reached";
                return self.error(ctx, id, req, ErrorCode::TooManyTopics, e);
            }
        }
        // Its own inbox is not charged to the user (every connection has
        // one); other topics new to the engine are.
        let creator = match topic == inbox {
            true => Creator { key: "", quota: 0 },
            false => quota::creator(&self.config, &c.who, &c.creator),
        };
        let position = match self.engine.attach(topic, creator) {
            Ok(Outcome::Done(p)) => Some(p),
            Ok(Outcome::Pending) => None,
            Err(e) => {
                if topic != inbox {
                    self.quotas.unsubscribed(&c.who.user);
                }
                return self.engine_error(ctx, id, req, &e);
            }
        };
        self.add_subscriber(ctx, id, topic);
        match position {
            Some(position) => {
                let from = ResumeFrom {
                    position,
                    fetched: Vec::new(),
                };
                self.resume(ctx, id, req, topic, since, from, true);
            }
            None => self.wait_for_engine(id, topic, req, since, true, Stage::Attaching),
        }
    }

    /// Add `id` to `topic`'s local subscribers (after what is held went
    /// out: it must not reach a subscriber that came after it).
    fn add_subscriber(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) {
        self.release(ctx);
        self.local.add(topic, id);
        if let Some(c) = self.clients.get_mut(&id) {
            c.topics.push(topic.to_string());
        }
    }

    /// Hold `id`'s new or resuming subscription of `topic` until the engine
    /// answers ([`Hub::attached`], [`Hub::fetched`]).
    fn wait_for_engine(
        &mut self,
        id: ConnId,
        topic: &str,
        req: Option<u64>,
        since: Option<Since>,
        new: bool,
        stage: Stage,
    ) {
        if let Some(t) = self.local.get_mut(topic) {
            t.hold(id);
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.pending.push(PendingSub {
                topic: topic.to_string(),
                req,
                since,
                new,
                stage,
            });
        }
    }

    /// Complete a subscription whose position is known: work out the
    /// resume, ack, replay, and announce a new member. If the resume
    /// needs history older than this node holds, fetch it first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        since: Option<Since>,
        from: ResumeFrom,
        new: bool,
    ) {
        let now = ctx.now_ms();
        let pos = &from.position;
        // Where the replay starts (after `after`), and whether the client's
        // numbers are ours: a seq beyond ours is not one of ours either.
        let plan = since.as_ref().map(|s| {
            if s.epoch == pos.epoch && s.seq <= pos.seq {
                (s.seq, false)
            } else {
                (0, true)
            }
        });
        if let Some((after, _)) = plan {
            if from.fetched.is_empty() && self.needs_fetch(topic, after, pos.seq, now) {
                let op = self.op_id();
                match self.engine.fetch(topic, after, op) {
                    Ok(Outcome::Done(f)) => {
                        let from = ResumeFrom {
                            position: f.position,
                            fetched: f.items,
                        };
                        return self.resume(ctx, id, req, topic, since, from, new);
                    }
                    Ok(Outcome::Pending) => {
                        self.ops.insert(op, Op::Fetch { conn: id });
                        let stage = Stage::Fetching { op };
                        return self.wait_for_engine(id, topic, req, since, new, stage);
                    }
                    Err(e) => {
                        // Subscribed, but the resume cannot be served now:
                        // say so (the client may resume again later).
                        self.engine_error(ctx, id, req, &e);
                        return self.subscribed(ctx, id, topic, new);
                    }
                }
            }
        }
        // What the replay has: the first seq available after `after`.
        let first = match plan {
            None => None,
            Some((after, _)) => from
                .fetched
                .iter()
                .find(|s| s.seq > after)
                .map(|s| s.seq)
                .or_else(|| {
                    let (items, _) = self.engine.history(topic, after, 1, now);
                    items.first().map(|s| s.seq)
                }),
        };
        let (recovered, lost, epoch_changed, replayed) = match (plan, first) {
            (None, _) => (true, 0, false, 0),
            (Some((after, false)), first) => {
                let missed = pos.seq - after;
                let have = first.map_or(0, |f| (pos.seq + 1).saturating_sub(f));
                (have >= missed, missed.saturating_sub(have), false, have)
            }
            // Another epoch (the node restarted, the topic was dropped and
            // recreated, or the engine lost its data): replay what there
            // is; recovery is incomplete.
            (Some((_, true)), first) => (
                false,
                0,
                true,
                first.map_or(0, |f| (pos.seq + 1).saturating_sub(f)),
            ),
        };
        let ack = Event::SubAck {
            id: req,
            op: "sub",
            topic,
            epoch: &pos.epoch,
            seq: pos.seq,
            resumed: since.is_some(),
            recovered,
            lost,
            epoch_changed,
            replayed,
        }
        .encode();
        self.send(ctx, id, &ack);
        // The replay is paced by the client's queue: what does not fit now
        // follows as the queue drains, before any live delivery of the
        // topic. (A `sub` without `since` leaves an unfinished replay as
        // it is, and releases a subscriber held for the engine.)
        match (plan, first) {
            (Some(_), first) => {
                // The resume supersedes gaps still to be reported for the
                // topic: the ack's `lost` and the replay say it all.
                if let Some(c) = self.clients.get_mut(&id) {
                    c.gaps.retain(|g| g.topic != topic);
                }
                let pending = first.map(|next| CatchUp::new(topic, next, from.fetched));
                let pending = pending.and_then(|cu| self.replay(ctx, id, cu));
                self.set_catch_up(id, topic, pending);
            }
            (None, _) => {
                let replaying = self
                    .clients
                    .get(&id)
                    .is_some_and(|c| c.catch_up.iter().any(|cu| cu.topic == topic));
                if !replaying {
                    if let Some(t) = self.local.get_mut(topic) {
                        t.release(id);
                    }
                }
            }
        }
        self.subscribed(ctx, id, topic, new);
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

    /// A new subscription is complete: count its member, announce a new
    /// one (not for inboxes).
    fn subscribed(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str, new: bool) {
        if !new {
            return;
        }
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let joined = self.engine.join(topic, &c.who.user);
        if joined && !topic.starts_with('@') {
            let user = c.who.user.clone();
            self.announce(ctx, topic, &user, true);
        }
    }

    /// The engine attached `topic` (or could not): complete every
    /// subscription of it that waited.
    pub(super) fn attached(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        result: Result<Position, EngineError>,
    ) {
        let waiting: Vec<ConnId> = match self.local.get(topic) {
            Some(t) => t.held().to_vec(),
            None => return,
        };
        for id in waiting {
            let Some(p) = self.clients.get_mut(&id).and_then(|c| {
                let i = c
                    .pending
                    .iter()
                    .position(|p| p.topic == topic && matches!(p.stage, Stage::Attaching))?;
                Some(c.pending.swap_remove(i))
            }) else {
                continue;
            };
            match &result {
                Ok(position) => {
                    let from = ResumeFrom {
                        position: position.clone(),
                        fetched: Vec::new(),
                    };
                    self.resume(ctx, id, p.req, topic, p.since, from, p.new);
                }
                Err(e) => {
                    // Not subscribed after all.
                    self.engine_error(ctx, id, p.req, e);
                    self.drop_subscription(ctx, id, topic, false);
                }
            }
            self.run_waiting(ctx, id, topic);
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
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(i) = c.pending.iter().position(|p| {
            p.topic == topic && matches!(p.stage, Stage::Fetching { op: o } if o == op)
        }) else {
            return;
        };
        let p = c.pending.swap_remove(i);
        match result {
            Ok(f) => {
                let from = ResumeFrom {
                    position: f.position,
                    fetched: f.items,
                };
                self.resume(ctx, id, p.req, topic, p.since, from, p.new);
            }
            Err(e) => {
                self.engine_error(ctx, id, p.req, &e);
                if let Some(t) = self.local.get_mut(topic) {
                    t.release(id);
                }
                self.subscribed(ctx, id, topic, p.new);
            }
        }
        self.run_waiting(ctx, id, topic);
    }

    /// An `unsub` request.
    pub(super) fn unsub_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
    ) {
        if self.unsubscribe(ctx, id, topic) {
            let a = Event::UnsubAck {
                id: rid,
                op: "unsub",
                topic,
            }
            .encode();
            self.send(ctx, id, &a);
        } else {
            let e = "not subscribed to this topic";
            self.error(ctx, id, rid, ErrorCode::NotSubscribed, e);
        }
    }

    /// End `id`'s subscription of `topic`; false if there was none.
    pub(super) fn unsubscribe(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        if !c.has(topic) {
            return false;
        }
        // A subscription the engine had not answered was never counted as
        // a member.
        let counted = c.take_pending(topic).is_none_or(|p| !p.new);
        self.drop_subscription(ctx, id, topic, counted);
        true
    }

    /// Remove `id` from `topic` here and in the engine (`member`: it was
    /// counted as a member, so it leaves).
    fn drop_subscription(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str, member: bool) {
        self.release(ctx);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(pos) = c.topics.iter().position(|t| t == topic) else {
            return;
        };
        c.topics.swap_remove(pos);
        c.catch_up.retain(|cu| cu.topic != topic);
        c.gaps.retain(|g| g.topic != topic);
        self.local.remove(topic, id);
        if topic != inbox_topic(&c.who.user) {
            self.quotas.unsubscribed(&c.who.user);
        }
        let left = member && self.engine.leave(topic, &c.who.user);
        let user = left.then(|| c.who.user.clone());
        self.engine.detach(topic);
        if let Some(user) = user {
            if !topic.starts_with('@') {
                self.announce(ctx, topic, &user, false);
            }
        }
    }

    /// Tell `topic`'s local subscribers that `user` joined or left.
    pub(super) fn announce(&mut self, ctx: &mut Ctx<'_>, topic: &str, user: &str, joined: bool) {
        let ts = wall_ms();
        let ev = if joined {
            Event::Join { topic, user, ts }
        } else {
            Event::Leave { topic, user, ts }
        };
        let text = ev.encode();
        self.notify(ctx, topic, &text);
    }
}
