//! A reconnecting client of the hub, sans-IO: the logic of `wsmio.js` in
//! Rust — reconnect with backoff, resume every subscription, drop
//! duplicates, keep an outbox of publishes, batch acknowledgements, keep
//! member lists — with no socket and no clock of its own.
//!
//! In the style of quinn-proto and rustls: the [`HubClient`] is a state
//! machine. Whoever drives it (a reactor transport, a blocking facade, a
//! test) hands it what happened, with the time, and carries out what it
//! asks for:
//!
//! - **transport inputs**: [`HubClient::connected`] (the WebSocket is
//!   open), [`HubClient::text`] (a text message from the hub),
//!   [`HubClient::closed`] (the connection or the attempt ended, with a
//!   [`CloseReason`]), [`HubClient::timeout`] (the time given by
//!   [`HubClient::poll_timeout`] has come);
//! - **outputs**, polled after every input or call:
//!   [`HubClient::poll_transmit`] (text frames to send, in order),
//!   [`HubClient::poll_action`] ([`Action::Connect`] /
//!   [`Action::Disconnect`]; send the pending frames first),
//!   [`HubClient::poll_event`] (what the application is told: [`Event`]).
//!   These queues hold what was not polled yet, without a bound of their
//!   own: drain them after every input;
//! - **application calls**: [`HubClient::subscribe`],
//!   [`HubClient::unsubscribe`], [`HubClient::publish`],
//!   [`HubClient::dm`], [`HubClient::ack`], [`HubClient::presence`],
//!   [`HubClient::set_token`], [`HubClient::close`]. They take no time:
//!   the client uses the time of its latest input (call
//!   [`HubClient::timeout`] first if much time went by).
//!
//! The transport's contract: each [`Action::Connect`] is answered by
//! `connected` then, when it ends, `closed` — or by `closed` alone if it
//! never opened; after an [`Action::Disconnect`] the transport closes (or
//! abandons) the connection and reports `closed`. Heartbeats (ping/pong)
//! and the connect and handshake timeouts of the socket are the
//! transport's; the client bounds the whole attempt too
//! ([`HubClientConfig::connect_timeout`]).
//!
//! What it does, as `wsmio.js` does (see its opening comment and
//! `docs/PROTOCOL.md`):
//!
//! - reconnects after a random delay in `[0, min(max_delay, base_delay ·
//!   2ⁿ)]`, the count started over only after a connection stayed up
//!   `stable_after` (`backoff.rs`). Close codes: 1000 after
//!   [`HubClient::close`] ends it; 1008 "token expired" (or an upgrade
//!   refused with 401 "token expired" while it had a token) asks for a
//!   token ([`Event::TokenNeeded`]) and reconnects at once with it;
//!   4000–4999 and an upgrade refused with 401 or 403 stop
//!   ([`Event::Stopped`]); everything else (1001, 1006, 1011, 1012, 1013,
//!   a 429 or 503 upgrade, no connection at all) reconnects;
//! - resubscribes every topic after the `welcome`, from the last seq seen
//!   (or [`Since`] the first time), drops duplicates by seq within an
//!   epoch, reports [`Event::Subscribed`] (`recovered`, `lost`,
//!   `epoch_changed`), [`Event::Gap`], [`Event::Reset`], and follows a new
//!   epoch after `reset` or `epoch_changed` (`topics.rs`);
//! - keeps publishes and direct messages in a bounded outbox, each with an
//!   idempotency key, sends them in order after the `welcome`, again with
//!   the same key after a drop, again after a short random wait when the
//!   hub answers `unavailable`, and reports each once
//!   ([`Event::PublishAcked`], `duplicate` or not, or
//!   [`Event::PublishFailed`]) (`outbox.rs`);
//! - acknowledges what was processed, cumulatively, at most once per topic
//!   per [`HubClientConfig::ack_every`];
//! - keeps member lists for topics subscribed with a roster
//!   (`roster.rs`).
//!
//! A request unanswered within [`HubClientConfig::request_timeout`] means
//! the connection is stuck: it is replaced (publishes waiting for their
//! ack go again, with their keys). A message from the hub the client
//! cannot read is an [`Event::Error`] with code `bad_message`, never a
//! panic.
//!
//! Files, one job each: this one (the state and the calls), `link.rs`
//! (connection lifecycle and close codes), `inbound.rs` (the hub's
//! messages), `wire.rs` (the protocol's JSON), `topics.rs`, `outbox.rs`,
//! `roster.rs`, `pending.rs`, `backoff.rs`, `random.rs`, `config.rs`,
//! `api.rs` (what callers hand in), `events.rs` (what comes out),
//! `blocking.rs` ([`BlockingHub`]: this client on a blocking socket),
//! `on_loop.rs` ([`LoopHub`]: this client in a reactor handler, over the
//! loop's client connections and application timers).
//!
//! # Example
//!
//! The state machine driven by hand, with scripted hub messages:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wsmio::pubsub::hub_client::{
//!     Action, CloseReason, Event, HubClient, HubClientConfig, SubOptions,
//! };
//!
//! let t0 = Instant::now();
//! let config = HubClientConfig::new("ws://127.0.0.1:9001/ws").with_token("T0");
//! let mut hub = HubClient::new(config, t0);
//! assert_eq!(
//!     hub.poll_action(),
//!     Some(Action::Connect { url: "ws://127.0.0.1:9001/ws?token=T0".into() })
//! );
//! hub.subscribe("room", SubOptions::default()).unwrap();
//! // Not connected yet: the publish waits in the outbox.
//! let id = hub.publish("room", r#"{"text":"hi"}"#, false).unwrap();
//! assert_eq!(hub.poll_transmit(), None);
//!
//! hub.connected(t0);
//! hub.text(r#"{"type":"welcome","user":"alice","anonymous":false,"node":"local",
//!     "epoch":"e1","inbox":"@alice","engine":"memory","presence_events_max":100}"#, t0);
//! // After the welcome: the subscription, then the outbox, in order.
//! let sub = hub.poll_transmit().unwrap();
//! assert_eq!(sub, r#"{"op":"sub","topic":"room","id":1}"#);
//! let publish = hub.poll_transmit().unwrap();
//! assert!(publish.starts_with(r#"{"op":"pub","topic":"room","data":{"text":"hi"},"idempotency_key":""#));
//!
//! hub.text(r#"{"type":"ack","id":1,"op":"sub","topic":"room","epoch":"e1","seq":0,
//!     "resumed":false,"recovered":true,"lost":0,"epoch_changed":false,"replayed":0}"#, t0);
//! hub.text(r#"{"type":"ack","id":2,"op":"pub","topic":"room","seq":1,"epoch":"e1"}"#, t0);
//! let msg = r#"{"type":"msg","topic":"room","seq":1,"epoch":"e1","node":"local",
//!     "from":"alice","ts":1,"data":{"text":"hi"}}"#;
//! hub.text(msg, t0);
//! hub.text(msg, t0); // a duplicate: dropped
//!
//! let mut seen = Vec::new();
//! while let Some(ev) = hub.poll_event() {
//!     match ev {
//!         Event::Welcome(w) => assert_eq!(w.user, "alice"),
//!         Event::Subscribed(s) => assert_eq!((s.topic.as_str(), s.seq), ("room", 0)),
//!         Event::PublishAcked { id: acked, seq, .. } => assert_eq!((acked, seq), (id, 1)),
//!         Event::Message(m) => seen.push(m.data),
//!         other => panic!("{other:?}"),
//!     }
//! }
//! assert_eq!(seen, [r#"{"text":"hi"}"#]);
//!
//! // The hub restarts: the client waits a random while, then reconnects.
//! hub.closed(CloseReason::Close { code: 1001, reason: "server restarting".into() }, t0);
//! assert!(matches!(hub.poll_event(), Some(Event::Disconnected { .. })));
//! let Some(Event::Reconnecting { attempt: 1, delay }) = hub.poll_event() else { panic!() };
//! assert!(delay <= Duration::from_millis(500));
//! assert_eq!(hub.poll_timeout(), Some(t0 + delay));
//! hub.timeout(t0 + delay);
//! assert!(matches!(hub.poll_action(), Some(Action::Connect { .. })));
//! // After the next welcome, "room" resumes after seq 1:
//! // {"op":"sub","topic":"room","since":{"epoch":"e1","seq":1},"id":3}
//! ```

