//! The compressing side of [`Sender`] (RFC 7692 §6.1, §7.2.1): whole
//! messages compressed from a size threshold on, fragmented compressed
//! messages, and the checks for a frame compressed once and shared among
//! many connections. The compressor itself is `proto::deflate::Deflater`.

use super::{finish_frame, Compressor, Extras, Fragment, Sender};
use crate::proto::deflate::Deflater;
use crate::proto::deflate::{Compression, SharedKey};
use crate::proto::error::Error;
use crate::proto::extension::DeflateParams;
use crate::proto::frame::{EncodedHeader, OpCode, Role};

impl Sender {
    /// A sender for `role` on a connection that negotiated
    /// permessage-deflate with `params` (RFC 7692 §7.1), compressing as
    /// `compression` says. Allocates a small box; the compressor's window
    /// (137–380 KiB, see `proto::deflate`) only while a message is
    /// compressed, unless context takeover was agreed for our direction.
    ///
    /// ```
    /// use wsmio::proto::deflate::Compression;
    /// use wsmio::proto::extension::DeflateParams;
    /// use wsmio::proto::{Message, Role, Sender};
    ///
    /// let params = DeflateParams {
    ///     server_no_context_takeover: true,
    ///     client_no_context_takeover: true,
    ///     server_max_window_bits: 15,
    ///     client_max_window_bits: 15,
    /// };
    /// let mut tx = Sender::with_deflate(Role::Server, params, Compression::default());
    /// let json = r#"{"type":"msg","topic":"lobby","data":{"text":"hello"}}"#.repeat(3);
    /// let mut out = Vec::new();
    /// tx.encode_message(Message::Text(&json), &mut out).unwrap();
    /// assert_eq!(out[0], 0xC1); // FIN + RSV1 + text
    /// assert!(out.len() < json.len());
    /// // Under `Compression::min_size` (128 by default): sent as it is.
    /// out.clear();
    /// tx.encode_message(Message::Text("hi"), &mut out).unwrap();
    /// assert_eq!(out, [0x81, 0x02, b'h', b'i']);
    /// ```
    pub fn with_deflate(role: Role, params: DeflateParams, compression: Compression) -> Sender {
        let mut tx = Sender::new(role);
        let extras = tx.extras.get_or_insert_with(Box::<Extras>::default);
        extras.deflate = Some(Compressor {
            deflater: Deflater::new(params.outgoing(role), compression.options),
            min_size: compression.min_size,
        });
        tx
    }

    fn compressor(&mut self) -> Option<&mut Compressor> {
        self.extras.as_mut()?.deflate.as_mut()
    }

    /// Would a whole message of `len` bytes be compressed (permessage-deflate
    /// negotiated and `len` at least [`Compression::min_size`])?
    pub fn compresses(&self, len: usize) -> bool {
        self.extras
            .as_ref()
            .and_then(|e| e.deflate.as_ref())
            .is_some_and(|c| len >= c.min_size)
    }

