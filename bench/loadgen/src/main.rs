//! loadgen: single-threaded, mio-based WebSocket echo load generator.
//!
//! * N client connections, each keeping `depth` messages in flight (pipelined).
//! * Frames are pre-built and pre-masked; per message only an 8-byte sequence
//!   tag is patched in, so the client does very little work per message.
//! * Every echoed message is verified byte-for-byte (opcode, length, sequence
//!   tag, body), so a broken server cannot look fast.
//! * Latency (send -> echo received) goes into an HDR histogram; it is a
//!   round-trip time only at depth 1 (at depth > 1 it includes queueing).
//! * Everything is bounded: connect phase, warmup, duration (<= 600 s),
//!   optional message count.
//!
//! Modes:
//!   echo  (default) measure echo throughput/latency
//!   idle  open N connections, print "READY", hold them for --hold seconds
//!         (answering pings), then exit; used to measure server RSS.
//!   fanout  broadcast (pub/sub hub) benchmark against a server that delivers
//!         every message any client sends to ALL connected clients, the sender
//!         included.  See `mod fanout notes` below (search "FANOUT MODE").
//!         With --hub: the same measurement against the wsmio hub's JSON
//!         protocol on /ws (subscribe, publish, `msg` deliveries): hubfan.rs,
//!         which also drives hub clusters (publishers on one node, subscribers
//!         on others: --pub-port, --sub-ports), paced publishing (--rate),
//!         publishes with acks (--acks), subscribers that acknowledge what
//!         they received (--ack-every K) and other processes' CPU (--watch).
//!   churn connection churn: open a connection, upgrade it, close it (close
//!         handshake, then wait for the server's TCP FIN), over and over, at
//!         most --conns cycles in flight, optionally paced to --rate cycles/s,
//!         for a bounded duration; every failure is counted by kind: churn.rs.
//!
//! Output ends with one machine-readable line starting with "RESULT".

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SEQ_LEN: usize = 8;

#[derive(Clone)]
struct Opts {
    host: Ipv4Addr,
    port: u16,
    conns: usize,
    size: usize,
    binary: bool,
    depth: usize,
    duration: f64,
    warmup: f64,
    mode: String,
    hold: f64,
    src_ips: u32,
    max_msgs: u64,
    connect_timeout: f64,
    max_pending: usize,
    quiet: bool,
    server_pid: u32,
    spin: bool,
    publishers: usize,
    window: usize,
    drain: f64,
    server_core: i32,
    /// churn: target cycles per second (0 = as fast as --conns in flight allow)
    rate: f64,
    /// churn: a cycle that has not completed its close handshake by then is a timeout
    cycle_timeout: f64,
    /// fanout against the wsmio hub's JSON protocol (see hubfan.rs)
    hub: bool,
    /// request path of the upgrade (default "/"; "/ws" with --hub)
    path: String,
    /// hub: token appended as ?token=
    token: String,
    /// hub: publishers are `--publishers` extra connections to this port that
    /// never subscribe (0: the last P subscribers publish, as before)
    pub_port: u16,
    /// hub: ports the subscribers connect to, round robin (default: --port)
    sub_ports: Vec<u16>,
    /// hub: every publish carries an `id`; `--window` bounds the acks outstanding
    acks: bool,
    /// hub: the topic (default "bench")
    topic: String,
    /// hub: the `engine` every welcome must name ("": not checked)
    expect_engine: String,
    /// hub: processes whose CPU use over the measured window is reported
    /// (`cpu_<name>_pct`)
    watch: Vec<(String, u32)>,
    /// hub: every subscriber acknowledges (`{"op":"ack",...}`) once per this
    /// many deliveries it received, for the seq of the last one (0: never)
    ack_every: u64,
    /// hub and idle: offer permessage-deflate (RFC 7692, no context
    /// takeover either way); compressed deliveries are inflated and checked
    /// like plain ones, and the publishes' filler is chat-like words
    deflate: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen [--host 127.0.0.1] --port P [--conns N=100] [--size B=20] [--binary]\n\
         \x20              [--depth D=1] [--duration S=5] [--warmup S=1] [--mode echo|idle]\n\
         \x20              [--hold S=10] [--src-ips K=1] [--max-msgs N] [--connect-timeout S=30]\n\
         \x20              [--max-pending N=256] [--server-pid PID] [--spin] [--quiet]\n\
         \x20              fanout mode: --mode fanout --conns S [--publishers P=1] [--window W=16]\n\
         \x20              [--size B>=20 (binary frames)] [--drain S=3] [--server-core N]\n\
         \x20              churn mode: --mode churn [--conns N in flight] [--rate R/s (0 = max)]\n\
         \x20              [--cycle-timeout S=5] [--drain S=3] [--src-ips K] [--path /p]\n\
         \x20              wsmio hub (JSON on /ws): --mode fanout --hub [--path /ws] [--token JWT] [--size B>=40]\n\
         \x20              [--topic T] [--pub-port P] [--sub-ports P1,P2] [--rate R publishes/s (paced)]\n\
         \x20              [--acks] [--ack-every K] [--expect-engine memory|redis] [--watch name=PID,...]\n\
         Loopback targets only (127.0.0.0/8). duration/hold are capped at 600 s."
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        host: Ipv4Addr::new(127, 0, 0, 1),
        port: 0,
        conns: 100,
        size: 20,
        binary: false,
        depth: 1,
        duration: 5.0,
        warmup: 1.0,
        mode: "echo".into(),
        hold: 10.0,
        src_ips: 1,
        max_msgs: u64::MAX,
        connect_timeout: 30.0,
        max_pending: 256,
        quiet: false,
        server_pid: 0,
        spin: false,
        publishers: 1,
        window: 16,
        drain: 3.0,
        server_core: -1,
        rate: 0.0,
        cycle_timeout: 5.0,
        hub: false,
        path: String::new(),
        token: String::new(),
        pub_port: 0,
        sub_ports: Vec::new(),
        acks: false,
        topic: "bench".into(),
        expect_engine: String::new(),
        watch: Vec::new(),
        ack_every: 0,
        deflate: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let val = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| usage())
    };
    while i < args.len() {
        match args[i].as_str() {
            "--host" => o.host = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--port" => o.port = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--conns" => o.conns = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--size" => o.size = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--binary" => o.binary = true,
            "--text" => o.binary = false,
            "--depth" => o.depth = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--duration" => o.duration = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--mode" => o.mode = val(&mut i),
            "--hold" => o.hold = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--src-ips" => o.src_ips = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--max-msgs" => o.max_msgs = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--connect-timeout" => {
                o.connect_timeout = val(&mut i).parse().unwrap_or_else(|_| usage())
            }
            "--max-pending" => o.max_pending = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--quiet" => o.quiet = true,
            "--spin" => o.spin = true,
            "--server-pid" => o.server_pid = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--publishers" => o.publishers = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--window" => o.window = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--drain" => o.drain = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--server-core" => o.server_core = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--rate" => o.rate = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--cycle-timeout" => o.cycle_timeout = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--hub" => o.hub = true,
            "--path" => o.path = val(&mut i),
            "--token" => o.token = val(&mut i),
            "--pub-port" => o.pub_port = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--sub-ports" => {
                o.sub_ports = val(&mut i)
                    .split(',')
                    .map(|p| p.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--acks" => o.acks = true,
            "--deflate" => o.deflate = true,
            "--ack-every" => o.ack_every = val(&mut i).parse().unwrap_or_else(|_| usage()),
            "--topic" => o.topic = val(&mut i),
            "--expect-engine" => o.expect_engine = val(&mut i),
            "--watch" => {
                for w in val(&mut i).split(',').filter(|w| !w.is_empty()) {
                    let (n, p) = w.split_once('=').unwrap_or_else(|| usage());
                    let ok =
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    match (ok, p.parse::<u32>()) {
                        (true, Ok(pid)) => o.watch.push((n.to_string(), pid)),
                        _ => usage(),
                    }
                }
            }
            _ => usage(),
        }
        i += 1;
    }
    if o.port == 0 || o.conns == 0 || o.depth == 0 || o.depth > 65536 {
        usage()
    }
    if o.host.octets()[0] != 127 {
        eprintln!("loadgen: only loopback (127.0.0.0/8) targets are allowed");
        std::process::exit(2);
    }
    if o.mode != "echo" && o.mode != "idle" && o.mode != "fanout" && o.mode != "churn" {
        usage()
    }
    if o.mode == "fanout" {
        if o.size < fanout::HDR
            || o.publishers == 0
            || (o.publishers > o.conns && o.pub_port == 0)
            || o.window == 0
            || o.window > 65536
        {
            eprintln!("loadgen: fanout needs --size >= {}, 1 <= --publishers <= --conns (unless --pub-port), 1 <= --window <= 65536", fanout::HDR);
            std::process::exit(2);
        }
        o.binary = true;
    }
    o.drain = o.drain.clamp(0.1, 60.0);
    if o.src_ips == 0 || o.src_ips > 250 {
        usage()
    }
    o.duration = o.duration.clamp(0.1, 600.0);
    o.warmup = o.warmup.clamp(0.0, 60.0);
    o.hold = o.hold.clamp(0.0, 600.0);
    o.connect_timeout = o.connect_timeout.clamp(1.0, 120.0);
    if !(o.rate >= 0.0 && o.rate.is_finite()) {
        usage()
    }
    o.cycle_timeout = o.cycle_timeout.clamp(0.1, 60.0);
    if o.hub
        && (o.mode != "fanout" || o.size < 40 || !o.path.is_empty() && !o.path.starts_with('/'))
    {
        eprintln!(
            "loadgen: --hub needs --mode fanout and --size >= 40; --path must start with '/'"
        );
        std::process::exit(2);
    }
    let hub_only = o.pub_port != 0
        || (o.rate > 0.0 && o.mode == "fanout")
        || !o.sub_ports.is_empty()
        || o.acks
        || o.ack_every > 0
        || o.topic != "bench"
        || !o.expect_engine.is_empty()
        || !o.watch.is_empty();
    if hub_only && !o.hub {
        eprintln!("loadgen: --pub-port, --sub-ports, --acks, --ack-every, --topic, --expect-engine, --watch (and --rate in fanout mode) are for --hub only");
        std::process::exit(2);
    }
    // the topic goes into JSON unescaped and is matched byte for byte
    if o.topic.is_empty()
        || o.topic.len() > 128
        || !o
            .topic
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        || o.sub_ports.contains(&0)
    {
        eprintln!("loadgen: --topic must be 1-128 printable ASCII bytes without quotes or backslashes; ports must not be 0");
        std::process::exit(2);
    }
    if !o.path.is_empty() && !o.hub && (o.mode != "churn" || !o.path.starts_with('/')) {
        eprintln!("loadgen: --path is for --hub and --mode churn only and must start with '/'");
        std::process::exit(2);
    }
    o
}

