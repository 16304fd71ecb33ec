//! The event loop, and only the loop: poll, hand each readiness event to
//! its room (`read.rs`; the listener's to `accept.rs`), then the turn's
//! other work in a fixed order — a slice of the accept queue, commands
//! from `Handle`s, input left over from read budgets, connection timers
//! (`timeouts.rs`), application timers, the handler's wake call, answers
//! to deferred upgrades (`upgrade.rs`), shutdown —
//! and one flush per connection at the end (`flush.rs`). The only code
//! that touches sockets is here and in those rooms.

use std::any::TypeId;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver as CmdReceiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::clock::Clock;
use super::config::{Config, MAX_BUSY_POLL};
use super::conn::Conn;
use super::core::Core;
use super::ctx::Ctx;
use super::handle::{run_commands, Command, Handle};
use super::handler::Handler;
use super::id::ConnId;
use super::listen::set_backlog;
use super::state::Slots;
use super::timer::Millis;
use super::wake_timer::WakeTimer;

/// Readiness events taken from one `epoll_wait`.
const EVENTS_PER_POLL: usize = 4096;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const TIMER: Token = Token(2);
// Connection tokens start above the loop's own.
const _: () = assert!(TIMER.0 < super::id::TOKEN_BASE);

/// A WebSocket server on one thread: a `mio` loop over a slab of
/// connections. Build it with [`Server::bind`], get [`Handle`]s for other
/// threads, then [`Server::run`] it with a [`Handler`].
///
/// ```
/// use std::time::Duration;
/// use wsmio::{BlockingClient, ClientOptions, Config, ConnId, Ctx, Handler, Incoming, Message, Server};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type Conn = ();
///     fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
///         let _ = ctx.send(id, msg);
///     }
/// }
///
/// let server = Server::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let url = format!("ws://{}/", server.local_addr());
/// let handle = server.handle();
/// let serving = std::thread::spawn(move || server.run(Echo));
///
/// let mut ws = BlockingClient::connect(&url, &ClientOptions::default())?;
/// ws.send_text("anyone there?")?;
/// let echoed = ws.recv(Some(Duration::from_secs(5)));
/// assert_eq!(echoed, Some(Incoming::Text("anyone there?".into())));
/// ws.close(1000, "done")?;
///
/// handle.shutdown()?; // graceful: close frames, flush, then `run` returns
/// serving.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    pub(super) poll: Poll,
    pub(super) listener: Option<TcpListener>,
    pub(super) local_addr: SocketAddr,
    pub(super) core: Core,
    pub(super) commands: CmdReceiver<Command>,
    pub(super) handle: Handle,
    pub(super) read_buf: Vec<u8>,
    /// Emptied lists kept for their capacity: the turn's flush and re-read
    /// lists (`Core::dirty`, `Core::unread`) are swapped with these instead
    /// of being allocated every turn.
    /// Bounded: a live connection is on each list at most once (its `dirty`
    /// and `unread` flags); ids of connections removed this turn stay only
    /// until the list is next walked.
    pub(super) spare_dirty: Vec<ConnId>,
    pub(super) spare_unread: Vec<ConnId>,
    /// Commands may be waiting from [`Handle`]s (the waker fired, or the
    /// last turn's budget ran out).
    pub(super) more_commands: bool,
    /// A descriptor held in reserve: when `accept` fails for lack of file
    /// descriptors, it is released to accept one waiting connection and
    /// refuse it with `503`, so that clients get an answer instead of
    /// hanging in the backlog.
    pub(super) spare_fd: Option<std::fs::File>,
    /// When to try `accept` again after it failed with no descriptor to
    /// spare (edge-triggered readiness will not report the backlog again).
    pub(super) accept_retry_at: Option<Millis>,
    /// Wakes the loop at its next deadline so that `epoll_wait` needs no
    /// timeout (`None`: not available here; the timeout is used instead).
    pub(super) wake_timer: Option<WakeTimer>,
    /// `accept` is failing (its warning was logged once).
    pub(super) accept_failing: bool,
    /// Connections may be waiting in the accept queue: the listener
    /// reported readiness, or the last turn's accept budget ran out
    /// (edge-triggered readiness will not report them again).
    pub(super) accept_ready: bool,
    /// Connections not upgraded, oldest first, for dropping the oldest
    /// past `max_pending_handshakes` (ids of connections since upgraded or
    /// gone are skipped, and pruned once they outnumber the live ones).
    pub(super) pending_order: VecDeque<ConnId>,
    /// Application timers due this turn (kept for its capacity).
    pub(super) due_timers: Vec<(super::TimerId, u64)>,
}

