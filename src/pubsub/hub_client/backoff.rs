//! The reconnect delay: exponential backoff with full jitter, started
//! over only after a connection stayed up a while.
//!
//! The n-th attempt in a row waits a uniformly random time in
//! `[0, min(max, base · 2ⁿ)]` ("full jitter", as in the AWS Architecture
//! Blog's "Exponential Backoff and Jitter"): after a hub restart, its
//! clients come back spread over the window instead of all at once. A
//! connection that opens does not reset the count by itself — a hub that
//! accepts and then closes at once would otherwise be hammered at the
//! shortest delay — only one that stayed up `stable_after` does.

use std::time::Duration;

use super::random::{up_to, RandomSource};

/// The highest exponent used: `base · 2³⁰` exceeds any sensible cap.
const MAX_EXPONENT: u32 = 30;

/// Attempts in a row, and the delays they get.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The delay before the next attempt, and that attempt's number in the
    /// current run (1 for the first retry).
    pub fn next(
        &mut self,
        base: Duration,
        max: Duration,
        rng: &mut dyn RandomSource,
    ) -> (u32, Duration) {
        let delay = up_to(rng, ceiling(base, max, self.attempt));
        self.attempt = (self.attempt + 1).min(MAX_EXPONENT);
        (self.attempt, delay)
    }

    /// Start over: the next delay is at most `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// A connection that was up `up` ends: the count starts over if it
    /// stayed up at least `stable_after`.
    pub fn connection_ended(&mut self, up: Duration, stable_after: Duration) {
        if up >= stable_after {
            self.reset();
        }
    }
}

/// `min(max, base · 2^attempt)`, without overflow.
pub(super) fn ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.checked_mul(1u32 << attempt.min(MAX_EXPONENT))
        .map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::super::random::SeededRandom;
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(15);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ms: Vec<u128> = (0..8).map(|a| ceiling(BASE, MAX, a).as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        assert_eq!(ceiling(BASE, MAX, 1000), MAX);
        assert_eq!(ceiling(Duration::from_secs(u64::MAX / 2), MAX, 30), MAX);
    }

    #[test]
    fn delays_stay_within_their_ceiling_and_use_it() {
        let mut rng = SeededRandom::new(1);
        // Many runs of 10 attempts: every delay within its ceiling, and the
        // largest seen near it (full jitter, not half).
        let mut top = [Duration::ZERO; 10];
        for _ in 0..300 {
            let mut b = Backoff::default();
            for (i, t) in top.iter_mut().enumerate() {
                let (attempt, d) = b.next(BASE, MAX, &mut rng);
                assert_eq!(attempt as usize, i + 1);
                let c = ceiling(BASE, MAX, i as u32);
                assert!(d <= c, "attempt {attempt}: {d:?} > {c:?}");
                *t = (*t).max(d);
            }
        }
        for (i, t) in top.iter().enumerate() {
            assert!(*t >= ceiling(BASE, MAX, i as u32) * 9 / 10, "{i}: {t:?}");
        }
    }

    #[test]
    fn only_a_stable_connection_resets_the_count() {
        let mut rng = SeededRandom::new(2);
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.next(BASE, MAX, &mut rng);
        }
        b.connection_ended(Duration::from_millis(4999), Duration::from_secs(5));
        assert_eq!(b.next(BASE, MAX, &mut rng).0, 5);
        b.connection_ended(Duration::from_secs(5), Duration::from_secs(5));
        let (attempt, d) = b.next(BASE, MAX, &mut rng);
        assert_eq!(attempt, 1);
        assert!(d <= BASE);
    }
}
