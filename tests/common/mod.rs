//! Shared helpers of the reactor integration tests: a small blocking
//! WebSocket client over `std::net::TcpStream` built from the crate's own
//! protocol pieces, raw HTTP helpers for handshake rejections, and a server
//! started on its own thread.
//!
//! Every read is bounded by a socket read timeout, so no test can hang.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wsmio::proto::handshake::{find_head_end, ClientHandshake, HeadLimits};
use wsmio::proto::{self, CloseCode, OpCode, Receiver, Role, Sender};
use wsmio::reactor::ManualClock;
use wsmio::{CloseInfo, Config, ConnId, Ctx, Handle, Handler, Message, Server};

/// Default bound on any single expected event.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A config for tests: defaults, but short close and shutdown timeouts so
/// that stopping a server never takes long.
pub fn config() -> Config {
    Config::default()
        .with_close_timeout(Duration::from_secs(1))
        .with_shutdown_timeout(Duration::from_secs(1))
}

/// [`config`] on a clock that moves only when the test moves it ([`step`]):
/// timer tests without sleeping. The shutdown deadline is on that clock
/// too: close every client before [`stop`] (or step past the deadline).
pub fn clocked_config() -> (Config, ManualClock) {
    let clock = ManualClock::new();
    (config().with_clock(clock.clone()), clock)
}

/// Move the server's clock `ms` forward; returns once the loop has run a
/// turn at the new time (its timers handled, their output written).
pub fn step(clock: &ManualClock, ms: u64) {
    assert!(
        clock.advance(Duration::from_millis(ms)),
        "the loop did not run a turn at {} ms",
        clock.now_ms()
    );
}

/// How long a test looks for output that must not be there. The loop has
/// already written whatever it was going to (see [`step`]); this only lets
/// loopback delivery finish.
pub const QUIET: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------- server

/// Run `handler` on a server bound to an ephemeral 127.0.0.1 port on its own
/// thread. Stop it with [`stop`].
pub fn start<H: Handler + Send + 'static>(
    handler: H,
    config: Config,
) -> (SocketAddr, Handle, JoinHandle<H>) {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind");
    let addr = server.local_addr();
    let handle = server.handle();
    let join = thread::spawn(move || server.run(handler).expect("Server::run"));
    (addr, handle, join)
}

/// Wait (bounded) for a server thread to finish and return its handler.
pub fn join_within<H>(join: JoinHandle<H>, limit: Duration) -> H {
    let deadline = Instant::now() + limit;
    while !join.is_finished() {
        assert!(
            Instant::now() < deadline,
            "server did not stop within {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    join.join().expect("server thread panicked")
}

/// Graceful shutdown, then join the server thread (bounded).
pub fn stop<H>(handle: &Handle, join: JoinHandle<H>) -> H {
    handle.shutdown().expect("shutdown");
    join_within(join, Duration::from_secs(10))
}

/// What a test handler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvEv {
    Open(ConnId),
    Message(ConnId, Vec<u8>),
    Pong(ConnId, Vec<u8>),
    Drain(ConnId),
    Close(ConnId, CloseInfo),
}

/// Echoes every message and reports every event on a channel.
pub struct Echo {
    pub events: mpsc::Sender<SrvEv>,
}

impl Echo {
    pub fn new() -> (Echo, mpsc::Receiver<SrvEv>) {
        let (tx, rx) = mpsc::channel();
        (Echo { events: tx }, rx)
    }
}

impl Handler for Echo {
    type Conn = ();

    fn open(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(SrvEv::Open(id));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = self
            .events
            .send(SrvEv::Message(id, msg.as_bytes().to_vec()));
        let _ = ctx.send(id, msg);
    }

    fn pong(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, payload: &[u8]) {
        let _ = self.events.send(SrvEv::Pong(id, payload.to_vec()));
    }

    fn drain(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(SrvEv::Drain(id));
    }

    fn close(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = self.events.send(SrvEv::Close(id, info));
    }
}

/// The next event matching `f` within `limit` (others are skipped).
pub fn wait_for<T>(
    rx: &mpsc::Receiver<SrvEv>,
    limit: Duration,
    mut f: impl FnMut(&SrvEv) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => {
                if let Some(t) = f(&ev) {
                    return t;
                }
            }
            Err(e) => panic!("no matching server event within {limit:?}: {e}"),
        }
    }
}

/// The next `Close` reported by the handler.
pub fn wait_close(rx: &mpsc::Receiver<SrvEv>) -> (ConnId, CloseInfo) {
    wait_for(rx, TIMEOUT, |ev| match ev {
        SrvEv::Close(id, info) => Some((*id, *info)),
        _ => None,
    })
}