mod api;
pub(crate) mod backoff;
mod blocking;
mod config;
mod events;
mod inbound;
mod link;
mod on_loop;
mod outbox;
mod pending;
mod random;
mod roster;
mod topics;
mod wire;

#[cfg(test)]
mod tests;

pub use api::{
    CloseReason, OutboxError, Position, PublishId, RequestError, RequestId, Since, SubOptions,
};
pub use blocking::{BlockingHub, PublishAck, TokenSource, WaitError};
pub use config::HubClientConfig;
pub use events::{Action, Event, Message, PublishError, StopReason, Subscribed, Welcome};
pub use on_loop::LoopHub;
pub use random::{OsRandom, RandomSource, SeededRandom};

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::protocol::{json_depth_exceeds, valid_topic, MAX_DATA_DEPTH, PRESENCE_PAGE_MAX};
use backoff::Backoff;
use link::Link;
use outbox::{State, Target};
use pending::{Pending, Waiting};
use topics::Topic;
use wire::Request;

/// A reconnecting hub client, sans-IO. See the [module](self) for how to
/// drive it.
pub struct HubClient {
    config: HubClientConfig,
    token: Option<String>,
    /// The token came from `set_token` after `TokenNeeded` and no
    /// connection opened with it yet: if it is refused as expired too,
    /// the client stops instead of asking again.
    fresh_token: bool,
    random: Box<dyn RandomSource>,
    /// The time of the latest input.
    now: Instant,
    link: Link,
    backoff: Backoff,
    /// The current connection's welcome.
    welcome: Option<Welcome>,
    /// `presence_events_max` of the latest welcome.
    cap: Option<u64>,
    topics: BTreeMap<String, Topic>,
    outbox: outbox::Outbox,
    pending: Pending,
    last_request: u64,
    /// When the batched acknowledgements go out.
    ack_flush_at: Option<Instant>,
    transmits: VecDeque<String>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    duplicates: u64,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("url", &self.config.url)
            .field("link", &self.link)
            .field("topics", &self.topics.len())
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client of `config.url`, with randomness from the operating
    /// system. It asks to connect at once ([`Action::Connect`]).
    pub fn new(config: HubClientConfig, now: Instant) -> Self {
        Self::with_random(config, now, Box::new(OsRandom::default()))
    }

