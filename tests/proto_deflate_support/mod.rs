//! Shared helpers of the permessage-deflate tests (`proto_deflate*.rs`):
//! connections with the extension, a collector of what arrives (chunks
//! joined), frame builders and parsers, and compressible or random data.
#![allow(dead_code)]

use wsmio::proto::deflate::{Compression, DeflateOptions, Deflater};
use wsmio::proto::extension::{DeflateParams, Direction};
use wsmio::proto::frame::{decode_header, header_len, EncodedHeader};
use wsmio::proto::mask::apply_mask;
use wsmio::proto::{
    CloseCode, Connection, DeliveryMode, Error, Event, Limits, Message, OpCode, Role,
};

pub fn params(
    server_nct: bool,
    client_nct: bool,
    server_bits: u8,
    client_bits: u8,
) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

/// No context takeover either way, 15-bit windows: what wsmio's defaults
/// agree with a browser.
pub fn default_params() -> DeflateParams {
    params(true, true, 15, 15)
}

pub fn limits(max: u64, delivery: DeliveryMode) -> Limits {
    Limits {
        max_message_size: max,
        delivery,
        ..Limits::default()
    }
}

pub fn conn(role: Role, p: DeflateParams, l: Limits) -> Connection {
    Connection::with_deflate(role, l, p, Compression::default())
}

/// A message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
}

pub fn sent(text: bool, bytes: &[u8]) -> Got {
    if text {
        Got::Text(String::from_utf8(bytes.to_vec()).unwrap())
    } else {
        Got::Binary(bytes.to_vec())
    }
}

/// Collects messages, joining chunks ([`DeliveryMode::Chunks`]) into messages
/// and checking their flags.
#[derive(Default)]
pub struct Collector {
    pub got: Vec<Got>,
    open: Option<(bool, Vec<u8>)>,
    /// Bytes delivered in chunks so far, in all.
    pub chunk_bytes: usize,
    pub pings: usize,
    pub close: Option<Option<CloseCode>>,
}

impl Collector {
    pub fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Message(Message::Text(t)) => self.got.push(Got::Text(t.into())),
            Event::Message(Message::Binary(b)) => self.got.push(Got::Binary(b.to_vec())),
            Event::Chunk(c) => {
                assert_eq!(c.first, self.open.is_none(), "first flag");
                let (text, buf) = self.open.get_or_insert_with(|| (c.text, Vec::new()));
                assert_eq!(*text, c.text);
                buf.extend_from_slice(c.data);
                self.chunk_bytes += c.data.len();
                if c.last {
                    let (text, buf) = self.open.take().unwrap();
                    self.got.push(sent(text, &buf));
                }
            }
            Event::Ping(_) => self.pings += 1,
            Event::Pong(_) => {}
            Event::Close { code, .. } => self.close = Some(code),
        }
    }
}

/// Feed `wire` to `to` cut at `cuts` (sorted offsets); stop at an error.
pub fn feed(
    to: &mut Connection,
    wire: &[u8],
    cuts: &[usize],
    c: &mut Collector,
) -> Result<(), Error> {
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&x| x <= wire.len()));
    bounds.push(wire.len());
    for w in bounds.windows(2) {
        let mut read = wire[w[0]..w[1]].to_vec();
        to.receive(&mut read, |e| c.event(e))?;
    }
    Ok(())
}

/// Take everything `from` has to send.
pub fn drain(from: &mut Connection) -> Vec<u8> {
    let wire = from.output().to_vec();
    from.consume_output(wire.len());
    wire
}

/// The two ends, sender first: `(server, client)` for `server_sends`,
/// else `(client, server)`.
pub fn ends<'a>(
    server: &'a mut Connection,
    client: &'a mut Connection,
    server_sends: bool,
) -> (&'a mut Connection, &'a mut Connection) {
    if server_sends {
        (server, client)
    } else {
        (client, server)
    }
}

/// One frame as sent: first byte, payload (unmasked).
#[derive(Debug)]
pub struct Frame {
    pub b0: u8,
    pub payload: Vec<u8>,
}

/// Split `wire` into frames, unmasking client frames.
pub fn frames(mut wire: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let hl = header_len(wire[1]);
        let role = if wire[1] & 0x80 != 0 {
            Role::Server
        } else {
            Role::Client
        };
        let h = decode_header(&wire[..hl], role, 0x4).unwrap();
        let end = hl + h.payload_len as usize;
        let mut payload = wire[hl..end].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.push(Frame {
            b0: wire[0],
            payload,
        });
        wire = &wire[end..];
    }
    out
}

/// A masked frame with first byte `b0`, as a client sends it.
pub fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let opcode = OpCode::from_bits(b0 & 0x0f).unwrap();
    let rsv = (b0 >> 4) & 0x7;
    let h = EncodedHeader::with_rsv(b0 & 0x80 != 0, rsv, opcode, Some(key), payload.len() as u64);
    let mut out = h.as_bytes().to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

/// A whole message compressed with a fresh 15-bit compressor at level 9
/// (tail stripped), as any peer would send it.
pub fn compressed(msg: &[u8]) -> Vec<u8> {
    let mut d = Deflater::new(
        Direction {
            no_context_takeover: true,
            max_window_bits: 15,
        },
        DeflateOptions {
            level: 9,
            mem_level: 9,
        },
    );
    let mut out = Vec::new();
    d.compress(msg, &mut out).unwrap();
    out
}

/// JSON-like text that compresses, with variety from `seed`.
pub fn json(len: usize, seed: u32) -> Vec<u8> {
    let words: &[&str] = &[
        "{\"type\":\"msg\",",
        "\"topic\":\"room.",
        "\"seq\":",
        "\"from\":\"alice\",",
        "\"text\":\"hello there\"},",
        "é€𝄞 ",
    ];
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(4) {
            s.push_str(&(x % 100_000).to_string());
        } else {
            s.push_str(words[(x % words.len() as u32) as usize]);
        }
    }
    while s.len() > len {
        s.pop();
    }
    while s.len() < len {
        s.push(' ');
    }
    s.into_bytes()
}

/// Bytes that do not compress.
pub fn noise(len: usize, mut x: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The close code in the last frame of `wire`.
pub fn close_code(wire: &[u8]) -> Option<u16> {
    let f = frames(wire).pop()?;
    (f.b0 & 0x0f == 0x8 && f.payload.len() >= 2)
        .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]))
}

/// Feed `wire` whole and then byte by byte to fresh connections from
/// `make`; both must fail with `want` and send a close with `code`.
pub fn fails_with(make: impl Fn() -> Connection, wire: &[u8], want: Error, code: u16) {
    for bytewise in [false, true] {
        let mut c = make();
        let cuts: Vec<usize> = if bytewise {
            (1..wire.len()).collect()
        } else {
            vec![]
        };
        let r = feed(&mut c, wire, &cuts, &mut Collector::default());
        assert_eq!(r, Err(want), "bytewise {bytewise}");
        assert_eq!(want.close_code(), CloseCode(code));
        assert_eq!(close_code(c.output()), Some(code), "bytewise {bytewise}");
    }
}
