//! History and resume: reconnect and `sub` with `since` to get what was
//! missed — complete, with a gap, across a server restart (another epoch),
//! and a direct message sent while the user was offline.

mod common;
mod hub_support;

use hub_support::*;
use serde_json::{json, Value};
use wsmio::pubsub::HubConfig;

/// Resume `topic` after `seq` of `epoch`; returns the ack and the replayed
/// deliveries that follow it (as many as the ack says).
fn resume(c: &mut Hc, topic: &str, epoch: &str, seq: u64) -> (Value, Vec<Value>) {
    let id = c.request(json!({"op":"sub","topic":topic,"since":{"epoch":epoch,"seq":seq}}));
    let ack = c.expect("ack");
    assert_eq!(
        (&ack["id"], &ack["op"]),
        (&json!(id), &json!("sub")),
        "{ack}"
    );
    assert_eq!(ack["resumed"], true, "{ack}");
    let n = ack["replayed"].as_u64().unwrap();
    let msgs = (0..n).map(|_| c.expect("msg")).collect();
    (ack, msgs)
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[test]
fn reconnect_and_resume_gets_everything_missed() {
    let srv = serve_hub(hub_config_auth());
    let mut p = connect_as(srv.addr, "pub");
    let mut a = connect_as(srv.addr, "alice");
    a.sub("room");
    p.publish("room", json!({"n":1}));
    let last = a.expect("msg");
    check_msg(&last, "room", 1, &a.epoch, "pub", &json!({"n":1}));
    let (epoch, seq) = (a.epoch.clone(), 1);
    drop(a); // gone without a goodbye
    presence_until(&mut p, "room", |v| v["count"] == 0);

    for n in 2..=4 {
        p.publish("room", json!({ "n": n }));
    }
    let mut a = connect_as(srv.addr, "alice");
    let (ack, missed) = resume(&mut a, "room", &epoch, seq);
    assert_eq!(
        ack,
        json!({"type":"ack","id":ack["id"],"op":"sub","topic":"room","epoch":epoch,"seq":4,
               "resumed":true,"recovered":true,"lost":0,"epoch_changed":false,"replayed":3})
    );
    assert_eq!(seqs(&missed), [2, 3, 4]);
    for (m, n) in missed.iter().zip(2..) {
        check_msg(m, "room", n, &epoch, "pub", &json!({ "n": n }));
    }
    // Then the join event and live deliveries continue the sequence.
    assert_eq!(a.expect_join()["user"], "alice");
    p.publish("room", json!({"n":5}));
    check_msg(&a.expect("msg"), "room", 5, &epoch, "pub", &json!({"n":5}));

    // Resuming while already subscribed and up to date replays nothing.
    let (ack, missed) = resume(&mut a, "room", &epoch, 5);
    assert!(missed.is_empty());
    assert_eq!((&ack["recovered"], &ack["lost"]), (&json!(true), &json!(0)));
    a.assert_quiet();
    // A topic never seen: nothing to replay, nothing lost.
    let (ack, missed) = resume(&mut a, "fresh", &epoch, 0);
    assert!(missed.is_empty());
    assert_eq!((&ack["seq"], &ack["recovered"]), (&json!(0), &json!(true)));
    a.close();
    p.close();
    srv.stop();
}

#[test]
fn resume_with_a_gap_reports_what_was_lost() {
    let srv = serve_hub(HubConfig {
        history_len: 3,
        ..hub_config()
    });
    let mut p = connect(srv.addr, None);
    let mut a = connect(srv.addr, None);
    a.sub("g");
    p.publish("g", json!(1));
    assert_eq!(a.expect("msg")["seq"], 1);
    let epoch = a.epoch.clone();
    a.close();
    for n in 2..=8 {
        p.publish("g", json!(n));
    }
    // History keeps 6, 7, 8: 2..=5 are gone.
    let mut a = connect(srv.addr, None);
    let (ack, missed) = resume(&mut a, "g", &epoch, 1);
    assert_eq!(
        (
            &ack["recovered"],
            &ack["lost"],
            &ack["replayed"],
            &ack["seq"],
            &ack["epoch_changed"]
        ),
        (
            &json!(false),
            &json!(4),
            &json!(3),
            &json!(8),
            &json!(false)
        ),
        "{ack}"
    );
    assert_eq!(seqs(&missed), [6, 7, 8]);
    assert_eq!(missed[0]["data"], 6);
    a.expect_join();
    // From within the window it is complete again.
    let (ack, missed) = resume(&mut a, "g", &epoch, 6);
    assert_eq!((&ack["recovered"], &ack["lost"]), (&json!(true), &json!(0)));
    assert_eq!(seqs(&missed), [7, 8]);
    a.close();
    p.close();
    srv.stop();
}

/// `history_age` drops deliveries by their age on the hub's monotonic
/// clock; what a delivery carries as `ts` is still wall-clock time.
#[test]
fn history_forgets_deliveries_older_than_its_age() {
    let srv = serve_hub(HubConfig {
        history_age: std::time::Duration::from_millis(300),
        ..hub_config()
    });
    let mut p = connect(srv.addr, None);
    let mut a = connect(srv.addr, None);
    a.sub("aged");
    let before = now_ms();
    p.publish("aged", json!(1));
    let first = a.expect("msg");
    let ts = first["ts"].as_u64().unwrap();
    assert!(ts >= before && ts <= now_ms(), "{first}");
    let epoch = a.epoch.clone();
    a.close();
    p.publish("aged", json!(2));
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.publish("aged", json!(3));
    // 1 and 2 are older than 300 ms by now: only 3 can be replayed.
    let mut a = connect(srv.addr, None);
    let (ack, missed) = resume(&mut a, "aged", &epoch, 0);
    assert_eq!(
        (&ack["recovered"], &ack["lost"], &ack["replayed"]),
        (&json!(false), &json!(2), &json!(1)),
        "{ack}"
    );
    assert_eq!(seqs(&missed), [3]);
    a.close();
    p.close();
    srv.stop();
}

#[test]
fn resume_across_a_restart_says_the_epoch_changed() {
    // The first server's life: the client sees seq 1 and 2.
    let old = serve_hub(hub_config());
    let mut a = connect(old.addr, None);
    a.sub("r");
    a.publish("r", json!("old-1"));
    a.expect("msg");
    a.publish("r", json!("old-2"));
    let last = a.expect("msg");
    let old_epoch = a.epoch.clone();
    assert_eq!(last["seq"], 2);
    drop(a);
    old.stop();

    // A new server (new epoch) where the topic got two messages.
    let new = serve_hub(hub_config());
    let mut p = connect(new.addr, None);
    assert_ne!(p.epoch, old_epoch, "a restarted hub has a new epoch");
    p.publish("r", json!("new-1"));
    p.publish("r", json!("new-2"));
    let mut a = connect(new.addr, None);
    let (ack, replay) = resume(&mut a, "r", &old_epoch, 2);
    assert_eq!(
        (
            &ack["epoch"],
            &ack["epoch_changed"],
            &ack["recovered"],
            &ack["replayed"],
            &ack["seq"]
        ),
        (
            &json!(p.epoch),
            &json!(true),
            &json!(false),
            &json!(2),
            &json!(2)
        ),
        "{ack}"
    );
    // What this epoch has is replayed, with the new epoch on it.
    assert_eq!(seqs(&replay), [1, 2]);
    for (m, d) in replay.iter().zip(["new-1", "new-2"]) {
        check_msg(
            m,
            "r",
            m["seq"].as_u64().unwrap(),
            &p.epoch,
            &p.user,
            &json!(d),
        );
    }
    a.expect_join();
    // A made-up epoch is treated the same way.
    let (ack, _) = resume(&mut a, "r", "000000000000", 1);
    assert_eq!(ack["epoch_changed"], true);
    a.close();
    p.close();
    new.stop();
}

#[test]
fn dm_to_an_offline_user_is_in_the_inbox_on_resume() {
    let srv = serve_hub(hub_config_auth());
    let mut b = connect_as(srv.addr, "bob");
    // Alice gets one dm while online...
    let mut a = connect_as(srv.addr, "alice");
    b.request(json!({"op":"dm","to":"alice","data":"while online"}));
    b.expect("ack");
    let m = a.expect("msg");
    check_msg(&m, "@alice", 1, &a.epoch, "bob", &json!("while online"));
    let epoch = a.epoch.clone();
    a.close();
    // ...and two while offline (and one to a user who never connected).
    for (to, text) in [("alice", "first"), ("alice", "second"), ("dave", "hi dave")] {
        b.request(json!({"op":"dm","to":to,"data":text}));
        assert_eq!(b.expect("ack")["to"], to);
    }

    // Back online: the inbox subscription's ack says where it is (seq 3);
    // resuming it replays what came while she was away.
    let mut a = connect_as(srv.addr, "alice");
    let (ack, missed) = resume(&mut a, "@alice", &epoch, 1);
    assert_eq!(
        (&ack["recovered"], &ack["lost"], &ack["seq"]),
        (&json!(true), &json!(0), &json!(3))
    );
    assert_eq!(seqs(&missed), [2, 3]);
    check_msg(&missed[0], "@alice", 2, &epoch, "bob", &json!("first"));
    check_msg(&missed[1], "@alice", 3, &epoch, "bob", &json!("second"));
    // No join event for an inbox, and nothing else.
    a.assert_quiet();

    // A first-time user reads the inbox from the start (seq 0).
    let mut d = connect_as(srv.addr, "dave");
    let epoch = d.epoch.clone();
    let (_, missed) = resume(&mut d, "@dave", &epoch, 0);
    check_msg(&missed[0], "@dave", 1, &d.epoch, "bob", &json!("hi dave"));
    a.close();
    b.close();
    d.close();
    srv.stop();
}

/// A topic dropped at the node's topic limit and created again numbers
/// from 1 in a new epoch: a client resuming from the old numbers is told
/// the epoch changed, and gets the new deliveries, instead of "recovered,
/// nothing lost" (the old seq 3 is beyond the new topic's seq 2).
#[test]
fn a_dropped_and_recreated_topic_is_a_new_epoch() {
    // Two rooms (inboxes are counted apart).
    let srv = serve_hub(HubConfig {
        max_topics: 2,
        ..hub_config_auth()
    });
    let mut p = connect_as(srv.addr, "pub");
    let mut a = connect_as(srv.addr, "alice");
    a.sub("room");
    for n in 1..=3 {
        p.publish("room", json!(n));
        a.expect("msg");
    }
    let node_epoch = a.epoch.clone();
    drop(a);
    presence_until(&mut p, "room", |v| v["count"] == 0);
    // New topics push the node to its limit; "room", unsubscribed and
    // published to longest ago, is dropped first.
    for t in ["t1", "t2", "t3"] {
        p.publish(t, json!("x"));
    }
    // Recreated (and kept: subscribed, so not dropped again).
    p.sub("room");
    let acks: Vec<Value> = (1..=2)
        .map(|n| {
            let ack = p.publish("room", json!(n));
            p.expect("msg");
            ack
        })
        .collect();
    assert_eq!(seqs(&acks), [1, 2]);
    let new_epoch = acks[0]["epoch"].as_str().unwrap().to_string();
    assert!(
        new_epoch.starts_with(&format!("{node_epoch}.")),
        "{new_epoch} after {node_epoch}"
    );

    let mut a = connect_as(srv.addr, "alice");
    let (ack, replay) = resume(&mut a, "room", &node_epoch, 3);
    assert_eq!(
        (
            &ack["epoch"],
            &ack["seq"],
            &ack["epoch_changed"],
            &ack["recovered"]
        ),
        (&json!(new_epoch), &json!(2), &json!(true), &json!(false)),
        "{ack}"
    );
    assert_eq!(seqs(&replay), [1, 2]);
    assert!(replay.iter().all(|m| m["epoch"] == json!(new_epoch)));
    a.close();
    p.close();
    srv.stop();
}

/// At the topic limit with no topic that can go (all subscribed), a new
/// topic is refused with `too_many_topics`; existing ones work on.
#[test]
fn a_full_node_refuses_new_topics() {
    // One room ("a"); inboxes are counted apart.
    let srv = serve_hub(HubConfig {
        max_topics: 1,
        ..hub_config()
    });
    let mut p = connect(srv.addr, None);
    p.sub("a");
    p.expect_error(json!({"op":"pub","topic":"b","data":1}), "too_many_topics");
    p.expect_error(json!({"op":"sub","topic":"c"}), "too_many_topics");
    p.publish("a", json!(1));
    assert_eq!(p.expect("msg")["seq"], 1);
    p.close();
    srv.stop();
}

/// All histories together stay within `max_history_bytes`: the topics
/// published to longest ago lose their history first, and a resume there
/// reports the loss; the newest topic keeps all of its history.
#[test]
fn history_is_bounded_in_bytes_across_topics() {
    let srv = serve_hub(HubConfig {
        max_history_bytes: 1500,
        ..hub_config()
    });
    let mut p = connect(srv.addr, None);
    let data = "d".repeat(100);
    for t in ["a", "b", "c"] {
        for _ in 0..5 {
            p.publish(t, json!(data));
        }
    }
    let epoch = p.epoch.clone();
    // What is left (c's five deliveries, some of b's at most) is within
    // the budget, and the gauge says so.
    let held = metric(&metrics(srv.addr), "wsmio_history_bytes");
    assert!((1..=1500).contains(&held), "history bytes {held}");
    let mut r = connect(srv.addr, None);
    let (ack, replay) = resume(&mut r, "a", &epoch, 0);
    assert_eq!(
        (&ack["recovered"], &ack["lost"], &ack["seq"]),
        (&json!(false), &json!(5), &json!(5)),
        "{ack}"
    );
    assert!(replay.is_empty());
    r.expect_join();
    let (ack, replay) = resume(&mut r, "c", &epoch, 0);
    assert_eq!((&ack["recovered"], &ack["lost"]), (&json!(true), &json!(0)));
    assert_eq!(seqs(&replay), [1, 2, 3, 4, 5]);
    r.close();
    p.close();
    srv.stop();
}

/// A hub whose clients have a 16 KiB queue, and a publisher that put 200
/// deliveries of 50 KB on topic "big": 10 MB to replay, more than the
/// queue and the sockets' buffers hold. Returns the payload too.
fn big_history() -> (Srv, Hc, String) {
    let cfg = common::config()
        .with_max_queued_bytes(16 * 1024)
        .with_backpressure_limit(8 * 1024);
    let srv = serve(
        HubConfig {
            history_len: 300,
            ..hub_config()
        },
        cfg,
    );
    let mut p = connect(srv.addr, None);
    let data = "x".repeat(50_000);
    for _ in 0..200 {
        p.publish("big", json!(data));
    }
    (srv, p, data)
}

/// A replay larger than the client's queue (and the sockets' buffers) is
/// paced by it, with the default slow-consumer policy (`close`): the client
/// is not closed, and gets every missed delivery and then the live ones,
/// each once, in order.
#[test]
fn a_replay_larger_than_the_queue_is_paced() {
    let (srv, mut p, data) = big_history();
    let epoch = p.epoch.clone();
    let mut a = connect(srv.addr, None);
    a.request(json!({"op":"sub","topic":"big","since":{"epoch":epoch,"seq":0}}));
    // Live deliveries while the replay is under way.
    for _ in 0..5 {
        p.publish("big", json!(data));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ack = a.expect("ack");
    assert_eq!(
        (&ack["recovered"], &ack["lost"]),
        (&json!(true), &json!(0)),
        "{ack}"
    );
    let mut got = Vec::new();
    while got.len() < 205 {
        let v = a.recv();
        match v["type"].as_str() {
            Some("msg") => got.push(v["seq"].as_u64().unwrap()),
            Some("presence_diff") => {}
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(got, (1..=205).collect::<Vec<u64>>());
    a.assert_quiet();
    a.close();
    p.close();
    srv.stop();
}

/// While a paced replay is under way: a `sub` without `since` to the same
/// topic leaves it running, and the client's own publish with
/// `exclude_self` is not replayed to it. Everything else arrives once, in
/// order.
#[test]
fn a_paced_replay_survives_resubscribing_and_honours_exclude_self() {
    let (srv, mut p, _) = big_history();
    let epoch = p.epoch.clone();
    let mut a = connect(srv.addr, None);
    a.request(json!({"op":"sub","topic":"big","since":{"epoch":epoch,"seq":0}}));
    a.request(json!({"op":"sub","topic":"big"}));
    let mine = a.request(json!({"op":"pub","topic":"big","data":"mine","exclude_self":true}));
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..3 {
        p.publish("big", json!("live"));
    }
    let mut got = Vec::new();
    let mut acks = 0;
    let mut mine_seq = None;
    while got.len() < 203 || acks < 3 {
        let v = a.recv();
        match v["type"].as_str() {
            Some("msg") => {
                assert_ne!(v["data"], "mine", "own exclude_self publish replayed");
                got.push(v["seq"].as_u64().unwrap());
            }
            Some("ack") => {
                acks += 1;
                if v["id"] == mine {
                    mine_seq = v["seq"].as_u64();
                }
            }
            Some("presence_diff") => {}
            _ => panic!("unexpected {v}"),
        }
    }
    // (While `a` does not read, the hub may stop reading it, so its own
    // publish can come after the live ones.)
    let mine_seq = mine_seq.expect("the ack of the own publish");
    let expect: Vec<u64> = (1..=204).filter(|&s| s != mine_seq).collect();
    assert_eq!(got, expect);
    a.assert_quiet();
    a.close();
    p.close();
    srv.stop();
}
