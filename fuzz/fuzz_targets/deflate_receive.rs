//! permessage-deflate in the protocol core (RFC 7692 §6): a server
//! `proto::Connection` with the extension negotiated, fed arbitrary client
//! bytes — compressed and plain messages, fragments, control frames, RSV
//! bits anywhere, corrupt DEFLATE data, bombs.
//!
//! Input: `flags, limit, read_seed`, then the bytes. Flags: bit 0 selects
//! `DeliveryMode::Chunks`; bit 1 lets the client keep context between
//! messages; bit 2 selects the round-trip mode; bits 3–5 are the windows
//! (8 + n bits) in that mode.
//!
//! Properties of the raw mode: no panic; no message (nor a chunked
//! message's chunks together) longer than the limit; text is UTF-8; a
//! failure closes with 1002, 1007 or 1009; the events, the error and the
//! output do not depend on how the input is cut into reads; and while a
//! read is processed the heap grows by at most the limit plus the
//! decompressor's fixed state (a counting allocator; events are recorded
//! as hashes so that the check counts the receiver's memory only).
//!
//! Round-trip mode: the bytes are split into messages at each 0xFF; a
//! client `Connection` with the extension sends them (whole, or in
//! compressed fragments), and the server gets them back unchanged.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use wsmio::proto::deflate::Compression;
use wsmio::proto::extension::DeflateParams;
use wsmio::proto::utf8::Utf8Validator;
use wsmio::proto::{CloseCode, Connection, DeliveryMode, Error, Event, Limits, Message, OpCode, Role};

// ---------------------------------------------------------------- allocator

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn add(n: isize) {
    let v = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(v, Relaxed);
}

struct Counting;

// SAFETY: every call forwards to the system allocator unchanged; the
// bookkeeping is two atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        add(n as isize - l.size() as isize);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

// ------------------------------------------------------------------ model

const LIMITS: [u64; 7] = [0, 1, 125, 1000, 4096, 65_536, 1 << 20];

/// The decompressor's state, the boxes and the event log's growth.
const FIXED_HEAP: isize = 192 << 10;

/// FNV-1a, streamed: messages are recorded without copying them.
#[derive(Clone, Copy)]
struct Hash(u64);

impl Hash {
    fn new() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Message { text: bool, len: usize, hash: u64 },
    Ping(u64),
    Pong(u64),
    Close(Option<u16>),
}

/// Records events as hashes, joins chunks, checks sizes and UTF-8.
struct Model {
    limit: u64,
    events: Vec<Ev>,
    /// The open chunked message: text, length, hash, UTF-8 state.
    open: Option<(bool, usize, Hash, Utf8Validator)>,
}

impl Model {
    fn new(limit: u64) -> Model {
        Model {
            limit,
            events: Vec::with_capacity(64),
            open: None,
        }
    }

    fn event(&mut self, e: Event<'_>) {
        let hash = |b: &[u8]| {
            let mut h = Hash::new();
            h.feed(b);
            h.0
        };
        match e {
            Event::Message(m) => {
                let b = m.as_bytes();
                assert!(b.len() as u64 <= self.limit, "message over the limit");
                if let Message::Text(s) = m {
                    assert!(std::str::from_utf8(s.as_bytes()).is_ok());
                }
                self.events.push(Ev::Message {
                    text: m.is_text(),
                    len: b.len(),
                    hash: hash(b),
                });
            }
            Event::Chunk(c) => {
                assert_eq!(c.first, self.open.is_none(), "first flag");
                let (text, len, h, utf8) =
                    self.open
                        .get_or_insert((c.text, 0, Hash::new(), Utf8Validator::new()));
                assert_eq!(*text, c.text);
                *len += c.data.len();
                assert!(*len as u64 <= self.limit, "chunks over the limit");
                h.feed(c.data);
                if *text {
                    utf8.feed(c.data).expect("text chunks are UTF-8");
                }
                if c.last {
                    let (text, len, h, mut utf8) = self.open.take().unwrap();
                    assert!(!text || utf8.finish().is_ok(), "text ends mid code point");
                    self.events.push(Ev::Message {
                        text,
                        len,
                        hash: h.0,
                    });
                }
            }
            Event::Ping(p) => self.events.push(Ev::Ping(hash(p))),
            Event::Pong(p) => self.events.push(Ev::Pong(hash(p))),
            Event::Close { code, .. } => self.events.push(Ev::Close(code.map(|c| c.0))),
        }
    }
}

