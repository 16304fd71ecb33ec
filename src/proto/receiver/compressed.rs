//! The compressed-message path of [`Receiver`] (RFC 7692 §6.2, §7.2.2): the
//! payload of a message whose first frame had RSV1 is inflated as it
//! arrives, frame by frame and read by read, and what comes out is checked
//! and delivered exactly as an uncompressed message's bytes are — UTF-8
//! validated incrementally (failing fast, 1007), counted against the
//! message size limit before it exists (1009), reassembled up to that
//! limit or handed out as chunks.
//!
//! Nothing of the compressed bytes is kept: each piece of payload goes
//! through the decompressor at once, whose output (at most 4 KiB at a time,
//! from a buffer on the stack) is all that is buffered.

use super::{append_bounded, deliver, Chunk, Partial, ReceiveHandler, Receiver};
use crate::proto::error::Error;
use crate::proto::limits::{DeliveryMode, Limits};
use crate::proto::utf8::Utf8Validator;

impl Receiver {
    /// A compressed message starts: its decompressed size may not pass the
    /// message size limit (checked by the decompressor before each chunk of
    /// output is produced).
    pub(super) fn start_compressed(&mut self, limits: &Limits) {
        if let Some(inf) = self.inflater.as_mut() {
            inf.set_limit(limits.max_message_size);
        }
    }

    /// The next piece of a compressed message's payload (empty for an empty
    /// frame): inflate it, and at the end of the message's last frame
    /// append the tail (§7.2.2), finish, and deliver.
    pub(super) fn compressed_payload<H: ReceiveHandler>(
        &mut self,
        chunk: &[u8],
        frame_done: bool,
        limits: &Limits,
        h: &mut H,
    ) -> Result<(), Error> {
        let text = self.message.is_some_and(|m| m.is_text());
        let message_done = frame_done && self.fin;
        // RSV1 got this far only with a decompressor (`rsv_allowed`).
        let Some(inf) = self.inflater.as_deref_mut() else {
            return Err(Error::ReservedBits);
        };
        let mut out = Inflated {
            text,
            chunks: limits.delivery == DeliveryMode::Chunks,
            utf8: &mut self.utf8,
            chunk_sent: &mut self.chunk_sent,
            partial: &mut self.partial,
            limits,
            h,
        };
        inf.feed(chunk, |c| out.push(c))?;
        if !message_done {
            return Ok(());
        }
        inf.finish(|c| out.push(c))?;
        self.message = None;
        out.end()
    }
}

/// Where a compressed message's inflated bytes go: the UTF-8 check, then
/// the handler (chunks) or the reassembly buffer (whole messages).
struct Inflated<'a, H> {
    text: bool,
    chunks: bool,
    utf8: &'a mut Utf8Validator,
    chunk_sent: &'a mut bool,
    partial: &'a mut Option<Box<Partial>>,
    limits: &'a Limits,
    h: &'a mut H,
}

impl<H: ReceiveHandler> Inflated<'_, H> {
    /// A piece of the inflated message (at most `INFLATE_CHUNK` bytes, all
    /// within the size limit).
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.text {
            // RFC 6455 §8.1 on the decompressed text, as it comes.
            self.utf8.feed(bytes).map_err(|_| Error::InvalidUtf8)?;
        }
        if self.chunks {
            let first = !*self.chunk_sent;
            *self.chunk_sent = true;
            self.h.on_chunk(Chunk {
                text: self.text,
                data: bytes,
                first,
                last: false,
            });
        } else {
            let p = self.partial.get_or_insert_with(Box::default);
            append_bounded(&mut p.message, bytes, self.limits);
        }
        Ok(())
    }

    /// The message is complete: check the end of the text, then deliver it
    /// (whole, or as an empty last chunk: the data went out already).
    fn end(self) -> Result<(), Error> {
        if self.text {
            self.utf8.finish().map_err(|_| Error::InvalidUtf8)?;
        }
        if self.chunks {
            let first = !*self.chunk_sent;
            *self.chunk_sent = true;
            self.h.on_chunk(Chunk {
                text: self.text,
                data: &[],
                first,
                last: true,
            });
        } else {
            // Taken out: the buffer is freed once delivered.
            let message = self
                .partial
                .as_mut()
                .map(|p| std::mem::take(&mut p.message))
                .unwrap_or_default();
            deliver(self.h, self.text, &message);
        }
        Ok(())
    }
}
