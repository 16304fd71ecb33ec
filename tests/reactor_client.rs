//! The loop's client (`Ctx::connect`) over real sockets on 127.0.0.1:
//! against the project's own server (echo both ways, shared frames masked,
//! ping, the close handshake from either side, permessage-deflate), against
//! a hand-written server for fragments and every refused or broken
//! handshake, timeouts, a host name resolved off the loop, 1,000 clients
//! from one loop, a client and a server on the same loop, `wss://`
//! through a private root store with the name checked, a reconnect from
//! the last callback of a connection (its state kept), and the chosen
//! subprotocol.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wsmio::proto::handshake::{accept_key, find_head_end, parse_request, HeadLimits};
use wsmio::{
    ClientOptions, ClientRequest, CloseCode, CloseInfo, ConnId, ConnectError, Ctx, Frame, Handle,
    Handler, Message, Server, Upgrade,
};

const T: Duration = Duration::from_secs(5);

/// What the client handler saw.
#[derive(Debug)]
enum Ev {
    Open(ConnId),
    Text(ConnId, String),
    Binary(ConnId, Vec<u8>),
    Pong(ConnId, Vec<u8>),
    Close(ConnId, CloseInfo),
    Failed(ConnId, ConnectError),
}

/// Reports every event of its client connections.
struct Client {
    events: mpsc::Sender<Ev>,
}

impl Handler for Client {
    type Conn = ();
    fn open(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(Ev::Open(id));
    }
    fn message(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let ev = match msg {
            Message::Text(t) => Ev::Text(id, t.to_string()),
            Message::Binary(b) => Ev::Binary(id, b.to_vec()),
        };
        let _ = self.events.send(ev);
    }
    fn pong(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, payload: &[u8]) {
        let _ = self.events.send(Ev::Pong(id, payload.to_vec()));
    }
    fn close(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = self.events.send(Ev::Close(id, info));
    }
    fn connect_failed(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, e: ConnectError) {
        let _ = self.events.send(Ev::Failed(id, e));
    }
}

/// A client loop (no listener) on its own thread.
fn client_loop() -> (Handle, JoinHandle<Client>, Receiver<Ev>) {
    client_loop_with(common::config())
}

fn client_loop_with(config: wsmio::Config) -> (Handle, JoinHandle<Client>, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::new(config).expect("loop");
    let handle = server.handle();
    let join = thread::spawn(move || server.run(Client { events: tx }).expect("run"));
    (handle, join, rx)
}

/// `Ctx::connect` on the loop of `handle`.
fn connect(handle: &Handle, req: ClientRequest) -> Result<ConnId, ConnectError> {
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(ctx.connect(req));
        })
        .unwrap();
    rx.recv_timeout(T).expect("the loop ran the call")
}

fn request(url: &str, options: ClientOptions) -> ClientRequest {
    ClientRequest::new(url).unwrap().with_options(options)
}

fn next(rx: &Receiver<Ev>) -> Ev {
    rx.recv_timeout(T).expect("an event in time")
}

fn opened(rx: &Receiver<Ev>, id: ConnId) {
    match next(rx) {
        Ev::Open(i) if i == id => {}
        other => panic!("expected open, got {other:?}"),
    }
}

