//! Reading: take what a socket has (within the turn's read budget), run it
//! through the connection's phase — the request head, or frames through the
//! protocol core — and write the replies that read produced at once.

use std::io::{self, Read};

use super::conn::Phase;
use super::connect::dial_io_error;
use super::core::{slot, Core};
use super::ctx::Ctx;
use super::flush::may_resume;
use super::handler::Handler;
use super::id::ConnId;
use super::server::Server;
use crate::proto::connection::{self, Sink};
use crate::proto::{Chunk, CloseCode, ControlFrame, Message, Receiver, Role, Sender};

impl Server {
    /// Read what the peer sent, then write the replies it produced at once:
    /// everything one read caused for this connection goes out in one
    /// write (its queue buffer goes straight back to the pool).
    pub(super) fn read<H: Handler>(&mut self, id: ConnId, closed_hint: bool, handler: &mut H) {
        // Sends to this connection while its input is processed need not go
        // on the turn's flush list: it is flushed right below.
        let outer = self.core.reading.replace(id);
        self.read_socket(id, closed_hint, handler);
        handler.read_done(&mut Ctx::new(&mut self.core), id);
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
            if c.read_paused || c.abort || c.app_paused || c.peer_eof() {
                return;
            }
            if let Phase::Connecting(_) = c.phase {
                // Readiness of a connect (an error, say): `dialed` looks.
                self.core.mark_dirty(id);
                return;
            }
            if reads == budget {
                // Fairness: the others and the timers go first; the rest
                // of this input is read next turn (listed once).
                self.core.read_again(id);
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
                    if let Phase::Open {
                        pong_due: due @ Some(_),
                    } = &mut c.phase
                    {
                        // A sign of life: the heartbeat is answered.
                        *due = None;
                        // The timer entry is at the pong deadline; the next
                        // idle ping may be due before it.
                        self.core.arm_timer(id);
                    }
                    self.process(id, n, handler);
                    if self.core.over_budget {
                        // Input held past `max_buffered_bytes`.
                        self.shed(handler);
                    }
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
                    self.core.dial_failed(id, dial_io_error(e));
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
        match &mut c.phase {
            // Our side is done too: the exchange is complete.
            // (TLS: records may still wait inside rustls; let the flush
            // finish them, then it removes the connection.)
            Phase::Finishing(f) if f.write_shut || (c.wq.is_empty() && !c.stream.is_tls()) => {
                self.remove(id, handler)
            }
            // Still flushing: finish writing, then close.
            Phase::Finishing(f) => f.peer_eof = true,
            _ => self.remove(id, handler),
        }
    }

    /// Run the `n` bytes just read into the shared buffer through the
    /// connection's phase.
    fn process<H: Handler>(&mut self, id: ConnId, n: usize, handler: &mut H) {
        let Some(c) = self.core.get(id) else {
            return;
        };
        match c.phase {
            Phase::Handshake { .. } => self.collect_head(id, n, handler),
            Phase::Deferred(_) => self.deferred_input(id, n, handler),
            Phase::Requested(_) => self.response_input(id, n, handler),
            // Nothing is read before the connect completes.
            Phase::Connecting(_) => {}
            Phase::Open { .. } | Phase::Closing { .. } => {
                feed(&mut self.core, handler, id, &mut self.read_buf[..n]);
            }
            // After the close exchange, input is read and discarded.
            Phase::Finishing(_) => {}
        }
    }
}

/// The reactor's front-end to the protocol core ([`connection::receive`]):
/// automatic replies go to the connection's write queue (never dropped for
/// a full queue, see `Core::push_control`), events to the handler, with
/// messages as slices of the loop's read buffer.
struct Dispatch<'a, H> {
    core: &'a mut Core,
    handler: &'a mut H,
    id: ConnId,
}

impl<H: Handler> Sink for Dispatch<'_, H> {
    fn sender(&mut self) -> Option<&mut Sender> {
        self.core.get_mut(self.id).map(|c| &mut c.tx)
    }

    fn send_control(&mut self, frame: &ControlFrame) {
        self.core.push_control(self.id, frame.as_bytes());
    }

    #[inline]
    fn on_message(&mut self, msg: Message<'_>) {
        let mut ctx = Ctx::new(self.core);
        self.handler.message(&mut ctx, self.id, msg);
    }

    fn on_chunk(&mut self, chunk: Chunk<'_>) {
        let mut ctx = Ctx::new(self.core);
        self.handler.chunk(&mut ctx, self.id, chunk);
    }

    fn on_pong(&mut self, payload: &[u8]) {
        let mut ctx = Ctx::new(self.core);
        self.handler.pong(&mut ctx, self.id, payload);
    }

    fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.core.peer_closed(self.id, code);
    }
}

/// Feed frame bytes of an open connection through the protocol core. The
/// receiver is moved out for the call so that the handler may use the whole
/// loop state (including sends to this connection) meanwhile.
///
/// What the receiver holds between reads (a message split over reads) is
/// counted against `Config::max_buffered_bytes`: its buffer's capacity
/// before and after the call.
pub(super) fn feed<H: Handler>(core: &mut Core, handler: &mut H, id: ConnId, data: &mut [u8]) {
    let Some(c) = core.get_mut(id) else { return };
    let mut rx = std::mem::replace(&mut c.rx, Receiver::new(Role::Server));
    let held = if c.rx_held { rx.buffer_capacity() } else { 0 };
    let limits = core.limits;
    let result = connection::receive(
        &mut rx,
        data,
        &limits,
        &mut Dispatch {
            core: &mut *core,
            handler,
            id,
        },
    );
    let now_held = rx.buffer_capacity();
    core.held_changed(held, now_held);
    match core.get_mut(id) {
        Some(c) => {
            c.rx = rx;
            c.rx_held = now_held != 0;
        }
        // Removed meanwhile (the handler cannot remove; kept exact anyway).
        None => core.held_changed(now_held, 0),
    }
    if let Err(e) = result {
        core.failed(id, e);
    }
}
