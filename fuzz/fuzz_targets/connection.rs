//! The whole server side on arbitrary bytes: the opening handshake
//! (`HeadBuffer`, `parse_request`, `validate_upgrade`), then the frame
//! stream through `proto::Connection::receive` (server role), with the
//! application sending, pinging and closing between reads.
//!
//! Input layout: `flags, max_message, max_frame, read_seed, action_seed`,
//! then the bytes the client sends. Flags: bit 0 prepends a valid handshake
//! unless the input starts with `GET ` (so the frame parser is reached
//! most of the time), bit 1 selects `DeliveryMode::Chunks`, bit 2 lets the
//! application start the close handshake.
//!
//! Properties: no panic; events and the error are those of the plain RFC
//! reading in `src/reference.rs`; the receiver's buffer stays bounded by
//! the limits; every Text message (or the concatenation of a text message's chunks) is
//! UTF-8 (§8.1); nothing is reported after the close frame or a failure; and
//! the output is exactly the frames the RFC calls for, in order: our own
//! sends, a pong echoing each ping (§5.5.2), the close reply echoing the
//! peer's code (§5.5.1), or a close with the failure's code (§7.1.7) — each
//! close code valid on the wire (§7.4.1), at most one close frame, and
//! nothing after it (§5.5.1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmio::proto::frame::{decode_header, header_len};
use wsmio::proto::handshake::{parse_request, validate_upgrade, HeadBuffer, HeadLimits};
use wsmio::proto::{CloseCode, Connection, DeliveryMode, Error, Event, Limits, Message, OpCode, Role};
use wsmio_fuzz::reference::reference;

const HANDSHAKE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sizes the fuzzer picks from: around the 125-byte control limit, the
/// 7/16/64-bit length boundaries, the 4 KiB retained buffer, and the
/// overflow-prone maximum.
const SIZES: [u64; 12] = [
    0,
    1,
    2,
    16,
    125,
    126,
    1000,
    4096,
    65535,
    65536,
    16 << 20,
    u64::MAX,
];

/// A tiny xorshift stream, so one input byte decides many choices.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// One frame as it should appear (or did appear) in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    opcode: OpCode,
    payload: Vec<u8>,
}

/// Parse the server's output: unmasked frames (§5.1), each valid (§5.2).
fn parse_output(mut wire: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        assert!(wire.len() >= 2, "truncated header in output");
        let hl = header_len(wire[1]);
        assert!(wire.len() >= hl, "truncated header in output");
        // Role::Client: what a client accepts (unmasked, minimal lengths).
        let h = decode_header(&wire[..hl], Role::Client, 0).expect("invalid frame in output");
        assert!(h.fin, "the server only sends whole messages here");
        let end = hl + h.payload_len as usize;
        assert!(wire.len() >= end, "truncated payload in output");
        frames.push(Frame {
            opcode: h.opcode,
            payload: wire[hl..end].to_vec(),
        });
        wire = &wire[end..];
    }
    frames
}

fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut p = code.0.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// What the test expects, tracked from the events (the model of §5.5, §7).
#[derive(Default)]
struct Model {
    /// Events as `Debug` strings, a chunked message joined into one
    /// `Message` event, for comparison with `reference`.
    events: Vec<String>,
    /// The first error `receive` returned.
    result: Option<Error>,
    expected: Vec<Frame>,
    close_sent: bool,
    read_closed: bool,
    /// Chunks mode: the open message's bytes and type.
    chunks: Option<(bool, Vec<u8>)>,
}

