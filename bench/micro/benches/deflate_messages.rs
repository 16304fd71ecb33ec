//! permessage-deflate through wsmio's protocol core: the cost of sending
//! and receiving a compressed message, framing, limits and UTF-8 included.
//!
//! ```text
//! cargo bench -p wsmio-micro --bench deflate_messages
//! cargo bench -p wsmio-micro --bench deflate_messages -- --quick   # shorter
//! ```
//!
//! For hub-like JSON text messages of 200 B and 4 KiB it prints, per mode,
//! the time per message and the throughput on the uncompressed bytes of
//! - `send`: `Sender::encode_message` (server role: compress, frame);
//! - `receive`: `Receiver::receive` of the server's frames (client role:
//!   inflate, check UTF-8, deliver);
//!
//! and the bytes on the wire. Modes: `plain` (no compression, the
//! baseline), `no_ctx` (no context takeover: the compressor and
//! decompressor windows are allocated and freed per message, as an idle
//! connection holds none), `ctx` (context takeover both ways).
//! Then the same for messages under `Compression::min_size` (`plain`
//! either way) and the wire size at several sizes, to choose that default.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wsmio::proto::deflate::{encode_shared_frame, Compression, DeflateOptions, SharedKey};
use wsmio::proto::extension::DeflateParams;
use wsmio::proto::{CloseCode, Limits, Message, ReceiveHandler, Receiver, Role, Sender};

/// A hub delivery: `{"type":"msg",...,"data":{...}}` of `len` bytes (cut
/// short below about 140), its fields varied by `seq`.
fn delivery(len: usize, seq: u64) -> String {
    let mut s = full_delivery(len.max(200), seq);
    s.truncate(len);
    s
}

fn full_delivery(len: usize, seq: u64) -> String {
    let words = [
        "hello", "there", "meeting", "at", "noon", "see", "you", "soon", "ok", "the", "room",
        "deploy", "done",
    ];
    let mut text = String::new();
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let head = format!(
        r#"{{"type":"msg","topic":"room.{}","seq":{seq},"epoch":"9f3c1a2b4d5e","node":"local","from":"user-{}","ts":{},"data":{{"text":""#,
        seq % 7,
        seq % 13,
        1_763_900_000_000u64 + seq * 17
    );
    while head.len() + text.len() + 3 < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(words[(x % words.len() as u64) as usize]);
        text.push(' ');
    }
    text.truncate(len.saturating_sub(head.len() + 3));
    format!("{head}{text}\"}}}}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    NoCtx,
    Ctx,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::NoCtx => "no_ctx",
            Mode::Ctx => "ctx",
        }
    }

    fn params(self) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: self != Mode::Ctx,
            client_no_context_takeover: self != Mode::Ctx,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    fn sender(self, compression: Compression) -> Sender {
        match self {
            Mode::Plain => Sender::new(Role::Server),
            _ => Sender::with_deflate(Role::Server, self.params(), compression),
        }
    }

    fn receiver(self) -> Receiver {
        match self {
            Mode::Plain => Receiver::new(Role::Client),
            _ => Receiver::with_deflate(Role::Client, self.params()),
        }
    }
}

struct Count(usize);

