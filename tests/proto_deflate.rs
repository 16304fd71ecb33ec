//! permessage-deflate (RFC 7692) through the sans-IO core: `Receiver`,
//! `Sender` and `Connection` built for the negotiated parameters, and the
//! handshake that negotiates them.
//!
//! - Every RSV1 misuse fails with 1002 (§6), corrupt DEFLATE data with
//!   1007, a message that inflates past the limit with 1009, text that is
//!   not UTF-8 after inflation with 1007, as soon as the bad byte is out.
//! - Round trips client → server and server → client at every split of the
//!   wire into reads and of the message into fragments, in both delivery
//!   modes; context takeover across messages in both directions; every
//!   window from 8 to 15 bits, checked with a decoder of exactly the
//!   agreed window; a property test over all of it.
//! - The sender's policy (threshold, incompressible messages, fragments)
//!   and frames compressed once for many receivers.
//!
//! Negotiation is `proto_deflate_handshake.rs`; memory,
//! `proto_deflate_alloc.rs`.
#![cfg(feature = "deflate")]

mod proto_deflate_support;
use proto_deflate_support::*;

use proptest::prelude::*;
use wsmio::proto::deflate::{
    encode_shared_frame, Compression, DeflateOptions, SharedKey, DEFAULT_MIN_SIZE,
};
use wsmio::proto::mask::apply_mask;
use wsmio::proto::{
    CloseCode, Connection, DeliveryMode, Error, Event, Limits, Message, OpCode, Role,
};
use zlib_rs::{Inflate, InflateFlush, Status};

// ------------------------------------------------------------ RSV misuse

/// RFC 7692 §6: RSV1 only on the first frame of a data message, and only
/// when negotiated; RSV2 and RSV3 never. Each misuse is a 1002.
#[test]
fn every_rsv_misuse_closes_with_1002() {
    let server = || conn(Role::Server, default_params(), Limits::default());
    let hello = compressed(b"Hello");
    let mut cont_rsv1 = masked(0x41, &hello[..3]);
    cont_rsv1.extend(masked(0xC0, &hello[3..]));
    let mut plain_then_rsv1 = masked(0x01, b"Hel");
    plain_then_rsv1.extend(masked(0xC0, b"lo"));
    let mut ping_inside = masked(0x41, &hello[..3]);
    ping_inside.extend(masked(0xC9, b""));
    let cases: Vec<(&str, Vec<u8>, Error)> = vec![
        ("RSV1 continuation", cont_rsv1, Error::MisplacedRsv1),
        (
            "RSV1 continuation of a plain message",
            plain_then_rsv1,
            Error::MisplacedRsv1,
        ),
        (
            "RSV1 lone continuation",
            masked(0xC0, &hello),
            Error::MisplacedRsv1,
        ),
        ("RSV1 ping", masked(0xC9, b"x"), Error::MisplacedRsv1),
        (
            "RSV1 ping inside a message",
            ping_inside,
            Error::MisplacedRsv1,
        ),
        ("RSV1 pong", masked(0xCA, b""), Error::MisplacedRsv1),
        (
            "RSV1 close",
            masked(0xC8, &[0x03, 0xe8]),
            Error::MisplacedRsv1,
        ),
        ("RSV2 text", masked(0xA1, b"x"), Error::ReservedBits),
        ("RSV3 binary", masked(0x92, b"x"), Error::ReservedBits),
        ("RSV1+RSV2 text", masked(0xE1, &hello), Error::ReservedBits),
        ("RSV2 ping", masked(0xA9, b""), Error::ReservedBits),
    ];
    for (name, wire, want) in cases {
        eprintln!("{name}");
        fails_with(server, &wire, want, 1002);
    }
    // Not negotiated: RSV1 is a reserved bit like the others (RFC 6455
    // §5.2), on the very frame a deflate connection accepts.
    let plain = || Connection::new(Role::Server, Limits::default());
    fails_with(plain, &masked(0xC1, &hello), Error::ReservedBits, 1002);
    fails_with(plain, &masked(0xC9, b""), Error::ReservedBits, 1002);
    // And the accepted frame, for contrast.
    let mut c = server();
    let mut got = Collector::default();
    feed(&mut c, &masked(0xC1, &hello), &[], &mut got).unwrap();
    assert_eq!(got.got, [Got::Text("Hello".into())]);
    // The client role, on unmasked server frames.
    let client = || conn(Role::Client, default_params(), Limits::default());
    let mut f = vec![0xC9, 0x00];
    fails_with(client, &f, Error::MisplacedRsv1, 1002);
    f = vec![0xA2, 0x00];
    fails_with(client, &f, Error::ReservedBits, 1002);
}

