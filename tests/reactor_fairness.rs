//! Fairness under load and abuse (issue 20, the reactor's part), on real
//! sockets: a reconnect storm meets a deep accept queue, accepting goes in
//! slices, slow handshakes cannot take the slots of real clients, input
//! held by all connections has one budget, the application can pause
//! reading, timers run on the loop's clock, and `HEAD` gets no body.
//!
//! The storm and the memory budget measure the whole process (descriptors,
//! RSS): they run one at a time (`heavy`).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use wsmio::proto::handshake::find_head_end;
use wsmio::reactor::{Stats, TimerError};
use wsmio::{CloseInfo, ConnId, Ctx, Handle, Handler, HttpRequest, HttpResponse, Message};

/// Tests that measure the process (descriptors, RSS) take this first.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's [`Stats`], read on its loop.
fn stats(handle: &Handle) -> Stats {
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(ctx.stats());
        })
        .unwrap();
    rx.recv_timeout(TIMEOUT).expect("stats")
}

/// Wait (bounded) until the server's stats satisfy `f`.
fn wait_stats(handle: &Handle, what: &str, f: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = stats(handle);
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Raise this process's open-file limit to at least `want` (as the binary
/// does with `setrlimit`); `false` if the hard limit is lower.
fn raise_fd_limit(want: u64) -> bool {
    // SAFETY: `r` is a valid `rlimit` for both calls to read and write.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return false;
        }
        if r.rlim_cur >= want {
            return true;
        }
        if r.rlim_max < want {
            return false;
        }
        r.rlim_cur = want;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0
    }
}

/// `TCP_INFO` of a connected socket: (total retransmissions, …). A SYN
/// dropped for a full accept queue makes the client retransmit it; a final
/// ACK dropped for the same reason makes it retransmit its first data.
fn total_retrans(s: &impl AsRawFd) -> u32 {
    // SAFETY: all-zero is a valid `tcp_info` (integers only).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes, `len` holds the size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_total_retrans
}

/// The host's `ListenOverflows` and `ListenDrops` (`/proc/net/netstat`,
/// `TcpExt:`). Host-wide: other processes move them too.
fn listen_counters() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let (mut over, mut drops) = (None, None);
    for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
        match n {
            "ListenOverflows" => over = v.parse().ok(),
            "ListenDrops" => drops = v.parse().ok(),
            _ => {}
        }
    }
    Some((over?, drops?))
}

fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Upgrades, and counts messages; nothing else.
#[derive(Default)]
struct Quiet;

impl Handler for Quiet {
    type Conn = ();

    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}
}

// ------------------------------------------------------------- the storm

/// What a storm of clients saw.
#[derive(Debug)]
struct StormResult {
    upgraded: usize,
    /// Retransmissions summed over the clients' sockets.
    retrans: u64,
    /// Clients that retransmitted anything.
    retransmitting: usize,
    slowest: Duration,
    took: Duration,
    /// The clients, still connected.
    sockets: Vec<mio::net::TcpStream>,
}

/// `n` clients connect at once (non-blocking connects issued back to
/// back), each sends its upgrade request as soon as it is connected, and
/// waits for `101`. Bounded by `limit`.
fn storm(addr: SocketAddr, n: usize, limit: Duration) -> StormResult {
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};

    struct C {
        s: TcpStream,
        sent: bool,
        got: Vec<u8>,
        done: Option<Duration>,
    }
    let (req, _hs) = request(addr);
    let mut poll = Poll::new().unwrap();
    let t0 = Instant::now();
    let mut cs: Vec<C> = (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            C {
                s,
                sent: false,
                got: Vec::new(),
                done: None,
            }
        })
        .collect();
    let mut events = Events::with_capacity(1024);
    let mut left = n;
    let mut buf = [0u8; 4096];
    while left > 0 {
        assert!(
            t0.elapsed() < limit,
            "{left} of {n} clients not upgraded within {limit:?}"
        );
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if c.done.is_some() {
                continue;
            }
            if ev.is_writable() && !c.sent && c.s.peer_addr().is_ok() {
                // Connected: the whole request fits an empty socket buffer.
                c.s.write_all(&req).expect("write request");
                c.sent = true;
            }
            if ev.is_readable() {
                loop {
                    match c.s.read(&mut buf) {
                        Ok(0) => panic!("closed: {:?}", String::from_utf8_lossy(&c.got)),
                        Ok(k) => c.got.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
                if let Some(end) = find_head_end(&c.got, 0) {
                    let head = String::from_utf8_lossy(&c.got[..end]);
                    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
                    c.done = Some(t0.elapsed());
                    left -= 1;
                }
            }
        }
    }
    let took = t0.elapsed();
    let per_socket: Vec<u32> = cs.iter().map(|c| total_retrans(&c.s)).collect();
    StormResult {
        upgraded: cs.iter().filter(|c| c.done.is_some()).count(),
        retrans: per_socket.iter().map(|&r| u64::from(r)).sum(),
        retransmitting: per_socket.iter().filter(|&&r| r > 0).count(),
        slowest: cs.iter().filter_map(|c| c.done).max().unwrap_or_default(),
        took,
        sockets: cs.into_iter().map(|c| c.s).collect(),
    }
}

