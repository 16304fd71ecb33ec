//! Subscriptions across reconnects: resume with `since`, duplicates
//! dropped, `gap`, `reset`, epoch changes, refused subscriptions,
//! malformed hub messages.

use super::*;

/// Drop the connection and come back: returns the frames sent after the
/// next welcome (in `epoch`).
fn reconnect(rig: &mut Rig, epoch: &str) -> Vec<Value> {
    rig.close(1006, "");
    rig.run_to_deadline();
    assert!(matches!(rig.actions()[..], [Action::Connect { .. }]));
    let sent = rig.open(epoch);
    rig.events();
    sent
}

#[test]
fn resubscribes_from_the_last_seq_and_drops_replayed_duplicates() {
    let mut rig = Rig::default();
    rig.c.subscribe("room", SubOptions::default()).unwrap();
    let sent = rig.open("e1");
    assert_eq!(sent, [json!({"op":"sub","topic":"room","id":1})]);
    rig.sub_ack(&sent[0], "e1", 0, json!({}));
    for seq in 1..=3 {
        rig.msg("room", "e1", seq);
    }
    assert_eq!(Rig::seqs(&rig.events()), [1, 2, 3]);
    assert_eq!(rig.c.position("room"), Some(&Position::new("e1", 3)));

    // Dropped mid-stream; the hub resumes after 3 and replays 4 and 5 —
    // and, as a replay overlapping what was seen can, 3 again.
    let sent = reconnect(&mut rig, "e1");
    assert_eq!(
        sent,
        [json!({"op":"sub","topic":"room","since":{"epoch":"e1","seq":3},"id":2})]
    );
    rig.sub_ack(&sent[0], "e1", 5, json!({"replayed":2}));
    for seq in [3, 4, 5, 4] {
        rig.msg("room", "e1", seq);
    }
    let ev = rig.events();
    let Event::Subscribed(s) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!(s.resumed && s.recovered && s.replayed == 2 && !s.epoch_changed);
    assert_eq!(Rig::seqs(&ev), [4, 5]);
    assert_eq!(rig.c.duplicates_dropped(), 2);
}

#[test]
fn the_first_subscription_starts_where_asked() {
    let mut rig = Rig::default();
    rig.c.subscribe("a", SubOptions::acked()).unwrap();
    rig.c.subscribe("b", SubOptions::from("e0", 7)).unwrap();
    let sent = rig.open("e1");
    assert_eq!(
        sent[0],
        json!({"op":"sub","topic":"a","since":"acked","id":1})
    );
    assert_eq!(
        sent[1],
        json!({"op":"sub","topic":"b","since":{"epoch":"e0","seq":7},"id":2})
    );
    // "acked" with a stored position: the replay after it is new.
    rig.sub_ack(
        &sent[0],
        "e1",
        9,
        json!({"replayed":2,"acked":{"epoch":"e1","seq":7}}),
    );
    rig.msg("a", "e1", 8);
    rig.msg("a", "e1", 9);
    let ev = rig.events();
    let Event::Subscribed(s) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(s.acked, Some(Position::new("e1", 7)));
    assert_eq!(Rig::seqs(&ev), [8, 9]);
    // Later subscriptions resume from what was seen, not "acked".
    let sent = reconnect(&mut rig, "e1");
    assert_eq!(sent[0]["since"], json!({"epoch":"e1","seq":9}));
    // Never acked: still the application's position.
    assert_eq!(sent[1]["since"], json!({"epoch":"e0","seq":7}));
}

#[test]
fn a_new_epoch_is_followed_after_epoch_changed_or_reset() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.subscribed("room", SubOptions::default(), "e1", 0);
    for seq in 1..=3 {
        rig.msg("room", "e1", seq);
    }
    rig.events();
    // The hub restarted (memory engine): another epoch, two messages.
    let sent = reconnect(&mut rig, "e2");
    rig.sub_ack(
        &sent[0],
        "e2",
        2,
        json!({"recovered":false,"epoch_changed":true,"replayed":2}),
    );
    rig.msg("room", "e2", 1);
    rig.msg("room", "e2", 2);
    let ev = rig.events();
    let Event::Subscribed(s) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!(s.epoch_changed && !s.recovered && s.epoch == "e2");
    // Seqs 1 and 2 again, but of the new epoch: new messages.
    assert_eq!(Rig::seqs(&ev), [1, 2]);
    assert_eq!(rig.c.position("room"), Some(&Position::new("e2", 2)));

    // Redis lost the topic: numbering starts over in e3 after 0.
    rig.hub(json!({"type":"reset","topic":"room","epoch":"e3","seq":0}));
    rig.msg("room", "e2", 3); // a straggler of the old epoch is still new
    rig.msg("room", "e3", 1);
    rig.msg("room", "e3", 1);
    let ev = rig.events();
    assert_eq!(
        ev[0],
        Event::Reset {
            topic: "room".into(),
            epoch: "e3".into(),
            seq: 0
        }
    );
    assert_eq!(Rig::seqs(&ev), [3, 1]);
}