// ------------------------------------------------------- bad compressed data

/// Data that does not inflate is a 1007 (Autobahn has no case for it; 1007
/// is "inconsistent data" as Node's ws answers it: see `InflateError`).
#[test]
fn corrupt_compressed_data_closes_with_1007() {
    let server = || conn(Role::Server, default_params(), Limits::default());
    let hello = compressed(b"Hello, hello, hello");
    // A block of the reserved type 11 (RFC 1951 §3.2.3).
    fails_with(
        server,
        &masked(0xC2, &[0x07, 0x00]),
        Error::InvalidCompressedData,
        1007,
    );
    // A stored block whose NLEN is not LEN's complement.
    fails_with(
        server,
        &masked(0xC1, &[0x00, 0x05, 0x00, 0x00, 0x00]),
        Error::InvalidCompressedData,
        1007,
    );
    // A back-reference before the start of the stream ("hello world"
    // compressed against a preset dictionary).
    fails_with(
        server,
        &masked(0xC1, &[0x42, 0x62, 0x02, 0x00]),
        Error::InvalidCompressedData,
        1007,
    );
    // Good data, then a bad block in the next fragment (binary: in text,
    // what bad data decodes to before the error may be invalid UTF-8, also
    // a 1007).
    let mut wire = masked(0x42, &hello);
    wire.extend(masked(0x80, &[0x07]));
    fails_with(server, &wire, Error::InvalidCompressedData, 1007);
    wire[0] = 0x41;
    let mut c = server();
    let r = feed(&mut c, &wire, &[], &mut Collector::default());
    assert_eq!(r.map_err(|e| e.close_code()), Err(CloseCode(1007)));
    // An uncompressed message on the same connection is fine.
    let mut c = server();
    let mut got = Collector::default();
    feed(&mut c, &masked(0x81, b"plain"), &[], &mut got).unwrap();
    assert_eq!(got.got, [Got::Text("plain".into())]);
}

// ------------------------------------------------------------------ limits

/// A small frame that inflates past the limit fails with 1009, having
/// delivered (in chunks) or buffered no more than the limit; exactly the
/// limit passes.
#[test]
fn a_bomb_closes_with_1009_within_the_limit() {
    let zeros = vec![0u8; 1 << 20];
    let bomb = compressed(&zeros);
    assert!(bomb.len() < 1100, "{}", bomb.len());
    for delivery in [DeliveryMode::Messages, DeliveryMode::Chunks] {
        let l = limits(64 << 10, delivery);
        let mut c = conn(Role::Server, default_params(), l);
        let mut got = Collector::default();
        let r = feed(&mut c, &masked(0xC2, &bomb), &[], &mut got);
        assert_eq!(r, Err(Error::MessageTooBig));
        assert_eq!(close_code(c.output()), Some(1009));
        assert!(got.got.is_empty());
        assert!(got.chunk_bytes <= 64 << 10, "{}", got.chunk_bytes);
        assert!(c.receiver().buffer_capacity() == 0);
    }
    // The limit is the decompressed size, exactly.
    for (len, ok) in [(1000, true), (1001, false)] {
        let msg = json(len, 3);
        let mut c = conn(
            Role::Server,
            default_params(),
            limits(1000, DeliveryMode::Messages),
        );
        let mut got = Collector::default();
        let r = feed(&mut c, &masked(0xC1, &compressed(&msg)), &[], &mut got);
        assert_eq!(r.is_ok(), ok, "{len}");
    }
}

