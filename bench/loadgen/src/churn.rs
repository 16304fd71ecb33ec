//! CHURN MODE (`--mode churn`): connection churn.
//!
//! Every cycle is: TCP connect -> HTTP upgrade (101 and Sec-WebSocket-Accept
//! verified) -> masked close frame (status 1000) -> the server's close frame
//! (unmasked, empty or status 1000) -> the server's TCP FIN (EOF) -> close the
//! socket.  Waiting for the server's FIN (RFC 6455 7.1.1: the server closes the
//! TCP connection first) keeps TIME_WAIT on the server side, so the client's
//! ephemeral ports do not run out.
//!
//! At most `--conns` cycles are in flight; `--rate R` paces the starts to R per
//! second (0 = start a new cycle as soon as one finishes).  Cycles started
//! during `--warmup` run but are not counted; cycles started during the
//! `--duration` window are counted (cycles_per_s = counted completions / window);
//! then no new cycle starts and the ones in flight get up to `--drain` seconds.
//! Every cycle has a deadline of `--cycle-timeout` seconds.
//!
//! Failures, counted over the whole run (warmup included); any of them makes ok=0:
//! - `connect_errors`: connect() failed, or the asynchronous connect failed
//! - `handshake_errors`: bad or short upgrade response, EOF or error before it
//! - `close_errors`: bad close frame, EOF or reset before the close frame
//! - `timeouts`: no close frame before the cycle deadline
//! - `unfinished`: still in flight when the drain ended
//!
//! Reported, not failures: `no_fin` (close frame received but no FIN before the
//! deadline: the client closed first), `other_frames` (non-close frames received).
//! Latency: handshake (connect start -> 101 parsed) and whole cycle (connect
//! start -> FIN), HDR histograms of the counted cycles.  With `--server-pid`, the
//! server's RSS and open fds are read before the first and after the last cycle
//! (+ 0.5 s), to show leaks.
//!
//! Output: one `RESULT mode=churn ...` line; exit status 1 unless ok=1.
use super::*;
use std::os::unix::io::AsRawFd;

#[derive(PartialEq, Clone, Copy, Debug)]
enum Ph {
    Connecting,
    Handshaking,
    CloseSent,
    AwaitFin,
}

struct Slot {
    s: TcpStream,
    ph: Ph,
    buf: Vec<u8>,
    len: usize,
    wbuf: Vec<u8>,
    woff: usize,
    t0: u64,
    deadline: Instant,
    measured: bool,
}

#[derive(Default)]
struct Counts {
    started: u64,
    completed: u64,
    completed_all: u64,
    connect_errors: u64,
    handshake_errors: u64,
    close_errors: u64,
    timeouts: u64,
    unfinished: u64,
    no_fin: u64,
    other_frames: u64,
    first_err: Option<String>,
}

enum Outcome {
    Pending,
    Done,
    ConnectErr(String),
    HandshakeErr(String),
    CloseErr(String),
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, val: *const std::ffi::c_void, len: u32) -> i32;
}

fn connect(o: &Opts, idx: u64) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    if o.src_ips > 1 {
        // IP_BIND_ADDRESS_NO_PORT (24): pick the port at connect() time by the
        // full 4-tuple, so bound sockets do not exhaust the port range.
        let one: i32 = 1;
        unsafe {
            setsockopt(sock.as_raw_fd(), 0, 24, &one as *const i32 as *const _, 4);
        }
        let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % o.src_ips as u64) as u8);
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    }
    let dst = SocketAddr::V4(SocketAddrV4::new(o.host, o.port));
    match sock.connect(&dst.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc_einprogress())
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = sock.into();
    Ok(TcpStream::from_std(std_stream))
}