impl Server {
    /// Listen on `addr`, with an accept queue of
    /// [`Config::listen_backlog`] entries (the kernel caps it at
    /// `net.core.somaxconn`; a warning is logged when that is lower).
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        set_backlog(&listener, config.backlog())?;
        Server::with_listener(listener, config)
    }

    /// Serve an already-bound listener (it is made non-blocking). Its
    /// accept queue is set to [`Config::listen_backlog`] entries as with
    /// [`Server::bind`] (`listen(2)` on a listening socket only resizes
    /// its queue).
    pub fn from_std(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        set_backlog(&listener, config.backlog())?;
        Server::with_listener(TcpListener::from_std(listener), config)
    }

    /// A loop with no listener, for client connections only
    /// ([`Ctx::connect`]); [`Server::local_addr`] is then `0.0.0.0:0`. A
    /// loop that listens makes client connections just the same.
    ///
    /// ```
    /// use wsmio::{ClientRequest, Config, ConnId, ConnectError, Ctx, Handler, Message, Server};
    ///
    /// struct Once;
    ///
    /// impl Handler for Once {
    ///     type Conn = ();
    ///     fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
    ///         let _ = ctx.send_text(id, "hello");
    ///     }
    ///     fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
    ///         println!("{msg:?}");
    ///         ctx.close(id, wsmio::CloseCode::NORMAL, "done");
    ///     }
    ///     fn close(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, _info: wsmio::CloseInfo) {
    ///         ctx.shutdown();
    ///     }
    ///     fn connect_failed(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, e: ConnectError) {
    ///         eprintln!("{e}");
    ///         ctx.shutdown();
    ///     }
    /// }
    ///
    /// let client = Server::new(Config::default())?;
    /// let handle = client.handle();
    /// handle.call(|ctx| {
    ///     let _ = ClientRequest::new("ws://127.0.0.1:1/").and_then(|r| ctx.connect(r));
    /// }).unwrap();
    /// client.run(Once)?; // nothing listens on port 1: connect_failed, then shutdown
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(config: Config) -> io::Result<Server> {
        Server::build(None, config)
    }

    fn with_listener(listener: TcpListener, config: Config) -> io::Result<Server> {
        Server::build(Some(listener), config)
    }

    fn build(mut listener: Option<TcpListener>, config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let wake_timer = WakeTimer::new(poll.registry(), TIMER)
            .map_err(|e| log::debug!("no timerfd ({e}): sleeping with epoll_wait timeouts"))
            .ok();
        let (tx, rx) = mpsc::sync_channel(config.command_queue.max(1));
        let local_addr = match &listener {
            Some(l) => l.local_addr()?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let read_buf = vec![0; config.read_buffer_size.max(4096)];
        if let Clock::Manual(clock) = &config.clock {
            clock.attach(waker.clone());
        }
        let mut core = Core::new(config);
        core.registry = Some(poll.registry().try_clone()?);
        core.resolver.set_waker(waker.clone());
        let handle = Handle::new(tx, waker, core.wake.clone());
        let mut server = Server {
            poll,
            listener,
            local_addr,
            core,
            commands: rx,
            handle,
            read_buf,
            spare_dirty: Vec::new(),
            spare_unread: Vec::new(),
            more_commands: false,
            spare_fd: None,
            accept_retry_at: None,
            wake_timer,
            accept_failing: false,
            accept_ready: false,
            pending_order: VecDeque::new(),
            due_timers: Vec::new(),
        };
        server.reserve_fd();
        Ok(server)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Run until a graceful shutdown completes. Returns the handler.
    pub fn run<H: Handler>(mut self, mut handler: H) -> io::Result<H> {
        // The handler's per-connection state, and its type for
        // `Handle::call_handler`.
        self.core.states = Box::new(Slots::<H::Conn>::default());
        self.handle.set_handler_type(TypeId::of::<H>());
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.wait(&mut events)?;
            // The turn's time: every decision of the turn takes it as input.
            self.core.now = self.core.clock();
            let done = self.turn(&events, &mut handler);
            if let Clock::Manual(clock) = &self.core.config.clock {
                clock.turn_done(self.core.now);
            }
            if done {
                return Ok(handler);
            }
        }
    }

    /// One turn of the loop, in a fixed order: the readiness events, then
    /// a slice of the accept queue, commands from `Handle`s, input left
    /// over from read budgets, timers, application timers, the handler's
    /// wake call, answers to deferred upgrades, shutdown, and last the
    /// flush of every connection with output. Returns `true` once a
    /// graceful shutdown is complete.
    fn turn<H: Handler>(&mut self, events: &Events, handler: &mut H) -> bool {
        // Left over from last turn's read budgets; read after this turn's
        // events, so every ready connection goes first.
        let spare = std::mem::take(&mut self.spare_unread);
        let mut unread = std::mem::replace(&mut self.core.unread, spare);
        for ev in events.iter() {
            self.event(ev, handler);
        }
        // At most `accepts_per_turn`; the rest next turn.
        if self.accept_ready || self.accept_retry_at.is_some_and(|at| self.core.now >= at) {
            self.accept_retry_at = None;
            self.accept(handler);
        }
        if self.more_commands {
            // One channel's worth per turn (commands queued meanwhile wait
            // for the next turn, after the sockets).
            let budget = self.core.config.command_queue.max(1);
            self.more_commands = run_commands(&self.commands, &mut self.core, handler, budget);
        }
        if self.core.resolver.waiting > 0 {
            // Host names resolved off the loop (`connect.rs`).
            self.core.take_resolved();
        }
        for &id in &unread {
            if let Some(c) = self.core.get_mut(id) {
                c.unread = false;
                // `true`: read on past a short read, so that a FIN whose
                // edge was already reported is not missed.
                self.read(id, true, handler);
            }
        }
        unread.clear();
        self.spare_unread = unread;
        self.run_timers(handler);
        self.run_app_timers(handler);
        if self.core.wake.take() {
            let mut ctx = Ctx::new(&mut self.core);
            handler.wake(&mut ctx);
        }
        if !self.core.answered.is_empty() {
            self.answer_upgrades(handler);
        }
        if self.core.shutdown_requested && self.core.shutdown_at.is_none() {
            self.begin_shutdown();
        }
        self.flush_all(handler);
        #[cfg(debug_assertions)]
        self.check_buffered();
        self.shutdown_done(handler)
    }

    /// Call back the application timers due at the turn's time.
    #[inline]
    fn run_app_timers<H: Handler>(&mut self, handler: &mut H) {
        if !self.core.app_timers.due_by(self.core.now) {
            return;
        }
        let mut due = std::mem::take(&mut self.due_timers);
        self.core.app_timers.take_due(self.core.now, &mut due);
        for &(_, token) in &due {
            let mut ctx = Ctx::new(&mut self.core);
            handler.timer(&mut ctx, token);
        }
        due.clear();
        self.due_timers = due;
    }

    /// Hand one readiness event to its room.
    fn event<H: Handler>(&mut self, ev: &Event, handler: &mut H) {
        match ev.token() {
            LISTENER => self.accept_ready = true,
            WAKER => self.more_commands = true,
            TIMER => {
                if let Some(t) = &mut self.wake_timer {
                    t.fired();
                }
            }
            t => {
                let id = ConnId::from_token(t);
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(id, ev.is_read_closed() || ev.is_error(), handler);
                }
                if ev.is_writable() && self.core.get(id).is_some_and(Conn::wants_flush) {
                    self.core.mark_dirty(id);
                }
            }
        }
    }

    /// During a graceful shutdown: done once every connection is gone; at
    /// the shutdown deadline, the rest are dropped.
    fn shutdown_done<H: Handler>(&mut self, handler: &mut H) -> bool {
        let Some(at) = self.core.shutdown_at else {
            return false;
        };
        if self.core.now >= at {
            let ids: Vec<ConnId> = self.ids().collect();
            for id in ids {
                self.remove(id, handler);
            }
        }
        self.core.conns.is_empty()
    }

    fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.core.conns.iter().map(|(k, c)| ConnId {
            key: k as u32,
            gen: c.gen,
        })
    }

    /// The input held by the connections equals its running total (tests
    /// and debug builds: a leak in the accounting would let the budget
    /// drift).
    #[cfg(debug_assertions)]
    fn check_buffered(&self) {
        let sum: usize = self.core.conns.iter().map(|(_, c)| c.held()).sum();
        debug_assert_eq!(sum, self.core.buffered, "buffered-bytes accounting");
    }

    /// Wait for readiness events: spin first if [`Config::busy_poll`] asks
    /// for it, then sleep until an event or the next timer.
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        if self.work_pending() {
            return poll_once(&mut self.poll, events, Some(Duration::ZERO));
        }
        let wake_at = self.wake_at();
        if let Some(spin) = self.core.config.busy_poll {
            // never spin past a due timer
            let left = wake_at.map(|at| self.time_until(at));
            let spin = left.map_or(spin, |t| t.min(spin)).min(MAX_BUSY_POLL);
            if !spin.is_zero() {
                let until = Instant::now() + spin;
                loop {
                    poll_once(&mut self.poll, events, Some(Duration::ZERO))?;
                    if !events.is_empty() {
                        return Ok(());
                    }
                    if Instant::now() >= until {
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
        }
        // Nothing came while spinning: sleep until a timer.
        self.sleep(events, wake_at)
    }

    /// Wait for an event or until loop time `wake_at`. The deadline goes to
    /// the wake timer, which is set only if the loop must wake earlier than
    /// it is set for, and `epoll_wait` sleeps without a timeout (see
    /// `wake_timer.rs`). The clock is read only when the timer must be set.
    fn sleep(&mut self, events: &mut Events, wake_at: Option<Millis>) -> io::Result<()> {
        let Some(at) = wake_at else {
            return poll_once(&mut self.poll, events, None);
        };
        if let Some(timer) = self.wake_timer.as_ref() {
            if timer.fires_by(at) {
                return poll_once(&mut self.poll, events, None);
            }
        }
        let left = self.time_until(at);
        if let (Some(timer), false) = (self.wake_timer.as_mut(), left.is_zero()) {
            if timer.arm(at, left).is_ok() {
                return poll_once(&mut self.poll, events, None);
            }
        }
        poll_once(&mut self.poll, events, Some(left))
    }

    /// Work left for this turn that must not wait for an event: queued
    /// output, input left over from a read budget, commands, a wake call
    /// owed to the handler.
    fn work_pending(&self) -> bool {
        !self.core.dirty.is_empty()
            || !self.core.unread.is_empty()
            || self.accept_ready
            || self.more_commands
            || self.core.wake.is_raised()
            || !self.core.answered.is_empty()
    }

    /// The loop time by which the loop must wake for its next deadline
    /// (none with a manual clock: its time moves only when a test wakes
    /// the loop).
    fn wake_at(&self) -> Option<Millis> {
        if self.core.config.clock.is_manual() {
            return None;
        }
        // The earliest deadline (`MAX`: none); runs before every sleep, and
        // usually only the connections' timers have one.
        let never = Millis::MAX;
        let mut next = self.core.timers.next_deadline().unwrap_or(never);
        if let Some(at) = self.core.shutdown_at {
            next = next.min(at);
        }
        if let Some(at) = self.accept_retry_at {
            next = next.min(at);
        }
        next = next.min(self.core.app_timers.next_deadline().unwrap_or(never));
        // +1 ms: never wake a hair before a deadline and spin.
        (next != never).then(|| next.saturating_add(1))
    }

    /// Time from now (a fresh clock reading) until loop time `at`.
    fn time_until(&self, at: Millis) -> Duration {
        Duration::from_millis(at.saturating_sub(self.core.clock()))
    }

    fn begin_shutdown(&mut self) {
        log::info!(
            "shutdown: no longer accepting, closing {} connections",
            self.core.conns.len()
        );
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.core.begin_shutdown();
    }
}

/// One `epoll_wait`; a signal's interruption is an empty wake-up, not an
/// error.
fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(e),
    }
}
