//! Deflate backends for permessage-deflate (RFC 7692), side by side: the
//! measurement behind the choice of `wsmio`'s `deflate` feature.
//!
//! ```text
//! cargo bench -p wsmio-micro --bench deflate_backends                     # flate2 on miniz_oxide
//! cargo bench -p wsmio-micro --bench deflate_backends --features zlib-rs  # flate2 on zlib-rs
//! cargo bench -p wsmio-micro --bench deflate_backends -- --quick          # 3 runs, shorter
//! ```
//!
//! Every build also measures `zlib-rs` and `miniz_oxide` used directly, so
//! the two runs together cover all four candidates (flate2 picks one backend
//! per build: cargo features are unified).
//!
//! Per payload, mode and setting it prints compress and decompress time per
//! message (median of RUNS runs, each at least MIN_RUN long), the
//! throughput on the uncompressed bytes, and the ratio (compressed bytes /
//! original bytes, tail stripped as RFC 7692 §7.2.1 does). Modes:
//! - `ctx`: context takeover, one stream for all messages, a sync flush
//!   after each (RFC 7692 §7.2.1);
//! - `reset`: no context takeover, the state reset after each message;
//! - `fresh`: no context takeover, a new state per message (allocate at the
//!   start of a message, free at its end: no memory held while idle).
//!
//! Then the live heap bytes of one compressor and one decompressor, after
//! one message (a counting global allocator; zlib-rs is built with its Rust
//! allocator, so its allocations are counted too).
//!
//! Messages are sent to the decoder with the 0x00 0x00 0xff 0xff tail
//! appended (RFC 7692 §7.2.2), as a receiver does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- allocator

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------- payloads

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "hello", "world", "the", "meeting", "is", "at", "noon", "see", "you", "there", "ok", "thanks",
    "deploy", "done", "shipping", "now", "lunch", "?", "great", "idea", "let's", "do", "it",
    "tomorrow", "server", "down", "again", "fixed", "👍", "café", "on", "my", "way",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// A hub delivery as the hub sends it, with a text of about `text_len` bytes.
fn hub_json(rng: &mut Rng, seq: u64, text_len: usize) -> Vec<u8> {
    let mut text = String::new();
    while text.len() < text_len {
        if !text.is_empty() {
            text.push(' ');
        }
        // Mostly common words, and every fourth or so an id, number or
        // rare word, so that long texts are not a loop of 33 words.
        if rng.next().is_multiple_of(4) {
            let len = 3 + rng.next() % 8;
            for _ in 0..len {
                text.push(char::from(
                    b"abcdefghijklmnopqrstuvwxyz0123456789"[(rng.next() % 36) as usize],
                ));
            }
        } else {
            text.push_str(rng.pick(WORDS));
        }
    }
    let room = rng.next() % 8;
    format!(
        "{{\"type\":\"msg\",\"topic\":\"room.{room}\",\"seq\":{seq},\"epoch\":\"9f3c1a2b4d5e\",\
         \"node\":\"local\",\"from\":\"{}\",\"ts\":{},\"data\":{{\"text\":\"{text}\"}}}}",
        rng.pick(NAMES),
        1_763_900_000_000u64 + seq * 37 + rng.next() % 30,
    )
    .into_bytes()
}

/// The load generator's filler ('A'..'Z' by position) with the sequence
/// tag it patches into the first 8 bytes (bench/loadgen `Template`).
fn loadgen(size: usize, seq: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..size).map(|i| b'A' + (i % 26) as u8).collect();
    for (k, c) in b.iter_mut().take(8).enumerate() {
        *c = b'a' + ((seq >> (28 - 4 * k as u64)) & 0xf) as u8;
    }
    b
}

fn payloads() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let json200 = (0..256).map(|s| hub_json(&mut rng, s, 60)).collect();
    let json4k = (0..32).map(|s| hub_json(&mut rng, s, 3900)).collect();
    let text20 = (0..256).map(|s| loadgen(20, s)).collect();
    let bin16k = (0..16).map(|s| loadgen(16 * 1024, s)).collect();
    let rand16k = (0..16)
        .map(|_| (0..16 * 1024).map(|_| rng.next() as u8).collect())
        .collect();
    vec![
        ("json ~200 B", json200),
        ("json ~4 KiB", json4k),
        ("text 20 B (loadgen)", text20),
        ("binary 16 KiB (loadgen filler)", bin16k),
        ("binary 16 KiB random", rand16k),
    ]
}

