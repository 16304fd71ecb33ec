//! `presence`: who is subscribed to a topic, on every node, a page at a
//! time. (Joins and leaves as they happen: `presence_feed.rs`.)

use super::engine::{EngineError, Members, Outcome, Page};
use super::hub::{Hub, Op};
use super::protocol::{self, ErrorCode, Event, PRESENCE_PAGE_DEFAULT, PRESENCE_PAGE_MAX};
use crate::reactor::{ConnId, Ctx};

impl Hub {
    /// A `presence` request: the page after `cursor`, at most `limit`
    /// members (default [`PRESENCE_PAGE_DEFAULT`], at most
    /// [`PRESENCE_PAGE_MAX`]).
    pub(super) fn presence(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        rid: Option<u64>,
        topic: &str,
        page: (Option<u64>, Option<String>),
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
        let (limit, cursor) = page;
        if limit == Some(0)
            || cursor
                .as_ref()
                .is_some_and(|c| c.len() >= protocol::MAX_TOPIC_LEN)
        {
            let e = "limit must be at least 1; cursor must come from a presence answer";
            return self.error(ctx, id, rid, ErrorCode::BadRequest, e);
        }
        let page = Page {
            cursor,
            limit: limit.map_or(PRESENCE_PAGE_DEFAULT, |l| {
                usize::try_from(l).map_or(PRESENCE_PAGE_MAX, |l| l.min(PRESENCE_PAGE_MAX))
            }),
        };
        let op = self.op_id();
        match self.engine.members(topic, &page, op) {
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
                    count: m.count,
                    cursor: m.next.as_deref(),
                };
                self.send_event(ctx, id, &ev);
            }
            Err(e) => self.engine_error(ctx, id, rid, &e),
        }
    }
}
