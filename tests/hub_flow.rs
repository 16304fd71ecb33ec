//! Flow control and lifecycle of the hub over real sockets: slow consumers
//! (close and drop policies) next to fast ones, a resume larger than the
//! queue, rate limits, the shutdown drain, and `/metrics`.

mod common;
mod hub_support;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::Ev;
use hub_support::*;
use serde_json::{json, Value};
use wsmio::pubsub::HubConfig;
use wsmio::{Config, FullQueuePolicy};

const KIB: usize = 1024;
/// Payload of a flood message.
const PAD: usize = 16 * KIB;
/// Queue limit of the slow-consumer tests.
const MAX_QUEUED: usize = 64 * KIB;

fn big(i: u64) -> Value {
    json!({"i": i, "pad": "x".repeat(PAD)})
}

fn slow_config(policy: FullQueuePolicy) -> Config {
    common::config()
        .with_max_queued_bytes(MAX_QUEUED)
        .with_backpressure_limit(16 * KIB)
        .with_full_queue_policy(policy)
        // The slow client reads its close frame only after the flood.
        .with_close_timeout(Duration::from_secs(10))
}

const DROPS: &str = "wsmio_drops_total{reason=\"slow_consumer\"}";

/// What a flood on `flood` did.
struct Flooded {
    /// Deliveries published (the last one is the end marker).
    total: u64,
    /// Deliveries a fast reader (on its own thread) saw, in order.
    fast_seqs: Vec<u64>,
    /// How long the flood took.
    took: Duration,
    fast: Hc,
    publisher: Hc,
}

/// `slow` is subscribed to `flood` and not reading. A publisher (itself a
/// subscriber that reads its copies) sends batches of large messages, and
/// a fast subscriber reads on its own thread, until the server reports a
/// slow-consumer drop; then ten more batches and an end marker.
fn flood(srv: &Srv) -> Flooded {
    let mut fast = connect(srv.addr, None);
    fast.sub("flood");
    let mut p = connect(srv.addr, None);
    p.sub("flood");
    fast.expect_join();
    let reader = thread::spawn(move || {
        let mut seqs = Vec::new();
        loop {
            let v = fast.recv();
            if v["type"] == "msg" {
                seqs.push(v["seq"].as_u64().unwrap());
                if v["data"]["end"] == true {
                    return (fast, seqs);
                }
            }
        }
    });
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut after_drop = None;
    let publish_batch = |p: &mut Hc, sent: &mut u64, n: u64, end: bool| {
        for _ in 0..n {
            *sent += 1;
            let data = if end {
                json!({"end": true})
            } else {
                big(*sent)
            };
            p.send(&json!({"op":"pub","topic":"flood","data":data}));
        }
        // The publisher reads its own copies (it is a reader too).
        loop {
            let v = p.recv();
            if v["type"] == "msg" && v["seq"] == *sent {
                break;
            }
        }
    };
    // Batches of two: the server reads all that arrived before it writes
    // (one flush per loop turn), so a batch must fit in a queue even of a
    // subscriber that keeps up.
    for batch in 1.. {
        publish_batch(&mut p, &mut sent, 2, false);
        match after_drop {
            None if batch % 8 == 0 && metric(&metrics(srv.addr), DROPS) > 0 => after_drop = Some(0),
            None => {}
            Some(10) => break,
            Some(n) => after_drop = Some(n + 1),
        }
        assert!(
            sent < 100_000,
            "no slow-consumer drop after {sent} deliveries"
        );
    }
    publish_batch(&mut p, &mut sent, 1, true);
    let (fast, fast_seqs) = reader.join().unwrap();
    Flooded {
        total: sent,
        fast_seqs,
        took: t0.elapsed(),
        fast,
        publisher: p,
    }
}

