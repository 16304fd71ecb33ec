//! The blocking client (`reactor::BlockingClient`) against the project's
//! echo server over real sockets: messages both ways, ping and pong, the
//! close handshake, `wss://` with a private CA, every kind of refused or
//! failed handshake reported with its cause, and a handshake timeout.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use wsmio::reactor::{BlockingClient, ClientOptions, ConnectError, Incoming, SendError};
use wsmio::{ConnId, Ctx, Handler, HttpRequest, Message, Upgrade};

const T: Option<Duration> = Some(Duration::from_secs(5));

fn echo() -> (
    std::net::SocketAddr,
    wsmio::Handle,
    std::thread::JoinHandle<common::Echo>,
) {
    let (h, _rx) = common::Echo::new();
    common::start(h, common::config())
}

#[test]
fn echo_round_trips_ping_and_a_clean_close() {
    let (addr, handle, join) = echo();
    let url = format!("ws://{addr}/any/path?x=1");
    let mut ws = BlockingClient::connect(&url, &ClientOptions::default()).expect("connect");
    assert_eq!(ws.peer_addr().unwrap(), addr);
    ws.send_text("hello").unwrap();
    assert_eq!(ws.recv(T), Some(Incoming::Text("hello".into())));
    let big = vec![7u8; 200_000];
    ws.send_binary(&big).unwrap();
    assert_eq!(ws.recv(T), Some(Incoming::Binary(big)));
    ws.ping(b"p").unwrap();
    assert_eq!(ws.recv(T), Some(Incoming::Pong(b"p".to_vec())));
    assert_eq!(
        ws.recv(Some(Duration::from_millis(50))),
        None,
        "nothing else"
    );
    ws.close(1000, "bye").unwrap();
    assert!(ws.is_closed());
    assert!(matches!(ws.send_text("late"), Err(SendError::Closed)));
    common::stop(&handle, join);
}

#[test]
fn a_server_close_is_reported_once() {
    let (addr, handle, join) = echo();
    let mut ws = BlockingClient::connect(&format!("ws://{addr}/"), &ClientOptions::default())
        .expect("connect");
    let _ = handle.shutdown();
    match ws.recv(T) {
        Some(Incoming::Closed { code, .. }) => assert_eq!(code, Some(1001)),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.recv(Some(Duration::from_millis(20))), None);
    let _ = join.join();
}

/// Refuses every upgrade with a status of its choosing.
struct Refuser;

impl Handler for Refuser {
    type Conn = ();

    fn upgrade(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> Upgrade {
        match req.path_only() {
            "/open" => Upgrade::accept(),
            "/teapot" => Upgrade::reject(403, "not for you"),
            _ => Upgrade::reject(404, "nothing here"),
        }
    }
    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}
}

#[test]
fn refused_and_failed_handshakes_say_why() {
    let (addr, handle, join) = common::start(Refuser, common::config());
    let o = ClientOptions::default();
    match BlockingClient::connect(&format!("ws://{addr}/teapot"), &o) {
        Err(ConnectError::Refused {
            status,
            headers,
            body,
        }) => {
            assert_eq!((status, body.as_str()), (403, "not for you\n"));
            assert!(headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        BlockingClient::connect(&format!("ws://{addr}/x"), &o),
        Err(ConnectError::Refused { status: 404, .. })
    ));
    assert!(BlockingClient::connect(&format!("ws://{addr}/open"), &o).is_ok());
    assert!(matches!(
        BlockingClient::connect("http://example.com/", &o),
        Err(ConnectError::Url(_))
    ));
    // A port nobody listens on.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(matches!(
        BlockingClient::connect(&format!("ws://{free}/"), &o),
        Err(ConnectError::Connect(_))
    ));
    let e = BlockingClient::connect("ws://no-such-host.invalid/", &o).unwrap_err();
    assert!(matches!(e, ConnectError::Resolve(_)), "{e}");
    common::stop(&handle, join);
}

#[test]
fn a_silent_server_times_the_handshake_out() {
    // Accepted by the kernel, never answered.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let o = ClientOptions::default().with_handshake_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let r = BlockingClient::connect(&format!("ws://{addr}/"), &o);
    assert!(matches!(r, Err(ConnectError::Timeout)), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    // A server that answers a 101 without the accept key.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b);
        use std::io::Write;
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    let r = BlockingClient::connect(&format!("ws://{addr}/"), &ClientOptions::default());
    assert!(matches!(r, Err(ConnectError::Handshake(_))), "{r:?}");
    t.join().unwrap();
}

#[cfg(feature = "tls")]
#[test]
fn wss_with_a_private_ca_and_a_wrong_one() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::RootCertStore;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = wsmio::reactor::tls::server_config(vec![cert.clone()], key).unwrap();
    let (h, _rx) = common::Echo::new();
    let (addr, handle, join) = common::start(h, common::config().with_tls(server));
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let o = ClientOptions::default()
        .with_tls(wsmio::reactor::tls_client::client_config(roots).unwrap());
    let url = format!("wss://localhost:{}/", addr.port());
    let mut ws = BlockingClient::connect(&url, &o).expect("wss connect");
    ws.send_text("over tls").unwrap();
    assert_eq!(ws.recv(T), Some(Incoming::Text("over tls".into())));
    ws.close(1000, "").unwrap();
    // The platform's roots do not know this certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut wrong = RootCertStore::empty();
    wrong.add(other.cert.der().clone()).unwrap();
    let o = ClientOptions::default()
        .with_tls(wsmio::reactor::tls_client::client_config(wrong).unwrap());
    let e = BlockingClient::connect(&url, &o).unwrap_err();
    assert!(matches!(e, ConnectError::Tls(_)), "{e}");
    common::stop(&handle, join);
}

/// A server that accepts TCP and never speaks TLS: the handshake timeout
/// holds through the TLS handshake too.
#[cfg(feature = "tls")]
#[test]
fn a_silent_server_times_the_tls_handshake_out() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}/", l.local_addr().unwrap().port());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let o = ClientOptions::default()
        .with_tls(wsmio::reactor::tls_client::client_config(roots).unwrap())
        .with_handshake_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let r = BlockingClient::connect(&url, &o);
    assert!(matches!(r, Err(ConnectError::Timeout)), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(l);
}
