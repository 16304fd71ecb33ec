//! Tests of `proto::deflate`: RFC 7692 §7.2.3's examples, round trips at
//! every split, context takeover, window sizes, the tail, the limit.

use super::*;
use proptest::prelude::*;

const CTX: Direction = Direction {
    no_context_takeover: false,
    max_window_bits: 15,
};
const NO_CTX: Direction = Direction {
    no_context_takeover: true,
    max_window_bits: 15,
};

/// Decompress one message given as `pieces` (frame payloads or reads).
fn inflate_pieces(inf: &mut Inflater, pieces: &[&[u8]]) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    for p in pieces {
        inf.feed(p, |c| -> Result<(), InflateError> {
            assert!(c.len() <= INFLATE_CHUNK);
            out.extend_from_slice(c);
            Ok(())
        })?;
    }
    inf.finish(|c| -> Result<(), InflateError> {
        out.extend_from_slice(c);
        Ok(())
    })?;
    Ok(out)
}

fn inflate(inf: &mut Inflater, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
    inflate_pieces(inf, &[payload])
}

fn deflate(d: &mut Deflater, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    d.compress(msg, &mut out).unwrap();
    out
}

/// Text that compresses, with some variety.
fn sample(len: usize, seed: u32) -> Vec<u8> {
    let words: &[&[u8]] = &[
        b"hello ",
        b"world ",
        b"{\"seq\":",
        b"42,",
        b"\"text\":\"",
        b"ok\"} ",
    ];
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(5) {
            v.push((x >> 8) as u8);
        } else {
            v.extend_from_slice(words[(x % words.len() as u32) as usize]);
        }
    }
    v.truncate(len);
    v
}

// ----------------------------------------------------- RFC 7692 §7.2.3

#[test]
fn rfc_7692_examples_decode() {
    let hello: &[u8] = b"Hello";
    // §7.2.3.1: a message in one frame, and the same fragmented.
    let one = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 100), &one).unwrap(),
        hello
    );
    assert_eq!(
        inflate_pieces(&mut Inflater::new(NO_CTX, 100), &[&one[..3], &one[3..]]).unwrap(),
        hello
    );
    // §7.2.3.2: the second "Hello" refers to the first (context takeover).
    let mut inf = Inflater::new(CTX, 100);
    assert_eq!(inflate(&mut inf, &one).unwrap(), hello);
    assert_eq!(
        inflate(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        hello
    );
    assert!(inf.holds_state());
    // ... which a decoder without the first message's window cannot read.
    assert_eq!(
        inflate(
            &mut Inflater::new(NO_CTX, 100),
            &[0xf2, 0x00, 0x11, 0x00, 0x00]
        ),
        Err(InflateError::Corrupt)
    );
    // §7.2.3.3: a stored (uncompressed) block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 100), &stored).unwrap(),
        hello
    );
    // §7.2.3.4: a block with BFINAL set, then the padding octet.
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 100), &bfinal).unwrap(),
        hello
    );
    // §7.2.3.5: two DEFLATE blocks in one message.
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 100), &two).unwrap(),
        hello
    );
}

#[test]
fn compresses_hello_as_the_rfc_does() {
    // §7.2.3.1 and §7.2.3.2 are what zlib writes for "Hello" twice.
    let mut d = Deflater::new(CTX, DeflateOptions::default());
    assert_eq!(
        deflate(&mut d, b"Hello"),
        [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    assert_eq!(deflate(&mut d, b"Hello"), [0xf2, 0x00, 0x11, 0x00, 0x00]);
    assert!(d.holds_state());
    let mut d = Deflater::new(NO_CTX, DeflateOptions::default());
    for _ in 0..2 {
        assert_eq!(
            deflate(&mut d, b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        assert!(!d.holds_state());
    }
}

#[test]
fn bfinal_streams_in_later_messages() {
    // With context takeover, after a BFINAL block (with or without the
    // padding octet) the next message starts a new stream.
    for first in [
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00][..],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
    ] {
        let mut inf = Inflater::new(CTX, 100);
        assert_eq!(inflate(&mut inf, first).unwrap(), b"Hello");
        let fresh = deflate(
            &mut Deflater::new(NO_CTX, DeflateOptions::default()),
            b"world",
        );
        assert_eq!(inflate(&mut inf, &fresh).unwrap(), b"world");
        assert_eq!(inflate(&mut inf, &fresh).unwrap(), b"world");
    }
    // Blocks after a BFINAL block in the same message decode (§7.2.1: "The
    // next DEFLATE block follows the padded data if any").
    let mut msg = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    msg.extend(deflate(
        &mut Deflater::new(NO_CTX, DeflateOptions::default()),
        b" world",
    ));
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 100), &msg).unwrap(),
        b"Hello world"
    );
    // Known limit: a back-reference across the BFINAL boundary fails
    // cleanly (zlib-rs cannot keep the window into a new stream).
    let mut inf = Inflater::new(CTX, 100);
    inflate(&mut inf, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]).unwrap();
    assert_eq!(
        inflate(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
        Err(InflateError::Corrupt)
    );
}

