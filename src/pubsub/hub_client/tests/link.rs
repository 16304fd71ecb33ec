//! Reconnecting: the backoff's bounds and when it starts over, each class
//! of close code and refused upgrade, the token refresh, the timeouts.

use super::*;

fn reconnecting(events: &[Event]) -> Option<(u32, Duration)> {
    events.iter().find_map(|e| match e {
        Event::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
        _ => None,
    })
}

fn stopped(events: &[Event]) -> Option<StopReason> {
    events.iter().find_map(|e| match e {
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    })
}

fn failed_connect(rig: &mut Rig) {
    let reason = CloseReason::ConnectFailed {
        error: "refused".into(),
    };
    rig.c.closed(reason, rig.now);
}

#[test]
fn backoff_delays_grow_within_full_jitter_bounds() {
    let mut rig = Rig::default();
    let ceilings = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000];
    for (i, ceiling) in ceilings.into_iter().enumerate() {
        failed_connect(&mut rig);
        let ev = rig.events();
        assert!(matches!(ev[0], Event::Disconnected { .. }), "{ev:?}");
        let (attempt, delay) = reconnecting(&ev).expect("reconnecting");
        assert_eq!(attempt as usize, i + 1);
        assert!(delay <= ms(ceiling), "attempt {attempt}: {delay:?}");
        assert_eq!(rig.c.poll_timeout(), Some(rig.now + delay));
        // Nothing before the time; a connect at it.
        if delay > ms(1) {
            rig.advance(delay - ms(1));
            assert!(rig.actions().is_empty());
        }
        assert_eq!(rig.run_to_deadline(), delay.min(ms(1)));
        assert_eq!(
            rig.actions(),
            [Action::Connect {
                url: "ws://hub.test/ws".into()
            }]
        );
    }
}

#[test]
fn backoff_starts_over_only_after_a_stable_connection() {
    let mut rig = Rig::default();
    for _ in 0..3 {
        failed_connect(&mut rig);
        rig.run_to_deadline();
        rig.actions();
    }
    // Up 4.9 s: not long enough, the count goes on.
    rig.open("e1");
    rig.advance(ms(4900));
    rig.close(1006, "");
    assert_eq!(reconnecting(&rig.events()).unwrap().0, 4);
    rig.run_to_deadline();
    rig.actions();
    // Connected but never welcomed, and closed at once: goes on too.
    rig.c.connected(rig.now);
    rig.close(1011, "");
    assert_eq!(reconnecting(&rig.events()).unwrap().0, 5);
    rig.run_to_deadline();
    rig.actions();
    // Up 5 s: the next delay is from the first ceiling again.
    rig.open("e1");
    rig.advance(ms(5000));
    rig.close(1012, "service restart");
    let (attempt, delay) = reconnecting(&rig.events()).unwrap();
    assert_eq!(attempt, 1);
    assert!(delay <= ms(500));
}

#[test]
fn close_codes_that_reconnect() {
    for code in [1000, 1001, 1006, 1008, 1011, 1012, 1013] {
        let mut rig = Rig::default();
        rig.open("e1");
        rig.close(code, "bye");
        let ev = rig.events();
        assert_eq!(
            ev[0],
            Event::Disconnected {
                reason: CloseReason::Close {
                    code,
                    reason: "bye".into()
                }
            }
        );
        assert!(reconnecting(&ev).is_some(), "{code}: {ev:?}");
        assert!(!rig.c.is_stopped());
    }
    for status in [429, 503, 502] {
        let mut rig = Rig::default();
        let reason = CloseReason::HandshakeRefused {
            status,
            body: "engine unavailable, retry later".into(),
        };
        rig.c.closed(reason, rig.now);
        assert!(reconnecting(&rig.events()).is_some(), "{status}");
    }
}

