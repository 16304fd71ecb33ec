//! `sub` and `unsub`: the checks and quotas, the local subscription, the
//! engine's attach, and the end of a subscription. What `since` asks for
//! is `resume.rs`'s job.
//!
//! A subscription is added to the local table at once; while the engine
//! has not answered (it attaches the topic, looks up an acknowledged
//! position, or fetches older history for the resume) the subscriber is
//! *held*: live fan-out skips it, so what it gets starts with the ack and
//! stays in sequence order.

use super::auth::inbox_topic;
use super::client::{PendingSub, ResumeFrom, Stage};
use super::engine::{Creator, EngineError, Outcome, Position};
use super::hub::Hub;
use super::protocol::{self, ErrorCode, Event, Resume};
use super::quota;
use crate::reactor::{ConnId, Ctx};

impl Hub {
    pub(super) fn subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        topic: &str,
        since: Option<Resume>,
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
            return self.resume(ctx, id, req, topic, since, ResumeFrom::at(position), false);
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
            Some(p) => self.resume(ctx, id, req, topic, since, ResumeFrom::at(p), true),
            None => {
                let p = PendingSub {
                    topic: topic.to_string(),
                    req,
                    since,
                    new: true,
                    acked: None,
                    stage: Stage::Attaching,
                };
                self.wait_for_engine(ctx, id, p)
            }
        }
    }

    /// Add `id` to `topic`'s local subscribers (after what is held went
    /// out: it must not reach a subscriber that came after it).
    fn add_subscriber(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) {
        self.release(ctx);
        self.settle(ctx, topic);
        self.local.add(topic, id);
        if let Some(c) = self.clients.get_mut(&id) {
            c.topics.push(topic.to_string());
        }
    }

    /// Hold `id`'s subscription `p` until the engine answers
    /// ([`Hub::attached`], and `resume.rs`).
    pub(super) fn wait_for_engine(&mut self, ctx: &mut Ctx<'_>, id: ConnId, p: PendingSub) {
        self.settle(ctx, &p.topic);
        if let Some(t) = self.local.get_mut(&p.topic) {
            t.hold(id);
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.pending.push(p);
        }
    }

    /// A new subscription is complete: count its member, announce a new
    /// one (not for inboxes).
    pub(super) fn subscribed(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str, new: bool) {
        if !new {
            return;
        }
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if let Some(count) = self.engine.join(topic, &c.who.user) {
            let user = c.who.user.clone();
            self.announce(ctx, topic, &user, true, count);
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
                    let from = ResumeFrom::at(position.clone());
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
            let _ = self.send(ctx, id, &a);
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
        self.settle(ctx, topic);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(pos) = c.topics.iter().position(|t| t == topic) else {
            return;
        };
        c.topics.swap_remove(pos);
        c.catch_up.retain(|cu| cu.topic != topic);
        c.gaps.retain(|g| g.topic != topic);
        c.watches.retain(|w| w.topic != topic);
        self.local.remove(topic, id);
        if topic != inbox_topic(&c.who.user) {
            self.quotas.unsubscribed(&c.who.user);
        }
        let left = member
            .then(|| self.engine.leave(topic, &c.who.user))
            .flatten();
        let user = left.map(|count| (c.who.user.clone(), count));
        self.engine.detach(topic);
        if let Some((user, count)) = user {
            self.announce(ctx, topic, &user, false, count);
        }
    }
}
