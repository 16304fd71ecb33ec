//! The wake flag: "call [`Handler::wake`](super::Handler::wake)", raised
//! by [`Ctx::wake`](super::Ctx::wake) and [`Handle::wake`](super::Handle::wake)
//! from any thread, taken once per loop turn.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The loop has stopped: nobody will take the flag any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// The "call [`Handler::wake`](super::Handler::wake)" flag shared by the
/// loop and its [`Handle`](super::Handle)s. Many wake-ups before the loop gets to it make
/// one call and one `eventfd` write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wake(Arc<AtomicU8>);

const DOWN: u8 = 0;
const UP: u8 = 1;
const STOPPED: u8 = 2;

impl Wake {
    /// Raise the flag: `Ok(true)` if it was down (the loop must be woken),
    /// `Err` once the loop has stopped.
    pub fn raise(&self) -> Result<bool, Stopped> {
        match self
            .0
            .compare_exchange(DOWN, UP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(true),
            Err(UP) => Ok(false),
            Err(_) => Err(Stopped),
        }
    }

    /// Whether the flag is up (the loop must not sleep).
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire) == UP
    }

    /// Take the flag: true if the handler is owed a wake call.
    pub fn take(&self) -> bool {
        // A plain load first: the common case (down) costs no write.
        self.is_raised()
            && self
                .0
                .compare_exchange(UP, DOWN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The loop is gone: later wake-ups fail with `Stopped`.
    pub fn stop(&self) {
        self.0.store(STOPPED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_coalesce_until_taken_and_fail_once_stopped() {
        let w = Wake::default();
        assert!(!w.take(), "nothing owed yet");
        assert_eq!(w.raise(), Ok(true), "the first raise wakes the loop");
        assert_eq!(w.raise(), Ok(false), "later ones before the take do not");
        assert!(w.is_raised());
        assert!(w.take());
        assert!(!w.take(), "one call per raise-and-take");
        assert_eq!(w.raise(), Ok(true));
        w.stop();
        assert!(!w.take());
        assert_eq!(w.raise(), Err(Stopped));
    }
}
