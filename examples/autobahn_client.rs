//! Autobahn client mode: the sans-IO core in the *client* role, driven over
//! a blocking socket against `wstest -m fuzzingserver`. It asks the suite
//! for its case count, runs every case (echoing each message back, as the
//! suite expects of a client), then asks it to write its reports.
//!
//! Usage: `cargo run --release --features deflate --example autobahn_client [HOST:PORT] [AGENT]`
//! (default `127.0.0.1:9002`, agent `wsmio`). `autobahn/run.sh` runs it.
//!
//! Everything protocol-related is `wsmio::proto`: the opening handshake
//! (`ClientHandshake`, RFC 6455 §4.1, offering permessage-deflate, RFC
//! 7692), then the protocol core
//! (`proto::connection::receive`, the same code the reactor and the fuzzers
//! run) over a [`Receiver`] (which in the client role refuses masked server
//! frames, §5.1) and a [`Sender`] (which masks every frame with a fresh
//! random key, §5.3). The core decides the automatic replies; this file only
//! moves bytes and echoes messages, in order with those replies.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use wsmio::proto::connection::{self, Sink};
use wsmio::proto::deflate::{Compression, DeflateOptions, DEFAULT_LEVEL, DEFAULT_MEM_LEVEL};
use wsmio::proto::extension::DeflateConfig;
use wsmio::proto::handshake::{ClientHandshake, HeadBuffer, HeadLimits};
use wsmio::proto::{CloseCode, ControlFrame, Limits, Message, Receiver, Role, Sender};

/// A case that has not ended by then is abandoned (the suite's own
/// timeouts are shorter, and its longest cases take about a second here;
/// this only keeps a broken client from hanging the run).
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// After the close handshake the server closes TCP first (RFC 6455
/// §7.1.1); how long the client waits for that before closing itself.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Bytes read per `read` call.
const READ_BUF: usize = 256 * 1024;
/// How echoes are compressed when permessage-deflate is agreed: every
/// message, whatever its size (`min_size` 0), at the default level.
const ECHO_COMPRESSION: Compression = Compression {
    options: DeflateOptions {
        level: DEFAULT_LEVEL,
        mem_level: DEFAULT_MEM_LEVEL,
    },
    min_size: 0,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9002".into());
    let agent = args.next().unwrap_or_else(|| "wsmio".into());
    if let Err(e) = run(&addr, &agent) {
        eprintln!("autobahn_client: {e}");
        std::process::exit(1);
    }
}

fn run(addr: &str, agent: &str) -> io::Result<()> {
    let count = case_count(addr)?;
    eprintln!("autobahn_client: {count} cases on {addr}");
    for case in 1..=count {
        let path = format!("/runCase?case={case}&agent={agent}");
        if let Err(e) = session(addr, &path, &mut |_| {}) {
            // A refused or broken case is the suite's to judge; go on.
            eprintln!("autobahn_client: case {case}: {e}");
        }
    }
    session(addr, &format!("/updateReports?agent={agent}"), &mut |_| {})?;
    eprintln!("autobahn_client: reports updated");
    Ok(())
}

/// `/getCaseCount` answers with one text message: the number of cases.
fn case_count(addr: &str) -> io::Result<u32> {
    let mut got = None;
    session(addr, "/getCaseCount", &mut |text| {
        got = text.trim().parse().ok()
    })?;
    got.ok_or_else(|| io::Error::other("no case count from the suite"))
}

/// The client's sink for the protocol core: echoes data messages (reporting
/// texts to `seen`) right where they arrive, so an echo and the automatic
/// replies the core queues (pong, close reply) go out in the order the
/// suite sent what caused them.
struct Echo<'a> {
    tx: &'a mut Sender,
    out: &'a mut Vec<u8>,
    seen: &'a mut dyn FnMut(&str),
    closed: bool,
}

