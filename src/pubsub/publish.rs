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

/// A `pub` or `dm` on its way to the engine.
pub(super) struct Pub<'a> {
    pub rid: Option<u64>,
    /// Where it goes (a `dm`: the recipient's inbox).
    pub topic: &'a str,
    /// The recipient of a `dm`.
    pub to: Option<&'a str>,
    pub data: &'a str,
    pub exclude_self: bool,
    /// Nothing can observe the order meanwhile: its delivery may be held
    /// in the batch.
    pub batchable: bool,
    pub idempotency_key: Option<&'a str>,
}

impl Hub {
    /// A `pub`: rights, then [`Hub::store`].
    pub(super) fn publish(&mut self, ctx: &mut Ctx<'_>, id: ConnId, p: Pub<'_>) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !protocol::valid_topic(p.topic) {
            return self.error(ctx, id, p.rid, ErrorCode::BadTopic, "invalid topic name");
        }
        if !c.who.may_publish(p.topic) {
            let e = "not allowed to publish on this topic";
            return self.error(ctx, id, p.rid, ErrorCode::Forbidden, e);
        }
        self.store(ctx, id, p);
    }

    /// A `dm`: rights, then [`Hub::store`] in the recipient's inbox.
    pub(super) fn dm(&mut self, ctx: &mut Ctx<'_>, id: ConnId, to: &str, p: Pub<'_>) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !valid_user_id(to) {
            return self.error(ctx, id, p.rid, ErrorCode::BadTopic, "invalid user id");
        }
        if !c.who.may_dm(to) {
            let e = "not allowed to message this user";
            return self.error(ctx, id, p.rid, ErrorCode::Forbidden, e);
        }
        let inbox = inbox_topic(to);
        let p = Pub {
            topic: &inbox,
            to: Some(to),
            ..p
        };
        self.store(ctx, id, p);
    }

    /// Have the engine store and number `p`; ack it (before the
    /// publisher's own copy) and fan it out, now or when the engine says.
    /// A new topic is charged to the publisher (a `dm` that creates the
    /// recipient's inbox too).
    fn store(&mut self, ctx: &mut Ctx<'_>, id: ConnId, p: Pub<'_>) {
        let op = self.op_id();
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let publish = Publish {
            op,
            topic: p.topic,
            from: &c.who.user,
            data: p.data,
            ts: wall_ms(),
            exclude: p.exclude_self.then_some(id),
            creator: quota::creator(&self.config, &c.who, &c.creator),
            idempotency_key: p.idempotency_key,
        };
        match self.engine.publish(&publish, ctx.now_ms()) {
            Err(e) => self.engine_error(ctx, id, p.rid, &e),
            Ok(Outcome::Done(Sequenced::New { seq, frame })) => {
                self.metrics.publishes += 1;
                if p.rid.is_some() {
                    let receipt = (p.topic, seq, None, false);
                    self.ack_publish(ctx, id, p.rid, p.to, receipt);
                }
                if p.batchable {
                    self.fan_out_batched(ctx, p.topic, seq, frame);
                } else {
                    let exclude = p.exclude_self.then_some(id);
                    self.fan_out(ctx, p.topic, seq, &frame, exclude);
                    if p.exclude_self {
                        self.skip_in_replay(id, p.topic, seq);
                    }
                }
            }
            Ok(Outcome::Done(Sequenced::Duplicate(r))) => {
                self.metrics.duplicates += 1;
                let receipt = (
                    r.topic.as_str(),
                    r.position.seq,
                    Some(r.position.epoch.as_str()),
                    true,
                );
                self.ack_publish(ctx, id, p.rid, p.to, receipt);
            }
            Ok(Outcome::Pending) => {
                let pending = Op::Publish {
                    conn: id,
                    req: p.rid,
                    to: p.to.map(str::to_string),
                    exclude_self: p.exclude_self,
                };
                self.ops.insert(op, pending);
            }
        }
        if self.fanout_over() {
            // Publishing (`pub` or `dm`) into a long fan-out backlog: read
            // no more of this connection until it is shorter
            // (`fanout_queue.rs`).
            self.pause_publisher(ctx, id);
        }
    }

    /// The ack of a `pub` (or, with `to`, a `dm`) stored at `(topic, seq,
    /// epoch, duplicate)` (epoch `None`: the topic's current one, as the
    /// memory engine knows it). A duplicate's ack goes out even without a
    /// request id: a retry must learn where its original went.
    pub(super) fn ack_publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        to: Option<&str>,
        (topic, seq, epoch, duplicate): (&str, u64, Option<&str>, bool),
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
                duplicate,
            },
            Some(to) => Event::DmAck {
                id: rid,
                op: "dm",
                to,
                topic,
                seq,
                epoch,
                duplicate,
            },
        }
        .encode();
        let _ = self.send(ctx, id, &text);
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
            EngineError::TooManyPositions => {
                self.metrics.quota("positions_per_user");
                let e = "acknowledged positions of this user are at their limit";
                self.error(ctx, id, rid, ErrorCode::TooManyTopics, e);
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
