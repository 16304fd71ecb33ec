//! Heap use of a connection with permessage-deflate negotiated, measured
//! with a counting allocator (as `tests/deflate_alloc.rs` measures the
//! compressor and decompressor alone):
//!
//! - a decompression bomb sent to a `Connection` fails with 1009 having
//!   allocated no more than the message size limit (plus the decompressor's
//!   fixed state), whole-message and chunked delivery alike;
//! - what a connection holds between messages, with and without context
//!   takeover (printed: `cargo test --features deflate --test
//!   proto_deflate_alloc -- --nocapture`).
#![cfg(feature = "deflate")]

use wsmio::proto::deflate::{Compression, DeflateOptions, Deflater};
use wsmio::proto::extension::{DeflateParams, Direction};
use wsmio::proto::frame::EncodedHeader;
use wsmio::proto::mask::apply_mask;
use wsmio::proto::{
    Connection, DeliveryMode, Error, Limits, Message, OpCode, Receiver, Role, Sender,
};

mod alloc_support;

use alloc_support::{live, peak_of};

#[global_allocator]
static A: alloc_support::Counting = alloc_support::Counting;

const KIB: isize = 1024;
const MIB: usize = 1 << 20;

fn params(takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

/// A compressed message of `mib` MiB of zeros, as one masked client frame
/// with RSV1 (about 1 KiB per MiB: DEFLATE tops out near 1032:1).
fn bomb_frame(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let dir = Direction {
        no_context_takeover: false,
        max_window_bits: 15,
    };
    let mut d = Deflater::new(
        dir,
        DeflateOptions {
            level: 9,
            mem_level: 9,
        },
    );
    let mut payload = Vec::new();
    for i in 0..mib {
        d.compress_part(&zeros, i + 1 == mib, &mut payload).unwrap();
    }
    let key = [1, 2, 3, 4];
    let h = EncodedHeader::with_rsv(true, 0x4, OpCode::Binary, Some(key), payload.len() as u64);
    apply_mask(&mut payload, key, 0);
    let mut frame = h.as_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// Feed `frame` to `c` in 16 KiB reads; the first error.
fn feed(c: &mut Connection, frame: &[u8]) -> Result<usize, Error> {
    let mut delivered = 0;
    for piece in frame.chunks(16 << 10) {
        let mut read = piece.to_vec();
        c.receive(&mut read, |e| {
            if let wsmio::proto::Event::Chunk(ch) = e {
                delivered += ch.data.len();
            }
        })?;
    }
    Ok(delivered)
}

// ------------------------------------------------------------------ tests

/// The issue's zip bomb: a frame that would inflate to 100 MiB (about 100
/// KiB: DEFLATE cannot do better) against the default 16 MiB limit, and a
/// 1 KiB one that would inflate to 1 MiB against 64 KiB. Each closes with
/// 1009, allocating at most the limit (the reassembly buffer) and the
/// decompressor's fixed state; chunked delivery, not even the limit.
#[test]
fn a_bomb_allocates_at_most_the_limit() {
    let big = bomb_frame(100);
    let small = bomb_frame(1);
    assert!(
        big.len() < 110 * 1024 && small.len() <= 1100,
        "{} {}",
        big.len(),
        small.len()
    );
    for (frame, limit) in [(&big, 16 * MIB), (&small, 64 << 10)] {
        for delivery in [DeliveryMode::Messages, DeliveryMode::Chunks] {
            let limits = Limits {
                max_message_size: limit as u64,
                delivery,
                ..Limits::default()
            };
            let mut c = Connection::with_deflate(
                Role::Server,
                limits,
                params(false),
                Compression::default(),
            );
            let (r, peak) = peak_of(|| feed(&mut c, frame));
            assert_eq!(r.map(|_| ()), Err(Error::MessageTooBig));
            // The 1009 went out.
            assert_eq!(&c.output()[2..4], 1009u16.to_be_bytes());
            let fixed = 64 * KIB; // inflate state, boxes, the read copy
            let most = match delivery {
                DeliveryMode::Messages => limit as isize + fixed,
                DeliveryMode::Chunks => fixed,
            };
            assert!(
                peak <= most,
                "{delivery:?}, limit {limit}: peak {peak} bytes"
            );
            eprintln!(
                "bomb of {} KiB against {} KiB, {delivery:?}: peak {} KiB",
                frame.len() >> 10,
                limit >> 10,
                peak / KIB
            );
            // Nothing is held once the connection has failed.
            assert_eq!(c.receiver().buffer_capacity(), 0);
        }
    }
}

/// Heap a connection holds between messages, after one message each way
/// (a 170-byte JSON delivery): without context takeover only two small
/// boxes; with it the windows stay.
#[test]
fn idle_memory_per_connection() {
    let msg = br#"{"type":"msg","topic":"room.1","seq":42,"epoch":"9f3c1a2b4d5e","node":"local","from":"alice","ts":1763900000000,"data":{"text":"hello there, the meeting is at noon"}}"#;
    let mut rows = Vec::new();
    for mode in ["plain", "no takeover", "takeover"] {
        let base = live();
        let (mut rx, mut tx) = match mode {
            "plain" => (Receiver::new(Role::Server), Sender::new(Role::Server)),
            _ => {
                let p = params(mode == "takeover");
                (
                    Receiver::with_deflate(Role::Server, p),
                    Sender::with_deflate(Role::Server, p, Compression::default()),
                )
            }
        };
        let boxes = live() - base;
        // One message in (compressed by a client), one out.
        let mut client = match mode {
            "plain" => Connection::new(Role::Client, Limits::default()),
            _ => Connection::with_deflate(
                Role::Client,
                Limits::default(),
                params(mode == "takeover"),
                Compression::default(),
            ),
        };
        client
            .send(Message::Text(std::str::from_utf8(msg).unwrap()))
            .unwrap();
        let mut wire = client.output().to_vec();
        drop(client);
        let mut out = Vec::new();
        let before = live() - wire.capacity() as isize;
        struct Sink;
        impl wsmio::proto::ReceiveHandler for Sink {
            fn on_message(&mut self, _: Message<'_>) {}
            fn on_ping(&mut self, _: &[u8]) {}
            fn on_close(&mut self, _: Option<wsmio::proto::CloseCode>, _: &str) {}
        }
        rx.receive(&mut wire, &Limits::default(), &mut Sink)
            .unwrap();
        tx.encode_message(Message::Text(std::str::from_utf8(msg).unwrap()), &mut out)
            .unwrap();
        let held = live() - before - wire.capacity() as isize - out.capacity() as isize + boxes;
        rows.push((mode, boxes, held, out.len()));
        match mode {
            "plain" => assert_eq!(held, 0),
            "no takeover" => assert!(held == boxes && held <= 128, "{held}"),
            _ => assert!(held > 100 * KIB && held < 500 * KIB, "{held}"),
        }
    }
    eprintln!("| connection | boxes | held between messages | 170 B JSON on the wire |");
    eprintln!("|---|---|---|---|");
    for (mode, boxes, held, wire) in rows {
        eprintln!("| {mode} | {boxes} B | {held} B | {wire} B |");
    }
}