// ------------------------------------------------------------------ tail

#[test]
fn tail_is_stripped_and_empty_messages_work() {
    for dir in [CTX, NO_CTX] {
        let mut d = Deflater::new(dir, DeflateOptions::default());
        let mut inf = Inflater::new(dir, 1000);
        for msg in [&b""[..], b"", b"abc", b"", b"abcabcabc", b""] {
            let wire = deflate(&mut d, msg);
            // RFC 7692 §7.2.1 step 3: the 4 octets are gone, so the payload
            // never ends with them (its last octet holds the stored block's
            // header bits and zero padding: never 0xff).
            assert!(!wire.ends_with(&TAIL), "{wire:x?}");
            assert_ne!(wire.last(), Some(&0xff));
            assert_eq!(inflate(&mut inf, &wire).unwrap(), msg);
        }
    }
    // An empty payload is an empty message, and leaves the stream as it
    // was (the next message with context takeover still decodes).
    let mut d = Deflater::new(CTX, DeflateOptions::default());
    let mut inf = Inflater::new(CTX, 1000);
    assert_eq!(
        inflate(&mut inf, &deflate(&mut d, b"Hello")).unwrap(),
        b"Hello"
    );
    assert_eq!(inflate(&mut inf, b"").unwrap(), b"");
    assert_eq!(
        inflate(&mut inf, &deflate(&mut d, b"Hello")).unwrap(),
        b"Hello"
    );
    let mut inf = Inflater::new(NO_CTX, 1000);
    assert_eq!(inflate(&mut inf, b"").unwrap(), b"");
    assert!(!inf.holds_state(), "nothing allocated for it");
    // A fresh compressor writes an empty message as one zero octet.
    assert_eq!(
        deflate(&mut Deflater::new(NO_CTX, DeflateOptions::default()), b""),
        [0x00]
    );
    // A payload that carries the tail itself still decodes (an extra empty
    // stored block).
    let mut wire = deflate(&mut Deflater::new(NO_CTX, DeflateOptions::default()), b"x");
    wire.extend_from_slice(&TAIL);
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 10), &wire).unwrap(),
        b"x"
    );
}

// ---------------------------------------------------- splits and round trips