/// The next `Open` reported by the handler.
pub fn wait_open(rx: &mpsc::Receiver<SrvEv>) -> ConnId {
    wait_for(rx, TIMEOUT, |ev| match ev {
        SrvEv::Open(id) => Some(*id),
        _ => None,
    })
}

// ---------------------------------------------------------------- raw TCP

/// A connected stream with `TCP_NODELAY` and read/write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// A valid upgrade request for `addr` (key derived from a counter).
pub fn request(addr: SocketAddr) -> (Vec<u8>, ClientHandshake) {
    request_with(addr, &[], &[])
}

/// A valid upgrade request offering `protocols`, with `extra` headers.
pub fn request_with(
    addr: SocketAddr,
    protocols: &[&str],
    extra: &[(&str, &str)],
) -> (Vec<u8>, ClientHandshake) {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut key = *b"wsmio test key..";
    key[12..].copy_from_slice(&n.to_be_bytes());
    let hs = ClientHandshake::new(key, protocols);
    (hs.request(&addr.to_string(), "/", extra), hs)
}

/// Everything the server sends until it closes the connection, which must
/// happen within `limit`, and whether it ended with a reset rather than a
/// FIN. Panics if the connection is still open then.
pub fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection not closed within {limit:?}; got {:?}",
            String::from_utf8_lossy(&out)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (out, true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read error {e} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

/// Everything the server sends until it closes the connection with a FIN
/// (not a reset), which must happen within `limit`.
pub fn read_to_eof(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let (out, reset) = read_until_closed(s, limit);
    assert!(
        !reset,
        "connection reset after {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// Send `request` on a new connection and return the whole response; the
/// server must close the connection after it (checked).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tcp(addr);
    s.write_all(request).expect("write request");
    String::from_utf8(read_to_eof(&mut s, TIMEOUT)).expect("response is not UTF-8")
}

/// The first line of an HTTP response.
pub fn status_line(resp: &str) -> &str {
    resp.split("\r\n").next().unwrap_or("")
}

/// Does the response head carry `name: value` (name case-insensitive)?
pub fn has_header(resp: &str, name: &str, value: &str) -> bool {
    let head = resp.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").skip(1).any(|line| {
        line.split_once(':')
            .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------- frames

/// A client frame built byte by byte, with no rule checked: `b0` is the
/// first byte (FIN, RSV bits, opcode) verbatim; the payload is masked with
/// `mask` if given.
pub fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        f.push(m | len as u8);
    } else if len <= u16::MAX as usize {
        f.push(m | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        f.extend_from_slice(&k);
    }
    let body = f.len();
    f.extend_from_slice(payload);
    if let Some(k) = mask {
        for (i, b) in f[body..].iter_mut().enumerate() {
            *b ^= k[i & 3];
        }
    }
    f
}

/// A masked client frame (`b0` verbatim).
pub fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, Some([0x12, 0x34, 0x56, 0x78]))
}

/// A masked close frame with `code` (any value) and raw `reason` bytes.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    masked(0x88, &p)
}

// ---------------------------------------------------------------- client

/// What the client read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code (none if empty) and reason.
    Close(Option<u16>, String),
    /// The server broke the protocol (as seen by our client receiver).
    Protocol(proto::Error),
    /// TCP end of stream.
    Eof,
    /// The connection was reset.
    Reset,
}

struct Collect<'a>(&'a mut VecDeque<Ev>);

impl proto::ReceiveHandler for Collect<'_> {
    fn on_message(&mut self, msg: Message<'_>) {
        self.0.push_back(match msg {
            Message::Text(t) => Ev::Text(t.to_string()),
            Message::Binary(b) => Ev::Binary(b.to_vec()),
        });
    }
    fn on_ping(&mut self, payload: &[u8]) {
        self.0.push_back(Ev::Ping(payload.to_vec()));
    }
    fn on_pong(&mut self, payload: &[u8]) {
        self.0.push_back(Ev::Pong(payload.to_vec()));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.0
            .push_back(Ev::Close(code.map(|c| c.0), reason.to_string()));
    }
}

/// A blocking WebSocket client. Nothing is answered automatically: pings,
/// close replies and everything else are up to the test.
pub struct Client {
    pub stream: TcpStream,
    rx: Receiver,
    tx: Sender,
    events: VecDeque<Ev>,
    ended: bool,
    /// The server's `101` response head.
    pub response: String,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

impl Client {
    /// Connect and complete a default handshake.
    pub fn connect(addr: SocketAddr) -> Client {
        let (req, hs) = request(addr);
        Client::handshake(tcp(addr), &req, &hs, 0).unwrap_or_else(|r| panic!("refused: {r}"))
    }