#[derive(PartialEq, Clone, Copy, Debug)]
enum St {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

struct Conn {
    s: TcpStream,
    st: St,
    rbuf: Vec<u8>,
    rs: usize,
    re: usize,
    wbuf: Vec<u8>,
    woff: usize,
    send_seq: u32,
    recv_seq: u32,
    inflight: VecDeque<u64>,
    frag: Vec<u8>,
    frag_op: u8,
    in_frag: bool,
    /// fanout: next expected sequence number from each publisher
    exp: Vec<u64>,
    /// echo with large frames: the heads (header + masked sequence tag) of
    /// the frames waiting to be written, `Template::head_len` bytes each;
    /// their identical rest is written straight from the template.
    tx_heads: Vec<u8>,
    /// bytes of the first waiting frame already written
    tx_off: usize,
}

/// Pre-built, pre-masked frame for one message; the sequence tag (first
/// SEQ_LEN payload bytes, as ASCII letters 'a'..'p' per nibble) is patched in.
struct Template {
    frame: Vec<u8>,
    hdr: usize,
    body: Vec<u8>, // unmasked payload (expected echo), seq area included (placeholder)
    op: u8,
    has_seq: bool,
}

impl Template {
    fn new(size: usize, binary: bool, words: bool) -> Template {
        let op = if binary { 2u8 } else { 1u8 };
        let body = if words {
            // `--deflate`: chat-like text that compresses as chat does
            hubfan::words(size)
        } else {
            // printable ASCII filler (valid UTF-8 for text frames), position dependent
            (0..size).map(|i| b'A' + (i % 26) as u8).collect()
        };
        let mut frame = Vec::with_capacity(size + 14);
        frame.push(0x80 | op);
        if size < 126 {
            frame.push(0x80 | size as u8);
        } else if size < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(size as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(size as u64).to_be_bytes());
        }
        frame.extend_from_slice(&MASK);
        let hdr = frame.len();
        for (i, b) in body.iter().enumerate() {
            frame.push(b ^ MASK[i & 3]);
        }
        Template {
            frame,
            hdr,
            body,
            op,
            has_seq: size >= SEQ_LEN,
        }
    }

    #[inline]
    fn seq_bytes(seq: u32) -> [u8; SEQ_LEN] {
        let mut t = [0u8; SEQ_LEN];
        for (k, b) in t.iter_mut().enumerate() {
            *b = b'a' + ((seq >> (28 - 4 * k as u32)) & 0xf) as u8;
        }
        t
    }

    /// Frames at least this long are written by reference to the template
    /// (writev of their head and the shared rest) instead of copied.
    const BY_REF_MIN: usize = 1024;

    /// Bytes of a frame that differ per message: header and sequence tag.
    fn head_len(&self) -> usize {
        if self.has_seq {
            self.hdr + SEQ_LEN
        } else {
            self.frame.len()
        }
    }

    fn by_ref(&self) -> bool {
        self.has_seq && self.frame.len() >= Self::BY_REF_MIN
    }

    /// Queue message `c.send_seq` on `c` and count it sent.
    #[inline]
    fn queue(&self, c: &mut Conn) {
        if self.by_ref() {
            let start = c.tx_heads.len();
            c.tx_heads
                .extend_from_slice(&self.frame[..self.hdr + SEQ_LEN]);
            Self::put_seq(&mut c.tx_heads[start + self.hdr..], c.send_seq);
        } else {
            self.append(&mut c.wbuf, c.send_seq);
        }
        c.send_seq = c.send_seq.wrapping_add(1);
    }