#[test]
fn round_trip_at_every_split() {
    let msg = sample(700, 1);
    for dir in [CTX, NO_CTX] {
        let mut d = Deflater::new(dir, DeflateOptions::default());
        let first = deflate(&mut d, &sample(300, 2));
        let wire = deflate(&mut d, &msg);
        for cut in 0..=wire.len() {
            let mut inf = Inflater::new(dir, 10_000);
            if !dir.no_context_takeover {
                inflate(&mut inf, &first).unwrap();
            }
            assert_eq!(
                inflate_pieces(&mut inf, &[&wire[..cut], &wire[cut..]]).unwrap(),
                msg,
                "cut {cut}"
            );
        }
        // And a byte at a time.
        let mut inf = Inflater::new(dir, 10_000);
        if !dir.no_context_takeover {
            inflate(&mut inf, &first).unwrap();
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(inflate_pieces(&mut inf, &bytes).unwrap(), msg);
    }
}

#[test]
fn fragmented_send_at_every_split() {
    let msg = sample(500, 3);
    for dir in [CTX, NO_CTX] {
        for cut in 0..=msg.len() {
            let mut d = Deflater::new(dir, DeflateOptions::default());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            d.compress_part(&msg[..cut], false, &mut a).unwrap();
            d.compress_part(&msg[cut..], true, &mut b).unwrap();
            assert_eq!(d.holds_state(), !dir.no_context_takeover);
            // Two frames: the first may be empty.
            let mut inf = Inflater::new(dir, 10_000);
            assert_eq!(
                inflate_pieces(&mut inf, &[&a, &b]).unwrap(),
                msg,
                "cut {cut}"
            );
        }
    }
}

#[test]
fn context_takeover_across_messages() {
    let msg = sample(2000, 4);
    let mut d = Deflater::new(CTX, DeflateOptions::default());
    let first = deflate(&mut d, &msg);
    let second = deflate(&mut d, &msg);
    // The second refers to the first: a handful of back-references.
    assert!(
        second.len() * 10 < first.len(),
        "{} vs {}",
        second.len(),
        first.len()
    );
    let mut inf = Inflater::new(CTX, 10_000);
    assert_eq!(inflate(&mut inf, &first).unwrap(), msg);
    assert_eq!(inflate(&mut inf, &second).unwrap(), msg);
    // Alone it does not decode to the message.
    let alone = inflate(&mut Inflater::new(NO_CTX, 10_000), &second);
    assert_ne!(alone.ok().as_deref(), Some(&msg[..]));
}

#[test]
fn no_context_takeover_messages_decode_alone() {
    let mut d = Deflater::new(NO_CTX, DeflateOptions::default());
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| sample(400, 10 + (i % 2))).collect();
    let wires: Vec<Vec<u8>> = msgs.iter().map(|m| deflate(&mut d, m)).collect();
    assert_eq!(wires[0], wires[2], "no state carried over");
    for (m, w) in msgs.iter().zip(&wires).rev() {
        let mut inf = Inflater::new(NO_CTX, 10_000);
        assert_eq!(inflate(&mut inf, w).unwrap(), *m);
        assert!(!inf.holds_state());
    }
}

#[test]
fn shared_frames_decode_for_any_receiver_history() {
    let msg = sample(1000, 5);
    let mut once = Vec::new();
    compress_shared(&msg, 15, DeflateOptions::default(), &mut once).unwrap();
    let mut shared = SharedDeflater::new(15, DeflateOptions::default());
    let mut a = Vec::new();
    shared.compress(&sample(700, 6), &mut a).unwrap();
    let mut b = Vec::new();
    shared.compress(&msg, &mut b).unwrap();
    assert_eq!(b, once, "a reset compressor equals a fresh one");
    // Receivers with context takeover on their side and different pasts.
    for past in [&b""[..], b"unrelated", &sample(5000, 7)] {
        let mut inf = Inflater::new(CTX, 100_000);
        if !past.is_empty() {
            let w = deflate(&mut Deflater::new(CTX, DeflateOptions::default()), past);
            inflate(&mut inf, &w).unwrap();
        }
        assert_eq!(inflate(&mut inf, &once).unwrap(), msg);
    }
}

// ---------------------------------------------------------------- windows

/// Decode with a zlib-rs stream whose window is `2^bits` bytes, one output
/// byte per call: every back-reference is then served from the window, so
/// one farther than the window fails ("invalid distance too far back").
/// (With a large output buffer zlib also reads back into the buffer.)
fn inflate_with_window(bits: u8, payload: &[u8]) -> Result<Vec<u8>, zlib_rs::InflateError> {
    let mut s = Inflate::new(false, bits);
    let mut data = payload.to_vec();
    data.extend_from_slice(&TAIL);
    let mut input = &data[..];
    let mut out = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let before = s.total_in();
        let status = s.decompress(input, &mut byte, InflateFlush::SyncFlush)?;
        input = &input[(s.total_in() - before) as usize..];
        if s.total_out() as usize > out.len() {
            out.push(byte[0]);
        } else if input.is_empty() || status != Status::Ok {
            return Ok(out);
        }
    }
}