fn failure(rx: &Receiver<Ev>, id: ConnId) -> ConnectError {
    match next(rx) {
        Ev::Failed(i, e) if i == id => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn echo_server(config: wsmio::Config) -> (SocketAddr, Handle, JoinHandle<common::Echo>) {
    let (h, _rx) = common::Echo::new();
    common::start(h, config)
}

#[test]
fn echo_both_kinds_shared_frames_ping_and_our_close() {
    let (addr, server, sjoin) = echo_server(common::config());
    let (handle, join, rx) = client_loop();
    let id = connect(
        &handle,
        request(&format!("ws://{addr}/x?y=1"), ClientOptions::default()),
    )
    .unwrap();
    opened(&rx, id);
    let big = vec![7u8; 200_000];
    let b = big.clone();
    handle
        .call(move |ctx| {
            assert_eq!(ctx.send_text(id, "hello"), wsmio::SendStatus::Sent);
            let _ = ctx.send_binary(id, &b);
            // A shared (server-encoded) frame is re-framed masked.
            let batch = Frame::batch(&[Frame::text("shared"), Frame::binary(&[1; 300])]);
            let _ = ctx.send_frame(id, &batch);
            ctx.ping(id, b"p").unwrap();
        })
        .unwrap();
    assert!(matches!(next(&rx), Ev::Text(i, t) if i == id && t == "hello"));
    assert!(matches!(next(&rx), Ev::Binary(i, v) if i == id && v == big));
    assert!(matches!(next(&rx), Ev::Text(_, t) if t == "shared"));
    assert!(matches!(next(&rx), Ev::Binary(_, v) if v == [1; 300]));
    assert!(matches!(next(&rx), Ev::Pong(i, p) if i == id && p == b"p"));
    handle
        .call(move |ctx| ctx.close(id, CloseCode::NORMAL, "bye"))
        .unwrap();
    match next(&rx) {
        Ev::Close(i, info) => {
            assert_eq!(i, id);
            assert_eq!(info.code, CloseCode::NORMAL);
            assert!(info.clean && !info.by_peer, "{info:?}");
        }
        other => panic!("{other:?}"),
    }
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

#[test]
fn the_servers_close_is_reported_clean() {
    let (addr, server, sjoin) = echo_server(common::config());
    let (handle, join, rx) = client_loop();
    let id = connect(
        &handle,
        request(&format!("ws://{addr}/"), ClientOptions::default()),
    )
    .unwrap();
    opened(&rx, id);
    common::stop(&server, sjoin);
    match next(&rx) {
        Ev::Close(_, info) => {
            assert_eq!(info.code, CloseCode::GOING_AWAY);
            assert!(info.clean && info.by_peer, "{info:?}");
        }
        other => panic!("{other:?}"),
    }
    common::stop(&handle, join);
}

#[cfg(feature = "deflate")]
#[test]
fn permessage_deflate_is_negotiated_and_used_both_ways() {
    use wsmio::proto::extension::DeflateConfig;
    use wsmio::reactor::DeflateSettings;
    let config = common::config().with_deflate(DeflateSettings::default());
    let (addr, server, sjoin) = echo_server(config);
    let (handle, join, rx) = client_loop();
    let o = ClientOptions::default().with_deflate(DeflateConfig::default());
    let id = connect(&handle, request(&format!("ws://{addr}/"), o)).unwrap();
    opened(&rx, id);
    let text = "a compressible message, ".repeat(200);
    let t = text.clone();
    handle
        .call(move |ctx| {
            let _ = ctx.send_text(id, &t);
            let _ = ctx.send_text(id, &t);
        })
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(next(&rx), Ev::Text(_, got) if got == text));
    }
    // The server compressed its echoes: the extension was agreed.
    let (tx, srx) = mpsc::channel();
    server
        .call(move |ctx| {
            let _ = tx.send(ctx.stats().sent_compressed);
        })
        .unwrap();
    assert_eq!(srx.recv_timeout(T).unwrap(), 2);
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

/// Refuses with 403 and a body, or accepts with a subprotocol.
struct Picky;

impl Handler for Picky {
    type Conn = ();
    fn upgrade(&mut self, _: &mut Ctx<'_>, _: ConnId, req: &wsmio::HttpRequest) -> Upgrade {
        if req.header("authorization") != Some("Bearer ok") {
            return Upgrade::reject(403, "no entry without a token");
        }
        match req.protocols().any(|p| p == "chat") {
            true => Upgrade::accept_protocol("chat"),
            false => Upgrade::accept(),
        }
    }
    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = ctx.send(id, msg);
    }
}

#[test]
fn a_refusal_reports_status_headers_and_body_and_headers_go_out() {
    let (addr, server, sjoin) = common::start(Picky, common::config());
    let (handle, join, rx) = client_loop();
    let url = format!("ws://{addr}/");
    let id = connect(&handle, request(&url, ClientOptions::default())).unwrap();
    match failure(&rx, id) {
        ConnectError::Refused {
            status,
            headers,
            body,
        } => {
            assert_eq!(status, 403);
            assert_eq!(body, "no entry without a token\n");
            assert!(headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
        }
        e => panic!("{e:?}"),
    }
    let o = ClientOptions::default()
        .with_header("Authorization", "Bearer ok")
        .with_protocols(&["chat"])
        .with_origin("https://example.com");
    let id = connect(&handle, request(&url, o)).unwrap();
    opened(&rx, id);
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

/// A hand-written server: reads one request head and answers it with what
/// `answer` makes of the request's key (`None`: never answer), then sends
/// `after` and holds the socket open for a while.
fn raw_server(
    answer: impl Fn(&str) -> Option<String> + Send + 'static,
    after: Vec<u8>,
) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            let n = s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return; // the client left before its request was complete
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find_head_end(&buf, 0) {
                break end;
            }
        };
        let req = parse_request(&buf[..end], &HeadLimits::default()).unwrap();
        let key = req
            .header("sec-websocket-key")
            .unwrap_or_default()
            .to_string();
        if let Some(resp) = answer(&key) {
            s.write_all(resp.as_bytes()).unwrap();
            s.write_all(&after).unwrap();
        }
        let _ = s.read(&mut chunk); // until the client leaves, or T
    });
    (addr, t)
}

