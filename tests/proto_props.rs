//! Property tests of the sans-IO core (`wsmio::proto`).
//!
//! - Frames encoded with `EncodedHeader` (and masked, §5.3) come out of the
//!   `Receiver` as the messages that went in (§5.2, §5.4, §5.5); headers
//!   round-trip and the length-encoding rules of §5.2 hold at every boundary.
//! - Random client streams, valid and not, give what a plain reading of the
//!   RFC (`reference`) says: events, error, and the bytes sent back (pongs,
//!   close reply, failure close). Cutting the stream into reads anywhere
//!   changes none of it, and `DeliveryMode::Chunks` joins up to the same
//!   messages as `DeliveryMode::Messages`.
//! - `apply_mask` equals the RFC's byte loop; `Utf8Validator` equals
//!   `std::str::from_utf8` (§8.1) over any split, failing fast.
//! - At the end, fixed cases for defects found while writing these.
//!
//! Case counts keep the file at a few seconds in debug mode; the fuzz
//! targets in `fuzz/` go deeper.

use proptest::prelude::*;
use proptest::sample::select;

// The reference decoder is shared with the `connection` fuzz target.
#[path = "../fuzz/src/reference.rs"]
mod reference;
use reference::reference;

use wsmio::proto::frame::{decode_header, EncodedHeader, FrameHeader};
use wsmio::proto::mask::{apply_mask, apply_mask_reference};
use wsmio::proto::utf8::Utf8Validator;
use wsmio::proto::{
    Chunk, CloseCode, Connection, DeliveryMode, Error, Event, Limits, Message, OpCode,
    ReceiveHandler, Receiver, Role,
};

// ---------------------------------------------------------------------------
// Shared generators and helpers.

/// Bytes that are mostly valid UTF-8 (any code points, including 2/3/4-byte
/// ones), sometimes corrupted the ways real bad text is: a flipped byte, a
/// stray byte, a cut-off end, or a known-bad sequence (surrogate, overlong,
/// above U+10FFFF, lone continuation).
fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        3 => "[a-z é€𝄞]{0,40}",
        1 => any::<String>(),
    ]
    .prop_map(String::into_bytes);
    let bad: &[&[u8]] = &[
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xf4\x90\x80\x80",
        b"\x80",
        b"\xff",
        b"\xf0\x9d",
        b"\xce",
    ];
    let corruption = prop_oneof![
        4 => Just(None),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Some((0u8, i, vec![b]))),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Some((1u8, i, vec![b]))),
        1 => any::<prop::sample::Index>().prop_map(|i| Some((2u8, i, vec![]))),
        1 => (any::<prop::sample::Index>(), select(bad)).prop_map(|(i, s)| Some((1u8, i, s.to_vec()))),
    ];
    (text, corruption).prop_map(|(mut bytes, c)| {
        if let Some((kind, at, what)) = c {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] = what[0],
                0 | 1 => {
                    bytes.splice(i..i, what);
                }
                _ => bytes.truncate(i),
            }
        }
        bytes
    })
}

/// Sorted cut points for a buffer of `len` bytes, from arbitrary indices.
fn cuts_for(len: usize, raw: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|i| i.index(len + 1)).collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}

/// A masked (or, with `key == None`, unmasked) frame: header from
/// `EncodedHeader`, then the payload masked per RFC 6455 §5.3.
fn encode(fin: bool, opcode: OpCode, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let h = EncodedHeader::new(fin, opcode, key, payload.len() as u64);
    let mut out = h.as_bytes().to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        apply_mask_reference(&mut out[start..], k, 0);
    }
    out
}

/// Receiver events in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

#[derive(Default)]
struct Recorder {
    events: Vec<Ev>,
    /// `DeliveryMode::Chunks`: the open message.
    open: Option<(bool, Vec<u8>)>,
}