fn flush_slot(sl: &mut Slot) -> io::Result<()> {
    while sl.woff < sl.wbuf.len() {
        match sl.s.write(&sl.wbuf[sl.woff..]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write 0")),
            Ok(n) => sl.woff += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if sl.woff == sl.wbuf.len() {
        sl.wbuf.clear();
        sl.woff = 0;
    }
    Ok(())
}

/// Parse frames in buf while waiting for the server's close frame.
/// Ok(true) = close frame seen and valid.
fn parse_close(sl: &mut Slot, c: &mut Counts) -> Result<bool, String> {
    let mut pos = 0;
    let mut got = false;
    while sl.len - pos >= 2 {
        let b = &sl.buf[pos..sl.len];
        let op = b[0] & 0x0f;
        if b[0] & 0x70 != 0 || b[1] & 0x80 != 0 {
            return Err("server frame has RSV bits or mask set".into());
        }
        let l7 = (b[1] & 0x7f) as usize;
        let (hdr, len) = if l7 < 126 {
            (2, l7)
        } else if l7 == 126 {
            if b.len() < 4 {
                break;
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as usize)
        } else {
            if b.len() < 10 {
                break;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(a) as usize)
        };
        if len > (16 << 20) {
            return Err(format!("frame too large: {}", len));
        }
        if b.len() < hdr + len {
            if sl.buf.len() < hdr + len + 64 {
                sl.buf.resize(hdr + len + 64, 0);
            }
            break;
        }
        let pl = &b[hdr..hdr + len];
        if op == 8 {
            if b[0] & 0x80 == 0 || len == 1 || len > 125 {
                return Err(format!(
                    "invalid close frame (fin={}, len={})",
                    b[0] >> 7,
                    len
                ));
            }
            if len >= 2 {
                let code = u16::from_be_bytes([pl[0], pl[1]]);
                if code != 1000 {
                    return Err(format!("close frame with code {} (sent 1000)", code));
                }
                if std::str::from_utf8(&pl[2..]).is_err() {
                    return Err("close reason is not UTF-8".into());
                }
            }
            got = true;
            pos += hdr + len;
            break;
        }
        c.other_frames += 1;
        pos += hdr + len;
    }
    sl.buf.copy_within(pos..sl.len, 0);
    sl.len -= pos;
    Ok(got)
}

/// Drive one slot as far as readiness allows.
fn drive(
    sl: &mut Slot,
    c: &mut Counts,
    hs_req: &[u8],
    base: Instant,
    hs_hist: &mut Histogram<u64>,
) -> Outcome {
    if sl.ph == Ph::Connecting {
        match sl.s.take_error() {
            Ok(Some(e)) | Err(e) => return Outcome::ConnectErr(format!("connect error: {}", e)),
            Ok(None) => {}
        }
        match sl.s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Pending,
            Err(e) => return Outcome::ConnectErr(format!("connect error: {}", e)),
        }
        sl.ph = Ph::Handshaking;
        sl.wbuf.extend_from_slice(hs_req);
    }
    if let Err(e) = flush_slot(sl) {
        let m = format!("write error in {:?}: {}", sl.ph, e);
        return if sl.ph == Ph::Handshaking {
            Outcome::HandshakeErr(m)
        } else {
            Outcome::CloseErr(m)
        };
    }
    // read everything available
    let mut eof = false;
    let mut rerr: Option<io::Error> = None;
    loop {
        if sl.len == sl.buf.len() {
            if sl.ph == Ph::Handshaking {
                return Outcome::HandshakeErr("handshake response too large".into());
            }
            let nl = sl.buf.len() * 2;
            sl.buf.resize(nl, 0);
        }
        match sl.s.read(&mut sl.buf[sl.len..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => sl.len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                rerr = Some(e);
                break;
            }
        }
    }
    if sl.ph == Ph::Handshaking {
        match find_hdr_end(&sl.buf[..sl.len]) {
            Some(pos) => {
                let head = String::from_utf8_lossy(&sl.buf[..pos]).to_string();
                let status_ok = head.starts_with("HTTP/1.1 101");
                let accept_ok = head.lines().any(|l| {
                    let mut it = l.splitn(2, ':');
                    let k = it.next().unwrap_or("").trim();
                    let v = it.next().unwrap_or("").trim();
                    k.eq_ignore_ascii_case("sec-websocket-accept") && v == ACCEPT
                });
                if !status_ok || !accept_ok {
                    return Outcome::HandshakeErr(format!(
                        "bad handshake response: {:?}",
                        head.lines().next()
                    ));
                }
                if sl.measured {
                    let _ = hs_hist.record(now_ns(base).saturating_sub(sl.t0).max(1));
                }
                sl.buf.copy_within(pos..sl.len, 0);
                sl.len -= pos;
                sl.ph = Ph::CloseSent;
                // masked close frame, status 1000
                sl.wbuf.extend_from_slice(&[0x88, 0x82]);
                sl.wbuf.extend_from_slice(&MASK);
                sl.wbuf.push(0x03 ^ MASK[0]);
                sl.wbuf.push(0xe8 ^ MASK[1]);
                if let Err(e) = flush_slot(sl) {
                    // the server may legitimately have closed already only after our close frame
                    return Outcome::CloseErr(format!("write error sending close: {}", e));
                }
            }
            None => {
                if let Some(e) = rerr {
                    return Outcome::HandshakeErr(format!("read error in handshake: {}", e));
                }
                if eof {
                    return Outcome::HandshakeErr("EOF during handshake".into());
                }
                return Outcome::Pending;
            }
        }
    }
    if sl.ph == Ph::CloseSent {
        match parse_close(sl, c) {
            Ok(true) => sl.ph = Ph::AwaitFin,
            Ok(false) => {
                if let Some(e) = rerr {
                    return Outcome::CloseErr(format!("read error before close frame: {}", e));
                }
                if eof {
                    return Outcome::CloseErr("EOF before the server's close frame".into());
                }
                return Outcome::Pending;
            }
            Err(e) => return Outcome::CloseErr(e),
        }
    }
    // AwaitFin: anything after the close frame is ignored; EOF or an error ends the cycle
    sl.len = 0;
    if eof || rerr.is_some() {
        return Outcome::Done;
    }
    Outcome::Pending
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid)).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{}/fd", pid)).ok()?.count())
}

