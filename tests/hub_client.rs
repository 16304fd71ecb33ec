//! The sans-IO hub client (`wsmio::pubsub::hub_client`) against a real
//! hub, through a small blocking transport written here over the test
//! client of `tests/common`: a publish/subscribe round trip; the hub
//! killed and started again on the same port while the client keeps
//! going (memory engine: the epoch changes and the client says so; the
//! outbox flushes exactly once per message); the TCP connection cut right
//! after a publish (the same idempotency key again: stored once); an
//! expired token refreshed; the blocking facade and the callback form on
//! a reactor loop (`LoopHub`) through a hub restart.

mod common;
mod hub_support;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{Client, Ev, TIMEOUT};
use hub_support::*;
use serde_json::json;
use wsmio::proto::handshake::ClientHandshake;
use wsmio::pubsub::auth::sign_jwt;
use wsmio::pubsub::hub_client::{
    Action, CloseReason, Event, HubClient, HubClientConfig, PublishId, SubOptions,
};
use wsmio::pubsub::Hub;
use wsmio::{Handle, Server};

// ---------------------------------------------------------------- hub

/// A hub on a given address (so that a new one can take the old one's
/// port), with tokens.
struct Node {
    handle: Handle,
    join: Option<JoinHandle<Hub>>,
}

impl Node {
    fn start(addr: SocketAddr) -> Node {
        // The old listener is closed when its loop returns; retry briefly
        // in case the port is not free yet.
        let deadline = Instant::now() + TIMEOUT;
        let server = loop {
            match Server::bind(addr, common::config()) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind {addr}: {e}; retrying");
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let handle = server.handle();
        let hub = Hub::new(hub_config_auth());
        let join = thread::spawn(move || server.run(hub).expect("Server::run"));
        Node {
            handle,
            join: Some(join),
        }
    }

    fn stop(mut self) {
        if let Some(join) = self.join.take() {
            common::stop(&self.handle, join);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.join.is_some() {
            let _ = self.handle.shutdown();
        }
    }
}

/// A free loopback port (bound by a first hub on port 0).
fn first_node() -> (Node, SocketAddr) {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), common::config()).expect("bind");
    let addr = server.local_addr();
    let handle = server.handle();
    let join = thread::spawn(move || server.run(Hub::new(hub_config_auth())).expect("run"));
    let node = Node {
        handle,
        join: Some(join),
    };
    (node, addr)
}

// ---------------------------------------------------------------- transport

/// The blocking transport: carries out the client's actions on real
/// sockets, sends its frames, feeds it what the hub sends, and runs its
/// timers on the real clock.
struct Driver {
    hub: HubClient,
    conn: Option<Client>,
    /// Every event so far.
    log: Vec<Event>,
}

/// `ws://host:port/path?query` → (address, path with query).
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let (host, path) = rest.split_once('/').expect("a path");
    (host.parse().expect("host:port"), format!("/{path}"))
}