    /// Compress `payload` as one whole message (FIN) into `out` and return
    /// the header to send before it: RSV1 set (RFC 7692 §6), the length of
    /// what was appended, and for a client the key to mask those bytes with
    /// (`header.mask`; they are appended unmasked). The tail is stripped
    /// (§7.2.1).
    ///
    /// `Ok(None)`, with nothing appended: send the message uncompressed
    /// ([`Sender::data_header`], [`Sender::small_server_header`]) — no
    /// permessage-deflate, a message shorter than
    /// [`Compression::min_size`], or one that did not shrink (only without
    /// context takeover, where nothing carries over to later messages).
    /// `opcode` is Text or Binary.
    pub fn compress_message(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<EncodedHeader>, Error> {
        if !self.compresses(payload.len()) {
            return Ok(None);
        }
        // Nothing is compressed for a frame that could not be sent.
        self.check_frame(opcode, Fragment::Compressed)?;
        let start = out.len();
        let no_takeover = self.compress_part(payload, true, start, out)?;
        let len = out.len() - start;
        if no_takeover && len >= payload.len() {
            out.truncate(start);
            return Ok(None);
        }
        self.header_after_compressing(opcode, true, start, out)
            .map(Some)
    }

    /// Encode one frame of a message sent in fragments, compressed (RFC
    /// 7692 §6.1: RSV1 on the first frame only; the compressor's output so
    /// far goes in each frame, which may leave a middle frame empty). The
    /// first frame decides: compressed if permessage-deflate was negotiated
    /// (whatever the size), else plain, and its continuations follow.
    ///
    /// ```
    /// use wsmio::proto::deflate::Compression;
    /// use wsmio::proto::extension::DeflateParams;
    /// use wsmio::proto::{OpCode, Role, Sender};
    ///
    /// let params = DeflateParams {
    ///     server_no_context_takeover: false,
    ///     client_no_context_takeover: false,
    ///     server_max_window_bits: 15,
    ///     client_max_window_bits: 15,
    /// };
    /// let mut tx = Sender::with_deflate(Role::Server, params, Compression::default());
    /// let mut out = Vec::new();
    /// tx.encode_compressed_data(OpCode::Text, false, b"Hel", &mut out).unwrap();
    /// assert_eq!(out[0], 0x41); // RSV1 + text, no FIN
    /// let second = out.len();
    /// tx.encode_compressed_data(OpCode::Continuation, true, b"lo", &mut out).unwrap();
    /// assert_eq!(out[second], 0x80); // FIN + continuation, RSV1 clear
    /// ```
    pub fn encode_compressed_data(
        &mut self,
        opcode: OpCode,
        fin: bool,
        part: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let compressed = match opcode {
            OpCode::Continuation => self.fragment == Fragment::Compressed,
            _ => self.compressor().is_some(),
        };
        if !compressed {
            return self.encode_data(opcode, fin, part, out);
        }
        self.check_frame(opcode, Fragment::Compressed)?;
        let start = out.len();
        self.compress_part(part, fin, start, out)?;
        let h = self.header_after_compressing(opcode, fin, start, out)?;
        finish_frame(out, start, &h);
        Ok(())
    }

    /// Run `part` through the compressor, appending to `out` (from
    /// `start`). Returns whether the direction has no context takeover.
    fn compress_part(
        &mut self,
        part: &[u8],
        fin: bool,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let Some(c) = self.compressor() else {
            return Err(Error::CompressionFailed);
        };
        let no_takeover = c.deflater.no_context_takeover();
        if let Err(e) = c.deflater.compress_part(part, fin, out) {
            out.truncate(start);
            return Err(e.into());
        }
        Ok(no_takeover)
    }

    /// The header for the `out.len() - start` compressed bytes just
    /// written. If it cannot be had (no masking key), the bytes are taken
    /// back and the compressor forgets its context: the peer never sees
    /// this message, so later ones must not refer to it.
    fn header_after_compressing(
        &mut self,
        opcode: OpCode,
        fin: bool,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<EncodedHeader, Error> {
        let len = (out.len() - start) as u64;
        let h = self.frame_header(opcode, fin, Fragment::Compressed, len);
        if h.is_err() {
            out.truncate(start);
            if let Some(c) = self.compressor() {
                c.deflater.abort();
            }
        }
        h
    }

    /// Does our compressor keep its context from one message to the next
    /// (context takeover agreed for our direction, RFC 7692 §7.1.1)?
    /// Without it every message stands alone, as a frame compressed once
    /// for many does: such a frame ([`crate::proto::deflate::SharedDeflater`])
    /// may stand for any of our messages.
    pub fn keeps_context(&self) -> bool {
        self.extras
            .as_ref()
            .and_then(|e| e.deflate.as_ref())
            .is_some_and(|c| !c.deflater.no_context_takeover())
    }

    /// The [`SharedKey`] of this connection: which frames compressed once
    /// for many ([`crate::proto::deflate::encode_shared_frame`]) it can
    /// take. `None`: no permessage-deflate (send it the uncompressed
    /// frame), or the client role (shared frames are unmasked server
    /// frames).
    pub fn shared_key(&self) -> Option<SharedKey> {
        if self.role == Role::Client {
            return None;
        }
        let c = self.extras.as_ref()?.deflate.as_ref()?;
        Some(SharedKey::new(c.deflater.window_bits()))
    }

    /// Before queueing a shared frame compressed for `frame`: the checks of
    /// [`Sender::check_whole_message`] (an error: do not send), then
    /// whether this connection can read it (`Ok(false)`: send it the
    /// uncompressed frame). On `Ok(true)` a compressor that keeps context
    /// between messages forgets it: the peer's window now holds the shared
    /// message, which ours does not, so our next message must not refer
    /// back (RFC 7692 §7.1.1 lets a sender use less context, never other).
    #[must_use = "Ok(false): this connection needs the uncompressed frame"]
    pub fn admit_shared_compressed(&mut self, frame: SharedKey) -> Result<bool, Error> {
        self.check_whole_message()?;
        if !self.shared_key().is_some_and(|k| k.accepts(frame)) {
            return Ok(false);
        }
        if let Some(c) = self.compressor() {
            if !c.deflater.no_context_takeover() {
                c.deflater.abort();
            }
        }
        Ok(true)
    }
}
