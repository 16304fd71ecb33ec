//! [`Handle`]: reach the loop from other threads.

use std::any::{Any, TypeId};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use super::core::Core;
use super::ctx::Ctx;
use super::frame::Frame;
use super::handler::{Handler, Upgrade};
use super::id::ConnId;
use super::wake::{Stopped, Wake};
use crate::proto::CloseCode;

/// A closure for the loop's `Ctx` ([`Handle::call`]).
type Call = Box<dyn FnOnce(&mut Ctx<'_>) + Send>;
/// A closure for the handler and its `Ctx` ([`Handle::call_handler`]),
/// the handler's type erased.
type CallHandler = Box<dyn FnOnce(&mut dyn Any, &mut Core) + Send>;

pub(crate) enum Command {
    Send(ConnId, Frame),
    Broadcast(Frame),
    Close(ConnId, CloseCode, String),
    Call(Call),
    CallHandler(CallHandler),
    Answer(ConnId, Upgrade),
    Shutdown,
}

/// Why a [`Handle`] call did not reach the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The command queue is full ([`super::Config::command_queue`]): retry later.
    Full,
    /// The loop has stopped.
    Stopped,
    /// [`Handle::call_handler`] named another type than the handler the
    /// server runs.
    WrongHandler,
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandleError::Full => "command queue full",
            HandleError::Stopped => "server stopped",
            HandleError::WrongHandler => "the server runs another handler type",
        })
    }
}

impl std::error::Error for HandleError {}

/// A cloneable, thread-safe way to send to connections, broadcast, run code
/// on the loop (with the handler: [`Handle::call_handler`]), answer a
/// deferred upgrade, or shut the loop down. Commands go through a bounded
/// queue ([`Config::command_queue`](super::Config::command_queue)) and wake
/// the loop with a `mio::Waker`; they run on the loop thread, in order,
/// early in its next turn.
///
/// ```no_run
/// use wsmio::{Config, ConnId, Ctx, Frame, Handler, Message, Server};
///
/// #[derive(Default)]
/// struct Chat {
///     said: u64,
/// }
///
/// impl Handler for Chat {
///     type Conn = ();
///     fn message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, msg: Message<'_>) {
///         self.said += 1;
///         ctx.broadcast(&Frame::new(msg));
///     }
/// }
///
/// let server = Server::bind("127.0.0.1:9001".parse().unwrap(), Config::default())?;
/// let handle = server.handle();
/// std::thread::spawn(move || {
///     // Another thread: a notice to everyone, and a look at the handler.
///     let _ = handle.broadcast(Frame::text("maintenance at noon"));
///     let _ = handle.call_handler(|chat: &mut Chat, ctx| {
///         let text = format!("{} messages so far", chat.said);
///         ctx.broadcast(&Frame::text(&text));
///     });
/// });
/// server.run(Chat::default())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<mio::Waker>,
    /// Set by [`Handle::wake`], taken by the loop (see `wake.rs`).
    wake: Wake,
    /// The type of the handler the loop runs, once `Server::run` started.
    handler: Arc<OnceLock<TypeId>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    pub(crate) fn new(tx: SyncSender<Command>, waker: Arc<mio::Waker>, wake: Wake) -> Self {
        Handle {
            tx,
            waker,
            wake,
            handler: Arc::default(),
        }
    }

    /// `Server::run` starts with a handler of type `t`.
    pub(crate) fn set_handler_type(&self, t: TypeId) {
        let _ = self.handler.set(t);
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

    /// Run `f` on the loop thread with the loop's [`Ctx`] (without the
    /// per-connection state: [`Ctx::conn`] gives `None` unless the
    /// handler's `Conn` is `()`). To reach the handler or that state too,
    /// use [`Handle::call_handler`].
    pub fn call(&self, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) -> Result<(), HandleError> {
        self.push(Command::Call(Box::new(f)))
    }

    /// Run `f` on the loop thread with the server's handler and its
    /// [`Ctx`]: how another thread reads or changes the application's
    /// state (see the example on [`Handle`]). `H` must be the type the
    /// server runs; another type gives [`HandleError::WrongHandler`] (once
    /// [`Server::run`](super::Server::run) has started; a call queued
    /// before that with the wrong type is dropped and logged).
    pub fn call_handler<H: Handler>(
        &self,
        f: impl FnOnce(&mut H, &mut Ctx<'_, H::Conn>) + Send + 'static,
    ) -> Result<(), HandleError> {
        if self.handler.get().is_some_and(|&t| t != TypeId::of::<H>()) {
            return Err(HandleError::WrongHandler);
        }
        self.push(Command::CallHandler(Box::new(
            move |handler, core| match handler.downcast_mut::<H>() {
                Some(h) => f(h, &mut Ctx::new(core)),
                None => log::error!(
                    "Handle::call_handler for {}: the server runs another handler",
                    std::any::type_name::<H>()
                ),
            },
        )))
    }

    /// Answer the upgrade of `id` that [`Handler::upgrade`] deferred:
    /// [`Ctx::answer_upgrade`] from another thread (where an asynchronous
    /// check, a database or an auth service, finishes). Whether `id` was
    /// still waiting is not reported here: a client that left or timed out
    /// is simply gone.
    ///
    /// [`Handler::upgrade`]: super::Handler::upgrade
    pub fn answer_upgrade(&self, id: ConnId, answer: Upgrade) -> Result<(), HandleError> {
        self.push(Command::Answer(id, answer))
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
pub(crate) fn run_commands<H: Handler>(
    rx: &Receiver<Command>,
    core: &mut Core,
    handler: &mut H,
    budget: usize,
) -> bool {
    for _ in 0..budget {
        let Ok(c) = rx.try_recv() else {
            return false;
        };
        match c {
            Command::Send(id, f) => {
                let _ = core.send_shared(id, &f);
            }
            Command::Broadcast(f) => {
                Ctx::<()>::new(core).broadcast(&f);
            }
            Command::Close(id, code, reason) => core.close(id, code, &reason),
            Command::Call(f) => f(&mut Ctx::new(core)),
            Command::CallHandler(f) => f(handler, core),
            Command::Answer(id, answer) => {
                if !core.answer_upgrade(id, answer) {
                    log::debug!("conn {id}: answer to an upgrade not waiting for one");
                }
            }
            Command::Shutdown => core.shutdown_requested = true,
        }
    }
    true
}