/// Feed `stream` in the reads `cuts` gives; the events, the error and the
/// output. With `check_heap`, each read's heap growth is bounded.
fn run(
    stream: &[u8],
    cuts: &[usize],
    limits: Limits,
    params: DeflateParams,
    check_heap: bool,
) -> (Vec<Ev>, Option<Error>, Vec<u8>) {
    let mut conn = Connection::with_deflate(Role::Server, limits, params, Compression::default());
    let mut model = Model::new(limits.max_message_size);
    let mut error = None;
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        let mut read = stream[from..to].to_vec();
        from = to;
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let r = conn.receive(&mut read, |e| model.event(e));
        let grew = PEAK.load(Relaxed) - base;
        if check_heap {
            let most = limits.max_message_size.min(1 << 30) as isize + FIXED_HEAP;
            assert!(
                grew <= most,
                "a read took {grew} bytes of heap (at most {most})"
            );
        }
        out.extend_from_slice(conn.output());
        let n = conn.output().len();
        conn.consume_output(n);
        if let Err(e) = r {
            let code = e.close_code();
            assert!(
                [
                    CloseCode::PROTOCOL,
                    CloseCode::INVALID_PAYLOAD,
                    CloseCode::TOO_BIG
                ]
                .contains(&code),
                "{e:?} closes with {code}"
            );
            error = Some(e);
            break;
        }
    }
    (model.events, error, out)
}

fn params(flags: u8) -> DeflateParams {
    let bits = 8 + ((flags >> 3) & 7);
    DeflateParams {
        server_no_context_takeover: flags & 2 == 0,
        client_no_context_takeover: flags & 2 == 0,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

/// Read boundaries from a seed (0: every byte is its own read).
fn cuts(len: usize, seed: u8) -> Vec<usize> {
    let mut x = u32::from(seed) | 0x100;
    let mut at = 0;
    let mut v = Vec::new();
    loop {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        at += if seed == 0 { 1 } else { 1 + (x % 97) as usize };
        if at >= len {
            return v;
        }
        v.push(at);
    }
}

/// Round-trip mode: messages from `data` sent by a client, received whole.
fn round_trip(data: &[u8], limits: Limits, p: DeflateParams, seed: u8) {
    let mut client = Connection::with_deflate(
        Role::Client,
        Limits::default(),
        p,
        Compression {
            min_size: usize::from(seed % 80),
            ..Compression::default()
        },
    );
    let msgs: Vec<&[u8]> = data.split(|&b| b == 0xFF).collect();
    for m in &msgs {
        let text = std::str::from_utf8(m).is_ok();
        let op = if text { OpCode::Text } else { OpCode::Binary };
        if m.len() % 3 == 0 {
            let at = usize::from(seed) % (m.len() + 1);
            client.send_compressed_frame(op, false, &m[..at]).unwrap();
            client
                .send_compressed_frame(OpCode::Continuation, true, &m[at..])
                .unwrap();
        } else if text {
            client
                .send(Message::Text(std::str::from_utf8(m).unwrap()))
                .unwrap();
        } else {
            client.send(Message::Binary(m)).unwrap();
        }
    }
    let wire = client.output().to_vec();
    let big = Limits {
        max_message_size: 1 << 20,
        ..limits
    };
    let (events, error, _) = run(&wire, &cuts(wire.len(), seed), big, p, false);
    assert_eq!(error, None);
    let want: Vec<Ev> = msgs
        .iter()
        .map(|m| {
            let mut h = Hash::new();
            h.feed(m);
            Ev::Message {
                text: std::str::from_utf8(m).is_ok(),
                len: m.len(),
                hash: h.0,
            }
        })
        .collect();
    assert_eq!(events, want);
}

fuzz_target!(|data: &[u8]| {
    let [flags, limit, seed, stream @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_message_size: LIMITS[usize::from(*limit) % LIMITS.len()],
        delivery: if flags & 1 != 0 {
            DeliveryMode::Chunks
        } else {
            DeliveryMode::Messages
        },
        ..Limits::default()
    };
    let p = params(*flags);
    if flags & 4 != 0 {
        round_trip(stream, limits, p, *seed);
        return;
    }
    let whole = run(stream, &[], limits, p, true);
    let split = run(stream, &cuts(stream.len(), *seed), limits, p, true);
    assert_eq!(whole.1, split.1, "the error depends on the reads");
    assert_eq!(whole.0, split.0, "the events depend on the reads");
    assert_eq!(whole.2, split.2, "the output depends on the reads");
});