// ---------------------------------------------------------------- backends

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One direction's compressor: compress a whole message, sync-flushed,
/// tail stripped (RFC 7692 §7.2.1).
trait Comp {
    fn message(&mut self, msg: &[u8], out: &mut Vec<u8>);
    fn reset(&mut self);
}

/// One direction's decompressor: `data` has the tail appended.
trait Decomp {
    fn message(&mut self, data: &[u8], out: &mut Vec<u8>);
    fn reset(&mut self);
}

fn strip_tail(out: &mut Vec<u8>) {
    assert!(
        out.ends_with(&TAIL),
        "sync flush must end with the empty stored block"
    );
    out.truncate(out.len() - 4);
}

/// Run `step(in, out) -> (consumed, produced, done)` until all input is
/// consumed and the call reports done, growing `out`.
fn drive(
    out: &mut Vec<u8>,
    mut input: &[u8],
    mut step: impl FnMut(&[u8], &mut [u8]) -> (usize, usize, bool),
) {
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(out.capacity().max(1024));
        }
        let start = out.len();
        let cap = out.capacity();
        out.resize(cap, 0);
        let (used, wrote, done) = step(input, &mut out[start..]);
        out.truncate(start + wrote);
        input = &input[used..];
        if done && input.is_empty() {
            return;
        }
    }
}

mod z {
    //! zlib-rs used directly (its safe `Deflate`/`Inflate` API).
    use super::*;
    use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Status};

    pub struct C(pub zlib_rs::Deflate);
    impl C {
        pub fn new(level: u32, wbits: u8, mem_level: i32) -> C {
            C(zlib_rs::Deflate::new_with_config(DeflateConfig {
                level: level as i32,
                window_bits: -(wbits as i32),
                mem_level,
                ..DeflateConfig::default()
            }))
        }
    }
    impl Comp for C {
        fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) {
            drive(out, msg, |i, o| {
                let (bi, bo) = (self.0.total_in(), self.0.total_out());
                let r = self
                    .0
                    .compress(i, o, DeflateFlush::SyncFlush)
                    .expect("deflate");
                let (ui, uo) = (
                    (self.0.total_in() - bi) as usize,
                    (self.0.total_out() - bo) as usize,
                );
                // Done when the flush completed: output space was left over.
                (ui, uo, r != Status::BufError && uo < o.len())
            });
            strip_tail(out);
        }
        fn reset(&mut self) {
            self.0.reset();
        }
    }

    pub struct D(pub zlib_rs::Inflate);
    impl D {
        pub fn new(wbits: u8) -> D {
            D(zlib_rs::Inflate::new(false, wbits))
        }
    }
    impl Decomp for D {
        fn message(&mut self, data: &[u8], out: &mut Vec<u8>) {
            drive(out, data, |i, o| {
                let (bi, bo) = (self.0.total_in(), self.0.total_out());
                let r = self
                    .0
                    .decompress(i, o, InflateFlush::SyncFlush)
                    .expect("inflate");
                let (ui, uo) = (
                    (self.0.total_in() - bi) as usize,
                    (self.0.total_out() - bo) as usize,
                );
                (ui, uo, r == Status::StreamEnd || uo < o.len())
            });
        }
        fn reset(&mut self) {
            // zlib-rs' `reset` returns to a 15-bit window, which decodes
            // any smaller window's stream too.
            self.0.reset(false);
        }
    }
}

mod f {
    //! flate2, on whichever backend this build selected.
    use super::*;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

    pub const BACKEND: &str = if cfg!(feature = "zlib-rs") {
        "flate2 (zlib-rs)"
    } else {
        "flate2 (miniz_oxide)"
    };

