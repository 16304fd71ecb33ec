//! Acknowledgements: a client says it processed a topic up to a seq
//! (`{"op":"ack","topic":…,"seq":…}`, cumulative), and the engine keeps
//! that position for the user — in memory, or in Redis where every node
//! sees it — so that a later `sub` with `"since":"acked"`, on any
//! connection (a new device, a reinstalled app), resumes from there
//! (`subscribe.rs`).
//!
//! An ack needs a subscription of its topic, and may not name a seq the
//! topic has not reached yet (nor, if it says, another epoch): both are
//! typed errors (`not_subscribed`, `bad_ack`). It is answered only when it
//! carries an `id`, so that acks can be cheap and sent in batches.

use super::engine::AckError;
use super::hub::Hub;
use super::protocol::{self, ErrorCode, Event};
use crate::reactor::{ConnId, Ctx};

impl Hub {
    /// An `ack` request.
    pub(super) fn ack(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
        seq: u64,
        epoch: Option<&str>,
    ) {
        self.metrics.acks += 1;
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !protocol::valid_topic(topic) {
            return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid topic name");
        }
        let now = ctx.now_ms();
        // Subscribed, and answered by the engine (a pending subscription
        // has no position yet: its requests wait, see `request.rs`).
        let result = match c.has(topic) {
            true => self.engine.ack(&c.who.user, topic, seq, epoch, now),
            false => Err(AckError::Unknown),
        };
        match result {
            Ok(()) => {}
            Err(AckError::Unknown) => {
                let e = "not subscribed to this topic";
                return self.error(ctx, id, rid, ErrorCode::NotSubscribed, e);
            }
            Err(AckError::OtherEpoch) => {
                let e = "that epoch is not the topic's: resubscribe to learn the current one";
                return self.error(ctx, id, rid, ErrorCode::BadAck, e);
            }
            Err(AckError::Ahead) => {
                let e = "seq beyond the topic's last delivery";
                return self.error(ctx, id, rid, ErrorCode::BadAck, e);
            }
            Err(AckError::Engine(e)) => return self.engine_error(ctx, id, rid, &e),
        }
        self.watch_ack(ctx, id, topic, seq);
        if rid.is_some() {
            let ev = Event::AckAck {
                id: rid,
                op: "ack",
                topic,
                seq,
            };
            self.send_event(ctx, id, &ev);
        }
    }
}
