//! Where the loop reads the time: the system's monotonic clock, or a clock
//! that only moves when a test moves it ([`ManualClock`]).
//!
//! The loop reads its clock once per turn and hands that time to every
//! timer decision (`timeouts.rs`), as quinn-proto takes time as an input
//! (`handle_timeout(now)`). With a manual clock a test drives the handshake
//! timeout, heartbeats, close and shutdown deadlines step by step instead of
//! sleeping through them.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::timer::Millis;

/// How long [`ManualClock::advance`] waits for the loop (real time): a loop
/// that takes longer is stuck or gone.
const ADVANCE_WAIT: Duration = Duration::from_secs(10);

/// The loop's time source ([`super::Config::with_clock`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Clock {
    /// The system's monotonic clock (the default).
    #[default]
    System,
    /// A clock moved by hand, for tests.
    Manual(ManualClock),
}

impl From<ManualClock> for Clock {
    fn from(c: ManualClock) -> Clock {
        Clock::Manual(c)
    }
}

impl Clock {
    /// Milliseconds since `start` (a loop's start), in whole milliseconds.
    #[inline]
    pub(crate) fn read(&self, start: Instant) -> Millis {
        match self {
            Clock::System => millis(start.elapsed()),
            Clock::Manual(m) => m.now_ms(),
        }
    }

    /// Whether the time moves only when told to (then no timer needs the
    /// loop to wake up by itself).
    pub(crate) fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

/// `d` in whole milliseconds (at most `u64::MAX / 2`, so deadlines can add
/// to it). No 128-bit division: this runs on every loop turn.
pub(crate) fn millis(d: Duration) -> Millis {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
        .min(u64::MAX / 2)
}

/// A clock that moves only when [`ManualClock::advance`] moves it: give a
/// clone to a server with [`super::Config::with_clock`], keep one to drive
/// it. It starts at 0 ms, the loop's start.
///
/// The loop then never wakes up for a timer by itself; `advance` wakes it,
/// and returns once the loop has run a whole turn at the new time — the
/// timers due by then handled, their output written to the sockets — so
/// the test can look at the result at once. One clock serves one server.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled at the end of each loop turn.
    turned: Condvar,
}

#[derive(Debug, Default)]
struct State {
    now: Millis,
    /// The time of the last turn the loop completed.
    done: Option<Millis>,
    /// Wakes the loop; set when a server takes the clock.
    waker: Option<Arc<mio::Waker>>,
    /// The loop has stopped: nothing to wait for.
    stopped: bool,
}

impl ManualClock {
    /// A clock at 0 ms.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves plain numbers
        // behind, still consistent.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time: milliseconds since the loop started, as the loop sees it.
    pub fn now_ms(&self) -> u64 {
        self.state().now
    }

    /// Move the clock forward by `d` (whole milliseconds) and wait until
    /// the loop has completed a turn at the new time. Returns `false` if no
    /// loop did so within 10 s of real time (none attached, stopped, or
    /// stuck).
    pub fn advance(&self, d: Duration) -> bool {
        let mut st = self.state();
        st.now = st.now.saturating_add(millis(d));
        let target = st.now;
        let Some(waker) = st.waker.clone() else {
            return false;
        };
        if st.stopped || waker.wake().is_err() {
            return false;
        }
        let deadline = Instant::now() + ADVANCE_WAIT;
        loop {
            if st.done.is_some_and(|t| t >= target) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if st.stopped || left.is_zero() {
                return false;
            }
            st = match self.0.turned.wait_timeout(st, left) {
                Ok((st, _)) => st,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// A server takes the clock: `advance` wakes its loop with `waker`.
    pub(crate) fn attach(&self, waker: Arc<mio::Waker>) {
        let mut st = self.state();
        st.waker = Some(waker);
        st.done = None;
        st.stopped = false;
    }

    /// The loop completed a turn that ran at time `now`.
    pub(crate) fn turn_done(&self, now: Millis) {
        self.state().done = Some(now);
        self.0.turned.notify_all();
    }

    /// The loop has stopped.
    pub(crate) fn detach(&self) {
        let mut st = self.state();
        st.stopped = true;
        st.waker = None;
        self.0.turned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_truncates_like_as_millis_and_saturates() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_micros(1_500),
            Duration::new(3, 999_999_999),
            Duration::new(86_400 * 365, 123_456_789),
        ] {
            assert_eq!(u128::from(millis(d)), d.as_millis(), "{d:?}");
        }
        assert_eq!(millis(Duration::MAX), u64::MAX / 2);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_waits_for_the_turn() {
        let clock = ManualClock::new();
        let read = Clock::from(clock.clone());
        let start = Instant::now();
        assert_eq!(read.read(start), 0);
        // No loop attached: the time moves, nothing is waited for.
        assert!(!clock.advance(Duration::from_millis(5)));
        assert_eq!(read.read(start), 5);

        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        clock.attach(waker);
        // A "loop" that completes a turn at whatever time it reads.
        let looper = {
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut poll = poll;
                let mut events = mio::Events::with_capacity(4);
                poll.poll(&mut events, None).unwrap();
                clock.turn_done(clock.now_ms());
                clock.detach();
            })
        };
        assert!(clock.advance(Duration::from_millis(995)));
        assert_eq!(clock.now_ms(), 1000);
        looper.join().unwrap();
        // Stopped: no waiting.
        assert!(!clock.advance(Duration::from_secs(1)));
        assert_eq!(clock.now_ms(), 2000);
    }
}
