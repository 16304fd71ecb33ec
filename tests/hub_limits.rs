//! Limits that keep one tenant from exhausting what the node shares
//! (issue: fair under load and abuse): per-user and per-address quotas on
//! connections, subscriptions and created topics, and inboxes that work
//! even when the topic table is full.

mod common;
mod hub_support;

use hub_support::*;
use serde_json::json;
use wsmio::pubsub::HubConfig;

/// The status line and body of a refused upgrade.
fn refusal_of(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let resp = refused(addr, path, &[]);
    let status = common::status_line(&resp).to_string();
    (status, body(&resp).trim().to_string())
}

#[test]
fn connections_per_user_and_per_address_are_bounded() {
    let srv = serve_hub(HubConfig {
        max_connections_per_user: 2,
        max_connections_per_ip: 4,
        ..hub_config_auth()
    });
    let a = srv.addr;
    let alice = token_all("alice");
    let path = format!("/ws?token={alice}");
    let c1 = connect(a, Some(&alice));
    let c2 = connect(a, Some(&alice));
    let (status, why) = refusal_of(a, &path);
    assert_eq!(
        (status.as_str(), why.as_str()),
        (
            "HTTP/1.1 429 Too Many Requests",
            "too many connections for this user"
        )
    );
    // Others are not affected; the address has room for two more.
    let b1 = connect(a, Some(&token_all("bob")));
    let b2 = connect(a, Some(&token_all("bob")));
    let (status, why) = refusal_of(a, &format!("/ws?token={}", token_all("carol")));
    assert_eq!(
        (status.as_str(), why.as_str()),
        (
            "HTTP/1.1 429 Too Many Requests",
            "too many connections from this address"
        )
    );
    // A closed connection gives its place back.
    c1.close();
    b1.close();
    let c3 = connect(a, Some(&alice));
    let m = metrics(a);
    assert_eq!(
        metric(&m, "wsmio_quota_hits_total{quota=\"connections_per_user\"}"),
        1
    );
    assert_eq!(
        metric(&m, "wsmio_quota_hits_total{quota=\"connections_per_ip\"}"),
        1
    );
    for c in [c2, b2, c3] {
        c.close();
    }
    srv.stop();
}

#[test]
fn subscriptions_per_user_count_every_connection() {
    let srv = serve_hub(HubConfig {
        max_subscriptions_per_user: 3,
        ..hub_config_auth()
    });
    let a = srv.addr;
    let mut c1 = connect_as(a, "alice");
    let mut c2 = connect_as(a, "alice");
    c1.sub("r1");
    c1.sub("r2");
    c2.sub_ack("r1");
    c2.expect_error(json!({"op":"sub","topic":"r3"}), "too_many_topics");
    // The limit is the user's: bob is not affected, and alice's own inbox
    // was never counted.
    let mut bob = connect_as(a, "bob");
    bob.sub("r3");
    let id = c1.request(json!({"op":"unsub","topic":"r2"}));
    let ack = c1.skip_to("ack");
    assert_eq!(ack["id"], id);
    c2.sub("r3");
    let m = metrics(a);
    assert_eq!(
        metric(
            &m,
            "wsmio_quota_hits_total{quota=\"subscriptions_per_user\"}"
        ),
        1
    );
    srv.stop();
}

#[test]
fn anonymous_users_of_one_address_share_a_topic_quota_and_inboxes_always_work() {
    let srv = serve_hub(HubConfig {
        max_topics_per_ip: 5,
        max_topics: 8,
        max_inboxes: 1000,
        ..hub_config()
    });
    let a = srv.addr;
    // Anonymous users all come from 127.0.0.1: five new topics between them.
    let mut anons: Vec<Hc> = (0..3).map(|_| connect(a, None)).collect();
    let mut made = 0;
    for (i, c) in anons.iter_mut().enumerate() {
        for k in 0..2 {
            if made < 5 {
                c.sub(&format!("t{i}.{k}"));
                made += 1;
            }
        }
    }
    let e = anons[2].expect_error(json!({"op":"sub","topic":"one-more"}), "too_many_topics");
    assert!(e["message"].as_str().unwrap().contains("address"), "{e}");
    anons[2].expect_error(
        json!({"op":"pub","topic":"one-more","data":1}),
        "too_many_topics",
    );
    // Topics that exist already are not charged again.
    let ack = anons[2].sub_ack("t0.0");
    assert_eq!(ack["topic"], "t0.0");
    srv.stop();

    // A full table of rooms does not stop inboxes: a new user still gets
    // its own, and direct messages still arrive.
    let srv = serve_hub(HubConfig {
        max_topics: 2,
        ..hub_config_auth()
    });
    let a = srv.addr;
    let mut filler = connect_as(a, "filler");
    filler.sub("room1");
    filler.sub("room2");
    filler.expect_error(json!({"op":"sub","topic":"room3"}), "too_many_topics");
    let mut late = connect_as(a, "late"); // its inbox ack is checked by connect
    let mut sender = connect_as(a, "sender");
    let id = sender.request(json!({"op":"dm","to":"late","data":"hi"}));
    let ack = sender.expect("ack");
    assert_eq!((&ack["id"], &ack["op"]), (&json!(id), &json!("dm")));
    let m = late.expect("msg");
    assert_eq!((&m["topic"], &m["data"]), (&json!("@late"), &json!("hi")));
    srv.stop();
}
