//! Helpers shared by the hub integration tests (`tests/hub_*.rs`): a hub
//! server on its own thread, a JSON-speaking client on top of the blocking
//! test client of `tests/common`, tokens, raw HTTP and `/metrics` parsing.
//!
//! Every test file that uses it declares `mod common;` and `mod hub_support;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wsmio::proto::handshake::ClientHandshake;
use wsmio::pubsub::auth::sign_jwt;
use wsmio::pubsub::{Hub, HubConfig};
use wsmio::{Config, Handle};

use crate::common::{self, Client, Ev, TIMEOUT};

/// The secret of the tests that use tokens.
pub const SECRET: &[u8] = b"hub-test-secret";

// ---------------------------------------------------------------- server

/// A hub running on its own thread.
pub struct Srv {
    pub addr: SocketAddr,
    pub handle: Handle,
    join: Option<JoinHandle<Hub>>,
}

impl Srv {
    /// Graceful shutdown; returns the hub (bounded wait).
    pub fn stop(mut self) -> Hub {
        let join = self.join.take().expect("running");
        common::stop(&self.handle, join)
    }

    /// Wait (bounded) for `run()` to return after a shutdown begun elsewhere.
    pub fn join(mut self, limit: Duration) -> Hub {
        common::join_within(self.join.take().expect("running"), limit)
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        // A failed test must not leave a loop behind.
        if self.join.is_some() {
            let _ = self.handle.shutdown();
        }
    }
}

/// A hub config for tests: defaults, but rate limits that never get in the
/// way (tests of the rate limit set their own).
pub fn hub_config() -> HubConfig {
    HubConfig {
        rate_per_sec: 1e9,
        rate_burst: 1_000_000,
        ..HubConfig::default()
    }
}

/// The same with an auth secret ([`SECRET`]).
pub fn hub_config_auth() -> HubConfig {
    HubConfig {
        auth_secret: Some(SECRET.to_vec()),
        ..hub_config()
    }
}

/// Start a hub with `hub` settings on a reactor with `cfg`.
pub fn serve(hub: HubConfig, cfg: Config) -> Srv {
    let (addr, handle, join) = common::start(Hub::new(hub), cfg);
    Srv {
        addr,
        handle,
        join: Some(join),
    }
}

/// Start a hub with `hub` settings and the test reactor config.
pub fn serve_hub(hub: HubConfig) -> Srv {
    serve(hub, common::config())
}

// ---------------------------------------------------------------- tokens

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A token for `user` signed with [`SECRET`], valid for an hour, that may
/// send direct messages to anyone.
pub fn token(user: &str, subscribe: &[&str], publish: &[&str]) -> String {
    sign_jwt(
        &json!({"sub": user, "exp": now_secs() + 3600,
                "subscribe": subscribe, "publish": publish, "dm": ["*"]}),
        SECRET,
    )
}

/// A token for `user` that may subscribe and publish anywhere.
pub fn token_all(user: &str) -> String {
    token(user, &["*"], &["*"])
}

// ---------------------------------------------------------------- raw HTTP

/// An upgrade request for `path` (with query) on `addr`, plus `extra`
/// headers, and the handshake to validate the answer with.
pub fn upgrade_request(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (Vec<u8>, ClientHandshake) {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut key = *b"wsmio hub key...";
    key[12..].copy_from_slice(&n.to_be_bytes());
    let hs = ClientHandshake::new(key, &[]);
    (hs.request(&addr.to_string(), path, extra), hs)
}

/// Try to open a WebSocket on `path`; `Err` is the refusal response.
pub fn try_ws(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Result<Client, String> {
    let (req, hs) = upgrade_request(addr, path, extra);
    Client::handshake(common::tcp(addr), &req, &hs, 0)
}

/// The full response to an upgrade on `path` that must be refused.
pub fn refused(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> String {
    let (req, _) = upgrade_request(addr, path, extra);
    common::http_exchange(addr, &req)
}

/// The body of an HTTP response.
pub fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `GET path` (no upgrade) and the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    common::http_exchange(addr, req.as_bytes())
}

/// `/metrics`, checked to be Prometheus text, as `name{labels}` → value.
pub fn metrics(addr: SocketAddr) -> HashMap<String, u64> {
    let resp = http_get(addr, "/metrics");
    assert_eq!(common::status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    assert!(
        common::has_header(&resp, "Content-Type", "text/plain; version=0.0.4"),
        "{resp}"
    );
    parse_prometheus(body(&resp))
}

/// Parse (and check) the Prometheus text exposition format: every sample
/// belongs to a family announced by `# HELP` and `# TYPE` lines.
pub fn parse_prometheus(text: &str) -> HashMap<String, u64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(!help.is_empty());
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            typed.insert(name.to_string(), kind.to_string());
        } else {
            let (key, value) = line.rsplit_once(' ').expect("sample has a value");
            let name = key.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "bad metric name in {line:?}"
            );
            if let Some(labels) = key.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    let (lname, lval) = inner.split_once('=').expect("label=value");
                    assert!(lname.chars().all(|c| c.is_ascii_lowercase()), "{line:?}");
                    assert!(lval.starts_with('"') && lval.ends_with('"'), "{line:?}");
                }
            }
            assert!(typed.contains_key(name), "{name} has no # TYPE line");
            assert!(helped.iter().any(|h| h == name), "{name} has no # HELP");
            if typed[name] == "counter" {
                assert!(name.ends_with("_total"), "counter {name} lacks _total");
            }
            let v: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            assert!(out.insert(key.to_string(), v).is_none(), "dup {key}");
        }
    }
    out
}