pub fn run(o: &Opts, hs_req: &[u8]) -> ! {
    let base = Instant::now();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let cap = o.conns;
    let mut slots: Vec<Option<Slot>> = (0..cap).map(|_| None).collect();
    let mut free: Vec<usize> = (0..cap).rev().collect();
    let mut c = Counts::default();
    let mut hs_hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).unwrap();
    let mut cy_hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).unwrap();
    let spid = o.server_pid.to_string();
    let srv_cpu = || {
        if o.server_pid > 0 {
            cpu_ticks(&spid)
        } else {
            None
        }
    };
    let (rss0, fds0) = if o.server_pid > 0 {
        (rss_kb(o.server_pid), fds(o.server_pid))
    } else {
        (None, None)
    };
    let na = |x: Option<String>| x.unwrap_or_else(|| "na".into());

    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs_f64(o.warmup);
    let end = warm_end + Duration::from_secs_f64(o.duration);
    let drain_end = end + Duration::from_secs_f64(o.drain);
    let cycle_to = Duration::from_secs_f64(o.cycle_timeout);
    let mut measuring = false;
    let mut cpu0 = (None, None);
    let mut cpu1 = (None, None);
    let mut secs = 0.0;
    let mut idx: u64 = 0;
    let mut loops: u64 = 0;
    let mut done_starting = false;
    let mut next_scan = Instant::now();
    if o.warmup == 0.0 {
        measuring = true;
        cpu0 = (cpu_ticks("self"), srv_cpu());
    }
    loop {
        let now_i = Instant::now();
        if !measuring && !done_starting && now_i >= warm_end {
            measuring = true;
            cpu0 = (cpu_ticks("self"), srv_cpu());
        }
        if !done_starting && now_i >= end {
            done_starting = true;
            secs = now_i.duration_since(warm_end).as_secs_f64();
            cpu1 = (cpu_ticks("self"), srv_cpu());
            measuring = false;
        }
        let in_flight = cap - free.len();
        if done_starting && (in_flight == 0 || now_i >= drain_end) {
            break;
        }
        // start new cycles
        if !done_starting {
            let due = if o.rate > 0.0 {
                let want = (now_i.duration_since(t0).as_secs_f64() * o.rate) as u64 + 1;
                want.saturating_sub(c.started)
            } else {
                u64::MAX
            };
            let mut n = 0u64;
            while n < due && !free.is_empty() {
                let k = free.pop().unwrap();
                c.started += 1;
                n += 1;
                match connect(o, idx) {
                    Ok(mut s) => {
                        poll.registry()
                            .register(&mut s, Token(k), Interest::READABLE | Interest::WRITABLE)
                            .expect("register");
                        slots[k] = Some(Slot {
                            s,
                            ph: Ph::Connecting,
                            buf: vec![0u8; 1024],
                            len: 0,
                            wbuf: Vec::with_capacity(256),
                            woff: 0,
                            t0: now_ns(base),
                            deadline: Instant::now() + cycle_to,
                            measured: measuring,
                        });
                    }
                    Err(e) => {
                        c.connect_errors += 1;
                        if c.first_err.is_none() {
                            c.first_err = Some(format!("connect() failed: {}", e));
                        }
                        free.push(k);
                        idx += 1;
                        break; // do not spin on a failing connect(); retry after the next poll
                    }
                }
                idx += 1;
            }
        }
        let to = if o.spin {
            Duration::ZERO
        } else if o.rate > 0.0 && !done_starting {
            let next = t0 + Duration::from_secs_f64(c.started as f64 / o.rate);
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50))
        } else {
            Duration::from_millis(50)
        };
        poll.poll(&mut events, Some(to)).expect("poll");
        loops += 1;
        for ev in events.iter() {
            let k = ev.token().0;
            let Some(sl) = slots[k].as_mut() else {
                continue;
            };
            let out = drive(sl, &mut c, hs_req, base, &mut hs_hist);
            let (finish, err) = match out {
                Outcome::Pending => (false, None),
                Outcome::Done => (true, None),
                Outcome::ConnectErr(m) => {
                    c.connect_errors += 1;
                    (true, Some(m))
                }
                Outcome::HandshakeErr(m) => {
                    c.handshake_errors += 1;
                    (true, Some(m))
                }
                Outcome::CloseErr(m) => {
                    c.close_errors += 1;
                    (true, Some(m))
                }
            };
            if finish {
                let sl = slots[k].take().unwrap();
                if err.is_none() {
                    c.completed_all += 1;
                    if sl.measured {
                        c.completed += 1;
                        let _ = cy_hist.record(now_ns(base).saturating_sub(sl.t0).max(1));
                    }
                } else if c.first_err.is_none() {
                    c.first_err = err;
                }
                drop(sl); // closes the socket (and removes it from epoll)
                free.push(k);
            }
        }
        // deadlines (checked every 20 ms: they are seconds long)
        let now_i = Instant::now();
        if now_i < next_scan {
            continue;
        }
        next_scan = now_i + Duration::from_millis(20);
        for (k, slot) in slots.iter_mut().enumerate() {
            let expired = matches!(slot, Some(sl) if now_i >= sl.deadline);
            if expired {
                let sl = slot.take().unwrap();
                if sl.ph == Ph::AwaitFin {
                    // close handshake done, the server just did not close TCP: the client closes first
                    c.no_fin += 1;
                    c.completed_all += 1;
                    if sl.measured {
                        c.completed += 1;
                        let _ = cy_hist.record(now_ns(base).saturating_sub(sl.t0).max(1));
                    }
                } else {
                    c.timeouts += 1;
                    if c.first_err.is_none() {
                        c.first_err = Some(format!("cycle timeout in state {:?}", sl.ph));
                    }
                }
                free.push(k);
            }
        }
    }
    c.unfinished = (cap - free.len()) as u64;
    if c.unfinished > 0 && c.first_err.is_none() {
        c.first_err = Some(format!(
            "{} cycles unfinished at the end of the drain",
            c.unfinished
        ));
    }
    for sl in slots.iter_mut() {
        sl.take();
    }
    if secs == 0.0 {
        secs = Instant::now()
            .duration_since(warm_end)
            .as_secs_f64()
            .max(1e-9);
        cpu1 = (cpu_ticks("self"), srv_cpu());
    }
    let (rss1, fds1) = if o.server_pid > 0 {
        std::thread::sleep(Duration::from_millis(500));
        (rss_kb(o.server_pid), fds(o.server_pid))
    } else {
        (None, None)
    };
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(format!(
            "{:.0}",
            b.saturating_sub(a) as f64 / 100.0 / secs * 100.0
        )),
        _ => None,
    };
    let errors = c.connect_errors + c.handshake_errors + c.close_errors + c.timeouts + c.unfinished;
    let ok = errors == 0 && c.completed > 0;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    if !o.quiet {
        eprintln!(
            "loadgen: churn {} cycles started, {} completed ({} counted) in {:.2}s window, poll-loops {}",
            c.started, c.completed_all, c.completed, secs, loops
        );
        if let Some(e) = &c.first_err {
            eprintln!("loadgen: first error: {}", e);
        }
    }
    println!(
        "RESULT mode=churn conns={} rate={} secs={:.2} started={} completed={} cycles_per_s={:.0} \
         hs_p50_us={:.1} hs_p99_us={:.1} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
         connect_errors={} handshake_errors={} close_errors={} timeouts={} unfinished={} errors={} no_fin={} other_frames={} \
         client_cpu_pct={} server_cpu_pct={} server_rss_start_kb={} server_rss_end_kb={} server_fds_start={} server_fds_end={} ok={}",
        cap,
        o.rate,
        secs,
        c.started,
        c.completed,
        c.completed as f64 / secs,
        q(&hs_hist, 0.5),
        q(&hs_hist, 0.99),
        q(&cy_hist, 0.5),
        q(&cy_hist, 0.99),
        q(&cy_hist, 0.999),
        cy_hist.max() as f64 / 1000.0,
        c.connect_errors,
        c.handshake_errors,
        c.close_errors,
        c.timeouts,
        c.unfinished,
        errors,
        c.no_fin,
        c.other_frames,
        na(pct(cpu0.0, cpu1.0)),
        na(pct(cpu0.1, cpu1.1)),
        na(rss0.map(|v| v.to_string())),
        na(rss1.map(|v| v.to_string())),
        na(fds0.map(|v| v.to_string())),
        na(fds1.map(|v| v.to_string())),
        ok as u8
    );
    std::process::exit(if ok { 0 } else { 1 });
}
