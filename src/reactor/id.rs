//! Connection ids that carry a generation, and a cheap hasher for maps
//! keyed by them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Identifies one connection for its whole life.
///
/// The slab slot (`key`) is reused after a connection closes; the
/// generation is not, so an id kept for a closed connection never reaches the
/// connection that took its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

// One write of the whole id: with `ConnIdHasher` a lookup is one mix.
impl Hash for ConnId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.as_u64());
    }
}

/// A map keyed by [`ConnId`], hashed with [`ConnIdHasher`].
pub type ConnIdMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnIdHasher>>;

/// A hasher for [`ConnId`] keys. The reactor makes the ids, peers cannot
/// choose them, so the keyed SipHash that protects maps with peer-chosen
/// keys (topic names) buys nothing here; it cost ≈ 170 instructions per
/// lookup, this costs a handful.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only for keys other than a `ConnId`: fold the bytes in.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finalizer: every input bit reaches both the
        // low bits the table indexes with and the high bits it tags with.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Tokens below this are the listener's, the waker's and the wake timer's.
pub(crate) const TOKEN_BASE: usize = 3;

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.key, self.gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_map_finds_every_id_and_tells_generations_apart() {
        let mut m: ConnIdMap<u64> = ConnIdMap::default();
        for gen in 0..4u32 {
            for key in 0..5_000u32 {
                m.insert(ConnId { key, gen }, u64::from(key) * 10 + u64::from(gen));
            }
        }
        assert_eq!(m.len(), 20_000);
        for gen in 0..4u32 {
            for key in (0..5_000u32).step_by(7) {
                let id = ConnId { key, gen };
                assert_eq!(m.get(&id), Some(&(u64::from(key) * 10 + u64::from(gen))));
                assert_eq!(ConnId::from_u64(id.as_u64()), id);
            }
        }
        assert!(m.remove(&ConnId { key: 3, gen: 1 }).is_some());
        assert!(!m.contains_key(&ConnId { key: 3, gen: 1 }));
        assert!(m.contains_key(&ConnId { key: 3, gen: 2 }));
        // Neighbouring ids spread over the low bits the table indexes with
        // and the top 7 bits it tags with (random would fill ≈ 63 % of
        // 1,024 buckets and all 128 tags).
        let h = |id: ConnId| {
            let mut s = ConnIdHasher::default();
            id.hash(&mut s);
            s.finish()
        };
        let hashes: Vec<u64> = (0..1_024u32).map(|key| h(ConnId { key, gen: 0 })).collect();
        let buckets: std::collections::HashSet<u64> = hashes.iter().map(|x| x & 1023).collect();
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|x| x >> 57).collect();
        assert!(
            buckets.len() > 600 && tags.len() == 128,
            "{} {}",
            buckets.len(),
            tags.len()
        );
    }
}
