//! Payload masking (RFC 6455 §5.3).
//!
//! Every byte `i` of a masked payload is XORed with `key[i % 4]`. Masking and
//! unmasking are the same operation. A payload usually arrives in several
//! reads, so the functions here take the *phase* (how many payload bytes were
//! already processed, modulo 4) and return the phase after the call.
//!
//! [`apply_mask`] is the fast path: it rotates the key to the current phase,
//! then XORs payloads under 64 bytes 8 bytes per step (then 4), inlined at the
//! caller, and larger ones out of line in 64-byte blocks with a pattern the
//! compiler turns into vector instructions: SSE2 (the x86-64 baseline, so no
//! `target-cpu` flag is needed), or AVX2 when the CPU has it, detected at run
//! time. [`apply_mask_reference`] is the byte loop from the RFC; tests and the
//! fuzzer check that both always agree.

/// RFC 6455 §5.3: `transformed[i] = original[i] XOR key[i MOD 4]`.
///
/// `phase` is the index (mod 4) of `buf[0]` within the payload. Returns the
/// phase of the byte after `buf`. This is the reference implementation.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
    (phase + buf.len()) & 3
}

/// Same result as [`apply_mask_reference`], many bytes at a time.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let end_phase = (phase + buf.len()) & 3;
    // Rotate the key so that rotated[0] applies to buf[0].
    let k = u32::from_le_bytes(key).rotate_right(8 * (phase as u32 & 3));
    if buf.len() < 64 {
        // Small payloads (the common chat/echo case), inlined at the caller.
        xor_small(buf, k);
    } else {
        xor_large(buf, k);
    }
    end_phase
}

/// 64 bytes and more: 64-byte blocks the compiler turns into vector
/// instructions (AVX2 if this CPU has it, else SSE2). Out of line, so that
/// the small case stays small where it is inlined.
#[inline(never)]
fn xor_large(buf: &mut [u8], k: u32) {
    let k = k.to_le_bytes();
    let mut pattern = [0u8; 64];
    for (i, p) in pattern.iter_mut().enumerate() {
        *p = k[i & 3];
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `xor_pattern_avx2` only requires the AVX2 instruction
            // set, which was just detected on this CPU. Its body is the same
            // safe Rust as `xor_pattern`, compiled with AVX2 enabled. Tested
            // against the byte loop at every length, phase and offset
            // (`matches_reference_at_every_length_phase_and_alignment`, the
            // proptests and the `unmask` fuzz target run on this path on any
            // AVX2 machine).
            unsafe { xor_pattern_avx2(buf, &pattern) };
            return;
        }
    }
    xor_pattern(buf, &pattern);
}

/// XOR a payload of fewer than 64 bytes with the key `k` (already rotated to
/// the phase of `buf[0]`): 8 bytes per step, then 4, then single bytes. Both
/// step sizes are multiples of 4, so every step starts at phase 0 of `k`.
#[inline(always)]
fn xor_small(buf: &mut [u8], k: u32) {
    let k8 = (k as u64) | ((k as u64) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_le_bytes(w) ^ k8).to_le_bytes());
    }
    let mut tail = chunks.into_remainder();
    if tail.len() >= 4 {
        let (c, rest) = tail.split_at_mut(4);
        let mut w = [0u8; 4];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u32::from_le_bytes(w) ^ k).to_le_bytes());
        tail = rest;
    }
    let kb = k.to_le_bytes();
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= kb[i & 3];
    }
}

/// XOR `buf` with `pattern` repeated (64 is a multiple of 4, so the key's
/// phase is the same at the start of every 64-byte block).
#[inline(always)]
fn xor_pattern(buf: &mut [u8], pattern: &[u8; 64]) {
    let mut chunks = buf.chunks_exact_mut(64);
    for chunk in &mut chunks {
        // A fixed-size XOR the optimizer vectorizes (SSE2 on any x86-64).
        for (b, m) in chunk.iter_mut().zip(pattern.iter()) {
            *b ^= *m;
        }
    }
    let tail = chunks.into_remainder();
    for (b, m) in tail.iter_mut().zip(pattern.iter()) {
        *b ^= *m;
    }
}

/// [`xor_pattern`] compiled for AVX2 (32 bytes per instruction), chosen at
/// run time: the default build targets baseline x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn xor_pattern_avx2(buf: &mut [u8], pattern: &[u8; 64]) {
    xor_pattern(buf, pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_at_every_length_phase_and_alignment() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let src: Vec<u8> = (0..600u32).map(|i| (i * 31 + 7) as u8).collect();
        for offset in 0..8 {
            for len in 0..300 {
                for phase in 0..4 {
                    let mut a = src[offset..offset + len].to_vec();
                    let mut b = a.clone();
                    let pa = apply_mask(&mut a, key, phase);
                    let pb = apply_mask_reference(&mut b, key, phase);
                    assert_eq!(a, b, "len {len} phase {phase} offset {offset}");
                    assert_eq!(pa, pb);
                }
            }
        }
    }

    /// The baseline (non-AVX2) block loop, whatever this CPU has.
    #[test]
    fn baseline_block_loop_matches_reference() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let mut pattern = [0u8; 64];
        for (i, p) in pattern.iter_mut().enumerate() {
            *p = key[i & 3];
        }
        for len in [0, 1, 63, 64, 65, 127, 128, 1000, 4096 + 3] {
            let src: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let mut a = src.clone();
            let mut b = src.clone();
            xor_pattern(&mut a, &pattern);
            apply_mask_reference(&mut b, key, 0);
            assert_eq!(a, b, "len {len}");
        }
    }

    #[test]
    fn masking_twice_restores() {
        let key = [1, 2, 3, 4];
        let mut buf = b"Hello, masking world! 0123456789abcdef".to_vec();
        let orig = buf.clone();
        apply_mask(&mut buf, key, 0);
        assert_ne!(buf, orig);
        apply_mask(&mut buf, key, 0);
        assert_eq!(buf, orig);
    }

    #[test]
    fn split_calls_carry_the_phase() {
        let key = [9, 8, 7, 6];
        let whole: Vec<u8> = (0..200u8).collect();
        let mut expect = whole.clone();
        apply_mask_reference(&mut expect, key, 0);
        for cut1 in 0..whole.len() {
            let cut2 = (cut1 + 37).min(whole.len());
            let mut got = whole.clone();
            let p = apply_mask(&mut got[..cut1], key, 0);
            let p = apply_mask(&mut got[cut1..cut2], key, p);
            apply_mask(&mut got[cut2..], key, p);
            assert_eq!(got, expect, "cut at {cut1}");
        }
    }
}
