//! Delivery guarantees on one node (memory engine): acknowledgements kept
//! per user and topic and `"since":"acked"` from a new connection,
//! idempotent publishing. The same over Redis, across nodes and restarts,
//! is in `tests/cluster.rs`.

mod common;
mod hub_support;

use std::time::Duration;

use hub_support::*;
use serde_json::{json, Value};
use wsmio::pubsub::HubConfig;

/// Publish `n` messages on `topic` from `p` (not subscribed).
fn publish_n(p: &mut Hc, topic: &str, n: u64) -> Vec<Value> {
    (0..n).map(|k| p.publish(topic, json!(k))).collect()
}

/// The next `n` deliveries of `topic` (other messages are skipped).
fn deliveries(c: &mut Hc, topic: &str, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = c.recv();
        if v["type"] == "msg" && v["topic"] == topic {
            got.push(v["seq"].as_u64().unwrap());
        }
    }
    got
}

/// `sub` with `"since":"acked"`; the ack.
fn sub_acked(c: &mut Hc, topic: &str) -> Value {
    let id = c.request(json!({"op":"sub","topic":topic,"since":"acked"}));
    let ack = c.skip_to("ack");
    assert_eq!(ack["id"], id, "{ack}");
    ack
}

#[test]
fn a_new_device_resumes_from_the_last_acknowledged_position() {
    let srv = serve_hub(hub_config_auth());
    let a = srv.addr;
    let mut p = connect_as(a, "pub");
    let mut phone = connect_as(a, "alice");
    phone.sub("room");
    publish_n(&mut p, "room", 5);
    assert_eq!(deliveries(&mut phone, "room", 5), [1, 2, 3, 4, 5]);
    let epoch = phone.sub_ack("room")["epoch"].as_str().unwrap().to_string();
    // Acks are cumulative and cheap: no answer without an id.
    phone.send(&json!({"op":"ack","topic":"room","seq":2}));
    let id = phone.request(json!({"op":"ack","topic":"room","seq":3,"epoch":epoch}));
    let ack = phone.expect("ack");
    assert_eq!(
        ack,
        json!({"type":"ack","id":id,"op":"ack","topic":"room","seq":3})
    );
    // An older ack does not move it back.
    phone.send(&json!({"op":"ack","topic":"room","seq":1}));
    phone.assert_quiet();
    phone.close();

    // Another device of alice: exactly what came after seq 3.
    let mut laptop = connect_as(a, "alice");
    let ack = sub_acked(&mut laptop, "room");
    assert_eq!(
        (
            &ack["resumed"],
            &ack["recovered"],
            &ack["replayed"],
            &ack["seq"]
        ),
        (&json!(true), &json!(true), &json!(2), &json!(5)),
        "{ack}"
    );
    assert_eq!(ack["acked"], json!({"epoch": epoch, "seq": 3}));
    assert_eq!(deliveries(&mut laptop, "room", 2), [4, 5]);
    // And live ones after that.
    p.publish("room", json!("live"));
    assert_eq!(deliveries(&mut laptop, "room", 1), [6]);

    // Nothing stored for bob: a fresh subscription, and the ack says so.
    let mut bob = connect_as(a, "bob");
    let ack = sub_acked(&mut bob, "room");
    assert_eq!(
        (&ack["resumed"], &ack["acked"], &ack["replayed"]),
        (&json!(false), &json!(null), &json!(0)),
        "{ack}"
    );
    let m = metrics(a);
    assert_eq!(metric(&m, "wsmio_acks_total"), 3);
    assert_eq!(metric(&m, "wsmio_positions_restored_total"), 1);
    assert_eq!(metric(&m, "wsmio_sessions"), 1);
    assert_eq!(metric(&m, "wsmio_acked_positions"), 1);
    srv.stop();
}

