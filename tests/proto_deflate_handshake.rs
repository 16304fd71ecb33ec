//! permessage-deflate negotiation in the opening handshake (RFC 7692 §5,
//! §7.1; RFC 6455 §4, §9.1), both roles: every bad parameter of an offer
//! (declined) and of an answer (the handshake fails), the headers written,
//! and a wsmio client and server that agree on parameters and then talk
//! with them, in every configuration of context takeover and windows.
#![cfg(feature = "deflate")]

mod proto_deflate_support;
use proto_deflate_support::*;

use wsmio::proto::extension::DeflateConfig;
use wsmio::proto::handshake::{
    accept_response, accept_response_ext, negotiate_deflate, parse_request, validate_upgrade,
    ClientHandshake, HeadLimits, HttpRequest,
};
use wsmio::proto::{Limits, Message, Role};

const REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn request_with(extensions: &[&str]) -> HttpRequest {
    let mut head = REQUEST.to_string();
    for e in extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    head.push_str("\r\n");
    parse_request(head.as_bytes(), &HeadLimits::default()).unwrap()
}

/// The server side: the first acceptable offer wins; an offer with any bad
/// parameter is declined (RFC 7692 §5), the next one tried; a header that
/// does not parse is a 400.
#[test]
fn server_negotiation_with_every_bad_parameter() {
    let cfg = DeflateConfig::default();
    let answer = |exts: &[&str]| {
        negotiate_deflate(&request_with(exts), &cfg).map(|a| a.map(|a| a.response.header_value()))
    };
    let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(answer(&[]), Ok(None));
    assert_eq!(answer(&["x-webkit-deflate-frame"]), Ok(None));
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits"]),
        Ok(Some(base.into()))
    );
    // Autobahn 13.*: server_max_window_bits=8 is accepted as 8, and a
    // client's 8 is answered 8.
    assert_eq!(
        answer(&["permessage-deflate; server_max_window_bits=8"]),
        Ok(Some(format!("{base}; server_max_window_bits=8")))
    );
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits=8"]),
        Ok(Some(format!("{base}; client_max_window_bits=8")))
    );
    let bad = [
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=\"16\"",
    ];
    for b in bad {
        assert_eq!(answer(&[b]), Ok(None), "{b}");
        // Declined, and the next offer (in the same or another field) wins.
        assert_eq!(
            answer(&[&format!("{b}, permessage-deflate")]),
            Ok(Some(base.into())),
            "{b}"
        );
        assert_eq!(
            answer(&[b, "permessage-deflate"]),
            Ok(Some(base.into())),
            "{b}"
        );
    }
    let malformed = [
        "permessage-deflate;",
        "permessage-deflate; a=\"b",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "; x",
        "permessage-deflate x",
    ];
    for malformed in malformed {
        let r = negotiate_deflate(&request_with(&[malformed]), &cfg);
        assert_eq!(r.map(|_| ()).map_err(|e| e.status), Err(400), "{malformed}");
    }
}

/// The server's `101` with the answer in `Sec-WebSocket-Extensions`, and
/// `accept_response` as it was without one.
#[test]
fn server_answer_header() {
    let cfg = DeflateConfig::default();
    let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let req = request_with(&["permessage-deflate; client_max_window_bits"]);
    let key = validate_upgrade(&req).unwrap();
    let a = negotiate_deflate(&req, &cfg).unwrap().unwrap();
    let resp = accept_response_ext(
        key,
        Some("chat"),
        Some(&a.response.header_value()),
        &[("X-A", "b")],
    );
    let text = String::from_utf8(resp).unwrap();
    assert!(
        text.contains(&format!("\r\nSec-WebSocket-Extensions: {base}\r\n")),
        "{text}"
    );
    assert!(
        text.contains("\r\nSec-WebSocket-Protocol: chat\r\n") && text.ends_with("X-A: b\r\n\r\n")
    );
    assert_eq!(
        accept_response(key, None, &[]),
        accept_response_ext(key, None, None, &[])
    );
}

