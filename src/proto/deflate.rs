//! permessage-deflate's message transformation (RFC 7692 §6, §7.2): the
//! compressor and the decompressor of one connection, sans-IO. Feature
//! `deflate`; the negotiation that configures them is `proto::extension`.
//!
//! - [`Inflater`] decompresses received messages fed in any pieces (frames
//!   and reads), appends the `0x00 0x00 0xff 0xff` tail at the end of each
//!   (§7.2.2), and hands the output out in chunks of at most
//!   [`INFLATE_CHUNK`] bytes, counted against a limit *before* each chunk
//!   exists: a small message that inflates past the limit fails with
//!   [`InflateError::TooBig`] (close 1009) having produced at most the
//!   limit, from a fixed buffer on the stack.
//! - [`Deflater`] compresses a message (whole, or in parts for a
//!   fragmented send) and strips the tail (§7.2.1).
//! - [`compress_shared`] and [`SharedDeflater`] compress a message with no
//!   context from earlier ones, so one compressed frame is valid for every
//!   receiver whose window is large enough (the hub's compress-once
//!   fan-out): [`SharedKey`] says which, [`encode_shared_frame`] frames it.
//! - [`Compression`]: what a connection's sender compresses (a size
//!   threshold) and how (level, memory).
//!
//! The receiver and the sender use these for a connection that negotiated
//! the extension (`Receiver::with_deflate`, `Sender::with_deflate`,
//! `Connection::with_deflate`).
//!
//! Memory: with no context takeover in a direction, its state is allocated
//! when a message starts and freed when it ends, so an idle connection
//! holds none; with context takeover it is kept (about 47 KiB to
//! decompress, 137–380 KiB to compress depending on window and
//! `mem_level`; BENCHMARKS.md has the measurement).
//!
//! The engine is `zlib-rs` (a Rust port of zlib-ng) through its safe API:
//! chosen by measurement (bench/micro/benches/deflate_backends.rs).

use super::close::CloseCode;
use super::error::Error;
use super::extension::{Direction, MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status, Strategy};

mod shared;
pub use shared::{compress_shared, encode_shared_frame, SharedDeflater, SharedKey};

/// RFC 7692 §7.2.1/§7.2.2: the empty stored block's last four octets,
/// removed by the sender and appended by the receiver.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Largest chunk [`Inflater`] hands to its sink (a stack buffer).
pub const INFLATE_CHUNK: usize = 4096;

/// Default compression level: on hub-like JSON nearly level 6's ratio for
/// a third to a half of its time (BENCHMARKS.md).
pub const DEFAULT_LEVEL: u8 = 3;

/// Default zlib `memLevel` (zlib's own default). Lower values save memory
/// (at window 15: 380 KiB at 8, 280 KiB at 5) for the same ratio on JSON
/// but a slower compressor on incompressible data.
pub const DEFAULT_MEM_LEVEL: u8 = 8;

/// Default [`Compression::min_size`]: messages shorter than this go out
/// uncompressed. Without context takeover (the default) hub-like JSON of
/// 64 bytes gains 1 byte, of 100 bytes 13 %, of 128 bytes 19 %, of 200
/// bytes 27 %, while each message costs 7–13 µs to compress (its window is
/// set up per message) against tens of nanoseconds to send as it is
/// (`bench/micro/benches/deflate_messages.rs`). With context takeover
/// short messages shrink far more (a 64-byte one to 12 bytes): lower it.
pub const DEFAULT_MIN_SIZE: usize = 128;

// ------------------------------------------------------------------ errors

/// A received compressed message that cannot be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InflateError {
    /// The decompressed message is larger than the limit: close 1009, as
    /// for any message over the size limit (RFC 6455 §7.4.1).
    TooBig,
    /// The payload is not a valid DEFLATE stream. Close 1007: RFC 6455
    /// §7.4.1 gives 1007 to "data within a message that was not consistent
    /// with the type of the message", and RFC 7692 §8 treats compressed
    /// data as message data; the framing itself (RSV1, opcodes) was valid,
    /// so 1002 would misplace the fault. Node's `ws` closes with 1007 here
    /// too.
    Corrupt,
}

impl InflateError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }

    /// A short reason for the close frame and logs.
    pub fn reason(self) -> &'static str {
        match self {
            InflateError::TooBig => "message too big",
            InflateError::Corrupt => "invalid compressed data",
        }
    }
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for InflateError {}

