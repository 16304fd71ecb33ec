//! The opening handshake over real sockets: every rejection with its exact
//! status line (and the connection closed after it), the HTTP hook, the
//! handler's veto, subprotocol selection, heads split into single bytes and
//! frames pipelined behind the head.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use wsmio::proto::handshake::ClientHandshake;
use wsmio::{ConnId, Ctx, Handler, HttpRequest, HttpResponse, Message, Upgrade};

/// The RFC 6455 §1.3 sample key.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid upgrade request for `addr`, as text to derive broken ones from.
fn good(addr: SocketAddr) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Accepts upgrades except on `/forbidden`; selects a subprotocol on
/// `/proto` (the last one offered) and an unoffered one on `/bad-proto`;
/// answers plain HTTP on `/status`; echoes messages.
struct Gate;

impl Handler for Gate {
    type Conn = ();

    fn upgrade(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> Upgrade {
        match req.path_only() {
            "/forbidden" => Upgrade::reject(403, "not for you"),
            "/proto" => match req.protocols().last() {
                Some(p) => Upgrade::accept_protocol(p),
                None => Upgrade::accept(),
            },
            "/bad-proto" => Upgrade::accept_protocol("never-offered"),
            _ => Upgrade::accept(),
        }
    }

    fn http(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> HttpResponse {
        if req.path_only() == "/status" {
            HttpResponse::text(200, "all good").with_header("X-Test", "yes")
        } else {
            HttpResponse::text(404, "nothing here")
        }
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = ctx.send(id, msg);
    }
}

#[test]
fn every_rejection_has_its_status_line_and_closes() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let g = good(addr);

    let too_many_headers = {
        let mut extra = String::new();
        for i in 0..65 {
            extra.push_str(&format!("X-Filler-{i}: v\r\n"));
        }
        g.replacen("\r\n", &format!("\r\n{extra}"), 1)
    };
    let big_value = g.replacen("\r\n", &format!("\r\nX-Big: {}\r\n", "a".repeat(9000)), 1);
    let endless = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(9000));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed head",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "garbage request line",
            "\x01\x02\x03 nonsense\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "head over max_head_size (ending)",
            big_value,
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "head over max_head_size (never ending)",
            endless,
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "too many headers",
            too_many_headers,
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "non-GET upgrade",
            g.replace("GET /chat", "POST /chat"),
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            "HTTP/1.0",
            g.replace("HTTP/1.1", "HTTP/1.0"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "missing Host",
            g.replace(&format!("Host: {addr}\r\n"), ""),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "empty Host",
            g.replace(&format!("Host: {addr}"), "Host: "),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            // RFC 9112 §3.2: more than one Host is a 400.
            "two Host headers",
            g.replace(
                &format!("Host: {addr}\r\n"),
                &format!("Host: {addr}\r\nHost: evil.example\r\n"),
            ),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "non-ASCII Host",
            g.replace(&format!("Host: {addr}"), "Host: b\u{fc}cher.example"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "plain HTTP/1.1 GET without Host",
            "GET /index.html HTTP/1.1\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "bad Upgrade",
            g.replace("Upgrade: websocket", "Upgrade: h2c"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "Connection without upgrade",
            g.replace("keep-alive, Upgrade", "keep-alive"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "key not 16 bytes",
            g.replace(KEY, "dGhlIHNhbXBsZQ=="),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "key not base64",
            g.replace(KEY, "!!!!not base64!!!!!!!!=="),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "missing key",
            g.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "version 8",
            g.replace("Version: 13", "Version: 8"),
            "HTTP/1.1 426 Upgrade Required",
        ),
        (
            "missing version",
            g.replace("Sec-WebSocket-Version: 13\r\n", ""),
            "HTTP/1.1 426 Upgrade Required",
        ),
        (
            // HTTP/1.0 has no Host requirement.
            "plain HTTP/1.0 GET without Host (default http hook)",
            "GET /index.html HTTP/1.0\r\n\r\n".to_string(),
            "HTTP/1.1 426 Upgrade Required",
        ),
        (
            "plain GET (default http hook)",
            format!("GET /index.html HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            "HTTP/1.1 426 Upgrade Required",
        ),
    ];
    for (name, req, status) in &cases {
        // `http_exchange` also checks that the server closes the connection.
        let resp = http_exchange(addr, req.as_bytes());
        assert_eq!(status_line(&resp), *status, "{name}: {resp:?}");
        assert!(has_header(&resp, "Connection", "close"), "{name}: {resp:?}");
        if status.contains(" 426 ") {
            assert!(
                has_header(&resp, "Upgrade", "websocket"),
                "{name}: {resp:?}"
            );
        }
        if name.starts_with("version") || name.starts_with("missing version") {
            assert!(
                has_header(&resp, "Sec-WebSocket-Version", "13"),
                "{name}: {resp:?}"
            );
        }
        if status.contains(" 405 ") {
            assert!(has_header(&resp, "Allow", "GET"), "{name}: {resp:?}");
        }
    }

    // The server is still healthy after all of that.
    let mut c = Client::connect(addr);
    c.send_text("still here");
    assert_eq!(c.expect_text(), "still here");
    drop(c);
    stop(&handle, join);
}

#[test]
fn http_hook_and_handler_veto() {
    let (addr, handle, join) = start(Gate, config());

    let resp = http_exchange(
        addr,
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp:?}");
    assert!(has_header(&resp, "X-Test", "yes"), "{resp:?}");
    assert!(has_header(&resp, "Content-Length", "9"), "{resp:?}");
    assert!(resp.ends_with("\r\n\r\nall good\n"), "{resp:?}");

    let resp = http_exchange(
        addr,
        format!("GET /other HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 404 Not Found", "{resp:?}");

    // The handler refuses a valid upgrade.
    let resp = http_exchange(
        addr,
        good(addr).replace("GET /chat", "GET /forbidden").as_bytes(),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 403 Forbidden", "{resp:?}");
    assert!(resp.ends_with("not for you\n"), "{resp:?}");

    // A subprotocol the client did not offer is never sent (§4.2.2).
    let resp = http_exchange(
        addr,
        good(addr).replace("GET /chat", "GET /bad-proto").as_bytes(),
    );
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 500 Internal Server Error",
        "{resp:?}"
    );

    stop(&handle, join);
}

#[test]
fn subprotocol_selected_by_handler_is_in_the_101() {
    let (addr, handle, join) = start(Gate, config());
    let hs = ClientHandshake::new(*b"0123456789abcdef", &["chat", "superchat"]);
    let req = hs.request(&addr.to_string(), "/proto", &[]);
    let mut c = Client::handshake(tcp(addr), &req, &hs, 0).expect("upgrade");
    assert!(
        c.response
            .starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{}",
        c.response
    );
    assert!(has_header(
        &c.response,
        "Sec-WebSocket-Protocol",
        "superchat"
    ));
    assert_eq!(c.protocol.as_deref(), Some("superchat"));
    c.send_text("hi");
    assert_eq!(c.expect_text(), "hi");

    // No protocol offered: none selected, none in the response.
    let c2 = Client::connect(addr);
    assert_eq!(c2.protocol, None);
    assert!(!c2
        .response
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol"));
    drop((c, c2));
    stop(&handle, join);
}

#[test]
fn head_sent_one_byte_per_write_upgrades() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let (req, hs) = request(addr);
    let mut c = Client::handshake(tcp(addr), &req, &hs, 1).expect("upgrade");
    wait_open(&events);
    c.send_text("byte by byte");
    assert_eq!(c.expect_text(), "byte by byte");
    drop(c);
    stop(&handle, join);
}

#[test]
fn frames_pipelined_with_the_head_are_processed() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let (mut bytes, hs) = request(addr);
    bytes.extend_from_slice(&masked(0x81, "first ✓".as_bytes()));
    bytes.extend_from_slice(&masked(0x82, &[0, 1, 2, 255]));
    bytes.extend_from_slice(&masked(0x89, b"ping!"));
    bytes.extend_from_slice(&masked(0x81, b"last"));
    let mut c = Client::handshake(tcp(addr), &bytes, &hs, 0).expect("upgrade");
    assert_eq!(c.expect_text(), "first ✓");
    assert_eq!(c.expect_binary(), [0, 1, 2, 255]);
    assert_eq!(c.next(), Ev::Pong(b"ping!".to_vec()));
    assert_eq!(c.expect_text(), "last");

    // A close pipelined with the head: echoed, then TCP closed.
    let (mut bytes, hs) = request(addr);
    bytes.extend_from_slice(&masked(0x81, b"bye"));
    bytes.extend_from_slice(&close_frame(1000, b""));
    let mut c2 = Client::handshake(tcp(addr), &bytes, &hs, 0).expect("upgrade");
    assert_eq!(c2.expect_text(), "bye");
    c2.expect_close_then_eof(1000);
    drop((c, c2));
    stop(&handle, join);
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let hs = ClientHandshake::new(*b"the sample nonce", &[]);
    assert_eq!(hs.key(), KEY);
    let req = format!(
        "GET /chat HTTP/1.1\r\nhost: {addr}\r\nUPGRADE: WebSocket\r\nconnection: keep-alive,  UPGRADE \r\nsec-websocket-key:   {KEY}  \r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    );
    let mut c = Client::handshake(tcp(addr), req.as_bytes(), &hs, 0).expect("upgrade");
    // RFC 6455 §1.3's sample answer.
    assert!(has_header(
        &c.response,
        "Sec-WebSocket-Accept",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    ));
    c.send_text("ok");
    assert_eq!(c.expect_text(), "ok");
    drop(c);
    stop(&handle, join);
}

#[test]
fn handshake_timeout_answers_408_and_closes() {
    let (echo, _events) = Echo::new();
    let cfg = config().with_handshake_timeout(Duration::from_millis(300));
    let (addr, handle, join) = start(echo, cfg);
    let (req, _hs) = request(addr);
    let mut s = tcp(addr);
    let t0 = std::time::Instant::now();
    s.write_all(&req[..req.len() / 2]).unwrap();
    // Stall: the rest never comes.
    let resp = String::from_utf8(read_to_eof(&mut s, Duration::from_secs(2))).unwrap();
    let took = t0.elapsed();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 408 Request Timeout",
        "{resp:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A connection that sends nothing at all is timed out as well.
    let mut s = tcp(addr);
    let resp = String::from_utf8(read_to_eof(&mut s, Duration::from_secs(2))).unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 408 Request Timeout",
        "{resp:?}"
    );
    stop(&handle, join);
}

/// The handshake timeout on a driven clock, to the millisecond, for a head
/// that stalls half-way and for a connection that sends nothing.
#[test]
fn handshake_timeout_on_a_driven_clock() {
    let (echo, _events) = Echo::new();
    let (cfg, clock) = clocked_config();
    let (addr, handle, join) = start(echo, cfg.with_handshake_timeout(Duration::from_secs(5)));
    let (req, _hs) = request(addr);
    let mut half = tcp(addr);
    half.write_all(&req[..req.len() / 2]).unwrap();
    let mut silent = tcp(addr);
    // Both accepted at 0 ms, so their deadline is 5,000 ms.
    let t0 = std::time::Instant::now();
    loop {
        let (tx, rx) = std::sync::mpsc::channel();
        handle
            .call(move |ctx| {
                let _ = tx.send(ctx.connections());
            })
            .unwrap();
        if rx.recv_timeout(TIMEOUT) == Ok(2) {
            break;
        }
        assert!(t0.elapsed() < TIMEOUT, "not accepted");
    }
    step(&clock, 4_999);
    for s in [&mut half, &mut silent] {
        s.set_read_timeout(Some(QUIET)).unwrap();
        let mut byte = [0u8; 1];
        let r = std::io::Read::read(s, &mut byte);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{r:?} before the deadline"
        );
    }
    step(&clock, 1);
    for s in [&mut half, &mut silent] {
        let resp = String::from_utf8(read_to_eof(s, TIMEOUT)).unwrap();
        assert_eq!(status_line(&resp), "HTTP/1.1 408 Request Timeout");
    }
    // Closed on our side too, or the server would wait for our FIN until a
    // shutdown deadline its clock never reaches.
    drop((half, silent));
    stop(&handle, join);
}

#[test]
fn max_connections_refuses_with_503() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config().with_max_connections(2));
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    wait_open(&events);
    wait_open(&events);