const STORM: usize = 2000;

/// A reconnect storm of 2,000 clients connecting at once: with the accept
/// queue sized to the connection limit (4,096 here), no SYN is dropped, so
/// no client waits a second for its retry.
///
/// The evidence is per socket, not host-wide: a SYN dropped for a full
/// accept queue makes that client retransmit it (and a final ACK dropped
/// makes it retransmit its request), which its `TCP_INFO` counts. The
/// host's `ListenOverflows`/`ListenDrops` are checked too, but other
/// processes move them: when they moved while none of our sockets
/// retransmitted, the overflow was someone else's, and the storm is run
/// again (up to three times) for a clean reading.
#[test]
fn a_reconnect_storm_of_2000_waits_for_no_syn_retry() {
    let _heavy = heavy();
    if !raise_fd_limit(2 * STORM as u64 + 1024) {
        eprintln!("skipped: the open-file limit cannot hold {STORM} connections twice");
        return;
    }
    let max = somaxconn().unwrap_or(0);
    if (max as usize) < STORM {
        eprintln!("skipped: net.core.somaxconn = {max} caps every accept queue below {STORM}");
        return;
    }
    let cfg = config().with_max_connections(4096);
    assert_eq!(cfg.backlog(), 4096);
    for attempt in 1..=3 {
        let (addr, handle, join) = start(Quiet, cfg.clone());
        let before = listen_counters();
        let r = storm(addr, STORM, Duration::from_secs(30));
        let after = listen_counters();
        let s = stats(&handle);
        let moved = match (before, after) {
            (Some((o0, d0)), Some((o1, d1))) => (o1 - o0, d1 - d0),
            _ => (0, 0),
        };
        eprintln!(
            "storm {attempt}: {} upgraded in {:?}, slowest {:?}; \
             retransmits {} on {} sockets; host ListenOverflows +{} ListenDrops +{}; \
             handshakes dropped {}",
            r.upgraded,
            r.took,
            r.slowest,
            r.retrans,
            r.retransmitting,
            moved.0,
            moved.1,
            s.handshakes_dropped
        );
        assert_eq!(r.upgraded, STORM);
        assert_eq!(
            r.retrans, 0,
            "{} clients retransmitted: SYNs or ACKs were dropped",
            r.retransmitting
        );
        assert_eq!(s.handshakes_dropped, 0, "real clients were dropped");
        assert_eq!(s.upgraded_connections, STORM);
        drop(r.sockets);
        stop(&handle, join);
        if moved == (0, 0) {
            return;
        }
        // Nothing of ours was dropped (no retransmits): another process's.
    }
    eprintln!("the host's listen counters kept moving (other processes); our sockets saw no drop");
}