/// The receiver's view: the same close codes as [`InflateError::close_code`].
impl From<InflateError> for Error {
    fn from(e: InflateError) -> Error {
        match e {
            InflateError::TooBig => Error::MessageTooBig,
            InflateError::Corrupt => Error::InvalidCompressedData,
        }
    }
}

/// The compressor failed: a bug or a failed allocation, not the peer's
/// doing. Close 1011 (internal error); the connection's stream state is
/// lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateError;

impl DeflateError {
    /// The close code: 1011.
    pub fn close_code(self) -> CloseCode {
        CloseCode::INTERNAL
    }
}

impl std::fmt::Display for DeflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "compressor failed (close {})", self.close_code())
    }
}

impl std::error::Error for DeflateError {}

/// The sender's view: 1011, as [`DeflateError::close_code`].
impl From<DeflateError> for Error {
    fn from(_: DeflateError) -> Error {
        Error::CompressionFailed
    }
}

// ---------------------------------------------------------------- inflater

/// The decompressor of one connection's incoming direction.
///
/// Feed a message's compressed payload with [`Inflater::feed`] in as many
/// pieces as it arrives (frame payloads, parts of them), then call
/// [`Inflater::finish`] at the end of its last frame. The sink gets the
/// decompressed bytes in order, in chunks of at most [`INFLATE_CHUNK`]; a
/// sink error (say invalid UTF-8) stops at once and is returned.
///
/// ```
/// use wsmio::proto::deflate::{InflateError, Inflater};
/// use wsmio::proto::extension::Direction;
///
/// let dir = Direction { no_context_takeover: true, max_window_bits: 15 };
/// let mut inflater = Inflater::new(dir, 1 << 20);
/// let mut text = Vec::new();
/// // RFC 7692 §7.2.3.1: "Hello" in one compressed frame ...
/// inflater
///     .feed(&[0xf2, 0x48, 0xcd], |c| Ok::<_, InflateError>(text.extend_from_slice(c)))
///     .unwrap();
/// // ... or in several.
/// inflater
///     .feed(&[0xc9, 0xc9, 0x07, 0x00], |c| Ok::<_, InflateError>(text.extend_from_slice(c)))
///     .unwrap();
/// inflater.finish(|c| Ok::<_, InflateError>(text.extend_from_slice(c))).unwrap();
/// assert_eq!(text, b"Hello");
/// assert!(!inflater.holds_state()); // no context takeover: freed
/// ```
pub struct Inflater {
    /// The inflate stream while a message is in progress, and between
    /// messages with context takeover. Boxed: `None` costs 8 bytes.
    state: Option<Box<Inflate>>,
    /// Largest decompressed message.
    limit: u64,
    /// Decompressed bytes of the current message so far.
    produced: u64,
    /// RFC 7692 §7.1.1: free the state after each message.
    no_context_takeover: bool,
    /// A block with BFINAL set ended the DEFLATE stream (§7.2.3.4).
    stream_ended: bool,
    /// The current message has had payload bytes.
    fed: bool,
}

// zlib-rs' states have no `Debug`: show whether one is held.
impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("holds_state", &self.state.is_some())
            .field("limit", &self.limit)
            .field("produced", &self.produced)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("stream_ended", &self.stream_ended)
            .finish()
    }
}

/// The input being decompressed: the peer's bytes or our appended tail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    Peer,
    Tail,
}

impl Inflater {
    /// A decompressor for the incoming direction `dir`, failing any message
    /// that decompresses to more than `limit` bytes. Allocates nothing
    /// until the first message.
    ///
    /// It decodes with a 32 KiB window whatever `dir.max_window_bits`
    /// says: a larger window decodes a smaller one's stream the same, and
    /// zlib-rs reserves 32 KiB in any case.
    pub fn new(dir: Direction, limit: u64) -> Inflater {
        Inflater {
            state: None,
            limit,
            produced: 0,
            no_context_takeover: dir.no_context_takeover,
            stream_ended: false,
            fed: false,
        }
    }

    /// Change the limit (it applies from the next chunk on).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Decompressed bytes of the message in progress.
    pub fn message_len(&self) -> u64 {
        self.produced
    }

