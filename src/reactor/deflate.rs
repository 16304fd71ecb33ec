//! permessage-deflate in the loop (RFC 7692, feature `deflate`): the
//! server's settings ([`DeflateSettings`]), the answer to an offer at the
//! upgrade (§5), the loop's compressors with the counters reported by
//! [`super::Ctx::stats`], and the compressed variants of `Core`'s sends.
//!
//! A connection that agreed to the extension gets a `Receiver` and a
//! `Sender` built with the agreed parameters; one that did not keeps the
//! plain ones (nothing allocated, the same hot path as without the
//! feature). What a shared [`super::Frame`] looks like compressed is kept
//! with the frame (`compressed_frame.rs`).

use super::core::{slot, Core, DIRECT_WRITE_THRESHOLD};
use super::frame::{Frame, SendStatus};
use super::id::ConnId;
use crate::proto::deflate::{encode_shared_frame, prepend, Compression, SharedDeflater, SharedKey};
use crate::proto::extension::{Accepted, DeflateConfig, MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS};
use crate::proto::frame::EncodedHeader;
use crate::proto::handshake::{negotiate_deflate, HttpRequest, Rejection};
use crate::proto::{Error, Message, OpCode, Receiver, Role, Sender};

/// What a server offers and how it compresses (off unless
/// [`super::Config::deflate`] is set).
///
/// ```
/// use wsmio::reactor::DeflateSettings;
/// use wsmio::Config;
///
/// let mut settings = DeflateSettings::default();
/// settings.compression.min_size = 256; // smaller messages go plain
/// let config = Config::default().with_deflate(settings);
/// assert!(config.deflate.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateSettings {
    /// What the server accepts (context takeover and windows per
    /// direction). The default asks for no context takeover both ways
    /// (RFC 7692 §7.1.1): a connection holds no compression state while
    /// idle, and one compressed [`super::Frame`] serves every receiver.
    pub negotiation: DeflateConfig,
    /// What is compressed (messages from `min_size` bytes, default 128)
    /// and how (level 3, `memLevel` 8).
    pub compression: Compression,
}

/// The permessage-deflate answer to `req` under `settings`: `Ok(None)` to
/// decline (no acceptable offer), `Err` (`400`) for a header that is not
/// RFC 6455 §9.1's grammar.
pub(crate) fn negotiate(
    settings: &DeflateSettings,
    req: &HttpRequest,
) -> Result<Option<Accepted>, Rejection> {
    negotiate_deflate(req, &settings.negotiation)
}

/// The receiver and sender of a connection that agreed to `accepted`.
pub(crate) fn endpoints(accepted: &Accepted, settings: &DeflateSettings) -> (Receiver, Sender) {
    let params = accepted.params;
    (
        Receiver::with_deflate(Role::Server, params),
        Sender::with_deflate(Role::Server, params, settings.compression),
    )
}

/// Compression counters (see [`super::Stats`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeflateCounts {
    /// Compressor runs: messages compressed for one connection, and shared
    /// frames compressed once for many.
    pub compressions: u64,
    /// Frame bytes (headers included) those runs took in: the plain
    /// frames.
    pub bytes_before: u64,
    /// Frame bytes (headers included) they produced.
    pub bytes_after: u64,
    /// Messages queued compressed (every delivery of a shared one counts).
    pub sent_compressed: u64,
    /// Messages queued plain on connections that agreed to the extension
    /// (under the size threshold, or not shrinking).
    pub sent_plain: u64,
    /// Of `sent_compressed`, deliveries of a frame compressed once for many.
    pub sent_shared: u64,
}

/// The loop's side of permessage-deflate: its settings, one compressor of
/// shared frames per window (created on first use, reset per message), a
/// scratch buffer for compressing one connection's sends, the counters.
pub(crate) struct LoopDeflate {
    pub settings: DeflateSettings,
    shared: [Option<SharedDeflater>; KEYS],
    /// Reused by `Core::send` for a compressed payload.
    pub scratch: Vec<u8>,
    pub counts: DeflateCounts,
}

/// Distinct shared keys: windows 9..=15.
const KEYS: usize = (MAX_WINDOW_BITS - MIN_COMPRESS_WINDOW_BITS + 1) as usize;

impl LoopDeflate {
    pub fn new(settings: DeflateSettings) -> LoopDeflate {
        LoopDeflate {
            settings,
            shared: Default::default(),
            scratch: Vec::new(),
            counts: DeflateCounts::default(),
        }
    }

    /// Messages shorter than this go plain (`Compression::min_size`).
    pub fn min_size(&self) -> usize {
        self.settings.compression.min_size
    }

    /// `msg` framed compressed for receivers of `key` (FIN, RSV1, no
    /// context: RFC 7692 §6, §7.2.1), or `None` when that frame would not
    /// be shorter than the plain one of `plain_len` bytes (or the
    /// compressor failed: the plain frame is as valid).
    pub fn encode_shared(
        &mut self,
        key: SharedKey,
        msg: Message<'_>,
        plain_len: usize,
    ) -> Option<Vec<u8>> {
        let options = self.settings.compression.options;
        let slot = usize::from(key.window_bits() - MIN_COMPRESS_WINDOW_BITS);
        let deflater = self.shared[slot].get_or_insert_with(|| key.deflater(options));
        let mut out = Vec::with_capacity(plain_len);
        let ok = encode_shared_frame(msg, deflater, &mut out).is_ok();
        let c = &mut self.counts;
        c.compressions += 1;
        c.bytes_before += plain_len as u64;
        c.bytes_after += out.len() as u64;
        (ok && out.len() < plain_len).then_some(out)
    }
}

