//! `mask::apply_mask` (the vectorizable fast path) must equal
//! `mask::apply_mask_reference` (RFC 6455 §5.3, byte by byte) for every
//! buffer, key, starting phase and split of the payload into calls.
//!
//! Input: key (4 bytes), phase (1), split count (1), then the payload. The
//! split points are taken from the payload's own bytes so the fuzzer
//! controls them without a separate length field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmio::proto::mask::{apply_mask, apply_mask_reference};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let key = [data[0], data[1], data[2], data[3]];
    let phase = data[4] as usize; // any value: only `phase & 3` may matter
    let splits = (data[5] % 8) as usize;
    let payload = &data[6..];

    let mut expect = payload.to_vec();
    let end = apply_mask_reference(&mut expect, key, phase);
    assert_eq!(end, (phase + payload.len()) & 3);

    // One call over the whole buffer.
    let mut whole = payload.to_vec();
    assert_eq!(apply_mask(&mut whole, key, phase), end);
    assert_eq!(whole, expect);

    // Several calls, the phase carried from one to the next.
    let mut cuts: Vec<usize> = payload
        .iter()
        .take(splits)
        .map(|&b| (b as usize * 7) % (payload.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(payload.len());
    cuts.sort_unstable();
    let mut pieces = payload.to_vec();
    let mut p = phase;
    for w in cuts.windows(2) {
        p = apply_mask(&mut pieces[w[0]..w[1]], key, p);
    }
    assert_eq!(p, end);
    assert_eq!(pieces, expect);

    // Masking is an involution: applying it again restores the input.
    apply_mask(&mut whole, key, phase);
    assert_eq!(whole, payload);
});