impl Model {
    fn event(&mut self, e: Event<'_>) {
        assert!(!self.read_closed, "event after close or failure: {e:?}");
        match e {
            Event::Message(m) => {
                if let Message::Text(s) = m {
                    // RFC 6455 §8.1: only valid UTF-8 is delivered as text.
                    assert!(std::str::from_utf8(s.as_bytes()).is_ok());
                }
                self.events.push(format!("{e:?}"));
            }
            Event::Chunk(c) => {
                // `first` marks exactly the first chunk of each message.
                assert_eq!(c.first, self.chunks.is_none(), "{c:?}");
                let (text, buf) = self.chunks.get_or_insert_with(|| (c.text, Vec::new()));
                assert_eq!(*text, c.text, "chunk type changed within a message");
                buf.extend_from_slice(c.data);
                if c.last {
                    let (text, buf) = self.chunks.take().unwrap();
                    let msg = if text {
                        Message::Text(std::str::from_utf8(&buf).expect("text chunks join to UTF-8"))
                    } else {
                        Message::Binary(&buf)
                    };
                    self.events.push(format!("{:?}", Event::Message(msg)));
                }
            }
            Event::Ping(p) => {
                self.events.push(format!("{e:?}"));
                // RFC 6455 §5.5: at most 125 bytes; §5.5.2: pong echoes it.
                assert!(p.len() <= 125);
                if !self.close_sent {
                    self.expected.push(Frame {
                        opcode: OpCode::Pong,
                        payload: p.to_vec(),
                    });
                }
            }
            Event::Pong(p) => {
                self.events.push(format!("{e:?}"));
                assert!(p.len() <= 125);
            }
            Event::Close { code, reason } => {
                self.events.push(format!("{e:?}"));
                if let Some(c) = code {
                    assert!(c.is_valid_on_wire());
                }
                assert!(reason.len() <= 123);
                // RFC 6455 §5.5.1: reply, echoing the code, unless ours was
                // sent already.
                if !self.close_sent {
                    self.expected.push(Frame {
                        opcode: OpCode::Close,
                        payload: code.map_or(Vec::new(), |c| close_payload(c, "")),
                    });
                    self.close_sent = true;
                }
                self.read_closed = true;
            }
        }
    }

    fn failed(&mut self, e: Error) {
        assert!(!self.read_closed, "error after close or failure: {e:?}");
        self.result = Some(e);
        // RFC 6455 §7.1.7: fail with the code for the violation.
        if !self.close_sent {
            self.expected.push(Frame {
                opcode: OpCode::Close,
                payload: close_payload(e.close_code(), e.reason()),
            });
            self.close_sent = true;
        }
        self.read_closed = true;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (flags, max_message, max_frame) = (data[0], data[1], data[2]);
    let mut reads = Rng(u32::from(data[3]) | 0x100);
    let mut actions = Rng(u32::from(data[4]) | 0x100);
    let read_max = if data[3] == 0 {
        usize::MAX
    } else {
        1 + data[3] as usize % 64
    };
    let mut stream = Vec::new();
    if flags & 1 != 0 && !data[5..].starts_with(b"GET ") {
        stream.extend_from_slice(HANDSHAKE);
    }
    stream.extend_from_slice(&data[5..]);
    let limits = Limits {
        max_message_size: SIZES[max_message as usize % SIZES.len()],
        max_frame_size: SIZES[max_frame as usize % SIZES.len()],
        delivery: if flags & 2 != 0 {
            DeliveryMode::Chunks
        } else {
            DeliveryMode::Messages
        },
    };
    // The reassembly buffer holds at most one message plus one control
    // frame's payload; `Vec` growth may double that.
    let bound = (limits.max_message_size.min(1 << 40) as usize + 125)
        .saturating_mul(2)
        .max(4096 + 256);

    // Cut the stream into reads.
    let mut cuts = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let n = (1 + reads.next() as usize % read_max.min(1 << 20)).min(stream.len() - pos);
        cuts.push(pos..pos + n);
        pos += n;
    }

    // The handshake.
    let head_limits = HeadLimits::default();
    let mut hb = HeadBuffer::new();
    let mut cuts = cuts.into_iter();
    let head_len = loop {
        let Some(r) = cuts.next() else { return };
        match hb.push(&stream[r], head_limits.max_head_size) {
            Ok(Some(n)) => break n,
            Ok(None) => {}
            Err(rej) => {
                assert_eq!(rej.status, 431);
                return;
            }
        }
    };
    let (head, first) = hb.split_off_rest(head_len);
    let Ok(req) = parse_request(&head, &head_limits) else {
        return;
    };
    if validate_upgrade(&req).is_err() {
        return;
    }