/// RFC 6455 §8.1 on the inflated text: invalid UTF-8 fails with 1007 as
/// soon as the decompressor puts the bad byte out, long before the end of
/// the message — and no chunk with it is delivered.
#[test]
fn text_fails_fast_after_inflation() {
    let mut msg = b"ok \xff".to_vec();
    msg.extend(noise(100_000, 5).iter().map(|b| b'a' + b % 26));
    let wire = masked(0xC1, &compressed(&msg));
    assert!(wire.len() > 50_000);
    for delivery in [DeliveryMode::Messages, DeliveryMode::Chunks] {
        let mut c = conn(Role::Server, default_params(), limits(1 << 20, delivery));
        let mut got = Collector::default();
        let mut fed = 0;
        let mut r = Ok(());
        for piece in wire.chunks(256) {
            fed += piece.len();
            r = c.receive(&mut piece.to_vec(), |e| got.event(e));
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(Error::InvalidUtf8));
        assert!(fed <= 1024, "failed only after {fed} bytes");
        assert_eq!(close_code(c.output()), Some(1007));
        assert_eq!(got.chunk_bytes, 0);
    }
    // Text cut in the middle of a code point by the end of the message.
    let mut c = conn(Role::Server, default_params(), Limits::default());
    let r = feed(
        &mut c,
        &masked(0xC1, &compressed("é".as_bytes()[..1].as_ref())),
        &[],
        &mut Collector::default(),
    );
    assert_eq!(r, Err(Error::InvalidUtf8));
    // Binary may be anything.
    let mut c = conn(Role::Server, default_params(), Limits::default());
    let mut got = Collector::default();
    feed(
        &mut c,
        &masked(0xC2, &compressed(b"\xff\xfe")),
        &[],
        &mut got,
    )
    .unwrap();
    assert_eq!(got.got, [Got::Binary(vec![0xff, 0xfe])]);
}

// ------------------------------------------------------------- round trips

/// Client → server and server → client, one message, cut at every byte
/// of the wire into two reads, and sent in two fragments cut at every byte
/// of the message; in both delivery modes and with and without context
/// takeover (a second message after the first checks the kept context).
#[test]
fn round_trip_at_every_split() {
    let msg = json(300, 1);
    for takeover in [false, true] {
        let p = params(!takeover, !takeover, 15, 15);
        for delivery in [DeliveryMode::Messages, DeliveryMode::Chunks] {
            for sender_role in [Role::Client, Role::Server] {
                let receiver_role = match sender_role {
                    Role::Client => Role::Server,
                    Role::Server => Role::Client,
                };
                let l = limits(1 << 20, delivery);
                // Every read split.
                let mut tx = conn(sender_role, p, l);
                tx.send(Message::Text(std::str::from_utf8(&msg).unwrap()))
                    .unwrap();
                tx.send(Message::Binary(&msg)).unwrap();
                let wire = drain(&mut tx);
                assert_eq!(frames(&wire)[0].b0, 0xC1);
                for cut in 0..=wire.len() {
                    let mut rx = conn(receiver_role, p, l);
                    let mut got = Collector::default();
                    feed(&mut rx, &wire, &[cut], &mut got).unwrap();
                    assert_eq!(got.got, [sent(true, &msg), sent(false, &msg)], "cut {cut}");
                }
                // Every fragment split (and every read split of those).
                for at in 0..=msg.len() {
                    let mut tx = conn(sender_role, p, l);
                    tx.send_compressed_frame(OpCode::Binary, false, &msg[..at])
                        .unwrap();
                    tx.send_compressed_frame(OpCode::Continuation, true, &msg[at..])
                        .unwrap();
                    tx.send(Message::Binary(&msg)).unwrap();
                    let wire = drain(&mut tx);
                    let f = frames(&wire);
                    assert_eq!((f[0].b0, f[1].b0), (0x42, 0x80), "RSV1 on the first only");
                    let mut rx = conn(receiver_role, p, l);
                    let mut got = Collector::default();
                    let cut = (at * 7) % (wire.len() + 1);
                    feed(&mut rx, &wire, &[cut], &mut got).unwrap();
                    assert_eq!(got.got, [sent(false, &msg), sent(false, &msg)], "at {at}");
                }
            }
        }
    }
}

/// RFC 7692 §7.1.1: with context takeover a message may refer to earlier
/// ones, so a repeat costs a few bytes; without, each message is
/// compressed alone. Both directions, each set on its own.
#[test]
fn context_takeover_across_messages_both_ways() {
    let msg = json(400, 9);
    for (server_nct, client_nct) in [(false, false), (false, true), (true, false), (true, true)] {
        let p = params(server_nct, client_nct, 15, 15);
        let mut server = conn(Role::Server, p, Limits::default());
        let mut client = conn(Role::Client, p, Limits::default());
        for (server_sends, nct) in [(true, server_nct), (false, client_nct)] {
            let (tx, rx) = ends(&mut server, &mut client, server_sends);
            for _ in 0..3 {
                tx.send(Message::Binary(&msg)).unwrap();
            }
            let wire = drain(tx);
            let sizes: Vec<usize> = frames(&wire).iter().map(|f| f.payload.len()).collect();
            if nct {
                assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
            } else {
                assert!(
                    sizes[1] * 4 < sizes[0] && sizes[2] * 4 < sizes[0],
                    "{sizes:?}"
                );
            }
            let mut got = Collector::default();
            feed(rx, &wire, &[wire.len() / 3], &mut got).unwrap();
            assert_eq!(got.got, vec![sent(false, &msg); 3]);
        }
    }
}