/// A metric value (0 if absent: labeled counters start without samples).
pub fn metric(m: &HashMap<String, u64>, key: &str) -> u64 {
    m.get(key).copied().unwrap_or(0)
}

/// Poll `/metrics` until `pred` holds (bounded by [`TIMEOUT`]).
pub fn metrics_until(
    addr: SocketAddr,
    what: &str,
    mut pred: impl FnMut(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let m = metrics(addr);
        if pred(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- client

/// A hub client: JSON requests out, JSON server messages in.
pub struct Hc {
    pub c: Client,
    pub user: String,
    pub epoch: String,
    pub welcome: Value,
    next_id: u64,
}

/// Connect to `/ws` on `addr` with `token` (anonymous if `None`) and check
/// the opening: `welcome`, then the ack of the inbox subscription.
pub fn connect(addr: SocketAddr, token: Option<&str>) -> Hc {
    let path = match token {
        Some(t) => format!("/ws?token={t}"),
        None => "/ws".into(),
    };
    let c = try_ws(addr, &path, &[]).unwrap_or_else(|r| panic!("refused: {r}"));
    Hc::opened(c)
}

/// Connect as `user` with a token allowed everything.
pub fn connect_as(addr: SocketAddr, user: &str) -> Hc {
    let hc = connect(addr, Some(&token_all(user)));
    assert_eq!(hc.user, user);
    hc
}

impl Hc {
    /// Read and check the welcome and inbox ack of a fresh connection.
    pub fn opened(c: Client) -> Hc {
        let mut hc = Hc {
            c,
            user: String::new(),
            epoch: String::new(),
            welcome: Value::Null,
            next_id: 1000,
        };
        let w = hc.expect("welcome");
        let user = w["user"].as_str().expect("welcome.user").to_string();
        let epoch = w["epoch"].as_str().expect("welcome.epoch").to_string();
        assert_eq!(w["inbox"], format!("@{user}"), "{w}");
        assert!(w["node"].is_string(), "{w}");
        assert!(w["anonymous"].is_boolean(), "{w}");
        let ack = hc.expect("ack");
        assert_eq!(ack["id"], Value::Null, "{ack}");
        assert_eq!(ack["op"], "sub", "{ack}");
        assert_eq!(ack["topic"], format!("@{user}"), "{ack}");
        // With the memory engine, the inbox's epoch is the node's, or (if
        // topics were dropped before it was created) the node's with a
        // suffix; with the Redis engine every topic has its own.
        let inbox_epoch = ack["epoch"].as_str().expect("ack.epoch");
        assert!(
            w["engine"] == "redis"
                || inbox_epoch == epoch
                || inbox_epoch.starts_with(&format!("{epoch}.")),
            "{ack}"
        );
        hc.user = user;
        hc.epoch = epoch;
        hc.welcome = w;
        hc
    }

    /// A fresh request id.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn send(&mut self, v: &Value) {
        self.c.send_text(&v.to_string());
    }

    /// The next server message, which must be a JSON text message, within
    /// `limit`; `None` if nothing came.
    pub fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        match self.c.next_within(limit)? {
            Ev::Text(t) => {
                Some(serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t:?}")))
            }
            other => panic!("{}: expected a JSON text message, got {other:?}", self.user),
        }
    }

    /// The next server message (panics after [`TIMEOUT`]).
    pub fn recv(&mut self) -> Value {
        self.recv_within(TIMEOUT)
            .unwrap_or_else(|| panic!("{}: no message within {TIMEOUT:?}", self.user))
    }

    /// The next message, which must have `"type": typ`.
    pub fn expect(&mut self, typ: &str) -> Value {
        let v = self.recv();
        assert_eq!(v["type"], typ, "{}: expected {typ}, got {v}", self.user);
        v
    }

    /// The next message: a `presence_diff` in which one user joined and
    /// nobody left, as `{"topic","user","count","ts"}`.
    pub fn expect_join(&mut self) -> Value {
        self.expect_change("joins", "leaves")
    }

    /// The next message: a `presence_diff` in which one user left and
    /// nobody joined, as `{"topic","user","count","ts"}`.
    pub fn expect_leave(&mut self) -> Value {
        self.expect_change("leaves", "joins")
    }

    fn expect_change(&mut self, one: &str, none: &str) -> Value {
        let v = self.expect("presence_diff");
        let users = v[one].as_array().expect("a list of users");
        assert_eq!(users.len(), 1, "{}: {v}", self.user);
        assert_eq!(v[none], serde_json::json!([]), "{}: {v}", self.user);
        serde_json::json!({
            "topic": v["topic"], "user": users[0], "count": v["count"], "ts": v["ts"]
        })
    }

    /// Skip messages until one of type `typ` (bounded).
    pub fn skip_to(&mut self, typ: &str) -> Value {
        loop {
            let v = self.recv();
            if v["type"] == typ {
                return v;
            }
        }
    }

    /// Send a request with a fresh id (added to `req`) and return the id.
    pub fn request(&mut self, mut req: Value) -> u64 {
        let id = self.id();
        req["id"] = id.into();
        self.send(&req);
        id
    }

    /// Subscribe; the next message must be the ack (returned).
    pub fn sub_ack(&mut self, topic: &str) -> Value {
        let id = self.request(json!({"op": "sub", "topic": topic}));
        let ack = self.expect("ack");
        assert_eq!(ack["id"], id, "{ack}");
        assert_eq!(ack["op"], "sub", "{ack}");
        assert_eq!(ack["topic"], topic, "{ack}");
        ack
    }

    /// Subscribe as this user's first connection on `topic`: the ack, then
    /// our own join event.
    pub fn sub(&mut self, topic: &str) -> Value {
        let ack = self.sub_ack(topic);
        let j = self.expect_join();
        assert_eq!(
            (&j["topic"], &j["user"]),
            (&json!(topic), &json!(self.user))
        );
        ack
    }

    /// Publish; returns the ack. The own delivery (if subscribed) is left.
    pub fn publish(&mut self, topic: &str, data: Value) -> Value {
        let id = self.request(json!({"op": "pub", "topic": topic, "data": data}));
        let ack = self.expect("ack");
        assert_eq!(ack["id"], id, "{ack}");
        assert_eq!(ack["op"], "pub", "{ack}");
        ack
    }

    /// Send a request with a fresh id that must be answered by an error
    /// with that id and `code`; returns the error.
    pub fn expect_error(&mut self, req: Value, code: &str) -> Value {
        let id = self.request(req);
        let e = self.expect("error");
        assert_eq!(e["id"], id, "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        e
    }

    /// Everything the server sent before the answer to a request sent now
    /// (a presence query on our own inbox, always allowed): since the hub
    /// answers in order, this shows what arrived before this point.
    pub fn barrier(&mut self) -> Vec<Value> {
        let id = self.request(json!({"op": "presence", "topic": format!("@{}", self.user)}));
        let mut before = Vec::new();
        loop {
            let v = self.recv();
            if v["type"] == "presence" && v["id"] == id {
                return before;
            }
            before.push(v);
        }
    }

    /// Nothing was sent to us before a barrier.
    pub fn assert_quiet(&mut self) {
        let got = self.barrier();
        assert!(got.is_empty(), "{}: unexpected {got:?}", self.user);
    }

    /// Close cleanly: our close 1000, the server's reply, then EOF.
    pub fn close(mut self) {
        self.c.close(1000, "bye");
        loop {
            match self.c.next() {
                Ev::Close(code, _) => {
                    assert_eq!(code, Some(1000));
                    break;
                }
                Ev::Text(_) => {} // in flight before the close
                other => panic!("expected the close reply, got {other:?}"),
            }
        }
        self.c.expect_eof();
    }
}

/// Check the fields of a delivery.
pub fn check_msg(m: &Value, topic: &str, seq: u64, epoch: &str, from: &str, data: &Value) {
    assert_eq!(m["type"], "msg", "{m}");
    assert_eq!(m["topic"], topic, "{m}");
    assert_eq!(m["seq"], seq, "{m}");
    assert_eq!(m["epoch"], epoch, "{m}");
    assert_eq!(m["from"], from, "{m}");
    assert_eq!(&m["data"], data, "{m}");
    assert!(m["node"].is_string(), "{m}");
    let ts = m["ts"].as_u64().expect("ts");
    let now = now_ms();
    assert!(ts <= now && ts + 60_000 > now, "ts {ts} vs now {now}");
}

/// Ask for `topic`'s presence until `pred` holds (bounded); presence
/// answers only are expected meanwhile (a join or leave fails the test).
pub fn presence_until(hc: &mut Hc, topic: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let id = hc.request(json!({"op": "presence", "topic": topic}));
        let p = hc.expect("presence");
        assert_eq!(p["id"], id, "{p}");
        assert_eq!(p["count"], p["members"].as_array().unwrap().len(), "{p}");
        if pred(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "presence never matched: {p}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