    /// Does it hold a decompression state (memory) now?
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Decompress the next piece of the current message's payload. On an
    /// error (the sink's included) the message is abandoned, as by
    /// [`Inflater::abort`].
    pub fn feed<E, F>(&mut self, compressed: &[u8], sink: F) -> Result<(), E>
    where
        E: From<InflateError>,
        F: FnMut(&[u8]) -> Result<(), E>,
    {
        if compressed.is_empty() {
            return Ok(());
        }
        self.fed = true;
        self.run(compressed, Input::Peer, sink)
    }

    /// End the current message: decompress the tail RFC 7692 §7.2.2 has the
    /// receiver append, flush the rest to `sink`, and make ready for the
    /// next message (freeing the state with no context takeover).
    pub fn finish<E, F>(&mut self, sink: F) -> Result<(), E>
    where
        E: From<InflateError>,
        F: FnMut(&[u8]) -> Result<(), E>,
    {
        // An empty payload is an empty message. (The tail alone is not a
        // whole DEFLATE block: decoding it would leave the stream inside a
        // stored block's header, and a next message in the same stream
        // would be read as its length.)
        if !self.fed {
            self.end_message();
            return Ok(());
        }
        // RFC 7692 §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the
        // tail end of the payload of the message."
        let result = self.run(&TAIL, Input::Tail, sink);
        self.end_message();
        result
    }

    /// Drop the message in progress (the connection is failing, or the
    /// caller gave up on it). With context takeover the stream is lost too:
    /// later messages may refer to this one, so the connection should not
    /// go on.
    pub fn abort(&mut self) {
        self.state = None;
        self.produced = 0;
        self.stream_ended = false;
        self.fed = false;
    }

    /// Decompress a whole message (payload without the tail) into `out`,
    /// growing it at most to the limit.
    pub fn decompress(&mut self, compressed: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let mut push = |chunk: &[u8]| -> Result<(), InflateError> {
            append_bounded(out, chunk, limit);
            Ok(())
        };
        self.feed(compressed, &mut push)?;
        self.finish(&mut push)
    }

    fn end_message(&mut self) {
        self.produced = 0;
        self.fed = false;
        if self.no_context_takeover {
            // RFC 7692 §7.1.1: nothing carries over, so nothing is kept.
            self.state = None;
            self.stream_ended = false;
        } else if self.stream_ended {
            // The peer ended the DEFLATE stream (a BFINAL block) and the
            // next message starts a new one. zlib-rs cannot carry the
            // window across a new stream, so a later back-reference into
            // it fails as Corrupt (RFC 7692 §7.2.3.4 peers flush with
            // BFINAL only where sync flush is unavailable: rare).
            if let Some(s) = self.state.as_mut() {
                s.reset(false);
            }
            self.stream_ended = false;
        }
    }

    fn run<E, F>(&mut self, mut input: &[u8], kind: Input, mut sink: F) -> Result<(), E>
    where
        E: From<InflateError>,
        F: FnMut(&[u8]) -> Result<(), E>,
    {
        let mut buf = [0u8; INFLATE_CHUNK];
        loop {
            if self.stream_ended {
                // RFC 7692 §7.2.1: "The next DEFLATE block follows the
                // padded data if any." Only our own tail after a BFINAL
                // block is nothing to decode.
                if input.is_empty() || kind == Input::Tail {
                    return Ok(());
                }
                if let Some(s) = self.state.as_mut() {
                    s.reset(false);
                }
                self.stream_ended = false;
            }
            // Never room for more than one byte past the limit: the output
            // counts against it before it exists.
            let allowed = self.limit.saturating_sub(self.produced).saturating_add(1);
            let room = usize::try_from(allowed).map_or(INFLATE_CHUNK, |a| a.min(INFLATE_CHUNK));
            let state = self
                .state
                .get_or_insert_with(|| Box::new(Inflate::new(false, MAX_WINDOW_BITS)));
            let (in0, out0) = (state.total_in(), state.total_out());
            let status = state.decompress(input, &mut buf[..room], InflateFlush::SyncFlush);
            let used = (state.total_in() - in0) as usize;
            let wrote = (state.total_out() - out0) as usize;
            input = &input[used..];
            // The limit first, so that what was decoded before an error
            // counts: the outcome, and the bytes the sink got (exactly the
            // first `limit` on TooBig), do not depend on how the input was
            // cut.
            self.produced = self.produced.saturating_add(wrote as u64);
            // At most `wrote` (<= INFLATE_CHUNK): the limit held before.
            let over = self.produced.saturating_sub(self.limit) as usize;
            if wrote > over {
                if let Err(e) = sink(&buf[..wrote - over]) {
                    self.abort();
                    return Err(e);
                }
            }
            if over > 0 {
                self.abort();
                return Err(InflateError::TooBig.into());
            }
            let status = match status {
                Ok(s) => s,
                Err(_) => {
                    self.abort();
                    return Err(InflateError::Corrupt.into());
                }
            };
            match status {
                Status::StreamEnd => self.stream_ended = true,
                // Output space left over: all input that could be decoded
                // was (zlib stops early only when the output is full).
                _ if wrote < room => return Ok(()),
                // The output is full: there may be more of it.
                _ => {}
            }
        }
    }
}