#[test]
fn compressor_stays_within_the_agreed_window() {
    // Noise repeated 300 and 5000 bytes apart: the only matches are
    // beyond 2^8 and 2^12 bytes back.
    let noise = |len: usize, mut x: u32| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    let block = noise(300, 8);
    let far = noise(5000, 9);
    let mut msg = block.clone();
    msg.extend_from_slice(&block);
    msg.extend_from_slice(&far);
    msg.extend_from_slice(&far);
    for bits in 8..=15u8 {
        let dir = Direction {
            no_context_takeover: true,
            max_window_bits: bits,
        };
        let wire = deflate(&mut Deflater::new(dir, DeflateOptions::default()), &msg);
        assert_eq!(
            inflate_with_window(bits, &wire).unwrap(),
            msg,
            "window {bits}"
        );
    }
    // The check is real: a 10-bit compressor's output needs more than 8
    // bits (9 bits reach 250 bytes back at most: 2^9 minus zlib's 262
    // bytes of look-ahead, which is why an agreed 8 is compressed with 9).
    let ten = Direction {
        no_context_takeover: true,
        max_window_bits: 10,
    };
    let wire = deflate(&mut Deflater::new(ten, DeflateOptions::default()), &msg);
    assert!(inflate_with_window(8, &wire).is_err());
    assert_eq!(inflate_with_window(9, &wire).unwrap(), msg);
    // At every level, 8 and 9 bits stay within 256 and 512 bytes.
    for bits in [8, 9] {
        for level in 0..=9 {
            let dir = Direction {
                no_context_takeover: true,
                max_window_bits: bits,
            };
            let o = DeflateOptions {
                level,
                ..DeflateOptions::default()
            };
            let wire = deflate(&mut Deflater::new(dir, o), &msg);
            assert_eq!(
                inflate_with_window(bits, &wire).unwrap(),
                msg,
                "{bits} bits, level {level}"
            );
        }
    }
    // And every level, including stored blocks (0).
    for level in 0..=9 {
        let o = DeflateOptions {
            level,
            mem_level: 1 + level % 9,
        };
        let wire = deflate(&mut Deflater::new(CTX, o), &msg);
        assert_eq!(
            inflate(&mut Inflater::new(CTX, 100_000), &wire).unwrap(),
            msg
        );
    }
}

// ------------------------------------------------------------------ limit

#[test]
fn limit_is_exact() {
    let msg = sample(10_000, 12);
    let wire = deflate(&mut Deflater::new(NO_CTX, DeflateOptions::default()), &msg);
    assert_eq!(
        inflate(&mut Inflater::new(NO_CTX, 10_000), &wire).unwrap(),
        msg
    );
    let mut inf = Inflater::new(NO_CTX, 9_999);
    let mut seen = 0;
    let r = inf.feed(&wire, |c| -> Result<(), InflateError> {
        seen += c.len();
        Ok(())
    });
    let r = r.and_then(|()| {
        inf.finish(|c| -> Result<(), InflateError> {
            seen += c.len();
            Ok(())
        })
    });
    assert_eq!(r, Err(InflateError::TooBig));
    assert_eq!(
        seen, 9_999,
        "the sink gets exactly the limit, then the error"
    );
    assert!(!inf.holds_state());
    assert_eq!(InflateError::TooBig.close_code(), CloseCode::TOO_BIG);
    // The next message starts clean.
    assert_eq!(
        inflate(
            &mut inf,
            &deflate(&mut Deflater::new(NO_CTX, DeflateOptions::default()), b"ok")
        )
        .unwrap(),
        b"ok"
    );
}

#[test]
fn bomb_fails_early_with_bounded_output() {
    // About 1 KiB of DEFLATE inflates to about 1 MiB (DEFLATE's ratio tops
    // out near 1032:1); a 64 KiB limit stops it after 64 KiB of output.
    let mut d = Deflater::new(
        NO_CTX,
        DeflateOptions {
            level: 9,
            mem_level: 9,
        },
    );
    let mut wire = Vec::new();
    d.compress(&vec![0u8; 1 << 20], &mut wire).unwrap();
    assert!(wire.len() < 1100, "{}", wire.len());
    let mut inf = Inflater::new(NO_CTX, 64 << 10);
    let mut out = Vec::new();
    assert_eq!(inf.decompress(&wire, &mut out), Err(InflateError::TooBig));
    assert!(out.len() <= 64 << 10);
    assert!(out.capacity() <= 64 << 10, "capacity {}", out.capacity());
}

// ------------------------------------------------------------- bad input

