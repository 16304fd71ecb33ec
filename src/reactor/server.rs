//! The event loop: accept, read, dispatch, flush once per turn, timers,
//! shutdown. The only code that touches sockets.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver as CmdReceiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::config::{Config, MAX_BUSY_POLL};
use super::conn::{Conn, Phase};
use super::core::{slot, Core, Ctx};
use super::handle::{run_commands, Command, Handle};
use super::handler::{CloseInfo, Handler, Upgrade};
use super::id::ConnId;
use super::stream::Stream;
use super::timer::Millis;
use super::wake_timer::WakeTimer;
use super::write_queue::WriteQueue;
use crate::proto::handshake::{
    accept_response, find_head_end, parse_request, rejection_response, validate_upgrade,
    HeadBuffer, Rejection,
};
use crate::proto::{Chunk, CloseCode, CloseState, Message, Receiver, Role, Sender};

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
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    core: Core,
    commands: CmdReceiver<Command>,
    handle: Handle,
    read_buf: Vec<u8>,
    /// Connections that used up [`Config::reads_per_turn`] with input
    /// possibly left in the socket: read again next turn (edge-triggered
    /// readiness will not report that input again).
    unread: Vec<ConnId>,
    /// Emptied lists kept for their capacity: the turn's flush and re-read
    /// lists are swapped with these instead of being allocated every turn.
    /// Bounded: a live connection is on each list at most once (its `dirty`
    /// and `unread` flags); ids of connections removed this turn stay only
    /// until the list is next walked.
    spare_dirty: Vec<ConnId>,
    spare_unread: Vec<ConnId>,
    /// Commands may be waiting from [`Handle`]s (the waker fired, or the
    /// last turn's budget ran out).
    more_commands: bool,
    /// A descriptor held in reserve: when `accept` fails for lack of file
    /// descriptors, it is released to accept one waiting connection and
    /// refuse it with `503`, so that clients get an answer instead of
    /// hanging in the backlog.
    spare_fd: Option<std::fs::File>,
    /// When to try `accept` again after it failed with no descriptor to
    /// spare (edge-triggered readiness will not report the backlog again).
    accept_retry_at: Option<Millis>,
    /// Wakes the loop at its next deadline so that `epoll_wait` needs no
    /// timeout (`None`: not available here; the timeout is used instead).
    wake_timer: Option<WakeTimer>,
    /// `accept` is failing (its warning was logged once).
    accept_failing: bool,
}

/// Delay before retrying `accept` after it failed for lack of descriptors.
const ACCEPT_RETRY_MS: Millis = 100;

fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl Server {
    /// Listen on `addr`.
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        Server::with_listener(listener, config)
    }

    /// Serve an already-bound listener (it is made non-blocking).
    pub fn from_std(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Server::with_listener(TcpListener::from_std(listener), config)
    }

    fn with_listener(mut listener: TcpListener, config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let wake_timer = WakeTimer::new(poll.registry(), TIMER)
            .map_err(|e| log::debug!("no timerfd ({e}): sleeping with epoll_wait timeouts"))
            .ok();
        let (tx, rx) = mpsc::sync_channel(config.command_queue.max(1));
        let local_addr = listener.local_addr()?;
        let read_buf = vec![0; config.read_buffer_size.max(4096)];
        let core = Core::new(config);
        let handle = Handle::new(tx, waker, core.wake.clone());
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            core,
            commands: rx,
            handle,
            read_buf,
            unread: Vec::new(),
            spare_dirty: Vec::new(),
            spare_unread: Vec::new(),
            more_commands: false,
            spare_fd: spare_fd(),
            accept_retry_at: None,
            wake_timer,
            accept_failing: false,
        })
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
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.wait(&mut events)?;
            self.core.now = self.core.clock();
            // Left over from last turn's read budgets; read after this
            // turn's events, so every ready connection goes first.
            let spare = std::mem::take(&mut self.spare_unread);
            let mut unread = std::mem::replace(&mut self.unread, spare);
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(&mut handler),
                    WAKER => self.more_commands = true,
                    TIMER => {
                        if let Some(t) = &mut self.wake_timer {
                            t.fired();
                        }
                    }
                    t => {
                        let id = ConnId::from_token(t);
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(id, ev.is_read_closed() || ev.is_error(), &mut handler);
                        }
                        if ev.is_writable() && self.core.get(id).is_some_and(Conn::wants_flush) {
                            self.core.mark_dirty(id);
                        }
                    }
                }
            }
            if self.more_commands {
                // One channel's worth per turn (commands queued meanwhile
                // wait for the next turn, after the sockets).
                let budget = self.core.config.command_queue.max(1);
                let mut ctx = Ctx {
                    core: &mut self.core,
                };
                self.more_commands = run_commands(&self.commands, &mut ctx, budget);
            }
            for &id in &unread {
                if let Some(c) = self.core.get_mut(id) {
                    c.unread = false;
                    // `true`: read on past a short read, so that a FIN
                    // whose edge was already reported is not missed.
                    self.read(id, true, &mut handler);
                }
            }
            unread.clear();
            self.spare_unread = unread;
            if self.accept_retry_at.is_some_and(|at| self.core.now >= at) {
                self.accept_retry_at = None;
                self.accept(&mut handler);
            }
            self.run_timers(&mut handler);
            if self.core.wake.take() {
                let mut ctx = Ctx {
                    core: &mut self.core,
                };
                handler.wake(&mut ctx);
            }
            if self.core.shutdown_requested && self.core.shutdown_at.is_none() {
                self.begin_shutdown();
            }
            self.flush_all(&mut handler);
            if let Some(at) = self.core.shutdown_at {
                if self.core.conns.is_empty() {
                    return Ok(handler);
                }
                if self.core.now >= at {
                    let ids: Vec<ConnId> = self.ids().collect();
                    for id in ids {
                        self.remove(id, &mut handler);
                    }
                    return Ok(handler);
                }
            }
        }
    }

    fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.core.conns.iter().map(|(k, c)| ConnId {
            key: k as u32,
            gen: c.gen,
        })
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
            || !self.unread.is_empty()
            || self.more_commands
            || self.core.wake.is_raised()
    }

    /// The loop time by which the loop must wake for its next deadline.
    fn wake_at(&self) -> Option<Millis> {
        let mut next = self.core.timers.next_deadline();
        for at in [self.core.shutdown_at, self.accept_retry_at]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        // +1 ms: never wake a hair before a deadline and spin.
        next.map(|at| at.saturating_add(1))
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

    fn accept<H: Handler>(&mut self, handler: &mut H) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, addr) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_fds(&e) => {
                    // Release the spare descriptor to take one waiting
                    // connection and refuse it; without a spare, retry
                    // shortly (the backlog raises no new readiness edge).
                    // (Linux reports EMFILE before it looks at the backlog,
                    // so an empty backlog shows only once a descriptor is
                    // free.)
                    if self.spare_fd.take().is_some() {
                        let accepted = listener.accept();
                        if let Ok((stream, addr)) = accepted {
                            log::warn!("refusing {addr}: out of file descriptors ({e})");
                            self.refuse(stream, "server out of file descriptors", handler);
                            // Its descriptor is free again (the stream is closed).
                            self.spare_fd = spare_fd();
                            if self.spare_fd.is_some() {
                                continue;
                            }
                        } else {
                            self.spare_fd = spare_fd();
                            if matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                            {
                                return;
                            }
                        }
                    }
                    self.accept_failed(&e);
                    return;
                }
                // That connection is gone already; take the next.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    self.accept_failed(&e);
                    return;
                }
            };
            self.accept_failing = false;
            if self.core.conns.len() >= self.core.config.max_connections {
                log::warn!("refusing {addr}: connection limit reached");
                self.refuse(stream, "connection limit reached", handler);
                continue;
            }
            // Small frames must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let entry = self.core.conns.vacant_entry();
            let gen = self.core.next_gen;
            self.core.next_gen = self.core.next_gen.wrapping_add(1).max(1);
            let id = ConnId {
                key: entry.key() as u32,
                gen,
            };
            // Registered once, edge-triggered, for both directions.
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                id.token(),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("register {addr}: {e}");
                continue;
            }
            let now = self.core.now;
            let handshake_ms = Core::millis(self.core.config.handshake_timeout);
            let stream = match Stream::accepted(stream, &self.core.config) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("tls setup for {addr}: {e}");
                    continue;
                }
            };
            entry.insert(Conn {
                stream,
                gen,
                phase: Phase::Handshake(None),
                rx: Receiver::new(Role::Server),
                tx: Sender::new(Role::Server),
                wq: WriteQueue::default(),
                data_mark: 0,
                last_read: now,
                deadline: now + handshake_ms,
                heap_at: 0,
                close_code: 0,
                ping_sent: false,
                by_peer: false,
                opened: false,
                dirty: false,
                backpressured: false,
                read_paused: false,
                unread: false,
                write_shut: false,
                peer_eof: false,
                abort: false,
            });
            self.core.arm_timer(id);
        }
    }

    /// Read what the peer sent, then write the replies it produced at once:
    /// everything one read caused for this connection goes out in one
    /// write (its queue buffer goes straight back to the pool).
    fn read<H: Handler>(&mut self, id: ConnId, closed_hint: bool, handler: &mut H) {
        // Sends to this connection while its input is processed need not go
        // on the turn's flush list: it is flushed right below.
        let outer = self.core.reading.replace(id);
        self.read_socket(id, closed_hint, handler);
        handler.read_done(
            &mut Ctx {
                core: &mut self.core,
            },
            id,
        );
        self.core.reading = outer;
        self.flush_conn(id, handler);
        // If that flush drained a queue that paused reading, no writable
        // event may ever follow: list the connection so `flush_all` resumes
        // it this turn (input may be waiting in the socket).
        let hard = self.core.config.max_queued_bytes;
        if self.core.get(id).is_some_and(|c| may_resume(c, hard)) {
            self.core.mark_dirty(id);
        }
    }

    /// Read until the socket is drained (edge-triggered), reading must
    /// pause, or the turn's read budget is spent, feeding every chunk
    /// through the protocol.
    fn read_socket<H: Handler>(&mut self, id: ConnId, closed_hint: bool, handler: &mut H) {
        let budget = self.core.config.reads_per_turn.max(1);
        let mut reads = 0;
        loop {
            let Some(c) = slot(&mut self.core.conns, id) else {
                return;
            };
            if c.read_paused || c.abort || c.peer_eof {
                return;
            }
            if reads == budget {
                // Fairness: the others and the timers go first; the rest
                // of this input is read next turn (listed once).
                if !c.unread {
                    c.unread = true;
                    self.unread.push(id);
                }
                return;
            }
            let tls = c.stream.is_tls();
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.eof(id, handler);
                    return;
                }
                Ok(n) => {
                    reads += 1;
                    c.last_read = self.core.now;
                    if std::mem::take(&mut c.ping_sent) {
                        // The timer entry is at the pong deadline; the next
                        // idle ping may be due before it.
                        self.core.arm_timer(id);
                    }
                    self.process(id, n, handler);
                    self.maybe_pause(id);
                    // A short read took everything the kernel had; new data
                    // raises a new edge, so skip the read that would only say
                    // WouldBlock — unless the peer also closed its side, or
                    // TLS holds back an error or end of stream for the next
                    // read (no new edge would report it).
                    if n < self.read_buf.len() && !closed_hint && !tls {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tls {
                        // TLS handshake records may be waiting to go out.
                        self.core.mark_dirty(id);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("conn {id}: read: {e}");
                    self.remove(id, handler);
                    return;
                }
            }
        }
    }

    /// Stop reading from a peer whose replies we cannot write: its queue
    /// is over the limit. Reading resumes once the queue drains.
    fn maybe_pause(&mut self, id: ConnId) {
        let limit = self.core.config.max_queued_bytes;
        if let Some(c) = self.core.get_mut(id) {
            if c.wq.len() > limit {
                c.read_paused = true;
            }
        }
    }

    fn eof<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(c) = self.core.get_mut(id) else {
            return;
        };
        match c.phase {
            // Our side is done too: the exchange is complete.
            // (TLS: records may still wait inside rustls; let the flush
            // finish them, then it removes the connection.)
            Phase::Finishing if c.write_shut || (c.wq.is_empty() && !c.stream.is_tls()) => {
                self.remove(id, handler)
            }
            // Still flushing: finish writing, then close.
            Phase::Finishing => c.peer_eof = true,
            _ => self.remove(id, handler),
        }
    }

    fn process<H: Handler>(&mut self, id: ConnId, n: usize, handler: &mut H) {
        let max = self.core.config.max_head_size;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        match &mut c.phase {
            Phase::Handshake(None) => {
                // The usual case: the whole head came in one read. Parse it
                // where it lies; nothing is allocated to collect it.
                match find_head_end(&self.read_buf[..n], 0) {
                    Some(end) if end <= max => {
                        let mut buf = std::mem::take(&mut self.read_buf);
                        let (head, rest) = buf[..n].split_at_mut(end);
                        self.handshake(id, head, rest, handler);
                        self.read_buf = buf;
                    }
                    _ => {
                        let mut head = Box::<HeadBuffer>::default();
                        let r = head.push(&self.read_buf[..n], max);
                        c.phase = Phase::Handshake(Some(head));
                        if let Err(rej) = r {
                            self.reject(id, &rej, handler);
                        }
                    }
                }
            }
            Phase::Handshake(Some(head)) => match head.push(&self.read_buf[..n], max) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    let head = std::mem::take(head);
                    let (head, mut rest) = head.split_off_rest(end);
                    self.handshake(id, &head, &mut rest, handler);
                }
                Err(rej) => self.reject(id, &rej, handler),
            },
            Phase::Open | Phase::Closing => {
                feed(&mut self.core, handler, id, &mut self.read_buf[..n]);
            }
            // After the close exchange, input is read and discarded.
            Phase::Finishing => {}
        }
    }

    fn reject<H: Handler>(&mut self, id: ConnId, rej: &Rejection, handler: &mut H) {
        log::debug!("conn {id}: handshake rejected: {rej}");
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        handler.rejected(&mut ctx, rej.status, rej.reason);
        self.respond(id, &rejection_response(rej));
    }

    fn respond(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        c.wq.push_bytes(&[bytes], &mut self.core.pool);
        self.core.finish(id);
    }

    /// A complete request head arrived (`rest`: bytes after it, already
    /// frames if the client pipelined them).
    fn handshake<H: Handler>(&mut self, id: ConnId, head: &[u8], rest: &mut [u8], handler: &mut H) {
        let req = match parse_request(head, &self.core.config.head_limits()) {
            Ok(r) => r,
            Err(rej) => return self.reject(id, &rej, handler),
        };
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        if !req.wants_websocket() {
            let resp = handler.http(&mut ctx, id, &req);
            return self.respond(id, &resp.to_bytes());
        }
        let key = match validate_upgrade(&req) {
            Ok(k) => k,
            Err(rej) => return self.reject(id, &rej, handler),
        };
        match handler.upgrade(&mut ctx, id, &req) {
            Upgrade::Reject(resp) => {
                log::debug!("conn {id}: upgrade refused by handler: {}", resp.status);
                self.respond(id, &resp.to_bytes());
            }
            Upgrade::Accept { protocol, headers } => {
                // RFC 6455 §4.2.2: only a subprotocol the client offered.
                if let Some(p) = &protocol {
                    if !req.protocols().any(|o| o == p) {
                        log::error!("conn {id}: handler selected unoffered subprotocol {p:?}");
                        return self.reject(
                            id,
                            &Rejection {
                                status: 500,
                                reason: "server selected a subprotocol not offered",
                            },
                            handler,
                        );
                    }
                }
                let extra: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let resp = accept_response(key, protocol.as_deref(), &extra);
                let now = self.core.now;
                let Some(c) = slot(&mut self.core.conns, id) else {
                    return;
                };
                // Written at once when possible: no queue buffer is taken.
                if c.wq
                    .write_through(&mut c.stream, &[&resp], &mut self.core.pool)
                    .is_err()
                {
                    c.abort = true;
                }
                c.phase = Phase::Open;
                c.opened = true;
                c.last_read = now;
                self.core.open_count += 1;
                self.core.mark_dirty(id);
                self.core.arm_timer(id);
                let mut ctx = Ctx {
                    core: &mut self.core,
                };
                handler.open(&mut ctx, id);
                // Frames that came in the same read as the head.
                if !rest.is_empty() {
                    feed(&mut self.core, handler, id, rest);
                }
            }
        }
    }

    fn run_timers<H: Handler>(&mut self, handler: &mut H) {
        let now = self.core.now;
        let pong_ms = Core::millis(self.core.config.pong_timeout);
        while let Some((at, key, gen)) = self.core.timers.pop_due(now) {
            let id = ConnId { key, gen };
            let Some(c) = slot(&mut self.core.conns, id) else {
                continue;
            };
            if c.heap_at != at {
                continue; // superseded by an earlier entry
            }
            c.heap_at = 0;
            let Some(deadline) = Core::effective_deadline(&self.core.config, c) else {
                continue;
            };
            if deadline > now {
                self.core.arm_timer(id);
                continue;
            }
            let Some(c) = self.core.get_mut(id) else {
                continue;
            };
            match c.phase {
                Phase::Handshake(_) => {
                    log::debug!("conn {id}: handshake timeout");
                    self.reject(
                        id,
                        &Rejection {
                            status: 408,
                            reason: "handshake timeout",
                        },
                        handler,
                    );
                }
                Phase::Open if !c.ping_sent => {
                    // Idle: ask for a sign of life.
                    c.ping_sent = true;
                    c.deadline = now + pong_ms;
                    if let Ok(f) = c.tx.ping(b"") {
                        self.core.push_control(id, f.as_bytes());
                    }
                    self.core.arm_timer(id);
                }
                Phase::Open => {
                    log::debug!("conn {id}: no answer to heartbeat");
                    self.core
                        .close(id, CloseCode::GOING_AWAY, "heartbeat timeout");
                    // Don't wait for a close reply from a silent peer.
                    self.core.finish(id);
                }
                Phase::Closing | Phase::Finishing => {
                    log::debug!("conn {id}: close timeout");
                    self.remove(id, handler);
                }
            }
        }
    }

    /// Flush every connection with queued output: one write per
    /// connection per turn. Output to other connections (broadcasts) waits
    /// here, so all of a turn's deliveries to one peer go out together.
    fn flush_all<H: Handler>(&mut self, handler: &mut H) {
        let hard = self.core.config.max_queued_bytes;
        let mut round = 0;
        while !self.core.dirty.is_empty() && round < 4 {
            round += 1;
            let spare = std::mem::take(&mut self.spare_dirty);
            let mut dirty = std::mem::replace(&mut self.core.dirty, spare);
            for &id in &dirty {
                self.flush_conn(id, handler);
                // Resume reading from a peer whose queue has drained.
                let Some(c) = self.core.get_mut(id) else {
                    continue;
                };
                if may_resume(c, hard) {
                    c.read_paused = false;
                    self.read(id, true, handler);
                }
            }
            dirty.clear();
            self.spare_dirty = dirty;
        }
    }

    /// Write one connection's queue (if it is marked dirty), then apply
    /// what follows: the drain event, our TCP shutdown when finishing.
    fn flush_conn<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let hard = self.core.config.max_queued_bytes;
        let soft = self.core.config.backpressure_limit.min(hard);
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        if !c.dirty {
            return;
        }
        c.dirty = false;
        if c.abort {
            self.remove(id, handler);
            return;
        }
        let flushed =
            c.wq.flush(&mut c.stream, &mut self.core.pool)
                .and_then(|done| Ok(done && c.stream.flush_pending()?));
        let flushed = match flushed {
            Ok(done) => done,
            Err(e) => {
                log::debug!("conn {id}: write: {e}");
                self.remove(id, handler);
                return;
            }
        };
        if c.backpressured && c.wq.len() < soft {
            c.backpressured = false;
            let mut ctx = Ctx {
                core: &mut self.core,
            };
            handler.drain(&mut ctx, id);
        }
        let Some(c) = self.core.get_mut(id) else {
            return;
        };
        if flushed && matches!(c.phase, Phase::Finishing) && c.wq.is_empty() {
            if c.peer_eof {
                // The peer already closed its side.
                self.remove(id, handler);
            } else if c.tx.close_state() == CloseState::Closed
                && !c.stream.is_tls()
                && nothing_unread(&mut c.stream, &mut self.read_buf)
            {
                // RFC 6455 §7.1.1: both close frames have crossed, so the
                // server closes the TCP connection first. Closing now frees
                // the socket a round trip sooner than waiting for the
                // peer's FIN; the kernel sends our FIN after the close frame.
                self.remove(id, handler);
            } else if !c.write_shut {
                // RFC 6455 §7.1.1: the server closes the TCP connection
                // first; the peer's FIN ends it.
                c.write_shut = c.stream.shutdown_write();
            }
        }
    }

    /// `accept` failed with `e`: try again shortly (logged once per spell).
    fn accept_failed(&mut self, e: &io::Error) {
        if !self.accept_failing {
            log::warn!("accept: {e}; retrying every {ACCEPT_RETRY_MS} ms");
            self.accept_failing = true;
        }
        self.accept_retry_at = Some(self.core.now + ACCEPT_RETRY_MS);
    }

    /// Refuse a just-accepted connection with `503 reason` (over TLS, which
    /// has no handshake yet, just close it) and tell the handler.
    fn refuse<H: Handler>(&mut self, mut stream: TcpStream, reason: &'static str, handler: &mut H) {
        let rej = Rejection {
            status: 503,
            reason,
        };
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        handler.rejected(&mut ctx, rej.status, rej.reason);
        if !self.core.config.serves_tls() {
            let _ = stream.write(&rejection_response(&rej));
        }
        // Read what already arrived so that closing sends FIN, not a
        // reset that could destroy the 503 in flight.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Bounded: a client that keeps sending does not hold the loop.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }

    /// Drop a connection now and tell the handler if it was upgraded.
    fn remove<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        if self.core.get(id).is_none() {
            return;
        }
        let mut c = self.core.conns.remove(id.key as usize);
        let _ = self.poll.registry().deregister(c.stream.socket());
        c.wq.clear(&mut self.core.pool);
        if c.opened {
            self.core.open_count -= 1;
            let clean = c.tx.close_state() == CloseState::Closed && !c.abort;
            let code = if c.close_code == 0 {
                CloseCode::ABNORMAL
            } else {
                CloseCode(c.close_code)
            };
            let info = CloseInfo {
                code,
                clean,
                by_peer: c.by_peer,
            };
            let mut ctx = Ctx {
                core: &mut self.core,
            };
            handler.close(&mut ctx, id, info);
        }
        drop(c);
    }
}

