//! The outbox: order, idempotency keys, exactly-once reports across a
//! dropped ack, `duplicate` answers, the bound, `unavailable` retries.

use super::*;

fn acked(events: &[Event]) -> Vec<(PublishId, u64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PublishAcked {
                id, seq, duplicate, ..
            } => Some((*id, *seq, *duplicate)),
            _ => None,
        })
        .collect()
}

fn pub_ack(rig: &mut Rig, req: &Value, seq: u64, duplicate: bool) {
    rig.hub(
        json!({"type":"ack","id":req["id"],"op":"pub","topic":req["topic"],
        "seq":seq,"epoch":"e1","duplicate":duplicate}),
    );
}

#[test]
fn publishes_made_offline_go_in_order_after_the_subscriptions() {
    let mut rig = Rig::default();
    rig.c.subscribe("room", SubOptions::default()).unwrap();
    let ids: Vec<_> = (1..=3)
        .map(|n| {
            rig.c
                .publish("room", &format!(r#"{{"n":{n}}}"#), n == 2)
                .unwrap()
        })
        .collect();
    let dm = rig.c.dm("bob", r#""psst""#).unwrap();
    assert!(rig.sent().is_empty());
    assert_eq!(rig.c.outbox_len(), 4);
    let sent = rig.open("e1");
    assert_eq!(sent[0]["op"], "sub");
    let pubs = ops(&sent, "pub");
    let data: Vec<_> = pubs.iter().map(|p| p["data"]["n"].clone()).collect();
    assert_eq!(data, [json!(1), json!(2), json!(3)]);
    assert_eq!(pubs[1]["exclude_self"], true);
    assert!(pubs[0].get("exclude_self").is_none());
    let dms = ops(&sent, "dm");
    assert_eq!(
        (&dms[0]["to"], &dms[0]["data"]),
        (&json!("bob"), &json!("psst"))
    );
    // Keys: fresh per message, 32 hex digits.
    let mut keys: Vec<_> = sent[1..]
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(keys.iter().all(|k| k.len() == 32));
    keys.dedup();
    assert_eq!(keys.len(), 4);
    for (p, seq) in pubs.iter().zip(1..) {
        pub_ack(&mut rig, p, seq, false);
    }
    rig.hub(json!({"type":"ack","id":dms[0]["id"],"op":"dm","to":"bob","topic":"@bob","seq":7,"epoch":"e1"}));
    let ev = rig.events();
    assert_eq!(
        acked(&ev),
        [
            (ids[0], 1, false),
            (ids[1], 2, false),
            (ids[2], 3, false),
            (dm, 7, false)
        ]
    );
    assert!(ev.contains(&Event::PublishAcked {
        id: dm,
        topic: "@bob".into(),
        seq: 7,
        epoch: "e1".into(),
        duplicate: false
    }));
    assert_eq!(rig.c.outbox_len(), 0);
}

#[test]
fn a_lost_ack_means_the_same_key_again_and_one_report() {
    let mut rig = Rig::default();
    rig.open("e1");
    let id = rig.c.publish("room", "1", false).unwrap();
    let first = rig.sent().remove(0);
    // The hub stored it, but the connection dropped before the ack.
    rig.close(1006, "");
    assert!(acked(&rig.events()).is_empty());
    rig.run_to_deadline();
    rig.actions();
    let again = rig.open("e1");
    let again = ops(&again, "pub")[0].clone();
    assert_eq!(again["idempotency_key"], first["idempotency_key"]);
    assert_ne!(again["id"], first["id"]);
    // The hub recognizes it: the original's seq, duplicate.
    pub_ack(&mut rig, &again, 1, true);
    // A late answer to the old request, or a second answer: ignored.
    pub_ack(&mut rig, &first, 1, false);
    pub_ack(&mut rig, &again, 1, true);
    assert_eq!(acked(&rig.events()), [(id, 1, true)]);
}

#[test]
fn the_outbox_is_bounded() {
    let mut rig = Rig::new(HubClientConfig {
        outbox_limit: 2,
        ..config()
    });
    rig.c.publish("t", "1", false).unwrap();
    rig.c.dm("bob", "2").unwrap();
    assert_eq!(
        rig.c.publish("t", "3", false),
        Err(OutboxError::Full { limit: 2 })
    );
    assert_eq!(rig.c.dm("bob", "3"), Err(OutboxError::Full { limit: 2 }));
    assert!(matches!(
        rig.c.publish("t", "{", false),
        Err(OutboxError::InvalidJson(_))
    ));
    assert!(matches!(
        rig.c.publish("t", "1 2", false),
        Err(OutboxError::InvalidJson(_))
    ));
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert!(matches!(
        rig.c.publish("t", &deep, false),
        Err(OutboxError::InvalidJson(_))
    ));
    assert_eq!(rig.c.publish("", "1", false), Err(OutboxError::BadTopic));
    // Sent but not acked still counts; an ack makes room.
    let sent = rig.open("e1");
    assert_eq!(
        rig.c.publish("t", "3", false),
        Err(OutboxError::Full { limit: 2 })
    );
    pub_ack(&mut rig, &sent[0], 1, false);
    assert!(rig.c.publish("t", "3", false).is_ok());
}

#[test]
fn unavailable_is_retried_with_the_same_key_then_reported() {
    let mut rig = Rig::new(HubClientConfig {
        publish_retries: 2,
        ..config()
    });
    rig.open("e1");
    let id = rig.c.publish("room", "1", false).unwrap();
    let first = rig.sent().remove(0);
    let unavailable = |rig: &mut Rig, req: &Value, maybe: bool| {
        rig.hub(json!({"type":"error","id":req["id"],"code":"unavailable",
            "message":"engine unavailable","maybe_stored":maybe}));
    };
    unavailable(&mut rig, &first, false);
    assert!(rig.events().is_empty(), "not reported: retried");
    let waited = rig.run_to_deadline();
    assert!(waited >= ms(500) && waited <= ms(1500), "{waited:?}");
    let second = rig.sent().remove(0);
    assert_eq!(second["idempotency_key"], first["idempotency_key"]);
    unavailable(&mut rig, &second, true);
    rig.run_to_deadline();
    let third = rig.sent().remove(0);
    // Stored after all on the second try: the third is a duplicate.
    pub_ack(&mut rig, &third, 4, true);
    assert_eq!(acked(&rig.events()), [(id, 4, true)]);

    // Past the retries: reported once, as unavailable.
    let id = rig.c.publish("room", "2", false).unwrap();
    for _ in 0..3 {
        let req = rig.sent().remove(0);
        unavailable(&mut rig, &req, true);
        if rig.c.outbox_len() > 0 {
            rig.run_to_deadline();
        }
    }
    assert_eq!(
        rig.events(),
        [Event::PublishFailed {
            id,
            error: PublishError::Unavailable { maybe_stored: true }
        }]
    );
    assert_eq!(rig.c.outbox_len(), 0);
}

#[test]
fn a_retry_due_while_disconnected_waits_for_the_welcome() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.c.publish("room", "1", false).unwrap();
    let first = rig.sent().remove(0);
    rig.hub(json!({"type":"error","id":first["id"],"code":"rate_limited","message":"slow"}));
    rig.close(1012, "");
    rig.advance(Duration::from_secs(2));
    assert!(rig.sent().is_empty());
    rig.actions();
    let sent = rig.open("e1");
    assert_eq!(
        ops(&sent, "pub")[0]["idempotency_key"],
        first["idempotency_key"]
    );
}

#[test]
fn a_refused_publish_is_reported_once() {
    let mut rig = Rig::default();
    rig.open("e1");
    let id = rig.c.publish("secret", "1", false).unwrap();
    let req = rig.sent().remove(0);
    let forbidden =
        json!({"type":"error","id":req["id"],"code":"forbidden","message":"not allowed"});
    rig.hub(forbidden.clone());
    // The same answer again no longer concerns the publish: a plain error.
    rig.hub(forbidden);
    let ev = rig.events();
    assert_eq!(
        ev[0],
        Event::PublishFailed {
            id,
            error: PublishError::Rejected {
                code: "forbidden".into(),
                message: "not allowed".into()
            }
        }
    );
    assert!(matches!(&ev[1..], [Event::Error { code, .. }] if code == "forbidden"));
    // Not sent again after a reconnect.
    rig.close(1006, "");
    rig.run_to_deadline();
    rig.actions();
    assert!(ops(&rig.open("e1"), "pub").is_empty());
}

#[test]
fn a_publish_without_an_answer_goes_again_on_a_new_connection() {
    let mut rig = Rig::default();
    rig.open("e1");
    let id = rig.c.publish("room", "1", false).unwrap();
    let first = rig.sent().remove(0);
    rig.advance(Duration::from_secs(15));
    assert_eq!(rig.actions(), [Action::Disconnect]);
    rig.close(1000, "");
    rig.run_to_deadline();
    rig.actions();
    let again = rig.open("e1");
    assert_eq!(again[0]["idempotency_key"], first["idempotency_key"]);
    pub_ack(&mut rig, &again[0], 1, false);
    assert_eq!(acked(&rig.events()), [(id, 1, false)]);
}
