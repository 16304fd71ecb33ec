//! The hub on many nodes over Redis (`--engine redis`), against a real
//! `redis-server` started by the test, with hub nodes as processes:
//! one sequence per topic across nodes, resume and offline DMs on any
//! node, restarts of every node and of Redis, a node killed with `-9`,
//! Redis going away while clients publish, and the reconnecting Rust hub
//! client losing nothing when its node is killed and started again.
//!
//! The tests run one at a time (each starts a Redis and several nodes).

mod cluster_support;
mod common;
mod hub_support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster_support::{Node, Redis};
use hub_support::{connect_as, Hc};
use serde_json::{json, Value};

/// One cluster test at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connect as `user` to `node` (a token signed with the nodes' secret).
fn client(node: &Node, user: &str) -> Hc {
    connect_as(node.addr, user)
}

fn client_at(addr: SocketAddr, user: &str) -> Hc {
    connect_as(addr, user)
}

/// Every `msg` of `topic` that arrives within `limit` after the last one
/// (other messages are kept in `other`).
fn collect(
    hc: &mut Hc,
    topic: &str,
    want: usize,
    limit: Duration,
    other: &mut Vec<Value>,
) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = hc.recv_within(left) else { break };
        if v["type"] == "msg" && v["topic"] == topic {
            got.push(v);
        } else {
            other.push(v);
        }
    }
    got
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[test]
fn a_publish_on_any_node_reaches_every_node_with_one_sequence() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let nodes: Vec<Node> = ["A", "B", "C"]
        .iter()
        .map(|n| Node::start(n, &redis.url(), &[]))
        .collect();
    // A subscriber on every node (two on C).
    let mut subs: Vec<Hc> = vec![
        client(&nodes[0], "sa"),
        client(&nodes[1], "sb"),
        client(&nodes[2], "sc"),
        client(&nodes[2], "sc2"),
    ];
    for s in &mut subs {
        let ack = s.sub_ack("room");
        assert_eq!(ack["seq"], 0, "{ack}");
    }

    // One publish on A: the same seq everywhere, and the ack says it.
    let mut pa = client(&nodes[0], "pa");
    let ack = pa.publish("room", json!("first"));
    assert_eq!(ack["seq"], 1, "{ack}");
    let epoch = ack["epoch"].as_str().unwrap().to_string();
    for s in &mut subs {
        let m = s.skip_to("msg");
        hub_support::check_msg(&m, "room", 1, &epoch, "pa", &json!("first"));
        assert_eq!(m["node"], "A", "{m}");
    }

    // 999 more from publishers on all three nodes at once, pipelined (no
    // waiting for acks): one order, the same everywhere, no duplicates, no
    // holes; every ack's seq carries that publisher's message.
    let per = [333usize, 333, 333];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let publishers: Vec<_> = (0..3)
        .map(|i| {
            let addr = addrs[i];
            let n = per[i];
            std::thread::spawn(move || {
                let mut p = client_at(addr, &format!("p{i}"));
                for k in 0..n {
                    p.send(&json!({"op":"pub","topic":"room","id":k,"data":{"p":i,"k":k}}));
                }
                let mut acks = BTreeMap::new();
                while acks.len() < n {
                    let v = p.recv();
                    assert_eq!(v["type"], "ack", "{v}");
                    acks.insert(v["id"].as_u64().unwrap(), v["seq"].as_u64().unwrap());
                }
                (i, acks)
            })
        })
        .collect();
    let acks: Vec<(usize, BTreeMap<u64, u64>)> =
        publishers.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = per.iter().sum();
    let mut reference: Option<Vec<(u64, Value)>> = None;
    for s in &mut subs {
        let mut other = Vec::new();
        let got = collect(s, "room", total, Duration::from_secs(20), &mut other);
        assert_eq!(
            got.len(),
            total,
            "{}: {} of {total}; other: {other:?}",
            s.user,
            got.len()
        );
        assert_eq!(
            seqs(&got),
            (2..=total as u64 + 1).collect::<Vec<_>>(),
            "{}",
            s.user
        );
        let order: Vec<(u64, Value)> = got
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["data"].clone()))
            .collect();
        match &reference {
            None => reference = Some(order),
            Some(r) => assert!(r == &order, "{} saw another order", s.user),
        }
    }
    let by_seq: BTreeMap<u64, Value> = reference.unwrap().into_iter().collect();
    let mut all_seqs = HashSet::new();
    for (i, a) in &acks {
        for (k, seq) in a {
            assert_eq!(by_seq[seq], json!({"p": i, "k": k}), "ack of p{i}/{k}");
            assert!(all_seqs.insert(*seq), "seq {seq} acked twice");
        }
        // One publisher's messages keep their order.
        let in_order: Vec<u64> = a.values().copied().collect();
        assert!(
            in_order.windows(2).all(|w| w[0] < w[1]),
            "p{i}: {in_order:?}"
        );
    }

    // Presence lists every node's members.
    let mut q = client(&nodes[1], "q");
    let p = hub_support::presence_until(&mut q, "room", |p| p["count"] == 4);
    assert_eq!(p["members"], json!(["sa", "sb", "sc", "sc2"]), "{p}");
    // Pipelined: far fewer round trips to Redis than publishes.
    let (trips, pubs) = (
        nodes[0].metric("wsmio_engine_round_trip_seconds_count"),
        nodes[0].metric("wsmio_engine_publishes_total"),
    );
    assert!(pubs >= 334.0 && trips > 0.0, "{trips} {pubs}");
}

