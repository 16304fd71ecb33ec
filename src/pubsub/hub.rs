//! The hub: a [`Handler`] that turns the reactor into a pub/sub server.
//!
//! Flow of a publish: check rights and rate limit → the topic gives the next
//! sequence number → the delivery is encoded and framed **once**
//! ([`Frame`]) → history keeps that frame → every local subscriber's queue
//! references the same bytes. Sequencing (`Hub::sequence`) and local
//! fan-out ([`Hub::fan_out`]) are separate steps, so a later bridge between
//! nodes can carry a sequenced delivery (topic, origin node, epoch, seq) to
//! other nodes, whose hubs fan it out to their own subscribers.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::auth::{inbox_topic, verify_jwt, Identity, TokenError, TokenRules};
use super::batch::Batch;
use super::browser::{HostPolicy, OriginPolicy};
use super::metrics::Metrics;
use super::missed::{lost_ranges, record_gap, CatchUp, Gap, MAX_SKIP};
use super::protocol::{self, Delivery, ErrorCode, Request, Since};
use super::ratelimit::TokenBucket;
use super::topics::{TopicLimits, Topics};
use crate::proto::frame::unmasked_frame_len;
use crate::proto::handshake::Request as HttpRequest;
use crate::reactor::{
    CloseInfo, ConnId, ConnIdMap, Ctx, Frame, Handler, HttpResponse, SendStatus, Upgrade,
};
use crate::{CloseCode, Message};

/// Hub settings; every field has a documented default.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This node's name, carried in every delivery (default `local`).
    pub node: String,
    /// HS256 secret for tokens. `None` (default): anonymous users with
    /// generated ids may do anything.
    pub auth_secret: Option<Vec<u8>>,
    /// What tokens must satisfy besides their signature: audience, issuer,
    /// clock skew (default: no `aud` allowed, any `iss`, no skew).
    pub token_rules: TokenRules,
    /// Allowed browser origins (default: same host only).
    pub origins: OriginPolicy,
    /// Allowed `Host` names, checked on every request (default: any; the
    /// binary admits only local names when it listens on loopback). The
    /// defence against DNS rebinding: see [`super::browser`].
    pub hosts: HostPolicy,
    /// Path of the WebSocket endpoint (default `/ws`).
    pub ws_path: String,
    /// Deliveries kept per topic for resume (default 100).
    pub history_len: usize,
    /// Oldest delivery kept for resume (default 10 min).
    pub history_age: Duration,
    /// Subscriptions per connection (default 100).
    pub max_topics_per_conn: usize,
    /// Topics on this node (default 100,000). At the limit, topics with
    /// nothing in them are dropped, then those without subscribers whose
    /// last delivery is oldest; if none can go, a new topic is refused
    /// (`too_many_topics`).
    pub max_topics: usize,
    /// Frame bytes kept in all topics' histories together (default
    /// 64 MiB). Over it, the histories of the topics published to longest
    /// ago are cleared; their sequence numbers go on, so a resume reports
    /// the loss.
    pub max_history_bytes: usize,
    /// Sustained requests per second per connection (default 50).
    pub rate_per_sec: f64,
    /// Burst of requests per connection (default [`DEFAULT_RATE_BURST`],
    /// 256).
    pub rate_burst: u32,
    /// Consecutive rate-limited requests after which the connection is
    /// closed with 1008 (default 50).
    pub rate_violation_limit: u32,
    /// The page served at `/` (the binary embeds the demo page).
    pub index_html: Option<&'static str>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            node: "local".into(),
            auth_secret: None,
            token_rules: TokenRules::default(),
            origins: OriginPolicy::SameHost,
            hosts: HostPolicy::Any,
            ws_path: "/ws".into(),
            history_len: 100,
            history_age: Duration::from_secs(600),
            max_topics_per_conn: 100,
            max_topics: 100_000,
            max_history_bytes: 64 << 20,
            rate_per_sec: 50.0,
            rate_burst: DEFAULT_RATE_BURST,
            rate_violation_limit: 50,
            index_html: None,
        }
    }
}

/// One connected client.
#[derive(Debug)]
struct Client {
    who: Identity,
    topics: Vec<String>,
    bucket: TokenBucket,
    /// When the token expires, on the loop's monotonic clock
    /// ([`Ctx::now_ms`], which the rate limiter also runs on: a wall-clock
    /// step neither starves nor floods it).
    expires_ms: Option<u64>,
    violations: u32,
    /// Deliveries dropped for a full queue, reported when it drains.
    gaps: Vec<Gap>,
    /// Resume replays not finished for a full queue. Continued when the
    /// queue drains; at most one per subscription.
    catch_up: Vec<CatchUp>,
}