/// The control for the storm test, with the old fixed backlog of 128: run
/// by hand (`cargo test --test reactor_fairness -- --ignored`) to see the
/// kernel drop SYNs and the clients wait for their retries.
#[test]
#[ignore = "a measurement: clients wait 1-3 s for SYN retries"]
fn control_a_storm_against_the_old_backlog_of_128() {
    let _heavy = heavy();
    assert!(raise_fd_limit(2 * STORM as u64 + 1024));
    let (addr, handle, join) = start(Quiet, config().with_listen_backlog(128));
    let before = listen_counters().unwrap();
    let r = storm(addr, STORM, Duration::from_secs(60));
    let after = listen_counters().unwrap();
    eprintln!(
        "backlog 128: {} upgraded in {:?}, slowest {:?}; retransmits {} on {} sockets; \
         host ListenOverflows +{} ListenDrops +{}",
        r.upgraded,
        r.took,
        r.slowest,
        r.retrans,
        r.retransmitting,
        after.0 - before.0,
        after.1 - before.1
    );
    stop(&handle, join);
}

// ------------------------------------------------------ accepting in slices

/// Records how many connections the loop has at each turn (it wakes itself
/// every turn until there are 40).
struct TurnWatch {
    seen: mpsc::Sender<usize>,
}

impl Handler for TurnWatch {
    type Conn = ();

    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}

    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        let n = ctx.connections();
        if self.seen.send(n).is_ok() && n < 40 {
            ctx.wake();
        }
    }
}

/// 40 connections wait in the accept queue at once; with an accept budget
/// of 4 the loop takes at most 4 per turn, and takes the rest in the turns
/// that follow without any new readiness event (the listener reports the
/// queue once).
#[test]
fn a_storm_is_accepted_in_slices_and_none_is_left_behind() {
    let (tx, seen) = mpsc::channel();
    let (addr, handle, join) = start(TurnWatch { seen: tx }, config().with_accepts_per_turn(4));
    let (open_gate, gate) = mpsc::channel::<()>();
    handle
        .call(move |ctx| {
            let _ = gate.recv_timeout(TIMEOUT);
            // Count from this turn on (no accept has run yet).
            ctx.wake();
        })
        .unwrap();
    // The loop is held: every connection completes in the kernel's queue.
    let clients: Vec<_> = (0..40).map(|_| tcp(addr)).collect();
    open_gate.send(()).unwrap();
    let mut counts = vec![0];
    while *counts.last().unwrap() < 40 {
        counts.push(seen.recv_timeout(TIMEOUT).expect("a turn"));
    }
    for w in counts.windows(2) {
        assert!(
            w[1] - w[0] <= 4,
            "more than 4 accepted in one turn: {counts:?}"
        );
    }
    assert!(counts.len() > 10, "{counts:?}");
    // Every one is served.
    for mut s in clients {
        let (req, _) = request(addr);
        s.write_all(&req).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
    }
    stop(&handle, join);
}

// ------------------------------------------------------ pending handshakes

/// A slowloris fleet at `max_pending_handshakes` (each connection sent half
/// a request head and stalls) does not keep a real client out: its arrival
/// drops the oldest of them with `408`. `max_connections` counts upgraded
/// connections only, so the fleet does not take their slots either.
#[test]
fn slow_handshakes_at_the_pending_limit_do_not_keep_a_real_client_out() {
    let (echo, events) = Echo::new();
    let cfg = config()
        .with_max_pending_handshakes(8)
        .with_max_connections(4);
    let (addr, handle, join) = start(echo, cfg);
    let (req, _) = request(addr);
    let mut fleet: Vec<_> = (0..8)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(&req[..req.len() / 2]).unwrap();
            s
        })
        .collect();
    wait_stats(&handle, "the fleet pending", |s| s.pending_handshakes == 8);

    // A real client gets in; the oldest slow one makes room.
    let mut real = Client::connect(addr);
    real.send_text("hello");
    assert_eq!(real.expect_text(), "hello");
    let resp = String::from_utf8(read_to_eof(&mut fleet[0], TIMEOUT)).unwrap();
    assert_eq!(status_line(&resp), "HTTP/1.1 408 Request Timeout", "{resp}");
    let s = stats(&handle);
    assert_eq!(
        (
            s.handshakes_dropped,
            s.pending_handshakes,
            s.upgraded_connections
        ),
        (1, 7, 1),
        "{s:?}"
    );
    // The others still wait for the rest of their heads.
    for f in &mut fleet[1..] {
        f.set_read_timeout(Some(QUIET)).unwrap();
        let r = f.read(&mut [0u8; 1]);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
    }

    // Three more real clients fill the four upgraded slots beside the fleet;
    // the next one is refused at accept.
    let mut more: Vec<_> = (0..3).map(|_| Client::connect(addr)).collect();
    for _ in 0..4 {
        wait_open(&events);
    }
    let mut s5 = tcp(addr);
    let resp = String::from_utf8(read_to_eof(&mut s5, TIMEOUT)).unwrap();
    assert_eq!(status_line(&resp), "HTTP/1.1 503 Service Unavailable");
    for c in &mut more {
        c.send_text("x");
        assert_eq!(c.expect_text(), "x");
    }
    drop((real, more, fleet));
    stop(&handle, join);
}

