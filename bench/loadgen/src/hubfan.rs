//! HUB FAN-OUT (`--mode fanout --hub`): the fan-out benchmark against the
//! wsmio pub/sub hub, which speaks JSON in text frames on `/ws`
//! (docs/PROTOCOL.md) instead of broadcasting raw frames.
//!
//! Same measurement as the plain fan-out mode (S connections, the last P also
//! publish, at most W publishes per publisher not yet delivered to all S, every
//! delivery checked for order per publisher, drain, gaps/missing), with the
//! hub's protocol:
//! - upgrade on `--path` (default `/ws`, `?token=` appended with `--token`);
//! - each connection sends `{"op":"sub","topic":"bench","id":1}` and waits for
//!   its ack (welcome, join and leave events are skipped);
//! - then the generator waits until nothing has arrived for 300 ms (the join
//!   events of S anonymous users, O(S^2) deliveries, must be over before the
//!   measurement starts);
//! - publishers send `{"op":"pub","topic":"bench","data":"<payload>"}` (no id,
//!   so no ack); `<payload>` is `--size` ASCII bytes: publisher id (8 hex),
//!   sequence (16 hex), send timestamp in ns (16 hex), then filler;
//! - a delivery is a `{"type":"msg",...,"data":"<payload>"}` text frame; the
//!   payload is verified like in the plain mode; `{"type":"gap"}` (dropped
//!   deliveries) and `{"type":"error"}` count as errors.
//!
//! The RESULT line has the plain fan-out fields plus `proto=hub` and
//! `other_frames` (join/leave/welcome/... frames received).  The hub's rate
//! limit must allow the publisher's rate (start it with a high `--rate` and
//! `--burst`).
//!
//! CLUSTER OPTIONS (for `wsmio serve --engine redis`, bench/compare.sh's
//! cluster suite; each works against one memory-engine node as well):
//! - `--pub-port P`: the P publishers are extra connections to port P (node
//!   A) that never subscribe; the `--conns` S connections only subscribe (on
//!   `--port`, or round robin over `--sub-ports A,B`). Every delivery then
//!   crosses from the publishers' node to the subscribers' node(s).
//! - `--rate R`: paced publishing, R publishes/s over all publishers: the
//!   k-th publish is due at t0 + k/R, sent by a waker thread's tick (it only
//!   sleeps and wakes the loop) so it goes out alone, not in a burst; the
//!   payload carries the actual send time, so `p50_us`/`p99_us` are
//!   publish -> delivery without the generator's own queueing, and how late
//!   the sends were against the schedule is reported (`pace_p99_us`).
//!   Undelivered publishes are bounded by a ring of 65,536 per publisher
//!   instead of `--window` (a full ring delays the schedule: the lag shows).
//! - `--acks`: every publish carries `"id":<its sequence>`, and `--window`
//!   bounds the acks outstanding per publisher. Each ack must name an
//!   outstanding publish once; the topic seq in the ack must equal the one
//!   in every delivery of that publish (on every node); acks with an empty
//!   `epoch` are counted (`ack_no_epoch`). Reported: `acks_per_s`,
//!   publish -> ack latency (`ack_p50_us`, `ack_p99_us`), `unacked` after
//!   the drain (must be 0).
//! - The sub ack's `seq` (the topic's position) must be followed by exactly
//!   the next seq on every subscriber, so even the first delivery cannot be
//!   lost unnoticed; `--expect-engine redis` checks every `welcome`'s
//!   `engine`; `--topic T` picks the topic (fresh per run on a shared Redis);
//!   `--watch nodeA=PID,redis=PID` adds each process's CPU use over the
//!   measured window (`cpu_nodeA_pct`, ...).
//!
//! SUBSCRIBER ACKS (`--ack-every K`, issue 19: what acknowledgements cost the
//! hub): every subscriber sends `{"op":"ack","topic":T,"seq":N}` (no `id`, so
//! the hub does not answer) once per K deliveries it received, N being the
//! topic seq of the K-th, i.e. the last one it got when the ack fell due. The
//! acks of one read go out in one write at the end of that read (as a client
//! that batches its writes would send them). An ack the hub refuses comes
//! back as an `error` and fails the run. Reported: `ack_every`, `sub_acks`
//! (sent in the whole run), `sub_acks_per_s` (in the measured window).
use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wsmio::proto::deflate::Inflater;
use wsmio::proto::extension::Direction;

/// hex publisher id (8) + sequence (16) + timestamp (16)
const DHDR: usize = 40;
/// Slots per publisher when `--window` does not bound what is undelivered
/// (`--acks`, `--rate`): publishes sent and not yet delivered to every
/// subscriber (and acked) at most; past it the publisher waits.
const RING_MAX: usize = 1 << 16;
/// The pacing thread's waker.
const WAKE: Token = Token(usize::MAX);
/// `HConn::pubidx` of a connection that does not publish.
const NOT_PUB: usize = usize::MAX;

#[derive(PartialEq, Clone, Copy, Debug)]
enum Hs {
    Connecting,
    Handshaking,
    Subscribing,
    Ready,
    Closed,
}

struct HConn {
    s: TcpStream,
    st: Hs,
    rbuf: Vec<u8>,
    re: usize,
    wbuf: Vec<u8>,
    woff: usize,
    /// next expected sequence number from each publisher
    exp: Vec<u64>,
    /// next expected hub sequence number on the topic (0: none seen yet)
    hub_next: u64,
    /// the publisher this connection is (`NOT_PUB`: none)
    pubidx: usize,
    /// a publisher that never subscribes (`--pub-port`)
    only_pub: bool,
    /// `--ack-every`: deliveries since this subscriber's last ack, and the
    /// topic seq of an ack that fell due (0: none)
    ack: SubAck,
    /// `--deflate`: the last compressed message, inflated
    zbuf: Vec<u8>,
}

#[derive(Default, Clone, Copy)]
struct SubAck {
    since: u64,
    due: u64,
}