fn switching(key: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_key(key)
    )
}

/// Connect a fresh client loop to a raw server; the first event.
fn against(answer: impl Fn(&str) -> Option<String> + Send + 'static, after: Vec<u8>) -> Ev {
    let (addr, t) = raw_server(answer, after);
    let (handle, join, rx) = client_loop();
    let o = ClientOptions::default()
        .with_protocols(&["a"])
        .with_handshake_timeout(Duration::from_millis(300));
    let _ = connect(&handle, request(&format!("ws://{addr}/"), o)).unwrap();
    let ev = next(&rx);
    let ev = match ev {
        Ev::Open(_) => next(&rx), // what came with the response
        ev => ev,
    };
    common::stop(&handle, join);
    t.join().unwrap();
    ev
}

#[test]
fn fragments_that_came_with_the_101_are_reassembled() {
    // "hel" + "lo" as a text message in two frames, unmasked (§5.4).
    let frames = [&[0x01, 3][..], b"hel", &[0x80, 2], b"lo"].concat();
    let ev = against(|k| Some(switching(k, "")), frames);
    assert!(matches!(ev, Ev::Text(_, ref t) if t == "hello"), "{ev:?}");
}

/// What a raw server answers to a request's key.
type Answer = Box<dyn Fn(&str) -> Option<String> + Send>;