/// A handshake that was pending while the upgraded slots filled up is
/// refused with `503` when its head completes: the limit holds at the
/// upgrade too.
#[test]
fn the_connection_limit_holds_at_the_upgrade() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config().with_max_connections(1));
    let (req, _) = request(addr);
    let mut slow = tcp(addr);
    slow.write_all(&req[..20]).unwrap();
    wait_stats(&handle, "pending", |s| s.pending_handshakes == 1);
    let mut c = Client::connect(addr);
    wait_open(&events);
    slow.write_all(&req[20..]).unwrap();
    let resp = String::from_utf8(read_to_eof(&mut slow, TIMEOUT)).unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 503 Service Unavailable",
        "{resp}"
    );
    c.send_text("still here");
    assert_eq!(c.expect_text(), "still here");
    drop(c);
    stop(&handle, join);
}

// ------------------------------------------------------ the memory budget

/// A client frame header (masked, 64-bit length) announcing a binary
/// message of `len` bytes.
fn big_frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// Wait until the server's stats stop changing (it has read what was
/// sent): the same for 100 ms, within 10 s.
fn settled(handle: &Handle) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = stats(handle);
    let mut same = 0;
    while same < 5 {
        assert!(Instant::now() < deadline, "never settled: {last:?}");
        thread::sleep(Duration::from_millis(20));
        let s = stats(handle);
        same = if s == last { same + 1 } else { 0 };
        last = s;
    }
    last
}

const BUDGET: usize = 32 << 20;
const HOLDERS: usize = 64;
const PART: usize = 1536 << 10;
/// Heap the process may hold past its start besides the budget: what one
/// read adds before the check acts (a buffer's growth, ≤ 3 MiB here),
/// freed buffers the allocator keeps, 64 connections' own state, the
/// clients.
const OVERHEAD: u64 = 24 << 20;