impl ReceiveHandler for Recorder {
    fn on_message(&mut self, msg: Message<'_>) {
        self.events.push(match msg {
            Message::Text(s) => Ev::Text(s.to_string()),
            Message::Binary(b) => Ev::Binary(b.to_vec()),
        });
    }
    fn on_chunk(&mut self, c: Chunk<'_>) {
        let (_, buf) = self.open.get_or_insert((c.text, Vec::new()));
        buf.extend_from_slice(c.data);
        if c.last {
            let (text, buf) = self.open.take().unwrap();
            self.events.push(if text {
                Ev::Text(String::from_utf8(buf).expect("text chunks are UTF-8"))
            } else {
                Ev::Binary(buf)
            });
        }
    }
    fn on_ping(&mut self, p: &[u8]) {
        self.events.push(Ev::Ping(p.to_vec()));
    }
    fn on_pong(&mut self, p: &[u8]) {
        self.events.push(Ev::Pong(p.to_vec()));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.events
            .push(Ev::Close(code.map(|c| c.0), reason.to_string()));
    }
}

// ---------------------------------------------------------------------------
// 1. Encode → decode round trip (RFC 6455 §5.2, §5.3, §5.4, §5.5).

/// A control frame to interleave: ping or pong with up to 125 bytes (§5.5).
fn control() -> impl Strategy<Value = (OpCode, Vec<u8>)> {
    (
        select(&[OpCode::Ping, OpCode::Pong][..]),
        prop::collection::vec(any::<u8>(), 0..=125),
    )
}

/// A data message, its fragment cut points, and control frames to put
/// between fragments (§5.4: control frames MAY be injected in the middle of
/// a fragmented message).
#[derive(Debug, Clone)]
struct DataMsg {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<usize>,
    controls: Vec<(prop::sample::Index, (OpCode, Vec<u8>))>,
}

fn data_msg() -> impl Strategy<Value = DataMsg> {
    let payload = prop_oneof![
        3 => (Just(true), "[a-z é€𝄞]{0,60}".prop_map(String::into_bytes)),
        3 => (Just(false), prop::collection::vec(any::<u8>(), 0..300)),
        // 16-bit and 64-bit extended lengths (§5.2).
        1 => (Just(false), (125usize..70_000).prop_map(|n| vec![0xA5; n])),
    ];
    (
        payload,
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        prop::collection::vec((any::<prop::sample::Index>(), control()), 0..3),
    )
        .prop_map(|((text, payload), raw_cuts, controls)| DataMsg {
            cuts: cuts_for(payload.len(), &raw_cuts),
            text,
            payload,
            controls,
        })
}