#[test]
fn application_codes_and_refusals_stop() {
    let mut rig = Rig::default();
    rig.c.publish("t", "1", false).unwrap();
    rig.open("e1");
    let pid = rig.c.publish("t", "2", false).unwrap();
    rig.sent();
    rig.close(4001, "banned");
    let ev = rig.events();
    assert_eq!(
        stopped(&ev),
        Some(StopReason::ClosedByHub {
            code: 4001,
            reason: "banned".into()
        })
    );
    assert!(reconnecting(&ev).is_none());
    // What waited fails, once each.
    let failed: Vec<_> = ev
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::PublishFailed {
                    error: PublishError::Stopped,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(failed.len(), 2, "{ev:?}");
    assert!(rig.c.is_stopped());
    assert_eq!(rig.c.poll_timeout(), None);
    assert_eq!(rig.c.publish("t", "3", false), Err(OutboxError::Stopped));
    assert_eq!(
        rig.c.subscribe("t", SubOptions::default()),
        Err(RequestError::Stopped)
    );
    let _ = pid;
    // Nothing more happens.
    rig.advance(Duration::from_secs(3600));
    assert!(rig.actions().is_empty() && rig.events().is_empty());

    for status in [401, 403] {
        let mut rig = Rig::default();
        let body = "bad token signature".to_string();
        let reason = CloseReason::HandshakeRefused {
            status,
            body: body.clone(),
        };
        rig.c.closed(reason, rig.now);
        assert_eq!(
            stopped(&rig.events()),
            Some(StopReason::Refused { status, body })
        );
    }
}

#[test]
fn close_by_the_application_ends_with_1000() {
    let mut rig = Rig::default();
    rig.open("e1");
    rig.subscribed("t", SubOptions::default(), "e1", 0);
    rig.msg("t", "e1", 1);
    rig.c.ack("t", "e1", 1);
    rig.events();
    rig.c.close();
    // The pending acknowledgement goes out before the disconnect.
    assert_eq!(
        rig.sent(),
        [json!({"op":"ack","topic":"t","seq":1,"epoch":"e1"})]
    );
    assert_eq!(rig.actions(), [Action::Disconnect]);
    assert!(rig.events().is_empty(), "Stopped only once it is closed");
    rig.close(1000, "bye");
    let ev = rig.events();
    assert_eq!(stopped(&ev), Some(StopReason::Closed));
    assert!(reconnecting(&ev).is_none());

    // Closed while waiting to reconnect: at once.
    let mut rig = Rig::default();
    rig.close(1006, "");
    rig.events();
    rig.c.close();
    assert_eq!(stopped(&rig.events()), Some(StopReason::Closed));
    assert!(rig.actions().is_empty());
}

#[test]
fn an_expired_token_is_refreshed_and_used_at_once() {
    let mut rig = Rig::new(config().with_token("T1"));
    rig.open("e1");
    rig.advance(Duration::from_secs(60));
    rig.close(1008, "token expired");
    let ev = rig.events();
    assert!(ev.contains(&Event::TokenNeeded), "{ev:?}");
    assert!(reconnecting(&ev).is_none());
    assert_eq!(
        rig.c.poll_timeout(),
        Some(rig.now + Duration::from_secs(30))
    );
    rig.advance(ms(300));
    rig.c.set_token("T2");
    assert_eq!(
        rig.actions(),
        [Action::Connect {
            url: "ws://hub.test/ws?token=T2".into()
        }]
    );
    rig.open("e1");
    assert!(rig.c.is_connected());

    // Expired while disconnected: refused at the upgrade, refreshed.
    rig.close(1006, "");
    rig.run_to_deadline();
    rig.actions();
    let expired = CloseReason::HandshakeRefused {
        status: 401,
        body: "token expired".into(),
    };
    rig.c.closed(expired.clone(), rig.now);
    assert!(rig.events().contains(&Event::TokenNeeded));
    rig.c.set_token("T3");
    assert!(matches!(&rig.actions()[..], [Action::Connect { url }] if url.ends_with("T3")));
    // The fresh token refused the same way: stop, do not ask forever.
    rig.c.closed(expired, rig.now);
    assert!(matches!(
        stopped(&rig.events()),
        Some(StopReason::Refused { status: 401, .. })
    ));
}

#[test]
fn no_token_in_time_stops() {
    let mut rig = Rig::new(config().with_token("T1"));
    rig.open("e1");
    rig.close(1008, "token expired");
    rig.events();
    rig.advance(Duration::from_secs(29));
    assert!(rig.events().is_empty());
    rig.run_to_deadline();
    assert_eq!(stopped(&rig.events()), Some(StopReason::TokenTimeout));
    assert!(rig.actions().is_empty());
}

#[test]
fn a_stuck_connection_is_replaced() {
    // No welcome within the request timeout.
    let mut rig = Rig::default();
    rig.c.connected(rig.now);
    assert_eq!(rig.run_to_deadline(), Duration::from_secs(15));
    assert_eq!(rig.actions(), [Action::Disconnect]);
    assert!(matches!(&rig.events()[..], [Event::Error { code, .. }] if code == "timeout"));
    rig.close(1000, "");
    assert!(reconnecting(&rig.events()).is_some());

    // An attempt that never opens.
    rig.run_to_deadline();
    rig.actions();
    assert_eq!(rig.run_to_deadline(), Duration::from_secs(15));
    assert_eq!(rig.actions(), [Action::Disconnect]);
    failed_connect(&mut rig);
    assert!(reconnecting(&rig.events()).is_some());

    // A request without an answer.
    rig.run_to_deadline();
    rig.actions();
    rig.open("e1");
    rig.c.subscribe("t", SubOptions::default()).unwrap();
    rig.sent();
    rig.advance(Duration::from_secs(14));
    assert!(rig.actions().is_empty());
    rig.advance(Duration::from_secs(1));
    assert_eq!(rig.actions(), [Action::Disconnect]);
    // Late reports of the old connection are harmless; its close ends it.
    rig.msg("t", "e1", 1);
    rig.close(1006, "");
    let ev = rig.events();
    assert!(reconnecting(&ev).is_some(), "{ev:?}");
    rig.close(1006, "");
    rig.c.connected(rig.now);
    assert!(rig.events().is_empty());
}