/// Subscribe with `since` and return the ack.
fn resume(hc: &mut Hc, topic: &str, epoch: &str, seq: u64) -> Value {
    let id = hc.request(json!({"op":"sub","topic":topic,"since":{"epoch":epoch,"seq":seq}}));
    let ack = hc.skip_to("ack");
    assert_eq!(ack["id"], id, "{ack}");
    ack
}

#[test]
fn resume_and_offline_direct_messages_work_on_any_node() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let a = Node::start("A", &redis.url(), &[]);
    let b = Node::start("B", &redis.url(), &[]);
    let c = Node::start("C", &redis.url(), &[]);

    // x reads room on A up to seq 3, leaves; 4..7 are published on B.
    let mut x = client(&a, "x");
    x.sub_ack("room");
    let mut p = client(&b, "p");
    for k in 1..=3 {
        p.publish("room", json!(k));
    }
    let mut other = Vec::new();
    let seen = collect(&mut x, "room", 3, Duration::from_secs(5), &mut other);
    assert_eq!(seqs(&seen), [1, 2, 3]);
    let epoch = seen[2]["epoch"].as_str().unwrap().to_string();
    x.close();
    for k in 4..=7 {
        p.publish("room", json!(k));
    }
    // x comes back on C: exactly 4..7, then live deliveries.
    let mut x = client(&c, "x");
    let ack = resume(&mut x, "room", &epoch, 3);
    assert_eq!(
        (
            &ack["epoch"],
            &ack["seq"],
            &ack["recovered"],
            &ack["replayed"],
            &ack["lost"]
        ),
        (&json!(epoch), &json!(7), &json!(true), &json!(4), &json!(0)),
        "{ack}"
    );
    let got = collect(&mut x, "room", 4, Duration::from_secs(5), &mut other);
    assert_eq!(seqs(&got), [4, 5, 6, 7]);
    assert_eq!(got[0]["data"], 4);
    p.publish("room", json!(8));
    assert_eq!(
        seqs(&collect(
            &mut x,
            "room",
            1,
            Duration::from_secs(5),
            &mut other
        )),
        [8]
    );

    // A direct message to bob, who is connected nowhere, waits in his
    // inbox; bob picks it up on another node.
    let mut alice = client(&a, "alice");
    let id = alice.request(json!({"op":"dm","to":"bob","data":{"text":"psst"}}));
    let dm_ack = alice.expect("ack");
    assert_eq!(
        (&dm_ack["id"], &dm_ack["op"], &dm_ack["topic"]),
        (&json!(id), &json!("dm"), &json!("@bob"))
    );
    let mut bob = client(&b, "bob");
    // The inbox's ack (at connect) gives the baseline: from seq 0 of its epoch.
    let inbox_epoch = dm_ack["epoch"].as_str().unwrap().to_string();
    let ack = resume(&mut bob, "@bob", &inbox_epoch, 0);
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(true), &json!(1)),
        "{ack}"
    );
    let m = bob.skip_to("msg");
    hub_support::check_msg(
        &m,
        "@bob",
        1,
        &inbox_epoch,
        "alice",
        &json!({"text":"psst"}),
    );
    assert_eq!(m["node"], "A");
    // And a live one reaches him on B from C.
    let mut carol = client(&c, "carol");
    carol.request(json!({"op":"dm","to":"bob","data":2}));
    let m = bob.skip_to("msg");
    assert_eq!(
        (&m["seq"], &m["from"], &m["node"]),
        (&json!(2), &json!("carol"), &json!("C"))
    );
}