    /// The same with `random` for jitter and idempotency keys (a
    /// [`SeededRandom`] makes a run repeatable).
    pub fn with_random(
        config: HubClientConfig,
        now: Instant,
        random: Box<dyn RandomSource>,
    ) -> Self {
        let mut c = HubClient {
            token: config.token.clone(),
            config,
            fresh_token: false,
            random,
            now,
            link: Link::Stopped,
            backoff: Backoff::default(),
            welcome: None,
            cap: None,
            topics: BTreeMap::new(),
            outbox: outbox::Outbox::default(),
            pending: Pending::default(),
            last_request: 0,
            ack_flush_at: None,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            duplicates: 0,
        };
        c.connect_now();
        c
    }

    // ------------------------------------------------------------ outputs

    /// The next text frame to send on the current connection.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmits.pop_front()
    }

    /// The next thing the transport must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application. With
    /// [`HubClientConfig::auto_ack`], a message handed out here counts as
    /// processed.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        if let Event::Message(m) = &ev {
            if self.config.auto_ack {
                self.ack(&m.topic, &m.epoch, m.seq);
            }
        }
        Some(ev)
    }

    /// When [`HubClient::timeout`] must be called next (`None`: only
    /// when something else happens).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let welcomed = self.is_connected();
        [
            self.link.deadline(self.config.request_timeout),
            self.pending.next_deadline().filter(|_| welcomed),
            self.outbox.next_retry(),
            self.topics.values().filter_map(|t| t.retry_at).min(),
            self.ack_flush_at.filter(|_| welcomed),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------ state

    /// Whether a connection is open and welcomed.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Open { welcomed: true, .. })
    }

    /// Whether the client stopped for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self.link, Link::Stopped)
    }

    /// The current connection's welcome.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// Where `topic` stands: the last message seen (or where its
    /// subscription started) — the next subscription resumes after it.
    pub fn position(&self, topic: &str) -> Option<&Position> {
        self.topics.get(topic)?.last.as_ref()
    }

    /// Messages dropped as duplicates so far.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }

    /// Publishes and direct messages not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    // ------------------------------------------------------------ calls

    /// Subscribe to `topic` now or, while disconnected, after the next
    /// welcome; after every reconnect it is resumed. Subscribing to a
    /// topic subscribed already does nothing.
    pub fn subscribe(&mut self, topic: &str, opts: SubOptions) -> Result<(), RequestError> {
        if self.is_stopped() {
            return Err(RequestError::Stopped);
        }
        if !valid_topic(topic) {
            return Err(RequestError::BadTopic);
        }
        if self.topics.contains_key(topic) {
            return Ok(());
        }
        if self.topics.len() >= self.config.max_topics {
            return Err(RequestError::TooManyTopics {
                limit: self.config.max_topics,
            });
        }
        self.topics.insert(topic.to_owned(), Topic::new(opts));
        if self.is_connected() {
            self.send_sub(topic);
        }
        Ok(())
    }

    /// Stop following `topic`. Returns whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(t) = self.topics.remove(topic) else {
            return false;
        };
        if self.is_connected() && (t.live || t.sub_request.is_some()) {
            let id = self.next_request();
            let text = Request::Unsub { topic, id }.encode();
            self.send_request(id, Waiting::Unsub, text);
        }
        true
    }

    /// Publish `data` (one JSON value, as text) on `topic`. Sent now if
    /// connected, else after the next welcome; reported once by
    /// [`Event::PublishAcked`] or [`Event::PublishFailed`] with the id
    /// returned here. `exclude_self`: not delivered to this connection.
    pub fn publish(
        &mut self,
        topic: &str,
        data: &str,
        exclude_self: bool,
    ) -> Result<PublishId, OutboxError> {
        let target = Target::Topic {
            topic: topic.to_owned(),
            exclude_self,
        };
        self.enqueue(topic, target, data)
    }

    /// A direct message to `user` (to every connection of the user,
    /// through its inbox `@user`); otherwise as [`HubClient::publish`].
    pub fn dm(&mut self, user: &str, data: &str) -> Result<PublishId, OutboxError> {
        self.enqueue(user, Target::User(user.to_owned()), data)
    }

    fn enqueue(
        &mut self,
        name: &str,
        target: Target,
        data: &str,
    ) -> Result<PublishId, OutboxError> {
        if self.is_stopped() {
            return Err(OutboxError::Stopped);
        }
        if !valid_topic(name) {
            return Err(OutboxError::BadTopic);
        }
        let data = RawValue::from_string(data.to_owned())
            .map_err(|e| OutboxError::InvalidJson(e.to_string()))?;
        if json_depth_exceeds(data.get(), MAX_DATA_DEPTH) {
            let why = format!("nested deeper than {MAX_DATA_DEPTH} levels");
            return Err(OutboxError::InvalidJson(why));
        }
        let key = random::key(&mut *self.random);
        let id = self
            .outbox
            .push(target, data, key, self.config.outbox_limit)?;
        if self.is_connected() {
            self.send_publish(id);
        }
        Ok(id)
    }

    /// The application processed `topic` up to `seq` of `epoch`
    /// (cumulative). Sent batched: at most one acknowledgement per topic
    /// per [`HubClientConfig::ack_every`]. A position of an epoch the
    /// topic no longer follows is ignored.
    pub fn ack(&mut self, topic: &str, epoch: &str, seq: u64) {
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        if t.processed(epoch, seq) && self.ack_flush_at.is_none() {
            self.ack_flush_at = Some(self.now + self.config.ack_every);
        }
    }

    /// Ask for one page of `topic`'s members (after `cursor`, the
    /// previous page's); answered by [`Event::PresencePage`], or by
    /// [`Event::Error`] with the returned id.
    pub fn presence(
        &mut self,
        topic: &str,
        cursor: Option<&str>,
    ) -> Result<RequestId, RequestError> {
        if self.is_stopped() {
            return Err(RequestError::Stopped);
        }
        if !valid_topic(topic) {
            return Err(RequestError::BadTopic);
        }
        if !self.is_connected() {
            return Err(RequestError::NotConnected);
        }
        Ok(self.send_page(topic, cursor, false))
    }

    /// The token for the next connections — the answer to
    /// [`Event::TokenNeeded`] (then the client connects at once), or a
    /// fresh one ahead of time.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.token = Some(token.into());
        if let Link::NeedToken { .. } = self.link {
            self.fresh_token = true;
            self.backoff.reset();
            self.connect_now();
        }
    }

    // ------------------------------------------------------------ sending

    /// A fresh request id.
    fn next_request(&mut self) -> u64 {
        self.last_request += 1;
        self.last_request
    }

    /// Send request `id` (its `text`), waited for until the request
    /// timeout.
    fn send_request(&mut self, id: u64, what: Waiting, text: String) {
        self.transmits.push_back(text);
        let deadline = self.now + self.config.request_timeout;
        self.pending.insert(id, what, deadline);
    }

    fn send_sub(&mut self, topic: &str) {
        let id = self.next_request();
        let Some(t) = self.topics.get_mut(topic) else {
            return;
        };
        t.sub_request = Some(id);
        t.retry_at = None;
        let text = Request::Sub {
            topic,
            since: t.since(),
            id,
        }
        .encode();
        let what = Waiting::Sub {
            topic: topic.to_owned(),
        };
        self.send_request(id, what, text);
    }

    fn send_publish(&mut self, id: PublishId) {
        let request = self.next_request();
        let Some(e) = self.outbox.get_mut(id) else {
            return;
        };
        e.state = State::Sent { request };
        let text = e.request(request);
        self.send_request(request, Waiting::Publish(id), text);
    }

    /// Ask for a page of members; returns the request id.
    fn send_page(&mut self, topic: &str, cursor: Option<&str>, roster: bool) -> u64 {
        let id = self.next_request();
        let text = Request::Presence {
            topic,
            limit: PRESENCE_PAGE_MAX as u64,
            cursor,
            id,
        }
        .encode();
        let what = Waiting::Presence {
            topic: topic.to_owned(),
            roster,
        };
        self.send_request(id, what, text);
        id
    }

    /// Send what the outbox has due, in order.
    fn flush_outbox(&mut self) {
        for id in self.outbox.due(self.now) {
            self.send_publish(id);
        }
    }

    /// Send the batched acknowledgements of live topics.
    fn flush_acks(&mut self) {
        self.ack_flush_at = None;
        if !self.is_connected() {
            return; // sent after the topics are subscribed again
        }
        for (topic, t) in &mut self.topics {
            if let Some(p) = t.take_ack() {
                let text = Request::Ack {
                    topic,
                    seq: p.seq,
                    epoch: &p.epoch,
                }
                .encode();
                self.transmits.push_back(text);
            }
        }
    }

    /// A wait of about `retry_delay`: random in `[½, 1½]` of it.
    fn jittered_retry(&mut self) -> Duration {
        let d = self.config.retry_delay;
        d / 2 + random::up_to(&mut *self.random, d)
    }

    fn error(&mut self, request: Option<u64>, code: &str, message: impl Into<String>) {
        self.events.push_back(Event::Error {
            request,
            code: code.to_owned(),
            message: message.into(),
        });
    }
}