/// A decoder with exactly the agreed window, fed the output one byte at a
/// time so that every back-reference is served from the window (zlib
/// otherwise reads back into a large output buffer): one farther than the
/// window fails. Keeps its state across messages when `takeover`.
struct Strict {
    state: Inflate,
    bits: u8,
    takeover: bool,
}

impl Strict {
    fn new(bits: u8, takeover: bool) -> Strict {
        Strict {
            state: Inflate::new(false, bits),
            bits,
            takeover,
        }
    }

    fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.state = Inflate::new(false, self.bits);
        }
        let mut data = payload.to_vec();
        data.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        let mut input = &data[..];
        let mut out = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            let (in0, out0) = (self.state.total_in(), self.state.total_out());
            let status = self
                .state
                .decompress(input, &mut byte, InflateFlush::SyncFlush)
                .unwrap_or_else(|e| panic!("{}-bit window: {e:?}", self.bits));
            input = &input[(self.state.total_in() - in0) as usize..];
            if self.state.total_out() > out0 {
                out.push(byte[0]);
            } else if input.is_empty() || status != Status::Ok {
                return out;
            }
        }
    }
}

/// Every window from 8 to 15 bits, each direction with its own, with and
/// without context takeover: the messages arrive, and each side's output
/// decodes with a window of exactly what the other agreed to receive
/// (8 bits: zlib compresses with 9, reaching 250 bytes back at most).
#[test]
fn every_window_from_8_to_15_bits() {
    // Repeats 300 and 5,000 bytes apart, across messages too.
    let near = noise(300, 3);
    let far = noise(5000, 4);
    let msgs: Vec<Vec<u8>> = vec![
        [&near[..], &near[..], &far[..], &far[..]].concat(),
        [&far[..], &near[..]].concat(),
        json(2000, 5),
    ];
    for bits in 8..=15u8 {
        for takeover in [false, true] {
            // The client window one off from the server's, so that a
            // swap of directions would show.
            let cbits = if bits == 15 { 14 } else { bits + 1 };
            let p = params(!takeover, !takeover, bits, cbits);
            let mut server = conn(Role::Server, p, Limits::default());
            let mut client = conn(Role::Client, p, Limits::default());
            for (server_sends, window) in [(true, bits), (false, cbits)] {
                let (tx, rx) = ends(&mut server, &mut client, server_sends);
                let mut strict = Strict::new(window, takeover);
                for m in &msgs {
                    tx.send(Message::Binary(m)).unwrap();
                }
                let wire = drain(tx);
                for (f, m) in frames(&wire).iter().zip(&msgs) {
                    if f.b0 == 0x82 {
                        // Did not shrink (no context takeover): sent plain.
                        assert!(!takeover);
                        assert_eq!(&f.payload, m);
                    } else {
                        assert_eq!(f.b0, 0xC2);
                        assert_eq!(&strict.message(&f.payload), m, "{window} bits");
                    }
                }
                let mut got = Collector::default();
                feed(rx, &wire, &[], &mut got).unwrap();
                let want: Vec<Got> = msgs.iter().map(|m| sent(false, m)).collect();
                assert_eq!(got.got, want, "{bits} bits, takeover {takeover}");
            }
        }
    }
}

/// One side's sends for the property test.
#[derive(Debug, Clone)]
struct Send {
    text: bool,
    msg: Vec<u8>,
    /// Fragment cut points (empty: one `send`).
    fragments: Vec<prop::sample::Index>,
}