#[test]
fn restarts_of_every_node_and_of_redis_keep_epochs_and_history() {
    let _one = one_at_a_time();
    let mut redis = Redis::start();
    let a = Node::start("A", &redis.url(), &[]);
    let b = Node::start("B", &redis.url(), &[]);
    let mut x = client(&a, "x");
    x.sub_ack("news");
    let mut p = client(&b, "p");
    for k in 1..=5 {
        p.publish("news", json!(k));
    }
    let mut other = Vec::new();
    let seen = collect(&mut x, "news", 5, Duration::from_secs(5), &mut other);
    assert_eq!(seqs(&seen), [1, 2, 3, 4, 5]);
    let epoch = seen[0]["epoch"].as_str().unwrap().to_string();
    drop((x, p));

    // Every hub node restarts: same epoch, and 6..10 published meanwhile
    // are replayed exactly.
    a.stop();
    b.stop();
    let b = Node::start("B", &redis.url(), &[]);
    let mut p = client(&b, "p");
    for k in 6..=10 {
        let ack = p.publish("news", json!(k));
        assert_eq!(
            (&ack["seq"], &ack["epoch"]),
            (&json!(k), &json!(epoch)),
            "{ack}"
        );
    }
    let a = Node::start("A", &redis.url(), &[]);
    let mut x = client(&a, "x");
    let ack = resume(&mut x, "news", &epoch, 5);
    assert_eq!(
        (
            &ack["epoch"],
            &ack["seq"],
            &ack["recovered"],
            &ack["epoch_changed"]
        ),
        (&json!(epoch), &json!(10), &json!(true), &json!(false)),
        "{ack}"
    );
    let got = collect(&mut x, "news", 5, Duration::from_secs(5), &mut other);
    assert_eq!(seqs(&got), [6, 7, 8, 9, 10]);
    drop((x, p));

    // Redis restarts (its AOF is fsynced at shutdown): the same.
    redis.restart();
    a.wait_ready(Duration::from_secs(15));
    b.wait_ready(Duration::from_secs(15));
    let mut p = client(&b, "p");
    for k in 11..=12 {
        let ack = p.publish("news", json!(k));
        assert_eq!(
            (&ack["seq"], &ack["epoch"]),
            (&json!(k), &json!(epoch)),
            "{ack}"
        );
    }
    let mut x = client(&a, "x");
    let ack = resume(&mut x, "news", &epoch, 9);
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(true), &json!(3)),
        "{ack}"
    );
    let got = collect(&mut x, "news", 3, Duration::from_secs(5), &mut other);
    assert_eq!(seqs(&got), [10, 11, 12]);
    assert_eq!(got[1]["data"], 11);
}