/// 64 connections each send 1.5 MiB of a 2 MiB message (96 MiB in all)
/// against a 32 MiB budget: the largest holders are closed with 1013 until
/// the rest fit, the server's total never passes the budget by more than
/// one read's growth, and the process's peak RSS grows by less than the
/// budget plus a stated overhead.
#[test]
fn input_past_the_memory_budget_closes_the_largest_holders_with_1013() {
    let _heavy = heavy();
    let (echo, events) = Echo::new();
    let cfg = config()
        .with_max_buffered_bytes(BUDGET)
        .with_max_message_size(4 << 20)
        .with_max_frame_size(4 << 20);
    let (addr, handle, join) = start(echo, cfg);
    let mut clients: Vec<_> = (0..HOLDERS).map(|_| Client::connect(addr)).collect();
    for _ in 0..HOLDERS {
        wait_open(&events);
    }
    // Peak RSS from here (`clear_refs` 5 resets VmHWM; else VmRSS).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss0 = status_kib("VmRSS");

    let part = vec![0x5Au8; PART];
    for c in &mut clients {
        c.send_raw(&big_frame_header(2 << 20));
        // The server may close this one midway: it discards what follows.
        let _ = c.try_send_raw(&part);
    }
    let s = settled(&handle);
    let peak = if reset {
        status_kib("VmHWM")
    } else {
        status_kib("VmRSS")
    };
    let grew = (peak.saturating_sub(rss0)) << 10;
    eprintln!(
        "budget {BUDGET} B: {} B held, {} closed; peak RSS +{} KiB (bound {} KiB)",
        s.buffered_bytes,
        s.budget_closes,
        grew >> 10,
        (BUDGET as u64 + OVERHEAD) >> 10
    );
    assert!(s.buffered_bytes <= BUDGET, "{s:?}");
    let attempted = HOLDERS * PART;
    assert!(
        s.budget_closes as usize >= (attempted - BUDGET) / (2 << 20),
        "{s:?}"
    );
    assert!(grew <= BUDGET as u64 + OVERHEAD, "RSS grew {grew} B");

    // Each holder was closed with 1013 and no reply awaited, or holds on.
    let mut kept = Vec::new();
    for mut c in clients {
        match c.next_within(QUIET) {
            Some(Ev::Close(code, reason)) => {
                assert_eq!(code, Some(1013), "{reason}");
                assert_eq!(reason, "server memory budget exceeded");
            }
            None => kept.push(c),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(HOLDERS - kept.len(), s.budget_closes as usize);
    // Those left finish their messages and are echoed.
    let rest = vec![0x5Au8; (2 << 20) - PART];
    for c in &mut kept {
        c.send_raw(&rest);
        assert_eq!(c.expect_binary().len(), 2 << 20);
    }
    let s = wait_stats(&handle, "all delivered", |s| s.buffered_bytes == 0);
    assert_eq!(s.buffered_bytes, 0);
    drop(kept);
    stop(&handle, join);
}

/// Request heads that come in pieces count too: past a small budget the
/// largest partial head is answered `503` and closed.
#[test]
fn partial_request_heads_count_against_the_budget() {
    let (addr, handle, join) = start(Quiet, config().with_max_buffered_bytes(20_000));
    let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(6_000));
    let mut small = tcp(addr);
    small.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let s = wait_stats(&handle, "held", |s| s.buffered_bytes > 0);
    assert!(s.buffered_bytes < 1024, "{s:?}");
    let mut heads: Vec<_> = (0..4)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(long.as_bytes()).unwrap();
            s
        })
        .collect();
    let s = wait_stats(&handle, "shed", |s| s.budget_closes > 0);
    assert!(s.buffered_bytes <= 20_000, "{s:?}");
    let mut refused = 0;
    for h in &mut heads {
        h.set_read_timeout(Some(QUIET)).unwrap();
        let mut buf = Vec::new();
        if h.read_to_end(&mut buf).is_ok() {
            let resp = String::from_utf8(buf).unwrap();
            assert_eq!(status_line(&resp), "HTTP/1.1 503 Service Unavailable");
            refused += 1;
        }
    }
    assert_eq!(refused as u64, s.budget_closes);
    // The small one was never the largest.
    small.set_read_timeout(Some(QUIET)).unwrap();
    assert!(small.read(&mut [0u8; 1]).is_err());
    drop((small, heads));
    stop(&handle, join);
}

// ------------------------------------------------------ pausing reads

/// Reports opens, messages and closes, and answers nothing (so a peer
/// that does not read cannot fill its queue).
struct Record(mpsc::Sender<SrvEv>);

impl Handler for Record {
    type Conn = ();

    fn open(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.0.send(SrvEv::Open(id));
    }

    fn message(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = self.0.send(SrvEv::Message(id, msg.as_bytes().to_vec()));
    }

    fn close(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = self.0.send(SrvEv::Close(id, info));
    }
}

/// Run `f` on the loop and return its result.
fn call<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&mut Ctx<'_>) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(f(ctx));
        })
        .unwrap();
    rx.recv_timeout(TIMEOUT).expect("call")
}