#[test]
fn slow_consumer_is_closed_and_never_slows_the_others() {
    let srv = serve(hub_config(), slow_config(FullQueuePolicy::Close));
    let mut slow = connect(srv.addr, None);
    slow.sub("flood");
    // From here on, `slow` does not read.
    let f = flood(&srv);
    let total = f.total;
    // The fast subscriber got everything, in order, while the slow one sat.
    assert_eq!(f.fast_seqs, (1..=total).collect::<Vec<_>>());
    assert!(f.took < Duration::from_secs(15), "flood took {:?}", f.took);

    // The slow client's queue never went past the limit plus one message.
    let m = metrics(srv.addr);
    let frame = big(1).to_string().len() + 512;
    let high = metric(&m, "wsmio_outbound_queue_high_water_bytes");
    assert!(
        high >= (MAX_QUEUED / 2) as u64 && high <= (MAX_QUEUED + frame) as u64,
        "queue high water {high}"
    );
    assert!(metric(&m, DROPS) >= 1);

    // Reading now: a prefix of the deliveries, then close 1008.
    let mut got = Vec::new();
    let reason = loop {
        match slow.c.next() {
            Ev::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "msg" {
                    got.push(v["seq"].as_u64().unwrap());
                }
            }
            Ev::Close(code, reason) => {
                assert_eq!(code, Some(1008));
                break reason;
            }
            other => panic!("expected deliveries then close 1008, got {other:?}"),
        }
    };
    assert_eq!(reason, "send queue full");
    assert!(!got.is_empty() && (got.len() as u64) < total, "{got:?}");
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    slow.c.close(1008, "");
    slow.c.expect_eof();
    let slow_user = slow.user.clone();
    drop(slow);

    let m = metrics_until(srv.addr, "the 1008 close", |m| {
        metric(m, "wsmio_closes_total{code=\"1008\"}") == 1
    });
    assert_eq!(metric(&m, "wsmio_connections"), 2);
    // The others saw it leave and are still fine.
    let (mut fast, mut p) = (f.fast, f.publisher);
    for c in [&mut fast, &mut p] {
        assert_eq!(c.expect_leave()["user"], json!(slow_user));
    }
    p.publish("flood", json!("after"));
    assert_eq!(p.expect("msg")["seq"], total + 1);
    assert_eq!(fast.expect("msg")["seq"], total + 1);
    fast.close();
    p.close();
    srv.stop();
}