#[test]
fn corrupt_data_is_a_typed_error() {
    for bad in [
        &[0xff, 0xff, 0xff][..],             // BTYPE 11 is reserved
        &[0x07, 0x00][..],                   // reserved block type with BFINAL
        &[0x00, 0x05, 0x00, 0x00, 0x00][..], // stored LEN/NLEN mismatch
        &[0xf2, 0x00, 0x11, 0x00, 0x00][..], // back-reference before the start
    ] {
        let mut inf = Inflater::new(CTX, 1000);
        assert_eq!(
            inflate(&mut inf, bad),
            Err(InflateError::Corrupt),
            "{bad:x?}"
        );
        assert!(!inf.holds_state());
        assert_eq!(
            inflate(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
    }
    assert_eq!(
        InflateError::Corrupt.close_code(),
        CloseCode::INVALID_PAYLOAD
    );
}

#[test]
fn sink_error_stops_at_once() {
    #[derive(Debug, PartialEq)]
    enum E {
        Inflate(InflateError),
        Stop,
    }
    impl From<InflateError> for E {
        fn from(e: InflateError) -> E {
            E::Inflate(e)
        }
    }
    let msg = sample(50_000, 13);
    let wire = deflate(&mut Deflater::new(NO_CTX, DeflateOptions::default()), &msg);
    let mut inf = Inflater::new(NO_CTX, 1 << 20);
    let mut calls = 0;
    let r = inf.feed(&wire, |_| {
        calls += 1;
        Err(E::Stop)
    });
    assert_eq!(r, Err(E::Stop));
    assert_eq!(calls, 1);
    assert!(!inf.holds_state(), "abandoned");
    assert_eq!(inflate(&mut inf, &wire).unwrap(), msg);
}

#[test]
fn idle_structs_are_small() {
    assert!(
        std::mem::size_of::<Inflater>() <= 32,
        "{}",
        std::mem::size_of::<Inflater>()
    );
    assert!(
        std::mem::size_of::<Deflater>() <= 24,
        "{}",
        std::mem::size_of::<Deflater>()
    );
    let (mut inf, mut d) = (
        Inflater::new(CTX, 10),
        Deflater::new(CTX, DeflateOptions::default()),
    );
    assert!(
        !inf.holds_state() && !d.holds_state(),
        "nothing before the first message"
    );
    inflate(&mut inf, &deflate(&mut d, b"x")).unwrap();
    assert!(
        inf.holds_state() && d.holds_state(),
        "context takeover keeps both"
    );
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any messages, any window and level, either mode, any chunking of
    /// each payload: what comes out is what went in.
    #[test]
    fn round_trip(
        msgs in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..3000), 1..5),
        ctx in any::<bool>(),
        bits in 8u8..=15,
        level in 0u8..=9,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        part_cut in any::<prop::sample::Index>(),
    ) {
        let dir = Direction { no_context_takeover: !ctx, max_window_bits: bits };
        let mut d = Deflater::new(dir, DeflateOptions { level, ..DeflateOptions::default() });
        let mut inf = Inflater::new(dir, 1 << 20);
        for m in &msgs {
            // Sent in two parts (a fragmented message) ...
            let k = part_cut.index(m.len() + 1);
            let mut wire = Vec::new();
            d.compress_part(&m[..k], false, &mut wire).unwrap();
            d.compress_part(&m[k..], true, &mut wire).unwrap();
            // ... received in pieces cut anywhere.
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
            prop_assert_eq!(&inflate_pieces(&mut inf, &pieces).unwrap(), m);
            if !ctx {
                // Within the agreed window: a decoder of exactly that size.
                prop_assert_eq!(&inflate_with_window(bits, &wire).unwrap(), m);
            }
            prop_assert_eq!(inf.holds_state(), ctx);
        }
    }

    /// Arbitrary bytes: never a panic, never more than the limit, and the
    /// same result however the bytes are cut.
    #[test]
    fn arbitrary_input_is_safe_and_cut_independent(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        limit in 0u64..5000,
        cut in any::<prop::sample::Index>(),
    ) {
        let k = cut.index(data.len() + 1);
        let whole = inflate(&mut Inflater::new(NO_CTX, limit), &data);
        let split = inflate_pieces(&mut Inflater::new(NO_CTX, limit), &[&data[..k], &data[k..]]);
        if let Ok(v) = &whole {
            prop_assert!(v.len() as u64 <= limit);
        }
        prop_assert_eq!(whole, split);
    }
}
