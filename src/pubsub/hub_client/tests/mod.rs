//! Tests of the hub client as a whole, driven with fake time (offsets
//! from one `Instant`) and scripted hub messages: a rig that plays the
//! transport and the hub, and one file per subject.

mod acks;
mod link;
mod outbox;
mod roster;
mod topics;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// The client under test and the fake clock.
pub(super) struct Rig {
    pub c: HubClient,
    pub now: Instant,
}

/// A config with the defaults, on a made-up endpoint, without auto-ack
/// (tests of acks turn it on).
pub(super) fn config() -> HubClientConfig {
    HubClientConfig {
        auto_ack: false,
        ..HubClientConfig::new("ws://hub.test/ws")
    }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Rig {
    /// A client with `config` and a seeded generator; its first
    /// `Connect` is checked and taken.
    pub fn new(config: HubClientConfig) -> Rig {
        let t0 = Instant::now();
        let c = HubClient::with_random(config, t0, Box::new(SeededRandom::new(42)));
        let mut rig = Rig { c, now: t0 };
        assert!(matches!(rig.actions()[..], [Action::Connect { .. }]));
        rig
    }

    pub fn default() -> Rig {
        Rig::new(config())
    }

    /// Move the clock by `d` and run the client's timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.timeout(self.now);
    }

    /// Move the clock to the client's next deadline (which must exist)
    /// and run the timers; returns how far it moved.
    pub fn run_to_deadline(&mut self) -> Duration {
        let at = self.c.poll_timeout().expect("a deadline");
        let d = at.saturating_duration_since(self.now);
        self.now = self.now.max(at);
        self.c.timeout(self.now);
        d
    }

    /// The transport opened the connection and the hub welcomed it, in
    /// node epoch `epoch`, with `presence_events_max` 100. Frames sent
    /// after the welcome are returned; events up to the welcome are
    /// taken (the last must be the welcome).
    pub fn open(&mut self, epoch: &str) -> Vec<Value> {
        self.c.connected(self.now);
        self.hub(
            json!({"type":"welcome","user":"alice","anonymous":false,"node":"local",
            "epoch":epoch,"inbox":"@alice","engine":"memory","presence_events_max":100}),
        );
        // What a real hub sends next: the ack of its own inbox
        // subscription, with no id (the client must ignore it).
        self.hub(
            json!({"type":"ack","id":null,"op":"sub","topic":"@alice","epoch":epoch,"seq":0,
            "resumed":false,"recovered":true,"lost":0,"epoch_changed":false,"replayed":0}),
        );
        let ev = self.events();
        assert!(matches!(ev.last(), Some(Event::Welcome(_))), "{ev:?}");
        self.sent()
    }

    /// The hub sends `v`.
    pub fn hub(&mut self, v: Value) {
        self.c.text(&v.to_string(), self.now);
    }

    /// The connection ended with close `code`.
    pub fn close(&mut self, code: u16, reason: &str) {
        let reason = CloseReason::Close {
            code,
            reason: reason.into(),
        };
        self.c.closed(reason, self.now);
    }

    /// Frames sent since the last call, as JSON.
    pub fn sent(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.c.poll_transmit())
            .map(|t| serde_json::from_str(&t).expect("the client sends JSON"))
            .collect()
    }

    pub fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.c.poll_action()).collect()
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    /// The hub acks `sub` request `req` (a JSON request as sent) at
    /// `epoch`/`seq`, with `extra` fields.
    pub fn sub_ack(&mut self, req: &Value, epoch: &str, seq: u64, extra: Value) {
        let mut ack = json!({"type":"ack","id":req["id"],"op":"sub","topic":req["topic"],
            "epoch":epoch,"seq":seq,"resumed":req.get("since").is_some(),"recovered":true,
            "lost":0,"epoch_changed":false,"replayed":0});
        if let (Some(a), Some(x)) = (ack.as_object_mut(), extra.as_object()) {
            a.extend(x.clone());
        }
        self.hub(ack);
    }

    /// The hub delivers `seq` of `topic` in `epoch`.
    pub fn msg(&mut self, topic: &str, epoch: &str, seq: u64) {
        self.hub(
            json!({"type":"msg","topic":topic,"seq":seq,"epoch":epoch,"node":"local",
            "from":"bob","ts":1,"data":{"n":seq}}),
        );
    }

    /// Subscribe to `topic` while connected and ack it at `epoch`/`seq`.
    pub fn subscribed(&mut self, topic: &str, opts: SubOptions, epoch: &str, seq: u64) {
        self.c.subscribe(topic, opts).unwrap();
        let sent = self.sent();
        let sub = sent
            .iter()
            .find(|r| r["op"] == "sub")
            .expect("a sub")
            .clone();
        self.sub_ack(&sub, epoch, seq, json!({}));
    }

    /// Seqs of the `Message` events among `events`.
    pub fn seqs(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }
}

/// A driver may move the client to another thread.
#[test]
fn the_client_is_send() {
    fn send<T: Send>() {}
    send::<HubClient>();
}

/// The requests among `sent` with `"op": op`.
pub(super) fn ops<'a>(sent: &'a [Value], op: &str) -> Vec<&'a Value> {
    sent.iter().filter(|r| r["op"] == op).collect()
}
