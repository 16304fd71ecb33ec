//! Where the hub client's randomness comes from — reconnect jitter, retry
//! jitter and idempotency keys — behind one small trait, so that tests
//! can seed it and replay the same delays.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of random 64-bit numbers.
pub trait RandomSource: Send {
    /// The next number.
    fn next_u64(&mut self) -> u64;
}

/// The operating system's generator (`getrandom`), the default. Should it
/// ever fail, numbers come from a [`SeededRandom`] seeded with the clock
/// and the address of this value: still distinct keys per client, only not
/// unpredictable.
#[derive(Debug, Default)]
pub struct OsRandom {
    fallback: Option<SeededRandom>,
}

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        if getrandom::getrandom(&mut b).is_ok() {
            return u64::from_le_bytes(b);
        }
        let seed = self as *const Self as u64;
        self.fallback
            .get_or_insert_with(|| {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                SeededRandom::new(t ^ seed)
            })
            .next_u64()
    }
}

/// A seedable generator (SplitMix64): the same seed gives the same
/// numbers, for tests and simulations. Not for keys an attacker must not
/// guess.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom { state: seed }
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea, Flood 2014), as in `java.util.SplittableRandom`.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A uniformly random duration in `[0, max]`, to the nanosecond.
pub(super) fn up_to(rng: &mut dyn RandomSource, max: Duration) -> Duration {
    let span = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    // Multiply-shift: the top bits of r · (span + 1) are uniform in
    // [0, span] (Lemire), without the bias of a modulo.
    let n = (u128::from(rng.next_u64()) * (u128::from(span) + 1)) >> 64;
    Duration::from_nanos(n as u64)
}

/// A fresh idempotency key: 128 random bits as 32 hex digits (the hub
/// takes 1–128 bytes).
pub(super) fn key(rng: &mut dyn RandomSource) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_numbers_repeat_and_spread() {
        let a: Vec<u64> = {
            let mut r = SeededRandom::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SeededRandom::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(a[0], a[1]);
        let max = Duration::from_millis(10);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let d = up_to(&mut r, max);
            assert!(d <= max);
            seen_low |= d < max / 10;
            seen_high |= d > max * 9 / 10;
        }
        assert!(seen_low && seen_high);
        assert_eq!(up_to(&mut r, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn keys_are_distinct_hex() {
        let mut r = OsRandom::default();
        let (a, b) = (key(&mut r), key(&mut r));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