    #[inline]
    fn append(&self, out: &mut Vec<u8>, seq: u32) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        if self.has_seq {
            Self::put_seq(&mut out[start + self.hdr..], seq);
        }
    }

    /// Write the masked sequence tag of `seq` over the first SEQ_LEN bytes
    /// of `p` (a frame's payload).
    #[inline]
    fn put_seq(p: &mut [u8], seq: u32) {
        let t = Self::seq_bytes(seq);
        for k in 0..SEQ_LEN {
            p[k] = t[k] ^ MASK[k & 3];
        }
    }

    #[inline]
    fn verify(&self, op: u8, payload: &[u8], seq: u32) -> Result<(), String> {
        if op != self.op {
            return Err(format!("opcode {} != {}", op, self.op));
        }
        if payload.len() != self.body.len() {
            return Err(format!("length {} != {}", payload.len(), self.body.len()));
        }
        if self.has_seq {
            let t = Self::seq_bytes(seq);
            if payload[..SEQ_LEN] != t {
                return Err(format!(
                    "sequence tag {:?} != {:?} (reordered/lost/duplicated message)",
                    String::from_utf8_lossy(&payload[..SEQ_LEN]),
                    String::from_utf8_lossy(&t)
                ));
            }
            if payload[SEQ_LEN..] != self.body[SEQ_LEN..] {
                return Err("payload body mismatch".into());
            }
        } else if payload != &self.body[..] {
            return Err("payload mismatch".into());
        }
        Ok(())
    }
}

struct Stats {
    hist: Histogram<u64>,
    msgs: u64,
    bytes: u64,
    errors: u64,
    closed: u64,
    measuring: bool,
    first_err: Option<String>,
    /// frame bytes received in the measured window (headers included)
    wire_bytes: u64,
    /// `--deflate`: one inflater for every connection (each message was
    /// compressed on its own, so a kept window is never referred to), and
    /// the last message inflated
    inflater: Option<wsmio::proto::deflate::Inflater>,
    zbuf: Vec<u8>,
}

/// (utime, stime) of a process in clock ticks (USER_HZ = 100 on Linux), all
/// threads: its own code, and the kernel's work in its system calls.
fn proc_times(pid: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    // after "pid (comm) ", field index 0 is state (field 3); utime=14, stime=15
    let mut f = rest.split_whitespace().skip(11);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// utime+stime of a process in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    proc_times(pid).map(|(u, s)| u + s)
}

/// Host-wide TCP counters: (segments sent, data segments sent, delayed ACKs
/// sent by the timer), from /proc/net/snmp (`Tcp: OutSegs`) and
/// /proc/net/netstat (`TcpExt: TCPOrigDataSent`, `DelayedACKs`). On loopback
/// every segment is sent by one of the two processes, so on an otherwise idle
/// host `segments - data segments` counts the pure ACKs of the run.
fn tcp_counters() -> Option<(u64, u64, u64)> {
    // Each file is pairs of lines: "Table: Name ..." then "Table: value ...".
    fn field(text: &str, table: &str, name: &str) -> Option<u64> {
        let mut lines = text.lines();
        while let (Some(head), Some(vals)) = (lines.next(), lines.next()) {
            if head.split_whitespace().next() != Some(table) {
                continue;
            }
            let at = head.split_whitespace().position(|h| h == name)?;
            return vals.split_whitespace().nth(at)?.parse().ok();
        }
        None
    }
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    Some((
        field(&snmp, "Tcp:", "OutSegs")?,
        field(&netstat, "TcpExt:", "TCPOrigDataSent")?,
        field(&netstat, "TcpExt:", "DelayedACKs")?,
    ))
}

/// What is sampled at the start and at the end of the measured window.
#[derive(Clone, Copy, Default)]
struct Sample {
    client: Option<u64>,
    /// the server's (utime, stime)
    server: Option<(u64, u64)>,
    tcp: Option<(u64, u64, u64)>,
}

impl Sample {
    fn take(server_pid: u32) -> Sample {
        Sample {
            client: cpu_ticks("self"),
            server: (server_pid > 0)
                .then(|| proc_times(&server_pid.to_string()))
                .flatten(),
            tcp: tcp_counters(),
        }
    }
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn start_connect(o: &Opts, idx: usize) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    if o.src_ips > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (idx as u32 % o.src_ips) as u8);
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

fn libc_einprogress() -> i32 {
    115 // EINPROGRESS on Linux
}