#[test]
fn a_killed_node_leaves_presence_within_its_ttl_and_its_clients_resume_elsewhere() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let ttl = ["--node-ttl", "2"];
    let a = Node::start("A", &redis.url(), &ttl);
    let b = Node::start("B", &redis.url(), &ttl);
    let mut u1 = client(&a, "u1");
    u1.sub("lobby");
    let mut u2 = client(&b, "u2");
    u2.sub("lobby");
    hub_support::presence_until(&mut u2, "lobby", |p| p["count"] == 2);
    let mut other = Vec::new();
    let m = collect(&mut u1, "lobby", 0, Duration::from_millis(200), &mut other);
    assert!(m.is_empty());
    let ack = u2.publish("lobby", json!("before"));
    let epoch = ack["epoch"].as_str().unwrap().to_string();
    assert_eq!(
        seqs(&collect(
            &mut u1,
            "lobby",
            1,
            Duration::from_secs(5),
            &mut other
        )),
        [1]
    );

    // kill -9 A: no goodbye. Within the TTL (plus a heartbeat and a
    // margin) u2 sees u1 leave, and presence lists u2 alone.
    let killed = Instant::now();
    a.kill9();
    drop(u1);
    let leave = loop {
        let v = u2
            .recv_within(Duration::from_secs(10))
            .expect("a leave event");
        if v["type"] == "presence_diff" && v["leaves"] == json!(["u1"]) {
            break json!({"topic": v["topic"], "user": "u1"});
        }
    };
    let took = killed.elapsed();
    assert_eq!(
        (&leave["topic"], &leave["user"]),
        (&json!("lobby"), &json!("u1")),
        "{leave}"
    );
    assert!(took < Duration::from_secs(6), "leave after {took:?}");
    let p = hub_support::presence_until(&mut u2, "lobby", |p| p["count"] == 1);
    assert_eq!(p["members"], json!(["u2"]));

    // u2 is unaffected; u1 comes back on B and misses nothing.
    let mut w = client(&b, "w");
    for k in 0..3 {
        w.publish("lobby", json!(k));
    }
    assert_eq!(
        seqs(&collect(
            &mut u2,
            "lobby",
            3,
            Duration::from_secs(5),
            &mut other
        )),
        [2, 3, 4]
    );
    let mut u1 = client(&b, "u1");
    let ack = resume(&mut u1, "lobby", &epoch, 1);
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(true), &json!(3)),
        "{ack}"
    );
    assert_eq!(
        seqs(&collect(
            &mut u1,
            "lobby",
            3,
            Duration::from_secs(5),
            &mut other
        )),
        [2, 3, 4]
    );
}