/// The status of an HTTP response head (0 if none).
fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Driver {
    fn new(config: HubClientConfig) -> Driver {
        Driver {
            hub: HubClient::new(config, Instant::now()),
            conn: None,
            log: Vec::new(),
        }
    }

    fn connect(&mut self, url: &str) {
        let (addr, path) = split_url(url);
        let stream = match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                let error = e.to_string();
                return self
                    .hub
                    .closed(CloseReason::ConnectFailed { error }, Instant::now());
            }
        };
        stream.set_nodelay(true).unwrap();
        let hs = ClientHandshake::new(*b"hub client key..", &[]);
        let req = hs.request(&addr.to_string(), &path, &[]);
        match Client::handshake(stream, &req, &hs, 0) {
            Ok(c) => {
                self.conn = Some(c);
                self.hub.connected(Instant::now());
            }
            Err(resp) => {
                let body = resp
                    .split_once("\r\n\r\n")
                    .map_or("", |(_, b)| b)
                    .to_string();
                let reason = CloseReason::HandshakeRefused {
                    status: status(&resp),
                    body,
                };
                self.hub.closed(reason, Instant::now());
            }
        }
    }

    /// The connection ended (as the transport saw it).
    fn lost(&mut self, code: u16, reason: String) {
        self.conn = None;
        let reason = CloseReason::Close { code, reason };
        self.hub.closed(reason, Instant::now());
    }

    /// One turn: frames out, actions, up to `wait` of input, timers.
    fn turn(&mut self, wait: Duration) {
        while let Some(text) = self.hub.poll_transmit() {
            if let Some(c) = self.conn.as_mut() {
                let frame = c.frame_bytes(wsmio::proto::OpCode::Text, true, text.as_bytes());
                if c.try_send_raw(&frame).is_err() {
                    self.lost(1006, String::new());
                }
            }
        }
        while let Some(action) = self.hub.poll_action() {
            match action {
                Action::Connect { url } => self.connect(&url),
                Action::Disconnect => {
                    if let Some(c) = self.conn.take() {
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                    self.lost(1000, "bye".into());
                }
                other => panic!("unknown action {other:?}"),
            }
        }
        self.read(wait);
        let now = Instant::now();
        if self.hub.poll_timeout().is_some_and(|t| t <= now) {
            self.hub.timeout(now);
        }
        self.log
            .extend(std::iter::from_fn(|| self.hub.poll_event()));
    }

    fn read(&mut self, wait: Duration) {
        let Some(c) = self.conn.as_mut() else {
            let until = self
                .hub
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + wait);
            thread::sleep(until.saturating_duration_since(Instant::now()).min(wait));
            return;
        };
        match c.next_within(wait) {
            None => {}
            Some(Ev::Text(t)) => self.hub.text(&t, Instant::now()),
            Some(Ev::Ping(p)) => c.pong(&p),
            Some(Ev::Close(code, reason)) => {
                let _ = c.stream.flush();
                self.lost(code.unwrap_or(1005), reason);
            }
            Some(Ev::Eof) | Some(Ev::Reset) => self.lost(1006, String::new()),
            Some(other) => panic!("unexpected {other:?}"),
        }
    }

    /// Run until `done` holds for the events so far (bounded).
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&[Event]) -> bool) {
        let deadline = Instant::now() + 3 * TIMEOUT;
        while !done(&self.log) {
            assert!(
                Instant::now() < deadline,
                "never saw {what}; events: {:#?}",
                self.log
            );
            self.turn(Duration::from_millis(5));
        }
    }

    /// Cut the TCP connection without a close frame, as a network would.
    fn cut(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        self.lost(1006, String::new());
    }
}

fn config(addr: SocketAddr, user: &str) -> HubClientConfig {
    HubClientConfig {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        ack_every: Duration::from_millis(50),
        ..HubClientConfig::new(format!("ws://{addr}/ws")).with_token(token_all(user))
    }
}

/// (epoch, seq, data) of every message on `topic` in `log`.
fn messages(log: &[Event], topic: &str) -> Vec<(String, u64, String)> {
    log.iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.topic == topic => Some((m.epoch.clone(), m.seq, m.data.clone())),
            _ => None,
        })
        .collect()
}

/// How many times each publish was reported acked, and with what.
fn acks(log: &[Event]) -> HashMap<PublishId, Vec<(String, u64, bool)>> {
    let mut out: HashMap<PublishId, Vec<_>> = HashMap::new();
    for e in log {
        if let Event::PublishAcked {
            id,
            epoch,
            seq,
            duplicate,
            ..
        } = e
        {
            out.entry(*id)
                .or_default()
                .push((epoch.clone(), *seq, *duplicate));
        }
    }
    out
}

fn count(log: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    log.iter().filter(|e| f(e)).count()
}

// ---------------------------------------------------------------- tests

