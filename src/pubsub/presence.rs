//! `presence`: who is subscribed to a topic, on every node. (The `join`
//! and `leave` events are sent where subscriptions change:
//! `subscribe.rs`, and `events.rs` for other nodes'.)

use super::engine::{EngineError, Members, Outcome};
use super::hub::{Hub, Op};
use super::protocol::{self, ErrorCode, Event};
use crate::reactor::{ConnId, Ctx};

impl Hub {
    /// A `presence` request.
    pub(super) fn presence(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
    ) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !protocol::valid_topic(topic) {
            return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid topic name");
        }
        if !c.who.may_subscribe(topic) {
            let e = "not allowed to see this topic";
            return self.error(ctx, id, rid, ErrorCode::Forbidden, e);
        }
        let op = self.op_id();
        match self.engine.members(topic, op) {
            Ok(Outcome::Done(m)) => self.members_reply(ctx, id, rid, topic, Ok(m)),
            Ok(Outcome::Pending) => {
                self.ops.insert(op, Op::Members { conn: id, req: rid });
            }
            Err(e) => self.engine_error(ctx, id, rid, &e),
        }
    }

    /// Answer a `presence` request with `result`.
    pub(super) fn members_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
        result: Result<Members, EngineError>,
    ) {
        match result {
            Ok(m) => {
                let ev = Event::Presence {
                    id: rid,
                    topic,
                    members: &m.users,
                    count: m.users.len(),
                    connections: m.connections,
                };
                self.send_event(ctx, id, &ev);
            }
            Err(e) => self.engine_error(ctx, id, rid, &e),
        }
    }
}