/// Nothing is read from a paused connection — the peer's writes back up
/// into its own socket — while writes to it go on and do not resume it;
/// once resumed, everything that waited is delivered in order.
#[test]
fn pause_reading_holds_input_in_the_kernel_until_resumed() {
    let (tx, events) = mpsc::channel();
    let (addr, handle, join) = start(Record(tx), config());
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    assert!(call(&handle, move |ctx| ctx.pause_reading(id)));
    c.send_text("first");
    c.send_text("second");
    assert!(
        !matches!(
            events.recv_timeout(Duration::from_millis(100)),
            Ok(SrvEv::Message(..))
        ),
        "a paused connection was read"
    );
    // Writes still flow, and writable events do not resume reading.
    handle.send(id, wsmio::Frame::text("to you")).unwrap();
    assert_eq!(c.expect_text(), "to you");
    assert_eq!(
        call(&handle, move |ctx| ctx.is_reading_paused(id)),
        Some(true)
    );
    // The peer's writes back up: TCP flow control reached it.
    c.stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = c.frame_bytes(wsmio::proto::OpCode::Binary, true, &[7u8; 65536]);
    let mut sent = 0usize;
    loop {
        match c.stream.write(&chunk) {
            Ok(n) if n == chunk.len() => sent += 1,
            Ok(n) => {
                // A partial frame: finish it once reading resumes.
                let rest = chunk[n..].to_vec();
                sent += 1;
                assert!(call(&handle, move |ctx| ctx.resume_reading(id)));
                c.stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                c.send_raw(&rest);
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(call(&handle, move |ctx| ctx.resume_reading(id)));
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 4096, "256 MiB written to a paused connection");
    }
    c.stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    // Everything arrives, in order.
    let mut got = Vec::new();
    while got.len() < 2 + sent {
        got.push(wait_for(&events, TIMEOUT, |ev| match ev {
            SrvEv::Message(_, m) => Some(m.clone()),
            _ => None,
        }));
    }
    assert_eq!(got[0], b"first");
    assert_eq!(got[1], b"second");
    assert!(got[2..].iter().all(|m| m.len() == 65536));
    eprintln!("{sent} frames of 64 KiB waited for a paused reader");
    drop(c);
    stop(&handle, join);
}

/// A paused connection that the application closes is read again, so the
/// close handshake completes — even when the peer's close frame had already
/// arrived (its readiness reported) while it was paused.
#[test]
fn closing_a_paused_connection_reads_the_close_reply() {
    let (tx, events) = mpsc::channel();
    let (addr, handle, join) = start(Record(tx), config());
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    assert!(call(&handle, move |ctx| ctx.pause_reading(id)));
    c.close(1000, "bye");
    thread::sleep(QUIET);
    call(&handle, move |ctx| {
        ctx.close(id, wsmio::CloseCode::NORMAL, "ok");
    });
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert!(info.clean, "{info:?}");
    // Gone: pausing reports it.
    assert!(!call(&handle, move |ctx| ctx.pause_reading(id)));
    stop(&handle, join);
}

// ------------------------------------------------------ timers

/// Reports each timer as (token, loop time); token 7 sets token 8 with no
/// delay from its callback.
struct Timers {
    fired: mpsc::Sender<(u64, u64)>,
}

impl Handler for Timers {
    type Conn = ();

    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}

    fn timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        let _ = self.fired.send((token, ctx.now_ms()));
        if token == 7 {
            ctx.set_timer(Duration::ZERO, 8).unwrap();
        }
    }
}

/// Timers on a driven clock: each fires at its deadline to the
/// millisecond, a cancelled one never, at most `max_timers` are set, and
/// a timer set from a timer callback waits for a later turn.
#[test]
fn application_timers_on_a_driven_clock() {
    let (tx, fired) = mpsc::channel();
    let (cfg, clock) = clocked_config();
    let (_addr, handle, join) = start(Timers { fired: tx }, cfg.with_max_timers(3));
    let (set, set_count) = call(&handle, |ctx| {
        let set = [(100, 1), (200, 2), (200, 3), (5, 4)]
            .map(|(ms, token)| ctx.set_timer(Duration::from_millis(ms), token));
        (set, ctx.stats().timers)
    });
    let [first, second, third, fourth] = set;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(third.is_ok());
    assert_eq!(fourth, Err(TimerError::Full));
    assert_eq!(set_count, 3);
    assert!(call(&handle, move |ctx| ctx.cancel_timer(second)));
    assert!(!call(&handle, move |ctx| ctx.cancel_timer(second)));
    step(&clock, 99);
    assert!(fired.recv_timeout(QUIET).is_err());
    step(&clock, 1);
    assert_eq!(fired.recv_timeout(TIMEOUT), Ok((1, 100)));
    assert!(
        !call(&handle, move |ctx| ctx.cancel_timer(first)),
        "it fired"
    );
    step(&clock, 100);
    assert_eq!(fired.recv_timeout(TIMEOUT), Ok((3, 200)));
    assert!(
        fired.recv_timeout(QUIET).is_err(),
        "the cancelled one fired"
    );
    // A timer set in a callback with no delay fires on a later turn.
    call(&handle, |ctx| ctx.set_timer(Duration::ZERO, 7).unwrap());
    assert_eq!(fired.recv_timeout(TIMEOUT), Ok((7, 200)));
    assert!(fired.recv_timeout(QUIET).is_err());
    step(&clock, 1);
    assert_eq!(fired.recv_timeout(TIMEOUT), Ok((8, 201)));
    assert_eq!(stats(&handle).timers, 0);
    stop(&handle, join);
}