    pub struct C(pub Compress);
    impl C {
        /// None when this backend cannot limit the window (miniz through
        /// flate2 has no window_bits constructor).
        pub fn new(level: u32, wbits: u8) -> Option<C> {
            #[cfg(feature = "zlib-rs")]
            {
                Some(C(Compress::new_with_window_bits(
                    Compression::new(level),
                    false,
                    wbits,
                )))
            }
            #[cfg(not(feature = "zlib-rs"))]
            {
                (wbits == 15).then(|| C(Compress::new(Compression::new(level), false)))
            }
        }
    }
    impl Comp for C {
        fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) {
            drive(out, msg, |i, o| {
                let (bi, bo) = (self.0.total_in(), self.0.total_out());
                let r = self.0.compress(i, o, FlushCompress::Sync).expect("deflate");
                let (ui, uo) = (
                    (self.0.total_in() - bi) as usize,
                    (self.0.total_out() - bo) as usize,
                );
                (ui, uo, r != Status::BufError && uo < o.len())
            });
            strip_tail(out);
        }
        fn reset(&mut self) {
            self.0.reset();
        }
    }

    pub struct D(pub Decompress);
    impl D {
        pub fn new(wbits: u8) -> D {
            #[cfg(feature = "zlib-rs")]
            {
                D(Decompress::new_with_window_bits(false, wbits))
            }
            #[cfg(not(feature = "zlib-rs"))]
            {
                let _ = wbits;
                D(Decompress::new(false))
            }
        }
    }
    impl Decomp for D {
        fn message(&mut self, data: &[u8], out: &mut Vec<u8>) {
            drive(out, data, |i, o| {
                let (bi, bo) = (self.0.total_in(), self.0.total_out());
                let r = self
                    .0
                    .decompress(i, o, FlushDecompress::Sync)
                    .expect("inflate");
                let (ui, uo) = (
                    (self.0.total_in() - bi) as usize,
                    (self.0.total_out() - bo) as usize,
                );
                (ui, uo, r == Status::StreamEnd || uo < o.len())
            });
        }
        fn reset(&mut self) {
            self.0.reset(false);
        }
    }
}

mod m {
    //! miniz_oxide used directly (its stream API).
    use super::*;
    use miniz_oxide::deflate::core::{CompressionStrategy, CompressorOxide};
    use miniz_oxide::inflate::stream::InflateState;
    use miniz_oxide::{DataFormat, MZFlush, MZStatus};

    pub struct C(pub Box<CompressorOxide>);
    impl C {
        /// Below 15 bits miniz_oxide falls back to a 4 KiB window (12–14)
        /// or to run-length only (under 12).
        pub fn new(level: u32, wbits: u8) -> C {
            C(Box::new(CompressorOxide::with_params(
                DataFormat::Raw,
                level as u8,
                CompressionStrategy::Default,
                wbits,
            )))
        }
    }
    impl Comp for C {
        fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) {
            drive(out, msg, |i, o| {
                let r = miniz_oxide::deflate::stream::deflate(&mut self.0, i, o, MZFlush::Sync);
                r.status.expect("deflate");
                (r.bytes_consumed, r.bytes_written, r.bytes_written < o.len())
            });
            strip_tail(out);
        }
        fn reset(&mut self) {
            self.0.reset();
        }
    }

    pub struct D(pub Box<InflateState>);
    impl D {
        pub fn new() -> D {
            D(InflateState::new_boxed(DataFormat::Raw))
        }
    }
    impl Decomp for D {
        fn message(&mut self, data: &[u8], out: &mut Vec<u8>) {
            drive(out, data, |i, o| {
                let r = miniz_oxide::inflate::stream::inflate(&mut self.0, i, o, MZFlush::Sync);
                let done = matches!(r.status, Ok(MZStatus::StreamEnd));
                if let Err(e) = r.status {
                    // MZError::Buf: no progress possible, i.e. all done.
                    assert_eq!(e, miniz_oxide::MZError::Buf, "inflate");
                    return (r.bytes_consumed, r.bytes_written, true);
                }
                (
                    r.bytes_consumed,
                    r.bytes_written,
                    done || r.bytes_written < o.len(),
                )
            });
        }
        fn reset(&mut self) {
            self.0.reset(DataFormat::Raw);
        }
    }
}

// ---------------------------------------------------------------- harness

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ctx,
    Reset,
    Fresh,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ctx => "ctx",
            Mode::Reset => "reset",
            Mode::Fresh => "fresh",
        }
    }
}

struct Opts {
    runs: usize,
    min_run: Duration,
}