/// Encode one message as frames: the first carries the opcode, the others
/// are continuations, the last has FIN (§5.4).
fn encode_msg(m: &DataMsg, mut key: impl FnMut() -> Option<[u8; 4]>) -> (Vec<u8>, Vec<Ev>) {
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    let n_frames = m.cuts.len() - 1;
    let mut controls_at: Vec<(usize, &(OpCode, Vec<u8>))> = m
        .controls
        .iter()
        .map(|(i, c)| (i.index(n_frames.max(1)), c))
        .collect();
    controls_at.sort_by_key(|(i, _)| *i);
    for (f, w) in m.cuts.windows(2).enumerate() {
        let opcode = match (f, m.text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        let fin = f == n_frames - 1;
        wire.extend(encode(fin, opcode, key(), &m.payload[w[0]..w[1]]));
        if !fin {
            for (_, (op, p)) in controls_at.iter().filter(|(i, _)| *i == f) {
                wire.extend(encode(true, *op, key(), p));
                expect.push(if *op == OpCode::Ping {
                    Ev::Ping(p.clone())
                } else {
                    Ev::Pong(p.clone())
                });
            }
        }
    }
    expect.push(if m.text {
        Ev::Text(String::from_utf8(m.payload.clone()).unwrap())
    } else {
        Ev::Binary(m.payload.clone())
    });
    (wire, expect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// §5.2: every header field survives encode → decode, including the
    /// 7-bit / 16-bit / 64-bit length forms and their boundaries.
    #[test]
    fn header_round_trip(
        fin in any::<bool>(),
        opcode in select(&[OpCode::Continuation, OpCode::Text, OpCode::Binary][..]),
        key in any::<Option<[u8; 4]>>(),
        len in prop_oneof![0u64..=130, 65_530u64..=65_540, Just((1u64 << 63) - 1), 0u64..(1u64 << 63)],
    ) {
        let h = EncodedHeader::new(fin, opcode, key, len);
        let role = if key.is_some() { Role::Server } else { Role::Client };
        let decoded = decode_header(h.as_bytes(), role, 0).unwrap();
        prop_assert_eq!(
            decoded,
            FrameHeader { fin, rsv: 0, opcode, mask: key, payload_len: len }
        );
        let expected_len = 2
            + if len < 126 { 0 } else if len <= 0xFFFF { 2 } else { 8 }
            + if key.is_some() { 4 } else { 0 };
        prop_assert_eq!(h.as_bytes().len(), expected_len);
    }

    /// §5.2: "the minimal number of bytes MUST be used to encode the
    /// length" and a 64-bit length has its most significant bit clear; a
    /// length over the configured maximum closes with 1009 before any
    /// payload is read. Checked on headers alone, with lengths at every
    /// boundary, in every encoding.
    #[test]
    fn length_encoding_rules(
        n in prop_oneof![
            select(&[0u64, 1, 124, 125, 126, 127, 65534, 65535, 65536, 65537,
                     (1 << 63) - 1, 1 << 63, u64::MAX][..]),
            any::<u64>(),
            0u64..70_000,
        ],
        form in 0u8..3,
        max_frame in select(&[0u64, 125, 126, 65535, 65536, (1 << 63) - 1, u64::MAX][..]),
        key in any::<[u8; 4]>(),
    ) {
        let mut wire = vec![0x82];
        let fits7 = n < 126;
        match form {
            0 if fits7 => wire.push(0x80 | n as u8),
            0 | 1 if n <= 0xFFFF => {
                wire.push(0x80 | 126);
                wire.extend((n as u16).to_be_bytes());
            }
            _ => {
                wire.push(0x80 | 127);
                wire.extend(n.to_be_bytes());
            }
        }
        wire.extend(key);
        let expect = match wire[1] & 0x7F {
            126 if n < 126 => Err(Error::NonMinimalLength),
            127 if n >> 63 != 0 => Err(Error::LengthOverflow),
            127 if n < 65536 => Err(Error::NonMinimalLength),
            _ if n > max_frame => Err(Error::FrameTooBig),
            _ => Ok(()),
        };
        let limits = Limits { max_frame_size: max_frame, max_message_size: u64::MAX, ..Limits::default() };
        let mut rx = Receiver::new(Role::Server);
        let mut rec = Recorder::default();
        prop_assert_eq!(rx.receive(&mut wire.clone(), &limits, &mut rec), expect);
        // The same, one byte at a time.
        let mut rx = Receiver::new(Role::Server);
        let mut r = Ok(());
        for b in &wire {
            r = r.and(rx.receive(&mut [*b], &limits, &mut rec));
        }
        prop_assert_eq!(r, expect);
        // No payload byte arrived: nothing is delivered (but an empty
        // frame is a whole, empty message, once per run).
        let empty = vec![Ev::Binary(Vec::new()); 2];
        prop_assert_eq!(&rec.events[..], if n == 0 && expect.is_ok() { &empty[..] } else { &[] });
    }

    /// Messages (single-frame or fragmented, with pings and pongs between
    /// the fragments) come out of the receiver unchanged, whether masked
    /// (server role, §5.1) or not (client role), and in both delivery modes.
    #[test]
    fn frames_round_trip(
        msgs in prop::collection::vec(data_msg(), 1..4),
        masked in any::<bool>(),
        keys in any::<[u8; 32]>(),
        chunks in any::<bool>(),
        close in prop::option::of((select(&[1000u16, 1001, 1011, 3000, 4999][..]), "[a-zé]{0,20}")),
    ) {
        let mut k = 0usize;
        let mut key = || {
            k += 1;
            masked.then(|| [keys[k % 32], keys[(k + 7) % 32], keys[(k + 13) % 32], keys[(k + 29) % 32]])
        };
        let mut wire = Vec::new();
        let mut expect = Vec::new();
        for m in &msgs {
            let (w, e) = encode_msg(m, &mut key);
            wire.extend(w);
            expect.extend(e);
        }
        // §5.5.1: a close frame with a code and a UTF-8 reason.
        if let Some((code, reason)) = &close {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            wire.extend(encode(true, OpCode::Close, key(), &body));
            expect.push(Ev::Close(Some(*code), reason.clone()));
        }
        let role = if masked { Role::Server } else { Role::Client };
        let limits = Limits {
            delivery: if chunks { DeliveryMode::Chunks } else { DeliveryMode::Messages },
            ..Limits::default()
        };
        let mut rx = Receiver::new(role);
        let mut rec = Recorder::default();
        prop_assert_eq!(rx.receive(&mut wire, &limits, &mut rec), Ok(()));
        prop_assert_eq!(rec.events, expect);
        prop_assert_eq!(rx.is_done(), close.is_some());
        prop_assert!(!rx.is_mid_message());
    }
}

// ---------------------------------------------------------------------------
// 2. Random valid and invalid client streams: against a reference decoder,
//    and invariant under how the stream is cut into reads.

/// One item of a client's byte stream, valid or not.
#[derive(Debug, Clone)]
enum Item {
    /// A data message, possibly fragmented, with controls interleaved.
    Data(DataMsg),
    /// Text that may be invalid UTF-8 (§8.1: close 1007).
    RawText(Vec<u8>, Vec<usize>),
    /// Ping or pong; payloads over 125 bytes violate §5.5.
    Control(OpCode, Vec<u8>),
    /// A close frame: code (valid or not, §7.4) and reason bytes (UTF-8 or
    /// not), or a 1-byte body (§5.5.1: invalid), or no body.
    Close(Option<u16>, Vec<u8>, bool),
    /// A frame with raw first byte (RSV bits, reserved opcodes, stray
    /// continuations, fragmented controls), mask choice (§5.1) and length
    /// encoding (§5.2: 0 minimal, 1 forced 16-bit, 2 forced 64-bit, 3 64-bit
    /// with the most significant bit set). `declared` overrides the length
    /// in the header (the bytes after it are then read as payload).
    Raw {
        b0: u8,
        masked: bool,
        payload: Vec<u8>,
        len_form: u8,
        declared: Option<u64>,
    },
}

fn item() -> impl Strategy<Value = Item> {
    let close_code = prop_oneof![
        select(
            &[
                1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000,
                4000, 4999
            ][..]
        ),
        select(&[0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535][..]),
        any::<u16>(),
    ];
    let raw_b0 = prop_oneof![
        // RSV bits on a normal frame.
        (
            1u8..8,
            select(&[0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA][..]),
            any::<bool>()
        )
            .prop_map(|(rsv, op, fin)| (if fin { 0x80 } else { 0 }) | (rsv << 4) | op),
        // Reserved opcodes 3-7 and B-F.
        (
            select(&[3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF][..]),
            any::<bool>()
        )
            .prop_map(|(op, fin)| (if fin { 0x80 } else { 0 }) | op),
        // Fragmented control frames, stray continuations, open fragments.
        select(&[0x09u8, 0x0A, 0x08, 0x00, 0x80, 0x01, 0x02][..]),
        any::<u8>(),
    ];
    prop_oneof![
        8 => data_msg().prop_map(Item::Data),
        3 => (utf8ish(), prop::collection::vec(any::<prop::sample::Index>(), 0..3))
            .prop_map(|(b, c)| { let cuts = cuts_for(b.len(), &c); Item::RawText(b, cuts) }),
        3 => (select(&[OpCode::Ping, OpCode::Pong][..]), prop_oneof![
            6 => prop::collection::vec(any::<u8>(), 0..=125),
            1 => prop::collection::vec(any::<u8>(), 126..200),
        ]).prop_map(|(op, p)| Item::Control(op, p)),
        1 => (prop::option::of(close_code), utf8ish(), any::<bool>())
            .prop_map(|(c, r, one)| Item::Close(c, r, one)),
        1 => (
            raw_b0,
            prop::bool::weighted(0.8),
            prop::collection::vec(any::<u8>(), 0..20),
            prop_oneof![3 => Just(0u8), 1 => 1u8..4],
            prop::option::weighted(0.3, select(&[
                125u64, 126, 127, 65535, 65536, 65537, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX,
            ][..])),
        )
            .prop_map(|(b0, masked, payload, len_form, declared)| Item::Raw {
                b0, masked, payload, len_form, declared,
            }),
    ]
}

fn encode_items(items: &[Item], key: [u8; 4]) -> Vec<u8> {
    let k = Some(key);
    let mut wire = Vec::new();
    for it in items {
        match it {
            Item::Data(m) => wire.extend(encode_msg(m, || k).0),
            Item::RawText(b, cuts) => {
                let n = cuts.len() - 1;
                for (f, w) in cuts.windows(2).enumerate() {
                    let op = if f == 0 {
                        OpCode::Text
                    } else {
                        OpCode::Continuation
                    };
                    wire.extend(encode(f == n - 1, op, k, &b[w[0]..w[1]]));
                }
            }
            Item::Control(op, p) => wire.extend(encode(true, *op, k, p)),
            Item::Close(code, reason, one_byte) => {
                let body = match (code, one_byte) {
                    (_, true) => vec![0x03],
                    (None, false) => Vec::new(),
                    (Some(c), false) => {
                        let mut b = c.to_be_bytes().to_vec();
                        b.extend(reason.iter().take(123));
                        b
                    }
                };
                wire.extend(encode(true, OpCode::Close, k, &body));
            }
            Item::Raw {
                b0,
                masked,
                payload,
                len_form,
                declared,
            } => {
                let n = declared.unwrap_or(payload.len() as u64);
                let m = if *masked { 0x80 } else { 0 };
                let mut f = match len_form {
                    1 => [&[*b0, m | 126][..], &(n as u16).to_be_bytes()].concat(),
                    2 => [&[*b0, m | 127][..], &n.to_be_bytes()].concat(),
                    3 => [&[*b0, m | 127][..], &(n | 1 << 63).to_be_bytes()].concat(),
                    _ => {
                        let h = EncodedHeader::new(true, OpCode::Binary, None, n);
                        [&[*b0, m | h.as_bytes()[1]][..], &h.as_bytes()[2..]].concat()
                    }
                };
                let start = f.len() + if *masked { 4 } else { 0 };
                if *masked {
                    f.extend_from_slice(&key);
                }
                f.extend_from_slice(payload);
                if *masked {
                    apply_mask_reference(&mut f[start..], key, 0);
                }
                wire.extend(f);
            }
        }
    }
    wire
}

fn limits() -> impl Strategy<Value = Limits> {
    let size = prop_oneof![
        Just(0u64),
        Just(1),
        Just(16),
        Just(125),
        Just(126),
        Just(300),
        Just(4096),
        Just(wsmio::proto::limits::DEFAULT_MAX_MESSAGE_SIZE),
        Just(u64::MAX),
    ];
    let big = Just(wsmio::proto::limits::DEFAULT_MAX_MESSAGE_SIZE);
    (
        prop_oneof![3 => big, 1 => size.clone()],
        prop_oneof![3 => big, 1 => size],
    )
        .prop_map(|(max_frame_size, max_message_size)| Limits {
            max_frame_size,
            max_message_size,
            delivery: DeliveryMode::Messages,
        })
}

/// What one run produced: events (Debug strings; chunks joined into the
/// message they make up), the first error, the output, and the end state.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    events: Vec<String>,
    result: Result<(), Error>,
    output: Vec<u8>,
    read_closed: bool,
    close_sent: bool,
}

fn run(limits: Limits, stream: &[u8], cuts: &[usize]) -> Run {
    let mut conn = Connection::new(Role::Server, limits);
    let mut events = Vec::new();
    let mut open: Option<(bool, Vec<u8>)> = None;
    let mut result = Ok(());
    let mut output = Vec::new();
    for w in cuts.windows(2) {
        let mut read = stream[w[0]..w[1]].to_vec();
        let r = conn.receive(&mut read, |e| match e {
            Event::Chunk(c) => {
                assert_eq!(c.first, open.is_none(), "first chunk flag: {c:?}");
                let (_, buf) = open.get_or_insert((c.text, Vec::new()));
                buf.extend_from_slice(c.data);
                if c.last {
                    let (text, buf) = open.take().unwrap();
                    let msg = if text {
                        Message::Text(std::str::from_utf8(&buf).expect("text is UTF-8"))
                    } else {
                        Message::Binary(&buf)
                    };
                    events.push(format!("{:?}", Event::Message(msg)));
                }
            }
            e => events.push(format!("{e:?}")),
        });
        match (&result, r) {
            (Ok(()), r) => result = r,
            (Err(_), Err(e)) => panic!("second error {e:?} after {result:?}"),
            (Err(_), Ok(())) => {}
        }
        output.extend_from_slice(conn.output());
        conn.consume_output(conn.output().len());
    }
    Run {
        events,
        result,
        output,
        read_closed: conn.is_read_closed(),
        close_sent: conn.close_state().close_sent(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A client stream fed whole gives what `reference` says; fed in
    /// random reads or byte by byte it gives the same events, result,
    /// output and state; chunk delivery joins up to the same messages
    /// (§5.4: a message is the concatenation of its fragments, however
    /// they arrive). Small limits make the 1009 paths common.
    #[test]
    fn chunking_invariance(
        items in prop::collection::vec(item(), 0..10),
        key in any::<[u8; 4]>(),
        limits in limits(),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        truncate in prop::option::weighted(0.2, any::<prop::sample::Index>()),
    ) {
        let mut stream = encode_items(&items, key);
        if let Some(t) = truncate {
            // A stream that stops mid-frame.
            stream.truncate(t.index(stream.len() + 1));
        }
        let whole = run(limits, &stream, &[0, stream.len()]);
        let (events, result, output) = reference(&stream, limits);
        prop_assert_eq!(&whole.events, &events);
        prop_assert_eq!(whole.result, result);
        prop_assert_eq!(&whole.output, &output);
        let split = run(limits, &stream, &cuts_for(stream.len(), &raw_cuts));
        prop_assert_eq!(&split, &whole);
        let chunked_limits = Limits { delivery: DeliveryMode::Chunks, ..limits };
        let chunked = run(chunked_limits, &stream, &cuts_for(stream.len(), &raw_cuts));
        prop_assert_eq!(&chunked, &whole);
        if stream.len() <= 2_000 {
            let bytewise: Vec<usize> = (0..=stream.len()).collect();
            prop_assert_eq!(&run(limits, &stream, &bytewise), &whole);
            prop_assert_eq!(&run(chunked_limits, &stream, &bytewise), &whole);
        }
        // Reading stops after a failure or the peer's close frame, and
        // either way our close frame has been queued (§5.5.1, §7.1.7).
        let closing = whole.result.is_err()
            || events.last().is_some_and(|e| e.starts_with("Close"));
        prop_assert_eq!(whole.read_closed, closing);
        prop_assert_eq!(whole.close_sent, closing);
    }
}

// ---------------------------------------------------------------------------
// 3. Masking (RFC 6455 §5.3).

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The fast path equals the reference byte loop for any buffer, key,
    /// starting phase, and split of the buffer into calls.
    #[test]
    fn mask_matches_reference(
        buf in prop::collection::vec(any::<u8>(), 0..600),
        key in any::<[u8; 4]>(),
        phase in 0usize..8,
        offset in 0usize..8,
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        // `offset` shifts the slice start, so alignment varies too.
        let offset = offset.min(buf.len());
        let mut expect = buf.clone();
        let end = apply_mask_reference(&mut expect[offset..], key, phase);
        prop_assert_eq!(end, (phase + buf.len() - offset) & 3);

        let mut got = buf.clone();
        let mut p = phase;
        for w in cuts_for(buf.len() - offset, &raw_cuts).windows(2) {
            p = apply_mask(&mut got[offset + w[0]..offset + w[1]], key, p);
        }
        prop_assert_eq!(p, end);
        prop_assert_eq!(got, expect);
    }
}

// ---------------------------------------------------------------------------
// 4. Incremental UTF-8 validation (RFC 6455 §8.1).

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Fed in random chunks, the validator agrees with `from_utf8` on the
    /// whole, and fails exactly when the bytes so far can no longer start
    /// valid UTF-8 (fail fast).
    #[test]
    fn utf8_validator_matches_std(
        bytes in prop_oneof![4 => utf8ish(), 1 => prop::collection::vec(any::<u8>(), 0..40)],
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut v = Utf8Validator::new();
        let mut ok = true;
        for w in cuts_for(bytes.len(), &raw_cuts).windows(2) {
            ok = v.feed(&bytes[w[0]..w[1]]).is_ok();
            let dead = matches!(std::str::from_utf8(&bytes[..w[1]]), Err(e) if e.error_len().is_some());
            prop_assert_eq!(ok, !dead, "after {}..{}", w[0], w[1]);
            if !ok {
                break;
            }
        }
        if ok {
            ok = v.finish().is_ok();
        }
        prop_assert_eq!(ok, std::str::from_utf8(&bytes).is_ok());
    }
}

// ---------------------------------------------------------------------------
// Fixed cases for defects found while writing the properties above.

/// `Chunk::first` is documented as "First chunk of its message", but when a
/// message starts with an empty non-final frame, the first chunk of the next
/// (non-empty) frame is reported with `first: true` again
/// (src/proto/receiver.rs, the `first` computation in `payload`). RFC 6455
/// §5.4 allows empty fragments, so a streaming consumer that starts a new
/// message on `first` would see two message starts.
#[test]
fn chunk_first_flag_only_on_first_chunk() {
    let limits = Limits {
        delivery: DeliveryMode::Chunks,
        ..Limits::default()
    };
    let key = Some([1, 2, 3, 4]);
    let mut wire = encode(false, OpCode::Text, key, b"");
    wire.extend(encode(false, OpCode::Continuation, key, b"abc"));
    wire.extend(encode(true, OpCode::Continuation, key, b"def"));
    let mut conn = Connection::new(Role::Server, limits);
    let mut flags = Vec::new();
    conn.receive(&mut wire, |e| {
        if let Event::Chunk(c) = e {
            flags.push((c.data.to_vec(), c.first, c.last));
        }
    })
    .unwrap();
    let firsts = flags.iter().filter(|f| f.1).count();
    assert_eq!(firsts, 1, "chunks (data, first, last): {flags:?}");
}

/// `Connection::consume_output` clamps `n` to what is queued, but computes
/// `out_pos + n` first, which overflows for large `n` when part of the output
/// was already consumed (src/proto/connection.rs, `consume_output`): a panic
/// in debug builds, and in release the cursor wraps backwards so already
/// written bytes are offered again.
#[test]
fn consume_output_clamps_large_counts() {
    let mut conn = Connection::new(Role::Server, Limits::default());
    conn.ping(b"abc").unwrap();
    conn.consume_output(1);
    conn.consume_output(usize::MAX);
    assert!(conn.output().is_empty());
}

/// The reassembly buffer's capacity stays within what the limits allow it
/// to hold (the message plus one control frame split across reads), however
/// the message arrives: with `Vec`'s plain doubling a message at the limit,
/// fed fragment by fragment, could take nearly twice the limit in memory.
#[test]
fn reassembly_memory_stays_within_the_limit() {
    const MAX: usize = 1000;
    let limits = Limits {
        max_message_size: MAX as u64,
        ..Limits::default()
    };
    let key = Some([9, 8, 7, 6]);
    let body: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    let mut rx = Receiver::new(Role::Server);
    let mut rec = Recorder::default();
    for (i, part) in body.chunks(90).enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        let last = (i + 1) * 90 >= MAX;
        let mut wire = encode(last, op, key, part);
        if i == 10 {
            // A ping split across two reads, between two fragments.
            wire.extend(encode(true, OpCode::Ping, key, &[b'p'; 125]));
            let mut tail = wire.split_off(wire.len() - 60);
            rx.receive(&mut wire, &limits, &mut rec).unwrap();
            assert!(
                rx.buffer_capacity() <= MAX + 125,
                "{}",
                rx.buffer_capacity()
            );
            wire = std::mem::take(&mut tail);
        }
        rx.receive(&mut wire, &limits, &mut rec).unwrap();
        assert!(
            rx.buffer_capacity() <= MAX + 125,
            "{}",
            rx.buffer_capacity()
        );
    }
    assert_eq!(
        rec.events,
        vec![Ev::Ping(vec![b'p'; 125]), Ev::Binary(body)]
    );
}
