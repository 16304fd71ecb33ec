//! The embedding API over real sockets: deferred upgrade answers (from
//! another thread, from the loop, unanswered until the deadline, for a
//! client that left), the per-connection state (`Handler::Conn`),
//! `Handle::call_handler`, reason phrases and percent-decoded query
//! parameters.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use wsmio::{
    CloseInfo, ConnId, Ctx, Handle, HandleError, Handler, HttpRequest, HttpResponse, Message,
    Upgrade,
};

/// What the test handler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppEv {
    Deferred(ConnId),
    Rejected(u16),
    Closed(String, u32),
}

/// A connection's state: who, and how many messages so far.
#[derive(Debug, Default)]
struct Peer {
    name: String,
    count: u32,
}

/// Defers upgrades on `/defer`, refuses `/legal` with 451, accepts the
/// rest with `?name=` as the connection's name; answers each message with
/// `name:count`.
struct App {
    events: mpsc::Sender<AppEv>,
    total: u32,
}

impl Handler for App {
    type Conn = Peer;

    fn upgrade(&mut self, ctx: &mut Ctx<'_, Peer>, id: ConnId, req: &HttpRequest) -> Upgrade {
        match req.path_only() {
            "/defer" => {
                let _ = self.events.send(AppEv::Deferred(id));
                Upgrade::defer()
            }
            "/legal" => Upgrade::reject(451, "blocked here"),
            _ => {
                let name = req.query_param("name").unwrap_or_default();
                ctx.conn(id).expect("state from accept").name = name.into_owned();
                Upgrade::accept()
            }
        }
    }

    fn http(&mut self, _ctx: &mut Ctx<'_, Peer>, _id: ConnId, req: &HttpRequest) -> HttpResponse {
        match req.path_only() {
            "/phrase" => HttpResponse::text(599, "x").with_reason("Custom\r\nX-Evil: 1"),
            _ => HttpResponse::text(451, "not here"),
        }
    }

    fn rejected(&mut self, _ctx: &mut Ctx<'_, Peer>, status: u16, _reason: &'static str) {
        let _ = self.events.send(AppEv::Rejected(status));
    }

    fn message(&mut self, ctx: &mut Ctx<'_, Peer>, id: ConnId, _msg: Message<'_>) {
        self.total += 1;
        let Some(peer) = ctx.conn(id) else { return };
        peer.count += 1;
        let reply = format!("{}:{}", peer.name, peer.count);
        let _ = ctx.send_text(id, &reply);
    }

    fn close(&mut self, ctx: &mut Ctx<'_, Peer>, id: ConnId, _info: CloseInfo) {
        let peer = ctx.conn(id).expect("state until close returns");
        let _ = self
            .events
            .send(AppEv::Closed(std::mem::take(&mut peer.name), peer.count));
    }
}

fn app() -> (App, mpsc::Receiver<AppEv>) {
    let (tx, rx) = mpsc::channel();
    (
        App {
            events: tx,
            total: 0,
        },
        rx,
    )
}

fn next(rx: &mpsc::Receiver<AppEv>) -> AppEv {
    rx.recv_timeout(TIMEOUT).expect("no event from the handler")
}

/// An upgrade request for `path` written on a new connection (the
/// response is not read).
fn send_request(
    addr: std::net::SocketAddr,
    path: &str,
    after: &[u8],
) -> (TcpStream, wsmio::proto::handshake::ClientHandshake) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut key = *b"api test key....";
    key[12..].copy_from_slice(&n.to_be_bytes());
    let hs = wsmio::proto::handshake::ClientHandshake::new(key, &[]);
    let mut req = hs.request(&addr.to_string(), path, &[]);
    req.extend_from_slice(after);
    let mut s = tcp(addr);
    s.write_all(&req).unwrap();
    (s, hs)
}

/// Nothing arrives on `s` for a moment.
fn silent(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{r:?} before the answer"
    );
}

/// Run `f` on the loop and return its result.
fn on_loop<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&mut Ctx<'_>) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(f(ctx));
        })
        .unwrap();
    rx.recv_timeout(TIMEOUT)
        .expect("the loop did not run the call")
}

#[test]
fn a_deferred_upgrade_is_answered_from_another_thread() {
    let (app, events) = app();
    let (addr, handle, join) = start(app, config());

    // Frames sent before the answer (a client should wait, RFC 6455 §4.1)
    // are kept and run once the upgrade is accepted.
    let early = masked(0x81, b"early");
    let (mut s, hs) = send_request(addr, "/defer", &early);
    let AppEv::Deferred(id) = next(&events) else {
        panic!("not deferred")
    };
    silent(&mut s);
    let h = handle.clone();
    std::thread::spawn(move || h.answer_upgrade(id, Upgrade::accept().with_header("X-Auth", "ok")))
        .join()
        .unwrap()
        .unwrap();
    let mut c = Client::handshake(s, &[], &hs, 0).expect("accepted");
    assert!(has_header(&c.response, "X-Auth", "ok"));
    assert_eq!(c.expect_text(), ":1");
    c.send_text("again");
    assert_eq!(c.expect_text(), ":2");
    // A second answer, or one to a connection that never deferred, is
    // refused.
    assert!(!on_loop(&handle, move |ctx| ctx.accept_upgrade(id)));

    // Refused later, with 451 and its phrase (RFC 7725).
    let (mut s, _hs) = send_request(addr, "/defer", b"");
    let AppEv::Deferred(id2) = next(&events) else {
        panic!("not deferred")
    };
    assert!(on_loop(&handle, move |ctx| ctx.reject_upgrade(id2, 451, "not here")));
    let resp = String::from_utf8(read_to_eof(&mut s, TIMEOUT)).unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 451 Unavailable For Legal Reasons"
    );
    assert!(resp.ends_with("\r\n\r\nnot here\n"), "{resp:?}");

    c.close(1000, "");
    c.expect_close_then_eof(1000);
    assert_eq!(next(&events), AppEv::Closed(String::new(), 2));
    stop(&handle, join);
}