impl Client {
    /// Its token's `exp` has passed (`now` from [`Ctx::now_ms`]).
    fn token_expired(&self, now: u64) -> bool {
        self.expires_ms.is_some_and(|at| now >= at)
    }
}

/// The pub/sub hub.
pub struct Hub {
    config: HubConfig,
    epoch: String,
    topics: Topics,
    clients: ConnIdMap<Client>,
    pending: ConnIdMap<Identity>,
    metrics: Metrics,
    anon_counter: u64,
    /// Deliveries of the current read not yet queued; empty between reads.
    batch: Batch,
}

/// Default request burst: a reconnecting client that resubscribes (with
/// `since`) and asks `presence` for each of its allowed
/// `max_topics_per_conn` (100) topics must not be rate-limited.
pub const DEFAULT_RATE_BURST: u32 = 256;

/// The error text when a new topic does not fit on the node.
const NODE_FULL: &str = "topic limit of this node reached";

/// Wall-clock milliseconds since the Unix epoch (delivery timestamps).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Hub {
    /// A hub with a fresh random epoch.
    pub fn new(config: HubConfig) -> Self {
        let epoch = random_hex(6);
        let limits = TopicLimits {
            max_topics: config.max_topics,
            max_history_bytes: config.max_history_bytes,
            history_len: config.history_len,
            history_age_ms: config.history_age.as_millis() as u64,
        };
        Hub {
            config,
            topics: Topics::new(epoch.clone(), limits),
            epoch,
            clients: ConnIdMap::default(),
            pending: ConnIdMap::default(),
            metrics: Metrics::default(),
            anon_counter: 0,
            batch: Batch::default(),
        }
    }

    /// This hub's epoch: sequence numbers are only comparable within it.
    /// A topic created after topics were dropped has an epoch of its own
    /// that starts with this one ([`Hub::topic_epoch`]).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The epoch of `topic`'s sequence numbers, if the topic exists.
    pub fn topic_epoch(&self, topic: &str) -> Option<&str> {
        self.topics.get(topic).map(|t| t.epoch.as_str())
    }

    /// Close `id`, whose token has expired, with 1008 (checked on every
    /// request and every heartbeat pong, so a silent client is closed
    /// within the idle timeout).
    #[cold]
    fn close_expired(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.metrics.drop("token_expired");
        self.flush_batch(ctx);
        ctx.close(id, CloseCode::POLICY, "token expired");
    }

    /// Current metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn send(&mut self, ctx: &mut Ctx<'_>, id: ConnId, text: &str) -> SendStatus {
        self.flush_batch(ctx);
        let s = ctx.send_text(id, text);
        self.metrics
            .sent(s, unmasked_frame_len(text.len()), || ctx.queued_bytes(id));
        s
    }

    fn error(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        req: Option<u64>,
        code: ErrorCode,
        msg: &str,
    ) {
        let e = protocol::error(req, code, msg);
        self.send(ctx, id, &e);
    }

    /// Give the next sequence number of `topic` to a message and frame the
    /// delivery once (its `ts` is wall-clock time). Returns the frame (also
    /// stored in history), or `None` if the node is at its topic limit and
    /// `topic` is new. History is stamped with the loop's monotonic clock
    /// ([`Ctx::now_ms`]), which its age limit runs on, so a wall-clock
    /// step neither keeps nor drops history early.
    fn sequence(
        &mut self,
        ctx: &Ctx<'_>,
        topic: &str,
        from: &str,
        data: &str,
    ) -> Option<(u64, Frame)> {
        let now_ms = ctx.now_ms();
        let wall = wall_ms();
        let node = &self.config.node;
        self.topics.publish(topic, now_ms, |epoch, seq| {
            let text = Delivery {
                topic,
                seq,
                epoch,
                node,
                from,
                ts: wall,
                data,
            }
            .encode();
            Frame::text(&text)
        })
    }

    /// Queue `frame` (a delivery of `seq` on `topic`) to every local
    /// subscriber but `exclude`.
    pub fn fan_out(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        seq: u64,
        frame: &Frame,
        exclude: Option<ConnId>,
    ) {
        self.flush_batch(ctx);
        self.deliver(ctx, topic, seq..=seq, frame, exclude);
    }

    /// Hold delivery `seq` of `topic` until the read is done (see
    /// [`super::batch`]); what is held already goes first if it cannot join.
    fn fan_out_batched(&mut self, ctx: &mut Ctx<'_>, topic: &str, seq: u64, frame: Frame) {
        if !self.batch.fits(topic, seq, frame.as_bytes().len()) {
            self.flush_batch(ctx);
        }
        self.batch.push(topic, seq, frame);
    }

    /// Queue the held deliveries to every subscriber of their topic. Called
    /// before the hub sends or changes anything else, so order is as if
    /// each had been queued at once.
    fn flush_batch(&mut self, ctx: &mut Ctx<'_>) {
        if self.batch.is_empty() {
            return;
        }
        let frame = self.batch.take();
        let topic = std::mem::take(&mut self.batch.topic);
        let seqs = self.batch.first..=self.batch.last;
        self.deliver(ctx, &topic, seqs, &frame, None);
        self.batch.topic = topic;
    }

    /// Queue `frame`, the deliveries `seqs` (consecutive) of `topic`, to
    /// every local subscriber but `exclude`.
    fn deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        seqs: RangeInclusive<u64>,
        frame: &Frame,
        exclude: Option<ConnId>,
    ) {
        let Some(t) = self.topics.get(topic) else {
            return;
        };
        let len = frame.as_bytes().len();
        let n = seqs.end() - seqs.start() + 1;
        // Subscribers catching up from history get these from there.
        let held = t.held();
        for &sub in t.subscribers() {
            if Some(sub) == exclude || (!held.is_empty() && held.contains(&sub)) {
                continue;
            }
            match ctx.send_frame(sub, frame) {
                SendStatus::Sent => {
                    self.metrics.fanout_deliveries += n;
                    self.metrics.out_n(n, len);
                }
                SendStatus::Backpressured => {
                    self.metrics.fanout_deliveries += n;
                    self.metrics.out_n(n, len);
                    self.metrics.queued(ctx.queued_bytes(sub));
                }
                SendStatus::Dropped => Self::dropped(
                    &mut self.metrics,
                    &mut self.clients,
                    sub,
                    topic,
                    &t.epoch,
                    &seqs,
                ),
                SendStatus::Closed => {}
            }
        }
    }

    /// The deliveries `seqs` of `topic` did not fit in `id`'s queue: count
    /// them and remember the gap (reported by a `gap` event once the queue
    /// drains).
    fn dropped(
        metrics: &mut Metrics,
        clients: &mut ConnIdMap<Client>,
        id: ConnId,
        topic: &str,
        epoch: &str,
        seqs: &RangeInclusive<u64>,
    ) {
        let (first, last) = (*seqs.start(), *seqs.end());
        metrics.drop_n("slow_consumer", last - first + 1);
        if let Some(c) = clients.get_mut(&id) {
            record_gap(&mut c.gaps, topic, epoch, first, last);
        }
    }

    fn subscribe(
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
            return self.error(
                ctx,
                id,
                req,
                ErrorCode::Forbidden,
                "not allowed to subscribe to this topic",
            );
        }
        let already = c.topics.iter().any(|t| t == topic);
        // The automatic inbox subscription does not count; other users'
        // inboxes (a token may allow `@*`) do.
        let inbox = inbox_topic(&c.who.user);
        let own = c.topics.iter().filter(|t| **t != inbox).count();
        if !already && topic != inbox && own >= self.config.max_topics_per_conn {
            return self.error(
                ctx,
                id,
                req,
                ErrorCode::TooManyTopics,
                "subscription limit reached",
            );
        }
        let user = c.who.user.clone();
        let now = ctx.now_ms();
        let Some(t) = self.topics.entry(topic) else {
            return self.error(ctx, id, req, ErrorCode::TooManyTopics, NODE_FULL);
        };
        let joined = !already && t.add(id, &user);
        self.topics.trim(topic, now);
        let Some(t) = self.topics.get(topic) else {
            return;
        };
        if !already {
            if let Some(c) = self.clients.get_mut(&id) {
                c.topics.push(topic.to_string());
            }
            self.metrics.subscriptions += 1;
        }
        // Resume: replay what the client missed and say whether that is all.
        let current = t.seq;
        // What to replay: the first seq and how many.
        let (replay, recovered, lost, epoch_changed) = match &since {
            None => ((None, 0), true, 0, false),
            // A seq beyond ours is not one of ours either.
            Some(s) if s.epoch == t.epoch && s.seq <= current => {
                let r = t.history.since(s.seq, current);
                let first = r.items.first().map(|i| i.seq);
                ((first, r.items.len()), r.complete, r.lost, false)
            }
            Some(_) => {
                // Another epoch (the node restarted or the topic was
                // dropped and recreated): our numbers are not theirs.
                // Replay what we have; recovery is incomplete.
                let all = t.history.all();
                ((all.first().map(|i| i.seq), all.len()), false, 0, true)
            }
        };
        let ack = protocol::ack(
            req,
            json!({
                "op": "sub", "topic": topic, "epoch": t.epoch, "seq": current,
                "resumed": since.is_some(), "recovered": recovered, "lost": lost,
                "epoch_changed": epoch_changed, "replayed": replay.1,
            }),
        );
        self.send(ctx, id, &ack);
        // The replay is paced by the client's queue: what does not fit now
        // follows as the queue drains, before any live delivery of the topic.
        // (A `sub` without `since` leaves an unfinished replay as it is.)
        if since.is_some() {
            // The resume supersedes gaps still to be reported for the
            // topic: the ack's `lost` and the replay say it all.
            if let Some(c) = self.clients.get_mut(&id) {
                c.gaps.retain(|g| g.topic != topic);
            }
            let pending = replay.0.and_then(|next| {
                let cu = CatchUp {
                    topic: topic.to_string(),
                    next,
                    skip: Vec::new(),
                };
                self.replay(ctx, id, cu)
            });
            self.set_catch_up(id, topic, pending);
        }
        if joined && !topic.starts_with('@') {
            let ev = json!({"type":"join","topic":topic,"user":user,"ts":wall_ms()}).to_string();
            self.notify(ctx, topic, &ev);
        }
    }

    /// Send `id` the deliveries of `cu.topic` from seq `cu.next` on, out of
    /// history, until its queue passes the soft limit. Returns what is left
    /// (a drain event will continue it), or `None` once caught up.
    /// Deliveries that left history meanwhile are reported as a `gap`.
    fn replay(&mut self, ctx: &mut Ctx<'_>, id: ConnId, mut cu: CatchUp) -> Option<CatchUp> {
        let t = self.topics.get(&cu.topic)?;
        let current = t.seq;
        let first = t
            .history
            .since(cu.next.saturating_sub(1), current)
            .items
            .first()
            .map_or(current + 1, |i| i.seq);
        let hard = ctx.config().max_queued_bytes;
        if first > cu.next {
            let epoch = t.epoch.clone();
            if ctx.queued_bytes(id).unwrap_or(0) >= hard {
                // Not even the gap event fits: wait for the drain.
                ctx.want_drain(id);
                return Some(cu);
            }
            // What left history before its turn, except the client's own
            // `exclude_self` publishes (never owed to it).
            let ranges = lost_ranges(cu.next, first, &cu.skip);
            for (a, b) in ranges {
                let ev = json!({"type":"gap","topic":cu.topic,"from":a,"to":b,"epoch":epoch})
                    .to_string();
                self.send(ctx, id, &ev);
            }
        }
        // Sent straight out of history (the frames are shared, not copied);
        // only the topic table is borrowed meanwhile.
        let t = self.topics.get(&cu.topic)?;
        let mut more = false;
        for s in t.history.since(cu.next.saturating_sub(1), current).items {
            let (seq, f) = (s.seq, &s.frame);
            cu.next = seq;
            if cu.skip.contains(&seq) {
                continue;
            }
            // Never push a full queue (its policy could close the client).
            if ctx.queued_bytes(id).unwrap_or(0) >= hard {
                more = true;
                break;
            }
            let s = ctx.send_frame(id, f);
            self.metrics
                .sent(s, f.as_bytes().len(), || ctx.queued_bytes(id));
            match s {
                SendStatus::Sent => {}
                SendStatus::Backpressured => {
                    cu.next = seq + 1;
                    more = seq < current;
                    break;
                }
                SendStatus::Dropped => {
                    more = true;
                    break;
                }
                SendStatus::Closed => return None,
            }
        }
        if !more {
            return None;
        }
        cu.skip.retain(|&s| s >= cu.next);
        // Continue once the queue is below its soft limit.
        ctx.want_drain(id);
        Some(cu)
    }

    /// Record where `id`'s replay of `topic` stands: live fan-out skips it
    /// while `pending` is set.
    fn set_catch_up(&mut self, id: ConnId, topic: &str, pending: Option<CatchUp>) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.catch_up.retain(|cu| cu.topic != topic);
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        match pending {
            Some(cu) => {
                c.catch_up.push(cu);
                t.hold(id);
            }
            None => t.release(id),
        }
    }

    /// `id`, catching up on `topic`, published `seq` with `exclude_self`:
    /// its replay must not bring it back.
    fn skip_in_replay(&mut self, id: ConnId, topic: &str, seq: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(cu) = c.catch_up.iter_mut().find(|cu| cu.topic == topic) {
            if cu.skip.len() < MAX_SKIP {
                cu.skip.push(seq);
            }
        }
    }

    /// Send a presence event to every subscriber of `topic`.
    fn notify(&mut self, ctx: &mut Ctx<'_>, topic: &str, text: &str) {
        self.flush_batch(ctx);
        let Some(t) = self.topics.get(topic) else {
            return;
        };
        let frame = Frame::text(text);
        for &sub in t.subscribers() {
            let s = ctx.send_frame(sub, &frame);
            self.metrics
                .sent(s, frame.as_bytes().len(), || ctx.queued_bytes(sub));
        }
    }

    fn unsubscribe(&mut self, ctx: &mut Ctx<'_>, id: ConnId, topic: &str) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        let Some(pos) = c.topics.iter().position(|t| t == topic) else {
            return false;
        };
        c.topics.swap_remove(pos);
        c.catch_up.retain(|cu| cu.topic != topic);
        c.gaps.retain(|g| g.topic != topic);
        let user = c.who.user.clone();
        self.metrics.subscriptions = self.metrics.subscriptions.saturating_sub(1);
        let left = self.topics.unsubscribe(topic, id, &user);
        if left && !topic.starts_with('@') {
            let ev = json!({"type":"leave","topic":topic,"user":user,"ts":wall_ms()}).to_string();
            self.notify(ctx, topic, &ev);
        }
        true
    }

    fn handle_request(&mut self, ctx: &mut Ctx<'_>, id: ConnId, text: &str) {
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
            self.flush_batch(ctx);
        }
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let user = c.who.user.clone();
        match req {
            Request::Sub {
                id: rid,
                topic,
                since,
            } => self.subscribe(ctx, id, rid, &topic, since),
            Request::Unsub { id: rid, topic } => {
                if self.unsubscribe(ctx, id, &topic) {
                    let a = protocol::ack(rid, json!({"op":"unsub","topic":topic}));
                    self.send(ctx, id, &a);
                } else {
                    self.error(
                        ctx,
                        id,
                        rid,
                        ErrorCode::NotSubscribed,
                        "not subscribed to this topic",
                    );
                }
            }
            Request::Pub {
                id: rid,
                topic,
                data,
                exclude_self,
            } => {
                if !protocol::valid_topic(&topic) {
                    return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid topic name");
                }
                if !c.who.may_publish(&topic) {
                    return self.error(
                        ctx,
                        id,
                        rid,
                        ErrorCode::Forbidden,
                        "not allowed to publish on this topic",
                    );
                }
                let Some((seq, frame)) = self.sequence(ctx, &topic, &user, data.get()) else {
                    return self.error(ctx, id, rid, ErrorCode::TooManyTopics, NODE_FULL);
                };
                self.metrics.publishes += 1;
                // The ack goes before the publisher's own copy of the delivery.
                if rid.is_some() {
                    let epoch = self.topic_epoch(&topic).unwrap_or(&self.epoch);
                    let a = protocol::ack(
                        rid,
                        json!({"op":"pub","topic":topic,"seq":seq,"epoch":epoch}),
                    );
                    self.send(ctx, id, &a);
                }
                if batchable {
                    self.fan_out_batched(ctx, &topic, seq, frame);
                } else {
                    let exclude = exclude_self.then_some(id);
                    self.fan_out(ctx, &topic, seq, &frame, exclude);
                    if exclude_self {
                        self.skip_in_replay(id, &topic, seq);
                    }
                }
            }
            Request::Dm { id: rid, to, data } => {
                if !super::auth::valid_user_id(&to) {
                    return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid user id");
                }
                if !c.who.may_dm(&to) {
                    return self.error(
                        ctx,
                        id,
                        rid,
                        ErrorCode::Forbidden,
                        "not allowed to message this user",
                    );
                }
                let inbox = inbox_topic(&to);
                let Some((seq, frame)) = self.sequence(ctx, &inbox, &user, data.get()) else {
                    return self.error(ctx, id, rid, ErrorCode::TooManyTopics, NODE_FULL);
                };
                self.metrics.publishes += 1;
                if rid.is_some() {
                    let epoch = self.topic_epoch(&inbox).unwrap_or(&self.epoch);
                    let a = protocol::ack(
                        rid,
                        json!({"op":"dm","to":to,"topic":inbox,"seq":seq,"epoch":epoch}),
                    );
                    self.send(ctx, id, &a);
                }
                self.fan_out(ctx, &inbox, seq, &frame, None);
            }
            Request::Presence { id: rid, topic } => {
                if !protocol::valid_topic(&topic) {
                    return self.error(ctx, id, rid, ErrorCode::BadTopic, "invalid topic name");
                }
                if !c.who.may_subscribe(&topic) {
                    return self.error(
                        ctx,
                        id,
                        rid,
                        ErrorCode::Forbidden,
                        "not allowed to see this topic",
                    );
                }
                let (members, conns) = self
                    .topics
                    .get(&topic)
                    .map(|t| (t.members(), t.subscribers().len()))
                    .unwrap_or_default();
                let r = json!({"type":"presence","id":rid,"topic":topic,"members":members,"count":members.len(),"connections":conns}).to_string();
                self.send(ctx, id, &r);
            }
        }
    }

    fn authenticate(&mut self, req: &HttpRequest) -> Result<Identity, TokenError> {
        let Some(secret) = &self.config.auth_secret else {
            self.anon_counter += 1;
            let user = format!("anon-{}-{}", random_hex(3), self.anon_counter);
            return Ok(Identity {
                user,
                subscribe: vec!["*".into()],
                publish: vec!["*".into()],
                dm: vec!["*".into()],
                anonymous: true,
                expires_ms: None,
            });
        };
        // RFC 9110 §11.1: the auth scheme name is case-insensitive.
        let bearer = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim_start().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .map(str::trim);
        let token = bearer
            .or_else(|| req.query_param("token"))
            .ok_or(TokenError::Missing)?;
        verify_jwt(token, secret, &self.config.token_rules, wall_ms())
    }
}