/// Median ns per message of `pass` (one pass = every message once).
fn time_per_msg(opts: &Opts, n: usize, mut pass: impl FnMut()) -> f64 {
    pass(); // warm up
    let mut samples = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        let t = Instant::now();
        let mut passes = 0u64;
        while t.elapsed() < opts.min_run {
            pass();
            passes += 1;
        }
        samples.push(t.elapsed().as_nanos() as f64 / (passes as f64 * n as f64));
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

struct Row {
    comp_ns: f64,
    decomp_ns: f64,
    ratio: f64,
}

fn measure<C: Comp, D: Decomp>(
    opts: &Opts,
    msgs: &[Vec<u8>],
    mode: Mode,
    mut new_c: impl FnMut() -> C,
    mut new_d: impl FnMut() -> D,
) -> Row {
    // Compress once for the ratio and the decoder's input, and check the
    // round trip.
    let mut c = new_c();
    let mut wire = Vec::new();
    let (mut orig, mut comp) = (0usize, 0usize);
    for m in msgs {
        let mut out = Vec::new();
        c.message(m, &mut out);
        if mode != Mode::Ctx {
            c.reset();
        }
        orig += m.len();
        comp += out.len();
        out.extend_from_slice(&TAIL);
        wire.push(out);
    }
    let mut d = new_d();
    for (m, w) in msgs.iter().zip(&wire) {
        let mut out = Vec::new();
        d.message(w, &mut out);
        assert!(out == *m, "round trip");
        if mode != Mode::Ctx {
            d.reset();
        }
    }

    let mut out = Vec::with_capacity(64 * 1024);
    let comp_ns = time_per_msg(opts, msgs.len(), || {
        let mut c = new_c();
        for m in msgs {
            out.clear();
            match mode {
                Mode::Ctx => c.message(m, &mut out),
                Mode::Reset => {
                    c.message(m, &mut out);
                    c.reset();
                }
                Mode::Fresh => {
                    let mut f = new_c();
                    f.message(m, &mut out);
                }
            }
            black_box(&out);
        }
    });
    let decomp_ns = time_per_msg(opts, msgs.len(), || {
        let mut d = new_d();
        for w in &wire {
            out.clear();
            match mode {
                Mode::Ctx => d.message(w, &mut out),
                Mode::Reset => {
                    d.message(w, &mut out);
                    d.reset();
                }
                Mode::Fresh => {
                    let mut f = new_d();
                    f.message(w, &mut out);
                }
            }
            black_box(&out);
        }
    });
    Row {
        comp_ns,
        decomp_ns,
        ratio: comp as f64 / orig as f64,
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn mbps(bytes_per_msg: f64, ns: f64) -> String {
    format!("{:.0}", bytes_per_msg / ns * 1000.0)
}

/// Live heap bytes held by `make()`'s result after it processed one message.
fn held<T>(make: impl FnOnce() -> T, use_it: impl FnOnce(&mut T)) -> isize {
    let before = live();
    let mut t = make();
    use_it(&mut t);
    let after = live();
    drop(t);
    after - before
}

/// `--sweep`: zlib-rs alone, levels 1–9 and mem_level 8/5/4 at window 15,
/// with and without context takeover: the defaults' measurement.
fn sweep(opts: &Opts, filter: Option<&String>) {
    println!(
        "# zlib-rs levels and mem_level ({} runs × ≥{:?}, median)",
        opts.runs, opts.min_run
    );
    println!();
    println!("| payload | mode | level | mem_level | compress /msg | MB/s | decompress /msg | MB/s | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (pname, msgs) in payloads() {
        if filter.is_some_and(|f| !pname.contains(f.as_str())) {
            continue;
        }
        let avg = msgs.iter().map(Vec::len).sum::<usize>() as f64 / msgs.len() as f64;
        for mode in [Mode::Ctx, Mode::Reset] {
            for (level, mem_level) in [
                (1, 8),
                (2, 8),
                (3, 8),
                (4, 8),
                (5, 8),
                (6, 8),
                (9, 8),
                (6, 5),
                (6, 4),
                (1, 4),
            ] {
                let r = measure(
                    opts,
                    &msgs,
                    mode,
                    || z::C::new(level, 15, mem_level),
                    || z::D::new(15),
                );
                println!(
                    "| {pname} | {} | {level} | {mem_level} | {} | {} | {} | {} | {:.3} |",
                    mode.name(),
                    fmt_ns(r.comp_ns),
                    mbps(avg, r.comp_ns),
                    fmt_ns(r.decomp_ns),
                    mbps(avg, r.decomp_ns),
                    r.ratio
                );
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let opts = Opts {
        runs: if quick { 3 } else { 5 },
        min_run: Duration::from_millis(if quick { 40 } else { 100 }),
    };
    let filter: Option<&String> = args.iter().skip(1).find(|a| !a.starts_with("--"));

    if args.iter().any(|a| a == "--sweep") {
        return sweep(&opts, filter);
    }
    println!(
        "# deflate backends ({} runs × ≥{:?}, median)",
        opts.runs, opts.min_run
    );
    println!();
    println!("| payload | backend | mode | level | window | compress /msg | MB/s | decompress /msg | MB/s | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let settings: &[(u32, u8)] = &[(6, 15), (1, 15), (6, 10), (6, 9)];
    for (pname, msgs) in payloads() {
        if filter.is_some_and(|f| !pname.contains(f.as_str())) {
            continue;
        }
        let avg = msgs.iter().map(Vec::len).sum::<usize>() as f64 / msgs.len() as f64;
        for mode in [Mode::Ctx, Mode::Reset, Mode::Fresh] {
            for &(level, wbits) in settings {
                // `fresh` only at the default setting: it measures the
                // allocation, not the codec.
                if mode == Mode::Fresh && (level, wbits) != (6, 15) {
                    continue;
                }
                let mut rows: Vec<(String, Row)> = Vec::new();
                rows.push((
                    "zlib-rs".into(),
                    measure(
                        &opts,
                        &msgs,
                        mode,
                        || z::C::new(level, wbits, 8),
                        || z::D::new(wbits),
                    ),
                ));
                if f::C::new(level, wbits).is_some() {
                    rows.push((
                        f::BACKEND.into(),
                        measure(
                            &opts,
                            &msgs,
                            mode,
                            || f::C::new(level, wbits).expect("checked"),
                            || f::D::new(wbits),
                        ),
                    ));
                }
                rows.push((
                    "miniz_oxide".into(),
                    measure(&opts, &msgs, mode, || m::C::new(level, wbits), m::D::new),
                ));
                for (b, r) in rows {
                    println!(
                        "| {pname} | {b} | {} | {level} | {wbits} | {} | {} | {} | {} | {:.3} |",
                        mode.name(),
                        fmt_ns(r.comp_ns),
                        mbps(avg, r.comp_ns),
                        fmt_ns(r.decomp_ns),
                        mbps(avg, r.decomp_ns),
                        r.ratio
                    );
                }
            }
        }
    }

    println!();
    println!("# heap held by one state after one ~200 B message (bytes)");
    println!();
    println!("| backend | window | compressor | decompressor |");
    println!("|---|---|---|---|");
    let mut rng = Rng(7);
    let msg = hub_json(&mut rng, 1, 60);
    let mut wire = Vec::new();
    z::C::new(6, 15, 8).message(&msg, &mut wire);
    wire.extend_from_slice(&TAIL);
    for wbits in [15u8, 12, 10, 9] {
        for mem_level in [8, 4, 1] {
            let c = held(
                || z::C::new(6, wbits, mem_level),
                |c| c.message(&msg, &mut Vec::new()),
            );
            let d = held(|| z::D::new(wbits), |d| d.message(&wire, &mut Vec::new()));
            println!("| zlib-rs (mem_level {mem_level}) | {wbits} | {c} | {d} |");
        }
        if f::C::new(6, wbits).is_some() {
            let c = held(
                || f::C::new(6, wbits).expect("checked"),
                |c| c.message(&msg, &mut Vec::new()),
            );
            let d = held(|| f::D::new(wbits), |d| d.message(&wire, &mut Vec::new()));
            println!("| {} | {wbits} | {c} | {d} |", f::BACKEND);
        }
        let c = held(|| m::C::new(6, wbits), |c| c.message(&msg, &mut Vec::new()));
        let d = held(m::D::new, |d| d.message(&wire, &mut Vec::new()));
        println!("| miniz_oxide | {wbits} | {c} | {d} |");
    }
}