impl ReceiveHandler for Count {
    fn on_message(&mut self, m: Message<'_>) {
        self.0 += black_box(m.as_bytes().len());
    }
    fn on_ping(&mut self, _: &[u8]) {}
    fn on_close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// Median over `runs` runs of at least `min` each: time per call of `f`.
fn measure(runs: usize, min: Duration, mut f: impl FnMut()) -> Duration {
    let mut per = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < min {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        per.push(start.elapsed() / n);
    }
    per.sort();
    per[runs / 2]
}

/// One size and mode: (send time, receive time, bytes on the wire per
/// message).
fn case(
    msgs: &[String],
    mode: Mode,
    compression: Compression,
    runs: usize,
    min: Duration,
) -> (Duration, Duration, usize) {
    // The wire of all messages in order, sent by one sender (with context
    // takeover each refers to the ones before).
    let mut tx = mode.sender(compression);
    let mut wire = Vec::new();
    for m in msgs {
        tx.encode_message(Message::Text(m), &mut wire).unwrap();
    }
    let per_msg_wire = wire.len() / msgs.len();
    // Send: keep encoding the messages in turn.
    let mut tx = mode.sender(compression);
    let mut out = Vec::with_capacity(8192);
    let mut i = 0;
    let send = measure(runs, min, || {
        out.clear();
        tx.encode_message(Message::Text(&msgs[i % msgs.len()]), &mut out)
            .unwrap();
        i += 1;
    });
    // Receive: the frames one at a time; a fresh receiver at each pass
    // over the stream (its frames refer back only within the pass).
    let bounds = frame_bounds(&wire);
    let limits = Limits::default();
    let mut rx = mode.receiver();
    let mut j = 0;
    let mut count = Count(0);
    let mut buf = wire.clone();
    let receive = measure(runs, min, || {
        if j == bounds.len() {
            rx = mode.receiver();
            j = 0;
        }
        let (a, b) = bounds[j];
        rx.receive(&mut buf[a..b], &limits, &mut count).unwrap();
        j += 1;
    });
    (send, receive, per_msg_wire)
}

/// Where each (unmasked, server) frame of `wire` lies.
fn frame_bounds(wire: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let (hl, len) = match wire[at + 1] & 0x7f {
            126 => (4, u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(wire[at + 2..at + 10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        v.push((at, at + hl + len));
        at += hl + len;
    }
    v
}

fn mb_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, min) = if quick {
        (3, Duration::from_millis(100))
    } else {
        (7, Duration::from_millis(400))
    };
    println!("| message | mode | send | send MB/s | receive | receive MB/s | wire bytes |");
    println!("|---|---|---|---|---|---|---|");
    for len in [200, 4096] {
        let msgs: Vec<String> = (0..1000).map(|s| delivery(len, s)).collect();
        for mode in [Mode::Plain, Mode::NoCtx, Mode::Ctx] {
            let (send, receive, wire) = case(&msgs, mode, Compression::default(), runs, min);
            println!(
                "| {len} B | {} | {send:.2?} | {:.0} | {receive:.2?} | {:.0} | {wire} |",
                mode.name(),
                mb_per_s(len, send),
                mb_per_s(len, receive)
            );
        }
        // The hub's compress-once: one `SharedDeflater` for all messages
        // (reset, not reallocated); receivers decode as `no_ctx`.
        let mut shared = SharedKey::new(15).deflater(DeflateOptions::default());
        let mut out = Vec::with_capacity(8192);
        let mut i = 0;
        let send = measure(runs, min, || {
            out.clear();
            encode_shared_frame(Message::Text(&msgs[i % msgs.len()]), &mut shared, &mut out)
                .unwrap();
            i += 1;
        });
        println!(
            "| {len} B | shared | {send:.2?} | {:.0} | (as no_ctx) | | {} |",
            mb_per_s(len, send),
            out.len()
        );
    }
    // The threshold: what compression gains, and costs, on short messages.
    println!();
    println!("| message | no_ctx wire | ctx wire | no_ctx send | no_ctx receive | plain send |");
    println!("|---|---|---|---|---|---|");
    let always = Compression {
        min_size: 0,
        ..Compression::default()
    };
    for len in [16, 32, 64, 100, 128, 200] {
        let msgs: Vec<String> = (0..1000).map(|s| delivery(len, s)).collect();
        let (ns, nr, nw) = case(&msgs, Mode::NoCtx, always, runs, min / 2);
        let (_, _, cw) = case(&msgs, Mode::Ctx, always, 1, Duration::from_millis(1));
        let (ps, _, pw) = case(&msgs, Mode::Plain, always, runs, min / 2);
        println!(
            "| {len} B ({pw} on the wire plain) | {nw} | {cw} | {ns:.2?} | {nr:.2?} | {ps:.2?} |"
        );
    }
}
