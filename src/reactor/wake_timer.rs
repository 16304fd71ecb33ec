//! The loop's wake-up timer: on Linux a `timerfd` in the poll set, so the
//! loop can sleep in `epoll_wait` without a timeout.
//!
//! A timeout given to `epoll_wait` arms a kernel high-resolution timer on
//! every sleep and cancels it on every wake-up. With a connection open there
//! is always a deadline (idle, heartbeat), so every sleep paid for it: on
//! the depth-1 echo that was 3–5 % of the server's CPU per round trip and
//! ≈ 0.35 µs of its median latency (BENCHMARKS.md, optimization log). The
//! timerfd is set only when the loop needs to wake earlier than it is
//! already set to; a wake-up that comes too early just makes the loop find
//! nothing due and set it again.
//!
//! Elsewhere (or if the descriptor cannot be made) the loop falls back to
//! the `epoll_wait` timeout.

use std::io;
use std::time::Duration;

use mio::{Registry, Token};

use super::timer::Millis;

/// A one-shot wake-up registered in the loop's poll set.
#[derive(Debug)]
pub(crate) struct WakeTimer {
    #[cfg(target_os = "linux")]
    fd: std::fs::File,
    /// Loop time it is set to fire at (`None`: not set, or fired).
    armed_at: Option<Millis>,
}

impl WakeTimer {
    /// Whether the timer is set to fire by loop time `at`: then the loop
    /// may sleep without setting it (or reading the clock).
    pub(crate) fn fires_by(&self, at: Millis) -> bool {
        self.armed_at.is_some_and(|a| a <= at)
    }
}

#[cfg(target_os = "linux")]
impl WakeTimer {
    /// A timer that reports readiness under `token` when it fires.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // Exercised by every test of a timer (handshake, idle, heartbeat,
        // close and shutdown timeouts) and by the tests below.
        // SAFETY: `timerfd_create` takes no pointers; its result is checked
        // before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just created and owned by nothing else.
        let fd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )?;
        Ok(WakeTimer { fd, armed_at: None })
    }

    /// Make sure the loop wakes by loop time `at`, which is `delay` from now
    /// (`delay` > 0). A no-op if the timer is already set to fire no later.
    pub(crate) fn arm(&mut self, at: Millis, delay: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.fires_by(at) {
            return Ok(());
        }
        // A zero `it_value` would disarm it instead.
        let delay = delay.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: delay.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: delay.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `fd` is a timerfd this struct owns; `spec` is a valid
        // `itimerspec` that outlives the call; the old value is not asked for
        // (null is allowed).
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed_at = Some(at);
        Ok(())
    }

    /// The timer reported readiness: take its expiry count, so that the next
    /// expiry is a new edge, and forget the deadline.
    pub(crate) fn fired(&mut self) {
        use std::io::Read;
        self.armed_at = None;
        let mut count = [0u8; 8];
        // Nothing to do on error: WouldBlock means it was already read.
        let _ = (&self.fd).read(&mut count);
    }
}

#[cfg(not(target_os = "linux"))]
impl WakeTimer {
    /// No timerfd here: the loop uses `epoll_wait`/`kqueue` timeouts.
    pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn arm(&mut self, _at: Millis, _delay: Duration) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn fired(&mut self) {
        self.armed_at = None;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Instant;

    const T: Token = Token(7);

    /// Poll until the timer's event or `limit` after `start`; the time
    /// from `start` to the event.
    fn wait_for_fire(poll: &mut Poll, start: Instant, limit: Duration) -> Option<Duration> {
        let mut events = Events::with_capacity(8);
        while start.elapsed() < limit {
            poll.poll(&mut events, Some(limit - start.elapsed().min(limit)))
                .ok()?;
            if events.iter().any(|e| e.token() == T) {
                return Some(start.elapsed());
            }
        }
        None
    }

    #[test]
    fn fires_once_after_its_delay_and_again_when_re_armed() {
        let mut poll = Poll::new().unwrap();
        let mut t = WakeTimer::new(poll.registry(), T).unwrap();
        // Taken before arming: CLOCK_MONOTONIC timers never fire early.
        let start = Instant::now();
        t.arm(20, Duration::from_millis(20)).unwrap();
        let took = wait_for_fire(&mut poll, start, Duration::from_secs(2)).expect("timer fired");
        assert!(took >= Duration::from_millis(20), "fired early: {took:?}");
        t.fired();
        // One-shot: nothing more until it is set again.
        let quiet = wait_for_fire(&mut poll, Instant::now(), Duration::from_millis(60));
        assert_eq!(quiet, None);
        t.arm(100, Duration::from_millis(5)).unwrap();
        assert!(wait_for_fire(&mut poll, Instant::now(), Duration::from_secs(2)).is_some());
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_one() {
        let mut poll = Poll::new().unwrap();
        let mut t = WakeTimer::new(poll.registry(), T).unwrap();
        t.arm(10, Duration::from_millis(10)).unwrap();
        // Asking for later must not push the wake-up out.
        t.arm(10_000, Duration::from_secs(10)).unwrap();
        assert_eq!(t.armed_at, Some(10));
        let took =
            wait_for_fire(&mut poll, Instant::now(), Duration::from_secs(2)).expect("timer fired");
        assert!(
            took < Duration::from_secs(5),
            "the earlier deadline was lost"
        );
        t.fired();
        assert_eq!(t.armed_at, None);
        // Earlier than what is set: re-armed.
        t.arm(5_000, Duration::from_secs(5)).unwrap();
        t.arm(50, Duration::from_millis(5)).unwrap();
        assert_eq!(t.armed_at, Some(50));
        assert!(wait_for_fire(&mut poll, Instant::now(), Duration::from_secs(2)).is_some());
    }
}