/// On the system clock a timer wakes a sleeping loop by itself.
#[test]
fn an_application_timer_wakes_the_loop() {
    let (tx, fired) = mpsc::channel();
    let (_addr, handle, join) = start(Timers { fired: tx }, config());
    let t0 = Instant::now();
    call(&handle, |ctx| {
        ctx.set_timer(Duration::from_millis(50), 5).unwrap()
    });
    let (token, _) = fired.recv_timeout(TIMEOUT).expect("the timer fired");
    assert_eq!(token, 5);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(49), "{took:?}");
    stop(&handle, join);
}

// ------------------------------------------------------ HEAD, flush point

/// Serves a page; on "big", sends 1 MiB and reports the queue right after.
struct Page {
    queued: mpsc::Sender<Option<usize>>,
}

const PAGE: &[u8] = b"<!doctype html><title>wsmio</title><p>hello</p>\n";

impl Handler for Page {
    type Conn = ();

    fn http(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> HttpResponse {
        // The same answer for HEAD as for GET: the loop drops the body.
        let status = if req.path == "/" { 200 } else { 404 };
        HttpResponse::new(status, "text/html", PAGE.to_vec())
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        if msg.as_bytes() == b"big" {
            let _ = ctx.send_binary(id, &vec![9u8; 1 << 20]);
            let _ = self.queued.send(ctx.queued_bytes(id));
        }
    }
}

/// `HEAD` gets the `GET` response's head — `Content-Length` the body's
/// length — and no body (RFC 9110 §9.3.2); so does a refused `HEAD`
/// upgrade.
#[test]
fn head_gets_the_headers_without_the_body() {
    let (tx, _) = mpsc::channel();
    let (addr, handle, join) = start(Page { queued: tx }, config());
    let get = http_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = http_exchange(addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let len = PAGE.len().to_string();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
    assert!(has_header(&head, "Content-Length", &len), "{head}");
    assert!(get.ends_with(std::str::from_utf8(PAGE).unwrap()));
    assert_eq!(head.len(), get.len() - PAGE.len(), "{head:?}");
    assert!(head.ends_with("\r\n\r\n"));
    // A HEAD upgrade request is refused (405), without the reason as body.
    let (req, _) = request(addr);
    let req = String::from_utf8(req).unwrap().replacen("GET ", "HEAD ", 1);
    let resp = http_exchange(addr, req.as_bytes());
    assert_eq!(status_line(&resp), "HTTP/1.1 405 Method Not Allowed");
    assert!(resp.ends_with("\r\n\r\n"), "{resp:?}");
    let reason = "WebSocket upgrade requires GET\n";
    assert!(
        has_header(&resp, "Content-Length", &reason.len().to_string()),
        "{resp:?}"
    );
    stop(&handle, join);
}

/// A send only queues — even a payload large enough that it used to be
/// written straight from the caller's buffer — and the flush after the
/// read writes it.
#[test]
fn a_large_send_is_queued_and_written_at_the_flush() {
    let (tx, queued) = mpsc::channel();
    let (addr, handle, join) = start(Page { queued: tx }, config());
    let mut c = Client::connect(addr);
    c.send_text("big");
    assert_eq!(queued.recv_timeout(TIMEOUT), Ok(Some((1 << 20) + 10)));
    assert_eq!(c.expect_binary(), vec![9u8; 1 << 20]);
    drop(c);
    stop(&handle, join);
}