/// Append `chunk` to `out`, growing its capacity geometrically but never
/// past `limit` (the caller guarantees `out.len() + chunk.len() <= limit`
/// for what it was given to inflate).
fn append_bounded(out: &mut Vec<u8>, chunk: &[u8], limit: usize) {
    let need = out.len() + chunk.len();
    if need > out.capacity() {
        let grown = out
            .capacity()
            .saturating_mul(2)
            .max(INFLATE_CHUNK)
            .min(limit)
            .max(need);
        out.reserve_exact(grown - out.len());
    }
    out.extend_from_slice(chunk);
}

// ---------------------------------------------------------------- deflater

/// Compressor settings that are not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateOptions {
    /// zlib level, 0 (store) to 9 (best); default [`DEFAULT_LEVEL`].
    pub level: u8,
    /// zlib `memLevel`, 1 to 9; default [`DEFAULT_MEM_LEVEL`].
    pub mem_level: u8,
}

impl Default for DeflateOptions {
    fn default() -> Self {
        DeflateOptions {
            level: DEFAULT_LEVEL,
            mem_level: DEFAULT_MEM_LEVEL,
        }
    }
}

/// The zlib-rs configuration for a raw DEFLATE stream within a window of
/// `2^window_bits` bytes.
fn zlib_config(window_bits: u8, options: DeflateOptions) -> DeflateConfig {
    // zlib (and zlib-rs) cannot set up a 256-byte (8-bit) window for raw
    // DEFLATE. Its 9-bit window reaches back at most 2^9 - 262 = 250 bytes
    // (every match finder stops at `max_dist`, the window less the 262
    // bytes of look-ahead it keeps), so an agreed 8 is honoured with 9:
    // RFC 7692 §7.1.2.1 forbids a larger window than agreed, and no match
    // is farther than 256 bytes (tested with an 8-bit decoder).
    let bits = window_bits.clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS);
    DeflateConfig {
        level: i32::from(options.level.min(9)),
        // Negative: a raw DEFLATE stream, no zlib header (RFC 7692 §7.2.1).
        window_bits: -i32::from(bits),
        mem_level: i32::from(options.mem_level.clamp(1, 9)),
        strategy: Strategy::Default,
        ..DeflateConfig::default()
    }
}

