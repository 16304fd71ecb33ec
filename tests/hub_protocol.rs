//! The hub's wire protocol (docs/PROTOCOL.md) over real sockets, with
//! several clients: welcome, sub/unsub, pub with acks and deliveries,
//! exclude_self, direct messages, presence with join/leave events, error
//! replies, and ordering.

mod common;
mod hub_support;

use std::thread;

use common::Ev;
use hub_support::*;
use serde_json::{json, Value};
use wsmio::pubsub::HubConfig;

#[test]
fn welcome_then_inbox_subscription() {
    let srv = serve_hub(HubConfig {
        node: "node-a".into(),
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);
    let w = a.welcome.clone();
    assert_eq!(w["anonymous"], true, "{w}");
    assert_eq!(w["node"], "node-a", "{w}");
    assert_eq!(w["presence_events_max"], 100, "{w}");
    assert!(a.user.starts_with("anon-"), "{w}");
    let epoch = w["epoch"].as_str().unwrap();
    assert!(
        epoch.len() == 12 && epoch.chars().all(|c| c.is_ascii_hexdigit()),
        "{w}"
    );
    // The connection is subscribed to its inbox.
    let id = a.request(json!({"op":"presence","topic": format!("@{}", a.user)}));
    let p = a.expect("presence");
    assert_eq!(p["id"], id);
    assert_eq!(p["members"], json!([a.user]));
    assert_eq!((p["count"].as_u64(), &p["cursor"]), (Some(1), &json!(null)));

    // Another client: another anonymous id, same epoch.
    let b = connect(srv.addr, None);
    assert_ne!(a.user, b.user);
    assert_eq!(a.epoch, b.epoch);
    a.close();
    b.close();
    srv.stop();
}

#[test]
fn sub_and_unsub_are_acked_with_their_ids() {
    let srv = serve_hub(hub_config());
    let mut a = connect(srv.addr, None);
    a.send(&json!({"op":"sub","topic":"room.1","id":7}));
    let ack = a.expect("ack");
    assert_eq!(
        ack,
        json!({"type":"ack","id":7,"op":"sub","topic":"room.1","epoch":a.epoch,"seq":0,
               "resumed":false,"recovered":true,"lost":0,"epoch_changed":false,"replayed":0})
    );
    let join = a.expect_join();
    assert_eq!(
        (&join["topic"], &join["user"]),
        (&json!("room.1"), &json!(a.user))
    );
    assert!(join["ts"].is_u64());

    // Subscribing twice is acked again, without a second join.
    a.send(&json!({"op":"sub","topic":"room.1","id":8}));
    assert_eq!(a.expect("ack")["id"], 8);
    a.assert_quiet();

    // The ack of a sub carries the topic's current seq.
    a.publish("room.1", json!(1));
    a.expect("msg");
    let ack = a.sub_ack("room.1");
    assert_eq!(ack["seq"], 1);

    a.send(&json!({"op":"unsub","topic":"room.1","id":9}));
    assert_eq!(
        a.expect("ack"),
        json!({"type":"ack","id":9,"op":"unsub","topic":"room.1"})
    );
    // Unsubscribed: no more deliveries.
    let mut b = connect(srv.addr, None);
    b.publish("room.1", json!(2));
    a.assert_quiet();
    // A request without an id is acked with "id": null.
    a.send(&json!({"op":"sub","topic":"room.2"}));
    let ack = a.expect("ack");
    assert_eq!(
        (&ack["id"], &ack["topic"]),
        (&Value::Null, &json!("room.2"))
    );
    a.close();
    b.close();
    srv.stop();
}

#[test]
fn publish_acks_first_then_everyone_gets_the_delivery() {
    let srv = serve_hub(HubConfig {
        node: "n1".into(),
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);
    let mut b = connect(srv.addr, None);
    let mut c = connect(srv.addr, None); // not subscribed
    a.sub("room");
    b.sub_ack("room");
    let j = a.expect_join();
    assert_eq!(j["user"], json!(b.user));
    b.expect_join();

    let data = json!({"text":"hi","n":[1,2,{"x":null}],"u":"\u{e9}\u{1F600}"});
    a.send(&json!({"op":"pub","topic":"room","data":data,"id":42}));
    // The publisher's ack comes before its own copy.
    let ack = a.expect("ack");
    assert_eq!(
        ack,
        json!({"type":"ack","id":42,"op":"pub","topic":"room","seq":1,"epoch":a.epoch})
    );
    let mine = a.expect("msg");
    check_msg(&mine, "room", 1, &a.epoch, &a.user, &data);
    assert_eq!(mine["node"], "n1");
    let theirs = b.expect("msg");
    assert_eq!(theirs, mine, "every subscriber gets the same bytes");
    c.assert_quiet();

    // Scalars and strings pass through as JSON too; seq goes up by one.
    for (i, d) in [json!(null), json!("s"), json!(3.5), json!([])]
        .into_iter()
        .enumerate()
    {
        let ack = b.publish("room", d.clone());
        assert_eq!(ack["seq"], 2 + i as u64);
        check_msg(
            &b.expect("msg"),
            "room",
            2 + i as u64,
            &b.epoch,
            &b.user,
            &d,
        );
        check_msg(
            &a.expect("msg"),
            "room",
            2 + i as u64,
            &a.epoch,
            &b.user,
            &d,
        );
    }
    // A non-subscriber may publish; a pub without id gets no ack.
    c.send(&json!({"op":"pub","topic":"room","data":"x"}));
    check_msg(&a.expect("msg"), "room", 6, &a.epoch, &c.user, &json!("x"));
    c.assert_quiet();
    b.expect("msg");
    a.close();
    b.close();
    c.close();
    srv.stop();
}

#[test]
fn exclude_self_skips_only_the_publishing_connection() {
    let srv = serve_hub(hub_config_auth());
    let mut a1 = connect_as(srv.addr, "alice");
    let mut a2 = connect_as(srv.addr, "alice");
    let mut b = connect_as(srv.addr, "bob");
    a1.sub("t");
    a2.sub_ack("t");
    b.sub_ack("t");
    a1.expect_join(); // bob
    a2.expect_join();
    b.expect_join();

    a1.send(&json!({"op":"pub","topic":"t","data":{"k":1},"exclude_self":true,"id":1}));
    let ack = a1.expect("ack");
    assert_eq!((&ack["id"], &ack["seq"]), (&json!(1), &json!(1)));
    // Nothing for the publishing connection...
    a1.assert_quiet();
    // ...but the user's other connection and other users get it.
    check_msg(
        &a2.expect("msg"),
        "t",
        1,
        &a2.epoch,
        "alice",
        &json!({"k":1}),
    );
    check_msg(&b.expect("msg"), "t", 1, &b.epoch, "alice", &json!({"k":1}));
    // exclude_self: false is the default behaviour.
    a1.send(&json!({"op":"pub","topic":"t","data":2,"exclude_self":false,"id":2}));
    a1.expect("ack");
    check_msg(&a1.expect("msg"), "t", 2, &a1.epoch, "alice", &json!(2));
    a1.close();
    a2.close();
    b.close();
    srv.stop();
}

#[test]
fn dm_reaches_every_connection_of_the_user_and_nobody_else() {
    let srv = serve_hub(hub_config_auth());
    let mut a1 = connect_as(srv.addr, "alice");
    let mut a2 = connect_as(srv.addr, "alice");
    let mut b = connect_as(srv.addr, "bob");
    let mut c = connect_as(srv.addr, "carol");
    // Carol listens on a topic too, to be sure nothing leaks there.
    c.sub("t");

    b.send(&json!({"op":"dm","to":"alice","data":{"text":"psst"},"id":5}));
    let ack = b.expect("ack");
    assert_eq!(
        ack,
        json!({"type":"ack","id":5,"op":"dm","to":"alice","topic":"@alice","seq":1,"epoch":b.epoch})
    );
    for a in [&mut a1, &mut a2] {
        let m = a.expect("msg");
        check_msg(&m, "@alice", 1, &a.epoch, "bob", &json!({"text":"psst"}));
    }
    b.assert_quiet();
    c.assert_quiet();

    // Alice answers; only bob gets it. A second dm to alice has seq 2.
    a2.send(&json!({"op":"dm","to":"bob","data":"ok","id":6}));
    assert_eq!(a2.expect("ack")["seq"], 1);
    check_msg(&b.expect("msg"), "@bob", 1, &b.epoch, "alice", &json!("ok"));
    c.send(&json!({"op":"dm","to":"alice","data":"2","id":7}));
    assert_eq!(c.expect("ack")["seq"], 2);
    check_msg(
        &a1.expect("msg"),
        "@alice",
        2,
        &a1.epoch,
        "carol",
        &json!("2"),
    );
    check_msg(
        &a2.expect("msg"),
        "@alice",
        2,
        &a2.epoch,
        "carol",
        &json!("2"),
    );
    a1.assert_quiet();
    a2.assert_quiet();
    b.assert_quiet();

    // Nobody may subscribe to another user's inbox or publish into one.
    b.expect_error(json!({"op":"sub","topic":"@alice"}), "forbidden");
    b.expect_error(json!({"op":"pub","topic":"@alice","data":1}), "forbidden");
    // The user's own inbox has no join/leave events and reports presence.
    let id = b.request(json!({"op":"presence","topic":"@alice"}));
    let p = b.expect("error");
    assert_eq!((&p["id"], &p["code"]), (&json!(id), &json!("forbidden")));
    let id = a1.request(json!({"op":"presence","topic":"@alice"}));
    let p = a1.expect("presence");
    assert_eq!(p["id"], id);
    assert_eq!((&p["members"], &p["count"]), (&json!(["alice"]), &json!(1)));
    for x in [a1, a2, b, c] {
        x.close();
    }
    srv.stop();
}

#[test]
fn presence_members_count_and_join_leave_events() {
    let srv = serve_hub(hub_config_auth());
    let mut a1 = connect_as(srv.addr, "alice");
    let mut a2 = connect_as(srv.addr, "alice");
    let mut b = connect_as(srv.addr, "bob");
    let mut watcher = connect_as(srv.addr, "wat");

    // Presence of a topic nobody is in.
    let id = watcher.request(json!({"op":"presence","topic":"lobby"}));
    assert_eq!(
        watcher.expect("presence"),
        json!({"type":"presence","id":id,"topic":"lobby","members":[],"count":0,"cursor":null})
    );
    watcher.sub("lobby");
    a1.sub("lobby");
    let j = watcher.expect_join();
    assert_eq!(
        (&j["user"], &j["topic"]),
        (&json!("alice"), &json!("lobby"))
    );
    // Alice's second connection: no new join.
    a2.sub_ack("lobby");
    b.sub("lobby");
    assert_eq!(watcher.expect_join()["user"], "bob");
    assert_eq!(a1.expect_join()["user"], "bob");
    assert_eq!(a2.expect_join()["user"], "bob");
    watcher.assert_quiet();
    a1.assert_quiet();

    let id = b.request(json!({"op":"presence","topic":"lobby"}));
    assert_eq!(
        b.expect("presence"),
        json!({"type":"presence","id":id,"topic":"lobby",
               "members":["alice","bob","wat"],"count":3,"cursor":null})
    );

    // One of alice's connections leaves (by closing): no leave event.
    a1.close();
    watcher.assert_quiet();
    let p = presence_until(&mut watcher, "lobby", |_| true);
    assert_eq!(p["members"], json!(["alice", "bob", "wat"]));
    // Her last one unsubscribes: leave, to everyone still there.
    a2.send(&json!({"op":"unsub","topic":"lobby","id":3}));
    assert_eq!(a2.expect("ack")["op"], "unsub");
    a2.assert_quiet();
    for x in [&mut watcher, &mut b] {
        let l = x.expect_leave();
        assert_eq!(
            (&l["user"], &l["topic"]),
            (&json!("alice"), &json!("lobby"))
        );
        assert!(l["ts"].is_u64());
    }
    // Bob disconnects without a close handshake: leave as well.
    drop(b);
    let l = watcher.expect_leave();
    assert_eq!(l["user"], "bob");
    let id = watcher.request(json!({"op":"presence","topic":"lobby"}));
    let p = watcher.expect("presence");
    assert_eq!(p["id"], id);
    assert_eq!((&p["members"], &p["count"]), (&json!(["wat"]), &json!(1)));
    a2.close();
    watcher.close();
    srv.stop();
}

#[test]
fn errors_carry_the_request_id_and_a_code() {
    let srv = serve_hub(HubConfig {
        max_topics_per_conn: 3, // three topics besides the inbox
        ..hub_config()
    });
    let mut a = connect(srv.addr, None);

    // Not JSON at all: bad_request, id null (there is none to echo).
    a.c.send_text("this is not json");
    let e = a.expect("error");
    assert_eq!(
        (&e["id"], &e["code"]),
        (&Value::Null, &json!("bad_request"))
    );
    // JSON with an id but an unknown op, or missing fields: that id.
    a.expect_error(json!({"op":"nope"}), "bad_request");
    a.expect_error(json!({"op":"sub"}), "bad_request");
    a.expect_error(json!({"op":"pub","topic":"t"}), "bad_request");
    a.expect_error(json!({"topic":"t"}), "bad_request");
    // Bad topic names.
    a.expect_error(json!({"op":"sub","topic":""}), "bad_topic");
    a.expect_error(json!({"op":"sub","topic":"a b"}), "bad_topic");
    a.expect_error(json!({"op":"sub","topic":"tab\there"}), "bad_topic");
    a.expect_error(json!({"op":"sub","topic":"x".repeat(129)}), "bad_topic");
    a.expect_error(json!({"op":"pub","topic":"","data":1}), "bad_topic");
    a.expect_error(json!({"op":"pub","topic":"a\nb","data":1}), "bad_topic");
    a.expect_error(json!({"op":"dm","to":"","data":1}), "bad_topic");
    a.expect_error(json!({"op":"presence","topic":"a b"}), "bad_topic");
    // Invisible characters would make two names look the same.
    a.expect_error(json!({"op":"sub","topic":"lob\u{200b}by"}), "bad_topic");
    a.expect_error(json!({"op":"sub","topic":"lobby\u{a0}"}), "bad_topic");
    // A payload nested deeper than subscribers' parsers accept.
    let deep: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(65), "]".repeat(65))).unwrap();
    a.expect_error(json!({"op":"pub","topic":"t","data":deep}), "bad_request");
    // 128 bytes is still fine.
    a.sub("y".repeat(128).as_str());
    // Unsubscribing from something we are not in.
    a.expect_error(json!({"op":"unsub","topic":"never"}), "not_subscribed");
    // Subscription limit (the automatic inbox does not count): with "yyy…"
    // and "t2" and "t3" the fourth topic is refused.
    a.sub("t2");
    a.sub("t3");
    a.expect_error(json!({"op":"sub","topic":"t4"}), "too_many_topics");
    // Re-subscribing an existing topic is not a new subscription.
    a.sub_ack("t2");
    // After an unsub there is room again.
    a.send(&json!({"op":"unsub","topic":"t2","id":1}));
    a.expect("ack");
    a.sub("t4");
    // The connection survived all of it.
    let ack = a.publish("t4", json!("still here"));
    assert_eq!(ack["seq"], 1);
    a.expect("msg");
    a.close();

    // A binary frame closes with 1003.
    let mut b = connect(srv.addr, None);
    b.c.send_binary(b"{\"op\":\"sub\"}");
    match b.c.next() {
        Ev::Close(code, reason) => {
            assert_eq!(code, Some(1003));
            assert!(!reason.is_empty());
        }
        other => panic!("expected close 1003, got {other:?}"),
    }
    b.c.close(1003, "");
    b.c.expect_eof();
    drop(b);
    srv.stop();
}