struct Acc {
    size: usize,
    p: usize,
    w: usize,
    /// slots per publisher: `w`, or `RING_MAX` with `--acks` / `--rate`
    ring_len: usize,
    acks: bool,
    /// `--ack-every` (0: subscribers never ack)
    ack_every: u64,
    /// subscriber acks sent: all, and in the measured window
    sub_acks_all: u64,
    sub_acks_measured: u64,
    /// scratch for one subscriber ack's JSON
    ack_json: Vec<u8>,
    topic: String,
    /// the start of every delivery on the topic (see `fast_delivery`)
    prefix: Vec<u8>,
    expect_engine: String,
    /// the engines the welcomes named (normally one)
    engines: Vec<String>,
    s_open: u32,
    sent: Vec<u64>,
    /// publishes retired: delivered to every subscriber (and acked)
    done: Vec<u64>,
    /// deliveries seen per slot
    ring: Vec<Vec<u32>>,
    /// acks received per publisher, and per slot (`--acks`)
    acked_n: Vec<u64>,
    acked: Vec<Vec<bool>>,
    /// the topic seq of each slot's publish, from its ack or first delivery
    /// (0: none yet): the others must agree
    hseq: Vec<Vec<u64>>,
    /// when each slot's publish was queued (`--acks`: ack latency)
    sent_ns: Vec<Vec<u64>>,
    acks_all: u64,
    acks_measured: u64,
    ack_no_epoch: u64,
    seq_mismatch: u64,
    sent_measured: u64,
    /// publishes sent on the `--rate` schedule (all publishers)
    paced_sent: u64,
    ack_hist: Histogram<u64>,
    pace_hist: Histogram<u64>,
    deliveries: u64,
    deliveries_all: u64,
    publishes: u64,
    gaps: u64,
    hub_gaps: u64,
    errors: u64,
    closed: u64,
    other_frames: u64,
    frames_seen: u64,
    /// frame bytes received (headers included), and how many frames were
    /// compressed (`--deflate`)
    wire_bytes: u64,
    compressed_frames: u64,
    /// `--deflate`: one inflater for every connection — each message was
    /// compressed on its own (no context takeover), so a kept window is
    /// never referred to
    inflater: Option<Inflater>,
    measuring: bool,
    first_err: Option<String>,
    hist: Histogram<u64>,
    filler: Vec<u8>,
}

impl Acc {
    fn err(&mut self, m: String) {
        self.errors += 1;
        if self.first_err.is_none() {
            self.first_err = Some(m);
        }
    }

    fn advance(&mut self) -> u64 {
        let mut n = 0;
        for p in 0..self.p {
            while self.done[p] < self.sent[p] {
                let slot = (self.done[p] % self.ring_len as u64) as usize;
                if self.ring[p][slot] < self.s_open || self.acks && !self.acked[p][slot] {
                    break;
                }
                self.ring[p][slot] = 0;
                self.hseq[p][slot] = 0;
                if self.acks {
                    self.acked[p][slot] = false;
                }
                self.done[p] += 1;
                n += 1;
            }
        }
        if self.measuring {
            self.publishes += n;
        }
        n
    }

    /// Whether publisher `p` may send another publish now.
    fn room(&self, p: usize) -> bool {
        let open = self.sent[p] - self.done[p];
        if self.acks {
            self.sent[p] - self.acked_n[p] < self.w as u64 && open < self.ring_len as u64
        } else {
            open < self.ring_len as u64
        }
    }

    /// Publish `seq` of publisher `p` has topic seq `hseq` according to
    /// `what` (its ack or a delivery): every report must agree.
    fn check_hseq(&mut self, p: usize, seq: u64, hseq: u64, what: &str) {
        let slot = (seq % self.ring_len as u64) as usize;
        let h = self.hseq[p][slot];
        if h == 0 {
            self.hseq[p][slot] = hseq;
        } else if h != hseq {
            self.seq_mismatch += 1;
            self.err(format!(
                "hub: publisher {} publish {} has topic seq {} in {} but {} elsewhere",
                p, seq, hseq, what, h
            ));
        }
    }

    /// Queue a subscriber's `{"op":"ack"}` for topic seq `seq` (not flushed).
    fn queue_sub_ack(&mut self, out: &mut Vec<u8>, seq: u64) {
        sub_ack_json(&mut self.ack_json, &self.topic, seq);
        push_masked_text(out, &self.ack_json);
        self.sub_acks_all += 1;
        if self.measuring {
            self.sub_acks_measured += 1;
        }
    }

    /// Queue publish `sent[p]` of publisher `p` on `c` (not flushed).
    fn queue_pub(&mut self, c: &mut HConn, p: usize, pl: &mut Vec<u8>, now: u64) {
        use std::io::Write as _;
        let n = self.sent[p];
        pl.clear();
        pl.extend_from_slice(b"{\"op\":\"pub\",\"topic\":\"");
        pl.extend_from_slice(self.topic.as_bytes());
        pl.extend_from_slice(b"\",\"data\":\"");
        let _ = write!(pl, "{:08x}{:016x}{:016x}", p, n, now);
        pl.extend_from_slice(&self.filler[DHDR..]);
        pl.push(b'"');
        if self.acks {
            let _ = write!(pl, ",\"id\":{}", n);
            self.sent_ns[p][(n % self.ring_len as u64) as usize] = now;
        }
        pl.push(b'}');
        push_masked_text(&mut c.wbuf, pl);
        self.sent[p] += 1;
        if self.measuring {
            self.sent_measured += 1;
        }
    }
}

/// `--deflate`'s filler: `n` bytes of chat-like text, words drawn from a
/// small vocabulary by a fixed generator (compresses about as chat does,
/// unlike a repeating alphabet).
pub(crate) fn words(n: usize) -> Vec<u8> {
    const VOCAB: [&str; 24] = [
        "hello", "there", "the", "meeting", "is", "at", "noon", "see", "you", "soon", "ok",
        "thanks", "a", "new", "build", "passed", "on", "main", "lunch", "today", "who", "wants",
        "coffee", "later",
    ];
    let mut x: u32 = 0x2545_f491;
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(VOCAB[(x % VOCAB.len() as u32) as usize].as_bytes());
        v.push(b' ');
    }
    v.truncate(n);
    v
}