#[test]
fn gaps_are_reported_and_do_not_move_the_position() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.subscribed("room", SubOptions::default(), "e1", 49);
    rig.hub(json!({"type":"gap","topic":"room","from":50,"to":61,"epoch":"e1"}));
    rig.msg("room", "e1", 62);
    let ev = rig.events();
    assert!(ev.contains(&Event::Gap {
        topic: "room".into(),
        epoch: "e1".into(),
        from: 50,
        to: 61
    }));
    assert_eq!(Rig::seqs(&ev), [62]);
    // A gap on a topic not subscribed is not reported.
    rig.hub(json!({"type":"gap","topic":"other","from":1,"to":2,"epoch":"e1"}));
    rig.msg("other", "e1", 1);
    assert!(rig.events().is_empty());
}

#[test]
fn refused_subscriptions_are_dropped_or_retried() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.c.subscribe("secret", SubOptions::default()).unwrap();
    rig.c.subscribe("busy", SubOptions::default()).unwrap();
    let sent = rig.sent();
    rig.hub(json!({"type":"error","id":sent[0]["id"],"code":"forbidden","message":"no"}));
    rig.hub(json!({"type":"error","id":sent[1]["id"],"code":"rate_limited","message":"slow"}));
    let ev = rig.events();
    assert!(
        matches!(&ev[0], Event::SubscribeFailed { topic, retrying: false, .. } if topic == "secret")
    );
    assert!(
        matches!(&ev[1], Event::SubscribeFailed { topic, retrying: true, .. } if topic == "busy")
    );
    // Asked again after about a second (½–1½ s).
    let waited = rig.run_to_deadline();
    assert!(waited >= ms(500) && waited <= ms(1500), "{waited:?}");
    assert_eq!(rig.sent(), [json!({"op":"sub","topic":"busy","id":3})]);
    // The forbidden one is not asked again after a reconnect.
    let sent = reconnect(&mut rig, "e1");
    assert_eq!(ops(&sent, "sub").len(), 1);
    assert_eq!(sent[0]["topic"], "busy");
}

#[test]
fn unsubscribe_and_limits() {
    let mut rig = Rig::new(HubClientConfig {
        max_topics: 2,
        ..config()
    });
    rig.open("e1");
    rig.subscribed("a", SubOptions::default(), "e1", 0);
    rig.c.subscribe("b", SubOptions::default()).unwrap();
    assert_eq!(
        rig.c.subscribe("c", SubOptions::default()),
        Err(RequestError::TooManyTopics { limit: 2 })
    );
    assert_eq!(
        rig.c.subscribe("a b", SubOptions::default()),
        Err(RequestError::BadTopic)
    );
    assert!(
        rig.c.subscribe("a", SubOptions::default()).is_ok(),
        "already: no-op"
    );
    rig.sent();
    assert!(rig.c.unsubscribe("a"));
    assert!(!rig.c.unsubscribe("a"));
    let sent = rig.sent();
    assert_eq!(sent, [json!({"op":"unsub","topic":"a","id":3})]);
    rig.hub(json!({"type":"ack","id":3,"op":"unsub","topic":"a"}));
    rig.msg("a", "e1", 1);
    assert!(Rig::seqs(&rig.events()).is_empty());
    // The ack of a subscription since replaced is not applied to it.
    rig.c.unsubscribe("b");
    rig.c.subscribe("b", SubOptions::default()).unwrap();
    rig.hub(
        json!({"type":"ack","id":2,"op":"sub","topic":"b","epoch":"e1","seq":50,
        "resumed":false,"recovered":true,"lost":0,"epoch_changed":false,"replayed":0}),
    );
    assert_eq!(rig.c.position("b"), None);
}

#[test]
fn malformed_hub_messages_are_errors_never_panics() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.subscribed(
        "room",
        SubOptions::with_roster(SubOptions::default()),
        "e1",
        0,
    );
    rig.events();
    rig.sent();
    let good = [
        r#"{"type":"msg","topic":"room","seq":1,"epoch":"e1","node":"n","from":"a","ts":1,"data":{"x":[1,2]}}"#,
        r#"{"type":"ack","id":9,"op":"pub","topic":"room","seq":1,"epoch":"e1"}"#,
        r#"{"type":"presence","id":2,"topic":"room","members":["a","b"],"count":2,"cursor":null}"#,
        r#"{"type":"presence_diff","topic":"room","joins":["c"],"leaves":[],"count":3,"ts":1}"#,
        r#"{"type":"gap","topic":"room","from":5,"to":6,"epoch":"e1"}"#,
        r#"{"type":"error","id":null,"code":"bad_ack","message":"x"}"#,
    ];
    // Every cut of every message, and each with a byte flipped: an event
    // or nothing, never a panic.
    for g in good {
        for end in 0..g.len() {
            if g.is_char_boundary(end) {
                rig.c.text(&g[..end], rig.now);
            }
        }
        for i in 0..g.len() {
            let mut b = g.as_bytes().to_vec();
            b[i] = b'"';
            rig.c.text(&String::from_utf8_lossy(&b), rig.now);
        }
    }
    let ev = rig.events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Error { code, .. } if code == "bad_message")));
    rig.c.text("\u{0}\u{ffff}", rig.now);
    assert!(matches!(&rig.events()[..], [Event::Error { code, .. }] if code == "bad_message"));
}