#[test]
fn every_subscriber_sees_the_same_order_and_bursts_stay_in_order() {
    const PER_PUB: u64 = 150;
    let srv = serve_hub(hub_config());
    let mut subs: Vec<Hc> = (0..3).map(|_| connect(srv.addr, None)).collect();
    for s in &mut subs {
        s.sub_ack("order");
    }
    let mut pubs: Vec<Hc> = (0..2).map(|_| connect(srv.addr, None)).collect();
    let expected_total = PER_PUB * pubs.len() as u64;

    // Readers on their own threads (join events of later subscribers are
    // skipped); each returns the deliveries it saw.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                let mut got = Vec::new();
                while (got.len() as u64) < expected_total {
                    let v = s.recv();
                    if v["type"] == "msg" {
                        got.push(v);
                    }
                }
                (s, got)
            })
        })
        .collect();
    // Two publishers, each a burst without waiting for acks, concurrently.
    let writers: Vec<_> = pubs
        .drain(..)
        .enumerate()
        .map(|(p, mut h)| {
            thread::spawn(move || {
                for i in 0..PER_PUB {
                    h.send(&json!({"op":"pub","topic":"order","data":{"p":p,"i":i},"id":i}));
                }
                let mut seqs = Vec::new();
                for i in 0..PER_PUB {
                    let ack = h.expect("ack");
                    assert_eq!(ack["id"], i, "acks come in request order");
                    seqs.push(ack["seq"].as_u64().unwrap());
                }
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                (h, seqs)
            })
        })
        .collect();
    let mut acked: Vec<u64> = Vec::new();
    for w in writers {
        let (h, seqs) = w.join().unwrap();
        acked.extend(seqs);
        h.close();
    }
    acked.sort_unstable();
    assert_eq!(acked, (1..=expected_total).collect::<Vec<_>>());

    let mut first: Option<Vec<Value>> = None;
    let mut done = Vec::new();
    for r in readers {
        let (mut s, got) = r.join().unwrap();
        // Nothing but deliveries (and joins) came.
        s.assert_quiet_except_joins();
        let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=expected_total).collect::<Vec<_>>());
        // Each publisher's burst arrives in the order it was sent.
        for p in 0..2 {
            let is: Vec<u64> = got
                .iter()
                .filter(|m| m["data"]["p"] == p)
                .map(|m| m["data"]["i"].as_u64().unwrap())
                .collect();
            assert_eq!(is, (0..PER_PUB).collect::<Vec<_>>());
        }
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "subscribers disagree on the order"),
        }
        done.push(s);
    }
    for s in done {
        s.close();
    }
    srv.stop();
}

