//! A token bucket per connection: `rate` messages per second, bursts up to
//! `burst`.

/// The bucket. Time is passed in (ms), never read here.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
    rate_per_ms: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: u32, now_ms: u64) -> Self {
        TokenBucket {
            tokens: burst as f64,
            last_ms: now_ms,
            rate_per_ms: rate_per_sec / 1000.0,
            burst: burst as f64,
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        let dt = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + dt * self.rate_per_ms).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10.0, 5, 0);
        for _ in 0..5 {
            assert!(b.try_take(0));
        }
        assert!(!b.try_take(0));
        assert!(!b.try_take(50));
        assert!(b.try_take(100));
        assert!(!b.try_take(100));
    }
}
