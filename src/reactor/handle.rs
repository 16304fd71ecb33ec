//! [`Handle`]: reach the loop from other threads.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use super::core::Ctx;
use super::frame::Frame;
use super::id::ConnId;
use super::wake::{Stopped, Wake};
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
    /// Set by [`Handle::wake`], taken by the loop (see `wake.rs`).
    wake: Wake,
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
        if self.wake.raise().map_err(|Stopped| HandleError::Stopped)? {
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