#[test]
fn every_broken_or_refused_handshake_reports_why() {
    let cases: Vec<(&str, Answer)> = vec![
        (
            "404",
            Box::new(|_| Some("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".into())),
        ),
        (
            "200",
            Box::new(|_| Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".into())),
        ),
        ("accept", Box::new(|_| Some(switching("not the key", "")))),
        (
            "protocol",
            Box::new(|k| Some(switching(k, "Sec-WebSocket-Protocol: b\r\n"))),
        ),
        ("silent", Box::new(|_| None)),
    ];
    for (name, answer) in cases {
        let e = match against(answer, Vec::new()) {
            Ev::Failed(_, e) => e,
            other => panic!("{name}: {other:?}"),
        };
        match (name, &e) {
            (
                "404",
                ConnectError::Refused {
                    status: 404, body, ..
                },
            ) => assert_eq!(body, "nope"),
            (
                "200",
                ConnectError::Refused {
                    status: 200, body, ..
                },
            ) => assert_eq!(body, "hi"),
            ("accept" | "protocol", ConnectError::Handshake(_)) => {}
            ("silent", ConnectError::Timeout) => {}
            _ => panic!("{name}: {e:?}"),
        }
    }
}

#[test]
fn nobody_listening_and_a_full_backlog_fail_in_time() {
    let (handle, join, rx) = client_loop();
    // A port nobody listens on: refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = connect(
        &handle,
        request(&format!("ws://127.0.0.1:{port}/"), ClientOptions::default()),
    )
    .unwrap();
    assert!(matches!(failure(&rx, id), ConnectError::Connect(_)));
    // A listener that never accepts, its accept queue full: SYNs are
    // dropped, so the connect hangs until the connect timeout.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    set_backlog(&l, 0);
    let mut fill = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled");
    let o = ClientOptions::default().with_connect_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let id = connect(&handle, request(&format!("ws://{addr}/"), o)).unwrap();
    match failure(&rx, id) {
        ConnectError::Connect(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    common::stop(&handle, join);
}

fn set_backlog(l: &TcpListener, n: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the listener's, open for the call.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), n) }, 0);
}

#[test]
fn a_host_name_is_resolved_off_the_loop() {
    let (addr, server, sjoin) = echo_server(common::config());
    let (handle, join, rx) = client_loop();
    let url = format!("ws://localhost:{}/", addr.port());
    let id = connect(&handle, request(&url, ClientOptions::default())).unwrap();
    match next(&rx) {
        // `localhost` may resolve to ::1 first: refused there, then 127.0.0.1.
        Ev::Open(i) => assert_eq!(i, id),
        other => panic!("{other:?}"),
    }
    handle
        .call(move |ctx| {
            let _ = ctx.send_text(id, "by name");
        })
        .unwrap();
    assert!(matches!(next(&rx), Ev::Text(_, t) if t == "by name"));
    let id = connect(
        &handle,
        request("ws://no-such-host.invalid/", ClientOptions::default()),
    )
    .unwrap();
    assert!(matches!(failure(&rx, id), ConnectError::Resolve(_)));
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

/// Opens `n` connections, sends one message on each, counts the echoes.
struct Many {
    url: String,
    n: usize,
    echoed: usize,
    failed: usize,
    done: mpsc::Sender<(usize, usize)>,
}

impl Handler for Many {
    type Conn = ();
    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        for _ in 0..self.n {
            let req = ClientRequest::new(&self.url).unwrap();
            ctx.connect(req).unwrap();
        }
    }
    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = ctx.send_text(id, &format!("hello from {id}"));
    }
    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        assert_eq!(msg, Message::Text(&format!("hello from {id}")));
        self.echoed += 1;
        self.report(ctx);
    }
    fn connect_failed(&mut self, ctx: &mut Ctx<'_>, _: ConnId, e: ConnectError) {
        eprintln!("{e}");
        self.failed += 1;
        self.report(ctx);
    }
}

impl Many {
    fn report(&mut self, _ctx: &mut Ctx<'_>) {
        if self.echoed + self.failed == self.n {
            let _ = self.done.send((self.echoed, self.failed));
        }
    }
}

#[test]
fn a_thousand_clients_from_one_loop() {
    const N: usize = 1000;
    let (addr, server, sjoin) = echo_server(common::config());
    let (tx, rx) = mpsc::channel();
    let many = Many {
        url: format!("ws://{addr}/"),
        n: N,
        echoed: 0,
        failed: 0,
        done: tx,
    };
    let lp = Server::new(common::config()).unwrap();
    let handle = lp.handle();
    let join = thread::spawn(move || lp.run(many).unwrap());
    let started = Instant::now();
    handle.wake().unwrap();
    let (echoed, failed) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("all in 30 s");
    assert_eq!((echoed, failed), (N, 0));
    eprintln!(
        "{N} clients connected and echoed in {:?}",
        started.elapsed()
    );
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

/// A server and its own client on one loop: the server echoes, the client
/// reports what came back.
struct Both {
    clients: Vec<ConnId>,
    events: mpsc::Sender<String>,
}

impl Handler for Both {
    type Conn = ();
    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        if self.clients.contains(&id) {
            let _ = ctx.send_text(id, "to myself");
        }
    }
    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        if self.clients.contains(&id) {
            let _ = self.events.send(format!("{msg:?}"));
        } else {
            let _ = ctx.send(id, msg);
        }
    }
}

