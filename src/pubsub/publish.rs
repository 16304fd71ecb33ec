//! `pub` and `dm`: check the rights, have the engine sequence the
//! delivery, ack it (before the publisher's own copy), fan it out.
//!
//! The memory engine sequences at once, so the delivery is fanned out
//! here (held in the batch when nothing can observe the order). An engine
//! with other nodes answers later: the ack goes out when it reports the
//! publish stored, and the delivery comes back as an engine event
//! (`events.rs`) like every other node's.

use super::auth::{inbox_topic, valid_user_id};
use super::engine::{EngineError, Outcome, Publish, Sequenced};
use super::hub::{wall_ms, Hub, Op};
use super::protocol::{self, ErrorCode, Event};
use super::quota;
use crate::reactor::{ConnId, Ctx};

/// The error text when a new topic does not fit on the node.
pub(super) const NODE_FULL: &str = "topic limit of this node reached";

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
        data: &str,
        exclude_self: bool,
        batchable: bool,
    ) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !protocol::valid_topic(topic) {
            return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid topic name");
        }
        if !c.who.may_publish(topic) {
            let e = "not allowed to publish on this topic";
            return self.error(ctx, id, rid, ErrorCode::Forbidden, e);
        }
        let op = self.op_id();
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let p = Publish {
            op,
            topic,
            from: &c.who.user,
            data,
            ts: wall_ms(),
            exclude: exclude_self.then_some(id),
            creator: quota::creator(&self.config, &c.who, &c.creator),
        };
        match self.engine.publish(&p, ctx.now_ms()) {
            Err(e) => self.engine_error(ctx, id, rid, &e),
            Ok(Outcome::Done(s)) => {
                self.metrics.publishes += 1;
                // The ack goes before the publisher's own copy.
                if rid.is_some() {
                    self.ack_publish(ctx, id, rid, topic, None, s.seq, None);
                }
                if batchable {
                    self.fan_out_batched(ctx, topic, s.seq, s.frame);
                } else {
                    self.fanned(ctx, id, topic, s, exclude_self);
                }
            }
            Ok(Outcome::Pending) => {
                let pending = Op::Publish {
                    conn: id,
                    req: rid,
                    to: None,
                    exclude_self,
                };
                self.ops.insert(op, pending);
            }
        }
    }

    /// A direct message: a publish to the recipient's inbox topic.
    pub(super) fn dm(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        to: &str,
        data: &str,
    ) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !valid_user_id(to) {
            return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid user id");
        }
        if !c.who.may_dm(to) {
            let e = "not allowed to message this user";
            return self.error(ctx, id, rid, ErrorCode::Forbidden, e);
        }
        let inbox = inbox_topic(to);
        let op = self.op_id();
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        // A DM that creates the recipient's inbox is charged to the sender.
        let p = Publish {
            op,
            topic: &inbox,
            from: &c.who.user,
            data,
            ts: wall_ms(),
            exclude: None,
            creator: quota::creator(&self.config, &c.who, &c.creator),
        };
        match self.engine.publish(&p, ctx.now_ms()) {
            Err(e) => self.engine_error(ctx, id, rid, &e),
            Ok(Outcome::Done(s)) => {
                self.metrics.publishes += 1;
                if rid.is_some() {
                    self.ack_publish(ctx, id, rid, &inbox, Some(to), s.seq, None);
                }
                self.fanned(ctx, id, &inbox, s, false);
            }
            Ok(Outcome::Pending) => {
                let pending = Op::Publish {
                    conn: id,
                    req: rid,
                    to: Some(to.to_string()),
                    exclude_self: false,
                };
                self.ops.insert(op, pending);
            }
        }
    }

    /// Fan out a delivery sequenced at once, now (not held).
    fn fanned(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        topic: &str,
        s: Sequenced,
        exclude_self: bool,
    ) {
        let exclude = exclude_self.then_some(id);
        self.fan_out(ctx, topic, s.seq, &s.frame, exclude);
        if exclude_self {
            self.skip_in_replay(id, topic, s.seq);
        }
    }

    /// The ack of a `pub` (or, with `to`, a `dm`) numbered `seq` in
    /// `epoch` (`None`: the topic's current one, as the memory engine knows
    /// it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ack_publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
        to: Option<&str>,
        seq: u64,
        epoch: Option<&str>,
    ) {
        let epoch = epoch
            .or_else(|| self.engine.topic_epoch(topic))
            .unwrap_or_default();
        let text = match to {
            None => Event::PubAck {
                id: rid,
                op: "pub",
                topic,
                seq,
                epoch,
            },
            Some(to) => Event::DmAck {
                id: rid,
                op: "dm",
                to,
                topic,
                seq,
                epoch,
            },
        }
        .encode();
        self.send(ctx, id, &text);
    }

    /// Answer request `rid` of `id` with what the engine said went wrong.
    pub(super) fn engine_error(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        e: &EngineError,
    ) {
        match e {
            EngineError::TooManyTopics => {
                self.error(ctx, id, rid, ErrorCode::TooManyTopics, NODE_FULL)
            }
            EngineError::QuotaExceeded => {
                let by_address = self
                    .clients
                    .get(&id)
                    .is_some_and(|c| c.creator.starts_with("ip:"));
                let (hit, why) = match by_address {
                    true => (
                        "topics_per_ip",
                        "new topics of this address are at their quota",
                    ),
                    false => (
                        "topics_per_user",
                        "new topics of this user are at their quota",
                    ),
                };
                self.metrics.quota(hit);
                self.error(ctx, id, rid, ErrorCode::TooManyTopics, why);
            }
            EngineError::Unavailable { maybe_stored } => {
                self.metrics.drop("engine_unavailable");
                let message = if *maybe_stored {
                    "the engine was cut off after the request reached it: it may have taken effect"
                } else {
                    "the engine is unavailable; retry later"
                };
                let ev = Event::Error {
                    id: rid,
                    code: ErrorCode::Unavailable.as_str(),
                    message,
                    maybe_stored: *maybe_stored,
                };
                self.send_event(ctx, id, &ev);
            }
        }
    }
}
