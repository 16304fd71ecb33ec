//! Incremental UTF-8 validation for text messages (RFC 6455 §5.6, §8.1).
//!
//! RFC 6455 §8.1: when an endpoint finds that a text message is not valid
//! UTF-8 it MUST _Fail the WebSocket Connection_ (close code 1007). A message
//! arrives in frames and a frame in reads, so a code point can be split
//! anywhere. [`Utf8Validator`] keeps at most 3 bytes of an unfinished code
//! point between chunks and reports an invalid byte as soon as it is seen,
//! not at the end of the message.
//!
//! Validation itself is delegated to `core::str::from_utf8`, whose error
//! tells both where the valid prefix ends and whether the input merely stops
//! in the middle of a (so far valid) code point.

/// Streaming validator state: the unfinished code point carried between chunks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    pending: [u8; 4],
    len: u8,
}

/// Chunks up to this long are first checked for being all ASCII.
const SHORT: usize = 256;

/// The input is not UTF-8 (RFC 6455 close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Width of the code point introduced by a lead byte (only called on bytes
/// `from_utf8` already accepted as the start of an incomplete sequence).
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            len: 0,
        }
    }

    /// Validate the next chunk of the message.
    #[inline]
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            // Complete the carried code point first.
            let have = self.len as usize;
            let need = width(self.pending[0]) - have;
            let take = need.min(chunk.len());
            self.pending[have..have + take].copy_from_slice(&chunk[..take]);
            let total = have + take;
            match core::str::from_utf8(&self.pending[..total]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; more bytes needed.
                    self.len = total as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            chunk = &chunk[take..];
        }
        // Short all-ASCII chunks (most text messages are short) need no
        // decoding at all; `from_utf8` has its own word-at-a-time ASCII
        // path for long ones, and pays for setting it up on short ones.
        if chunk.len() <= SHORT && chunk.is_ascii() {
            return Ok(());
        }
        match core::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    // The chunk ends inside a code point that is valid so far.
                    let tail = &chunk[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// The message ended: it is valid only if no code point is unfinished.
    #[inline]
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.len == 0;
        *self = Self::new();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// True when a code point is split across the chunk boundary.
    pub fn is_mid_code_point(&self) -> bool {
        self.len != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(bytes: &[u8]) {
        let expect = core::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                let r = v
                    .feed(&bytes[..a])
                    .and_then(|_| v.feed(&bytes[a..b]))
                    .and_then(|_| v.feed(&bytes[b..]))
                    .and_then(|_| v.finish());
                assert_eq!(r.is_ok(), expect, "{bytes:x?} split {a} {b}");
            }
        }
    }

    #[test]
    fn valid_and_invalid_texts_at_every_split() {
        check_all_splits("Hello-µ@ßöäüàá-UTF-8!!".as_bytes());
        check_all_splits("κόσμε 𝄞 €".as_bytes());
        check_all_splits(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited");
        check_all_splits(b"\xf4\x90\x80\x80");
        check_all_splits(b"abc\xc0\xaf");
        check_all_splits(b"\xe0\x80\xaf");
        check_all_splits(b"ok\xe2\x82");
        check_all_splits(b"12345678901234567890\xff");
    }

    #[test]
    fn fails_fast_on_first_bad_byte() {
        // Autobahn 6.4.1: the invalid byte is in the middle chunk.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(b"\xf4\x90\x80\x80").is_err());
        // A prefix that can never be completed fails before the rest arrives.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf4").is_ok());
        assert!(v.feed(b"\x90").is_err());
    }

    #[test]
    fn short_ascii_path_agrees_with_from_utf8() {
        // Lengths on both sides of SHORT; the last byte ASCII, a lead byte
        // left open, a stray continuation byte, or an invalid byte.
        for len in [0, 1, 63, 64, SHORT - 1, SHORT, SHORT + 1, 2 * SHORT] {
            for last in [b'z', 0xe2, 0x80, 0xff] {
                let mut text = vec![b'a'; len];
                text.push(last);
                let mut v = Utf8Validator::new();
                let r = v.feed(&text).and_then(|_| v.finish());
                assert_eq!(
                    r.is_ok(),
                    core::str::from_utf8(&text).is_ok(),
                    "{len} {last:x}"
                );
            }
        }
    }

    #[test]
    fn incomplete_at_end_is_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert!(v.is_mid_code_point());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
