//! The hub over TLS: a self-signed certificate made at test time, a rustls
//! client over a blocking `TcpStream`, the WebSocket handshake and frames
//! from the crate's own client-role pieces; wss:// pub/sub and https://
//! `/healthz`.

mod common;
mod hub_support;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_support::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};
use serde_json::{json, Value};
use wsmio::proto::handshake::{find_head_end, ClientHandshake, HeadLimits};
use wsmio::proto::{CloseCode, Message, OpCode, Receiver, Role, Sender};
use wsmio::pubsub::{Hub, HubConfig};
use wsmio::Server;

/// A fresh self-signed certificate for `localhost`: the server's config
/// (through `server_config`) and a client trusting only that certificate.
fn certs() -> (
    Arc<ServerConfig>,
    Arc<ClientConfig>,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = wsmio::reactor::tls::server_config(vec![cert.clone()], key).unwrap();
    (server, client_config(cert), ck)
}

fn client_config(cert: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(cfg)
}

fn serve_tls(hub: HubConfig, tls: Arc<ServerConfig>) -> Srv {
    let cfg = common::config().with_tls(tls);
    serve(hub, cfg)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).unwrap();
    StreamOwned::new(conn, common::tcp(addr))
}

/// What the wss client read.
#[derive(Debug)]
enum Got {
    Text(String),
    Close(Option<u16>, String),
    /// Anything else, described (shown when a test fails).
    Other(#[allow(dead_code)] String),
}

struct Collect<'a>(&'a mut VecDeque<Got>);

impl wsmio::proto::ReceiveHandler for Collect<'_> {
    fn on_message(&mut self, msg: Message<'_>) {
        self.0.push_back(match msg {
            Message::Text(t) => Got::Text(t.to_string()),
            Message::Binary(b) => Got::Other(format!("binary {b:?}")),
        });
    }
    fn on_ping(&mut self, payload: &[u8]) {
        self.0.push_back(Got::Other(format!("ping {payload:?}")));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.0
            .push_back(Got::Close(code.map(|c| c.0), reason.to_string()));
    }
}

/// A blocking WebSocket client over TLS (client role: masked frames).
struct Wss {
    s: Tls,
    rx: Receiver,
    tx: Sender,
    got: VecDeque<Got>,
}