/// Write as much of wbuf as the socket takes. Returns Err on a fatal error.
fn flush(c: &mut Conn) -> io::Result<()> {
    while c.woff < c.wbuf.len() {
        match c.s.write(&c.wbuf[c.woff..]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write 0")),
            Ok(n) => c.woff += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if c.woff == c.wbuf.len() {
        c.wbuf.clear();
        c.woff = 0;
    } else if c.woff > 1 << 20 {
        c.wbuf.drain(..c.woff);
        c.woff = 0;
    }
    Ok(())
}

/// Write what `c` has queued: the rest of a partly written template frame,
/// then `wbuf` (handshake, pongs), then the waiting template frames, as far
/// as the socket takes them.
fn flush_tx(c: &mut Conn, tpl: &Template) -> io::Result<()> {
    let hl = tpl.head_len();
    let fl = tpl.frame.len();
    let rest = &tpl.frame[hl..];
    loop {
        if c.tx_off == 0 && c.woff < c.wbuf.len() {
            flush(c)?;
            if c.woff < c.wbuf.len() {
                return Ok(());
            }
        }
        let n = c.tx_heads.len() / hl;
        if n == 0 {
            return Ok(());
        }
        let mut iov = [IoSlice::new(&[]); 64];
        let mut k = 0;
        for i in 0..n.min(32) {
            let head = &c.tx_heads[i * hl..(i + 1) * hl];
            let skip = if i == 0 { c.tx_off } else { 0 };
            if skip < hl {
                iov[k] = IoSlice::new(&head[skip..]);
                iov[k + 1] = IoSlice::new(rest);
                k += 2;
            } else {
                iov[k] = IoSlice::new(&rest[skip - hl..]);
                k += 1;
            }
        }
        match c.s.write_vectored(&iov[..k]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write 0")),
            Ok(w) => {
                let total = c.tx_off + w;
                c.tx_off = total % fl;
                c.tx_heads.drain(..(total / fl) * hl);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn fail(c: &mut Conn, stats: &mut Stats, msg: String, is_verify: bool) {
    if is_verify {
        stats.errors += 1;
    }
    if stats.first_err.is_none() {
        stats.first_err = Some(msg);
    }
    if c.st != St::Closed {
        stats.closed += 1;
        c.st = St::Closed;
    }
}

/// Parse complete frames in rbuf; verify echoes; queue replacements/pongs.
#[allow(clippy::too_many_arguments)]
/// `--deflate`: inflate the compressed echo in `c.rbuf[r]` and verify it.
fn verify_compressed(
    c: &Conn,
    tpl: &Template,
    stats: &mut Stats,
    op: u8,
    r: std::ops::Range<usize>,
) -> Result<(), String> {
    stats.zbuf.clear();
    match stats
        .inflater
        .as_mut()
        .map(|z| z.decompress(&c.rbuf[r], &mut stats.zbuf))
    {
        Some(Ok(())) => tpl.verify(op, &stats.zbuf, c.recv_seq),
        _ => Err("compressed message does not inflate".into()),
    }
}

/// An echo arrived and was verified: count it, send the next.
fn echo_done(
    c: &mut Conn,
    tpl: &Template,
    stats: &mut Stats,
    sending: bool,
    now: u64,
    depth_target: usize,
) {
    c.recv_seq = c.recv_seq.wrapping_add(1);
    let sent_at = c.inflight.pop_front().unwrap_or(now);
    if stats.measuring {
        stats.msgs += 1;
        stats.bytes += tpl.body.len() as u64;
        let _ = stats.hist.record(now.saturating_sub(sent_at).max(1));
    }
    if sending && c.inflight.len() < depth_target {
        tpl.queue(c);
        c.inflight.push_back(now);
    }
}

fn parse_frames(
    c: &mut Conn,
    tpl: &Template,
    stats: &mut Stats,
    sending: bool,
    now: u64,
    depth_target: usize,
) {
    loop {
        let avail = c.re - c.rs;
        if avail < 2 {
            break;
        }
        let b = &c.rbuf[c.rs..c.re];
        let fin = b[0] & 0x80 != 0;
        let op = b[0] & 0x0f;
        // RSV1 on a whole message: compressed (`--deflate`, RFC 7692 §6).
        let compressed = b[0] & 0x40 != 0 && stats.inflater.is_some() && fin && op != 0;
        if b[0] & 0x70 != 0 && !compressed {
            fail(c, stats, "server frame has RSV bits set".into(), true);
            return;
        }
        if b[1] & 0x80 != 0 {
            fail(c, stats, "server frame is masked".into(), true);
            return;
        }
        let l7 = (b[1] & 0x7f) as usize;
        let (hdr, len) = if l7 < 126 {
            (2, l7)
        } else if l7 == 126 {
            if avail < 4 {
                break;
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as usize)
        } else {
            if avail < 10 {
                break;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(a) as usize)
        };
        if len > (64 << 20) {
            fail(c, stats, format!("frame too large: {}", len), true);
            return;
        }
        if avail < hdr + len {
            // make sure the buffer can hold the whole frame
            let need = hdr + len;
            if c.rbuf.len() - c.rs < need {
                c.rbuf.copy_within(c.rs..c.re, 0);
                c.re -= c.rs;
                c.rs = 0;
                if c.rbuf.len() < need {
                    c.rbuf.resize(need.next_power_of_two(), 0);
                }
            }
            break;
        }
        let ps = c.rs + hdr;
        let pe = ps + len;
        c.rs = pe;
        if stats.measuring {
            stats.wire_bytes += (hdr + len) as u64;
        }
        if compressed {
            if let Err(e) = verify_compressed(c, tpl, stats, op, ps..pe) {
                fail(c, stats, format!("verify failed: {}", e), true);
                return;
            }
            echo_done(c, tpl, stats, sending, now, depth_target);
            continue;
        }
        match op {
            1 | 2 | 0 => {
                let complete: Option<(u8, bool)> = if op != 0 && fin && !c.in_frag {
                    Some((op, false))
                } else if op != 0 && !c.in_frag {
                    c.in_frag = true;
                    c.frag_op = op;
                    c.frag.clear();
                    c.frag.extend_from_slice(&c.rbuf[ps..pe]);
                    None
                } else if op == 0 && c.in_frag {
                    c.frag.extend_from_slice(&c.rbuf[ps..pe]);
                    if fin {
                        c.in_frag = false;
                        Some((c.frag_op, true))
                    } else {
                        None
                    }
                } else {
                    fail(
                        c,
                        stats,
                        "bad fragmentation sequence from server".into(),
                        true,
                    );
                    return;
                };
                if let Some((mop, fragged)) = complete {
                    let res = if fragged {
                        tpl.verify(mop, &c.frag, c.recv_seq)
                    } else {
                        tpl.verify(mop, &c.rbuf[ps..pe], c.recv_seq)
                    };
                    if let Err(e) = res {
                        fail(c, stats, format!("verify failed: {}", e), true);
                        return;
                    }
                    echo_done(c, tpl, stats, sending, now, depth_target);
                }
            }
            8 => {
                fail(c, stats, "server sent close frame".into(), false);
                return;
            }
            9 => {
                // ping -> masked pong with same payload
                let pl = c.rbuf[ps..pe].to_vec();
                c.wbuf.push(0x8a);
                c.wbuf.push(0x80 | pl.len() as u8);
                c.wbuf.extend_from_slice(&MASK);
                for (i, b) in pl.iter().enumerate() {
                    c.wbuf.push(b ^ MASK[i & 3]);
                }
            }
            10 => {}
            _ => {
                fail(c, stats, format!("unknown opcode {}", op), true);
                return;
            }
        }
    }
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
    }
}

/// Handle readiness for connection `c`. Returns true if it became Open now.
#[allow(clippy::too_many_arguments)]
fn on_ready(
    c: &mut Conn,
    o: &Opts,
    tpl: &Template,
    stats: &mut Stats,
    sending: bool,
    base: Instant,
    readable: bool,
    writable: bool,
    handshake_req: &[u8],
    fan: &mut fanout::Fan,
) -> bool {
    let mut opened = false;
    if c.st == St::Connecting {
        if !writable && !readable {
            return false;
        }
        match c.s.take_error() {
            Ok(Some(e)) | Err(e) => {
                fail(c, stats, format!("connect error: {}", e), false);
                return false;
            }
            Ok(None) => {}
        }
        match c.s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
            Err(e) => {
                fail(c, stats, format!("connect error: {}", e), false);
                return false;
            }
        }
        c.st = St::Handshaking;
        c.wbuf.extend_from_slice(handshake_req);
        if let Err(e) = flush(c) {
            fail(c, stats, format!("write error: {}", e), false);
            return false;
        }
    }
    if c.st == St::Handshaking && readable {
        loop {
            if c.re == c.rbuf.len() {
                fail(c, stats, "handshake response too large".into(), false);
                return false;
            }
            match c.s.read(&mut c.rbuf[c.re..]) {
                Ok(0) => {
                    fail(c, stats, "EOF during handshake".into(), false);
                    return false;
                }
                Ok(n) => c.re += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    fail(c, stats, format!("read error in handshake: {}", e), false);
                    return false;
                }
            }
        }
        if let Some(pos) = find_hdr_end(&c.rbuf[..c.re]) {
            let head = String::from_utf8_lossy(&c.rbuf[..pos]).to_string();
            let status_ok = head.starts_with("HTTP/1.1 101");
            let accept_ok = head.lines().any(|l| {
                let mut it = l.splitn(2, ':');
                let k = it.next().unwrap_or("").trim();
                let v = it.next().unwrap_or("").trim();
                k.eq_ignore_ascii_case("sec-websocket-accept") && v == ACCEPT
            });
            if !status_ok || !accept_ok {
                fail(
                    c,
                    stats,
                    format!("bad handshake response: {:?}", head.lines().next()),
                    true,
                );
                return false;
            }
            c.rbuf.copy_within(pos..c.re, 0);
            c.re -= pos;
            c.rs = 0;
            c.st = St::Open;
            opened = true;
        } else {
            return false;
        }
    }
    if c.st == St::Open {
        let depth_target = if o.mode == "echo" { o.depth } else { 0 };
        if readable {
            loop {
                if c.rbuf.len() - c.re < 16384 {
                    if c.rs > 0 {
                        c.rbuf.copy_within(c.rs..c.re, 0);
                        c.re -= c.rs;
                        c.rs = 0;
                    }
                    if c.rbuf.len() - c.re < 16384 {
                        let nl = c.rbuf.len() * 2;
                        c.rbuf.resize(nl, 0);
                    }
                }
                let space = c.rbuf.len() - c.re;
                match c.s.read(&mut c.rbuf[c.re..]) {
                    Ok(0) => {
                        fail(c, stats, "server closed connection (EOF)".into(), false);
                        return opened;
                    }
                    Ok(n) => {
                        c.re += n;
                        let now = now_ns(base);
                        if fan.active {
                            fanout::parse(c, fan, stats, now);
                        } else {
                            parse_frames(c, tpl, stats, sending, now, depth_target);
                        }
                        if c.st != St::Open {
                            return opened;
                        }
                        if n < space {
                            // kernel buffer drained (edge-triggered: new data => new event)
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        fail(c, stats, format!("read error: {}", e), false);
                        return opened;
                    }
                }
            }
        } else if c.re > c.rs {
            let now = now_ns(base);
            if fan.active {
                fanout::parse(c, fan, stats, now);
            } else {
                parse_frames(c, tpl, stats, sending, now, depth_target);
            }
        }
        if c.woff < c.wbuf.len() || !c.tx_heads.is_empty() {
            if let Err(e) = flush_tx(c, tpl) {
                fail(c, stats, format!("write error: {}", e), false);
            }
        }
    }
    opened
}

/// The `Sec-WebSocket-Extensions` line of `--deflate` (RFC 7692: no
/// context takeover either way, as a hub that shares compressed frames
/// answers anyway), or nothing.
fn extensions_header(o: &Opts) -> &'static str {
    if o.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    } else {
        ""
    }
}

fn find_hdr_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn main() {
    let o = parse_opts();
    let tpl = Template::new(o.size, o.binary, o.deflate);
    let handshake_req = format!(
        "GET / HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        o.host,
        o.port,
        KEY,
        extensions_header(&o)
    )
    .into_bytes();
    if o.mode == "churn" {
        let req = if o.path.is_empty() {
            handshake_req.clone()
        } else {
            String::from_utf8_lossy(&handshake_req)
                .replacen("GET / ", &format!("GET {} ", o.path), 1)
                .into_bytes()
        };
        churn::run(&o, &req);
    }
    if o.mode == "fanout" && o.hub {
        hubfan::run(&o);
    }
    let base = Instant::now();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(4096);
    let mut conns: Vec<Conn> = Vec::with_capacity(o.conns);
    let mut stats = Stats {
        hist: Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap(),
        msgs: 0,
        bytes: 0,
        errors: 0,
        closed: 0,
        measuring: false,
        first_err: None,
        wire_bytes: 0,
        inflater: o.deflate.then(|| {
            let dir = wsmio::proto::extension::Direction {
                no_context_takeover: false,
                max_window_bits: 15,
            };
            wsmio::proto::deflate::Inflater::new(dir, 64 << 20)
        }),
        zbuf: Vec::new(),
    };
    let rcap = if o.mode == "idle" {
        4096
    } else if o.mode == "fanout" {
        (2 * (o.size + 14)).max(32768)
    } else {
        (2 * (o.size + 14)).max(65536)
    };
    let mut fan = fanout::Fan::new(&o);
    let connect_deadline = Instant::now() + Duration::from_secs_f64(o.connect_timeout);
    let mut started = 0usize;
    let mut open = 0usize;
    let mut pending = 0usize;
    let mut connect_errors = 0usize;

    // ---- connect + handshake phase (bounded by connect_timeout) ----
    while open + connect_errors < o.conns {
        while started < o.conns && pending < o.max_pending {
            match start_connect(&o, started) {
                Ok(mut s) => {
                    poll.registry()
                        .register(
                            &mut s,
                            Token(started),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register");
                    conns.push(Conn {
                        s,
                        st: St::Connecting,
                        rbuf: vec![0u8; rcap],
                        rs: 0,
                        re: 0,
                        wbuf: Vec::with_capacity(if o.mode == "idle" {
                            256
                        } else {
                            (o.size + 14) * o.depth.min(1024) + 256
                        }),
                        woff: 0,
                        send_seq: 0,
                        recv_seq: 0,
                        inflight: VecDeque::with_capacity(if o.mode == "idle" {
                            0
                        } else {
                            o.depth
                        }),
                        frag: Vec::new(),
                        frag_op: 0,
                        in_frag: false,
                        exp: vec![0u64; if o.mode == "fanout" { o.publishers } else { 0 }],
                        tx_heads: Vec::new(),
                        tx_off: 0,
                    });
                    pending += 1;
                }
                Err(e) => {
                    eprintln!(
                        "loadgen: connect #{} failed: {} (no further connects)",
                        started, e
                    );
                    connect_errors += o.conns - started;
                    started = o.conns;
                    break;
                }
            }
            started += 1;
        }
        if Instant::now() > connect_deadline {
            eprintln!(
                "loadgen: connect phase timed out ({} of {} open)",
                open, o.conns
            );
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            let idx = ev.token().0;
            let c = &mut conns[idx];
            let before = c.st;
            let opened = on_ready(
                c,
                &o,
                &tpl,
                &mut stats,
                false,
                base,
                ev.is_readable(),
                ev.is_writable(),
                &handshake_req,
                &mut fan,
            );
            if opened {
                open += 1;
                pending -= 1;
            } else if c.st == St::Closed && before != St::Closed {
                connect_errors += 1;
                pending = pending.saturating_sub(1);
            }
        }
    }
    let connect_secs = base.elapsed().as_secs_f64();
    if !o.quiet {
        eprintln!(
            "loadgen: {} of {} connections open in {:.2}s ({} failed){}",
            open,
            o.conns,
            connect_secs,
            connect_errors,
            stats
                .first_err
                .as_ref()
                .map(|e| format!("; first error: {}", e))
                .unwrap_or_default()
        );
    }
    if open == 0 {
        println!(
            "RESULT mode={} ok=0 open=0 error={:?}",
            o.mode, stats.first_err
        );
        std::process::exit(1);
    }

    // ---- idle mode ----
    if o.mode == "idle" {
        println!("READY open={} of={}", open, o.conns);
        let _ = io::stdout().flush();
        let end = Instant::now() + Duration::from_secs_f64(o.hold);
        while Instant::now() < end {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
            for ev in events.iter() {
                let c = &mut conns[ev.token().0];
                on_ready(
                    c,
                    &o,
                    &tpl,
                    &mut stats,
                    false,
                    base,
                    ev.is_readable(),
                    ev.is_writable(),
                    &handshake_req,
                    &mut fan,
                );
            }
        }
        let still = conns.iter().filter(|c| c.st == St::Open).count();
        println!(
            "RESULT mode=idle conns={} open_at_start={} open_at_end={} ok={}",
            o.conns,
            open,
            still,
            (still == o.conns) as u8
        );
        std::process::exit(if still == o.conns { 0 } else { 1 });
    }

    if o.mode == "fanout" {
        fanout::run(
            &o,
            &mut poll,
            &mut events,
            &mut conns,
            &mut stats,
            &mut fan,
            open,
            base,
            &tpl,
            &handshake_req,
        );
    }

    // ---- echo mode: prime every connection with `depth` messages ----
    let t0 = Instant::now();
    let now = now_ns(base);
    for c in conns.iter_mut() {
        if c.st != St::Open {
            continue;
        }
        for _ in 0..o.depth {
            tpl.queue(c);
            c.inflight.push_back(now);
        }
        if let Err(e) = flush_tx(c, &tpl) {
            fail(c, &mut stats, format!("write error: {}", e), false);
        }
    }
    let warm_end = t0 + Duration::from_secs_f64(o.warmup);
    let end = warm_end + Duration::from_secs_f64(o.duration);
    let mut measure_start = t0;
    let mut at0 = Sample::default();
    if o.warmup == 0.0 {
        stats.measuring = true;
        at0 = Sample::take(o.server_pid);
    }
    let mut sending = true;
    let mut loops: u64 = 0;
    loop {
        let now_i = Instant::now();
        if !stats.measuring && now_i >= warm_end {
            stats.measuring = true;
            measure_start = now_i;
            at0 = Sample::take(o.server_pid);
        }
        if now_i >= end || stats.msgs >= o.max_msgs {
            break;
        }
        if stats.closed as usize >= open {
            break;
        }
        let to = if stats.measuring {
            end - now_i
        } else {
            warm_end - now_i
        };
        let to = if o.spin {
            Duration::ZERO
        } else {
            to.min(Duration::from_millis(100))
        };
        poll.poll(&mut events, Some(to)).expect("poll");
        loops += 1;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            on_ready(
                c,
                &o,
                &tpl,
                &mut stats,
                sending,
                base,
                ev.is_readable(),
                ev.is_writable(),
                &handshake_req,
                &mut fan,
            );
        }
        if stats.msgs >= o.max_msgs {
            sending = false;
        }
    }
    let secs = measure_start.elapsed().as_secs_f64();
    let at1 = Sample::take(o.server_pid);
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}", (b.saturating_sub(a)) as f64 / 100.0 / secs * 100.0),
        _ => "na".to_string(),
    };
    let client_cpu = pct(at0.client, at1.client);
    let total = |t: Option<(u64, u64)>| t.map(|(u, s)| u + s);
    let server_cpu = pct(total(at0.server), total(at1.server));
    // one decimal: the user share is a few per cent of the server's time
    let server_user = match (at0.server, at1.server) {
        (Some(a), Some(b)) => format!("{:.1}", b.0.saturating_sub(a.0) as f64 / secs),
        _ => "na".to_string(),
    };
    let per_s = |f: fn((u64, u64, u64)) -> u64| match (at0.tcp, at1.tcp) {
        (Some(a), Some(b)) => format!("{:.0}", f(b).saturating_sub(f(a)) as f64 / secs),
        _ => "na".to_string(),
    };
    let (segs, data_segs, delayed_acks) = (per_s(|t| t.0), per_s(|t| t.1), per_s(|t| t.2));
    let mps = stats.msgs as f64 / secs;
    let mbps = stats.bytes as f64 / secs / 1e6;
    let h = &stats.hist;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let ok = stats.errors == 0 && stats.closed == 0 && open == o.conns;
    if !o.quiet {
        eprintln!(
            "loadgen: {} msgs in {:.2}s over {} conns (depth {}, {} B {}) poll-loops {}",
            stats.msgs,
            secs,
            open,
            o.depth,
            o.size,
            if o.binary { "binary" } else { "text" },
            loops
        );
        if let Some(e) = &stats.first_err {
            eprintln!("loadgen: first error: {}", e);
        }
    }
    println!(
        "RESULT mode=echo conns={} size={} depth={} binary={} secs={:.2} msgs={} msgs_per_s={:.0} MB_per_s={:.1} \
         p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} client_cpu_pct={} server_cpu_pct={} server_user_pct={} \
         tcp_segs_per_s={} tcp_data_segs_per_s={} tcp_delayed_acks_per_s={} verify_errors={} closed={} \
         deflate={} wire_bytes_per_msg={:.1} ok={}",
        open,
        o.size,
        o.depth,
        o.binary as u8,
        secs,
        stats.msgs,
        mps,
        mbps,
        q(0.5),
        q(0.99),
        q(0.999),
        h.max() as f64 / 1000.0,
        client_cpu,
        server_cpu,
        server_user,
        segs,
        data_segs,
        delayed_acks,
        stats.errors,
        stats.closed,
        o.deflate as u8,
        stats.wire_bytes as f64 / stats.msgs.max(1) as f64,
        ok as u8
    );
    std::process::exit(if ok { 0 } else { 1 });
}

