//! One request from a client: parsed, checked against what waits, and
//! routed to its room (`subscribe.rs`, `publish.rs`, `presence.rs`).
//!
//! Requests on one topic take effect in the order the client sent them.
//! With an engine that answers later (Redis), a `sub` can be pending; a
//! request on the same topic that comes meanwhile waits behind it (at most
//! `MAX_WAITING` per connection) and runs when the `sub` is answered.
//! Requests on other topics do not wait.

use super::auth::inbox_topic;
use super::client::{Waiting, MAX_WAITING};
use super::hub::Hub;
use super::protocol::{ErrorCode, Request};
use super::publish::Pub;
use crate::reactor::{ConnId, Ctx};

impl Hub {
    /// Handle the text request `text` of `id`.
    pub(super) fn request(&mut self, ctx: &mut Ctx<'_>, id: ConnId, text: &str) {
        let req = match Request::parse(text) {
            Ok(r) => r,
            Err(e) => return self.error(ctx, id, e.id, ErrorCode::BadRequest, &e.message),
        };
        // Only a publish without ack or exclusion can join the held
        // deliveries; anything else may change or observe the order.
        let batchable = matches!(
            req,
            Request::Pub {
                id: None,
                exclude_self: false,
                ..
            }
        );
        if !batchable {
            self.release(ctx);
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        // Usually nothing is pending: no lookup at all.
        let waits = !c.pending.is_empty() || !c.waiting.is_empty();
        if let Some(topic) = waits.then(|| topic_of(&req)).flatten() {
            if c.must_wait(&topic) {
                if c.waiting.len() >= MAX_WAITING {
                    let e = "too many requests waiting for pending subscriptions; request dropped";
                    return self.error(ctx, id, req.id(), ErrorCode::RateLimited, e);
                }
                c.waiting.push_back(Waiting {
                    topic,
                    text: text.to_string(),
                });
                return;
            }
        }
        self.route(ctx, id, req, batchable);
    }

    fn route(&mut self, ctx: &mut Ctx<'_>, id: ConnId, req: Request<'_>, batchable: bool) {
        match req {
            Request::Sub {
                id: rid,
                topic,
                since,
            } => self.subscribe(ctx, id, rid, &topic, since),
            Request::Unsub { id: rid, topic } => self.unsub_request(ctx, id, rid, &topic),
            Request::Pub {
                id: rid,
                topic,
                data,
                exclude_self,
                idempotency_key,
            } => {
                let p = Pub {
                    rid,
                    topic: &topic,
                    to: None,
                    data: data.get(),
                    exclude_self,
                    batchable,
                    idempotency_key: idempotency_key.as_deref(),
                };
                self.publish(ctx, id, p)
            }
            Request::Dm {
                id: rid,
                to,
                data,
                idempotency_key,
            } => {
                let p = Pub {
                    rid,
                    topic: "",
                    to: None,
                    data: data.get(),
                    exclude_self: false,
                    batchable: false,
                    idempotency_key: idempotency_key.as_deref(),
                };
                self.dm(ctx, id, &to, p)
            }
            Request::Ack {
                id: rid,
                topic,
                seq,
                epoch,
            } => self.ack(ctx, id, rid, &topic, seq, epoch.as_deref()),
            Request::Presence {
                id: rid,
                topic,
                limit,
                cursor,
            } => self.presence(ctx, id, rid, &topic, (limit, cursor)),
        }
    }

    /// The pending subscription of `topic` was answered: run the requests
    /// that waited behind it, until one must wait again.
    pub(super) fn run_waiting(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) {
        loop {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            if c.pending.iter().any(|p| p.topic == topic) {
                return;
            }
            let Some(i) = c.waiting.iter().position(|w| w.topic == topic) else {
                return;
            };
            let Some(w) = c.waiting.remove(i) else {
                return;
            };
            // It parsed before; parse it again where it is owned.
            let Ok(req) = Request::parse(&w.text) else {
                continue;
            };
            self.release(ctx);
            self.route(ctx, id, req, false);
        }
    }
}

/// The topic a request acts on (a `dm`: the recipient's inbox), if it
/// names a valid one.
fn topic_of(req: &Request<'_>) -> Option<String> {
    match req {
        Request::Sub { topic, .. }
        | Request::Unsub { topic, .. }
        | Request::Pub { topic, .. }
        | Request::Ack { topic, .. }
        | Request::Presence { topic, .. } => Some(topic.to_string()),
        Request::Dm { to, .. } => Some(inbox_topic(to)),
    }
}