impl Sink for Echo<'_> {
    fn sender(&mut self) -> Option<&mut Sender> {
        Some(self.tx)
    }

    fn send_control(&mut self, frame: &ControlFrame) {
        self.out.extend_from_slice(frame.as_bytes());
    }

    fn on_message(&mut self, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            (self.seen)(t);
        }
        // Fails only once our close frame is out; nothing is sent then.
        // Compressed when permessage-deflate was agreed (RFC 7692 §6).
        let _ = self.tx.encode_message(msg, self.out);
    }

    fn on_close(&mut self, _code: Option<CloseCode>, _reason: &str) {
        self.closed = true;
    }
}

/// One WebSocket session on `path`: handshake, echo until the close, then
/// wait for the server to end TCP.
fn session(addr: &str, path: &str, seen: &mut dyn FnMut(&str)) -> io::Result<()> {
    let deadline = Instant::now() + CASE_LIMIT;
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(CASE_LIMIT))?;

    // RFC 6455 §4.1: a fresh random 16-byte nonce per connection.
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    // RFC 7692: offer permessage-deflate (the suite's cases 12 and 13
    // accept it with various parameters; the others decline it).
    let hs = ClientHandshake::with_deflate(nonce, &[], &DeflateConfig::default());
    s.write_all(&hs.request(addr, path, &[]))?;
    let mut buf = vec![0u8; READ_BUF];
    let head_limits = HeadLimits::default();
    let mut head = HeadBuffer::new();
    let end = loop {
        let n = read_some(&mut s, &mut buf, deadline)?;
        if n == 0 {
            return Err(io::Error::other("EOF before the handshake response"));
        }
        match head.push(&buf[..n], head_limits.max_head_size) {
            Ok(Some(end)) => break end,
            Ok(None) => {}
            Err(r) => return Err(io::Error::other(format!("response head: {}", r.reason))),
        }
    };
    let (head, mut input) = head.split_off_rest(end);
    let agreed = hs
        .validate(&head, &head_limits)
        .map_err(|r| io::Error::other(format!("handshake refused: {} {}", r.status, r.reason)))?;
    // The agreed parameters (RFC 7692 §7.1) shape both directions; echoes
    // are compressed whatever their size, so every case exercises it.
    let (mut rx, mut tx) = match agreed.deflate {
        Some(params) => (
            Receiver::with_deflate(Role::Client, params),
            Sender::with_deflate(Role::Client, params, ECHO_COMPRESSION),
        ),
        None => (Receiver::new(Role::Client), Sender::new(Role::Client)),
    };
    // The suite's largest messages are 16 MiB (cases 9.x).
    let limits = Limits::default();
    let mut out = Vec::new();
    loop {
        let mut echo = Echo {
            tx: &mut tx,
            out: &mut out,
            seen,
            closed: false,
        };
        // The pong, the close reply, or the close frame of a failure (RFC
        // 6455 §7.1.7) is queued in `out` by the core.
        let result = connection::receive(&mut rx, &mut input, &limits, &mut echo);
        let closed = echo.closed;
        s.write_all(&out)?;
        out.clear();
        if closed || result.is_err() {
            return wait_for_close(&mut s, &mut buf);
        }
        let n = read_some(&mut s, &mut buf, deadline)?;
        if n == 0 {
            // The server ended TCP without a close handshake.
            return Ok(());
        }
        input.clear();
        input.extend_from_slice(&buf[..n]);
    }
}

/// RFC 6455 §7.1.1: the server closes TCP first; read (and drop) until it
/// does, then close our side, or close at once after [`CLOSE_WAIT`].
fn wait_for_close(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let until = Instant::now() + CLOSE_WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // A read never waits past `until`.
        s.set_read_timeout(Some(left))?;
        match s.read(buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

/// One `read`, retried on EINTR, failing once `deadline` has passed.
fn read_some(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no end within {} s", CASE_LIMIT.as_secs()),
            ));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The socket's read timeout: loop to report the deadline.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}