/// The client side: the offer goes in the request; an answer it cannot
/// accept fails the handshake; a declined offer leaves messages plain.
#[test]
fn client_negotiation_with_every_bad_answer() {
    let hs = ClientHandshake::with_deflate([1; 16], &[], &DeflateConfig::default());
    let head = String::from_utf8(hs.request("h", "/", &[])).unwrap();
    assert!(
        head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits\r\n"),
        "{head}"
    );
    let key = hs.key().to_string();
    let respond = |hs: &ClientHandshake, exts: &[&str]| {
        let mut extra: Vec<(&str, &str)> = Vec::new();
        for e in exts {
            extra.push(("Sec-WebSocket-Extensions", e));
        }
        hs.validate(&accept_response(&key, None, &extra), &HeadLimits::default())
    };
    let agreed = respond(
        &hs,
        &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
    )
    .unwrap();
    assert_eq!(agreed.deflate, Some(default_params()));
    assert_eq!(respond(&hs, &[]).unwrap().deflate, None);
    let with_bits = respond(
        &hs,
        &["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
    )
    .unwrap();
    // Our offer's client_no_context_takeover binds us even if not echoed.
    assert_eq!(with_bits.deflate, Some(params(true, true, 15, 10)));
    let bad = [
        "x-foo",
        "permessage-deflate; server_no_context_takeover, x-foo",
        "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=7",
        // We offered server_no_context_takeover: it must be accepted.
        "permessage-deflate",
        "permessage-deflate;",
    ];
    for b in bad {
        let r = respond(&hs, &[b]);
        assert_eq!(r.as_ref().map_err(|e| e.status), Err(400), "{b}: {r:?}");
    }
    // A window larger than we asked for.
    let small = DeflateConfig {
        incoming_max_window_bits: 10,
        ..DeflateConfig::default()
    };
    let hs10 = ClientHandshake::with_deflate([1; 16], &[], &small);
    assert!(respond(
        &hs10,
        &["permessage-deflate; server_no_context_takeover; server_max_window_bits=12"]
    )
    .is_err());
    let ok = respond(
        &hs10,
        &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"],
    )
    .unwrap();
    assert_eq!(ok.deflate.map(|p| p.server_max_window_bits), Some(9));
    // No offer: any extension fails, as before.
    let plain = ClientHandshake::new([1; 16], &[]);
    assert!(plain.offer().is_none());
    let resp = accept_response(
        plain.key(),
        None,
        &[("Sec-WebSocket-Extensions", "permessage-deflate")],
    );
    assert!(plain
        .validate_response(&resp, &HeadLimits::default())
        .is_err());
}

/// The whole exchange, handshake to messages, with every configuration of
/// context takeover and windows a wsmio client and server can have.
#[test]
fn client_and_server_agree_and_talk() {
    let msg = json(3000, 11);
    for out_ctx in [false, true] {
        for in_ctx in [false, true] {
            for (out_bits, in_bits) in [(15, 15), (9, 12), (12, 9), (10, 10)] {
                let cfg = DeflateConfig {
                    outgoing_context_takeover: out_ctx,
                    incoming_context_takeover: in_ctx,
                    outgoing_max_window_bits: out_bits,
                    incoming_max_window_bits: in_bits,
                };
                let hs = ClientHandshake::with_deflate([3; 16], &[], &cfg);
                let req =
                    parse_request(&hs.request("h", "/", &[]), &HeadLimits::default()).unwrap();
                let key = validate_upgrade(&req).unwrap();
                let a = negotiate_deflate(&req, &cfg).unwrap().unwrap();
                let resp = accept_response_ext(key, None, Some(&a.response.header_value()), &[]);
                let agreed = hs
                    .validate(&resp, &HeadLimits::default())
                    .unwrap()
                    .deflate
                    .unwrap();
                assert_eq!(agreed, a.params);
                let mut server = conn(Role::Server, a.params, Limits::default());
                let mut client = conn(Role::Client, agreed, Limits::default());
                for _ in 0..2 {
                    client.send(Message::Binary(&msg)).unwrap();
                    server.send(Message::Binary(&msg)).unwrap();
                }
                for server_sends in [false, true] {
                    let (tx, rx) = ends(&mut server, &mut client, server_sends);
                    let wire = drain(tx);
                    let mut got = Collector::default();
                    feed(rx, &wire, &[17, 400], &mut got).unwrap();
                    assert_eq!(got.got, vec![sent(false, &msg); 2], "{cfg:?}");
                }
            }
        }
    }
}
