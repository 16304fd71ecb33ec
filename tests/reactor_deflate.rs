//! permessage-deflate through the reactor (RFC 7692), over real sockets on
//! 127.0.0.1: the negotiation at the upgrade (accepted, declined, a
//! malformed header refused with 400), compressed messages both ways,
//! streamed chunks of a compressed message, a shared frame compressed once
//! for a broadcast that reaches a deflate client and a plain one, and the
//! compression counters of `Ctx::stats`.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Instant;

use common::{config, http_exchange, start, status_line, stop, tcp, TIMEOUT};
use wsmio::proto::deflate::Compression;
use wsmio::proto::extension::DeflateConfig;
use wsmio::proto::handshake::{find_head_end, Agreement, ClientHandshake, HeadLimits};
use wsmio::proto::{Chunk, Connection, DeliveryMode, Event, Limits, Role};
use wsmio::reactor::{DeflateSettings, Stats};
use wsmio::{Config, ConnId, Ctx, Frame, Handler, Message};

/// Echoes, broadcasts what follows `broadcast:` (twice in one batch after
/// `batch:`), reports chunks.
struct Server {
    chunks: mpsc::Sender<(Vec<u8>, bool)>,
}

impl Handler for Server {
    type Conn = ();

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            if let Some(rest) = t.strip_prefix("broadcast:") {
                ctx.broadcast(&Frame::text(rest));
                return;
            }
            if let Some(rest) = t.strip_prefix("batch:") {
                let one = Frame::text(rest);
                let small = Frame::text("short");
                ctx.broadcast(&Frame::batch(&[one.clone(), small, one]));
                return;
            }
        }
        let _ = ctx.send(id, msg);
    }

    fn chunk(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, chunk: Chunk<'_>) {
        let _ = self.chunks.send((chunk.data.to_vec(), chunk.last));
    }
}

fn server(config: Config) -> (SocketAddr, wsmio::Handle, std::thread::JoinHandle<Server>) {
    let (chunks, _) = mpsc::channel();
    start(Server { chunks }, config)
}

fn deflate_config() -> Config {
    config().with_deflate(DeflateSettings::default())
}

/// JSON like the hub's deliveries, `n` times over: compresses well.
fn json(n: usize) -> String {
    r#"{"type":"msg","topic":"lobby","seq":17,"data":{"text":"hello there"}}"#.repeat(n)
}

/// A blocking client with permessage-deflate offered (`offer`) or not.
struct Peer {
    s: TcpStream,
    conn: Connection,
    response: String,
    agreed: Agreement,
    /// Messages decoded, not yet taken.
    pending: VecDeque<(Vec<u8>, bool)>,
}

impl Peer {
    fn connect(addr: SocketAddr, offer: Option<&str>) -> Result<Peer, String> {
        // What the answer is checked against: the offer's context takeover
        // (RFC 7692 §7.1.1.1), windows as the answer says.
        let hs = match offer {
            Some(v) => {
                let config = DeflateConfig {
                    incoming_context_takeover: !v.contains("server_no_context_takeover"),
                    ..DeflateConfig::default()
                };
                ClientHandshake::with_deflate([9; 16], &[], &config)
            }
            None => ClientHandshake::new([9; 16], &[]),
        };
        // A hand-written offer replaces the one the handshake would make.
        let mut req = ClientHandshake::new([9; 16], &[]).request(&addr.to_string(), "/", &[]);
        if let Some(value) = offer {
            let at = req.len() - 2;
            let header = format!("Sec-WebSocket-Extensions: {value}\r\n");
            req.splice(at..at, header.bytes());
        }
        let mut s = tcp(addr);
        s.write_all(&req).map_err(|e| e.to_string())?;
        let (head, mut rest) = read_head(&mut s);
        let response = String::from_utf8_lossy(&head).into_owned();
        let agreed = hs
            .validate(&head, &HeadLimits::default())
            .map_err(|_| response.clone())?;
        let conn = match agreed.deflate {
            Some(p) => {
                Connection::with_deflate(Role::Client, Limits::default(), p, Compression::default())
            }
            None => Connection::new(Role::Client, Limits::default()),
        };
        let mut peer = Peer {
            s,
            conn,
            response,
            agreed,
            pending: VecDeque::new(),
        };
        if !rest.is_empty() {
            let _ = peer.conn.receive(&mut rest, |_| {});
        }
        Ok(peer)
    }