#[test]
fn an_acked_position_older_than_history_reports_the_loss() {
    let srv = serve_hub(HubConfig {
        history_len: 3,
        ..hub_config_auth()
    });
    let mut p = connect_as(srv.addr, "pub");
    let mut a = connect_as(srv.addr, "alice");
    a.sub("room");
    publish_n(&mut p, "room", 2);
    deliveries(&mut a, "room", 2);
    a.send(&json!({"op":"ack","topic":"room","seq":2}));
    a.close();
    publish_n(&mut p, "room", 8); // 3..=10: history keeps 8, 9, 10
    let mut b = connect_as(srv.addr, "alice");
    let ack = sub_acked(&mut b, "room");
    assert_eq!(
        (
            &ack["recovered"],
            &ack["lost"],
            &ack["replayed"],
            &ack["seq"]
        ),
        (&json!(false), &json!(5), &json!(3), &json!(10)),
        "{ack}"
    );
    assert_eq!(deliveries(&mut b, "room", 3), [8, 9, 10]);
    srv.stop();
}

#[test]
fn bad_acks_get_typed_errors() {
    let srv = serve_hub(HubConfig {
        max_positions_per_user: 2,
        ..hub_config_auth()
    });
    let mut p = connect_as(srv.addr, "pub");
    let mut a = connect_as(srv.addr, "alice");
    a.sub("r1");
    publish_n(&mut p, "r1", 2);
    deliveries(&mut a, "r1", 2);
    a.expect_error(
        json!({"op":"ack","topic":"elsewhere","seq":1}),
        "not_subscribed",
    );
    let e = a.expect_error(json!({"op":"ack","topic":"r1","seq":3}), "bad_ack");
    assert!(e["message"].as_str().unwrap().contains("beyond"), "{e}");
    a.expect_error(
        json!({"op":"ack","topic":"r1","seq":1,"epoch":"not-this-one"}),
        "bad_ack",
    );
    a.expect_error(json!({"op":"ack","topic":"r1"}), "bad_request");
    a.expect_error(json!({"op":"ack","topic":"r1","seq":"two"}), "bad_request");
    a.expect_error(json!({"op":"ack","topic":"a b","seq":1}), "bad_topic");
    a.expect_error(
        json!({"op":"sub","topic":"r1","since":"latest"}),
        "bad_request",
    );
    // Two positions per user: a third topic is refused, typed.
    a.sub("r2");
    a.sub("r3");
    let ok = a.request(json!({"op":"ack","topic":"r1","seq":2}));
    assert_eq!(a.expect("ack")["id"], ok);
    let ok = a.request(json!({"op":"ack","topic":"r2","seq":0}));
    assert_eq!(a.expect("ack")["id"], ok);
    a.expect_error(json!({"op":"ack","topic":"r3","seq":0}), "too_many_topics");
    srv.stop();
}

