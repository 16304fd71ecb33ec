//! [`Handle`]: reach the loop from other threads.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use super::core::Ctx;
use super::frame::Frame;
use super::id::ConnId;
use crate::proto::CloseCode;

/// A boxed closure run on the loop thread.
pub type Call = Box<dyn FnOnce(&mut Ctx<'_>) + Send>;

pub(crate) enum Command {
    Send(ConnId, Frame),
    Broadcast(Frame),
    Close(ConnId, CloseCode, String),
    Call(Call),
    Shutdown,
}

/// Why a [`Handle`] call did not reach the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The command queue is full ([`super::Config::command_queue`]): retry later.
    Full,
    /// The loop has stopped.
    Stopped,
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandleError::Full => "command queue full",
            HandleError::Stopped => "server stopped",
        })
    }
}

impl std::error::Error for HandleError {}

/// A cloneable, thread-safe way to send to connections, broadcast, run code
/// on the loop, or shut it down. Commands go through a bounded queue and
/// wake the loop with a `mio::Waker`.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<mio::Waker>,
    /// Set by [`Handle::wake`], taken by the loop (see [`Wake`]).
    wake: Wake,
}

/// The "call [`Handler::wake`](super::Handler::wake)" flag shared by the
/// loop and its [`Handle`]s. Many wake-ups before the loop gets to it make
/// one call and one `eventfd` write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wake(Arc<AtomicU8>);

const DOWN: u8 = 0;
const UP: u8 = 1;
const STOPPED: u8 = 2;

impl Wake {
    /// Raise the flag: `Ok(true)` if it was down (the loop must be woken),
    /// `Err` once the loop has stopped.
    pub fn raise(&self) -> Result<bool, HandleError> {
        match self
            .0
            .compare_exchange(DOWN, UP, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(true),
            Err(UP) => Ok(false),
            Err(_) => Err(HandleError::Stopped),
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

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    pub(crate) fn new(tx: SyncSender<Command>, waker: Arc<mio::Waker>, wake: Wake) -> Self {
        Handle { tx, waker, wake }
    }

    fn push(&self, c: Command) -> Result<(), HandleError> {
        match self.tx.try_send(c) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(HandleError::Stopped),
        }
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }

    /// Send a message (framed here, on the calling thread) to `id`.
    pub fn send(&self, id: ConnId, frame: Frame) -> Result<(), HandleError> {
        self.push(Command::Send(id, frame))
    }

    /// Send to every open connection.
    pub fn broadcast(&self, frame: Frame) -> Result<(), HandleError> {
        self.push(Command::Broadcast(frame))
    }

    /// Close `id` with `code` and `reason`.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), HandleError> {
        self.push(Command::Close(id, code, reason.to_string()))
    }

    /// Run `f` on the loop thread.
    pub fn call(&self, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) -> Result<(), HandleError> {
        self.push(Command::Call(Box::new(f)))
    }

    /// Have the loop call [`Handler::wake`](super::Handler::wake) soon, on
    /// its thread: how a thread that works for the handler (a database
    /// client, say) tells it that results are waiting. Coalesced: calls
    /// made before the loop gets to it make one `wake` call, and never
    /// fail for a full queue.
    pub fn wake(&self) -> Result<(), HandleError> {
        if self.wake.raise()? {
            self.waker.wake().map_err(|_| HandleError::Stopped)?;
        }
        Ok(())
    }

    /// Begin a graceful shutdown: stop accepting, close every connection with
    /// 1001, flush, wait for close replies up to the shutdown timeout, return
    /// from [`super::Server::run`].
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.push(Command::Shutdown)
    }
}

/// Run queued commands, at most `budget` of them, so that producers that
/// keep the channel full cannot hold the loop away from sockets and timers.
/// Returns whether the budget ran out (more may be waiting).
pub(crate) fn run_commands(rx: &Receiver<Command>, ctx: &mut Ctx<'_>, budget: usize) -> bool {
    for _ in 0..budget {
        let Ok(c) = rx.try_recv() else {
            return false;
        };
        match c {
            Command::Send(id, f) => {
                ctx.send_frame(id, &f);
            }
            Command::Broadcast(f) => {
                ctx.broadcast(&f);
            }
            Command::Close(id, code, reason) => ctx.close(id, code, &reason),
            Command::Call(f) => f(ctx),
            Command::Shutdown => ctx.shutdown(),
        }
    }
    true
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
        assert_eq!(w.raise(), Err(HandleError::Stopped));
    }
}
