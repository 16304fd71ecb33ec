//! Member lists: read page by page after the subscription, kept with
//! diffs, counts over the cap, read again when they drift; one-off
//! presence queries.

use super::*;

fn presence(events: &[Event]) -> Vec<(Option<Vec<String>>, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Presence { members, count, .. } => Some((members.clone(), *count)),
            _ => None,
        })
        .collect()
}

fn names(n: &[&str]) -> Option<Vec<String>> {
    Some(n.iter().map(|s| s.to_string()).collect())
}

/// Subscribe to "room" with a roster; returns the first page request.
fn subscribe_with_roster(rig: &mut Rig) -> Value {
    rig.open("e1");
    rig.subscribed("room", SubOptions::default().with_roster(), "e1", 0);
    let sent = rig.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0],
        json!({"op":"presence","topic":"room","limit":256,"id":sent[0]["id"]})
    );
    sent[0].clone()
}

fn page(rig: &mut Rig, req: &Value, members: &[&str], count: u64, cursor: Option<&str>) {
    rig.hub(
        json!({"type":"presence","id":req["id"],"topic":"room","members":members,
        "count":count,"cursor":cursor}),
    );
}

fn diff(rig: &mut Rig, joins: &[&str], leaves: &[&str], count: u64) {
    rig.hub(
        json!({"type":"presence_diff","topic":"room","joins":joins,"leaves":leaves,
        "count":count,"ts":1}),
    );
}

#[test]
fn members_are_read_by_page_and_kept_with_diffs() {
    let mut rig = Rig::default();
    let first = subscribe_with_roster(&mut rig);
    // A diff during the read is applied after it.
    diff(&mut rig, &["carol"], &[], 3);
    page(&mut rig, &first, &["alice", "bob"], 3, Some("bob"));
    let next = rig.sent().remove(0);
    assert_eq!(next["cursor"], "bob");
    page(&mut rig, &next, &["carol"], 3, None);
    let ev = rig.events();
    assert_eq!(presence(&ev), [(names(&["alice", "bob", "carol"]), 3)]);
    assert!(ev.contains(&Event::Joined {
        topic: "room".into(),
        user: "carol".into()
    }));

    diff(&mut rig, &["dave"], &["alice"], 3);
    let ev = rig.events();
    assert_eq!(presence(&ev), [(names(&["bob", "carol", "dave"]), 3)]);
    assert!(ev.contains(&Event::Left {
        topic: "room".into(),
        user: "alice".into()
    }));
    assert!(rig.sent().is_empty());
    // A diff that does not add up: a change was missed; read again.
    diff(&mut rig, &["erin"], &[], 5);
    assert!(presence(&rig.events()).is_empty());
    let again = rig.sent().remove(0);
    assert!(again.get("cursor").is_none());
    page(
        &mut rig,
        &again,
        &["bob", "carol", "dave", "erin", "frank"],
        5,
        None,
    );
    assert_eq!(presence(&rig.events())[0].1, 5);
}

#[test]
fn counts_over_the_cap_replace_the_list_until_it_shrinks() {
    let mut rig = Rig::default();
    let first = subscribe_with_roster(&mut rig);
    page(&mut rig, &first, &["alice"], 1, None);
    rig.events();
    // Over the welcome's presence_events_max (100): the count alone.
    rig.hub(json!({"type":"presence_count","topic":"room","count":150,"ts":1}));
    assert_eq!(presence(&rig.events()), [(None, 150)]);
    assert!(rig.sent().is_empty());
    // At or below the cap (a mass leave): the list is read again.
    rig.hub(json!({"type":"presence_count","topic":"room","count":90,"ts":2}));
    let again = rig.sent().remove(0);
    let many: Vec<String> = (0..90).map(|i| format!("u{i:02}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    page(&mut rig, &again, &many, 90, None);
    let p = presence(&rig.events());
    assert_eq!(p[0].0.as_ref().map(Vec::len), Some(90));
    // Counts again, then diffs again (shrunk under the cap): read again.
    rig.hub(json!({"type":"presence_count","topic":"room","count":120,"ts":3}));
    rig.events();
    diff(&mut rig, &[], &["u00"], 99);
    assert_eq!(rig.sent().len(), 1);
}

#[test]
fn too_big_to_list_at_read_time_or_past_max_members() {
    let mut rig = Rig::default();
    let first = subscribe_with_roster(&mut rig);
    page(&mut rig, &first, &["a", "b"], 101, None);
    assert_eq!(presence(&rig.events()), [(None, 101)]);

    let mut rig = Rig::new(HubClientConfig {
        max_members: 2,
        ..config()
    });
    let first = subscribe_with_roster(&mut rig);
    page(&mut rig, &first, &["a", "b"], 3, Some("b"));
    assert!(rig.sent().is_empty(), "no page past max_members");
    assert_eq!(presence(&rig.events()), [(None, 3)]);
}

#[test]
fn the_list_is_read_again_after_a_reconnect() {
    let mut rig = Rig::default();
    let first = subscribe_with_roster(&mut rig);
    rig.close(1006, "");
    // The answer to the old read comes too late: ignored.
    page(&mut rig, &first, &["alice"], 1, None);
    rig.run_to_deadline();
    rig.actions();
    let sent = rig.open("e1");
    rig.sub_ack(&sent[0], "e1", 0, json!({}));
    let read = rig.sent().remove(0);
    assert_eq!(read["op"], "presence");
    page(&mut rig, &read, &["alice", "bob"], 2, None);
    assert_eq!(presence(&rig.events()), [(names(&["alice", "bob"]), 2)]);
}

#[test]
fn one_off_presence_pages() {
    let mut rig = Rig::default();
    assert_eq!(
        rig.c.presence("room", None),
        Err(RequestError::NotConnected)
    );
    rig.open("e1");
    let id = rig.c.presence("room", Some("bob")).unwrap();
    let req = rig.sent().remove(0);
    assert_eq!(
        req,
        json!({"op":"presence","topic":"room","limit":256,"cursor":"bob","id":id})
    );
    rig.hub(json!({"type":"presence","id":id,"topic":"room","members":["carol"],"count":3,"cursor":null}));
    assert_eq!(
        rig.events(),
        [Event::PresencePage {
            request: id,
            topic: "room".into(),
            members: vec!["carol".into()],
            count: 3,
            cursor: None
        }]
    );
    // Refused, and cut off by a drop: each answered once with its id.
    let a = rig.c.presence("secret", None).unwrap();
    let b = rig.c.presence("room", None).unwrap();
    rig.hub(json!({"type":"error","id":a,"code":"forbidden","message":"no"}));
    rig.close(1006, "");
    let ev = rig.events();
    assert!(
        matches!(&ev[0], Event::Error { request: Some(r), code, .. } if *r == a && code == "forbidden")
    );
    assert!(
        matches!(&ev[1], Event::Error { request: Some(r), code, .. } if *r == b && code == "disconnected")
    );
}