    fn send(&mut self, msg: Message<'_>) {
        self.conn.send(msg).expect("send");
        self.s.write_all(self.conn.output()).expect("write");
        let n = self.conn.output().len();
        self.conn.consume_output(n);
    }

    /// The next message and whether its frame had RSV1 (compressed; known
    /// for the first message of a read only, later ones say `false`).
    fn recv(&mut self) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = vec![0u8; 1 << 16];
        while self.pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no message within {TIMEOUT:?}");
            self.s.set_read_timeout(Some(left)).unwrap();
            let n = match self.s.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("read: {e}"),
            };
            assert!(n > 0, "server closed");
            let rsv1 = buf[0] & 0x40 != 0;
            let pending = &mut self.pending;
            self.conn
                .receive(&mut buf[..n], |e| {
                    if let Event::Message(m) = e {
                        let first = pending.is_empty();
                        pending.push_back((m.as_bytes().to_vec(), first && rsv1));
                    }
                })
                .expect("valid frames");
        }
        self.pending.pop_front().unwrap_or_default()
    }
}

/// The response head (and any bytes after it).
fn read_head(s: &mut TcpStream) -> (Vec<u8>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&buf, 0) {
            let rest = buf.split_off(end);
            return (buf, rest);
        }
        let n = s.read(&mut chunk).expect("read head");
        assert!(
            n > 0,
            "closed before the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn stats(handle: &wsmio::Handle) -> Stats {
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(ctx.stats());
        })
        .unwrap();
    rx.recv_timeout(TIMEOUT).expect("stats")
}