#[test]
fn while_redis_is_away_publishes_are_refused_or_delivered_and_the_loop_answers() {
    let _one = one_at_a_time();
    let mut redis = Redis::start();
    let fast = ["--redis-timeout", "1"];
    let mut a = Node::start("A", &redis.url(), &fast);
    let mut b = Node::start("B", &redis.url(), &fast);
    let mut sub = client(&b, "sub");
    sub.sub_ack("feed");
    // The publisher sends one publish every 10 ms until told to stop and
    // records how each was answered; meanwhile Redis goes away for 5 s.
    let addr = a.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = client_at(addr, "pub");
        let mut answers: BTreeMap<u64, (Value, Instant)> = BTreeMap::new();
        let mut k = 0u64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            p.send(&json!({"op":"pub","topic":"feed","id":k,"data":k}));
            k += 1;
            let until = Instant::now() + Duration::from_millis(10);
            while let Some(v) = p.recv_within(until.saturating_duration_since(Instant::now())) {
                answers.insert(v["id"].as_u64().unwrap(), (v, Instant::now()));
            }
        }
        while answers.len() < k as usize {
            let v = p
                .recv_within(Duration::from_secs(10))
                .expect("every publish is answered");
            answers.insert(v["id"].as_u64().unwrap(), (v, Instant::now()));
        }
        answers
    });
    let mut probe = client(&a, "probe");
    std::thread::sleep(Duration::from_millis(1500));
    redis.stop();
    let away = Instant::now();
    // The loop never waits for Redis: a ping is answered at once, and
    // /readyz says the node cannot take publishes (nor new clients).
    std::thread::sleep(Duration::from_millis(1500));
    let refused = hub_support::refused(a.addr, "/ws", &[]);
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    let t = Instant::now();
    probe.c.ping(b"alive?");
    match probe.c.next_within(Duration::from_millis(500)) {
        Some(common::Ev::Pong(p)) => assert_eq!(p, b"alive?"),
        other => panic!("no pong while Redis is away: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(!a.ready(), "/readyz must say not ready");
    assert!(a.get("/readyz").0.contains(" 503 "));
    std::thread::sleep(Duration::from_secs(5).saturating_sub(away.elapsed()));
    assert!(!a.ready());
    let back = Instant::now();
    redis.restart();
    a.wait_ready(Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = publisher.join().unwrap();

    let mut acked = BTreeMap::new();
    let (mut refused, mut maybe, mut after) = (0, 0, 0);
    for (k, (v, at)) in &answers {
        match v["type"].as_str() {
            Some("ack") => {
                acked.insert(v["seq"].as_u64().unwrap(), *k);
                after += usize::from(*at > back);
            }
            Some("error") => {
                assert_eq!(v["code"], "unavailable", "{v}");
                refused += 1;
                maybe += usize::from(v["maybe_stored"] == true);
            }
            _ => panic!("publish {k} answered with {v}"),
        }
    }
    assert!(refused > 0, "the outage refused nothing");
    assert!(
        acked.len() > after && after > 0,
        "acked {} ({after} after the outage)",
        acked.len()
    );
    // The subscriber gets every acked publish (or a gap for it), in
    // order, with no duplicates.
    let last = *acked.keys().max().unwrap();
    let mut delivered = Vec::new();
    let mut gaps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while delivered.last().is_none_or(|&s| s < last) && gaps.iter().all(|&(_, to)| to < last) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = sub.recv_within(left) else {
            panic!(
                "deliveries up to the last acked seq {last}: delivered {delivered:?}, gaps {gaps:?}\n{}\n{}",
                a.diagnostics(),
                b.diagnostics()
            );
        };
        match v["type"].as_str() {
            Some("msg") => {
                let s = v["seq"].as_u64().unwrap();
                if let Some(k) = acked.get(&s) {
                    assert_eq!(v["data"], *k, "seq {s} carries another publish");
                }
                delivered.push(s);
            }
            Some("gap") => gaps.push((v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap())),
            _ => {}
        }
    }
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {delivered:?}"
    );
    for s in acked.keys() {
        let gap = gaps.iter().any(|&(f, t)| (f..=t).contains(s));
        assert!(
            delivered.contains(s) || gap,
            "acked seq {s} neither delivered nor a gap"
        );
    }
    eprintln!(
        "outage: {} publishes, {} acked, {refused} refused ({maybe} maybe stored), {} delivered, gaps {gaps:?}",
        answers.len(),
        acked.len(),
        delivered.len()
    );
}

#[test]
fn a_node_starts_without_redis_and_becomes_ready_when_it_comes() {
    let _one = one_at_a_time();
    let mut redis = Redis::start();
    redis.stop();
    // Start without waiting for ready.
    let url = redis.url();
    let node = std::thread::spawn(move || {
        // Node::start waits for ready: it must come once Redis is back.
        Node::start("A", &url, &["--redis-timeout", "1"])
    });
    std::thread::sleep(Duration::from_secs(1));
    redis.restart();
    let a = node.join().unwrap();
    let mut x = client(&a, "x");
    x.sub("t");
    assert_eq!(x.publish("t", json!(1))["seq"], 1);
}

