//! Sends on client connections: every frame a client sends is masked with
//! a fresh key (RFC 6455 §5.3), so nothing pre-encoded can go out as it
//! is. A message is encoded (and compressed, if permessage-deflate was
//! agreed) by the connection's `Sender`; a shared [`Frame`] — encoded once,
//! unmasked, for servers' fan-out — is re-framed and masked per connection
//! (its compressed encodings are for servers' peers and are not used).
//! Off the server's hot path: `Core::send` and `Core::send_shared` branch
//! here on the sender's role.

use super::core::{slot, Core, DIRECT_WRITE_THRESHOLD};
use super::frame::{Frame, SendStatus};
use super::id::ConnId;
use crate::proto::{Message, OpCode};

impl Core {
    /// Queue `msg` on client connection `id` (admitted by the caller).
    #[cold]
    pub(super) fn send_masked(&mut self, id: ConnId, msg: Message<'_>) -> SendStatus {
        let mut out = std::mem::take(&mut self.mask_scratch);
        out.clear();
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        if c.tx.encode_message(msg, &mut out).is_err() {
            self.mask_scratch = out;
            return SendStatus::Closed;
        }
        self.queue_masked(id, out)
    }

    /// Queue the shared `frame` (one or more whole server frames, see
    /// [`Frame::batch`]) on client connection `id`, each re-framed masked.
    #[cold]
    pub(super) fn send_shared_masked(&mut self, id: ConnId, frame: &Frame) -> SendStatus {
        let mut out = std::mem::take(&mut self.mask_scratch);
        out.clear();
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        let mut bytes: &[u8] = &frame.bytes;
        while let Some((op, fin, payload, next)) = split_frame(bytes) {
            if c.tx.encode_data(op, fin, payload, &mut out).is_err() {
                self.mask_scratch = out;
                return SendStatus::Closed;
            }
            bytes = next;
        }
        self.queue_masked(id, out)
    }

    /// Queue the encoded frames `out` (copied into the coalescing buffer,
    /// or queued as they are when large) and keep the scratch buffer.
    fn queue_masked(&mut self, id: ConnId, out: Vec<u8>) -> SendStatus {
        let soft = self.soft_limit();
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        if out.len() >= DIRECT_WRITE_THRESHOLD {
            c.wq.push_owned(out, &mut self.pool);
        } else {
            c.wq.push_bytes(&[&out], &mut self.pool);
            self.mask_scratch = out;
        }
        Self::queued(c, id, soft, self.reading, &mut self.dirty)
    }
}

/// The first frame of `bytes` (an unmasked server frame as [`Frame`] makes
/// it): opcode, FIN, payload, and what follows it. `None` at the end or on
/// bytes that are not such a frame.
fn split_frame(bytes: &[u8]) -> Option<(OpCode, bool, &[u8], &[u8])> {
    let (&b0, rest) = bytes.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let op = OpCode::from_bits(b0 & 0x0f).ok()?;
    // §5.2: payload length in 7 bits, or 16 or 64 bits after 126 or 127.
    let (len, rest) = match b1 & 0x7f {
        126 => {
            let (l, r) = rest.split_first_chunk::<2>()?;
            (u16::from_be_bytes(*l) as u64, r)
        }
        127 => {
            let (l, r) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*l), r)
        }
        n => (n as u64, rest),
    };
    let len = usize::try_from(len).ok().filter(|&l| l <= rest.len())?;
    let (payload, next) = rest.split_at(len);
    Some((op, b0 & 0x80 != 0, payload, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_frames_split_at_every_length_encoding() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let batch = Frame::batch(&[Frame::text(&text), Frame::binary(b"end")]);
            let (op, fin, payload, next) = split_frame(batch.as_bytes()).unwrap();
            assert_eq!((op, fin, payload.len()), (OpCode::Text, true, len));
            let (op, _, payload, next) = split_frame(next).unwrap();
            assert_eq!((op, payload), (OpCode::Binary, &b"end"[..]));
            assert!(split_frame(next).is_none());
        }
    }
}