#[test]
fn round_trip_restart_with_a_new_epoch_and_the_outbox_sent_once() {
    let (node, addr) = first_node();
    let mut d = Driver::new(config(addr, "carol"));
    d.hub
        .subscribe("room", SubOptions::default().with_roster())
        .unwrap();
    let first = d.hub.publish("room", r#""one""#, false).unwrap();
    d.run_until("the first message", |l| messages(l, "room").len() == 1);
    let welcome = d.hub.welcome().expect("welcomed").clone();
    assert_eq!(welcome.user, "carol");
    let old_epoch = welcome.epoch.clone();
    assert_eq!(acks(&d.log)[&first], [(old_epoch.clone(), 1, false)]);
    d.run_until("the member list", |l| {
        l.iter().any(
            |e| matches!(e, Event::Presence { members: Some(m), count: 1, .. } if m == &["carol"]),
        )
    });

    // Another user publishes: delivered once.
    let mut bob = connect_as(addr, "bob");
    bob.publish("room", json!("from bob"));
    d.run_until("bob's message", |l| messages(l, "room").len() == 2);

    // The hub goes away; publishes made meanwhile wait in the outbox.
    bob.c.stream.shutdown(Shutdown::Both).ok();
    node.stop();
    d.run_until("the close", |l| {
        l.iter().any(|e| matches!(e, Event::Disconnected { .. }))
    });
    let two = d.hub.publish("room", r#""two""#, false).unwrap();
    let three = d.hub.publish("room", r#""three""#, false).unwrap();
    // A few attempts fail while nothing listens.
    d.run_until("failed attempts", |l| {
        count(l, |e| matches!(e, Event::Reconnecting { .. })) >= 3
    });
    assert_eq!(d.hub.outbox_len(), 2);

    // A new hub on the same port: another epoch.
    let node = Node::start(addr);
    d.run_until("both publishes acked and delivered", |l| {
        messages(l, "room").len() == 4 && acks(l).len() == 3
    });
    let new_epoch = d.hub.welcome().expect("welcomed").epoch.clone();
    assert_ne!(new_epoch, old_epoch, "a restarted hub has a new epoch");
    // The client resumed from what it saw and was told the epoch changed.
    let resumed = d.log.iter().rev().find_map(|e| match e {
        Event::Subscribed(s) if s.topic == "room" => Some(s.clone()),
        _ => None,
    });
    let s = resumed.expect("resubscribed");
    assert!(s.resumed && s.epoch_changed && !s.recovered, "{s:?}");
    assert_eq!(s.epoch, new_epoch);
    // Each publish acked exactly once; the outbox went in order.
    let a = acks(&d.log);
    assert_eq!(a[&two], [(new_epoch.clone(), 1, false)]);
    assert_eq!(a[&three], [(new_epoch.clone(), 2, false)]);
    assert_eq!(
        messages(&d.log, "room"),
        [
            (old_epoch.clone(), 1, r#""one""#.into()),
            (old_epoch.clone(), 2, r#""from bob""#.into()),
            (new_epoch.clone(), 1, r#""two""#.into()),
            (new_epoch.clone(), 2, r#""three""#.into()),
        ]
    );
    // Nothing more arrives: no message twice.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        d.turn(Duration::from_millis(10));
    }
    assert_eq!(messages(&d.log, "room").len(), 4);
    assert_eq!(d.hub.duplicates_dropped(), 0);
    assert_eq!(d.hub.outbox_len(), 0);
    d.hub.close();
    d.run_until("stopped", |l| {
        l.iter().any(|e| matches!(e, Event::Stopped { .. }))
    });
    node.stop();
}

#[test]
fn a_publish_cut_off_before_its_ack_is_stored_once() {
    let (node, addr) = first_node();
    let mut watcher = connect_as(addr, "watcher");
    watcher.sub("room");
    let mut d = Driver::new(config(addr, "dave"));
    d.run_until("welcome", |l| {
        l.iter().any(|e| matches!(e, Event::Welcome(_)))
    });
    let id = d.hub.publish("room", r#""once""#, false).unwrap();
    // The frame leaves, then the connection is cut before the ack is read.
    d.turn(Duration::ZERO);
    d.cut();
    // The hub took it: the watcher sees it.
    let m = watcher.skip_to("msg");
    assert_eq!(m["data"], "once");
    d.run_until("the ack", |l| !acks(l).is_empty());
    // Sent again with the same key after the reconnect: the hub knew it.
    assert_eq!(acks(&d.log)[&id], [(watcher.epoch.clone(), 1, true)]);
    // And the watcher got it once.
    let later = watcher.barrier();
    assert!(later.iter().all(|v| v["type"] != "msg"), "{later:?}");
    d.hub.close();
    d.run_until("stopped", |l| {
        l.iter().any(|e| matches!(e, Event::Stopped { .. }))
    });
    node.stop();
}

#[test]
fn an_expired_token_is_refreshed() {
    let (node, addr) = first_node();
    let short = sign_jwt(
        &json!({"sub":"erin","exp":now_secs() + 2,"subscribe":["*"],"publish":["*"]}),
        SECRET,
    );
    let mut cfg = config(addr, "erin");
    cfg.token = Some(short);
    let mut d = Driver::new(cfg);
    d.hub.subscribe("room", SubOptions::default()).unwrap();
    d.run_until("subscribed", |l| {
        l.iter().any(|e| matches!(e, Event::Subscribed(_)))
    });
    // Past `exp` the next request is answered by close 1008 "token expired".
    thread::sleep(Duration::from_millis(2100));
    let id = d.hub.publish("room", r#""after expiry""#, false).unwrap();
    d.run_until("the token request", |l| l.contains(&Event::TokenNeeded));
    assert!(d.log.iter().any(|e| matches!(e,
        Event::Disconnected { reason: CloseReason::Close { code: 1008, reason } } if reason == "token expired")));
    d.hub.set_token(token_all("erin"));
    d.run_until("the publish acked and delivered", |l| {
        acks(l).contains_key(&id) && !messages(l, "room").is_empty()
    });
    assert_eq!(messages(&d.log, "room")[0].2, r#""after expiry""#);
    assert_eq!(
        count(&d.log, |e| matches!(e, Event::Subscribed(_))),
        2,
        "subscribed again on the new connection"
    );
    d.hub.close();
    d.run_until("stopped", |l| {
        l.iter().any(|e| matches!(e, Event::Stopped { .. }))
    });
    node.stop();
}

/// The blocking facade (`BlockingHub`, on `reactor::BlockingClient`):
/// publish and wait for the ack, receive, then the hub goes away and a new
/// one comes on the same port; a publish made meanwhile is acked once,
/// after the reconnect, and the subscription resumes in the new epoch.
#[test]
fn the_blocking_facade_survives_a_hub_restart() {
    use wsmio::pubsub::hub_client::BlockingHub;
    use wsmio::reactor::ClientOptions;

    let (node, addr) = first_node();
    let mut hub = BlockingHub::new(config(addr, "bob"), ClientOptions::default());
    hub.client()
        .subscribe("news", SubOptions::default())
        .unwrap();
    let first = hub
        .publish_wait("news", r#"{"n":1}"#, TIMEOUT)
        .expect("first ack");
    assert_eq!(first.seq, 1);
    let got = loop {
        match hub.next_event(TIMEOUT).expect("an event") {
            Event::Message(m) => break m,
            _ => continue,
        }
    };
    assert_eq!((got.seq, got.data.as_str()), (1, r#"{"n":1}"#));
    node.stop();
    // While the hub is away: the publish waits in the outbox.
    let id = hub.client().publish("news", r#"{"n":2}"#, false).unwrap();
    thread::sleep(Duration::from_millis(300));
    let node = Node::start(addr);
    let ack = hub
        .wait_for(id, 3 * TIMEOUT)
        .expect("ack after the restart");
    assert_eq!(
        (ack.seq, ack.duplicate),
        (1, false),
        "a new epoch numbers from 1"
    );
    assert_ne!(ack.epoch, first.epoch);
    let mut seen = Vec::new();
    while let Some(ev) = hub.next_event(Duration::from_millis(500)) {
        if let Event::Message(m) = ev {
            seen.push((m.epoch, m.seq, m.data));
        }
    }
    assert_eq!(seen, [(ack.epoch.clone(), 1, r#"{"n":2}"#.to_string())]);
    hub.close(TIMEOUT);
    node.stop();
}

// ---------------------------------------------------------------- on the loop

/// A reactor handler embedding the callback form ([`LoopHub`]): forwards
/// the hub connection's callbacks and timer to it, and its events to the
/// test.
struct OnLoop {
    hub: Option<wsmio::pubsub::hub_client::LoopHub>,
    events: std::sync::mpsc::Sender<Event>,
}

/// The application timer token of the hub client.
const HUB_TIMER: u64 = 7;

impl OnLoop {
    fn drain(&mut self) {
        let Some(hub) = self.hub.as_mut() else { return };
        while let Some(ev) = hub.poll_event() {
            let _ = self.events.send(ev);
        }
    }

    fn hub(&mut self) -> &mut wsmio::pubsub::hub_client::LoopHub {
        self.hub.as_mut().expect("started")
    }
}

impl wsmio::Handler for OnLoop {
    type Conn = ();
    fn open(&mut self, ctx: &mut wsmio::Ctx<'_>, id: wsmio::ConnId) {
        assert!(self.hub().on_open(ctx, id), "only the hub's connection");
        self.drain();
    }
    fn message(&mut self, ctx: &mut wsmio::Ctx<'_>, id: wsmio::ConnId, msg: wsmio::Message<'_>) {
        assert!(self.hub().on_message(ctx, id, msg));
        self.drain();
    }
    fn close(&mut self, ctx: &mut wsmio::Ctx<'_>, id: wsmio::ConnId, info: wsmio::CloseInfo) {
        assert!(self.hub().on_close(ctx, id, info));
        self.drain();
    }
    fn connect_failed(
        &mut self,
        ctx: &mut wsmio::Ctx<'_>,
        id: wsmio::ConnId,
        e: wsmio::ConnectError,
    ) {
        assert!(self.hub().on_connect_failed(ctx, id, e));
        self.drain();
    }
    fn timer(&mut self, ctx: &mut wsmio::Ctx<'_>, token: u64) {
        assert!(self.hub().on_timer(ctx, token));
        self.drain();
    }
}

/// Run `f` on the loop with the embedded hub client, pump it, return
/// what `f` returned.
fn on_loop<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&mut HubClient) -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .call_handler(move |h: &mut OnLoop, ctx| {
            let _ = tx.send(f(h.hub().client()));
            h.hub().pump(ctx);
            h.drain();
        })
        .unwrap();
    rx.recv_timeout(TIMEOUT).expect("the loop ran the call")
}

/// The next event matching `pred` within `limit` (the others kept in
/// `log`).
fn wait_event(
    rx: &std::sync::mpsc::Receiver<Event>,
    log: &mut Vec<Event>,
    limit: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx.recv_timeout(left).expect("the event in time");
        log.push(ev.clone());
        if pred(&ev) {
            return ev;
        }
    }
}

/// The callback form on a loop of its own: the hub stops and a new one
/// comes on the same port; a publish made meanwhile is acked once, after
/// the reconnect (timers on the loop's application timers), and the
/// subscription resumes in the new epoch.
#[test]
fn the_loop_hub_survives_a_hub_restart() {
    use wsmio::pubsub::hub_client::LoopHub;
    use wsmio::reactor::ClientOptions;

    let (node, addr) = first_node();
    let (tx, rx) = std::sync::mpsc::channel();
    let lp = Server::new(common::config()).unwrap();
    let handle = lp.handle();
    let join = thread::spawn(move || {
        lp.run(OnLoop {
            hub: None,
            events: tx,
        })
        .unwrap()
    });
    let (itx, irx) = std::sync::mpsc::channel();
    handle
        .call_handler(move |h: &mut OnLoop, ctx| {
            let mut hub = LoopHub::new(
                config(addr, "bob"),
                ClientOptions::default(),
                HUB_TIMER,
                ctx.now(),
            );
            hub.client()
                .subscribe("news", SubOptions::default())
                .unwrap();
            let id = hub.client().publish("news", r#"{"n":1}"#, false).unwrap();
            hub.pump(ctx);
            h.hub = Some(hub);
            let _ = itx.send(id);
        })
        .unwrap();
    let first_id = irx.recv_timeout(TIMEOUT).unwrap();
    let mut log = Vec::new();
    let first = wait_event(
        &rx,
        &mut log,
        TIMEOUT,
        |e| matches!(e, Event::PublishAcked { id, .. } if *id == first_id),
    );
    let Event::PublishAcked {
        seq,
        epoch: first_epoch,
        ..
    } = first
    else {
        unreachable!()
    };
    assert_eq!(seq, 1);
    wait_event(
        &rx,
        &mut log,
        TIMEOUT,
        |e| matches!(e, Event::Message(m) if m.seq == 1 && m.data == r#"{"n":1}"#),
    );
    node.stop();
    // While the hub is away: the publish waits in the outbox.
    let id = on_loop(&handle, |c| c.publish("news", r#"{"n":2}"#, false).unwrap());
    thread::sleep(Duration::from_millis(300));
    let node = Node::start(addr);
    let mut log = Vec::new();
    let ack = wait_event(
        &rx,
        &mut log,
        3 * TIMEOUT,
        |e| matches!(e, Event::PublishAcked { id: i, .. } if *i == id),
    );
    let Event::PublishAcked {
        seq,
        epoch,
        duplicate,
        ..
    } = ack
    else {
        unreachable!()
    };
    assert_eq!((seq, duplicate), (1, false), "a new epoch numbers from 1");
    assert_ne!(epoch, first_epoch);
    while let Ok(ev) = rx.recv_timeout(Duration::from_millis(500)) {
        log.push(ev);
    }
    assert_eq!(
        messages(&log, "news"),
        [(epoch.clone(), 1, r#"{"n":2}"#.to_string())]
    );
    assert_eq!(acks(&log)[&id].len(), 1, "the outbox flushed exactly once");
    on_loop(&handle, |c| c.close());
    common::stop(&handle, join);
    node.stop();
}
