//! Who may connect and what they may do: every refusal at the upgrade
//! (path, Origin, tokens) with its HTTP status, topic rights from token
//! patterns, and the anonymous mode.

mod common;
mod hub_support;

use common::{has_header, status_line};
use hub_support::*;
use serde_json::json;
use wsmio::proto::handshake::ClientHandshake;
use wsmio::pubsub::auth::sign_jwt;
use wsmio::pubsub::auth::TokenRules;
use wsmio::pubsub::{HostPolicy, HubConfig, OriginPolicy};

/// The upgrade on `path` is refused with `status` and `reason` as body.
fn assert_refused(addr: std::net::SocketAddr, path: &str, extra: &[(&str, &str)], status: &str) {
    let resp = refused(addr, path, extra);
    assert_eq!(status_line(&resp), status, "{resp}");
    assert!(
        !has_header(&resp, "Upgrade", "websocket") || status.contains("426"),
        "{resp}"
    );
}

fn refusal(addr: std::net::SocketAddr, path: &str, extra: &[(&str, &str)]) -> (String, String) {
    let resp = refused(addr, path, extra);
    (
        status_line(&resp).to_string(),
        body(&resp).trim_end().to_string(),
    )
}

#[test]
fn token_refusals_are_401_with_a_reason() {
    let srv = serve_hub(hub_config_auth());
    let a = srv.addr;
    let unauthorized = "HTTP/1.1 401 Unauthorized";

    // No token at all.
    let resp = refused(a, "/ws", &[]);
    assert_eq!(status_line(&resp), unauthorized, "{resp}");
    assert_eq!(body(&resp).trim_end(), "missing token");
    assert!(has_header(&resp, "WWW-Authenticate", "Bearer"), "{resp}");
    // An empty Authorization header is no token either.
    let got = refusal(a, "/ws", &[("Authorization", "Basic Zm9vOmJhcg==")]);
    assert_eq!(got, (unauthorized.into(), "missing token".into()));

    // Signed with another secret.
    let forged = sign_jwt(
        &json!({"sub":"mallory","exp": now_secs() + 60,"subscribe":["*"],"publish":["*"]}),
        b"not the secret",
    );
    let got = refusal(a, &format!("/ws?token={forged}"), &[]);
    assert_eq!(got, (unauthorized.into(), "bad token signature".into()));
    let bearer = format!("Bearer {forged}");
    let got = refusal(a, "/ws", &[("Authorization", &bearer)]);
    assert_eq!(got, (unauthorized.into(), "bad token signature".into()));
    // A valid token whose claims were changed after signing.
    let good = token_all("alice");
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_claims = base64_url(&json!({"sub":"root","exp": now_secs() + 60}).to_string());
    parts[1] = &forged_claims;
    let got = refusal(a, &format!("/ws?token={}", parts.join(".")), &[]);
    assert_eq!(got, (unauthorized.into(), "bad token signature".into()));

    // Expired (and missing exp counts as expired).
    let expired = sign_jwt(&json!({"sub":"alice","exp": now_secs() - 5}), SECRET);
    let got = refusal(a, &format!("/ws?token={expired}"), &[]);
    assert_eq!(got, (unauthorized.into(), "token expired".into()));
    let no_exp = sign_jwt(&json!({"sub":"alice"}), SECRET);
    let got = refusal(a, &format!("/ws?token={no_exp}"), &[]);
    assert_eq!(got, (unauthorized.into(), "token expired".into()));
    // Not yet valid.
    let early = sign_jwt(
        &json!({"sub":"alice","exp": now_secs() + 600,"nbf": now_secs() + 300}),
        SECRET,
    );
    let got = refusal(a, &format!("/ws?token={early}"), &[]);
    assert_eq!(got, (unauthorized.into(), "token not yet valid".into()));
    // No subject.
    let no_sub = sign_jwt(&json!({"exp": now_secs() + 60}), SECRET);
    let got = refusal(a, &format!("/ws?token={no_sub}"), &[]);
    assert_eq!(got, (unauthorized.into(), "token has no sub".into()));
    // alg other than HS256 (here "none", with no signature) is refused.
    let none = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","typ":"JWT"}"#),
        base64_url(&json!({"sub":"alice","exp": now_secs() + 60}).to_string())
    );
    let got = refusal(a, &format!("/ws?token={none}"), &[]);
    assert_eq!(
        got,
        (unauthorized.into(), "token algorithm must be HS256".into())
    );
    // RFC 7515 §4.1.11: a `crit` header this server cannot honour.
    let claims = json!({"sub":"alice","exp": now_secs() + 60});
    let crit = sign_with_header(r#"{"alg":"HS256","crit":["exp"]}"#, &claims);
    let got = refusal(a, &format!("/ws?token={crit}"), &[]);
    let why = "token has crit header parameters this server does not support";
    assert_eq!(got, (unauthorized.into(), why.into()));
    // RFC 7519 §4.1.3: an `aud` that does not name this server (which has
    // no audience configured, so names none).
    let aud = sign_jwt(
        &json!({"sub":"alice","exp": now_secs() + 60,"aud":"x"}),
        SECRET,
    );
    let got = refusal(a, &format!("/ws?token={aud}"), &[]);
    let why = "token has an aud claim but the server names no audience (--token-audience)";
    assert_eq!(got, (unauthorized.into(), why.into()));
    // Garbage.
    let got = refusal(a, "/ws?token=abc.def", &[]);
    assert_eq!(got, (unauthorized.into(), "malformed token".into()));

    // The same valid token works in the query and as a bearer token.
    let c = connect(a, Some(&good));
    assert_eq!(
        (c.user.as_str(), &c.welcome["anonymous"]),
        ("alice", &json!(false))
    );
    let auth = format!("Bearer {good}");
    let c2 = try_ws(a, "/ws", &[("Authorization", &auth)]).expect("bearer accepted");
    let c2 = Hc::opened(c2);
    assert_eq!(c2.user, "alice");
    // RFC 9110 §11.1: the scheme name is case-insensitive.
    let auth = format!("BEARER {good}");
    let c3 = try_ws(a, "/ws", &[("Authorization", &auth)]).expect("BEARER accepted");
    assert_eq!(Hc::opened(c3).user, "alice");

    let m = metrics(a);
    for (reason, n) in [
        ("token_missing", 2),
        ("token_signature", 3),
        ("token_expired", 2),
        ("token_nbf", 1),
        ("token_sub", 1),
        ("token_alg", 1),
        ("token_malformed", 1),
        ("token_crit", 1),
        ("token_aud", 1),
    ] {
        let key = format!("wsmio_handshake_rejections_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &key), n, "{key}");
    }
    c.close();
    c2.close();
    srv.stop();
}

/// An HS256 token for `claims` under the header JSON `header`.
fn sign_with_header(header: &str, claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let signing_input = format!("{}.{}", base64_url(header), base64_url(&claims.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A hub with an audience, an issuer and a clock-skew allowance: tokens
/// must name both, and tokens a few seconds past `exp` or before `nbf` are
/// still let in.
#[test]
fn token_rules_audience_issuer_and_leeway() {
    let srv = serve_hub(HubConfig {
        token_rules: TokenRules {
            audience: Some("chat".into()),
            issuer: Some("https://id.example".into()),
            leeway_secs: 30,
        },
        ..hub_config_auth()
    });
    let a = srv.addr;
    let unauthorized = "HTTP/1.1 401 Unauthorized";
    let iss = "https://id.example";
    let with = |claims: serde_json::Value| format!("/ws?token={}", sign_jwt(&claims, SECRET));
    let exp = now_secs() + 60;
    for (claims, why) in [
        (
            json!({"sub":"a","exp":exp,"iss":iss}),
            "token audience does not match",
        ),
        (
            json!({"sub":"a","exp":exp,"iss":iss,"aud":["mail"]}),
            "token audience does not match",
        ),
        (
            json!({"sub":"a","exp":exp,"aud":"chat"}),
            "token issuer does not match",
        ),
        (
            json!({"sub":"a","exp":exp,"aud":"chat","iss":"https://evil.example"}),
            "token issuer does not match",
        ),
        (
            json!({"sub":"a","exp":now_secs() - 40,"aud":"chat","iss":iss}),
            "token expired",
        ),
        (
            json!({"sub":"a","exp":exp,"nbf":now_secs() + 40,"aud":"chat","iss":iss}),
            "token not yet valid",
        ),
    ] {
        assert_eq!(
            refusal(a, &with(claims), &[]),
            (unauthorized.into(), why.into())
        );
    }
    // Within the leeway on both ends; `aud` as an array; fractional dates.
    let late = json!({"sub":"late","exp":now_secs() as f64 - 5.5,"aud":["mail","chat"],"iss":iss,
                      "subscribe":["*"],"publish":["*"]});
    let early = json!({"sub":"early","exp":exp,"nbf":now_secs() + 20,"aud":"chat","iss":iss});
    for claims in [late, early] {
        let c = try_ws(a, &with(claims.clone()), &[]).expect("within the leeway");
        assert_eq!(Hc::opened(c).user, claims["sub"].as_str().unwrap());
    }
    srv.stop();
}

/// DNS rebinding: a page whose own name was re-pointed at the server sends
/// an `Origin` that matches `Host`, so only the `Host` check can refuse it.
#[test]
fn host_allowlist_refuses_rebound_names() {
    let srv = serve_hub(HubConfig {
        hosts: HostPolicy::Local,
        ..hub_config()
    });
    let a = srv.addr;
    let rebound = format!("rebind.example:{}", a.port());
    let (req, _) = hs_for_host(&rebound, &[("Origin", &format!("http://{rebound}"))]);
    let resp = common::http_exchange(a, &req);
    assert_eq!(status_line(&resp), "HTTP/1.1 403 Forbidden", "{resp}");
    assert_eq!(body(&resp).trim_end(), "host not allowed");
    // Plain HTTP (the demo page, metrics) is refused the same way.
    let get = format!("GET /metrics HTTP/1.1\r\nHost: {rebound}\r\n\r\n");
    let resp = common::http_exchange(a, get.as_bytes());
    assert_eq!(status_line(&resp), "HTTP/1.1 403 Forbidden", "{resp}");
    // Local names and IP literals, with their own origin, are let in.
    for host in [format!("localhost:{}", a.port()), a.to_string()] {
        let (req, hs) = hs_for_host(&host, &[("Origin", &format!("http://{host}"))]);
        let c = common::Client::handshake(common::tcp(a), &req, &hs, 0).expect("local host");
        Hc::opened(c).close();
    }
    let m = metrics(a);
    assert_eq!(
        metric(&m, "wsmio_handshake_rejections_total{reason=\"host\"}"),
        1
    );
    srv.stop();
}

/// An upgrade request for `/ws` naming `host` in its `Host` header.
fn hs_for_host(host: &str, extra: &[(&str, &str)]) -> (Vec<u8>, ClientHandshake) {
    let hs = ClientHandshake::new(*b"host check key..", &[]);
    (hs.request(host, "/ws", extra), hs)
}

#[test]
fn origin_same_host_by_default() {
    let srv = serve_hub(hub_config());
    let a = srv.addr;
    let forbidden = "HTTP/1.1 403 Forbidden";
    let got = refusal(a, "/ws", &[("Origin", "http://evil.example")]);
    assert_eq!(got, (forbidden.into(), "origin not allowed".into()));
    // Same host but another port is another host:port.
    let other_port = format!("http://127.0.0.1:{}", a.port().wrapping_add(1));
    assert_refused(a, "/ws", &[("Origin", &other_port)], forbidden);
    // The same host and port under another scheme is another origin: an
    // https page is not this ws:// hub's own (RFC 6454 §4).
    assert_refused(a, "/ws", &[("Origin", &format!("https://{a}"))], forbidden);
    // A space before a multi-byte character once made the port's offset
    // fall inside that character (a panic: found by fuzz/hub_request).
    // It is refused like any other origin, and the hub stays up.
    assert_refused(a, "/ws", &[("Origin", "http:// \u{2f03}")], forbidden);
    assert_refused(a, "/ws", &[("Origin", "http://\t\u{2f03}:1")], forbidden);
    // The page's own origin (http for a ws:// hub, host and port equal to
    // Host) is allowed, with or without a trailing slash; so is no Origin
    // (a non-browser client).
    for origin in [format!("http://{a}"), format!("HTTP://{a}/")] {
        let c = try_ws(a, "/ws", &[("Origin", &origin)]).expect("same origin allowed");
        Hc::opened(c).close();
    }
    connect(a, None).close();
    let m = metrics(a);
    assert_eq!(
        metric(&m, "wsmio_handshake_rejections_total{reason=\"origin\"}"),
        5
    );
    srv.stop();
}

#[test]
fn origin_explicit_list_and_any() {
    let srv = serve_hub(HubConfig {
        origins: OriginPolicy::parse("https://chat.example.com, https://admin.example.com/"),
        ..hub_config()
    });
    let a = srv.addr;
    let forbidden = "HTTP/1.1 403 Forbidden";
    for ok in ["https://chat.example.com", "https://admin.example.com"] {
        let c = try_ws(a, "/ws", &[("Origin", ok)]).expect("listed origin allowed");
        Hc::opened(c).close();
    }
    // Unlisted, another scheme, and even the server's own host: refused.
    let own = format!("http://{a}");
    for bad in [
        "https://evil.example.com",
        "http://chat.example.com",
        "https://chat.example.com.evil.net",
        own.as_str(),
    ] {
        assert_refused(a, "/ws", &[("Origin", bad)], forbidden);
    }
    srv.stop();

    let srv = serve_hub(HubConfig {
        origins: OriginPolicy::parse("*"),
        ..hub_config()
    });
    for o in ["https://evil.example.com", "null", "http://x:1"] {
        let c = try_ws(srv.addr, "/ws", &[("Origin", o)]).expect("* allows any");
        Hc::opened(c).close();
    }
    srv.stop();
}

#[test]
fn wrong_path_is_404_and_checked_first() {
    let srv = serve_hub(hub_config_auth());
    let a = srv.addr;
    let t = token_all("alice");
    for path in [
        format!("/chat?token={t}"),
        "/".into(),
        "/ws/".into(),
        "/wss".into(),
    ] {
        let (status, _) = refusal(a, &path, &[]);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
    }
    // The path is checked before Origin and token.
    let (status, _) = refusal(a, "/nope", &[("Origin", "http://evil.example")]);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // A plain GET of /ws answers what an upgrade would get: 401 without
    // a token, 426 with one; other paths are 404.
    let resp = http_get(a, "/ws");
    assert_eq!(status_line(&resp), "HTTP/1.1 401 Unauthorized", "{resp}");
    let resp = http_get(a, &format!("/ws?token={t}"));
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 426 Upgrade Required",
        "{resp}"
    );
    assert_eq!(
        status_line(&http_get(a, "/nothing")),
        "HTTP/1.1 404 Not Found"
    );
    let ok = http_get(a, "/healthz");
    assert_eq!((status_line(&ok), body(&ok)), ("HTTP/1.1 200 OK", "ok\n"));
    // RFC 9110 §9.3.2: HEAD gets the head of the GET answer, no body.
    let req = format!("HEAD /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n");
    let head = common::http_exchange(a, req.as_bytes());
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(head.contains("Content-Length: 3\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body came: {head:?}");
    let m = metrics(a);
    assert_eq!(
        metric(&m, "wsmio_handshake_rejections_total{reason=\"path\"}"),
        5
    );
    srv.stop();
}

#[test]
fn token_patterns_limit_topics() {
    let srv = serve_hub(hub_config_auth());
    let t = token("alice", &["room.*", "news"], &["room.1"]);
    let mut a = connect(srv.addr, Some(&t));
    // Subscribe: prefix pattern and exact name allowed, others forbidden.
    a.sub("room.7");
    a.sub("news");
    for topic in ["admin", "room", "news.x", "roomy", "@bob"] {
        let e = a.expect_error(json!({"op":"sub","topic":topic}), "forbidden");
        assert!(e["message"].as_str().unwrap().contains("subscribe"), "{e}");
    }
    // Publish: only room.1; not the subscribed room.7, not an inbox.
    a.sub("room.1");
    let ack = a.publish("room.1", json!("hi"));
    assert_eq!(ack["seq"], 1);
    a.expect("msg");
    for topic in ["room.7", "news", "elsewhere", "@alice", "@bob"] {
        let e = a.expect_error(json!({"op":"pub","topic":topic,"data":1}), "forbidden");
        assert!(e["message"].as_str().unwrap().contains("publish"), "{e}");
    }
    // Presence needs the right to subscribe.
    a.expect_error(json!({"op":"presence","topic":"admin"}), "forbidden");
    // Forbidden requests changed nothing.
    let mut other = connect_as(srv.addr, "bob");
    let id = other.request(json!({"op":"presence","topic":"admin"}));
    let p = other.expect("presence");
    assert_eq!((&p["id"], &p["count"]), (&json!(id), &json!(0)));
    let ack = other.sub("room.7");
    assert_eq!(ack["seq"], 0, "forbidden pub did not sequence anything");
    assert_eq!(a.expect_join()["user"], "bob");

    // A token with no lists may only read its inbox: no direct messages
    // either (each DM to a new user creates an inbox with history).
    let bare = sign_jwt(&json!({"sub":"carol","exp": now_secs() + 60}), SECRET);
    let mut c = connect(srv.addr, Some(&bare));
    c.expect_error(json!({"op":"sub","topic":"room.1"}), "forbidden");
    c.expect_error(json!({"op":"pub","topic":"room.1","data":1}), "forbidden");
    let e = c.expect_error(json!({"op":"dm","to":"alice","data":"no"}), "forbidden");
    assert!(e["message"].as_str().unwrap().contains("message"), "{e}");
    c.close();
    // The `dm` claim names whom the user may message.
    let carol = sign_jwt(
        &json!({"sub":"carol","exp": now_secs() + 60, "dm":["al*"]}),
        SECRET,
    );
    let mut c = connect(srv.addr, Some(&carol));
    c.expect_error(json!({"op":"dm","to":"bob","data":"no"}), "forbidden");
    let id = c.request(json!({"op":"dm","to":"alice","data":"hello"}));
    assert_eq!(c.expect("ack")["id"], id);
    check_msg(
        &a.expect("msg"),
        "@alice",
        1,
        &a.epoch,
        "carol",
        &json!("hello"),
    );
    // A wildcard grant does not open other users' inboxes.
    other.expect_error(json!({"op":"sub","topic":"@alice"}), "forbidden");
    other.expect_error(json!({"op":"presence","topic":"@alice"}), "forbidden");
    a.close();
    other.close();
    c.close();
    srv.stop();
}

#[test]
fn anonymous_mode_without_a_secret() {
    let srv = serve_hub(hub_config());
    // No token needed; a token, if sent, is ignored.
    let mut a = connect(srv.addr, None);
    let mut b = connect(srv.addr, Some("whatever.not.checked"));
    for c in [&a, &b] {
        assert_eq!(c.welcome["anonymous"], true);
        assert!(c.user.starts_with("anon-"), "{}", c.user);
    }
    assert_ne!(a.user, b.user);
    // Everything but other users' inboxes is allowed.
    a.sub("any.topic");
    b.sub_ack("any.topic");
    a.expect_join();
    b.expect_join();
    b.publish("any.topic", json!(1));
    b.expect("msg");
    assert_eq!(a.expect("msg")["from"], json!(b.user));
    let to = a.user.clone();
    let id = b.request(json!({"op":"dm","to":to,"data":"hey"}));
    assert_eq!(b.expect("ack")["id"], id);
    check_msg(
        &a.expect("msg"),
        &format!("@{}", a.user),
        1,
        &a.epoch,
        &b.user,
        &json!("hey"),
    );
    let inbox = format!("@{}", a.user);
    b.expect_error(json!({"op":"sub","topic":inbox}), "forbidden");
    a.close();
    b.close();
    srv.stop();
}

/// A connection does not outlive its token: the first request after `exp`,
/// or the first heartbeat pong of a client that sends nothing else, closes
/// it with 1008 "token expired".
#[test]
fn a_connection_ends_when_its_token_expires() {
    use common::Ev;
    use std::time::{Duration, Instant};
    let cfg = common::config().with_idle_timeout(Some(Duration::from_millis(300)));
    let srv = hub_support::serve(hub_config_auth(), cfg);
    let short = |user: &str| {
        sign_jwt(
            &json!({"sub": user, "exp": now_secs() + 2, "subscribe":["*"], "publish":["*"]}),
            SECRET,
        )
    };
    let (t1, t2) = (short("alice"), short("bob"));
    let t0 = Instant::now();
    let mut active = connect(srv.addr, Some(&t1));
    let mut silent = connect(srv.addr, Some(&t2));
    // Before expiry, requests are served.
    active.sub("room");
    // The silent client only answers the server's heartbeat pings.
    let deadline = t0 + Duration::from_secs(6);
    let mut pongs = 0;
    let silent_close = loop {
        assert!(
            Instant::now() < deadline,
            "the silent client was not closed ({pongs} pongs)"
        );
        match silent.c.next_within(Duration::from_millis(500)) {
            Some(Ev::Ping(p)) => {
                silent.c.pong(&p);
                pongs += 1;
            }
            Some(Ev::Close(code, reason)) => break (code, reason),
            Some(Ev::Text(_)) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(silent_close, (Some(1008), "token expired".to_string()));
    assert!(pongs >= 2, "closed after {pongs} pongs");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    // The active client's next request meets the expiry.
    active.send(&json!({"op":"pub","topic":"room","data":1,"id":9}));
    let closed = loop {
        match active.c.next() {
            Ev::Close(code, reason) => break (code, reason),
            Ev::Ping(p) => active.c.pong(&p),
            _ => {}
        }
    };
    assert_eq!(closed, (Some(1008), "token expired".to_string()));
    srv.stop();
}