    // The frame stream: the bytes after the head, then the other reads.
    let mut conn = Connection::new(Role::Server, limits);
    let mut model = Model::default();
    let mut wire = Vec::new();
    let mut reads: Vec<Vec<u8>> = vec![first];
    reads.extend(cuts.map(|r| stream[r].to_vec()));
    let frames_in = reads.concat();
    for mut read in reads {
        // The application acts between reads.
        let can_send = !model.close_sent;
        match actions.next() % 8 {
            0 => {
                let r = conn.send(Message::Text("srv é"));
                assert_eq!(r.is_ok(), can_send, "{r:?}");
                if r.is_ok() {
                    model.expected.push(Frame {
                        opcode: OpCode::Text,
                        payload: "srv é".into(),
                    });
                }
            }
            1 => {
                let r = conn.send(Message::Binary(&[0, 1, 2]));
                assert_eq!(r.is_ok(), can_send, "{r:?}");
                if r.is_ok() {
                    model.expected.push(Frame {
                        opcode: OpCode::Binary,
                        payload: vec![0, 1, 2],
                    });
                }
            }
            2 => {
                let r = conn.ping(b"hb");
                assert_eq!(r.is_ok(), can_send, "{r:?}");
                if r.is_ok() {
                    model.expected.push(Frame {
                        opcode: OpCode::Ping,
                        payload: b"hb".to_vec(),
                    });
                }
            }
            3 if flags & 4 != 0 => {
                let r = conn.close(Some(CloseCode::GOING_AWAY), "bye");
                // RFC 6455 §5.5.1: never a second close frame.
                assert_eq!(r.is_ok(), can_send, "{r:?}");
                if r.is_ok() {
                    model.expected.push(Frame {
                        opcode: OpCode::Close,
                        payload: close_payload(CloseCode::GOING_AWAY, "bye"),
                    });
                    model.close_sent = true;
                }
            }
            _ => {}
        }

        let r = conn.receive(&mut read, |e| model.event(e));
        if let Err(e) = r {
            assert!(e.close_code().is_valid_on_wire());
            model.failed(e);
        }
        assert_eq!(conn.is_read_closed(), model.read_closed);
        assert_eq!(conn.close_state().close_sent(), model.close_sent);
        let cap = conn.receiver().buffer_capacity();
        assert!(cap <= bound, "buffer capacity {cap} over {bound}");

        // Drain part of the output (the cursor must keep the rest).
        let out = conn.output();
        let n = actions.next() as usize % (out.len() + 1);
        wire.extend_from_slice(&out[..n]);
        conn.consume_output(n);
    }
    let n = conn.output().len();
    wire.extend_from_slice(conn.output());
    conn.consume_output(n);
    assert!(conn.output().is_empty());

    let frames = parse_output(&wire);
    for f in &frames {
        if f.opcode == OpCode::Close && f.payload.len() >= 2 {
            let code = CloseCode(u16::from_be_bytes([f.payload[0], f.payload[1]]));
            assert!(code.is_valid_on_wire(), "sent close code {code}");
        }
    }
    let closes = frames.iter().filter(|f| f.opcode == OpCode::Close).count();
    assert!(closes <= 1, "{closes} close frames sent");
    if let Some(i) = frames.iter().position(|f| f.opcode == OpCode::Close) {
        assert_eq!(i, frames.len() - 1, "frames after the close frame");
    }
    assert_eq!(frames, model.expected);

    // What a plain reading of RFC 6455 says the peer's bytes amount to
    // (its output assumes we send nothing; ours is checked above).
    let (events, result, _) = reference(&frames_in, limits);
    assert_eq!(model.events, events);
    assert_eq!(model.result.map_or(Ok(()), Err), result);
});