#[test]
fn a_client_and_a_server_on_the_same_loop() {
    let (tx, rx) = mpsc::channel();
    let lp = Server::bind("127.0.0.1:0".parse().unwrap(), common::config()).unwrap();
    let url = format!("ws://{}/", lp.local_addr());
    let handle = lp.handle();
    let join = thread::spawn(move || {
        lp.run(Both {
            clients: Vec::new(),
            events: tx,
        })
        .unwrap()
    });
    handle
        .call_handler(move |both: &mut Both, ctx| {
            let id = ctx.connect(ClientRequest::new(&url).unwrap()).unwrap();
            both.clients.push(id);
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(T).unwrap(), "Text(\"to myself\")");
    common::stop(&handle, join);
}

#[cfg(feature = "tls")]
#[test]
fn wss_through_a_private_root_store_with_the_name_checked() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::RootCertStore;
    use wsmio::reactor::tls_client::client_config;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let tls = wsmio::reactor::tls::server_config(vec![cert.clone()], key).unwrap();
    let (addr, server, sjoin) = echo_server(common::config().with_tls(tls));
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let o = ClientOptions::default().with_tls(client_config(roots).unwrap());
    let (handle, join, rx) = client_loop();
    // The URL names `localhost` (SNI, certificate check); dial 127.0.0.1.
    let url = format!("wss://localhost:{}/", addr.port());
    let req = request(&url, o.clone()).with_addr(addr);
    let id = connect(&handle, req).unwrap();
    opened(&rx, id);
    let text = "over tls ".repeat(5000);
    let t = text.clone();
    handle
        .call(move |ctx| {
            let _ = ctx.send_text(id, &t);
        })
        .unwrap();
    assert!(matches!(next(&rx), Ev::Text(_, got) if got == text));
    // The same server under another name: the certificate does not match.
    let url = format!("wss://127.0.0.1:{}/", addr.port());
    let id = connect(&handle, request(&url, o)).unwrap();
    assert!(matches!(
        failure(&rx, id),
        ConnectError::Tls(_) | ConnectError::Handshake(_)
    ));
    // A root store that does not know the certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut wrong = RootCertStore::empty();
    wrong.add(other.cert.der().clone()).unwrap();
    let o = ClientOptions::default().with_tls(client_config(wrong).unwrap());
    let url = format!("wss://localhost:{}/", addr.port());
    let id = connect(&handle, request(&url, o).with_addr(addr)).unwrap();
    assert!(matches!(
        failure(&rx, id),
        ConnectError::Tls(_) | ConnectError::Handshake(_)
    ));
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

#[cfg(not(feature = "tls"))]
#[test]
fn wss_without_the_tls_feature_is_a_typed_error() {
    let (handle, join, _rx) = client_loop();
    let r = connect(
        &handle,
        request("wss://localhost/", ClientOptions::default()),
    );
    assert!(matches!(r, Err(ConnectError::Tls(_))), "{r:?}");
    common::stop(&handle, join);
}

#[test]
fn closing_before_the_handshake_completes_is_reported_as_aborted() {
    let (addr, t) = raw_server(|_| None, Vec::new());
    let (handle, join, rx) = client_loop();
    let id = connect(
        &handle,
        request(&format!("ws://{addr}/"), ClientOptions::default()),
    )
    .unwrap();
    handle
        .call(move |ctx| ctx.close(id, CloseCode::NORMAL, "never mind"))
        .unwrap();
    assert!(matches!(failure(&rx, id), ConnectError::Aborted));
    common::stop(&handle, join);
    t.join().unwrap();
}

#[test]
fn a_handle_on_another_thread_sends_to_a_client_connection() {
    let (addr, server, sjoin) = echo_server(common::config());
    let (handle, join, rx) = client_loop();
    let id = connect(
        &handle,
        request(&format!("ws://{addr}/"), ClientOptions::default()),
    )
    .unwrap();
    opened(&rx, id);
    // `Handle::send` takes a shared frame: masked on its way out.
    handle.send(id, Frame::text("from afar")).unwrap();
    assert!(matches!(next(&rx), Ev::Text(_, t) if t == "from afar"));
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

#[test]
fn an_idle_client_connection_sends_the_heartbeat_ping() {
    let (addr, server, sjoin) = echo_server(common::config());
    let config = common::config().with_idle_timeout(Some(Duration::from_millis(100)));
    let (handle, join, rx) = client_loop_with(config);
    let id = connect(
        &handle,
        request(&format!("ws://{addr}/"), ClientOptions::default()),
    )
    .unwrap();
    opened(&rx, id);
    // The loop's heartbeat ping (masked, empty) is answered by the server.
    assert!(matches!(next(&rx), Ev::Pong(i, p) if i == id && p.is_empty()));
    common::stop(&handle, join);
    common::stop(&server, sjoin);
}

/// Reconnects from its `connect_failed` and `close` callbacks (the usual
/// way to retry), and reports at every open whether the new connection's
/// state (`Handler::Conn`) is there.
struct Redialer {
    url: String,
    events: mpsc::Sender<(ConnId, Option<String>)>,
    redials: u32,
}

impl Handler for Redialer {
    type Conn = String;
    fn open(&mut self, ctx: &mut Ctx<'_, String>, id: ConnId) {
        let state = ctx.conn(id).map(|s| s.clone());
        let _ = self.events.send((id, state));
        if self.redials == 1 {
            // The first redial opened: close it, and dial again from
            // `close`.
            ctx.close(id, CloseCode::NORMAL, "");
        }
    }
    fn message(&mut self, _ctx: &mut Ctx<'_, String>, _id: ConnId, _msg: Message<'_>) {}
    fn close(&mut self, ctx: &mut Ctx<'_, String>, _id: ConnId, _info: CloseInfo) {
        self.redial(ctx);
    }
    fn connect_failed(&mut self, ctx: &mut Ctx<'_, String>, _id: ConnId, _e: ConnectError) {
        self.redial(ctx);
    }
}

impl Redialer {
    fn redial(&mut self, ctx: &mut Ctx<'_, String>) {
        if self.redials >= 2 {
            return;
        }
        self.redials += 1;
        let req = ClientRequest::new(&self.url).unwrap();
        let id = ctx.connect(req).expect("connect");
        *ctx.conn(id).expect("a fresh connection has its state") =
            format!("redial {}", self.redials);
    }
}

#[test]
fn a_connection_made_from_the_last_callback_of_another_keeps_its_state() {
    let (addr, server, server_join) = echo_server(common::config());
    let (tx, rx) = mpsc::channel();
    let handler = Redialer {
        url: format!("ws://{addr}/"),
        events: tx,
        redials: 0,
    };
    let lp = Server::new(common::config()).expect("loop");
    let handle = lp.handle();
    let join = thread::spawn(move || lp.run(handler).expect("run"));
    // Nobody listens here: `connect_failed` dials the echo server, into
    // the slot the failed connection just left.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ctx_tx, ctx_rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = ctx_tx
                .send(ctx.connect(ClientRequest::new(&format!("ws://127.0.0.1:{port}/")).unwrap()));
        })
        .unwrap();
    ctx_rx.recv_timeout(T).unwrap().expect("dialing");
    let (_, first) = rx
        .recv_timeout(T)
        .expect("the redial from connect_failed opened");
    assert_eq!(first.as_deref(), Some("redial 1"));
    // It is closed, and `close` dials again (the same slot once more).
    let (_, second) = rx.recv_timeout(T).expect("the redial from close opened");
    assert_eq!(second.as_deref(), Some("redial 2"));
    handle.shutdown().unwrap();
    join.join().unwrap();
    common::stop(&server, server_join);
}

/// Reports the subprotocol `Ctx::protocol` gives at `open`.
struct ProtocolAtOpen(mpsc::Sender<Option<String>>);

impl Handler for ProtocolAtOpen {
    type Conn = ();
    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.0.send(ctx.protocol(id).map(str::to_string));
    }
    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}
}

#[test]
fn the_subprotocol_the_server_chose_is_known_from_open() {
    for (answer, want) in [("Sec-WebSocket-Protocol: b\r\n", Some("b")), ("", None)] {
        let (addr, t) = raw_server(move |k| Some(switching(k, answer)), Vec::new());
        let (tx, rx) = mpsc::channel();
        let lp = Server::new(common::config()).expect("loop");
        let handle = lp.handle();
        let join = thread::spawn(move || lp.run(ProtocolAtOpen(tx)).expect("run"));
        let o = ClientOptions::default().with_protocols(&["a", "b"]);
        let req = request(&format!("ws://{addr}/"), o);
        handle
            .call(move |ctx| {
                ctx.connect(req).expect("dialing");
            })
            .unwrap();
        let got = rx.recv_timeout(T).expect("opened");
        assert_eq!(got.as_deref(), want);
        handle.shutdown().unwrap();
        join.join().unwrap();
        t.join().unwrap();
    }
}