/// The compressor of one connection's outgoing direction.
///
/// ```
/// use wsmio::proto::deflate::{DeflateOptions, Deflater, Inflater};
/// use wsmio::proto::extension::Direction;
///
/// let dir = Direction { no_context_takeover: false, max_window_bits: 15 };
/// let mut deflater = Deflater::new(dir, DeflateOptions::default());
/// let mut inflater = Inflater::new(dir, 1 << 20);
/// for _ in 0..2 {
///     let mut wire = Vec::new();
///     deflater.compress(b"Hello", &mut wire).unwrap();
///     let mut back = Vec::new();
///     inflater.decompress(&wire, &mut back).unwrap();
///     assert_eq!(back, b"Hello");
/// }
/// ```
pub struct Deflater {
    /// The deflate stream while a message is in progress, and between
    /// messages with context takeover.
    state: Option<Box<Deflate>>,
    window_bits: u8,
    options: DeflateOptions,
    /// RFC 7692 §7.1.1: start each message from an empty window.
    no_context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("holds_state", &self.state.is_some())
            .field("window_bits", &self.window_bits)
            .field("options", &self.options)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Deflater {
    /// A compressor for the outgoing direction `dir`. Allocates nothing
    /// until the first message.
    pub fn new(dir: Direction, options: DeflateOptions) -> Deflater {
        Deflater {
            state: None,
            window_bits: dir.max_window_bits,
            options,
            no_context_takeover: dir.no_context_takeover,
        }
    }

    /// Does it hold a compression state (memory) now?
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// The agreed window (8..=15) it compresses within.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// RFC 7692 §7.1.1: does each message start from an empty window?
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Compress a whole message, appending the payload of its frame (or
    /// frames) to `out`, tail stripped.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.compress_part(message, true, out)
    }

    /// Compress the next part of a message sent in fragments; `fin` marks
    /// the last. Appends what the compressor has ready, which for a part
    /// before the last may be nothing (the next frame carries it: an empty
    /// continuation frame is fine). Each call's output is one frame's
    /// payload; RSV1 goes on the first frame only (RFC 7692 §6.1).
    pub fn compress_part(
        &mut self,
        part: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let (window_bits, options) = (self.window_bits, self.options);
        let state = self.state.get_or_insert_with(|| {
            Box::new(Deflate::new_with_config(zlib_config(window_bits, options)))
        });
        let result = deflate_into(state, part, fin, out);
        if result.is_err() {
            self.state = None;
        } else if fin && self.no_context_takeover {
            // RFC 7692 §7.1.1: no context takeover, so no state while idle.
            self.state = None;
        }
        result
    }

    /// Drop a message in progress (the connection is closing mid-message),
    /// or the context kept for the next message: the next one then starts
    /// from an empty window, which any receiver decodes (RFC 7692 §7.1.1
    /// lets a sender keep less context than allowed, never more).
    pub fn abort(&mut self) {
        self.state = None;
    }
}

/// Run `part` through `state`; with `fin`, sync-flush and apply RFC 7692
/// §7.2.1 to the end of the message.
fn deflate_into(
    state: &mut Deflate,
    mut part: &[u8],
    fin: bool,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    let flush = if fin {
        // RFC 7692 §7.2.1: the message ends on a block boundary, with an
        // empty stored block (what a sync flush writes).
        DeflateFlush::SyncFlush
    } else {
        DeflateFlush::NoFlush
    };
    let start = out.len();
    loop {
        // Room for the input and the flush's few bytes; zero-filled (no
        // `unsafe` for uninitialized space), then cut to what was written.
        let room = part.len() + (part.len() >> 10) + 64;
        let len = out.len();
        out.resize(len + room, 0);
        let (in0, out0) = (state.total_in(), state.total_out());
        let status = state.compress(part, &mut out[len..], flush);
        let used = (state.total_in() - in0) as usize;
        let wrote = (state.total_out() - out0) as usize;
        out.truncate(len + wrote);
        part = &part[used..];
        match status {
            Err(_) => return Err(DeflateError),
            // All input taken and the output not full: done (BufError: a
            // sync flush right after another has nothing to write).
            Ok(_) if part.is_empty() && wrote < room => break,
            Ok(_) => {}
        }
    }
    if fin {
        strip_tail(out, start);
    }
    Ok(())
}

/// RFC 7692 §7.2.1 steps 2 and 3 on the message's compressed bytes from
/// `start`: end with an empty stored block, then remove its last 4 octets.
fn strip_tail(out: &mut Vec<u8>, start: usize) {
    if out[start..].ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    } else {
        // Nothing was written (a sync flush with no new input after
        // another): the stream is byte-aligned on a block boundary, and an
        // empty stored block without its last 4 octets is one zero byte
        // (BFINAL 0, BTYPE 00, padding).
        out.push(0x00);
    }
}

// ------------------------------------------------------------ send policy

/// What a connection's sender compresses, and how: local choices, not
/// negotiated (the negotiated part is `extension::DeflateParams`).
///
/// ```
/// use wsmio::proto::deflate::{Compression, DEFAULT_MIN_SIZE};
///
/// let c = Compression { min_size: 256, ..Compression::default() };
/// assert!(c.min_size > DEFAULT_MIN_SIZE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Level and memory of the compressor.
    pub options: DeflateOptions,
    /// Whole messages shorter than this are sent uncompressed (RSV1 clear,
    /// RFC 7692 §6: compression is per message, the sender's choice).
    /// Default [`DEFAULT_MIN_SIZE`].
    pub min_size: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            options: DeflateOptions::default(),
            min_size: DEFAULT_MIN_SIZE,
        }
    }
}

/// Insert `header` before `out[start..]` (the payload just written there).
pub(crate) fn prepend(out: &mut Vec<u8>, start: usize, header: &[u8]) {
    out.extend_from_slice(header);
    out[start..].rotate_right(header.len());
}

#[cfg(test)]
mod tests;
