//! permessage-deflate's decompressor (`proto::deflate::Inflater`, RFC 7692
//! §7.2.2) on arbitrary bytes, and compress/decompress round trips.
//!
//! Input: byte 0 picks the mode and settings, byte 1 the limit, byte 2 how
//! many cuts; the rest is the payload (cut points come from its bytes).
//! - Mode 0 (byte 0 even): the payload is a compressed message, fed in
//!   pieces. Properties: no panic; the sink never gets more than the
//!   limit; the result (output and error) does not depend on the cuts; and
//!   against miniz_oxide, an independent decoder run once on the whole
//!   message: one output is a prefix of the other, a message miniz decodes
//!   to at most the limit without error comes out the same (or fails as
//!   Corrupt, zlib being stricter), and one miniz finds over the limit is
//!   an error here too.
//! - Mode 1 (byte 0 odd): the payload is split into two messages, each
//!   compressed in two parts (a fragmented send) with the window, level and
//!   context takeover from byte 0, then decompressed in pieces: the same
//!   bytes come back, and without context takeover a decoder with exactly
//!   the agreed window reads them (no back-reference beyond the window).
#![no_main]

use libfuzzer_sys::fuzz_target;
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use wsmio::proto::deflate::{DeflateOptions, Deflater, InflateError, Inflater, TAIL};
use wsmio::proto::extension::Direction;

const LIMITS: [u64; 8] = [0, 1, 5, 100, 1000, 4096, 65_536, 1 << 20];

/// Cut `data` at up to `n` points taken from its own bytes.
fn pieces(data: &[u8], n: u8) -> Vec<&[u8]> {
    let mut cuts: Vec<usize> = data
        .iter()
        .rev()
        .take((n % 16) as usize)
        .map(|&b| (b as usize * 31 + n as usize) % (data.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// Decompress one message given in pieces: (result, output).
fn inflate(
    inf: &mut Inflater,
    pieces: &[&[u8]],
    limit: u64,
) -> (Result<(), InflateError>, Vec<u8>) {
    let mut out = Vec::new();
    let mut sink = |c: &[u8]| -> Result<(), InflateError> {
        assert!(c.len() <= wsmio::proto::deflate::INFLATE_CHUNK);
        out.extend_from_slice(c);
        assert!(out.len() as u64 <= limit, "sink got more than the limit");
        Ok(())
    };
    let mut result = Ok(());
    for p in pieces {
        result = inf.feed(p, &mut sink);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = inf.finish(&mut sink);
    }
    (result, out)
}

/// miniz_oxide over the whole message with the tail, output capped at
/// `cap` bytes.
fn reference(payload: &[u8], cap: usize) -> (TINFLStatus, Vec<u8>) {
    let mut data = payload.to_vec();
    data.extend_from_slice(&TAIL);
    let mut out = vec![0u8; cap];
    let mut d = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, n) = decompress(&mut d, &data, &mut out, 0, flags);
    out.truncate(n);
    (status, out)
}

fn arbitrary(payload: &[u8], limit: u64, cuts: u8) {
    let dir = Direction {
        no_context_takeover: true,
        max_window_bits: 15,
    };
    let (whole, out) = inflate(&mut Inflater::new(dir, limit), &[payload], limit);
    let (split, out2) = inflate(
        &mut Inflater::new(dir, limit),
        &pieces(payload, cuts),
        limit,
    );
    assert_eq!(whole, split, "result depends on the cuts");
    assert_eq!(out, out2, "output depends on the cuts");

    let (status, expect) = reference(payload, limit as usize + 1);
    let n = out.len().min(expect.len());
    assert_eq!(
        out[..n],
        expect[..n],
        "outputs diverge ({status:?}, {whole:?})"
    );
    match status {
        // The message decodes and ends mid-stream, as a sync-flushed one
        // does (miniz wants more input).
        TINFLStatus::FailedCannotMakeProgress if expect.len() as u64 <= limit => match whole {
            Ok(()) => assert_eq!(out, expect),
            Err(e) => assert_eq!(e, InflateError::Corrupt, "miniz read it whole"),
        },
        TINFLStatus::HasMoreOutput => assert!(whole.is_err(), "over the limit, yet Ok"),
        _ => {}
    }
}

fn round_trip(settings: u8, payload: &[u8], cuts: u8) {
    let ctx = settings & 0x80 != 0;
    let dir = Direction {
        no_context_takeover: !ctx,
        max_window_bits: 8 + ((settings >> 1) & 7),
    };
    let options = DeflateOptions {
        level: (settings >> 4) % 10,
        mem_level: 1 + (cuts % 9),
    };
    let mut d = Deflater::new(dir, options);
    let mut inf = Inflater::new(dir, 1 << 20);
    let k = payload
        .first()
        .map_or(0, |&b| b as usize % (payload.len() + 1));
    for msg in [&payload[..k], &payload[k..]] {
        let j = msg.len() / 2;
        let mut wire = Vec::new();
        d.compress_part(&msg[..j], false, &mut wire)
            .expect("compress");
        d.compress_part(&msg[j..], true, &mut wire)
            .expect("compress");
        let (r, out) = inflate(&mut inf, &pieces(&wire, cuts), 1 << 20);
        assert_eq!(r, Ok(()));
        assert_eq!(out, msg);
        if !ctx {
            assert_eq!(
                exact_window(dir.max_window_bits, &wire),
                msg,
                "beyond the window"
            );
        }
    }
}

/// Decode with zlib-rs limited to `2^bits` bytes of window, one output byte
/// per call, so every back-reference is served from the window.
fn exact_window(bits: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = zlib_rs::Inflate::new(false, bits);
    let mut data = payload.to_vec();
    data.extend_from_slice(&TAIL);
    let mut input = &data[..];
    let mut out = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let before = s.total_in();
        let status = s
            .decompress(input, &mut byte, zlib_rs::InflateFlush::SyncFlush)
            .expect("within the window");
        input = &input[(s.total_in() - before) as usize..];
        if s.total_out() as usize > out.len() {
            out.push(byte[0]);
        } else if input.is_empty() || status != zlib_rs::Status::Ok {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, limit, cuts, payload @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        arbitrary(payload, LIMITS[(limit & 7) as usize], *cuts);
    } else {
        round_trip(*mode, payload, *cuts);
    }
});