#[test]
fn an_unusable_redis_url_is_refused_at_startup() {
    let out = std::process::Command::new(cluster_support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--engine", "redis"])
        .args(["--redis-url", "http://not-redis"])
        .output()
        .expect("run wsmio");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis-url"), "{err}");
}

#[test]
fn acks_and_idempotency_keys_hold_on_every_node_and_across_restarts() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let a = Node::start("A", &redis.url(), &[]);
    let b = Node::start("B", &redis.url(), &[]);
    let mut p = client(&b, "pub");
    let mut phone = client(&a, "alice");
    phone.sub_ack("room");
    for k in 1..=5 {
        p.publish("room", json!(k));
    }
    let mut other = Vec::new();
    let seen = collect(&mut phone, "room", 5, Duration::from_secs(5), &mut other);
    let epoch = seen[0]["epoch"].as_str().unwrap().to_string();
    phone.send(&json!({"op":"ack","topic":"room","seq":2}));
    let id = phone.request(json!({"op":"ack","topic":"room","seq":3}));
    let ack = phone.skip_to("ack");
    assert_eq!(
        (&ack["id"], &ack["op"], &ack["seq"]),
        (&json!(id), &json!("ack"), &json!(3))
    );
    phone.close();

    // A new device on the other node: exactly what came after seq 3.
    let resume_acked = |node: &Node, want: &[u64]| {
        let mut laptop = client(node, "alice");
        let id = laptop.request(json!({"op":"sub","topic":"room","since":"acked"}));
        let ack = laptop.skip_to("ack");
        assert_eq!(ack["id"], id, "{ack}");
        assert_eq!(ack["acked"], json!({"epoch": epoch, "seq": 3}), "{ack}");
        assert_eq!(
            (&ack["recovered"], &ack["replayed"]),
            (&json!(true), &json!(want.len())),
            "{ack}"
        );
        let mut other = Vec::new();
        let got = collect(
            &mut laptop,
            "room",
            want.len(),
            Duration::from_secs(5),
            &mut other,
        );
        assert_eq!(seqs(&got), want);
    };
    resume_acked(&b, &[4, 5]);

    // An idempotent retry on another node: the same seq, delivered once.
    let mut watcher = client(&a, "watcher");
    watcher.sub_ack("room");
    let first = p.request(json!({"op":"pub","topic":"room","data":"x","idempotency_key":"k1"}));
    let ack1 = p.skip_to("ack");
    assert_eq!(
        (&ack1["id"], &ack1["seq"]),
        (&json!(first), &json!(6)),
        "{ack1}"
    );
    let mut p2 = client(&a, "pub");
    p2.request(json!({"op":"pub","topic":"room","data":"x","idempotency_key":"k1"}));
    let ack2 = p2.skip_to("ack");
    assert_eq!(
        (&ack2["seq"], &ack2["epoch"], &ack2["duplicate"]),
        (&json!(6), &json!(epoch), &json!(true)),
        "{ack2}"
    );
    p2.request(json!({"op":"pub","topic":"room","data":"y","idempotency_key":"k2"}));
    assert_eq!(p2.skip_to("ack")["seq"], 7);
    let got = collect(&mut watcher, "room", 3, Duration::from_secs(2), &mut other);
    assert_eq!(seqs(&got), [6, 7], "k1 delivered once");
    drop((p, p2, watcher));

    // Every node restarts: the position is still there.
    a.stop();
    b.stop();
    let a = Node::start("A", &redis.url(), &[]);
    resume_acked(&a, &[4, 5, 6, 7]);
    // And so is the key, within its window.
    let mut p3 = client(&a, "pub");
    p3.request(json!({"op":"pub","topic":"room","data":"x","idempotency_key":"k1"}));
    let ack3 = p3.skip_to("ack");
    assert_eq!(
        (&ack3["seq"], &ack3["duplicate"]),
        (&json!(6), &json!(true)),
        "{ack3}"
    );
}

#[test]
fn idempotency_keys_expire_after_their_window() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let a = Node::start("A", &redis.url(), &["--idempotency-window", "1"]);
    let mut p = client(&a, "pub");
    let req = json!({"op":"pub","topic":"t","data":1,"idempotency_key":"once"});
    p.request(req.clone());
    assert_eq!(p.skip_to("ack")["seq"], 1);
    p.request(req.clone());
    assert_eq!(p.skip_to("ack")["duplicate"], true);
    std::thread::sleep(Duration::from_millis(1200));
    p.request(req);
    let ack = p.skip_to("ack");
    assert_eq!(
        (&ack["seq"], ack.get("duplicate")),
        (&json!(2), None),
        "{ack}"
    );
}