/// May the socket be closed without a reset? Closing a socket with unread
/// input makes the kernel answer with RST instead of FIN, and a reset can
/// destroy the peer's unread copy of our close frame. One read tells: `true`
/// when nothing is waiting (or the peer already sent its FIN). Input that is
/// waiting — a peer still sending after its close frame, which RFC 6455
/// §5.5.1 forbids — is discarded, and the caller falls back to shutting down
/// its side and waiting for the peer's FIN. TLS streams always take that
/// path, so that their close_notify alerts can cross.
fn nothing_unread(stream: &mut Stream, buf: &mut [u8]) -> bool {
    match stream.read(buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

/// Routes the protocol core's events for one connection to the handler.
struct Dispatch<'a, H> {
    core: &'a mut Core,
    handler: &'a mut H,
    id: ConnId,
}

impl<H: Handler> crate::proto::Handler for Dispatch<'_, H> {
    fn on_message(&mut self, msg: Message<'_>) {
        let mut ctx = Ctx { core: self.core };
        self.handler.message(&mut ctx, self.id, msg);
    }

    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        let mut ctx = Ctx { core: self.core };
        self.handler.chunk(&mut ctx, self.id, chunk);
    }

    fn on_ping(&mut self, payload: &[u8]) {
        // RFC 6455 §5.5.2: a pong with the same payload.
        let Some(c) = self.core.get_mut(self.id) else {
            return;
        };
        if let Some(f) = c.tx.pong(payload) {
            self.core.push_control(self.id, f.as_bytes());
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        let mut ctx = Ctx { core: self.core };
        self.handler.pong(&mut ctx, self.id, payload);
    }

    fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.core.peer_closed(self.id, code);
    }
}