impl Core {
    /// [`Core::send`] on a connection that agreed to permessage-deflate:
    /// the message compressed (RFC 7692 §7.2.1) and queued, or `None` to
    /// send it plain (under the threshold, not shrinking, or the
    /// compressor failed — a plain message is always valid, §6).
    #[inline(never)]
    pub(super) fn send_deflate(
        &mut self,
        id: ConnId,
        op: OpCode,
        payload: &[u8],
        soft: usize,
    ) -> Option<SendStatus> {
        let (Some(z), Some(c)) = (self.deflate.as_mut(), slot(&mut self.conns, id)) else {
            return None;
        };
        if !c.tx.compresses(payload.len()) {
            z.counts.sent_plain += 1;
            return None;
        }
        if !c.tx.keeps_context() {
            return self.send_alone(id, op, payload, soft);
        }
        let mut out = std::mem::take(&mut z.scratch);
        out.clear();
        let h = match c.tx.compress_message(op, payload, &mut out) {
            Ok(Some(h)) => h,
            Ok(None) | Err(Error::CompressionFailed) => {
                z.scratch = out;
                z.counts.sent_plain += 1;
                return None;
            }
            Err(_) => return Some(SendStatus::Closed),
        };
        let plain = EncodedHeader::new(true, op, None, payload.len() as u64);
        let counts = &mut z.counts;
        counts.compressions += 1;
        counts.sent_compressed += 1;
        counts.bytes_before += (plain.as_bytes().len() + payload.len()) as u64;
        counts.bytes_after += (h.as_bytes().len() + out.len()) as u64;
        if out.len() >= DIRECT_WRITE_THRESHOLD {
            // A large message: its own buffer, given to the queue.
            prepend(&mut out, 0, h.as_bytes());
            c.wq.push_owned(out, &mut self.pool);
        } else {
            c.wq.push_bytes(&[h.as_bytes(), &out], &mut self.pool);
            z.scratch = out;
        }
        Some(Self::queued(c, id, soft, self.reading, &mut self.dirty))
    }

    /// [`Core::send_deflate`] without context takeover in our direction
    /// (RFC 7692 §7.1.1): each message stands alone, so the loop's
    /// compressor of shared frames makes it (kept and reset, where the
    /// connection's own would be set up and freed per message: 7 instead
    /// of 13 µs for 200 bytes of JSON).
    fn send_alone(
        &mut self,
        id: ConnId,
        op: OpCode,
        payload: &[u8],
        soft: usize,
    ) -> Option<SendStatus> {
        let msg = match (op, std::str::from_utf8(payload)) {
            (OpCode::Text, Ok(t)) => Message::Text(t),
            (OpCode::Text, Err(_)) => return None,
            _ => Message::Binary(payload),
        };
        let (Some(z), Some(c)) = (self.deflate.as_mut(), slot(&mut self.conns, id)) else {
            return None;
        };
        let key = c.tx.shared_key()?;
        let header = EncodedHeader::new(true, op, None, payload.len() as u64);
        let plain_len = header.as_bytes().len() + payload.len();
        let Some(frame) = z.encode_shared(key, msg, plain_len) else {
            z.counts.sent_plain += 1;
            return None;
        };
        match c.tx.admit_shared_compressed(key) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => return Some(SendStatus::Closed),
        }
        z.counts.sent_compressed += 1;
        if frame.len() >= DIRECT_WRITE_THRESHOLD {
            c.wq.push_owned(frame, &mut self.pool);
        } else {
            c.wq.push_bytes(&[&frame], &mut self.pool);
        }
        Some(Self::queued(c, id, soft, self.reading, &mut self.dirty))
    }

    /// [`Core::send_shared`] on a connection that agreed to
    /// permessage-deflate with `key`: the frame's compressed encoding for
    /// it (made now if none it can read exists), or the plain bytes.
    #[inline(never)]
    pub(super) fn send_shared_deflate(
        &mut self,
        id: ConnId,
        frame: &Frame,
        key: SharedKey,
    ) -> SendStatus {
        let soft = self.soft_limit();
        let encoded = match (self.deflate.as_mut(), frame.compressed.as_deref()) {
            (Some(z), Some(enc)) => Some(enc.get(&frame.bytes, key, z)),
            _ => None,
        };
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        let compressed = encoded
            .as_ref()
            .and_then(|e| Some((e.key, e.bytes.as_ref()?)));
        // The checks of a whole message (RFC 6455 §5.4, §5.5.1), then
        // whether this connection reads that encoding.
        let admitted = match compressed {
            Some((k, bytes)) => match c.tx.admit_shared_compressed(k) {
                Ok(true) => Some(bytes),
                Ok(false) => None,
                Err(_) => return SendStatus::Closed,
            },
            None if c.tx.check_whole_message().is_err() => return SendStatus::Closed,
            None => None,
        };
        let counts = self.deflate.as_mut().map(|z| &mut z.counts);
        match admitted {
            Some(bytes) => {
                c.wq.push_shared(bytes, &mut self.pool);
                if let Some(n) = counts {
                    n.sent_compressed += 1;
                    n.sent_shared += 1;
                }
            }
            None => {
                c.wq.push_shared(&frame.bytes, &mut self.pool);
                if let Some(n) = counts {
                    n.sent_plain += 1;
                }
            }
        }
        Self::queued(c, id, soft, self.reading, &mut self.dirty)
    }
}