/// Presence across nodes: cluster-wide counts in every `presence_diff`,
/// the switch to `presence_count` past the cap on every node, and paging
/// through members of all nodes by name.
#[test]
fn presence_counts_and_pages_span_the_nodes() {
    let _one = one_at_a_time();
    let redis = Redis::start();
    let cap = ["--presence-events-max", "3"];
    let a = Node::start("A", &redis.url(), &cap);
    let b = Node::start("B", &redis.url(), &cap);
    let mut wa = client(&a, "wa");
    wa.sub("hall");
    let mut wb = client(&b, "wb");
    wb.sub_ack("hall");
    // wa hears wb join through Redis, with the count of both nodes.
    let (_, j) = next_of(&mut wa, "presence_diff");
    assert_eq!(
        (&j["joins"], &j["count"]),
        (&json!(["wb"]), &json!(2)),
        "{j}"
    );
    // Past the cap (3) both nodes switch to counts.
    let mut conns = Vec::new();
    for (i, u) in ["m0", "m1", "m2", "m3", "m4", "m5"].into_iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let mut c = client(node, u);
        c.sub_ack("hall");
        conns.push(c);
    }
    for w in [&mut wa, &mut wb] {
        let (before, v) = next_of_where(w, |v| v["type"] == "presence_count" && v["count"] == 8);
        assert!(
            before
                .iter()
                .all(|b| b["type"] == "presence_count" || b["count"].as_u64() <= Some(3)),
            "{before:?}"
        );
        assert_eq!(v["topic"], "hall");
    }
    // Pages of 3 list the members of both nodes, in order, once.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let id = wb.request(json!({"op":"presence","topic":"hall","limit":3,"cursor":cursor}));
        let (_, p) = next_of_where(&mut wb, |v| v["type"] == "presence" && v["id"] == id);
        assert_eq!(p["count"], 8, "{p}");
        seen.extend(p["members"].as_array().unwrap().iter().cloned());
        cursor = p["cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(
        seen,
        json!(["m0", "m1", "m2", "m3", "m4", "m5", "wa", "wb"])
            .as_array()
            .unwrap()
            .clone()
    );
    // Leaving below the cap again: diffs, with the cluster-wide count.
    for c in conns.drain(..) {
        c.close();
    }
    // (One turn may hold more leaves than the cap: then a count, at or
    // below the cap, says the list must be read again.)
    next_of_where(&mut wa, |v| v["count"] == 2);
    let id = wa.request(json!({"op":"presence","topic":"hall"}));
    let (_, p) = next_of_where(&mut wa, |v| v["type"] == "presence" && v["id"] == id);
    assert_eq!(
        (&p["members"], &p["count"]),
        (&json!(["wa", "wb"]), &json!(2))
    );
}

/// Skip to the next message of type `typ`: (the ones before, it).
fn next_of(hc: &mut Hc, typ: &str) -> (Vec<Value>, Value) {
    next_of_where(hc, |v| v["type"] == typ)
}

fn next_of_where(hc: &mut Hc, done: impl Fn(&Value) -> bool) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let v = hc
            .recv_within(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{}: nothing matched; got {before:?}", hc.user));
        if done(&v) {
            return (before, v);
        }
        before.push(v);
    }
}