trait QuietExceptJoins {
    fn assert_quiet_except_joins(&mut self);
}

impl QuietExceptJoins for Hc {
    fn assert_quiet_except_joins(&mut self) {
        let got = self.barrier();
        assert!(got.iter().all(|v| v["type"] == "presence_diff"), "{got:?}");
    }
}

/// Publishes without an id, pipelined in one write, are held and queued to
/// each subscriber together (src/pubsub/batch.rs). Every delivery still
/// arrives as its own frame, in order, and anything else in the same read
/// (an acked publish, a presence request) lands exactly where it would
/// without the batching.
#[test]
fn pipelined_publishes_arrive_whole_and_in_order_around_other_replies() {
    const BURST: u64 = 100;
    let srv = serve_hub(hub_config());
    let mut subs: Vec<Hc> = (0..2).map(|_| connect(srv.addr, None)).collect();
    for s in &mut subs {
        s.sub_ack("burst");
    }
    let mut p = connect(srv.addr, None);
    p.sub_ack("burst");
    let pubreq = |i: u64| json!({"op":"pub","topic":"burst","data":{"i":i}});
    let mut wire = Vec::new();
    let mut frame = |p: &mut Hc, v: Value| {
        let f =
            p.c.frame_bytes(wsmio::proto::OpCode::Text, true, v.to_string().as_bytes());
        wire.extend_from_slice(&f);
    };
    for i in 1..=BURST {
        frame(&mut p, pubreq(i));
    }
    let mut acked = pubreq(BURST + 1);
    acked["id"] = json!(7);
    frame(&mut p, acked);
    for i in BURST + 2..=2 * BURST + 1 {
        frame(&mut p, pubreq(i));
    }
    frame(&mut p, json!({"op":"presence","topic":"burst","id":8}));
    p.c.send_raw(&wire);

    // Subscribers: deliveries 1..=2*BURST+1, consecutive, each intact.
    for s in &mut subs {
        for seq in 1..=2 * BURST + 1 {
            let m = s.skip_to("msg");
            assert_eq!(
                (&m["seq"], &m["data"]["i"]),
                (&json!(seq), &json!(seq)),
                "{m}"
            );
            assert_eq!(m["topic"], "burst");
        }
    }
    // The publisher: its copies before the ack, the ack before its own copy
    // of the acked publish, the presence reply after the last delivery.
    let mut order = Vec::new();
    while order.last().map(String::as_str) != Some("presence") {
        let v = p.recv();
        match v["type"].as_str().unwrap() {
            "msg" => order.push(format!("msg {}", v["seq"])),
            "ack" => order.push(format!("ack {} seq {}", v["id"], v["seq"])),
            "presence" => order.push("presence".into()),
            "presence_diff" => {}
            t => panic!("unexpected {t}: {v}"),
        }
    }
    let mut want: Vec<String> = (1..=BURST).map(|s| format!("msg {s}")).collect();
    want.push(format!("ack 7 seq {}", BURST + 1));
    want.extend((BURST + 1..=2 * BURST + 1).map(|s| format!("msg {s}")));
    want.push("presence".into());
    assert_eq!(order, want);
    p.close();
    for s in subs {
        s.close();
    }
    srv.stop();
}