#[test]
fn a_retried_publish_with_its_idempotency_key_is_stored_and_delivered_once() {
    let srv = serve_hub(HubConfig {
        idempotency_window: Duration::from_millis(400),
        ..hub_config_auth()
    });
    let a = srv.addr;
    let mut sub = connect_as(a, "sub");
    sub.sub("room");
    let mut p = connect_as(a, "pub");
    let first = {
        let id = p.request(json!({"op":"pub","topic":"room","data":"once","idempotency_key":"k1"}));
        let ack = p.expect("ack");
        assert_eq!((&ack["id"], &ack["seq"]), (&json!(id), &json!(1)), "{ack}");
        assert!(ack.get("duplicate").is_none(), "{ack}");
        ack
    };
    // The publisher's connection dropped before it saw the ack; it retries
    // on a new one: the original's ack, nothing stored or delivered again.
    p.close();
    let mut p = connect_as(a, "pub");
    let id = p.request(json!({"op":"pub","topic":"room","data":"once","idempotency_key":"k1"}));
    let ack = p.expect("ack");
    assert_eq!(
        (&ack["id"], &ack["seq"], &ack["epoch"], &ack["duplicate"]),
        (&json!(id), &first["seq"], &first["epoch"], &json!(true)),
        "{ack}"
    );
    // Without an id the duplicate is still answered: a retry must learn it.
    p.send(&json!({"op":"pub","topic":"room","data":"once","idempotency_key":"k1"}));
    assert_eq!(p.expect("ack")["duplicate"], true);
    // Another user's key of the same name is theirs.
    let mut q = connect_as(a, "q");
    q.request(json!({"op":"pub","topic":"room","data":"q","idempotency_key":"k1"}));
    assert_eq!(q.expect("ack")["seq"], 2);
    // A different key is a different publish.
    let id = p.request(json!({"op":"pub","topic":"room","data":"two","idempotency_key":"k2"}));
    let ack = p.expect("ack");
    assert_eq!((&ack["id"], &ack["seq"]), (&json!(id), &json!(3)));
    // DMs too.
    let dm = json!({"op":"dm","to":"sub","data":"psst","idempotency_key":"d1"});
    p.request(dm.clone());
    let d1 = p.expect("ack");
    p.request(dm);
    let d2 = p.expect("ack");
    assert_eq!(
        (&d1["seq"], &d2["seq"], &d2["topic"], &d2["duplicate"]),
        (&json!(1), &json!(1), &json!("@sub"), &json!(true))
    );
    // The subscriber got each publish once.
    assert_eq!(deliveries(&mut sub, "room", 3), [1, 2, 3]);
    assert_eq!(deliveries(&mut sub, "@sub", 1), [1]);
    sub.assert_quiet();
    // After the window the key is forgotten: the same key publishes anew.
    std::thread::sleep(Duration::from_millis(500));
    p.request(json!({"op":"pub","topic":"room","data":"again","idempotency_key":"k1"}));
    let ack = p.expect("ack");
    assert_eq!(
        (&ack["seq"], ack.get("duplicate")),
        (&json!(4), None),
        "{ack}"
    );
    assert_eq!(deliveries(&mut sub, "room", 1), [4]);
    p.expect_error(
        json!({"op":"pub","topic":"room","data":1,"idempotency_key":"k".repeat(129)}),
        "bad_request",
    );
    let m = metrics(a);
    assert_eq!(metric(&m, "wsmio_duplicate_publishes_total"), 3);
    srv.stop();
}

/// `--redeliver-after`: what a connection has not acked a deadline after
/// it was outstanding comes again (from its ack on, in order), at most
/// `redeliver_attempts` times; acking ends it; a topic it never acked is
/// never redelivered.
#[test]
fn unacknowledged_deliveries_are_redelivered_on_the_same_connection() {
    let srv = serve_hub(HubConfig {
        redeliver_after: Some(Duration::from_millis(200)),
        redeliver_attempts: 2,
        ..hub_config_auth()
    });
    let mut c = connect_as(srv.addr, "worker");
    c.sub("jobs");
    c.sub("quiet");
    let mut p = connect_as(srv.addr, "boss");
    publish_n(&mut p, "jobs", 3);
    publish_n(&mut p, "quiet", 2);
    let mut got = deliveries(&mut c, "jobs", 3);
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(deliveries(&mut c, "quiet", 2), [1, 2]);
    // Processed 1 only: 2 and 3 come again, twice, then no more.
    c.send(&json!({"op":"ack","topic":"jobs","seq":1}));
    let start = std::time::Instant::now();
    got.clear();
    let mut other = Vec::new();
    while start.elapsed() < Duration::from_millis(1500) {
        match c.recv_within(Duration::from_millis(100)) {
            Some(v) if v["type"] == "msg" && v["topic"] == "jobs" => {
                got.push(v["seq"].as_u64().unwrap())
            }
            Some(v) => other.push(v),
            None => {}
        }
    }
    assert_eq!(got, [2, 3, 2, 3], "two redeliveries of what was not acked");
    assert!(
        other
            .iter()
            .all(|v| v["topic"] != "quiet" || v["type"] != "msg"),
        "a topic never acked is not watched: {other:?}"
    );
    // Acking the rest ends it; a new delivery is watched from there.
    c.send(&json!({"op":"ack","topic":"jobs","seq":3}));
    publish_n(&mut p, "jobs", 1);
    assert_eq!(deliveries(&mut c, "jobs", 1), [4]);
    c.send(&json!({"op":"ack","topic":"jobs","seq":4}));
    assert!(
        c.recv_within(Duration::from_millis(600)).is_none(),
        "nothing after everything was acked"
    );
    let m = metrics(srv.addr);
    assert_eq!(metric(&m, "wsmio_redeliveries_total"), 4);
    srv.stop();
}