fn any_send() -> impl Strategy<Value = Send> {
    (
        any::<bool>(),
        prop_oneof![
            3 => (0usize..3000, any::<u32>()).prop_map(|(n, s)| json(n, s)),
            1 => proptest::collection::vec(any::<u8>(), 0..600),
        ],
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_map(|(text, msg, fragments)| {
            let text = text && std::str::from_utf8(&msg).is_ok();
            Send {
                text,
                msg,
                fragments,
            }
        })
}

/// Send `s` on `tx` (whole or in compressed fragments).
fn send(tx: &mut Connection, s: &Send) {
    let op = if s.text { OpCode::Text } else { OpCode::Binary };
    if s.fragments.is_empty() {
        let m = if s.text {
            Message::Text(std::str::from_utf8(&s.msg).unwrap())
        } else {
            Message::Binary(&s.msg)
        };
        tx.send(m).unwrap();
        return;
    }
    let mut cuts: Vec<usize> = s
        .fragments
        .iter()
        .map(|i| i.index(s.msg.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut from = 0;
    let mut first = true;
    for cut in cuts.into_iter().chain([s.msg.len()]) {
        let fin = cut == s.msg.len() && from <= cut;
        let opcode = if first { op } else { OpCode::Continuation };
        tx.send_compressed_frame(opcode, fin, &s.msg[from..cut])
            .unwrap();
        first = false;
        from = cut;
        if fin {
            break;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any messages, whole or fragmented, any agreed parameters, any cut of
    /// the wire into reads, either delivery: the same messages arrive, in
    /// both directions, with pings between them.
    #[test]
    fn round_trip_property(
        sends in proptest::collection::vec((any::<bool>(), any_send()), 1..8),
        server_nct in any::<bool>(),
        client_nct in any::<bool>(),
        server_bits in 8u8..=15,
        client_bits in 8u8..=15,
        min_size in prop_oneof![Just(0usize), Just(DEFAULT_MIN_SIZE), Just(1000)],
        chunks in any::<bool>(),
        reads in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let p = params(server_nct, client_nct, server_bits, client_bits);
        let l = limits(1 << 20, if chunks { DeliveryMode::Chunks } else { DeliveryMode::Messages });
        let compression = Compression { min_size, ..Compression::default() };
        let mut server = Connection::with_deflate(Role::Server, l, p, compression);
        let mut client = Connection::with_deflate(Role::Client, l, p, compression);
        let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
        for (from_client, s) in &sends {
            let (tx, want) = if *from_client {
                (&mut client, &mut to_server)
            } else {
                (&mut server, &mut to_client)
            };
            send(tx, s);
            tx.ping(b"p").unwrap();
            want.push(sent(s.text, &s.msg));
        }
        for (server_sends, want) in [(false, to_server), (true, to_client)] {
            let (tx, rx) = ends(&mut server, &mut client, server_sends);
            let wire = drain(tx);
            let mut cuts: Vec<usize> = reads.iter().map(|i| i.index(wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut got = Collector::default();
            feed(rx, &wire, &cuts, &mut got).unwrap();
            prop_assert_eq!(&got.got, &want);
            prop_assert_eq!(got.pings, want.len());
            prop_assert_eq!(rx.receiver().buffer_capacity(), 0);
        }
    }
}

// ------------------------------------------------------------ the sender

/// Short messages go out as they are; from `min_size` on they are
/// compressed; a message that does not shrink goes out as it is without
/// context takeover (nothing carries over), compressed with it (the
/// receiver's window must see it).
#[test]
fn sender_policy() {
    let mut tx = conn(Role::Server, default_params(), Limits::default());
    let short = json(DEFAULT_MIN_SIZE - 1, 1);
    let long = json(DEFAULT_MIN_SIZE, 1);
    tx.send(Message::Binary(&short)).unwrap();
    tx.send(Message::Binary(&long)).unwrap();
    tx.send(Message::Binary(&noise(500, 1))).unwrap();
    let f = frames(&drain(&mut tx));
    assert_eq!((f[0].b0, f[1].b0, f[2].b0), (0x82, 0xC2, 0x82));
    assert_eq!(f[0].payload, short);
    assert_eq!(f[2].payload.len(), 500);

    let mut tx = conn(Role::Server, params(false, true, 15, 15), Limits::default());
    tx.send(Message::Binary(&noise(500, 1))).unwrap();
    assert_eq!(frames(&drain(&mut tx))[0].b0, 0xC2);

    // Without permessage-deflate nothing is compressed.
    let mut tx = Connection::new(Role::Server, Limits::default());
    tx.send(Message::Binary(&long)).unwrap();
    assert_eq!(frames(&drain(&mut tx))[0].b0, 0x82);
}

/// The fragment rules with compression: a plain continuation may not follow
/// a compressed first frame nor the other way round, and a whole message
/// may not go out in the middle of either.
#[test]
fn fragment_sequences() {
    let mut tx = conn(Role::Client, default_params(), Limits::default());
    tx.send_compressed_frame(OpCode::Text, false, b"abc")
        .unwrap();
    assert_eq!(
        tx.send_frame(OpCode::Continuation, true, b"d"),
        Err(Error::BadFragmentSequence)
    );
    assert_eq!(tx.send(Message::Text("x")), Err(Error::BadFragmentSequence));
    tx.send_compressed_frame(OpCode::Continuation, false, b"")
        .unwrap();
    tx.send_compressed_frame(OpCode::Continuation, true, b"d")
        .unwrap();
    tx.send_frame(OpCode::Binary, false, b"ab").unwrap();
    // A plain message's continuation stays plain through either call.
    tx.send_compressed_frame(OpCode::Continuation, true, b"c")
        .unwrap();
    let wire = drain(&mut tx);
    let f = frames(&wire);
    let firsts: Vec<u8> = f.iter().map(|f| f.b0).collect();
    assert_eq!(firsts, [0x41, 0x00, 0x80, 0x02, 0x80]);
    assert_eq!(f[4].payload, b"c");
    let mut rx = conn(Role::Server, default_params(), Limits::default());
    let mut got = Collector::default();
    feed(&mut rx, &wire, &[], &mut got).unwrap();
    assert_eq!(
        got.got,
        [Got::Text("abcd".into()), Got::Binary(b"abc".to_vec())]
    );
    // No data after our close frame; the compressor is not even run.
    tx.close(Some(CloseCode::NORMAL), "").unwrap();
    assert_eq!(
        tx.send(Message::Binary(&json(500, 1))),
        Err(Error::AlreadyClosed)
    );
    assert_eq!(
        tx.send_compressed_frame(OpCode::Text, true, b"x"),
        Err(Error::AlreadyClosed)
    );
}

/// `Sender::compress_message`, for a caller with its own queue: the header
/// and the compressed bytes (unmasked; the header carries the client's
/// key), or `None` to send the message plain.
#[test]
fn compress_message_for_a_caller_with_its_own_queue() {
    use wsmio::proto::Sender;
    let long = json(1000, 2);
    for role in [Role::Server, Role::Client] {
        let mut tx = Sender::with_deflate(role, default_params(), Compression::default());
        let mut payload = Vec::new();
        let h = tx
            .compress_message(OpCode::Text, &long, &mut payload)
            .unwrap()
            .unwrap();
        assert_eq!(h.as_bytes()[0], 0xC1);
        assert_eq!(h.mask.is_some(), role == Role::Client);
        let mut wire = h.as_bytes().to_vec();
        let start = wire.len();
        wire.extend_from_slice(&payload);
        if let Some(key) = h.mask {
            apply_mask(&mut wire[start..], key, 0);
        }
        let other = if role == Role::Server {
            Role::Client
        } else {
            Role::Server
        };
        let mut rx = conn(other, default_params(), Limits::default());
        let mut got = Collector::default();
        feed(&mut rx, &wire, &[], &mut got).unwrap();
        assert_eq!(got.got, [sent(true, &long)]);
        // Below the threshold, or not negotiated: nothing done.
        assert!(tx
            .compress_message(OpCode::Text, b"hi", &mut payload)
            .unwrap()
            .is_none());
        let mut plain = Sender::new(role);
        assert!(plain
            .compress_message(OpCode::Text, &long, &mut Vec::new())
            .unwrap()
            .is_none());
        assert!(!plain.compresses(long.len()) && tx.compresses(long.len()));
    }
}

// ------------------------------------------------------------ shared frames

/// One frame compressed for many: every connection whose agreed window is
/// at least the frame's reads it, whatever it received before, and a
/// server compressor with context takeover forgets its context when it
/// admits it, so its next message still decodes.
#[test]
fn shared_frames_go_to_every_compatible_connection() {
    use wsmio::proto::Sender;
    let (msg, other) = (json(800, 7), json(700, 99));
    let key = SharedKey::new(12);
    let mut shared = Vec::new();
    let mut deflater = key.deflater(DeflateOptions::default());
    encode_shared_frame(Message::Binary(&other), &mut deflater, &mut shared).unwrap();
    assert_eq!(shared[0], 0xC2);
    for bits in 8..=15u8 {
        for takeover in [false, true] {
            let p = params(!takeover, !takeover, bits, 15);
            let mut tx = Sender::with_deflate(Role::Server, p, Compression::default());
            assert_eq!(tx.shared_key(), Some(SharedKey::new(bits)));
            // A message before, the shared frame, a message after.
            let mut wire = Vec::new();
            tx.encode_message(Message::Binary(&msg), &mut wire).unwrap();
            let admitted = tx.admit_shared_compressed(key).unwrap();
            assert_eq!(admitted, bits >= 12, "{bits} bits");
            if !admitted {
                continue;
            }
            wire.extend_from_slice(&shared);
            tx.encode_message(Message::Binary(&msg), &mut wire).unwrap();
            let mut client = conn(Role::Client, p, Limits::default());
            let mut got = Collector::default();
            feed(&mut client, &wire, &[], &mut got).unwrap();
            let want = [sent(false, &msg), sent(false, &other), sent(false, &msg)];
            assert_eq!(got.got, want, "{bits} bits, takeover {takeover}");
        }
    }
    // No permessage-deflate, or the client role: the plain frame.
    let mut plain = Sender::new(Role::Server);
    assert_eq!(plain.shared_key(), None);
    assert_eq!(plain.admit_shared_compressed(key), Ok(false));
    let client = Sender::with_deflate(Role::Client, default_params(), Compression::default());
    assert_eq!(client.shared_key(), None);
    // After our close frame: an error, as for any data.
    let mut tx = Sender::with_deflate(Role::Server, default_params(), Compression::default());
    tx.close(None, "").unwrap();
    assert_eq!(tx.admit_shared_compressed(key), Err(Error::AlreadyClosed));
}

/// The check above is real: with context takeover, a message sent after a
/// shared frame that the compressor was not told of refers back across it
/// and the peer decodes something else (or fails).
#[test]
fn a_shared_frame_behind_the_compressors_back_breaks_takeover() {
    use wsmio::proto::Sender;
    let (msg, other) = (json(600, 8), json(600, 98));
    let p = params(false, false, 15, 15);
    let mut shared = Vec::new();
    let mut deflater = SharedKey::new(15).deflater(DeflateOptions::default());
    encode_shared_frame(Message::Binary(&other), &mut deflater, &mut shared).unwrap();
    let mut tx = Sender::with_deflate(Role::Server, p, Compression::default());
    let mut wire = Vec::new();
    tx.encode_message(Message::Binary(&msg), &mut wire).unwrap();
    wire.extend_from_slice(&shared);
    tx.encode_message(Message::Binary(&msg), &mut wire).unwrap();
    let mut client = conn(Role::Client, p, Limits::default());
    let mut got = Collector::default();
    let r = feed(&mut client, &wire, &[], &mut got);
    let want = vec![sent(false, &msg), sent(false, &other), sent(false, &msg)];
    assert!(r.is_err() || got.got != want);
}

// --------------------------------------------------------------- chunks

/// Chunked delivery of a compressed message: the inflated bytes in pieces
/// of at most 4 KiB, `first` on the first, `last` on an empty final chunk
/// (sent once the text is known to be complete).
#[test]
fn chunked_delivery_of_compressed_messages() {
    let msg = json(20_000, 4);
    let mut tx = conn(Role::Server, default_params(), Limits::default());
    tx.send(Message::Text(std::str::from_utf8(&msg).unwrap()))
        .unwrap();
    tx.send(Message::Text("")).unwrap();
    let mut wire = drain(&mut tx);
    let mut rx = conn(
        Role::Client,
        default_params(),
        limits(1 << 20, DeliveryMode::Chunks),
    );
    let mut chunks = Vec::new();
    rx.receive(&mut wire, |e| {
        if let Event::Chunk(c) = e {
            chunks.push((c.data.len(), c.first, c.last));
        }
    })
    .unwrap();
    let n = chunks.len();
    assert!(n > 5, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.0 <= 4096));
    assert!(chunks[0].1 && !chunks[0].2);
    assert_eq!(chunks[n - 2], (0, false, true));
    assert_eq!(chunks.iter().map(|c| c.0).sum::<usize>(), msg.len());
    // The empty message: one chunk, first and last.
    assert_eq!(chunks[n - 1], (0, true, true));
}