// ============================== FANOUT MODE ==============================
//
// Semantics expected from the server: every client that connects is in one
// group; every text/binary message a client sends is delivered to ALL connected
// clients, the sender included (uWS `app.publish`, not `ws->publish`).
//
// Group = the `--conns S` connections.  The first S-P are pure subscribers; the
// last `--publishers P` connections ALSO publish (they are opened last, and
// they receive and verify every message like any other member).  So every
// publish must produce exactly S deliveries, all counted.
//
// Message (binary frame, `--size B` >= 20 bytes payload):
//   [0..4) publisher id (u32 LE)  [4..12) per-publisher sequence (u64 LE)
//   [12..20) send timestamp, ns since generator start (u64 LE)  [20..B) filler
// Every delivery is verified (opcode, length, filler, publisher id, sequence <
// sent).  Per (subscriber, publisher) the sequence must arrive in order:
//   seq > expected -> `gaps += seq - expected` (lost messages),
//   seq < expected -> `verify_errors += 1` (duplicate / reordered).
// After the run the generator stops publishing and drains (--drain seconds);
// anything still not received by some subscriber is counted in `missing`.
//
// Flow control: each publisher has at most `--window W` publishes that are not
// yet delivered to all S members.  A ring of W counters per publisher counts
// deliveries per sequence number; a publish is "complete" when its counter
// reaches S (a gap counts the skipped numbers as resolved, so a dropping server
// does not stall the run).  Completed publishes free window slots; publishers
// are refilled once per poll-loop iteration.  Latency = receive time at the
// subscriber minus the timestamp in the payload (same process, same clock);
// with W > 1 it includes queueing behind up to W-1 earlier publishes.
mod fanout {
    use super::*;

