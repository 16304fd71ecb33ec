//! Micro-benchmarks of the per-message hot paths, each beside a baseline:
//! unmasking vs the RFC byte loop and vs `copy_from_slice` of the same
//! length; UTF-8 validation vs `std::str::from_utf8`; frame header
//! decode/encode; handshake parsing.
//!
//! `cargo bench -p wsmio-micro` (add `-- mask` etc. to filter).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsmio::proto::frame::{decode_header, EncodedHeader, OpCode, Role};
use wsmio::proto::handshake::{parse_request, validate_upgrade, HeadLimits};
use wsmio::proto::mask::{apply_mask, apply_mask_reference};
use wsmio::proto::utf8::Utf8Validator;

const SIZES: &[usize] = &[16, 125, 1024, 4096, 16 * 1024, 64 * 1024, 1 << 20];

fn mask(c: &mut Criterion) {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for &size in SIZES {
        let mut g = c.benchmark_group(format!("mask/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        for offset in [0usize, 3] {
            let src = vec![0xa5u8; size + 8];
            let mut buf = vec![0u8; size + 8];
            g.bench_with_input(BenchmarkId::new("apply_mask", offset), &offset, |b, &o| {
                b.iter(|| apply_mask(black_box(&mut buf[o..o + size]), key, 1))
            });
            if size <= 64 * 1024 {
                g.bench_with_input(BenchmarkId::new("byte_loop", offset), &offset, |b, &o| {
                    b.iter(|| apply_mask_reference(black_box(&mut buf[o..o + size]), key, 1))
                });
            }
            g.bench_with_input(
                BenchmarkId::new("copy_from_slice", offset),
                &offset,
                |b, &o| b.iter(|| buf[o..o + size].copy_from_slice(black_box(&src[..size]))),
            );
        }
        g.finish();
    }
}

fn texts() -> Vec<(&'static str, Vec<u8>)> {
    let ascii: Vec<u8> = b"The quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    let mixed: Vec<u8> = "Grüße, κόσμε, 世界! emoji 🎉 and plain ASCII text. "
        .as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    // Cut on a char boundary so the input is valid.
    let mut mixed = mixed;
    while std::str::from_utf8(&mixed).is_err() {
        mixed.pop();
    }
    vec![("ascii", ascii), ("mixed", mixed)]
}

fn utf8(c: &mut Criterion) {
    for (name, text) in texts() {
        for size in [64usize, 1024, 64 * 1024] {
            let mut size = size.min(text.len());
            while std::str::from_utf8(&text[..size]).is_err() {
                size -= 1;
            }
            let t = &text[..size];
            let mut g = c.benchmark_group(format!("utf8/{name}/{size}"));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function("validator", |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    v.feed(black_box(t)).and_then(|_| v.finish()).is_ok()
                })
            });
            g.bench_function("std_from_utf8", |b| {
                b.iter(|| std::str::from_utf8(black_box(t)).is_ok())
            });
            g.finish();
        }
    }
}

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    let small = [0x81u8, 0x94, 1, 2, 3, 4];
    let large = [0x82u8, 0xFE, 0x40, 0x00, 1, 2, 3, 4];
    g.bench_function("decode/small", |b| {
        b.iter(|| decode_header(black_box(&small), Role::Server, 0))
    });
    g.bench_function("decode/16KiB", |b| {
        b.iter(|| decode_header(black_box(&large), Role::Server, 0))
    });
    g.bench_function("encode/small", |b| {
        b.iter(|| EncodedHeader::new(true, OpCode::Text, None, black_box(20)))
    });
    g.bench_function("encode/16KiB_masked", |b| {
        b.iter(|| EncodedHeader::new(true, OpCode::Binary, Some([1, 2, 3, 4]), black_box(16384)))
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\nUser-Agent: bench/1.0\r\n\r\n";
    let limits = HeadLimits::default();
    c.bench_function("handshake/parse_and_validate", |b| {
        b.iter(|| {
            let r = parse_request(black_box(req), &limits).unwrap();
            validate_upgrade(&r).map(|k| k.len()).unwrap_or(0)
        })
    });
    c.bench_function("handshake/accept_key", |b| {
        b.iter(|| wsmio::proto::handshake::accept_key(black_box("dGhlIHNhbXBsZSBub25jZQ==")))
    });
}

criterion_group!(benches, mask, utf8, frame_header, handshake);
criterion_main!(benches);
