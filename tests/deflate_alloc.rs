//! Heap use of `proto::deflate`, measured with a counting allocator: a
//! decompression bomb fails having allocated no more than the limit, and an
//! idle connection holds no compression memory without context takeover.
//!
//! `cargo test --features deflate --test deflate_alloc -- --nocapture`
//! prints the bytes an idle connection holds in each mode (BENCHMARKS.md).

use wsmio::proto::deflate::{DeflateOptions, Deflater, InflateError, Inflater};
use wsmio::proto::extension::Direction;

mod alloc_support;

use alloc_support::{live, peak_of};

#[global_allocator]
static A: alloc_support::Counting = alloc_support::Counting;

const KIB: isize = 1024;
const MIB: usize = 1 << 20;

fn dir(ctx: bool, bits: u8) -> Direction {
    Direction {
        no_context_takeover: !ctx,
        max_window_bits: bits,
    }
}

/// A DEFLATE payload of about `mib` KiB that inflates to `mib` MiB of
/// zeros, built 1 MiB at a time.
fn bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut d = Deflater::new(
        dir(false, 15),
        DeflateOptions {
            level: 9,
            mem_level: 9,
        },
    );
    let mut wire = Vec::new();
    for i in 0..mib {
        d.compress_part(&zeros, i + 1 == mib, &mut wire).unwrap();
    }
    wire
}

// ------------------------------------------------------------------ tests

#[test]
fn bomb_fails_with_the_limit_error_and_bounded_allocation() {
    // 100 MiB from about 100 KiB: DEFLATE tops out near 1032:1, so this is
    // as small as such a bomb gets (1 KiB inflates to about 1 MiB at most).
    let wire = bomb(100);
    assert!(wire.len() < 110 * 1024, "{} bytes", wire.len());
    let limit: usize = 16 * MIB; // the default max_message_size

    // Into a buffer, as a receiver assembling whole messages does.
    let mut inf = Inflater::new(dir(false, 15), limit as u64);
    let mut out = Vec::new();
    let (r, peak) = peak_of(|| inf.decompress(&wire, &mut out));
    assert_eq!(r, Err(InflateError::TooBig));
    assert!(out.len() <= limit);
    // The limit, plus the inflate state (about 47 KiB).
    assert!(peak <= limit as isize + 64 * KIB, "peak {peak} bytes");
    eprintln!(
        "100 MiB bomb, 16 MiB limit, into a Vec: peak {} KiB",
        peak / KIB
    );
    drop(out);

    // Streamed to a sink that keeps nothing (chunked delivery, UTF-8
    // checks): only the state.
    let mut inf = Inflater::new(dir(false, 15), limit as u64);
    let mut seen = 0usize;
    let (r, peak) = peak_of(|| {
        inf.feed(&wire, |c| -> Result<(), InflateError> {
            seen += c.len();
            Ok(())
        })
    });
    assert_eq!(r, Err(InflateError::TooBig));
    assert!(seen <= limit);
    assert!(peak <= 64 * KIB, "peak {peak} bytes");
    eprintln!(
        "100 MiB bomb, 16 MiB limit, streamed: peak {} KiB",
        peak / KIB
    );

    // The 1 KiB version: 1 MiB of output against a 64 KiB limit.
    let small = bomb(1);
    assert!(small.len() <= 1100, "{}", small.len());
    let mut inf = Inflater::new(dir(false, 15), 64 << 10);
    let mut out = Vec::new();
    let (r, peak) = peak_of(|| inf.decompress(&small, &mut out));
    assert_eq!(r, Err(InflateError::TooBig));
    assert!(peak <= 64 * KIB + 64 * KIB, "peak {peak} bytes");
}

/// Heap held by a connection's compressor and decompressor after a
/// message, with and without context takeover.
#[test]
fn idle_memory_per_connection() {
    let msg = br#"{"type":"msg","topic":"room.1","seq":42,"epoch":"9f3c1a2b4d5e","node":"local","from":"alice","ts":1763900000000,"data":{"text":"hello there, the meeting is at noon"}}"#;
    eprintln!("| context takeover | window | mem_level | deflater idle | inflater idle |");
    eprintln!("|---|---|---|---|---|");
    for ctx in [false, true] {
        for (bits, mem_level) in [(15, 8), (15, 5), (12, 8), (10, 8), (9, 1)] {
            let d_dir = dir(ctx, bits);
            let options = DeflateOptions {
                mem_level,
                ..DeflateOptions::default()
            };
            let base = live();
            let mut d = Deflater::new(d_dir, options);
            let mut inf = Inflater::new(d_dir, 1 << 20);
            assert_eq!(live() - base, 0, "nothing allocated before a message");
            let mut wire = Vec::new();
            d.compress(msg, &mut wire).unwrap();
            let d_held = live() - base - wire.capacity() as isize;
            let mut back = Vec::new();
            let before = live();
            inf.decompress(&wire, &mut back).unwrap();
            let i_held = live() - before - back.capacity() as isize;
            assert_eq!(back, msg);
            eprintln!(
                "| {} | {bits} | {mem_level} | {} B | {} B |",
                if ctx { "yes" } else { "no" },
                d_held,
                i_held
            );
            if ctx {
                assert!(d_held > 0 && d_held < 400 * KIB, "{d_held}");
                assert!(i_held > 0 && i_held < 64 * KIB, "{i_held}");
            } else {
                // RFC 7692 §7.1.1: freed at the end of each message.
                assert_eq!(d_held, 0);
                assert_eq!(i_held, 0);
            }
        }
    }
}