impl Wss {
    fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str) -> Result<Wss, String> {
        let mut s = tls_connect(addr, cfg);
        let hs = ClientHandshake::new(*b"wsmio tls test!!", &[]);
        s.write_all(&hs.request("localhost", path, &[])).unwrap();
        s.flush().unwrap();
        let deadline = Instant::now() + common::TIMEOUT;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = find_head_end(&buf, 0) {
                break end;
            }
            assert!(Instant::now() < deadline, "no response head");
            match s.read(&mut chunk) {
                Ok(0) => return Err(String::from_utf8_lossy(&buf).into_owned()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("TLS handshake read: {e}"),
            }
        };
        if let Err(e) = hs.validate_response(&buf[..end], &HeadLimits::default()) {
            return Err(format!("{e}: {}", String::from_utf8_lossy(&buf)));
        }
        let mut w = Wss {
            s,
            rx: Receiver::new(Role::Client),
            tx: Sender::new(Role::Client),
            got: VecDeque::new(),
        };
        let mut rest = buf[end..].to_vec();
        w.feed(&mut rest);
        Ok(w)
    }

    fn feed(&mut self, bytes: &mut [u8]) {
        self.rx
            .receive(bytes, &Default::default(), &mut Collect(&mut self.got))
            .expect("server frames are valid");
    }

    fn send(&mut self, v: &Value) {
        let mut out = Vec::new();
        self.tx
            .encode_data(OpCode::Text, true, v.to_string().as_bytes(), &mut out)
            .unwrap();
        self.s.write_all(&out).unwrap();
        self.s.flush().unwrap();
    }

    fn next(&mut self) -> Got {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(g) = self.got.pop_front() {
                return g;
            }
            match self.s.read(&mut buf) {
                Ok(0) => panic!("EOF while waiting for a message"),
                Ok(n) => self.feed(&mut buf[..n]),
                Err(e) => panic!("wss read: {e}"),
            }
        }
    }

    fn recv(&mut self) -> Value {
        match self.next() {
            Got::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn expect(&mut self, typ: &str) -> Value {
        let v = self.recv();
        assert_eq!(v["type"], typ, "{v}");
        v
    }

    /// Close 1000 and wait for the server's reply and the TLS/TCP end.
    fn close(mut self) {
        let f = self.tx.close(Some(CloseCode(1000)), "").unwrap();
        self.s.write_all(f.as_bytes()).unwrap();
        self.s.flush().unwrap();
        match self.next() {
            Got::Close(code, _) => assert_eq!(code, Some(1000)),
            other => panic!("expected the close reply, got {other:?}"),
        }
        let mut rest = Vec::new();
        // The server ends TLS with close_notify, then FIN: a clean EOF.
        self.s.read_to_end(&mut rest).expect("clean TLS close");
    }
}

#[test]
fn pub_sub_over_wss() {
    let (server_tls, client_tls, _) = certs();
    let srv = serve_tls(hub_config_auth(), server_tls);
    let alice = token_all("alice");
    let bob = token_all("bob");
    let mut a = Wss::connect(srv.addr, &client_tls, &format!("/ws?token={alice}")).unwrap();
    let mut b = Wss::connect(srv.addr, &client_tls, &format!("/ws?token={bob}")).unwrap();
    let w = a.expect("welcome");
    assert_eq!(
        (&w["user"], &w["anonymous"]),
        (&json!("alice"), &json!(false))
    );
    let epoch = w["epoch"].as_str().unwrap().to_string();
    assert_eq!(a.expect("ack")["topic"], "@alice");
    b.expect("welcome");
    b.expect("ack");

    a.send(&json!({"op":"sub","topic":"secure","id":1}));
    let ack = a.expect("ack");
    assert_eq!((&ack["id"], &ack["topic"]), (&json!(1), &json!("secure")));
    a.expect("presence_diff");
    let data = json!({"text":"over TLS","big":"z".repeat(40_000)});
    b.send(&json!({"op":"pub","topic":"secure","data":data,"id":2}));
    let ack = b.expect("ack");
    assert_eq!((&ack["id"], &ack["seq"]), (&json!(2), &json!(1)));
    let m = a.expect("msg");
    check_msg(&m, "secure", 1, &epoch, "bob", &data);
    // A dm over TLS too.
    b.send(&json!({"op":"dm","to":"alice","data":"psst","id":3}));
    b.expect("ack");
    check_msg(&a.expect("msg"), "@alice", 1, &epoch, "bob", &json!("psst"));
    a.close();
    b.close();

    // The upgrade checks apply over TLS as well.
    let refused = Wss::connect(srv.addr, &client_tls, "/ws")
        .err()
        .expect("no token");
    assert!(refused.contains("HTTP/1.1 401"), "{refused}");
    srv.stop();
}

/// An anonymous wss client subscribed to `topic` (welcome, inbox ack, sub
/// ack and its own join event read).
fn subscribed(addr: SocketAddr, cfg: &Arc<ClientConfig>, topic: &str) -> Wss {
    let mut c = Wss::connect(addr, cfg, "/ws").unwrap();
    c.expect("welcome");
    c.expect("ack");
    c.send(&json!({"op":"sub","topic":topic,"id":1}));
    c.expect("ack");
    c.expect("presence_diff");
    c
}

/// Many TLS records waiting at once (40 pipelined publishes of ≈ 20 KiB,
/// ≈ 800 KiB of records written in one go): the server reads them as
/// whole buffers of plaintext across records, and every message arrives
/// intact and in order.
#[test]
fn pipelined_records_over_wss_arrive_whole_and_in_order() {
    let (server_tls, client_tls, _) = certs();
    let srv = serve_tls(hub_config(), server_tls);
    let mut a = subscribed(srv.addr, &client_tls, "bulk");
    let mut burst = Vec::new();
    for n in 0..40u32 {
        let data = json!({"n": n, "fill": format!("{n:>5}").repeat(4_000)});
        let req = json!({"op":"pub","topic":"bulk","data":data});
        a.tx.encode_data(OpCode::Text, true, req.to_string().as_bytes(), &mut burst)
            .unwrap();
    }
    a.s.write_all(&burst).unwrap();
    a.s.flush().unwrap();
    for n in 0..40u32 {
        let m = a.expect("msg");
        assert_eq!((&m["seq"], &m["data"]["n"]), (&json!(n + 1), &json!(n)));
        assert_eq!(m["data"]["fill"], format!("{n:>5}").repeat(4_000));
    }
    a.close();
    srv.stop();
}

/// A publish and a corrupt record in one TCP segment: rustls decrypts the
/// publish, then fails on the bad record. The publish was sent and must be
/// delivered before the connection is dropped for the bad record.
#[test]
fn a_message_before_a_corrupt_record_is_still_delivered() {
    let (server_tls, client_tls, _) = certs();
    let srv = serve_tls(hub_config(), server_tls);
    let mut a = subscribed(srv.addr, &client_tls, "last");
    let mut b = Wss::connect(srv.addr, &client_tls, "/ws").unwrap();
    b.expect("welcome");
    b.expect("ack");
    // The publish as TLS records, not yet on the wire.
    let mut frame = Vec::new();
    let req = json!({"op":"pub","topic":"last","data":"before the bad record"});
    b.tx.encode_data(OpCode::Text, true, req.to_string().as_bytes(), &mut frame)
        .unwrap();
    b.s.conn.writer().write_all(&frame).unwrap();
    let mut wire = Vec::new();
    while b.s.conn.wants_write() {
        b.s.conn.write_tls(&mut wire).unwrap();
    }
    // An application-data record whose AEAD tag cannot verify.
    wire.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
    wire.extend_from_slice(&[0x5a; 0x20]);
    b.s.sock.write_all(&wire).unwrap();
    let m = a.expect("msg");
    assert_eq!(m["data"], "before the bad record", "{m}");
    a.close();
    srv.stop();
}

/// `GET path` over TLS; the whole response, which must end cleanly.
fn https_get(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str) -> String {
    let mut s = tls_connect(addr, cfg);
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("response ends with close_notify and FIN");
    String::from_utf8(out).unwrap()
}

#[test]
fn https_healthz_and_metrics_with_a_pem_config() {
    // This time through the PEM loader (what `wsmio serve --tls-cert` uses).
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("wsmio-hub-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let server_tls = wsmio::reactor::tls::server_config_from_pem(&cert_path, &key_path).unwrap();
    // A bad path is an error, not a panic.
    assert!(wsmio::reactor::tls::server_config_from_pem(&dir.join("nope"), &key_path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
    let client_tls = client_config(ck.cert.der().clone());

    let srv = serve_tls(hub_config(), server_tls);
    let resp = https_get(srv.addr, &client_tls, "/healthz");
    assert_eq!(common::status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    assert_eq!(body(&resp), "ok\n");
    let resp = https_get(srv.addr, &client_tls, "/metrics");
    assert_eq!(common::status_line(&resp), "HTTP/1.1 200 OK");
    let m = parse_prometheus(body(&resp));
    assert_eq!(metric(&m, "wsmio_connections"), 0);

    // A client that does not trust the certificate fails the TLS handshake.
    let (_, stranger, _) = certs();
    let mut s = tls_connect(srv.addr, &stranger);
    let err = s
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .and_then(|_| s.flush())
        .and_then(|_| s.read(&mut [0u8; 64]).map(|_| ()))
        .expect_err("untrusted certificate");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer, and no hang.
    let mut plain = common::tcp(srv.addr);
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, _) = common::read_until_closed(&mut plain, Duration::from_secs(5));
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    srv.stop();
}

#[test]
fn tls_server_runs_directly_with_server_bind() {
    // The same as the helpers do, spelled out: Server::bind + run(Hub).
    let (server_tls, client_tls, _) = certs();
    let config = common::config().with_tls(server_tls);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let join = std::thread::spawn(move || server.run(Hub::new(hub_config())).unwrap());
    let mut c = Wss::connect(addr, &client_tls, "/ws").unwrap();
    c.expect("welcome");
    c.expect("ack");
    c.send(&json!({"op":"pub","topic":"x","data":1,"id":1}));
    c.expect("ack");
    handle.shutdown().unwrap();
    match c.next() {
        Got::Close(code, reason) => {
            assert_eq!(
                (code, reason.as_str()),
                (Some(1001), "server shutting down")
            )
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Our reply ends the close handshake; the server then ends TLS.
    let f = c.tx.close(Some(CloseCode(1001)), "").unwrap();
    c.s.write_all(f.as_bytes()).unwrap();
    c.s.flush().unwrap();
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).expect("clean TLS close");
    assert!(rest.is_empty());
    drop(c); // our FIN: the server has nothing left to wait for
    let hub = common::join_within(join, Duration::from_millis(500));
    assert_eq!(hub.metrics().publishes, 1);
}