#[test]
fn negotiation_accepted_declined_and_refused() {
    let (addr, handle, join) = server(deflate_config());
    // A browser's offer: accepted, no context takeover either way.
    let p = Peer::connect(addr, Some("permessage-deflate; client_max_window_bits")).unwrap();
    assert!(
        p.response.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ),
        "{}",
        p.response
    );
    assert!(p.agreed.deflate.is_some());
    // The first acceptable offer of several (RFC 7692 §5): an unknown
    // parameter declines the first.
    let p = Peer::connect(
        addr,
        Some("permessage-deflate; foo, permessage-deflate; server_max_window_bits=10"),
    )
    .unwrap();
    assert_eq!(p.agreed.deflate.map(|d| d.server_max_window_bits), Some(10));
    // No acceptable offer: declined, no header.
    let p = Peer::connect(addr, Some("permessage-deflate; server_max_window_bits=7")).unwrap();
    assert!(!p
        .response
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    // A header that is not RFC 6455 §9.1's grammar: 400 with the reason.
    let (req, _) = common::request_with(
        addr,
        &[],
        &[("Sec-WebSocket-Extensions", "permessage-deflate; =")],
    );
    let resp = http_exchange(addr, &req);
    assert_eq!(status_line(&resp), "HTTP/1.1 400 Bad Request");
    assert!(
        resp.contains("malformed Sec-WebSocket-Extensions"),
        "{resp}"
    );
    stop(&handle, join);

    // A server without `Config::deflate` declines every offer.
    let (addr, handle, join) = server(config());
    let p = Peer::connect(addr, Some("permessage-deflate")).unwrap();
    assert!(p.agreed.deflate.is_none());
    assert!(!p
        .response
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    stop(&handle, join);
}

#[test]
fn compressed_messages_are_echoed_compressed() {
    let (addr, handle, join) = server(deflate_config());
    let mut p = Peer::connect(addr, Some("permessage-deflate; client_max_window_bits")).unwrap();
    for text in [json(3), json(200), json(2000)] {
        p.send(Message::Text(&text));
        let (back, compressed) = p.recv();
        assert_eq!(back, text.as_bytes());
        assert!(compressed, "{} bytes went back plain", text.len());
    }
    // Under the threshold (128 bytes by default): plain, both valid.
    p.send(Message::Text("hi"));
    assert_eq!(p.recv(), (b"hi".to_vec(), false));
    let s = stats(&handle);
    assert_eq!((s.sent_compressed, s.sent_plain, s.compressions), (3, 1, 3));
    assert!(
        s.compress_bytes_after * 10 < s.compress_bytes_before,
        "{s:?}"
    );
    stop(&handle, join);
}

#[test]
fn compressed_message_streams_as_inflated_chunks() {
    let (chunks, got) = mpsc::channel();
    let config = deflate_config().with_delivery(DeliveryMode::Chunks);
    let (addr, handle, join) = start(Server { chunks }, config);
    let mut p = Peer::connect(addr, Some("permessage-deflate")).unwrap();
    let text = json(300);
    p.send(Message::Text(&text));
    let mut all = Vec::new();
    loop {
        let (c, last) = got.recv_timeout(TIMEOUT).expect("chunk");
        assert!(c.len() <= 4096, "chunk of {}", c.len());
        all.extend_from_slice(&c);
        if last {
            break;
        }
    }
    assert_eq!(all, text.as_bytes());
    stop(&handle, join);
}

#[test]
fn one_broadcast_reaches_deflate_and_plain_clients() {
    let (addr, handle, join) = server(deflate_config());
    let mut a = Peer::connect(addr, Some("permessage-deflate; client_max_window_bits")).unwrap();
    let mut b = Peer::connect(addr, Some("permessage-deflate; server_max_window_bits=10")).unwrap();
    let mut plain = Peer::connect(addr, None).unwrap();
    let text = json(10);
    a.send(Message::Text(&format!("broadcast:{text}")));
    for (peer, compressed) in [(&mut a, true), (&mut b, true), (&mut plain, false)] {
        assert_eq!(peer.recv(), (text.as_bytes().to_vec(), compressed));
    }
    let s = stats(&handle);
    // Compressed once (the message fits a 10-bit window: one encoding
    // serves both windows), shared with both deflate clients.
    assert_eq!(s.compressions, 1, "{s:?}");
    assert_eq!((s.sent_shared_compressed, s.sent_compressed), (2, 2));

    // A batch: its long members compressed, the short one plain inside.
    a.send(Message::Text(&format!("batch:{text}")));
    for peer in [&mut a, &mut b, &mut plain] {
        assert_eq!(peer.recv().0, text.as_bytes());
        assert_eq!(peer.recv().0, b"short");
        assert_eq!(peer.recv().0, text.as_bytes());
    }
    assert_eq!(stats(&handle).compressions, 2);
    stop(&handle, join);
}

#[test]
fn a_large_message_needs_an_encoding_per_window() {
    let (addr, handle, join) = server(deflate_config());
    let mut big = Peer::connect(addr, Some("permessage-deflate")).unwrap();
    let mut small =
        Peer::connect(addr, Some("permessage-deflate; server_max_window_bits=9")).unwrap();
    let text = json(300);
    big.send(Message::Text(&format!("broadcast:{text}")));
    assert_eq!(big.recv(), (text.as_bytes().to_vec(), true));
    assert_eq!(small.recv(), (text.as_bytes().to_vec(), true));
    assert_eq!(stats(&handle).compressions, 2);
    stop(&handle, join);
}

#[test]
fn context_takeover_carries_over_and_survives_shared_frames() {
    // Server context takeover allowed (RFC 7692 §7.1.1): the connection's
    // own compressor keeps its window, so a repeated message shrinks more
    // the second time; a shared frame in between makes it start afresh
    // (the peer's window then holds bytes ours does not).
    let mut settings = DeflateSettings::default();
    settings.negotiation.outgoing_context_takeover = true;
    settings.compression.min_size = 0;
    let (addr, handle, join) = server(config().with_deflate(settings));
    let mut p = Peer::connect(addr, Some("permessage-deflate")).unwrap();
    assert_eq!(
        p.agreed.deflate.map(|d| d.server_no_context_takeover),
        Some(false)
    );
    let text = json(2);
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let before = stats(&handle).compress_bytes_after;
        p.send(Message::Text(&text));
        assert_eq!(p.recv(), (text.clone().into_bytes(), true));
        sizes.push(stats(&handle).compress_bytes_after - before);
    }
    assert!(
        sizes[1] < sizes[0] / 2,
        "no context carried over: {sizes:?}"
    );
    p.send(Message::Text(&format!("broadcast:{text}")));
    assert_eq!(p.recv(), (text.clone().into_bytes(), true));
    p.send(Message::Text(&text));
    assert_eq!(p.recv(), (text.into_bytes(), true));
    stop(&handle, join);
}