impl Handler for Hub {
    fn upgrade(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, req: &HttpRequest) -> Upgrade {
        if req.path_only() != self.config.ws_path {
            self.metrics.reject("path");
            return Upgrade::reject(404, "no WebSocket endpoint at this path");
        }
        if !self.config.hosts.allows(req.header("host")) {
            self.metrics.reject("host");
            return Upgrade::reject(403, "host not allowed");
        }
        if !self
            .config
            .origins
            .allows(req.header("origin"), req.header("host"))
        {
            self.metrics.reject("origin");
            return Upgrade::reject(403, "origin not allowed");
        }
        match self.authenticate(req) {
            Ok(who) => {
                self.pending.insert(id, who);
                Upgrade::accept()
            }
            Err(e) => {
                self.metrics.reject(e.label());
                Upgrade::Reject(
                    HttpResponse::text(401, e.reason()).with_header("WWW-Authenticate", "Bearer"),
                )
            }
        }
    }

    fn http(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> HttpResponse {
        if req.method != "GET" && req.method != "HEAD" {
            return HttpResponse::text(405, "method not allowed").with_header("Allow", "GET");
        }
        if !self.config.hosts.allows(req.header("host")) {
            return HttpResponse::text(403, "host not allowed");
        }
        match req.path_only() {
            "/" => match self.config.index_html {
                Some(html) => {
                    HttpResponse::new(200, "text/html; charset=utf-8", html.as_bytes().to_vec())
                }
                None => HttpResponse::text(404, "no page here"),
            },
            "/healthz" => HttpResponse::text(200, "ok"),
            "/metrics" => {
                self.metrics.topics = self.topics.len() as u64;
                self.metrics.history_bytes = self.topics.history_bytes() as u64;
                HttpResponse::new(
                    200,
                    "text/plain; version=0.0.4",
                    self.metrics.render().into_bytes(),
                )
            }
            p if p == self.config.ws_path => {
                HttpResponse::text(426, "WebSocket endpoint: upgrade required")
                    .with_header("Upgrade", "websocket")
            }
            _ => HttpResponse::text(404, "not found"),
        }
    }

    fn rejected(&mut self, _ctx: &mut Ctx<'_>, status: u16, _reason: &'static str) {
        // Bounded label set: the status class, not the free-text reason.
        self.metrics.reject(match status {
            400 => "bad_request",
            405 => "method",
            408 => "handshake_timeout",
            426 => "version",
            431 => "head_too_large",
            503 => "connection_limit",
            _ => "other",
        });
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.flush_batch(ctx);
        let Some(who) = self.pending.remove(&id) else {
            ctx.close(id, CloseCode::INTERNAL, "no identity");
            return;
        };
        self.metrics.connections_current += 1;
        self.metrics.connections_total += 1;
        let now = ctx.now_ms();
        let wall = wall_ms();
        let expires_ms = who
            .expires_ms
            .map(|exp| now.saturating_add(exp.saturating_sub(wall)));
        let inbox = inbox_topic(&who.user);
        let welcome = json!({
            "type":"welcome","user":who.user,"anonymous":who.anonymous,"node":self.config.node,
            "epoch":self.epoch,"inbox":inbox,
        })
        .to_string();
        self.clients.insert(
            id,
            Client {
                who,
                topics: Vec::new(),
                bucket: TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst, now),
                expires_ms,
                violations: 0,
                gaps: Vec::new(),
                catch_up: Vec::new(),
            },
        );
        self.send(ctx, id, &welcome);
        // Every connection receives its user's direct messages.
        self.subscribe(ctx, id, None, &inbox, None);
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        self.metrics.messages_in += 1;
        self.metrics.bytes_in += msg.as_bytes().len() as u64;
        let now = ctx.now_ms();
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.token_expired(now) {
            self.close_expired(ctx, id);
            return;
        }
        if !c.bucket.try_take(now) {
            c.violations += 1;
            self.metrics.drop("rate_limited");
            if c.violations >= self.config.rate_violation_limit {
                self.flush_batch(ctx);
                ctx.close(id, CloseCode::POLICY, "rate limit exceeded");
            } else {
                // The request is dropped unread, but its id is echoed so the
                // client knows which one to retry.
                let rid = match msg {
                    Message::Text(t) => protocol::request_id(t),
                    Message::Binary(_) => None,
                };
                self.error(
                    ctx,
                    id,
                    rid,
                    ErrorCode::RateLimited,
                    "rate limit exceeded; request dropped",
                );
            }
            return;
        }
        c.violations = 0;
        match msg {
            Message::Text(t) => self.handle_request(ctx, id, t),
            // RFC 6455 §7.4.1: 1003 for a data type the endpoint cannot accept.
            Message::Binary(_) => {
                self.flush_batch(ctx);
                ctx.close(id, CloseCode::UNSUPPORTED, "the hub protocol is JSON text")
            }
        }
    }