    /// Connect offering `protocols`. `Err` carries a refusal response.
    pub fn connect_protocols(addr: SocketAddr, protocols: &[&str]) -> Result<Client, String> {
        let (req, hs) = request_with(addr, protocols, &[]);
        Client::handshake(tcp(addr), &req, &hs, 0)
    }

    /// Write `request` (any bytes; written `per_write` bytes at a time with
    /// a short pause in between if nonzero), then read and validate the
    /// response against `hs`. Bytes after the response head are kept as
    /// frame input. `Err` is the response head if it is not a valid `101`.
    pub fn handshake(
        mut stream: TcpStream,
        request: &[u8],
        hs: &ClientHandshake,
        per_write: usize,
    ) -> Result<Client, String> {
        if per_write == 0 {
            stream.write_all(request).expect("write request");
        } else {
            for piece in request.chunks(per_write) {
                stream.write_all(piece).expect("write request");
                stream.flush().unwrap();
                thread::sleep(Duration::from_millis(1));
            }
        }
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = find_head_end(&buf, 0) {
                break end;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no response head within {TIMEOUT:?}");
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut chunk) {
                Ok(0) => return Err(String::from_utf8_lossy(&buf).into_owned()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("handshake read: {e}"),
            }
        };
        let response = String::from_utf8_lossy(&buf[..end]).into_owned();
        let protocol = match hs.validate_response(&buf[..end], &HeadLimits::default()) {
            Ok(p) => p,
            Err(_) => return Err(String::from_utf8_lossy(&buf).into_owned()),
        };
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client {
            stream,
            rx: Receiver::new(Role::Client),
            tx: Sender::new(Role::Client),
            events: VecDeque::new(),
            ended: false,
            response,
            protocol,
        };
        let mut rest = buf[end..].to_vec();
        c.feed(&mut rest);
        Ok(c)
    }

    fn feed(&mut self, bytes: &mut [u8]) {
        if let Err(e) = self
            .rx
            .receive(bytes, &Default::default(), &mut Collect(&mut self.events))
        {
            self.events.push_back(Ev::Protocol(e));
        }
    }

    // ---- writing

    /// Write raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("client write");
    }

    /// Write raw bytes; `Err` if the server is gone.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One data frame, masked with a fresh key (the sender checks the
    /// fragment sequence).
    pub fn frame_bytes(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.tx
            .encode_data(opcode, fin, payload, &mut out)
            .expect("encode");
        out
    }

    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let f = self.frame_bytes(opcode, fin, payload);
        self.send_raw(&f);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(OpCode::Text, true, text.as_bytes());
    }

    pub fn send_binary(&mut self, data: &[u8]) {
        self.send_frame(OpCode::Binary, true, data);
    }

    pub fn ping(&mut self, payload: &[u8]) {
        let f = self.tx.ping(payload).expect("ping");
        self.send_raw(f.as_bytes());
    }

    pub fn pong(&mut self, payload: &[u8]) {
        let f = self.tx.pong(payload).expect("pong");
        self.send_raw(f.as_bytes());
    }

    /// Send a close frame with a code the sender allows on the wire.
    pub fn close(&mut self, code: u16, reason: &str) {
        let f = self.tx.close(Some(CloseCode(code)), reason).expect("close");
        self.send_raw(f.as_bytes());
    }

    // ---- reading

    /// The next event within `limit`, or `None` if nothing came.
    pub fn next_within(&mut self, limit: Duration) -> Option<Ev> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if self.ended {
                return Some(Ev::Eof);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.ended = true;
                    return Some(Ev::Eof);
                }
                Ok(n) => self.feed(&mut buf[..n]),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.ended = true;
                    return Some(Ev::Reset);
                }
                Err(e) => panic!("client read: {e}"),
            }
        }
    }

    /// The next event (panics after [`TIMEOUT`]).
    pub fn next(&mut self) -> Ev {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no event within {TIMEOUT:?}"))
    }

    pub fn expect_text(&mut self) -> String {
        match self.next() {
            Ev::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    pub fn expect_binary(&mut self) -> Vec<u8> {
        match self.next() {
            Ev::Binary(b) => b,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// The next event must be a close frame; returns its code.
    pub fn expect_close(&mut self) -> Option<u16> {
        match self.next() {
            Ev::Close(code, _) => code,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// The server must close TCP next.
    pub fn expect_eof(&mut self) {
        match self.next() {
            Ev::Eof => {}
            other => panic!("expected EOF, got {other:?}"),
        }
    }

    /// The server closes with `code` and then ends the TCP connection.
    pub fn expect_close_then_eof(&mut self, code: u16) {
        assert_eq!(self.expect_close(), Some(code));
        self.expect_eof();
    }
}