#[test]
fn an_unanswered_upgrade_gets_503_at_the_handshake_deadline() {
    let (app, events) = app();
    let (cfg, clock) = clocked_config();
    let (addr, handle, join) = start(app, cfg.with_handshake_timeout(Duration::from_secs(5)));
    let (mut s, _hs) = send_request(addr, "/defer", b"");
    let AppEv::Deferred(id) = next(&events) else {
        panic!("not deferred")
    };
    step(&clock, 4_999);
    silent(&mut s);
    step(&clock, 1);
    let resp = String::from_utf8(read_to_eof(&mut s, TIMEOUT)).unwrap();
    assert_eq!(status_line(&resp), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(next(&events), AppEv::Rejected(503));
    // Too late now.
    assert!(!on_loop(&handle, move |ctx| ctx.accept_upgrade(id)));
    drop(s);
    stop(&handle, join);
}

#[test]
fn a_client_that_leaves_while_deferred_is_gone() {
    let (app, events) = app();
    let (addr, handle, join) = start(app, config());
    let (s, _hs) = send_request(addr, "/defer", b"");
    let AppEv::Deferred(id) = next(&events) else {
        panic!("not deferred")
    };
    assert_eq!(on_loop(&handle, |ctx| ctx.connections()), 1);
    drop(s);
    let t0 = Instant::now();
    while on_loop(&handle, |ctx| ctx.connections()) != 0 {
        assert!(t0.elapsed() < TIMEOUT, "the connection stayed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!on_loop(&handle, move |ctx| ctx.accept_upgrade(id)));
    stop(&handle, join);
}

#[test]
fn each_connection_has_its_own_state_until_close() {
    let (app, events) = app();
    let (addr, handle, join) = start(app, config());
    // `+` is a space and `%C3%B6` an ö (WHATWG form decoding).
    let (s, hs) = send_request(addr, "/?name=J%C3%B6rg+M%2B", b"");
    let mut a = Client::handshake(s, &[], &hs, 0).expect("upgrade");
    let (s, hs) = send_request(addr, "/?name=ann", b"");
    let mut b = Client::handshake(s, &[], &hs, 0).expect("upgrade");
    a.send_text("1");
    assert_eq!(a.expect_text(), "Jörg M+:1");
    b.send_text("1");
    assert_eq!(b.expect_text(), "ann:1");
    a.send_text("2");
    assert_eq!(a.expect_text(), "Jörg M+:2");

    // The handler and the state from another thread.
    let (tx, rx) = mpsc::channel();
    handle
        .call_handler(move |app: &mut App, ctx: &mut Ctx<'_, Peer>| {
            let names: Vec<String> = ctx
                .open_ids()
                .collect::<Vec<_>>()
                .into_iter()
                .filter_map(|id| ctx.conn(id).map(|p| p.name.clone()))
                .collect();
            let _ = tx.send((app.total, names));
        })
        .unwrap();
    let (total, mut names) = rx.recv_timeout(TIMEOUT).unwrap();
    names.sort();
    assert_eq!(
        (total, names),
        (3, vec!["Jörg M+".to_string(), "ann".into()])
    );
    // `Handle::call` has no typed state, and another handler type is refused.
    assert!(on_loop(&handle, |ctx| {
        let ids: Vec<ConnId> = ctx.open_ids().collect();
        ids.into_iter().all(|id| ctx.conn(id).is_none())
    }));
    struct Other;
    impl Handler for Other {
        type Conn = ();
        fn message(&mut self, _: &mut Ctx<'_>, _: ConnId, _: Message<'_>) {}
    }
    assert_eq!(
        handle.call_handler(|_: &mut Other, _| {}),
        Err(HandleError::WrongHandler)
    );

    // The state is dropped with the connection: the next one in the same
    // slot starts from `Default`.
    a.close(1000, "");
    a.expect_close_then_eof(1000);
    assert_eq!(next(&events), AppEv::Closed("Jörg M+".into(), 2));
    let (s, hs) = send_request(addr, "/", b"");
    let mut c = Client::handshake(s, &[], &hs, 0).expect("upgrade");
    c.send_text("x");
    assert_eq!(c.expect_text(), ":1");
    drop((b, c));
    stop(&handle, join);
}

#[test]
fn reason_phrases_are_standard_or_set_and_never_break_the_head() {
    let (app, events) = app();
    let (addr, handle, join) = start(app, config());
    let (mut s, _hs) = send_request(addr, "/legal", b"");
    let resp = String::from_utf8(read_to_eof(&mut s, TIMEOUT)).unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 451 Unavailable For Legal Reasons"
    );
    let host = format!("Host: {addr}\r\n");
    let resp = http_exchange(
        addr,
        format!("GET /plain HTTP/1.1\r\n{host}\r\n").as_bytes(),
    );
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 451 Unavailable For Legal Reasons"
    );
    // CR and LF in a phrase go out as spaces: no header can be smuggled.
    let resp = http_exchange(
        addr,
        format!("GET /phrase HTTP/1.1\r\n{host}\r\n").as_bytes(),
    );
    assert_eq!(status_line(&resp), "HTTP/1.1 599 Custom  X-Evil: 1");
    assert!(!has_header(&resp, "X-Evil", "1"));
    drop(events);
    stop(&handle, join);
}
