//! Tests of `proto::handshake`: request parsing and the upgrade checks, the
//! server's answers, the client's request and its check of the response
//! (RFC 6455 §4).

use super::*;

fn req(s: &str) -> HttpRequest {
    parse_request(s.as_bytes(), &HeadLimits::default()).unwrap()
}

const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn status_lines_carry_a_phrase_that_cannot_break_the_head() {
    let line = |status, reason| {
        let r = http_response_with_reason(status, reason, "text/plain", b"", &[]);
        let end = r.windows(2).position(|w| w == b"\r\n").unwrap();
        String::from_utf8(r[..end].to_vec()).unwrap()
    };
    let standard = |status| line(status, status_text(status));
    assert_eq!(standard(451), "HTTP/1.1 451 Unavailable For Legal Reasons");
    assert_eq!(standard(413), "HTTP/1.1 413 Content Too Large");
    assert_eq!(standard(499), "HTTP/1.1 499 Client Error");
    assert_eq!(standard(299), "HTTP/1.1 299 Successful");
    assert_eq!(standard(799), "HTTP/1.1 799 Unknown");
    assert_eq!(line(42, "Odd"), "HTTP/1.1 500 Internal Server Error");
    assert_eq!(line(1000, "Odd"), "HTTP/1.1 500 Internal Server Error");
    assert_eq!(
        line(499, "Gone\r\nX: 1\tfor ñ"),
        "HTTP/1.1 499 Gone  X: 1\tfor ñ"
    );
    assert_eq!(line(204, ""), "HTTP/1.1 204 ");
}

#[test]
fn rfc_accept_key_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn valid_request() {
    let r = req(GOOD);
    assert_eq!(validate_upgrade(&r), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(r.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
    assert_eq!(r.header("origin"), Some("http://example.com"));
    let resp = accept_response("dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), &[]);
    let text = String::from_utf8(resp).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
}

#[test]
fn rejections() {
    let cases: &[(&str, &str, u16)] = &[
        ("GET /chat HTTP/1.1", "POST /chat HTTP/1.1", 405),
        ("HTTP/1.1", "HTTP/1.0", 400),
        ("Host: server.example.com\r\n", "", 400),
        ("Upgrade: websocket", "Upgrade: h2c", 400),
        ("keep-alive, Upgrade", "keep-alive", 400),
        ("Version: 13", "Version: 8", 426),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
        // RFC 9112 §3.2: two Hosts, or an invalid one (refused while
        // parsing, for every request).
        (
            "Host: server.example.com\r\n",
            "Host: a\r\nHost: b\r\n",
            400,
        ),
        ("Host: server.example.com", "Host: a b", 400),
        ("Host: server.example.com", "Host: ", 400),
    ];
    for (from, to, status) in cases {
        let head = GOOD.replace(from, to);
        let got = match parse_request(head.as_bytes(), &HeadLimits::default()) {
            Err(rej) => rej.status,
            Ok(r) => validate_upgrade(&r).unwrap_err().status,
        };
        assert_eq!(got, *status, "{to}");
    }
    // HTTP/1.0 may leave Host out; HTTP/1.1 may not.
    assert!(parse_request(b"GET / HTTP/1.0\r\n\r\n", &HeadLimits::default()).is_ok());
    let rej = parse_request(b"GET / HTTP/1.1\r\n\r\n", &HeadLimits::default()).unwrap_err();
    assert_eq!((rej.status, rej.reason), (400, "missing Host header"));
    let resp = rejection_response(&Rejection::new(426, "x"));
    assert!(String::from_utf8(resp)
        .unwrap()
        .contains("Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn head_limits() {
    let limits = HeadLimits {
        max_head_size: 8192,
        max_headers: 4,
    };
    assert_eq!(
        parse_request(GOOD.as_bytes(), &limits).unwrap_err().status,
        431
    );
    assert_eq!(
        parse_request(
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            &HeadLimits::default()
        )
        .unwrap_err()
        .status,
        400
    );
}

#[test]
fn head_end_search_resumes() {
    let bytes = GOOD.as_bytes();
    let mut scanned = 0;
    for n in 1..=bytes.len() {
        let found = find_head_end(&bytes[..n], scanned);
        if n < bytes.len() {
            assert_eq!(found, None);
        } else {
            assert_eq!(found, Some(bytes.len()));
        }
        scanned = n;
    }
}

#[test]
fn client_handshake_round_trip() {
    let c = ClientHandshake::new(*b"the sample nonce", &["chat"]);
    assert_eq!(c.key(), "dGhlIHNhbXBsZSBub25jZQ==");
    let r = req(std::str::from_utf8(&c.request("h:1", "/", &[])).unwrap());
    let key = validate_upgrade(&r).unwrap();
    let resp = accept_response(key, Some("chat"), &[]);
    assert_eq!(
        c.validate_response(&resp, &HeadLimits::default()),
        Ok(Some("chat".into()))
    );
    let bad = accept_response("AAAAAAAAAAAAAAAAAAAAAA==", None, &[]);
    assert!(c.validate_response(&bad, &HeadLimits::default()).is_err());
    let other = accept_response(key, Some("other"), &[]);
    assert!(c.validate_response(&other, &HeadLimits::default()).is_err());
    // A subprotocol that is not text fails, as one not offered does.
    let mut raw = accept_response(key, None, &[]);
    raw.truncate(raw.len() - 2);
    raw.extend_from_slice(b"Sec-WebSocket-Protocol: \xff\xfe\r\n\r\n");
    assert_eq!(
        c.validate_response(&raw, &HeadLimits::default()),
        Err(Rejection::new(400, "response header value is not text"))
    );
}

/// Strings from the application cannot add lines to a head: a path
/// with spaces or CR LF is percent-encoded, a header name keeps only
/// token characters, a value loses CR and LF.
#[test]
fn heads_cannot_be_split() {
    let c = ClientHandshake::new([7; 16], &[]);
    let head = c.request(
        "h\r\nX-Host:1",
        "/a b HTTP/1.1\r\nX-Path: 1",
        &[("X-N\r\nX-Name: 1", "v\r\nX-Value: 1")],
    );
    let r = req(std::str::from_utf8(&head).unwrap());
    assert_eq!(r.path, "/a%20b%20HTTP/1.1%0D%0AX-Path:%201");
    assert!(r.header("X-Host").is_none() && r.header("X-Path").is_none());
    assert!(r.header("X-Name").is_none() && r.header("X-Value").is_none());
    assert_eq!(r.header("X-NX-Name1"), Some("vX-Value: 1"));
    let resp = accept_response("k", None, &[("A\r\nB", "c\nD: e")]);
    let text = std::str::from_utf8(&resp).unwrap();
    assert!(text.ends_with("\r\nAB: cD: e\r\n\r\n"), "{text}");
    let resp = http_response(400, "text/plain", b"no", &[("A:B", "x")]);
    assert!(std::str::from_utf8(&resp)
        .unwrap()
        .contains("\r\nAB: x\r\n"));
}
