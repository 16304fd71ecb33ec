//! permessage-deflate in the loop (RFC 7692, feature `deflate`): the
//! server's settings ([`DeflateSettings`]), the answer to an offer at the
//! upgrade (§5), and the loop's compressors of shared frames with the
//! counters reported by [`super::Ctx::stats`].
//!
//! A connection that agreed to the extension gets a `Receiver` and a
//! `Sender` built with the agreed parameters; one that did not keeps the
//! plain ones (nothing allocated, the same hot path as without the
//! feature). What a shared [`super::Frame`] looks like compressed is kept
//! with the frame (`compressed_frame.rs`).

use crate::proto::deflate::{encode_shared_frame, Compression, SharedDeflater, SharedKey};
use crate::proto::extension::{Accepted, DeflateConfig, MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS};
use crate::proto::handshake::{negotiate_deflate, Rejection, Request};
use crate::proto::{Message, Receiver, Role, Sender};

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
    req: &Request,
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
