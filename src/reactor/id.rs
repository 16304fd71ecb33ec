//! Connection ids that carry a generation.

/// Identifies one connection for its whole life.
///
/// The slab slot (`key`) is reused after a connection closes; the
/// generation is not, so an id kept for a closed connection never reaches the
/// connection that took its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The id as one integer (unique within a server's lifetime, as long as
    /// fewer than 2^32 connections were accepted).
    pub fn as_u64(self) -> u64 {
        (self.gen as u64) << 32 | self.key as u64
    }

    /// Rebuild an id from [`ConnId::as_u64`].
    pub fn from_u64(v: u64) -> Self {
        ConnId {
            key: v as u32,
            gen: (v >> 32) as u32,
        }
    }

    pub(crate) fn token(self) -> mio::Token {
        mio::Token(self.as_u64() as usize + TOKEN_BASE)
    }

    pub(crate) fn from_token(t: mio::Token) -> Self {
        ConnId::from_u64((t.0 - TOKEN_BASE) as u64)
    }
}

/// Tokens below this are the listener's and the waker's.
pub(crate) const TOKEN_BASE: usize = 2;

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.key, self.gen)
    }
}