/// A subscriber's ack of `topic` up to `seq` (no `id`: not answered).
fn sub_ack_json(buf: &mut Vec<u8>, topic: &str, seq: u64) {
    use std::io::Write as _;
    buf.clear();
    buf.extend_from_slice(b"{\"op\":\"ack\",\"topic\":\"");
    buf.extend_from_slice(topic.as_bytes());
    let _ = write!(buf, "\",\"seq\":{}}}", seq);
}

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
    let total: u64 = v[..8].iter().sum();
    Some((total - v[3] - v[4], v[5] + v[6], total))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    let first = n[0];
    let mut i = 0;
    while i + n.len() <= h.len() {
        match h[i..h.len() - n.len() + 1].iter().position(|&b| b == first) {
            None => return None,
            Some(k) => {
                i += k;
                if &h[i..i + n.len()] == n {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The raw value of the field `"name": value` in a server message (string
/// contents without the quotes; other values up to `,` or `}`).  Whitespace
/// around the colon is allowed.  Good enough for the hub's flat messages; the
/// payloads the generator sends contain no quotes.
fn field<'a>(t: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = find(&t[from..], name) {
        let k = from + i;
        from = k + 1;
        if k == 0 || t[k - 1] != b'"' || t.get(k + name.len()) != Some(&b'"') {
            continue;
        }
        let mut j = k + name.len() + 1;
        while t.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        if t.get(j) != Some(&b':') {
            continue;
        }
        j += 1;
        while t.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        let v = &t[j.min(t.len())..];
        return Some(if v.first() == Some(&b'"') {
            let e = v[1..]
                .iter()
                .position(|&b| b == b'"')
                .unwrap_or(v.len() - 1);
            &v[1..1 + e]
        } else {
            let e = v
                .iter()
                .position(|&b| b == b',' || b == b'}')
                .unwrap_or(v.len());
            v[..e].trim_ascii()
        });
    }
    None
}

/// The value of `"type"` in a server message.
fn msg_type(t: &[u8]) -> &[u8] {
    field(t, b"type").unwrap_or(b"")
}

/// 8 lowercase hex digits (the first the most significant) to their value,
/// all 8 at once in a u64 (SWAR); `None` if any byte is not `0-9a-f`.
#[inline]
fn hex8(b: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let v = u64::from_be_bytes(b.try_into().ok()?);
    if v & HIGH != 0 {
        return None;
    }
    // Per byte (all < 0x80, so no carry or borrow crosses bytes): high bit
    // set where byte >= lo, resp. byte <= hi.
    let ge = |lo: u8| (v + ONES * (0x80 - lo as u64)) & HIGH;
    let le = |hi: u8| (ONES * (0x80 + hi as u64) - v) & HIGH;
    if (ge(b'0') & le(b'9')) | (ge(b'a') & le(b'f')) != HIGH {
        return None;
    }
    // Digit value: the low nibble, plus 9 for a letter (bit 6 set).
    let x = (v & (ONES * 0x0f)) + ((v >> 6) & ONES) * 9;
    // Pack the eight nibbles.
    let x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    let x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    Some((x | (x >> 16)) & 0xffff_ffff)
}

/// 8 or 16 lowercase hex digits (as the generator writes them) to a number.
#[inline]
fn hex(v: &[u8]) -> Option<u64> {
    match v.len() {
        8 => hex8(v),
        16 => Some((hex8(&v[..8])? << 32) | hex8(&v[8..])?),
        _ => None,
    }
}

/// Start of every delivery on the topic (`Delivery::encode` in
/// src/pubsub/protocol.rs): type, topic, then the hub's sequence number.
fn msg_prefix(topic: &str) -> Vec<u8> {
    format!(r#"{{"type":"msg","topic":"{}","seq":"#, topic).into_bytes()
}
/// The last field of a delivery; the payload and `"}` follow it.
const DATA_KEY: &[u8] = br#","data":""#;

/// Fast path for a delivery shaped exactly as the hub encodes it: returns the
/// hub sequence number and the payload (the string value of `data`, the last
/// field), without scanning the fields in between.  `None` for any other
/// shape (the caller then uses the general field parser).
fn fast_delivery<'a>(t: &'a [u8], prefix: &[u8], size: usize) -> Option<(u64, &'a [u8])> {
    let tail = size + 2; // payload + `"}`
    if t.len() < prefix.len() + DATA_KEY.len() + tail
        || !t.starts_with(prefix)
        || !t.ends_with(b"\"}")
    {
        return None;
    }
    let k = t.len() - tail - DATA_KEY.len();
    if &t[k..k + DATA_KEY.len()] != DATA_KEY {
        return None;
    }
    let digits = &t[prefix.len()..k];
    let nd = digits
        .iter()
        .take(20)
        .take_while(|b| b.is_ascii_digit())
        .count();
    // 1..=19 digits fit a u64 without overflow.
    if nd == 0 || nd > 19 || digits.get(nd) != Some(&b',') {
        return None;
    }
    let seq = digits[..nd]
        .iter()
        .fold(0u64, |n, &b| n * 10 + (b - b'0') as u64);
    Some((seq, &t[k + DATA_KEY.len()..t.len() - 2]))
}

fn push_masked_text(out: &mut Vec<u8>, payload: &[u8]) {
    let n = payload.len();
    out.push(0x81);
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    for (i, b) in payload.iter().enumerate() {
        out.push(b ^ MASK[i & 3]);
    }
}

fn flush_h(c: &mut HConn) -> io::Result<()> {
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

fn close_conn(c: &mut HConn, a: &mut Acc, m: String) {
    if c.st != Hs::Closed {
        c.st = Hs::Closed;
        a.closed += 1;
        if a.first_err.is_none() {
            a.first_err = Some(m);
        }
    }
}

/// A number field of a hub message.
fn num(t: &[u8], name: &[u8]) -> Option<u64> {
    std::str::from_utf8(field(t, name)?).ok()?.parse().ok()
}

/// One text message from the hub, on a connection in state `st` that is
/// publisher `pubidx` (or `NOT_PUB`), a subscriber unless `only_pub`.
#[allow(clippy::too_many_arguments)]
fn on_text(
    st: &mut Hs,
    exp: &mut [u64],
    hub_next: &mut u64,
    ack: &mut SubAck,
    pubidx: usize,
    only_pub: bool,
    a: &mut Acc,
    t: &[u8],
    now: u64,
) {
    if *st == Hs::Ready && !only_pub {
        if let Some((hseq, d)) = fast_delivery(t, &a.prefix, a.size) {
            return on_delivery(exp, hub_next, ack, a, Some(hseq), d, now);
        }
    }
    let ty = msg_type(t);
    match (*st, ty) {
        (Hs::Ready, b"msg") if !only_pub => {
            if field(t, b"topic") != Some(a.topic.as_bytes()) {
                a.err(format!(
                    "hub: delivery on another topic: {}",
                    String::from_utf8_lossy(t)
                ));
                return;
            }
            let Some(d) = field(t, b"data") else {
                a.err("hub msg without a data field".into());
                return;
            };
            let hseq = num(t, b"seq");
            on_delivery(exp, hub_next, ack, a, hseq, d, now);
        }
        (_, b"msg") if only_pub => a.err(format!(
            "hub: a delivery on a publisher that subscribed to nothing: {}",
            String::from_utf8_lossy(t)
        )),
        (Hs::Ready, b"ack") if pubidx != NOT_PUB && field(t, b"op") == Some(b"pub") => {
            on_ack(a, pubidx, t, now)
        }
        // our subscription's ack (id 1), not the inbox's (id null): the
        // topic's position then; the first delivery must be the next seq
        (Hs::Subscribing, b"ack") if !only_pub && field(t, b"id") == Some(b"1") => {
            match num(t, b"seq") {
                Some(seq) => *hub_next = seq + 1,
                None => a.err(format!(
                    "hub: sub ack without a seq: {}",
                    String::from_utf8_lossy(t)
                )),
            }
            *st = Hs::Ready
        }
        (_, b"welcome") => {
            a.other_frames += 1;
            let e = field(t, b"engine").unwrap_or(b"");
            if !a.engines.iter().any(|x| x.as_bytes() == e) {
                a.engines.push(String::from_utf8_lossy(e).into_owned());
            }
            if !a.expect_engine.is_empty() && e != a.expect_engine.as_bytes() {
                a.err(format!(
                    "hub: welcome names engine {:?}, expected {:?}",
                    String::from_utf8_lossy(e),
                    a.expect_engine
                ));
            }
            // a publisher that does not subscribe starts after its welcome
            if only_pub && *st == Hs::Subscribing {
                *st = Hs::Ready;
            }
        }
        (_, b"error") => a.err(format!("hub error: {}", String::from_utf8_lossy(t))),
        (_, b"gap") => {
            a.hub_gaps += 1;
            a.err(format!(
                "hub dropped deliveries: {}",
                String::from_utf8_lossy(t)
            ));
        }
        _ => a.other_frames += 1,
    }
}

/// The ack of a publish of publisher `p` (`--acks`): it must name an
/// outstanding publish, once, and its topic seq must agree with the
/// deliveries of that publish.
fn on_ack(a: &mut Acc, p: usize, t: &[u8], now: u64) {
    let (Some(id), Some(hseq)) = (num(t, b"id"), num(t, b"seq")) else {
        a.err(format!(
            "hub: pub ack without a numeric id or seq: {}",
            String::from_utf8_lossy(t)
        ));
        return;
    };
    if !a.acks || id < a.done[p] || id >= a.sent[p] {
        a.err(format!(
            "hub: ack for publisher {} publish {} that is not outstanding (retired {}, sent {})",
            p, id, a.done[p], a.sent[p]
        ));
        return;
    }
    if field(t, b"topic") != Some(a.topic.as_bytes()) {
        a.err(format!(
            "hub: pub ack names another topic: {}",
            String::from_utf8_lossy(t)
        ));
        return;
    }
    let slot = (id % a.ring_len as u64) as usize;
    if a.acked[p][slot] {
        a.err(format!(
            "hub: second ack for publisher {} publish {}",
            p, id
        ));
        return;
    }
    a.acked[p][slot] = true;
    a.acked_n[p] += 1;
    a.acks_all += 1;
    if field(t, b"epoch").is_none_or(|e| e.is_empty()) {
        a.ack_no_epoch += 1;
    }
    if a.measuring {
        a.acks_measured += 1;
        let _ = a
            .ack_hist
            .record(now.saturating_sub(a.sent_ns[p][slot]).max(1));
    }
    a.check_hseq(p, id, hseq, "its ack");
}

/// A delivery's payload `d` with the hub's topic sequence number `hseq`:
/// the hub numbers the topic's messages consecutively, so each subscriber
/// must see them without holes; the payload must be exactly what the
/// publisher sent, in order per publisher. With `--ack-every K`, every K-th
/// delivery makes an ack due (`ack.due`, queued by `parse`).
fn on_delivery(
    exp: &mut [u64],
    hub_next: &mut u64,
    ack: &mut SubAck,
    a: &mut Acc,
    hseq: Option<u64>,
    d: &[u8],
    now: u64,
) {
    let Some(hseq) = hseq else {
        a.err("hub msg without a numeric seq".into());
        return;
    };
    if *hub_next != 0 && hseq != *hub_next {
        a.err(format!(
            "hub: topic seq {} after {} (not consecutive)",
            hseq,
            *hub_next - 1
        ));
    }
    *hub_next = hseq + 1;
    if d.len() != a.size || d[DHDR..] != a.filler[DHDR..] {
        a.err(format!(
            "hub payload mismatch (len {} vs {})",
            d.len(),
            a.size
        ));
        return;
    }
    let (Some(pubid), Some(seq), Some(ts)) = (hex(&d[0..8]), hex(&d[8..24]), hex(&d[24..40]))
    else {
        a.err("hub payload header is not hex".into());
        return;
    };
    let pubid = pubid as usize;
    if pubid >= a.p || seq >= a.sent[pubid] {
        a.err(format!(
            "hub: unknown publisher {} or unsent seq {}",
            pubid, seq
        ));
        return;
    }
    a.check_hseq(pubid, seq, hseq, "a delivery");
    let e = exp[pubid];
    if seq < e {
        a.err(format!(
            "hub: publisher {} seq {} after {} (dup/reorder)",
            pubid, seq, e
        ));
        return;
    }
    if seq > e {
        a.gaps += seq - e;
        if a.first_err.is_none() {
            a.first_err = Some(format!(
                "hub: gap, publisher {} expected {} got {}",
                pubid, e, seq
            ));
        }
        for s in e..seq {
            a.ring[pubid][(s % a.ring_len as u64) as usize] += 1;
        }
    }
    a.ring[pubid][(seq % a.ring_len as u64) as usize] += 1;
    exp[pubid] = seq + 1;
    a.deliveries_all += 1;
    if a.ack_every > 0 {
        ack.since += 1;
        if ack.since >= a.ack_every {
            ack.since = 0;
            ack.due = hseq;
        }
    }
    if a.measuring {
        a.deliveries += 1;
        let _ = a.hist.record(now.saturating_sub(ts).max(1));
    }
}

/// `--deflate`: inflate the compressed message in `c.rbuf[ps..pe]` into
/// `c.zbuf`; `false` (the connection closed) if it does not inflate or is
/// fragmented (the hub never fragments).
fn inflate(c: &mut HConn, a: &mut Acc, ps: usize, pe: usize, fin: bool) -> bool {
    a.compressed_frames += 1;
    c.zbuf.clear();
    let ok = a
        .inflater
        .as_mut()
        .map(|z| z.decompress(&c.rbuf[ps..pe], &mut c.zbuf));
    if !matches!(ok, Some(Ok(()))) || !fin {
        a.err("compressed frame does not inflate (or is fragmented)".into());
        close_conn(c, a, "bad compressed frame".into());
        return false;
    }
    true
}

/// Parse complete frames in the read buffer.
fn parse(c: &mut HConn, a: &mut Acc, now: u64) {
    let mut pos = 0;
    while c.st != Hs::Closed && c.re - pos >= 2 {
        let b = &c.rbuf[pos..c.re];
        let b0 = b[0];
        let op = b0 & 0x0f;
        // RSV1: a compressed message, with --deflate (RFC 7692 §6).
        let rsv_ok = if a.inflater.is_some() { 0x40 } else { 0 };
        if b0 & 0x70 & !rsv_ok != 0 || b[1] & 0x80 != 0 {
            a.err("server frame has RSV bits or mask set".into());
            close_conn(c, a, "protocol error".into());
            return;
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
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(x) as usize)
        };
        if len > (16 << 20) {
            a.err(format!("frame too large: {}", len));
            close_conn(c, a, "frame too large".into());
            return;
        }
        if b.len() < hdr + len {
            if c.rbuf.len() < hdr + len {
                // make room for the whole frame (after compaction below)
                let need = (hdr + len).next_power_of_two();
                c.rbuf.copy_within(pos..c.re, 0);
                c.re -= pos;
                c.rbuf.resize(need.max(c.rbuf.len()), 0);
                return;
            }
            break;
        }
        let ps = pos + hdr;
        let pe = ps + len;
        pos = pe;
        a.frames_seen += 1;
        a.wire_bytes += (hdr + len) as u64;
        let compressed = b0 & 0x40 != 0;
        if compressed && !inflate(c, a, ps, pe, b0 & 0x80 != 0) {
            return;
        }
        match op {
            1 if b0 & 0x80 != 0 => {
                let t = if compressed {
                    &c.zbuf[..]
                } else {
                    &c.rbuf[ps..pe]
                };
                on_text(
                    &mut c.st,
                    &mut c.exp,
                    &mut c.hub_next,
                    &mut c.ack,
                    c.pubidx,
                    c.only_pub,
                    a,
                    t,
                    now,
                );
                if c.ack.due != 0 {
                    a.queue_sub_ack(&mut c.wbuf, c.ack.due);
                    c.ack.due = 0;
                }
            }
            8 => {
                let m = format!(
                    "server sent close frame {:?}",
                    String::from_utf8_lossy(&c.rbuf[ps..pe])
                );
                close_conn(c, a, m);
                return;
            }
            9 => {
                let pl = c.rbuf[ps..pe].to_vec();
                c.wbuf.push(0x8a);
                c.wbuf.push(0x80 | pl.len() as u8);
                c.wbuf.extend_from_slice(&MASK);
                for (i, x) in pl.iter().enumerate() {
                    c.wbuf.push(x ^ MASK[i & 3]);
                }
            }
            10 => {}
            _ => {
                a.err(format!("hub: unexpected opcode {} (fin={})", op, b0 >> 7));
                close_conn(c, a, "unexpected frame".into());
                return;
            }
        }
    }
    c.rbuf.copy_within(pos..c.re, 0);
    c.re -= pos;
}

/// Handle readiness of one connection.
fn ready(c: &mut HConn, a: &mut Acc, hs_req: &[u8], sub_req: &[u8], base: Instant) {
    if c.st == Hs::Closed {
        return;
    }
    if c.st == Hs::Connecting {
        match c.s.take_error() {
            Ok(Some(e)) | Err(e) => return close_conn(c, a, format!("connect error: {}", e)),
            Ok(None) => {}
        }
        match c.s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return close_conn(c, a, format!("connect error: {}", e)),
        }
        c.st = Hs::Handshaking;
        c.wbuf.extend_from_slice(hs_req);
    }
    loop {
        if c.rbuf.len() - c.re < 4096 {
            let nl = c.rbuf.len() * 2;
            c.rbuf.resize(nl, 0);
        }
        let space = c.rbuf.len() - c.re;
        match c.s.read(&mut c.rbuf[c.re..]) {
            Ok(0) => {
                let m = if c.st == Hs::Handshaking {
                    "EOF during handshake"
                } else {
                    "server closed connection (EOF)"
                };
                return close_conn(c, a, m.into());
            }
            Ok(n) => {
                c.re += n;
                if c.st == Hs::Handshaking {
                    let Some(pos) = find_hdr_end(&c.rbuf[..c.re]) else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&c.rbuf[..pos]).to_string();
                    let ok = head.starts_with("HTTP/1.1 101")
                        && head.lines().any(|l| {
                            let mut it = l.splitn(2, ':');
                            let k = it.next().unwrap_or("").trim();
                            let v = it.next().unwrap_or("").trim();
                            k.eq_ignore_ascii_case("sec-websocket-accept") && v == ACCEPT
                        });
                    if !ok {
                        a.errors += 1;
                        return close_conn(
                            c,
                            a,
                            format!("bad handshake response: {:?}", head.lines().next()),
                        );
                    }
                    c.rbuf.copy_within(pos..c.re, 0);
                    c.re -= pos;
                    c.st = Hs::Subscribing;
                    if !c.only_pub {
                        c.wbuf.extend_from_slice(sub_req);
                    }
                }
                parse(c, a, now_ns(base));
                if c.st == Hs::Closed {
                    return;
                }
                if n < space && c.st != Hs::Handshaking {
                    // the socket is drained (edge-triggered: new data => new event)
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return close_conn(c, a, format!("read error: {}", e)),
        }
    }
    if let Err(e) = flush_h(c) {
        close_conn(c, a, format!("write error: {}", e));
    }
}

/// Write what a connection has queued; a failure closes it.
fn flush_or_close(c: &mut HConn, a: &mut Acc, what: &str) {
    if let Err(e) = flush_h(c) {
        close_conn(c, a, format!("{} write error: {}", what, e));
    }
}

pub fn run(o: &Opts) -> ! {
    let base = Instant::now();
    let s = o.conns;
    // --pub-port: the publishers are extra connections after the S subscribers
    let sep = o.pub_port != 0;
    let total = if sep { s + o.publishers } else { s };
    let sub_ports = if o.sub_ports.is_empty() {
        vec![o.port]
    } else {
        o.sub_ports.clone()
    };
    let path = if o.path.is_empty() {
        "/ws".to_string()
    } else {
        o.path.clone()
    };
    let target = if o.token.is_empty() {
        path
    } else {
        format!("{}?token={}", path, o.token)
    };
    let hs_req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        target,
        o.host,
        o.port,
        KEY,
        super::extensions_header(o)
    )
    .into_bytes();
    let mut sub_req = Vec::new();
    push_masked_text(
        &mut sub_req,
        format!("{{\"op\":\"sub\",\"topic\":\"{}\",\"id\":1}}", o.topic).as_bytes(),
    );
    let paced = o.rate > 0.0;
    let ring_len = if o.acks || paced {
        o.window.max(RING_MAX)
    } else {
        o.window
    };
    let per_pub = |x| vec![x; o.publishers];
    let mut a = Acc {
        size: o.size,
        p: o.publishers,
        w: o.window,
        ring_len,
        acks: o.acks,
        ack_every: o.ack_every,
        sub_acks_all: 0,
        sub_acks_measured: 0,
        ack_json: Vec::with_capacity(64 + o.topic.len()),
        topic: o.topic.clone(),
        prefix: msg_prefix(&o.topic),
        expect_engine: o.expect_engine.clone(),
        engines: Vec::new(),
        s_open: s as u32,
        sent: per_pub(0),
        done: per_pub(0),
        ring: vec![vec![0u32; ring_len]; o.publishers],
        acked_n: per_pub(0),
        acked: vec![vec![false; if o.acks { ring_len } else { 0 }]; o.publishers],
        hseq: vec![vec![0u64; ring_len]; o.publishers],
        sent_ns: vec![vec![0u64; if o.acks { ring_len } else { 0 }]; o.publishers],
        acks_all: 0,
        acks_measured: 0,
        ack_no_epoch: 0,
        seq_mismatch: 0,
        sent_measured: 0,
        paced_sent: 0,
        ack_hist: Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap(),
        pace_hist: Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap(),
        deliveries: 0,
        deliveries_all: 0,
        publishes: 0,
        gaps: 0,
        hub_gaps: 0,
        errors: 0,
        closed: 0,
        other_frames: 0,
        frames_seen: 0,
        wire_bytes: 0,
        compressed_frames: 0,
        inflater: o.deflate.then(|| {
            let dir = Direction {
                no_context_takeover: false,
                max_window_bits: 15,
            };
            Inflater::new(dir, 16 << 20)
        }),
        measuring: false,
        first_err: None,
        hist: Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap(),
        filler: if o.deflate {
            words(o.size)
        } else {
            (0..o.size).map(|i| b'A' + (i % 26) as u8).collect()
        },
    };
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(4096);
    let mut conns: Vec<HConn> = Vec::with_capacity(total);
    let fail_exit = |a: &Acc, ready: usize, what: &str| -> ! {
        println!(
            "RESULT mode=fanout proto=hub ok=0 open={} of={} error={:?}",
            ready,
            total,
            a.first_err.clone().unwrap_or_else(|| what.to_string())
        );
        std::process::exit(1);
    };

    // ---- connect, upgrade, subscribe (bounded by --connect-timeout) ----
    let deadline = Instant::now() + Duration::from_secs_f64(o.connect_timeout);
    let mut started = 0usize;
    loop {
        let pending = conns
            .iter()
            .filter(|c| c.st != Hs::Ready && c.st != Hs::Closed)
            .count();
        let mut room = o.max_pending.saturating_sub(pending);
        while started < total && room > 0 {
            use socket2::{Domain, Protocol, Socket, Type};
            // subscribers round robin over the subscriber ports, then the
            // publishers (--pub-port)
            let port = if started < s {
                sub_ports[started % sub_ports.len()]
            } else {
                o.pub_port
            };
            let res = (|| -> io::Result<TcpStream> {
                let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                sock.set_nonblocking(true)?;
                sock.set_nodelay(true)?;
                if o.src_ips > 1 {
                    let src = Ipv4Addr::new(127, 0, 0, 1 + (started as u32 % o.src_ips) as u8);
                    sock.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
                }
                let dst = SocketAddr::V4(SocketAddrV4::new(o.host, port));
                match sock.connect(&dst.into()) {
                    Ok(()) => {}
                    Err(e)
                        if e.raw_os_error() == Some(libc_einprogress())
                            || e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let st: std::net::TcpStream = sock.into();
                Ok(TcpStream::from_std(st))
            })();
            match res {
                Ok(mut st) => {
                    poll.registry()
                        .register(
                            &mut st,
                            Token(started),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register");
                    let pubidx = if sep && started >= s {
                        started - s
                    } else if !sep && started >= s - o.publishers {
                        started - (s - o.publishers)
                    } else {
                        NOT_PUB
                    };
                    conns.push(HConn {
                        s: st,
                        st: Hs::Connecting,
                        rbuf: vec![0u8; 16384],
                        re: 0,
                        wbuf: Vec::with_capacity(512),
                        woff: 0,
                        exp: vec![0; o.publishers],
                        hub_next: 0,
                        pubidx,
                        only_pub: sep && started >= s,
                        ack: SubAck::default(),
                        zbuf: Vec::new(),
                    });
                }
                Err(e) => {
                    a.first_err.get_or_insert(format!(
                        "connect #{} to port {} failed: {}",
                        started, port, e
                    ));
                    fail_exit(&a, 0, "connect failed");
                }
            }
            started += 1;
            room -= 1;
        }
        let ready_n = conns.iter().filter(|c| c.st == Hs::Ready).count();
        if a.closed > 0 {
            fail_exit(&a, ready_n, "connection lost during setup");
        }
        if ready_n == total {
            break;
        }
        if Instant::now() > deadline {
            fail_exit(&a, ready_n, "connect/subscribe phase timed out");
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            let k = ev.token().0;
            ready(&mut conns[k], &mut a, &hs_req, &sub_req, base);
        }
    }
    // ---- settle: wait until 300 ms pass without any frame (join events) ----
    let settle_end = Instant::now() + Duration::from_secs_f64(o.connect_timeout);
    let mut last = Instant::now();
    let mut seen = a.frames_seen;
    while last.elapsed() < Duration::from_millis(300) {
        if Instant::now() > settle_end {
            a.first_err
                .get_or_insert("hub kept sending during the settle phase".into());
            fail_exit(&a, total, "settle timed out");
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            let k = ev.token().0;
            ready(&mut conns[k], &mut a, &hs_req, &sub_req, base);
        }
        if a.frames_seen != seen {
            seen = a.frames_seen;
            last = Instant::now();
        }
        if a.closed > 0 {
            fail_exit(&a, total, "connection lost while settling");
        }
    }
    let setup_other = a.other_frames;
    if a.errors > 0 {
        // e.g. a welcome from the wrong engine: no point in measuring
        fail_exit(&a, total, "error during setup");
    }

    // ---- publish / measure (as the plain fan-out mode) ----
    let pub_conn: Vec<usize> = if sep {
        (s..total).collect()
    } else {
        (s - a.p..s).collect()
    };
    let mut pl = Vec::with_capacity(o.size + 64);
    // --window (or --acks) mode: every publisher keeps its window full
    let fill = |a: &mut Acc, conns: &mut [HConn], pl: &mut Vec<u8>, base: Instant| {
        let now = now_ns(base);
        for (p, &ci) in pub_conn.iter().enumerate() {
            let c = &mut conns[ci];
            if c.st != Hs::Ready {
                continue;
            }
            let mut added = false;
            while a.room(p) {
                a.queue_pub(c, p, pl, now);
                added = true;
            }
            if added {
                flush_or_close(c, a, "publisher");
            }
        }
    };
    let t0 = Instant::now();
    let t0_ns = now_ns(base);
    // --rate mode: the k-th publish (over all publishers, round robin) is due
    // at t0 + k/rate; send what is due (unless its publisher's ring is full)
    let paced_fill = |a: &mut Acc, conns: &mut [HConn], pl: &mut Vec<u8>, base: Instant| {
        let now_i = Instant::now();
        let due = (now_i.duration_since(t0).as_secs_f64() * o.rate) as u64 + 1;
        let now = now_ns(base);
        let mut touched = false;
        while a.paced_sent < due {
            let p = (a.paced_sent % a.p as u64) as usize;
            let c = &mut conns[pub_conn[p]];
            if c.st != Hs::Ready || !a.room(p) {
                break;
            }
            let sched = t0_ns + (a.paced_sent as f64 * 1e9 / o.rate) as u64;
            a.queue_pub(c, p, pl, now);
            if a.measuring {
                let _ = a.pace_hist.record(now.saturating_sub(sched).max(1));
            }
            a.paced_sent += 1;
            touched = true;
        }
        if touched {
            for &ci in pub_conn.iter() {
                if !conns[ci].wbuf.is_empty() {
                    flush_or_close(&mut conns[ci], a, "publisher");
                }
            }
        }
    };
    // the pacing thread only sleeps and wakes the loop, once per publish
    // (at most every 50 us: above 20,000/s several go out per tick)
    let stop_pacer = Arc::new(AtomicBool::new(false));
    let pacer = if paced {
        let waker = mio::Waker::new(poll.registry(), WAKE).expect("waker");
        let stop = stop_pacer.clone();
        let tick = Duration::from_secs_f64((1.0 / o.rate).max(50e-6));
        Some(std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                next += tick;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > tick * 100 {
                    next = now; // far behind (a stopped process): do not burst
                }
                let _ = waker.wake();
            }
        }))
    } else {
        None
    };
    let warm_end = t0 + Duration::from_secs_f64(o.warmup);
    let end = warm_end + Duration::from_secs_f64(o.duration);
    let spid = o.server_pid.to_string();
    let srv = |p: &str| if o.server_pid > 0 { cpu_ticks(p) } else { None };
    let watched = || -> Vec<Option<u64>> {
        o.watch
            .iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()))
            .collect()
    };
    let mut measure_start = t0;
    let (mut cpu0, mut cpu1) = ((None, None), (None, None));
    let (mut core0, mut core1) = (None, None);
    let (mut w0, mut w1) = (Vec::new(), Vec::new());
    if o.warmup == 0.0 {
        a.measuring = true;
        cpu0 = (cpu_ticks("self"), srv(&spid));
        core0 = core_ticks(o.server_core);
        w0 = watched();
    }
    let mut sending = true;
    let mut drain_end: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut stalled = false;
    let mut secs = 0.0;
    let mut loops = 0u64;
    if paced {
        paced_fill(&mut a, &mut conns, &mut pl, base);
    } else {
        fill(&mut a, &mut conns, &mut pl, base);
    }
    loop {
        let now_i = Instant::now();
        if !a.measuring && sending && now_i >= warm_end {
            a.measuring = true;
            measure_start = now_i;
            cpu0 = (cpu_ticks("self"), srv(&spid));
            core0 = core_ticks(o.server_core);
            w0 = watched();
        }
        if sending && now_i >= end {
            secs = measure_start.elapsed().as_secs_f64();
            cpu1 = (cpu_ticks("self"), srv(&spid));
            core1 = core_ticks(o.server_core);
            w1 = watched();
            a.measuring = false;
            sending = false;
            stop_pacer.store(true, Ordering::Relaxed);
            drain_end = Some(now_i + Duration::from_secs_f64(o.drain));
        }
        if let Some(de) = drain_end {
            if now_i >= de || (0..a.p).all(|p| a.done[p] == a.sent[p]) {
                break;
            }
        }
        if a.closed > 0 {
            break;
        }
        if sending && now_i.duration_since(last_progress) > Duration::from_secs(5) {
            stalled = true;
            a.first_err
                .get_or_insert("hub fanout: no publish completed for 5 s (stall)".into());
            secs = measure_start.elapsed().as_secs_f64();
            cpu1 = (cpu_ticks("self"), srv(&spid));
            w1 = watched();
            a.measuring = false;
            break;
        }
        let to = if o.spin {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        poll.poll(&mut events, Some(to)).expect("poll");
        loops += 1;
        for ev in events.iter() {
            let k = ev.token().0;
            if k < conns.len() {
                ready(&mut conns[k], &mut a, &hs_req, &sub_req, base);
            }
        }
        if a.advance() > 0 {
            last_progress = Instant::now();
        }
        if sending {
            if paced {
                paced_fill(&mut a, &mut conns, &mut pl, base);
            } else {
                fill(&mut a, &mut conns, &mut pl, base);
            }
        }
    }
    stop_pacer.store(true, Ordering::Relaxed);
    if let Some(t) = pacer {
        let _ = t.join();
    }
    if secs == 0.0 {
        secs = measure_start.elapsed().as_secs_f64().max(1e-9);
        cpu1 = (cpu_ticks("self"), srv(&spid));
        w1 = watched();
    }
    let mut missing: u64 = 0;
    for c in conns.iter().filter(|c| !c.only_pub) {
        for p in 0..a.p {
            missing += a.sent[p].saturating_sub(c.exp[p]);
        }
    }
    let unacked: u64 = if a.acks {
        (0..a.p).map(|p| a.sent[p] - a.acked_n[p]).sum()
    } else {
        0
    };
    let pct = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 100.0 / secs * 100.0),
        _ => None,
    };
    let fmt = |x: Option<f64>| {
        x.map(|v| format!("{:.0}", v))
            .unwrap_or_else(|| "na".into())
    };
    let client_cpu = pct(cpu0.0, cpu1.0);
    let server_cpu = pct(cpu0.1, cpu1.1);
    let watch_cpu: String = o
        .watch
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let v = pct(w0.get(i).copied().flatten(), w1.get(i).copied().flatten());
            format!(" cpu_{}_pct={}", name, fmt(v))
        })
        .collect();
    let (core_busy, core_irq) = match (core0, core1) {
        (Some(x), Some(y)) if y.2 > x.2 => {
            let t = (y.2 - x.2) as f64;
            (
                format!("{:.0}", (y.0 - x.0) as f64 / t * 100.0),
                format!("{:.0}", (y.1 - x.1) as f64 / t * 100.0),
            )
        }
        _ => ("na".to_string(), "na".to_string()),
    };
    let dps = a.deliveries as f64 / secs;
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
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let sent_total: u64 = a.sent.iter().sum();
    let ok =
        a.errors == 0 && a.closed == 0 && a.gaps == 0 && missing == 0 && unacked == 0 && !stalled;
    if !o.quiet {
        eprintln!(
            "loadgen: hub fanout S={} P={} W={} B={}{}{}{}{}: {} completed publishes, {} deliveries in {:.2}s \
             (sent {} total, {} deliveries total, {} acks total, {} subscriber acks sent, {} other frames during setup), poll-loops {}",
            s,
            a.p,
            a.w,
            a.size,
            if sep { format!(" publishers on port {}", o.pub_port) } else { String::new() },
            if paced { format!(" paced {}/s", o.rate) } else { String::new() },
            if a.acks { " acks" } else { "" },
            if a.ack_every > 0 { format!(" subscribers ack every {}", a.ack_every) } else { String::new() },
            a.publishes,
            a.deliveries,
            secs,
            sent_total,
            a.deliveries_all,
            a.acks_all,
            a.sub_acks_all,
            setup_other,
            loops
        );
        if let Some(e) = &a.first_err {
            eprintln!("loadgen: first error: {}", e);
        }
    }
    let ports: Vec<String> = sub_ports.iter().map(|p| p.to_string()).collect();
    let engines = if a.engines.is_empty() {
        "na".to_string()
    } else {
        a.engines.join(",")
    };
    println!(
        "RESULT mode=fanout proto=hub subs={} publishers={} window={} size={} secs={:.2} completed_publishes={} publishes_per_s={:.0} \
         deliveries={} deliveries_per_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
         client_cpu_pct={} server_cpu_pct={} server_ns_per_delivery={} server_core_busy_pct={} server_core_irq_pct={} \
         gaps={} missing={} hub_gap_events={} verify_errors={} closed={} stalled={} other_frames={} \
         topic={} engine={} sub_ports={} pub_port={} rate={} acks={} sent={} sent_per_s={:.0} \
         acks_total={} acks_per_s={:.0} ack_p50_us={:.1} ack_p99_us={:.1} ack_p999_us={:.1} ack_max_us={:.1} \
         pace_p50_us={:.1} pace_p99_us={:.1} pace_max_us={:.1} unacked={} ack_no_epoch={} seq_mismatch={} \
         ack_every={} sub_acks={} sub_acks_per_s={:.0} deflate={} wire_bytes_per_frame={:.1} compressed_frames={}{} ok={}",
        s,
        a.p,
        a.w,
        a.size,
        secs,
        a.publishes,
        pps,
        a.deliveries,
        dps,
        q(&a.hist, 0.5),
        q(&a.hist, 0.99),
        q(&a.hist, 0.999),
        a.hist.max() as f64 / 1000.0,
        fmt(client_cpu),
        fmt(server_cpu),
        ns_per_deliv,
        core_busy,
        core_irq,
        a.gaps,
        missing,
        a.hub_gaps,
        a.errors,
        a.closed,
        stalled as u8,
        a.other_frames,
        a.topic,
        engines,
        ports.join(","),
        o.pub_port,
        o.rate,
        a.acks as u8,
        sent_total,
        a.sent_measured as f64 / secs,
        a.acks_all,
        a.acks_measured as f64 / secs,
        q(&a.ack_hist, 0.5),
        q(&a.ack_hist, 0.99),
        q(&a.ack_hist, 0.999),
        a.ack_hist.max() as f64 / 1000.0,
        q(&a.pace_hist, 0.5),
        q(&a.pace_hist, 0.99),
        a.pace_hist.max() as f64 / 1000.0,
        unacked,
        a.ack_no_epoch,
        a.seq_mismatch,
        a.ack_every,
        a.sub_acks_all,
        a.sub_acks_measured as f64 / secs,
        o.deflate as u8,
        a.wire_bytes as f64 / a.frames_seen.max(1) as f64,
        a.compressed_frames,
        watch_cpu,
        ok as u8
    );
    std::process::exit(if ok { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path takes deliveries of the chosen topic only, exactly as
    /// the hub frames them; anything else goes to the field parser.
    #[test]
    fn fast_delivery_matches_the_topic() {
        let pl = "0000000100000000000000070000000000001234ABCDEFGH";
        let t = format!(
            r#"{{"type":"msg","topic":"room-7","seq":42,"epoch":"ab","node":"A","from":"u","ts":1,"data":"{}"}}"#,
            pl
        );
        let p = msg_prefix("room-7");
        assert_eq!(
            fast_delivery(t.as_bytes(), &p, pl.len()),
            Some((42, pl.as_bytes()))
        );
        assert_eq!(
            fast_delivery(t.as_bytes(), &msg_prefix("room-"), pl.len()),
            None
        );
        assert_eq!(
            fast_delivery(t.as_bytes(), &msg_prefix("bench"), pl.len()),
            None
        );
        assert_eq!(fast_delivery(t.as_bytes(), &p, pl.len() - 1), None);
        // an ack's fields, as on_ack reads them (the Redis engine's acks
        // from a node without the topic attached have an empty epoch)
        let ack = br#"{"type":"ack","id":7,"op":"pub","topic":"room-7","seq":1,"epoch":""}"#;
        assert_eq!(num(ack, b"id"), Some(7));
        assert_eq!(num(ack, b"seq"), Some(1));
        assert_eq!(field(ack, b"epoch"), Some(&b""[..]));
        assert_eq!(field(ack, b"op"), Some(&b"pub"[..]));
    }

    /// A subscriber's ack, as the hub's protocol spells it, in one masked
    /// text frame.
    #[test]
    fn sub_ack_frame() {
        let mut j = Vec::new();
        sub_ack_json(&mut j, "room-7", 1234);
        assert_eq!(j, br#"{"op":"ack","topic":"room-7","seq":1234}"#);
        let mut f = Vec::new();
        push_masked_text(&mut f, &j);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1] as usize, 0x80 | j.len());
        let unmasked: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i & 3])
            .collect();
        assert_eq!(unmasked, j);
    }

    /// The SWAR decoder against the standard library's parser.
    #[test]
    fn hex_matches_from_str_radix() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i < 4 {
                [0, 1, u64::MAX, 0xabcdef][i as usize]
            } else {
                x
            };
            let s16 = format!("{:016x}", v);
            assert_eq!(hex(s16.as_bytes()), Some(v));
            let s8 = format!("{:08x}", v as u32);
            assert_eq!(hex(s8.as_bytes()), Some(v as u32 as u64));
            // one byte replaced by a non-digit (or an uppercase one) fails
            let mut bad = s16.into_bytes();
            bad[(x % 16) as usize] =
                [b'g', b'A', b'/', b':', b'`', b'F', 0x80, b' '][(i % 8) as usize];
            assert_eq!(hex(&bad), None, "{:?}", String::from_utf8_lossy(&bad));
        }
    }
}