#[test]
fn slow_consumer_under_drop_policy_gets_a_gap_event() {
    let srv = serve(hub_config(), slow_config(FullQueuePolicy::Drop));
    let mut slow = connect(srv.addr, None);
    slow.sub("flood");
    let f = flood(&srv);
    let total = f.total;
    assert_eq!(f.fast_seqs, (1..=total).collect::<Vec<_>>());
    assert!(f.took < Duration::from_secs(15), "flood took {:?}", f.took);
    let m = metrics(srv.addr);
    let dropped = metric(&m, DROPS);
    assert!(dropped >= 1);
    let frame = big(1).to_string().len() + 512;
    let high = metric(&m, "wsmio_outbound_queue_high_water_bytes");
    assert!(high <= (MAX_QUEUED + frame) as u64, "high water {high}");

    // Reading again: what fit in the queue, then a gap event for the rest.
    let mut delivered = BTreeSet::new();
    let mut missing = BTreeSet::new();
    while (delivered.len() + missing.len()) < total as usize {
        let v = slow.recv();
        match v["type"].as_str().unwrap() {
            "msg" => {
                let seq = v["seq"].as_u64().unwrap();
                assert!(delivered.last().is_none_or(|&l| l < seq), "order");
                assert!(delivered.insert(seq));
            }
            "gap" => {
                assert_eq!(
                    (&v["topic"], &v["epoch"]),
                    (&json!("flood"), &json!(slow.epoch))
                );
                let (from, to) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
                assert!(from <= to && to <= total, "{v}");
                for s in from..=to {
                    assert!(!delivered.contains(&s), "gap {v} covers delivered {s}");
                    assert!(missing.insert(s), "gap {v} reported twice");
                }
            }
            "presence_diff" => {}
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(missing.len() as u64, dropped, "every drop is in a gap");
    assert!(delivered.contains(&1));
    // The connection stayed open and gets live deliveries again.
    let (mut fast, mut p) = (f.fast, f.publisher);
    p.publish("flood", json!("after"));
    let m = slow.skip_to("msg");
    assert_eq!(
        (&m["seq"], &m["data"]),
        (&json!(total + 1), &json!("after"))
    );
    assert_eq!(fast.skip_to("msg")["seq"], total + 1);
    let m = metrics(srv.addr);
    assert_eq!(metric(&m, "wsmio_connections"), 3);
    assert_eq!(metric(&m, "wsmio_closes_total{code=\"1008\"}"), 0);
    slow.close();
    fast.close();
    p.close();
    srv.stop();
}

#[test]
fn a_replay_larger_than_the_queue_arrives_whole_under_drop_policy() {
    const N: u64 = 20;
    let srv = serve(
        HubConfig {
            history_len: 100,
            ..hub_config()
        },
        slow_config(FullQueuePolicy::Drop),
    );
    let mut p = connect(srv.addr, None);
    for i in 1..=N {
        p.request(json!({"op":"pub","topic":"hist","data":big(i)}));
        p.expect("ack");
    }
    // N * 16 KiB of history is larger than the 64 KiB queue: the replay is
    // paced by the queue, so nothing is dropped. (A gap for the rest, then
    // another resume, is what a client would do if it were not.)
    let mut c = connect(srv.addr, None);
    let epoch = c.epoch.clone();
    let mut have = 0u64;
    let mut rounds = 0;
    while have < N {
        rounds += 1;
        assert!(rounds <= N, "no progress");
        let id = c.request(json!({"op":"sub","topic":"hist","since":{"epoch":epoch,"seq":have}}));
        let ack = c.skip_to("ack");
        assert_eq!(ack["id"], id);
        assert_eq!(
            (&ack["recovered"], &ack["replayed"]),
            (&json!(true), &json!(N - have))
        );
        loop {
            let v = c.recv();
            match v["type"].as_str().unwrap() {
                "msg" => {
                    assert_eq!(v["seq"], have + 1);
                    assert_eq!(v["data"]["i"], have + 1);
                    have += 1;
                    if have == N {
                        break;
                    }
                }
                "gap" => {
                    assert_eq!((&v["from"], &v["to"]), (&json!(have + 1), &json!(N)), "{v}");
                    break;
                }
                "presence_diff" => {}
                _ => panic!("unexpected {v}"),
            }
        }
    }
    // Every message arrived exactly once, in order, in one round.
    assert_eq!(rounds, 1);
    c.assert_quiet_or_join();
    c.close();
    p.close();
    srv.stop();
}

trait QuietOrJoin {
    fn assert_quiet_or_join(&mut self);
}

impl QuietOrJoin for Hc {
    fn assert_quiet_or_join(&mut self) {
        let got = self.barrier();
        assert!(got.iter().all(|v| v["type"] == "presence_diff"), "{got:?}");
    }
}

#[test]
fn rate_limited_requests_get_errors_then_a_1008_close() {
    let srv = serve_hub(HubConfig {
        rate_per_sec: 0.001,
        rate_burst: 5,
        rate_violation_limit: 4,
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);
    // The inbox subscription is the server's doing: the burst is intact.
    for _ in 0..5 {
        a.publish("r", json!(1));
    }
    // Over the limit: each request is dropped with an error (its id echoed).
    for _ in 0..3 {
        let e = a.expect_error(json!({"op":"pub","topic":"r","data":2}), "rate_limited");
        assert!(e["message"].as_str().unwrap().contains("rate limit"));
    }
    // The dropped publishes were not sequenced.
    a.send(&json!({"op":"pub","topic":"r","data":3,"id":99}));
    match a.c.next() {
        Ev::Close(code, reason) => {
            assert_eq!(code, Some(1008));
            assert_eq!(reason, "rate limit exceeded");
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    a.c.close(1008, "");
    a.c.expect_eof();
    drop(a);
    let m = metrics_until(srv.addr, "the 1008 close", |m| {
        metric(m, "wsmio_closes_total{code=\"1008\"}") == 1
    });
    assert_eq!(metric(&m, "wsmio_drops_total{reason=\"rate_limited\"}"), 4);
    assert_eq!(metric(&m, "wsmio_publishes_total"), 5);
    srv.stop();
}

/// At the default limits, a client that reconnects and at once resumes
/// every topic it may hold (`max_topics_per_conn`) and asks who is there
/// is not rate-limited.
#[test]
fn a_full_resubscribe_fits_the_default_burst() {
    let d = HubConfig::default();
    let srv = serve_hub(HubConfig {
        rate_per_sec: d.rate_per_sec,
        rate_burst: d.rate_burst,
        rate_violation_limit: d.rate_violation_limit,
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);
    let epoch = a.epoch.clone();
    let n = d.max_topics_per_conn;
    for i in 0..n {
        let topic = format!("room.{i}");
        a.send(&json!({"op":"sub","topic":topic,"since":{"epoch":epoch,"seq":0},"id":2 * i}));
        a.send(&json!({"op":"presence","topic":topic,"id":2 * i + 1}));
    }
    let mut answered = 0;
    while answered < 2 * n {
        let v = a.recv();
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "ack" || v["type"] == "presence" {
            answered += 1;
        }
    }
    srv.stop();
}

#[test]
fn rate_limit_refills_and_forgives() {
    let srv = serve_hub(HubConfig {
        rate_per_sec: 20.0,
        rate_burst: 2,
        rate_violation_limit: 3,
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);
    for round in 0..4 {
        // Two violations per round: below the limit of three in a row, and
        // an accepted request in between resets the count.
        a.send(&json!({"op":"sub","topic":"t","id":1}));
        a.send(&json!({"op":"sub","topic":"t","id":2}));
        a.send(&json!({"op":"sub","topic":"t","id":3}));
        a.send(&json!({"op":"sub","topic":"t","id":4}));
        let mut got: Vec<(String, u64)> = Vec::new();
        while got.len() < 4 {
            let v = a.recv();
            if v["type"] != "presence_diff" {
                got.push((
                    v["type"].as_str().unwrap().into(),
                    v["id"].as_u64().unwrap(),
                ));
            }
        }
        assert_eq!(
            got,
            [
                ("ack".into(), 1),
                ("ack".into(), 2),
                ("error".into(), 3),
                ("error".into(), 4)
            ],
            "round {round}"
        );
        // 20/s: a token every 50 ms; wait for the burst to refill.
        thread::sleep(Duration::from_millis(150));
    }
    a.close();
    srv.stop();
}

#[test]
fn shutdown_drains_acked_messages_then_closes_1001() {
    const N: u64 = 200;
    let reason = "server restarting, reconnect later";
    let cfg = common::config()
        .with_shutdown_reason(reason)
        .with_shutdown_timeout(Duration::from_secs(2))
        .with_max_queued_bytes(64 * 1024 * 1024);
    let srv = serve(hub_config(), cfg);
    let mut reader = connect(srv.addr, None);
    reader.sub("news");
    let mut silent = connect(srv.addr, None);
    silent.sub("news");
    let mut p = connect(srv.addr, None);
    // Everything is acked before the shutdown; the reader has read nothing.
    for i in 1..=N {
        p.send(&json!({"op":"pub","topic":"news","data":{"i":i,"pad":"y".repeat(8 * KIB)},"id":i}));
    }
    for i in 1..=N {
        let ack = p.expect("ack");
        assert_eq!((&ack["id"], &ack["seq"]), (&json!(i), &json!(i)));
    }
    let t0 = Instant::now();
    srv.handle.shutdown().unwrap();

    // The reader gets every acked message, in order, then 1001, then EOF.
    reader.expect_join(); // the silent one's
    for i in 1..=N {
        let m = reader.expect("msg");
        assert_eq!((&m["seq"], &m["data"]["i"]), (&json!(i), &json!(i)));
    }
    match reader.c.next() {
        Ev::Close(code, r) => assert_eq!((code, r.as_str()), (Some(1001), reason)),
        other => panic!("expected close 1001, got {other:?}"),
    }
    reader.c.close(1001, "");
    reader.c.expect_eof();
    // The publisher too.
    match p.c.next() {
        Ev::Close(code, r) => assert_eq!((code, r.as_str()), (Some(1001), reason)),
        other => panic!("expected close 1001, got {other:?}"),
    }
    p.c.close(1001, "");
    p.c.expect_eof();

    // run() returns once the silent client's time is up.
    let hub = srv.join(Duration::from_secs(8));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(hub.metrics().publishes, N);
    assert_eq!(hub.metrics().connections_current, 0);
    assert_eq!(hub.metrics().closes.get(&1001), Some(&3));
    // The silent client was cut off at the deadline: what reached its
    // socket is there, in order, then the end of the connection.
    let mut next = 1;
    loop {
        match silent.c.next() {
            Ev::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "msg" {
                    assert_eq!(v["seq"], next);
                    next += 1;
                }
            }
            Ev::Close(code, r) => {
                assert_eq!((code, r.as_str()), (Some(1001), reason));
                assert_eq!(next, N + 1, "the close frame comes after everything");
            }
            Ev::Eof | Ev::Reset => break,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn metrics_count_connections_messages_closes_and_rejections() {
    let srv = serve_hub(hub_config_auth());
    let a = srv.addr;
    let mut alice = connect_as(a, "alice");
    let mut bob = connect_as(a, "bob");
    alice.sub("m");
    bob.sub("m");
    alice.expect_join();
    for i in 0..3 {
        alice.publish("m", json!(i));
        alice.expect("msg");
        bob.expect("msg");
    }
    // One clean close, one 1003, two refused upgrades.
    connect_as(a, "carol").close();
    let mut dave = connect_as(a, "dave");
    dave.c.send_binary(b"\x00");
    assert_eq!(dave.c.expect_close(), Some(1003));
    dave.c.close(1003, "");
    dave.c.expect_eof();
    drop(dave);
    let origin = refused(a, "/ws", &[("Origin", "http://evil.example")]);
    assert!(origin.starts_with("HTTP/1.1 403"), "{origin}");
    let missing = refused(a, "/ws", &[]);
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");

    let m = metrics_until(a, "two closes", |m| {
        metric(m, "wsmio_closes_total{code=\"1000\"}") == 1
            && metric(m, "wsmio_closes_total{code=\"1003\"}") == 1
    });
    let v = |k: &str| metric(&m, k);
    assert_eq!(v("wsmio_connections"), 2);
    assert_eq!(v("wsmio_connections_total"), 4);
    // alice: sub + 3 pub; bob: sub; carol: none; dave: the binary frame.
    assert_eq!(v("wsmio_messages_in_total"), 6);
    assert!(v("wsmio_bytes_in_total") > 6 * 10);
    assert_eq!(v("wsmio_publishes_total"), 3);
    assert_eq!(v("wsmio_fanout_deliveries_total"), 6);
    // Welcomes, acks, joins and deliveries.
    assert!(v("wsmio_messages_out_total") > 6 + 4 * 2);
    assert!(v("wsmio_bytes_out_total") > v("wsmio_bytes_in_total"));
    assert_eq!(v("wsmio_subscriptions"), 4);
    assert_eq!(v("wsmio_topics"), 3); // m, @alice, @bob
    assert_eq!(v("wsmio_handshake_rejections_total{reason=\"origin\"}"), 1);
    assert_eq!(
        v("wsmio_handshake_rejections_total{reason=\"token_missing\"}"),
        1
    );
    assert_eq!(v("wsmio_drops_total{reason=\"slow_consumer\"}"), 0);
    // The exposition is plain text with HELP and TYPE lines (checked by
    // the parser); spot-check the kinds.
    let text = http_get(a, "/metrics");
    for line in [
        "# TYPE wsmio_connections gauge",
        "# TYPE wsmio_messages_in_total counter",
        "# TYPE wsmio_closes_total counter",
        "# TYPE wsmio_handshake_rejections_total counter",
    ] {
        assert!(text.contains(line), "{line} missing");
    }
    alice.close();
    bob.close();
    srv.stop();
}

/// Small pipelined publishes reach each subscriber as one batch per read;
/// under the drop policy a slow subscriber loses whole batches, and its
/// gap events still name exactly the deliveries it lost (the drop counter
/// counts deliveries, not batches).
#[test]
fn dropped_batches_are_reported_delivery_by_delivery() {
    const BURST: u64 = 40;
    let srv = serve(hub_config(), slow_config(FullQueuePolicy::Drop));
    let mut slow = connect(srv.addr, None);
    slow.sub("burst");
    let mut p = connect(srv.addr, None);
    p.sub("burst");
    slow.expect_join();
    let mut sent = 0u64;
    while metric(&metrics(srv.addr), DROPS) == 0 {
        let mut wire = Vec::new();
        for _ in 0..BURST {
            sent += 1;
            let v = json!({"op":"pub","topic":"burst","data":{"i":sent,"pad":"x".repeat(200)}});
            let f =
                p.c.frame_bytes(wsmio::proto::OpCode::Text, true, v.to_string().as_bytes());
            wire.extend_from_slice(&f);
        }
        p.c.send_raw(&wire);
        // The publisher reads its own copies.
        while p.skip_to("msg")["seq"] != sent {}
        assert!(sent < 20_000, "no drop after {sent} deliveries");
    }
    let dropped = metric(&metrics(srv.addr), DROPS);
    let mut delivered = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut widest = 0;
    while (delivered.len() + missing.len()) < sent as usize {
        let v = slow.recv();
        match v["type"].as_str().unwrap() {
            "msg" => {
                let seq = v["seq"].as_u64().unwrap();
                assert_eq!(v["data"]["i"], seq, "{v}");
                assert!(delivered.last().is_none_or(|&l| l < seq), "order");
                delivered.insert(seq);
            }
            "gap" => {
                let (from, to) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
                assert!(from <= to && to <= sent, "{v}");
                widest = widest.max(to - from + 1);
                for s in from..=to {
                    assert!(!delivered.contains(&s), "gap {v} covers delivered {s}");
                    assert!(missing.insert(s), "gap {v} reported twice");
                }
            }
            t => panic!("unexpected {t}: {v}"),
        }
    }
    assert_eq!(
        missing.len() as u64,
        dropped,
        "every dropped delivery is in a gap"
    );
    assert!(widest > 1, "deliveries were lost in a row, not one by one");
    slow.close();
    p.close();
    srv.stop();
}