/// Issue 23's "with the Redis engine nothing is lost": the reconnecting
/// Rust hub client (`BlockingHub`) on node A while node B publishes; A is
/// killed with `-9` and started again on the same port while B keeps
/// publishing and the client queues publishes of its own. After the
/// reconnect the client resumes in the same epoch and has every seq once,
/// in order, and each queued publish is acked once.
#[test]
fn the_hub_client_loses_nothing_when_its_node_is_killed_and_restarted() {
    use wsmio::pubsub::hub_client::{BlockingHub, Event, HubClientConfig, SubOptions};
    use wsmio::reactor::ClientOptions;

    let _one = one_at_a_time();
    let redis = Redis::start();
    let listen = format!("127.0.0.1:{}", cluster_support::free_port());
    let a = Node::start_on("A", &listen, &redis.url(), &[]);
    let b = Node::start("B", &redis.url(), &[]);
    let config = HubClientConfig {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        ..HubClientConfig::new(format!("ws://{}/ws", a.addr))
            .with_token(hub_support::token_all("reader"))
    };
    let mut hub = BlockingHub::new(config, ClientOptions::default());
    hub.client()
        .subscribe("feed", SubOptions::default())
        .unwrap();
    let mut p = client(&b, "writer");
    let mut log = Vec::new();
    let next = |hub: &mut BlockingHub,
                log: &mut Vec<Event>,
                what: &str,
                done: &dyn Fn(&[Event]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(log) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; events: {log:#?}"
            );
            if let Some(e) = hub.next_event(left.min(Duration::from_millis(100))) {
                log.push(e);
            }
        }
    };
    let got = |log: &[Event]| -> Vec<(String, u64, String)> {
        log.iter()
            .filter_map(|e| match e {
                Event::Message(m) if m.topic == "feed" => {
                    Some((m.epoch.clone(), m.seq, m.data.clone()))
                }
                _ => None,
            })
            .collect()
    };
    next(&mut hub, &mut log, "the subscription", &|l| {
        l.iter()
            .any(|e| matches!(e, Event::Subscribed(s) if s.topic == "feed"))
    });
    for k in 1..=5 {
        p.publish("feed", json!(k));
    }
    next(&mut hub, &mut log, "1..=5", &|l| got(l).len() == 5);
    let epoch = got(&log)[0].0.clone();

    // Node A dies without a goodbye; B goes on publishing, and the
    // client's own publishes wait in its outbox.
    a.kill9();
    next(&mut hub, &mut log, "the disconnect", &|l| {
        l.iter().any(|e| matches!(e, Event::Disconnected { .. }))
    });
    for k in 6..=10 {
        p.publish("feed", json!(k));
    }
    let mine = [
        hub.client().publish("feed", r#""mine 1""#, false).unwrap(),
        hub.client().publish("feed", r#""mine 2""#, false).unwrap(),
    ];
    next(&mut hub, &mut log, "a failed attempt", &|l| {
        l.iter().any(|e| matches!(e, Event::Reconnecting { .. }))
    });
    let a = Node::start_on("A", &listen, &redis.url(), &[]);
    next(&mut hub, &mut log, "everything", &|l| got(l).len() == 12);

    // Same epoch, resumed and recovered; 1..=12 each once, in order; the
    // queued publishes are 11 and 12 and each acked once.
    let resumed = log.iter().rev().find_map(|e| match e {
        Event::Subscribed(s) if s.topic == "feed" => Some(s.clone()),
        _ => None,
    });
    let s = resumed.expect("resubscribed");
    assert!(s.resumed && s.recovered && !s.epoch_changed, "{s:?}");
    assert_eq!((s.epoch.as_str(), s.lost), (epoch.as_str(), 0), "{s:?}");
    let all = got(&log);
    assert!(all.iter().all(|m| m.0 == epoch), "{all:?}");
    assert_eq!(
        all.iter().map(|m| m.1).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    let mut datas: Vec<String> = all.iter().map(|m| m.2.clone()).collect();
    let tail = datas.split_off(10);
    assert_eq!(datas, (1..=10).map(|k| k.to_string()).collect::<Vec<_>>());
    assert_eq!(tail, [r#""mine 1""#, r#""mine 2""#]);
    for (id, seq) in mine.iter().zip([11, 12]) {
        let acked: Vec<_> = log
            .iter()
            .filter_map(|e| match e {
                Event::PublishAcked {
                    id: i,
                    seq,
                    epoch: ep,
                    ..
                } if i == id => Some((ep.clone(), *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(acked, [(epoch.clone(), seq)]);
    }
    // Nothing more (no duplicate) arrives.
    while let Some(e) = hub.next_event(Duration::from_millis(300)) {
        log.push(e);
    }
    assert_eq!(got(&log).len(), 12);
    assert_eq!(hub.client().duplicates_dropped(), 0);
    hub.close(Duration::from_secs(5));
    drop(p);
    a.stop();
    b.stop();
}