    // The third connection is refused before its request is read.
    let mut s = tcp(addr);
    let resp = String::from_utf8(read_to_eof(&mut s, TIMEOUT)).unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 503 Service Unavailable",
        "{resp:?}"
    );

    // Also when the request is already on its way. The server closes
    // without reading it, so the kernel may end the connection with a reset
    // instead of a FIN; the 503 still arrives first.
    let (req, _) = request(addr);
    for _ in 0..20 {
        let mut s = tcp(addr);
        s.write_all(&req).unwrap();
        let (resp, _reset) = read_until_closed(&mut s, TIMEOUT);
        let resp = String::from_utf8(resp).unwrap();
        assert_eq!(
            status_line(&resp),
            "HTTP/1.1 503 Service Unavailable",
            "{resp:?}"
        );
    }

    // The first two are unaffected.
    a.send_text("a");
    b.send_text("b");
    assert_eq!(a.expect_text(), "a");
    assert_eq!(b.expect_text(), "b");

    // Once one leaves, a new connection is accepted again.
    drop(a);
    wait_close(&events);
    let mut c = Client::connect(addr);
    c.send_text("c");
    assert_eq!(c.expect_text(), "c");
    drop((b, c));
    stop(&handle, join);
}

/// Pings during the handshake; records what `Ctx::ping` said.
struct PingEarly(std::sync::mpsc::Sender<bool>);

impl Handler for PingEarly {
    type Conn = ();

    fn upgrade(&mut self, ctx: &mut Ctx<'_>, id: ConnId, _req: &HttpRequest) -> Upgrade {
        let _ = self.0.send(ctx.ping(id, b"early").is_ok());
        Upgrade::accept()
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.0.send(ctx.ping(id, b"open").is_ok());
    }

    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}
}

/// RFC 6455 §5.5.2: a ping goes on an established connection. Before the
/// 101 is written `Ctx::ping` refuses, so no frame bytes can land in the
/// HTTP response; once open it works.
#[test]
fn ping_is_refused_before_the_upgrade() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, handle, join) = start(PingEarly(tx), config());
    let mut c = Client::connect(addr);
    assert!(c.response.starts_with("HTTP/1.1 101 "), "{}", c.response);
    assert_eq!(rx.recv_timeout(TIMEOUT), Ok(false), "ping during handshake");
    assert_eq!(rx.recv_timeout(TIMEOUT), Ok(true), "ping once open");
    match c.next() {
        Ev::Ping(p) => assert_eq!(p, b"open"),
        other => panic!("expected the ping, got {other:?}"),
    }
    stop(&handle, join);
}
