//! Frames over real sockets: messages split across TCP writes at every byte,
//! pings inside fragmented messages, every close-code class, protocol
//! violations and size limits, each answered with the right close code and
//! then the end of the TCP connection.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use wsmio::proto::OpCode;
use wsmio::CloseCode;

/// A multi-byte UTF-8 text: 2-, 3- and 4-byte code points.
const TEXT: &str = "Grüße, 世界! 🎉 añb€c 𝄞 ok";

/// `TEXT` as three frames whose boundaries fall inside code points.
fn fragmented(c: &mut Client) -> Vec<u8> {
    let b = TEXT.as_bytes();
    // Byte 3 is inside "ü", 11 inside "世", 19 inside "🎉".
    for cut in [3, 11, 19] {
        assert!(!TEXT.is_char_boundary(cut));
    }
    let mut out = c.frame_bytes(OpCode::Text, false, &b[..3]);
    out.extend(c.frame_bytes(OpCode::Continuation, false, &b[3..11]));
    out.extend(c.frame_bytes(OpCode::Continuation, false, &b[11..19]));
    out.extend(c.frame_bytes(OpCode::Continuation, true, &b[19..]));
    out
}

fn pause() {
    thread::sleep(Duration::from_millis(2));
}

#[test]
fn fragmented_text_split_at_every_byte_boundary() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut c = Client::connect(addr);
    let bytes = fragmented(&mut c);
    for split in 1..bytes.len() {
        c.send_raw(&bytes[..split]);
        pause();
        c.send_raw(&bytes[split..]);
        assert_eq!(c.expect_text(), TEXT, "split at byte {split}");
    }
    // All boundaries at once: one byte per write.
    for b in &bytes {
        c.send_raw(std::slice::from_ref(b));
        thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(c.expect_text(), TEXT);
    drop(c);
    stop(&handle, join);
}

#[test]
fn extended_length_headers_split_at_every_byte() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut c = Client::connect(addr);
    // 16-bit and 64-bit length encodings, split inside the header and mask.
    for len in [126usize, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let frame = c.frame_bytes(OpCode::Binary, true, &payload);
        for split in 1..=14 {
            c.send_raw(&frame[..split]);
            pause();
            c.send_raw(&frame[split..]);
            assert_eq!(c.expect_binary(), payload, "len {len} split {split}");
        }
    }
    drop(c);
    stop(&handle, join);
}

#[test]
fn large_messages_round_trip_intact() {
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut c = Client::connect(addr);
    // Over the large-payload size: queued in a buffer of its own, written
    // over several flushes as the client reads.
    let big: Vec<u8> = (0..2_000_003u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    c.send_binary(&big);
    assert_eq!(c.expect_binary(), big);
    // Fragmented, in frames of uneven sizes.
    let text: String = TEXT.repeat(5_000);
    let b = text.as_bytes();
    let cuts = [0, 1, 70_000, 70_001, 150_000, b.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        c.send_frame(op, w[1] == b.len(), &b[w[0]..w[1]]);
    }
    assert_eq!(c.expect_text(), text);
    drop(c);
    stop(&handle, join);
}

#[test]
fn pings_inside_a_fragmented_message() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut c = Client::connect(addr);
    let b = TEXT.as_bytes();
    let mut frames = vec![c.frame_bytes(OpCode::Text, false, &b[..3])];
    frames.push(masked(0x89, b"first ping"));
    frames.push(c.frame_bytes(OpCode::Continuation, false, &b[3..11]));
    frames.push(masked(0x89, b""));
    frames.push(masked(0x8A, b"unsolicited pong"));
    frames.push(masked(0x89, &[7u8; 125]));
    frames.push(c.frame_bytes(OpCode::Continuation, true, &b[11..]));

    // Frame by frame, in separate writes.
    for f in &frames {
        c.send_raw(f);
        pause();
    }
    assert_eq!(c.next(), Ev::Pong(b"first ping".to_vec()));
    assert_eq!(c.next(), Ev::Pong(Vec::new()));
    assert_eq!(c.next(), Ev::Pong(vec![7u8; 125]));
    assert_eq!(c.expect_text(), TEXT);
    let id = wait_for(&events, TIMEOUT, |e| match e {
        SrvEv::Pong(id, p) if p == b"unsolicited pong" => Some(*id),
        _ => None,
    });

    // All in one write, and the ping payload split across writes.
    let all: Vec<u8> = frames.concat();
    c.send_raw(&all[..all.len() / 2]);
    pause();
    c.send_raw(&all[all.len() / 2..]);
    assert_eq!(c.next(), Ev::Pong(b"first ping".to_vec()));
    assert_eq!(c.next(), Ev::Pong(Vec::new()));
    assert_eq!(c.next(), Ev::Pong(vec![7u8; 125]));
    assert_eq!(c.expect_text(), TEXT);

    c.close(1000, "done");
    c.expect_close_then_eof(1000);
    drop(c);
    let (closed, info) = wait_close(&events);
    assert_eq!(closed, id);
    assert_eq!(info.code, CloseCode::NORMAL);
    assert!(info.clean && info.by_peer, "{info:?}");
    stop(&handle, join);
}