    pub const HDR: usize = 20;

    /// (busy, softirq+irq, total) ticks of one CPU from /proc/stat.
    fn core_ticks(core: i32) -> Option<(u64, u64, u64)> {
        if core < 0 {
            return None;
        }
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let name = format!("cpu{}", core);
        let line = s
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal
        let total: u64 = v[..8].iter().sum();
        let idle = v[3] + v[4];
        Some((total - idle, v[5] + v[6], total))
    }

    pub struct Fan {
        pub active: bool,
        pub size: usize,
        pub p: usize,
        pub w: usize,
        pub s_open: u32,
        pub sent: Vec<u64>,
        pub done: Vec<u64>,
        pub ring: Vec<Vec<u32>>,
        pub deliveries: u64,     // counted while measuring
        pub deliveries_all: u64, // whole run
        pub publishes: u64,      // completed while measuring
        pub gaps: u64,
        pub filler: Vec<u8>,
        pub frame: Vec<u8>, // masked frame template
        pub fhdr: usize,
    }

    impl Fan {
        pub fn new(o: &Opts) -> Fan {
            let active = o.mode == "fanout";
            let size = o.size;
            let filler: Vec<u8> = (0..size).map(|i| b'A' + (i % 26) as u8).collect();
            let mut frame = Vec::with_capacity(size + 14);
            frame.push(0x82);
            if size < 126 {
                frame.push(0x80 | size as u8);
            } else if size < 65536 {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(size as u16).to_be_bytes());
            } else {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(size as u64).to_be_bytes());
            }
            frame.extend_from_slice(&MASK);
            let fhdr = frame.len();
            for (i, b) in filler.iter().enumerate() {
                frame.push(b ^ MASK[i & 3]);
            }
            let p = if active { o.publishers } else { 0 };
            Fan {
                active,
                size,
                p,
                w: o.window,
                s_open: 0,
                sent: vec![0; p],
                done: vec![0; p],
                ring: vec![vec![0u32; if active { o.window } else { 0 }]; p],
                deliveries: 0,
                deliveries_all: 0,
                publishes: 0,
                gaps: 0,
                filler,
                frame,
                fhdr,
            }
        }

        #[inline]
        fn append(&self, out: &mut Vec<u8>, pubid: u32, seq: u64, ts: u64) {
            let start = out.len();
            out.extend_from_slice(&self.frame);
            let mut h = [0u8; HDR];
            h[0..4].copy_from_slice(&pubid.to_le_bytes());
            h[4..12].copy_from_slice(&seq.to_le_bytes());
            h[12..20].copy_from_slice(&ts.to_le_bytes());
            let p = &mut out[start + self.fhdr..start + self.fhdr + HDR];
            for k in 0..HDR {
                p[k] = h[k] ^ MASK[k & 3];
            }
        }

        /// Advance completion watermarks; returns number of newly completed publishes.
        fn advance(&mut self, measuring: bool) -> u64 {
            let mut n = 0;
            for p in 0..self.p {
                while self.done[p] < self.sent[p] {
                    let slot = (self.done[p] % self.w as u64) as usize;
                    if self.ring[p][slot] < self.s_open {
                        break;
                    }
                    self.ring[p][slot] = 0;
                    self.done[p] += 1;
                    n += 1;
                }
            }
            if measuring {
                self.publishes += n;
            }
            n
        }
    }

    /// Parse complete frames of a fan-out member connection.
    pub fn parse(c: &mut Conn, fan: &mut Fan, stats: &mut Stats, now: u64) {
        loop {
            let avail = c.re - c.rs;
            if avail < 2 {
                break;
            }
            let b = &c.rbuf[c.rs..c.re];
            let b0 = b[0];
            let op = b0 & 0x0f;
            if b0 & 0x70 != 0 || b[1] & 0x80 != 0 {
                fail(
                    c,
                    stats,
                    "server frame has RSV bits or mask set".into(),
                    true,
                );
                return;
            }
            let l7 = (b[1] & 0x7f) as usize;
            let (hdr, len) = if l7 < 126 {
                (2, l7)
            } else if l7 == 126 {
                if avail < 4 {
                    break;
                }
                (4, u16::from_be_bytes([b[2], b[3]]) as usize)
            } else {
                if avail < 10 {
                    break;
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                (10, u64::from_be_bytes(a) as usize)
            };
            if len > (64 << 20) {
                fail(c, stats, format!("frame too large: {}", len), true);
                return;
            }
            if avail < hdr + len {
                let need = hdr + len;
                if c.rbuf.len() - c.rs < need {
                    c.rbuf.copy_within(c.rs..c.re, 0);
                    c.re -= c.rs;
                    c.rs = 0;
                    if c.rbuf.len() < need {
                        c.rbuf.resize(need.next_power_of_two(), 0);
                    }
                }
                break;
            }
            let ps = c.rs + hdr;
            let pe = ps + len;
            c.rs = pe;
            match op {
                2 if b0 & 0x80 != 0 => {
                    let pl = &c.rbuf[ps..pe];
                    if len != fan.size || pl[HDR..] != fan.filler[HDR..] {
                        fail(
                            c,
                            stats,
                            format!("fanout payload mismatch (len {} vs {})", len, fan.size),
                            true,
                        );
                        return;
                    }
                    let pubid = u32::from_le_bytes([pl[0], pl[1], pl[2], pl[3]]) as usize;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&pl[4..12]);
                    let seq = u64::from_le_bytes(a);
                    a.copy_from_slice(&pl[12..20]);
                    let ts = u64::from_le_bytes(a);
                    if pubid >= fan.p || seq >= fan.sent[pubid] {
                        fail(
                            c,
                            stats,
                            format!("fanout: unknown publisher {} or unsent seq {}", pubid, seq),
                            true,
                        );
                        return;
                    }
                    let exp = c.exp[pubid];
                    if seq < exp {
                        // duplicate or reordered: count, keep the connection
                        stats.errors += 1;
                        if stats.first_err.is_none() {
                            stats.first_err = Some(format!(
                                "fanout: publisher {} seq {} after {} (dup/reorder)",
                                pubid, seq, exp
                            ));
                        }
                        continue;
                    }
                    if seq > exp {
                        fan.gaps += seq - exp;
                        if stats.first_err.is_none() {
                            stats.first_err = Some(format!(
                                "fanout: gap, publisher {} expected {} got {}",
                                pubid, exp, seq
                            ));
                        }
                        for s in exp..seq {
                            fan.ring[pubid][(s % fan.w as u64) as usize] += 1;
                        }
                    }
                    fan.ring[pubid][(seq % fan.w as u64) as usize] += 1;
                    c.exp[pubid] = seq + 1;
                    fan.deliveries_all += 1;
                    if stats.measuring {
                        fan.deliveries += 1;
                        let _ = stats.hist.record(now.saturating_sub(ts).max(1));
                    }
                }
                8 => {
                    fail(c, stats, "server sent close frame".into(), false);
                    return;
                }
                9 => {
                    let pl = c.rbuf[ps..pe].to_vec();
                    c.wbuf.push(0x8a);
                    c.wbuf.push(0x80 | pl.len() as u8);
                    c.wbuf.extend_from_slice(&MASK);
                    for (i, b) in pl.iter().enumerate() {
                        c.wbuf.push(b ^ MASK[i & 3]);
                    }
                }
                10 => {}
                _ => {
                    fail(
                        c,
                        stats,
                        format!(
                            "fanout: unexpected opcode {} (fin={}); text/fragmented not expected",
                            op,
                            b0 >> 7
                        ),
                        true,
                    );
                    return;
                }
            }
        }
        if c.rs == c.re {
            c.rs = 0;
            c.re = 0;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        o: &Opts,
        poll: &mut Poll,
        events: &mut Events,
        conns: &mut [Conn],
        stats: &mut Stats,
        fan: &mut Fan,
        open: usize,
        base: Instant,
        tpl: &Template,
        handshake_req: &[u8],
    ) -> ! {
        let s = conns.len();
        if open != s {
            println!(
                "RESULT mode=fanout ok=0 open={} of={} error={:?}",
                open, s, stats.first_err
            );
            std::process::exit(1);
        }
        fan.s_open = s as u32;
        // publishers: the last P connections (opened last)
        let pub_conn: Vec<usize> = (s - fan.p..s).collect();
        // let the server settle subscriptions (all handshakes are done already)
        std::thread::sleep(Duration::from_millis(200));

        let t0 = Instant::now();
        let warm_end = t0 + Duration::from_secs_f64(o.warmup);
        let end = warm_end + Duration::from_secs_f64(o.duration);
        let mut measure_start = t0;
        let mut cpu0: (Option<u64>, Option<u64>) = (None, None);
        let spid = o.server_pid.to_string();
        let srv = |p: &str| if o.server_pid > 0 { cpu_ticks(p) } else { None };
        let mut core0 = None;
        let mut core1 = None;
        if o.warmup == 0.0 {
            stats.measuring = true;
            cpu0 = (cpu_ticks("self"), srv(&spid));
            core0 = core_ticks(o.server_core);
        }
        let mut sending = true;
        let mut drain_end: Option<Instant> = None;
        let mut loops: u64 = 0;
        let mut last_progress = Instant::now();
        let mut stalled = false;
        let mut secs = 0.0;
        let mut cpu1: (Option<u64>, Option<u64>) = (None, None);
        let fill = |fan: &mut Fan, conns: &mut [Conn], stats: &mut Stats, sending: bool| {
            if !sending {
                return;
            }
            let now = now_ns(base);
            for (p, &ci) in pub_conn.iter().enumerate() {
                let c = &mut conns[ci];
                if c.st != St::Open {
                    continue;
                }
                let mut added = false;
                while fan.sent[p] - fan.done[p] < fan.w as u64 {
                    fan.append(&mut c.wbuf, p as u32, fan.sent[p], now);
                    fan.sent[p] += 1;
                    added = true;
                }
                if added {
                    if let Err(e) = flush(c) {
                        fail(c, stats, format!("publisher write error: {}", e), false);
                    }
                }
            }
        };
        fill(fan, conns, stats, sending);
        loop {
            let now_i = Instant::now();
            if !stats.measuring && now_i >= warm_end && sending {
                stats.measuring = true;
                measure_start = now_i;
                cpu0 = (cpu_ticks("self"), srv(&spid));
                core0 = core_ticks(o.server_core);
            }
            if sending && now_i >= end {
                // stop measuring and publishing; drain what is in flight
                secs = measure_start.elapsed().as_secs_f64();
                cpu1 = (cpu_ticks("self"), srv(&spid));
                core1 = core_ticks(o.server_core);
                stats.measuring = false;
                sending = false;
                drain_end = Some(now_i + Duration::from_secs_f64(o.drain));
            }
            if let Some(de) = drain_end {
                if now_i >= de || (0..fan.p).all(|p| fan.done[p] == fan.sent[p]) {
                    break;
                }
            }
            if stats.closed > 0 {
                break;
            }
            if sending && now_i.duration_since(last_progress) > Duration::from_secs(5) {
                stalled = true;
                if stats.first_err.is_none() {
                    stats.first_err = Some("fanout: no publish completed for 5 s (stall)".into());
                }
                secs = measure_start.elapsed().as_secs_f64();
                cpu1 = (cpu_ticks("self"), srv(&spid));
                stats.measuring = false;
                break;
            }
            let to = if o.spin {
                Duration::ZERO
            } else {
                Duration::from_millis(50)
            };
            poll.poll(events, Some(to)).expect("poll");
            loops += 1;
            for ev in events.iter() {
                let c = &mut conns[ev.token().0];
                on_ready(
                    c,
                    o,
                    tpl,
                    stats,
                    false,
                    base,
                    ev.is_readable(),
                    ev.is_writable(),
                    handshake_req,
                    fan,
                );
            }
            if fan.advance(stats.measuring) > 0 {
                last_progress = Instant::now();
            }
            fill(fan, conns, stats, sending);
        }
        if secs == 0.0 {
            secs = measure_start.elapsed().as_secs_f64().max(1e-9);
            cpu1 = (cpu_ticks("self"), srv(&spid));
        }
        let mut missing: u64 = 0;
        for c in conns.iter() {
            for p in 0..fan.p {
                missing += fan.sent[p].saturating_sub(c.exp[p]);
            }
        }
        let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 100.0 / secs * 100.0),
            _ => None,
        };
        let fmt = |x: Option<f64>| {
            x.map(|v| format!("{:.0}", v))
                .unwrap_or_else(|| "na".into())
        };
        let client_cpu = pct(cpu0.0, cpu1.0);
        let server_cpu = pct(cpu0.1, cpu1.1);
        let (core_busy, core_irq) = match (core0, core1) {
            (Some(a), Some(b)) if b.2 > a.2 => {
                let t = (b.2 - a.2) as f64;
                (
                    format!("{:.0}", (b.0 - a.0) as f64 / t * 100.0),
                    format!("{:.0}", (b.1 - a.1) as f64 / t * 100.0),
                )
            }
            _ => ("na".to_string(), "na".to_string()),
        };
        // publishes/s is deliveries/s / S (smooth); completed publishes (all S
        // copies delivered inside the window) come in bursts when W*S is large.
        let dps = fan.deliveries as f64 / secs;
        let pps = dps / s as f64;
        let ns_per_deliv = server_cpu
            .map(|c| {
                if dps > 0.0 {
                    format!("{:.0}", c / 100.0 * 1e9 / dps)
                } else {
                    "na".into()
                }
            })
            .unwrap_or_else(|| "na".into());
        let h = &stats.hist;
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        let sent_total: u64 = fan.sent.iter().sum();
        let ok =
            stats.errors == 0 && stats.closed == 0 && fan.gaps == 0 && missing == 0 && !stalled;
        if !o.quiet {
            eprintln!(
                "loadgen: fanout S={} P={} W={} B={}: {} completed publishes, {} deliveries in {:.2}s (sent {} total, {} deliveries total), poll-loops {}",
                s, fan.p, fan.w, fan.size, fan.publishes, fan.deliveries, secs, sent_total, fan.deliveries_all, loops
            );
            if let Some(e) = &stats.first_err {
                eprintln!("loadgen: first error: {}", e);
            }
        }
        println!(
            "RESULT mode=fanout subs={} publishers={} window={} size={} secs={:.2} completed_publishes={} publishes_per_s={:.0} \
             deliveries={} deliveries_per_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
             client_cpu_pct={} server_cpu_pct={} server_ns_per_delivery={} server_core_busy_pct={} server_core_irq_pct={} gaps={} missing={} verify_errors={} closed={} stalled={} ok={}",
            s,
            fan.p,
            fan.w,
            fan.size,
            secs,
            fan.publishes,
            pps,
            fan.deliveries,
            dps,
            q(0.5),
            q(0.99),
            q(0.999),
            h.max() as f64 / 1000.0,
            fmt(client_cpu),
            fmt(server_cpu),
            ns_per_deliv,
            core_busy,
            core_irq,
            fan.gaps,
            missing,
            stats.errors,
            stats.closed,
            stalled as u8,
            ok as u8
        );
        std::process::exit(if ok { 0 } else { 1 });
    }
}

// CHURN MODE: see churn.rs
mod churn;
// FANOUT against the wsmio hub (`--mode fanout --hub`): see hubfan.rs
mod hubfan;
