//! Presence that scales: joins and leaves coalesced into `presence_diff`,
//! a `presence_count` (at most one a second) past `presence_events_max`,
//! `presence` answered a page at a time, and a join storm whose messages
//! grow linearly with its size, not quadratically.

mod common;
mod hub_support;

use std::time::{Duration, Instant};

use hub_support::*;
use serde_json::{json, Value};
use wsmio::pubsub::HubConfig;

fn capped(max: usize) -> HubConfig {
    HubConfig {
        presence_events_max: max,
        ..hub_config_auth()
    }
}

/// Messages until one matches `done` (bounded by `within`); the earlier
/// ones are returned with it.
fn until(hc: &mut Hc, within: Duration, done: impl Fn(&Value) -> bool) -> (Vec<Value>, Value) {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = hc
            .recv_within(left)
            .unwrap_or_else(|| panic!("nothing matched within {within:?}; got {before:?}"));
        if done(&v) {
            return (before, v);
        }
        before.push(v);
    }
}

#[test]
fn past_the_cap_members_get_a_throttled_count_and_diffs_resume_below_it() {
    let srv = serve_hub(capped(3));
    let mut w = connect_as(srv.addr, "w");
    w.sub("room");
    let mut others = Vec::new();
    for (i, u) in ["u1", "u2"].into_iter().enumerate() {
        let mut c = connect_as(srv.addr, u);
        c.sub("room");
        let j = w.expect_join();
        assert_eq!((&j["user"], &j["count"]), (&json!(u), &json!(i + 2)));
        others.push(c);
    }
    // The fourth member: over the cap, so a count (the first at once).
    let mut c = connect_as(srv.addr, "u3");
    c.sub_ack("room");
    let v = w.expect("presence_count");
    assert_eq!((&v["topic"], &v["count"]), (&json!("room"), &json!(4)));
    assert!(v["ts"].is_u64());
    others.push(c);
    // Two more within the second: one count, a second after the first.
    let sent = Instant::now();
    for u in ["u4", "u5"] {
        let mut c = connect_as(srv.addr, u);
        c.sub_ack("room");
        others.push(c);
    }
    let (before, v) = until(&mut w, Duration::from_secs(5), |v| v["count"] == 6);
    assert!(
        before.iter().all(|b| b["type"] == "presence_count"),
        "{before:?}"
    );
    assert_eq!(v["type"], "presence_count", "{v}");
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(700), "count after {took:?}");
    // The new members' own subscriptions saw the count too, never a diff.
    let last = others.last_mut().unwrap();
    let (_, v) = until(last, Duration::from_secs(5), |v| v["count"] == 6);
    assert_eq!(v["type"], "presence_count");
    // Back under the cap: diffs again (the list a client held is stale
    // after counts; it asks `presence` again).
    for _ in 0..3 {
        others.pop().unwrap().close();
    }
    let (before, v) = until(&mut w, Duration::from_secs(5), |v| {
        v["type"] == "presence_diff"
    });
    assert!(
        before.iter().all(|b| b["type"] == "presence_count"),
        "{before:?}"
    );
    assert_eq!(v["count"], 3, "{v}");
    let p = presence_until(&mut w, "room", |p| p["count"] == 3);
    assert_eq!(p["members"], json!(["u1", "u2", "w"]));
    let m = metrics(srv.addr);
    assert!(metric(&m, "wsmio_presence_counts_total") >= 2);
    assert!(metric(&m, "wsmio_presence_diffs_total") >= 3);
    srv.stop();
}

#[test]
fn presence_is_paged_by_name() {
    let srv = serve_hub(capped(100));
    let mut users: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    let mut conns = Vec::new();
    for u in &users {
        let mut c = connect_as(srv.addr, u);
        c.sub_ack("hall");
        conns.push(c);
    }
    let mut q = connect_as(srv.addr, "q");
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let id = q.request(json!({"op":"presence","topic":"hall","limit":7,"cursor":cursor}));
        let p = q.expect("presence");
        assert_eq!((&p["id"], &p["count"]), (&json!(id), &json!(30)), "{p}");
        let page = p["members"].as_array().unwrap();
        assert!(page.len() <= 7, "{p}");
        seen.extend(page.iter().map(|u| u.as_str().unwrap().to_string()));
        cursor = p["cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert_eq!(
            page.len(),
            7,
            "a page short of its limit ends the list: {p}"
        );
    }
    users.sort();
    assert_eq!(seen, users);
    // Without a limit: the default page (100) holds them all.
    let id = q.request(json!({"op":"presence","topic":"hall"}));
    let p = q.expect("presence");
    assert_eq!(
        (&p["id"], p["members"].as_array().unwrap().len()),
        (&json!(id), 30)
    );
    assert_eq!(p["cursor"], Value::Null);
    // A limit past the maximum is capped, not refused.
    q.request(json!({"op":"presence","topic":"hall","limit":1_000_000}));
    assert_eq!(
        q.expect("presence")["members"].as_array().unwrap().len(),
        30
    );
    let e = q.expect_error(
        json!({"op":"presence","topic":"hall","limit":0}),
        "bad_request",
    );
    assert!(e["message"].as_str().unwrap().contains("limit"), "{e}");
    let long = "x".repeat(200);
    q.expect_error(
        json!({"op":"presence","topic":"hall","cursor":long}),
        "bad_request",
    );
    q.expect_error(
        json!({"op":"presence","topic":"hall","limit":"ten"}),
        "bad_request",
    );
    srv.stop();
}

/// `n` members joining one topic cost messages in proportion to `n`: a
/// diff per member only up to the cap, then one count a second. (Before:
/// every join to every member, n²/2 messages.)
#[test]
fn a_join_storm_costs_messages_linear_in_its_size() {
    const N: u64 = 400;
    let srv = serve_hub(capped(50));
    let start = Instant::now();
    let mut conns = Vec::new();
    for i in 0..N {
        let mut c = connect_as(srv.addr, &format!("s{i:04}"));
        // Not read after the ack: a client that does not read holds
        // nothing it was not sent.
        c.sub_ack("storm");
        conns.push(c);
    }
    let secs = start.elapsed().as_secs() + 2;
    let m = metrics_until(srv.addr, "all connected", |m| {
        metric(m, "wsmio_connections") == N
    });
    let diffs = metric(&m, "wsmio_presence_diffs_total");
    let counts = metric(&m, "wsmio_presence_counts_total");
    let out = metric(&m, "wsmio_messages_out_total");
    // Welcome, inbox ack, sub ack per connection; diffs reach at most the
    // 50 first members each; counts at most one a second to everyone.
    let bound = 3 * N + 50 * 51 / 2 + secs * N;
    eprintln!(
        "join storm of {N}: {diffs} diffs, {counts} counts, {out} messages out \
         (bound {bound}; one join to every member would be {})",
        N * (N + 1) / 2
    );
    assert!(diffs <= 50, "{diffs} diffs");
    assert!(counts <= secs, "{counts} counts in {secs} s");
    assert!(out <= bound, "{out} messages out, bound {bound}");
    drop(conns);
    srv.stop();
}