/// Open a connection, exchange one message, send `bytes`; the server must
/// answer with a close frame carrying `code` and then close TCP. Returns the
/// code the handler's `close` callback got.
fn violation(
    addr: SocketAddr,
    events: &mpsc::Receiver<SrvEv>,
    bytes: &[u8],
    code: Option<u16>,
) -> wsmio::CloseInfo {
    let mut c = Client::connect(addr);
    let id = wait_open(events);
    c.send_text("warm-up");
    assert_eq!(c.expect_text(), "warm-up");
    c.send_raw(bytes);
    assert_eq!(c.expect_close(), code, "after {bytes:02x?}");
    c.expect_eof();
    drop(c);
    let (closed, info) = wait_close(events);
    assert_eq!(closed, id);
    info
}

#[test]
fn close_codes_by_class() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());

    // Valid codes are echoed; the peer started the close.
    for code in [1000u16, 1001, 1003, 1011, 3000, 4999] {
        let info = violation(addr, &events, &close_frame(code, b"reason"), Some(code));
        assert_eq!(info.code, CloseCode(code));
        assert!(info.by_peer && info.clean, "{code}: {info:?}");
    }
    // An empty close is answered with an empty close; reported as 1005.
    let info = violation(addr, &events, &masked(0x88, b""), None);
    assert_eq!(info.code, CloseCode::NO_STATUS);
    assert!(info.by_peer && info.clean, "{info:?}");

    // Codes that may not appear on the wire: 1002.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let info = violation(addr, &events, &close_frame(code, b""), Some(1002));
        assert_eq!(info.code, CloseCode::PROTOCOL, "{code}");
        assert!(!info.by_peer && !info.clean, "{code}: {info:?}");
    }
    // A one-byte close body: 1002.
    let info = violation(addr, &events, &masked(0x88, &[0x03]), Some(1002));
    assert_eq!(info.code, CloseCode::PROTOCOL);
    // A reason that is not UTF-8: 1007.
    let info = violation(addr, &events, &close_frame(1000, b"ok\xff"), Some(1007));
    assert_eq!(info.code, CloseCode::INVALID_PAYLOAD);
    let info = violation(
        addr,
        &events,
        &close_frame(1000, b"cut \xe2\x82"),
        Some(1007),
    );
    assert_eq!(info.code, CloseCode::INVALID_PAYLOAD);

    stop(&handle, join);
}

