//! Acknowledgements: cumulative, batched, one per topic per interval, only
//! on a live subscription, again after a reconnect.

use super::*;

#[test]
fn acks_are_batched_per_topic_and_interval() {
    let mut rig = Rig::new(HubClientConfig {
        auto_ack: true,
        ..config()
    });
    rig.open("e1");
    rig.subscribed("a", SubOptions::default(), "e1", 0);
    rig.subscribed("b", SubOptions::default(), "e1", 10);
    for seq in 1..=5 {
        rig.msg("a", "e1", seq);
    }
    rig.msg("b", "e1", 11);
    assert!(rig.sent().is_empty());
    // Handed out: processed (auto-ack), sent after `ack_every`.
    assert_eq!(Rig::seqs(&rig.events()), [1, 2, 3, 4, 5, 11]);
    assert_eq!(rig.c.poll_timeout(), Some(rig.now + Duration::from_secs(1)));
    rig.advance(ms(999));
    assert!(rig.sent().is_empty());
    rig.advance(ms(1));
    assert_eq!(
        rig.sent(),
        [
            json!({"op":"ack","topic":"a","seq":5,"epoch":"e1"}),
            json!({"op":"ack","topic":"b","seq":11,"epoch":"e1"}),
        ]
    );
    // Nothing new: nothing sent, no timer.
    assert_eq!(rig.c.poll_timeout(), None);
    rig.msg("a", "e1", 6);
    rig.msg("a", "e1", 7);
    rig.events();
    // An older position does not move it back.
    rig.c.ack("a", "e1", 2);
    rig.run_to_deadline();
    assert_eq!(
        rig.sent(),
        [json!({"op":"ack","topic":"a","seq":7,"epoch":"e1"})]
    );
}

#[test]
fn acks_wait_for_the_subscription_and_follow_the_epoch() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.subscribed("a", SubOptions::default(), "e1", 0);
    rig.msg("a", "e1", 1);
    rig.c.ack("a", "e1", 1);
    rig.close(1006, "");
    rig.run_to_deadline(); // the ack timer or the reconnect, whichever first
    while rig.actions().is_empty() {
        rig.run_to_deadline();
    }
    assert!(rig.sent().is_empty(), "nothing sent while disconnected");
    let subs = rig.open("e1");
    rig.sub_ack(&subs[0], "e1", 1, json!({}));
    rig.run_to_deadline();
    assert_eq!(
        rig.sent(),
        [json!({"op":"ack","topic":"a","seq":1,"epoch":"e1"})]
    );
    // After a reset, positions of the old epoch are not sent.
    rig.msg("a", "e1", 2);
    rig.c.ack("a", "e1", 2);
    rig.hub(json!({"type":"reset","topic":"a","epoch":"e2","seq":0}));
    rig.c.ack("a", "e1", 3);
    rig.advance(Duration::from_secs(2));
    assert!(rig.sent().is_empty());
    rig.msg("a", "e2", 1);
    rig.c.ack("a", "e2", 1);
    rig.run_to_deadline();
    assert_eq!(
        rig.sent(),
        [json!({"op":"ack","topic":"a","seq":1,"epoch":"e2"})]
    );
}
