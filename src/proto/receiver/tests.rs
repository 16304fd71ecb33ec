//! Tests of `proto::receiver`: control frames between fragments fed byte by
//! byte, the state's size, and whole messages delivered without a copy.

use super::*;
use crate::proto::frame::EncodedHeader;

/// A masked client frame.
fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [7, 1, 9, 3];
    let mut f = EncodedHeader::new(fin, opcode, Some(key), payload.len() as u64)
        .as_bytes()
        .to_vec();
    let start = f.len();
    f.extend_from_slice(payload);
    apply_mask(&mut f[start..], key, 0);
    f
}

#[derive(Default)]
struct Seen(Vec<String>);

impl ReceiveHandler for Seen {
    fn on_message(&mut self, msg: Message<'_>) {
        self.0.push(format!("{msg:?}"));
    }
    fn on_ping(&mut self, payload: &[u8]) {
        self.0.push(format!("ping {payload:?}"));
    }
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.0.push(format!("close {code:?} {reason}"));
    }
}

/// A fragmented message with a ping between its fragments, fed one byte
/// per read: the ping's payload and the message's bytes are collected
/// in their own buffers, and nothing is held once the message is out.
#[test]
fn control_frames_between_fragments_byte_by_byte() {
    let mut wire = masked(false, OpCode::Text, "Hé".as_bytes());
    wire.extend(masked(true, OpCode::Ping, b"are you there"));
    wire.extend(masked(false, OpCode::Continuation, b""));
    wire.extend(masked(true, OpCode::Continuation, "llo".as_bytes()));
    wire.extend(masked(true, OpCode::Binary, &[1, 2, 3]));
    wire.extend(masked(true, OpCode::Close, b"\x03\xe8bye"));
    let mut rx = Receiver::new(Role::Server);
    let mut seen = Seen::default();
    for b in wire.iter_mut() {
        rx.receive(std::slice::from_mut(b), &Limits::default(), &mut seen)
            .unwrap();
    }
    assert_eq!(
        seen.0,
        [
            format!("ping {:?}", b"are you there"),
            "Text(\"Héllo\")".into(),
            "Binary([1, 2, 3])".into(),
            "close Some(CloseCode(1000)) bye".into(),
        ]
    );
    assert!(rx.is_done());
    assert_eq!((rx.buffered(), rx.buffer_capacity()), (0, 0));
    assert!(rx.partial.is_none());
}

/// RFC 6455 §5.2: without a negotiated extension RSV1 is a reserved
/// bit like the others, on every frame, whole header or split; with
/// permessage-deflate it is allowed on a message's first frame only
/// (RFC 7692 §6).
#[test]
fn rsv1_without_and_with_deflate() {
    let frames: [(u8, Error); 4] = [
        (0xC1, Error::ReservedBits),
        (0xC2, Error::ReservedBits),
        (0xC9, Error::ReservedBits),
        (0xC0, Error::ReservedBits),
    ];
    for (b0, want) in frames {
        for split in [false, true] {
            let mut wire = masked(true, OpCode::Binary, b"x");
            wire[0] = b0;
            let mut rx = Receiver::new(Role::Server);
            assert!(!rx.deflate_negotiated());
            let mut r = Ok(());
            let pieces: Vec<&mut [u8]> = if split {
                wire.chunks_mut(1).collect()
            } else {
                vec![&mut wire[..]]
            };
            for p in pieces {
                r = r.and(rx.receive(p, &Limits::default(), &mut Seen::default()));
            }
            assert_eq!(r, Err(want), "{b0:#x}, split {split}");
            assert!(rx.is_done());
        }
    }
    #[cfg(feature = "deflate")]
    {
        let p = crate::proto::extension::DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut rx = Receiver::with_deflate(Role::Server, p);
        assert!(rx.deflate_negotiated());
        // RFC 7692 §7.2.3.1: "Hello", then RSV1 on a continuation.
        let mut wire = masked(false, OpCode::Text, &[0xf2, 0x48, 0xcd]);
        wire[0] |= 0x40;
        wire.extend(masked(
            true,
            OpCode::Continuation,
            &[0xc9, 0xc9, 0x07, 0x00],
        ));
        let mut seen = Seen::default();
        rx.receive(&mut wire.clone(), &Limits::default(), &mut seen)
            .unwrap();
        assert_eq!(seen.0, ["Text(\"Hello\")"]);
        let cont = wire.len() - 10;
        wire[cont] |= 0x40;
        let mut rx = Receiver::with_deflate(Role::Server, p);
        let r = rx.receive(&mut wire, &Limits::default(), &mut Seen::default());
        assert_eq!(r, Err(Error::MisplacedRsv1));
    }
}

/// The state stays what the reactor's connection size allows.
#[test]
fn receiver_state_is_small() {
    let most = if cfg!(feature = "deflate") { 48 } else { 40 };
    assert!(std::mem::size_of::<Receiver>() <= most);
}

/// A message that arrives whole in one read is delivered from it, with
/// nothing buffered, even after an empty first fragment.
#[test]
fn a_whole_message_needs_no_buffer() {
    let mut wire = masked(false, OpCode::Binary, b"");
    wire.extend(masked(true, OpCode::Continuation, &[0xAB; 300]));
    let mut rx = Receiver::new(Role::Server);
    let mut seen = Seen::default();
    rx.receive(&mut wire, &Limits::default(), &mut seen)
        .unwrap();
    assert_eq!(seen.0.len(), 1);
    assert!(rx.partial.is_none());
    assert!(!rx.is_mid_message());
}
