//! Compress once, send to many (RFC 7692 §7.1.1.1, §7.1.2.1): messages
//! compressed with no context from earlier ones, so that one compressed
//! frame is valid for every receiver whose window is large enough. The
//! hub's fan-out uses these; [`SharedKey`] says which receivers a frame
//! suits.

use super::{deflate_into, prepend, zlib_config, DeflateError, DeflateOptions};
use crate::proto::extension::{MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS};
use crate::proto::frame::{EncodedHeader, OpCode, RSV1};
use zlib_rs::Deflate;

/// Compress one message with a fresh state: no context from earlier
/// messages, so the bytes decode the same for every receiver, whatever it
/// received before. Valid for every receiver that agreed to
/// `server_no_context_takeover` and a `server_max_window_bits` of at least
/// `window_bits` (RFC 7692 §7.1.1.1, §7.1.2.1).
///
/// Why fan-out needs no context takeover: with it, a compressed message
/// may refer back to earlier ones *on that connection*, and subscribers
/// joined at different times, so no two have the same history. A frame
/// compressed once for many must refer to nothing before it.
///
/// Allocates (about 370 KiB at the defaults) and frees a compressor per
/// call, some 3–4 µs more per message than reusing one; a sender of many
/// messages keeps a [`SharedDeflater`].
pub fn compress_shared(
    message: &[u8],
    window_bits: u8,
    options: DeflateOptions,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    SharedDeflater::new(window_bits, options).compress(message, out)
}

/// [`compress_shared`] with the compressor kept between messages (reset,
/// not reallocated): one per thread that compresses for many receivers.
pub struct SharedDeflater {
    state: Box<Deflate>,
}

impl std::fmt::Debug for SharedDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDeflater").finish_non_exhaustive()
    }
}

impl SharedDeflater {
    /// A compressor of messages that decode on their own, within a window
    /// of `2^window_bits` bytes.
    pub fn new(window_bits: u8, options: DeflateOptions) -> SharedDeflater {
        SharedDeflater {
            state: Box::new(Deflate::new_with_config(zlib_config(window_bits, options))),
        }
    }

    /// Compress `message` on its own (RFC 7692 §7.2.1), appending the frame
    /// payload to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let result = deflate_into(&mut self.state, message, true, out);
        // RFC 7692 §7.1.1.1: the next message must not refer to this one.
        self.state.reset();
        result
    }
}

/// Which shared, pre-compressed frames a connection can take: the window
/// (RFC 7692 §7.1.2.1 `server_max_window_bits`) its peer agreed to decode.
///
/// A frame compressed with no context ([`SharedDeflater`]) within a window
/// of `2^k` bytes is valid for every connection whose key is at least
/// `k` ([`SharedKey::accepts`]): it refers to nothing before itself, and to
/// nothing farther back than its window. Context takeover does not enter
/// the key: a decoder that keeps its window decodes a message that does not
/// use it, and `Sender::admit_shared_compressed` makes the connection's own
/// compressor forget its context so that its next message does not refer
/// across the shared one. Agreed windows of 8 and 9 bits share a key (9):
/// zlib's 9-bit window reaches at most 250 bytes back (see `Deflater`).
///
/// The hub groups a delivery's deflate subscribers by key and compresses
/// once per key — or once for all of them, with the smallest key among
/// them (browsers all agree 15, so one key is the usual case).
///
/// ```
/// use wsmio::proto::deflate::SharedKey;
///
/// let browser = SharedKey::new(15);
/// let small = SharedKey::new(10);
/// assert!(browser.accepts(small) && !small.accepts(browser));
/// assert_eq!(SharedKey::new(8), SharedKey::new(9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedKey {
    window_bits: u8,
}

impl SharedKey {
    /// The key of a peer that agreed to decode a window of `2^window_bits`
    /// bytes (8..=15; clamped to 9..=15, see above).
    pub fn new(window_bits: u8) -> SharedKey {
        SharedKey {
            window_bits: window_bits.clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS),
        }
    }

    /// The window to compress with for this key.
    pub fn window_bits(self) -> u8 {
        self.window_bits
    }

    /// May a connection with this key receive a frame compressed for
    /// `frame`?
    pub fn accepts(self, frame: SharedKey) -> bool {
        frame.window_bits <= self.window_bits
    }

    /// A compressor of shared frames for this key.
    pub fn deflater(self, options: DeflateOptions) -> SharedDeflater {
        SharedDeflater::new(self.window_bits, options)
    }
}

/// Frame a whole data message compressed once for many receivers (server
/// role: unmasked): FIN, RSV1 (RFC 7692 §6), the opcode, then `message`
/// compressed by `deflater` with no context (§7.2.1), appended to `out`.
///
/// ```
/// use wsmio::proto::deflate::{encode_shared_frame, DeflateOptions, SharedKey};
/// use wsmio::proto::extension::DeflateParams;
/// use wsmio::proto::{Connection, Event, Limits, Message, Role};
///
/// let key = SharedKey::new(15);
/// let mut deflater = key.deflater(DeflateOptions::default());
/// let mut frame = Vec::new();
/// encode_shared_frame(Message::Text("hello hello hello"), &mut deflater, &mut frame).unwrap();
/// assert_eq!(frame[0], 0xC1); // FIN + RSV1 + text
///
/// // Any client that agreed to permessage-deflate reads it.
/// let params = DeflateParams {
///     server_no_context_takeover: true,
///     client_no_context_takeover: true,
///     server_max_window_bits: 15,
///     client_max_window_bits: 15,
/// };
/// let mut client = Connection::with_deflate(Role::Client, Limits::default(), params, Default::default());
/// let mut got = String::new();
/// client.receive(&mut frame, |e| if let Event::Message(Message::Text(t)) = e { got = t.into() }).unwrap();
/// assert_eq!(got, "hello hello hello");
/// ```
pub fn encode_shared_frame(
    message: crate::proto::Message<'_>,
    deflater: &mut SharedDeflater,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    let opcode = if message.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let start = out.len();
    deflater.compress(message.as_bytes(), out)?;
    let len = (out.len() - start) as u64;
    let header = EncodedHeader::with_rsv(true, RSV1, opcode, None, len);
    prepend(out, start, header.as_bytes());
    Ok(())
}
