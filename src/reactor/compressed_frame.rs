//! A shared [`Frame`]'s compressed encodings (RFC 7692 §7.2.1, feature
//! `deflate`): made on the loop thread the first time the frame goes to a
//! connection that agreed to permessage-deflate, then queued as they are to
//! every connection that can read them — compress once, send to many.
//! Frames kept for a replay keep theirs; a [`Frame::batch`] is compressed
//! member by member, so each member's encoding is shared with wherever else
//! that member goes.
//!
//! An encoding is made with no context (`SharedDeflater`), so it decodes
//! the same whatever the receiver got before, within a window small enough
//! for the receiver (`SharedKey`). Usually one per frame serves all: the
//! window is cut to what the message needs, and browsers all agree to 15.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::deflate::LoopDeflate;
use super::frame::Frame;
use crate::proto::deflate::SharedKey;
use crate::proto::extension::{MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS};
use crate::proto::Message;

/// Frames whose payload is shorter carry no compressed encodings (and
/// allocate nothing for them): compressed with no context, such a message
/// does not shrink (64 bytes of hub JSON gain one byte; BENCHMARKS.md).
pub(crate) const MIN_COMPRESSED_FRAME: usize = 64;

/// How far back zlib's matches reach within a window: the window less its
/// look-ahead (`MIN_LOOKAHEAD`, 262 bytes).
const LOOKAHEAD: usize = 262;

/// Open connections of this process that agreed to permessage-deflate.
/// While there are none, frames are made without encodings: a server whose
/// peers all send plain pays no allocation per frame (callgrind: about 260
/// instructions per hub publish).
static DEFLATE_PEERS: AtomicUsize = AtomicUsize::new(0);

/// Counts one connection in [`DEFLATE_PEERS`] for as long as it lives
/// (held by the connection from its upgrade on).
#[derive(Debug)]
pub(crate) struct DeflatePeer(());

impl DeflatePeer {
    pub fn new() -> DeflatePeer {
        DEFLATE_PEERS.fetch_add(1, Ordering::Relaxed);
        DeflatePeer(())
    }
}