/// Feed frame bytes of an open connection through its receiver. The
/// receiver is moved out for the call so that the handler may use the whole
/// loop state (including sends to this connection) meanwhile.
fn feed<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, data: &mut [u8]) {
    let Some(c) = core.get_mut(id) else { return };
    let mut rx = std::mem::replace(&mut c.rx, Receiver::new(Role::Server));
    let limits = core.limits;
    let result = rx.receive(
        data,
        &limits,
        &mut Dispatch {
            core: &mut *core,
            handler,
            id,
        },
    );
    if let Some(c) = core.get_mut(id) {
        c.rx = rx;
    }
    if let Err(e) = result {
        core.fail(id, e);
    }
}

/// Reading from `c` was paused for a full queue that has drained to half
/// of `max_queued` (hysteresis), so reading may go on.
fn may_resume(c: &Conn, max_queued: usize) -> bool {
    c.read_paused && c.wq.len() <= max_queued / 2 && !matches!(c.phase, Phase::Finishing)
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

/// `accept` failed because this process (EMFILE) or the system (ENFILE)
/// has no file descriptor left.
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nothing_unread_sees_waiting_input() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (sock, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut stream = Stream::Plain(mio::net::TcpStream::from_std(sock));
        let mut buf = [0u8; 64];
        // Nothing sent: closing now would send FIN.
        assert!(nothing_unread(&mut stream, &mut buf));
        // Input waiting: closing now would send RST.
        peer.write_all(b"after close").unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while nothing_unread(&mut stream, &mut buf) {
            assert!(Instant::now() < deadline, "the peer's bytes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        // That read took it; the peer's FIN alone is no reason to wait.
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(nothing_unread(&mut stream, &mut buf));
    }
}