    fn read_done(&mut self, ctx: &mut Ctx<'_>, _id: ConnId) {
        self.flush_batch(ctx);
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.flush_batch(ctx);
        // Tell a client that caught up which deliveries it lost.
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let gaps = std::mem::take(&mut c.gaps);
        let catch_up = std::mem::take(&mut c.catch_up);
        for g in gaps {
            let ev =
                json!({"type":"gap","topic":g.topic,"from":g.first,"to":g.last,"epoch":g.epoch})
                    .to_string();
            self.send(ctx, id, &ev);
        }
        // Go on with unfinished resume replays.
        for cu in catch_up {
            let topic = cu.topic.clone();
            let pending = self.replay(ctx, id, cu);
            self.set_catch_up(id, &topic, pending);
        }
    }

    fn pong(&mut self, ctx: &mut Ctx<'_>, id: ConnId, _payload: &[u8]) {
        let now = ctx.now_ms();
        if self.clients.get(&id).is_some_and(|c| c.token_expired(now)) {
            self.close_expired(ctx, id);
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        self.flush_batch(ctx);
        self.metrics.close(info.code.0);
        self.pending.remove(&id);
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let topics = c.topics.clone();
        for t in topics {
            self.unsubscribe(ctx, id, &t);
        }
        self.clients.remove(&id);
        self.metrics.connections_current = self.metrics.connections_current.saturating_sub(1);
    }
}