impl Drop for DeflatePeer {
    fn drop(&mut self) {
        DEFLATE_PEERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A frame's compressed encodings, shared by all its clones.
pub(crate) struct Encodings {
    source: Source,
    /// The first encoding made: usually the only one.
    first: OnceLock<Encoded>,
    /// Encodings for readers the first does not suit (a smaller agreed
    /// window): at most one per window, each smaller than the last.
    more: Mutex<Vec<Encoded>>,
}

/// What the frame's bytes are.
enum Source {
    /// One whole message: its type and where its payload starts.
    Message { text: bool, header_len: u8 },
    /// Messages back to back ([`Frame::batch`]).
    Batch(Box<[Frame]>),
}

/// One encoding: for readers whose key accepts `key`.
#[derive(Clone)]
pub(crate) struct Encoded {
    pub key: SharedKey,
    /// The compressed frame (or frames); `None`: send the plain bytes
    /// (under the size threshold, or no shorter compressed).
    pub bytes: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Encodings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encodings")
            .field("made", &self.first.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The smallest key whose window holds `len` bytes within zlib's reach:
/// no match of a message that fits can refer farther back, so the smaller
/// window loses nothing, and more readers accept it.
fn fitting_key(len: usize) -> SharedKey {
    let bits = (MIN_COMPRESS_WINDOW_BITS..MAX_WINDOW_BITS)
        .find(|&b| (1usize << b) - LOOKAHEAD >= len)
        .unwrap_or(MAX_WINDOW_BITS);
    SharedKey::new(bits)
}

/// The key every reader accepts (for "send it plain").
fn any_reader() -> SharedKey {
    SharedKey::new(MIN_COMPRESS_WINDOW_BITS)
}

impl Encodings {
    /// For a frame of one message (`header_len` bytes of header, then
    /// `payload_len`): `None` below [`MIN_COMPRESSED_FRAME`], or while no
    /// connection of the process agreed to permessage-deflate (such a
    /// frame goes plain to every connection, later ones too).
    pub fn message(text: bool, header_len: usize, payload_len: usize) -> Option<Arc<Encodings>> {
        let wanted = DEFLATE_PEERS.load(Ordering::Relaxed) > 0;
        (wanted && payload_len >= MIN_COMPRESSED_FRAME).then(|| {
            Encodings::new(Source::Message {
                text,
                header_len: header_len as u8,
            })
        })
    }

    /// For a batch of `frames`: `None` if none of them can be compressed.
    pub fn batch(frames: &[Frame]) -> Option<Arc<Encodings>> {
        frames
            .iter()
            .any(|f| f.compressed.is_some())
            .then(|| Encodings::new(Source::Batch(frames.into())))
    }

    fn new(source: Source) -> Arc<Encodings> {
        Arc::new(Encodings {
            source,
            first: OnceLock::new(),
            more: Mutex::new(Vec::new()),
        })
    }

    /// The encoding for a reader of key `reader` of the frame whose bytes
    /// are `plain`, made now if no encoding it accepts exists.
    pub fn get(&self, plain: &[u8], reader: SharedKey, z: &mut LoopDeflate) -> Cow<'_, Encoded> {
        let first = self.first.get_or_init(|| self.encode(plain, reader, z));
        if reader.accepts(first.key) {
            return Cow::Borrowed(first);
        }
        let mut more = self.more.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = more.iter().find(|e| reader.accepts(e.key)) {
            return Cow::Owned(e.clone());
        }
        let e = self.encode(plain, reader, z);
        more.push(e.clone());
        Cow::Owned(e)
    }

    fn encode(&self, plain: &[u8], reader: SharedKey, z: &mut LoopDeflate) -> Encoded {
        match &self.source {
            Source::Message { text, header_len } => {
                encode_message(plain, *text, usize::from(*header_len), reader, z)
            }
            Source::Batch(frames) => encode_batch(frames, reader, z),
        }
    }
}

/// One message's frame, compressed for `reader` if it is at least the
/// threshold long and shrinks.
fn encode_message(
    plain: &[u8],
    text: bool,
    header_len: usize,
    reader: SharedKey,
    z: &mut LoopDeflate,
) -> Encoded {
    let payload = plain.get(header_len..).unwrap_or_default();
    if payload.len() < z.min_size() {
        return Encoded {
            key: any_reader(),
            bytes: None,
        };
    }
    let msg = match (text, std::str::from_utf8(payload)) {
        (false, _) => Some(Message::Binary(payload)),
        (true, Ok(t)) => Some(Message::Text(t)),
        // A text frame is built from a `&str`: cannot happen.
        (true, Err(_)) => None,
    };
    let key = reader.min(fitting_key(payload.len()));
    let bytes = msg.and_then(|m| z.encode_shared(key, m, plain.len()));
    Encoded {
        key,
        bytes: bytes.map(Into::into),
    }
}

/// A batch's frames compressed for `reader`: each member as its own
/// encoding says (compressed, or plain), in order.
fn encode_batch(frames: &[Frame], reader: SharedKey, z: &mut LoopDeflate) -> Encoded {
    let mut key = any_reader();
    let mut out = Vec::new();
    let mut any = false;
    for f in frames {
        let enc = f.compressed.as_ref().map(|e| e.get(&f.bytes, reader, z));
        match enc
            .as_ref()
            .and_then(|e| e.bytes.as_ref().map(|b| (e.key, b)))
        {
            Some((k, bytes)) => {
                key = key.max(k);
                any = true;
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&f.bytes),
        }
    }
    Encoded {
        key,
        bytes: any.then(|| out.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_the_message() {
        assert_eq!(fitting_key(0), SharedKey::new(9));
        assert_eq!(fitting_key(250), SharedKey::new(9));
        assert_eq!(fitting_key(251), SharedKey::new(10));
        assert_eq!(fitting_key(4096), SharedKey::new(13));
        assert_eq!(fitting_key(1 << 20), SharedKey::new(15));
    }
}