#[test]
fn protocol_violations_fail_the_connection() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let c1002: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked text", raw_frame(0x81, b"hi", None)),
        ("unmasked ping", raw_frame(0x89, b"", None)),
        ("reserved opcode 3", masked(0x83, b"x")),
        ("reserved opcode 7", masked(0x87, b"")),
        ("reserved opcode 0xB", masked(0x8B, b"")),
        ("reserved opcode 0xF", masked(0x8F, b"x")),
        ("RSV1", masked(0xC1, b"x")),
        ("RSV2", masked(0xA1, b"x")),
        ("RSV3", masked(0x91, b"x")),
        ("RSV on ping", masked(0xC9, b"")),
        ("continuation first", masked(0x80, b"x")),
        (
            "new message inside a fragmented one",
            [masked(0x01, b"a"), masked(0x81, b"b")].concat(),
        ),
        ("fragmented ping", masked(0x09, b"")),
        ("control over 125", masked(0x89, &[0u8; 126])),
        ("non-minimal 16-bit length", {
            let mut f = vec![0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4];
            f.extend_from_slice(&[0; 5]);
            f
        }),
        ("64-bit length with the top bit", {
            vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]
        }),
    ];
    for (name, bytes) in &c1002 {
        let info = violation(addr, &events, bytes, Some(1002));
        assert_eq!(info.code, CloseCode::PROTOCOL, "{name}");
        assert!(!info.by_peer && !info.clean, "{name}: {info:?}");
    }
    let c1007: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 text", masked(0x81, b"abc\xffdef")),
        ("overlong encoding", masked(0x81, b"\xc0\xaf")),
        ("surrogate", masked(0x81, b"\xed\xa0\x80")),
        ("truncated code point", masked(0x81, b"ok \xe2\x82")),
        (
            "invalid UTF-8 across fragments",
            [masked(0x01, b"ok \xf0\x9f"), masked(0x80, b"\x41")].concat(),
        ),
        (
            "code point cut at the end of the last fragment",
            [masked(0x01, b"ok"), masked(0x80, b" \xf0\x9f\x8e")].concat(),
        ),
    ];
    for (name, bytes) in &c1007 {
        let info = violation(addr, &events, bytes, Some(1007));
        assert_eq!(info.code, CloseCode::INVALID_PAYLOAD, "{name}");
    }
    stop(&handle, join);
}

#[test]
fn invalid_utf8_is_caught_before_the_message_ends() {
    // RFC 6455 §8.1: fail as soon as the text is invalid, without waiting
    // for the rest of the message.
    let (echo, _events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut c = Client::connect(addr);
    c.send_raw(&masked(0x01, b"fine so far \xff"));
    assert_eq!(c.expect_close(), Some(1007));
    c.expect_eof();
    drop(c);
    stop(&handle, join);
}

#[test]
fn message_and_frame_size_limits_close_with_1009() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config().with_max_message_size(1024));

    // Exactly at the limit, in fragments: accepted.
    let mut c = Client::connect(addr);
    let exact = vec![b'a'; 1024];
    c.send_frame(OpCode::Text, false, &exact[..500]);
    c.send_frame(OpCode::Continuation, false, &exact[500..1000]);
    c.send_frame(OpCode::Continuation, true, &exact[1000..]);
    assert_eq!(c.expect_text().len(), 1024);
    drop(c);
    wait_close(&events);

    // 2000 bytes in four fragments: over the limit at the third.
    let big = [0x5au8; 500];
    let frames = [
        masked(0x02, &big),
        masked(0x00, &big),
        masked(0x00, &big),
        masked(0x80, &big),
    ]
    .concat();
    let info = violation(addr, &events, &frames, Some(1009));
    assert_eq!(info.code, CloseCode::TOO_BIG);
    // One frame announcing more than the limit: refused at its header.
    let info = violation(addr, &events, &masked(0x82, &[1u8; 2000]), Some(1009));
    assert_eq!(info.code, CloseCode::TOO_BIG);
    stop(&handle, join);

    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config().with_max_frame_size(512));
    // Frames at the limit make a bigger message: accepted.
    let mut c = Client::connect(addr);
    let msg = vec![9u8; 1500];
    c.send_frame(OpCode::Binary, false, &msg[..512]);
    c.send_frame(OpCode::Continuation, false, &msg[512..1024]);
    c.send_frame(OpCode::Continuation, true, &msg[1024..]);
    assert_eq!(c.expect_binary(), msg);
    drop(c);
    wait_close(&events);
    // One frame over it: 1009.
    let info = violation(addr, &events, &masked(0x82, &[1u8; 513]), Some(1009));
    assert_eq!(info.code, CloseCode::TOO_BIG);
    let info = violation(
        addr,
        &events,
        &[masked(0x01, b"start"), masked(0x80, &[b'x'; 600])].concat(),
        Some(1009),
    );
    assert_eq!(info.code, CloseCode::TOO_BIG);
    stop(&handle, join);
}
