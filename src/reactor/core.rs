//! The loop's shared state — connections, timers, buffer pool — and the
//! operations on it that every front-end shares (send, close, finish).
//! The application reaches it through [`Ctx`](super::Ctx) (`ctx.rs`).

use std::time::Instant;

use slab::Slab;

use super::app_timers::AppTimers;
use super::client_options::ConnectError;
use super::clock::{millis, Clock};
use super::config::{Config, FullQueuePolicy};
use super::conn::{head_capacity, Conn, Finish, Phase};
#[cfg(feature = "deflate")]
use super::deflate::LoopDeflate;
use super::frame::{Frame, SendStatus};
use super::handler::Upgrade;
use super::id::ConnId;
use super::resolve::Resolver;
use super::state::{ConnStates, Slots};
use super::timer::{Millis, TimerHeap};
use super::wake::Wake;
use super::write_queue::BufPool;
use crate::proto::{CloseCode, Error, Limits, Message, OpCode, Role};

/// Bytes of free coalescing buffers kept for reuse by one loop (4 MiB). A
/// connection's own replies are written right after its read, so few are in
/// use at once; a broadcast fills one small buffer per recipient, all
/// written at the end of the turn, and they come back here.
pub(crate) const POOLED_BYTES: usize = 4 << 20;

/// Payloads at least this large are queued in a buffer of their own, of
/// exactly their size (header and payload, one copy), instead of going
/// through the coalescing buffer. (Before sends only queued, such payloads
/// were written straight from the caller's buffer, hence the name.) For a
/// large message without any copy, frame it once as a [`Frame`] and send
/// that: the queue references its bytes.
pub(crate) const DIRECT_WRITE_THRESHOLD: usize = 64 * 1024;

/// The connection `id` in `conns`, if its generation matches (a borrow of
/// the slab alone, so other `Core` fields stay usable).
#[inline]
pub(crate) fn slot(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns.get_mut(id.key as usize).filter(|c| c.gen == id.gen)
}

/// Loop state shared by the I/O code and the application callbacks.
pub(crate) struct Core {
    pub conns: Slab<Conn>,
    pub next_gen: u32,
    pub timers: TimerHeap,
    pub pool: BufPool,
    /// Connections with queued output, flushed once each at the end of the
    /// loop turn (cork).
    pub dirty: Vec<ConnId>,
    pub config: Config,
    /// The protocol core's read limits, from `config`.
    pub limits: Limits,
    pub start: Instant,
    pub now: Millis,
    /// Set when a graceful shutdown began: its deadline.
    pub shutdown_at: Option<Millis>,
    pub shutdown_requested: bool,
    /// Upgraded connections: open, closing, or finishing after they were
    /// open (`Config::max_connections` counts these).
    pub open_count: usize,
    /// The connection whose input is being processed; it is flushed right
    /// after, so its sends skip the end-of-turn flush list.
    pub reading: Option<ConnId>,
    /// Reused by `Ctx::broadcast` for the list of recipients.
    pub scratch_ids: Vec<ConnId>,
    /// The handler is owed a `wake` call (shared with every `Handle`).
    pub wake: Wake,
    /// Connections to read again next turn without a readiness event: their
    /// read budget ran out with input possibly left in the socket, or the
    /// application resumed reading (edge-triggered readiness will not
    /// report input that was already reported). A connection is listed at
    /// most once (its `unread` flag).
    pub unread: Vec<ConnId>,
    /// Input bytes held by all connections (`Conn::held` summed), against
    /// `Config::max_buffered_bytes`. Kept exact where buffers change:
    /// around the protocol core (`read::feed`), in `collect_head`, when a
    /// handshake phase ends (`Core::finish`, the upgrade) and at removal.
    pub buffered: usize,
    /// `buffered` passed `max_buffered_bytes`: the largest holders are to
    /// be closed (`Server::shed`).
    pub over_budget: bool,
    /// Counts reported by [`Ctx::stats`](super::Ctx::stats).
    pub counts: Counts,
    /// Timers set through [`Ctx::set_timer`](super::Ctx::set_timer).
    pub app_timers: AppTimers,
    /// The application's state per connection (`Handler::Conn`; set by
    /// `Server::run` for its handler's type).
    pub states: Box<dyn ConnStates + Send>,
    /// Deferred upgrades answered (`Ctx::answer_upgrade`), to be carried
    /// out by the loop after the callback (`Server::answer_upgrades`).
    pub answered: Vec<ConnId>,
    /// permessage-deflate, when [`Config::deflate`] offers it.
    #[cfg(feature = "deflate")]
    pub deflate: Option<LoopDeflate>,
    /// Registers the sockets of client connections (`Ctx::connect`).
    pub registry: Option<mio::Registry>,
    /// Resolves client connections' host names off the loop.
    pub resolver: Resolver,
    /// Client connections not open yet (connecting or handshaking): not
    /// counted as pending server handshakes.
    pub dialing: usize,
    /// The platform's roots for `wss://` clients without a configuration
    /// of their own, loaded at the first such connect.
    #[cfg(feature = "tls")]
    pub platform_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    #[cfg(not(feature = "tls"))]
    pub platform_tls: (),
    /// Reused by client sends for the masked frames (`client_send.rs`).
    pub mask_scratch: Vec<u8>,
    /// The subprotocol each open client connection's server chose, for
    /// those that offered any (`Ctx::protocol`); kept beside the slab so
    /// that `Conn` stays small.
    pub protocols: super::id::ConnIdMap<Box<str>>,
}

/// Events counted over the loop's life (see [`Stats`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub budget_closes: u64,
    pub handshakes_dropped: u64,
}

/// A snapshot of the loop's fairness bounds, for metrics
/// ([`Ctx::stats`](super::Ctx::stats)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Input bytes held by all connections (messages being reassembled,
    /// request heads collected in pieces), against
    /// [`Config::max_buffered_bytes`].
    pub buffered_bytes: usize,
    /// Connections closed (1013, or `503` in the handshake) since the loop
    /// started because that total passed `max_buffered_bytes`.
    pub budget_closes: u64,
    /// Connections not upgraded (handshake, or an HTTP answer on its
    /// way), against [`Config::max_pending_handshakes`].
    pub pending_handshakes: usize,
    /// Connections dropped since the loop started to make room under
    /// `max_pending_handshakes` (the oldest first).
    pub handshakes_dropped: u64,
    /// Upgraded connections, against [`Config::max_connections`].
    pub upgraded_connections: usize,
    /// Application timers set and not yet fired or cancelled, against
    /// [`Config::max_timers`].
    pub timers: usize,
    /// permessage-deflate (feature `deflate`, `Config::deflate`; zero
    /// otherwise): compressor runs — a message compressed for one
    /// connection, or a shared [`super::Frame`] compressed once for many.
    pub compressions: u64,
    /// Frame bytes (headers included) those runs took in: the plain
    /// frames.
    pub compress_bytes_before: u64,
    /// Frame bytes (headers included) those runs produced.
    pub compress_bytes_after: u64,
    /// Messages queued compressed (each delivery of a shared frame
    /// counts; a [`super::Frame::batch`] counts once).
    pub sent_compressed: u64,
    /// Messages queued uncompressed on connections that agreed to
    /// permessage-deflate: sends under the size threshold or not
    /// shrinking, and shared frames whose encoding stayed plain (shared
    /// frames under `MIN_COMPRESSED_FRAME` bytes
    /// take the plain path uncounted).
    pub sent_plain: u64,
    /// Of `sent_compressed`, deliveries of a frame compressed once and
    /// shared.
    pub sent_shared_compressed: u64,
}

impl Core {
    pub fn new(config: Config) -> Self {
        Core {
            conns: Slab::new(),
            next_gen: 1,
            timers: TimerHeap::default(),
            pool: BufPool::new(POOLED_BYTES, 4096),
            dirty: Vec::new(),
            limits: config.limits(),
            #[cfg(feature = "deflate")]
            deflate: config.deflate.map(LoopDeflate::new),
            config,
            start: Instant::now(),
            now: 0,
            shutdown_at: None,
            shutdown_requested: false,
            open_count: 0,
            reading: None,
            scratch_ids: Vec::new(),
            wake: Wake::default(),
            unread: Vec::new(),
            buffered: 0,
            over_budget: false,
            counts: Counts::default(),
            app_timers: AppTimers::default(),
            states: Box::new(Slots::<()>::default()),
            answered: Vec::new(),
            registry: None,
            resolver: Resolver::new(),
            protocols: Default::default(),
            dialing: 0,
            platform_tls: Default::default(),
            mask_scratch: Vec::new(),
        }
    }

    /// Connections not upgraded: in the handshake, or finishing after an
    /// HTTP answer (`open_count` counts the upgraded ones, `dialing` the
    /// client connections not open yet).
    pub fn pending(&self) -> usize {
        self.conns.len() - self.open_count - self.dialing
    }

    /// Add `after - before` to the input held (`before`/`after`: a buffer's
    /// capacity around a change); note when that passes the budget.
    #[inline]
    pub fn held_changed(&mut self, before: usize, after: usize) {
        if after != before {
            self.buffered = self.buffered - before + after;
            if self.buffered > self.config.max_buffered_bytes {
                self.over_budget = true;
            }
        }
    }

    /// List `id` to be read again next turn without a readiness event.
    pub fn read_again(&mut self, id: ConnId) {
        if let Some(c) = slot(&mut self.conns, id) {
            if !c.unread {
                c.unread = true;
                self.unread.push(id);
            }
        }
    }

    /// Read the clock: milliseconds since the loop started.
    pub fn clock(&self) -> Millis {
        self.config.clock.read(self.start)
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.key as usize).filter(|c| c.gen == id.gen)
    }

    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.key as usize)
            .filter(|c| c.gen == id.gen)
    }

    pub fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.get_mut(id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// When a connection that starts closing now is given up: after
    /// `close_timeout`, or during a graceful shutdown at its deadline if
    /// that is later (a queue may drain to a slow reader until then).
    fn close_deadline(&self) -> u64 {
        let at = self.now + millis(self.config.close_timeout);
        self.shutdown_at.map_or(at, |s| s.max(at))
    }

    /// Enter `Finishing`: flush, then close TCP (see [`Phase::Finishing`]).
    /// `by_peer`: the peer's close frame came first.
    pub fn finish(&mut self, id: ConnId, by_peer: bool) {
        let deadline = self.close_deadline();
        if let Some(c) = slot(&mut self.conns, id) {
            // Leaving the handshake drops a head collected in pieces.
            let head = head_capacity(&c.phase);
            // Read on: the peer's FIN ends a finishing connection.
            let paused = std::mem::take(&mut c.app_paused);
            c.phase = match c.phase {
                Phase::Finishing(f) => Phase::Finishing(Finish { deadline, ..f }),
                ref p => Phase::Finishing(Finish {
                    deadline,
                    upgraded: p.upgraded(),
                    by_peer,
                    write_shut: false,
                    peer_eof: false,
                }),
            };
            self.held_changed(head, 0);
            if paused {
                self.read_again(id);
            }
        }
        self.arm_timer(id);
        self.mark_dirty(id);
    }

    /// Queue a control frame (pong, close). They are never dropped for a
    /// full queue: room is reserved above `max_queued_bytes`. A peer that
    /// fills even that is not reading at all, and is cut off.
    pub fn push_control(&mut self, id: ConnId, bytes: &[u8]) {
        let (max, reserve) = (self.config.max_queued_bytes, self.config.control_reserve);
        let Some(c) = slot(&mut self.conns, id) else {
            return;
        };
        // Counted from where a whole data message may have taken the queue
        // past `max_queued_bytes`: a peer that reads is never cut off for it.
        let cap = max.max(c.data_mark).saturating_add(reserve);
        if c.wq.len() + bytes.len() > cap {
            log::debug!("conn {id}: peer not reading, control reserve exhausted");
            c.abort = true;
        } else {
            c.wq.push_bytes(&[bytes], &mut self.pool);
        }
        self.mark_dirty(id);
    }

    /// The peer's close frame arrived (validated, and our reply queued by
    /// the protocol core): note who closed with what, and finish.
    pub fn peer_closed(&mut self, id: ConnId, code: Option<CloseCode>) {
        let Some(c) = self.get_mut(id) else { return };
        let by_peer = c.close_code == 0;
        if by_peer {
            c.close_code = code.unwrap_or(CloseCode::NO_STATUS).0;
        }
        self.finish(id, by_peer);
    }

    /// The peer broke the protocol and the protocol core failed the
    /// connection (RFC 6455 §7.1.7: its close frame is queued): note the
    /// code and finish without waiting for a reply. The close is not clean:
    /// no valid close frame came from the peer.
    pub fn failed(&mut self, id: ConnId, e: Error) {
        log::debug!("conn {id}: {e}");
        let Some(c) = self.get_mut(id) else { return };
        if c.close_code == 0 {
            c.close_code = e.close_code().0;
        }
        self.finish(id, false);
    }

    /// Start the close handshake from our side.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) {
        let deadline = self.close_deadline();
        let Some(c) = self.get_mut(id) else { return };
        match c.phase {
            Phase::Open { .. } => {}
            Phase::Handshake { .. } | Phase::Deferred(_) => {
                c.abort = true;
                self.mark_dirty(id);
                return;
            }
            Phase::Connecting(_) | Phase::Requested(_) => {
                return self.dial_failed(id, ConnectError::Aborted);
            }
            _ => return,
        }
        // RFC 6455 §7.4.1: 1005, 1006 and 1015 (and codes outside
        // 1000–4999) must not be sent; an application that asks for one
        // still gets its connection closed, with 1011.
        let code = if code.is_valid_on_wire() {
            code
        } else {
            log::warn!("conn {id}: close code {code} may not be sent; using 1011");
            CloseCode::INTERNAL
        };
        let Ok(f) = c.tx.close(Some(code), reason) else {
            return;
        };
        if c.close_code == 0 {
            c.close_code = code.0;
        }
        // The peer's close frame must be read (RFC 6455 §7.1.2); it may be
        // waiting already, with its readiness reported.
        let paused = std::mem::take(&mut c.app_paused);
        c.phase = Phase::Closing { deadline };
        if paused {
            self.read_again(id);
        }
        self.push_control(id, f.as_bytes());
        self.arm_timer(id);
    }

    /// Whether `id` may queue one more data message now: open, not
    /// aborted, and its queue below `max_queued_bytes` (or within this
    /// turn's room, see [`Core::queue_full`]). A full queue is handled by
    /// `full_queue_policy`. Nothing is written here: sends only queue, and
    /// the flush at the end of the turn (or right after the connection's
    /// read) writes.
    #[inline(always)]
    fn admit(&mut self, id: ConnId) -> Result<(), SendStatus> {
        let cfg_max = self.config.max_queued_bytes;
        let Some(c) = slot(&mut self.conns, id) else {
            return Err(SendStatus::Closed);
        };
        if !c.phase.is_open() || c.abort {
            return Err(SendStatus::Closed);
        }
        if c.wq.len() < cfg_max {
            return Ok(());
        }
        self.queue_full(id)
    }

    /// [`Core::admit`] for a queue at `max_queued_bytes`. The limit bounds
    /// what a peer leaves unread, and bytes queued this turn have not been
    /// offered to it yet: the queue is written only at the flush. So a
    /// queue whose last flush wrote everything (the peer keeps up) takes
    /// data past the limit by as much as the socket's send buffer has room
    /// for now — what that flush will hand to the kernel (asked of the
    /// kernel, no I/O). When sends wrote the queue out themselves, that is
    /// what the kernel took before the queue filled. A queue the last
    /// flush could not empty (`backlogged`: the peer is behind) takes no
    /// data past the limit (below it, one message is taken whole, so any
    /// single message can be sent). A refused send owes a drain event; the
    /// `Close` policy also starts closing with 1008.
    #[cold]
    #[inline(never)]
    fn queue_full(&mut self, id: ConnId) -> Result<(), SendStatus> {
        let max = self.config.max_queued_bytes;
        let Some(c) = slot(&mut self.conns, id) else {
            return Err(SendStatus::Closed);
        };
        if !c.backlogged && c.wq.len() < max.saturating_add(c.stream.send_room()) {
            return Ok(());
        }
        c.backpressured = true;
        if self.config.full_queue_policy == FullQueuePolicy::Close {
            self.close(id, CloseCode::POLICY, "send queue full");
        }
        Err(SendStatus::Dropped)
    }

    /// The soft queue limit: never above the hard one.
    #[inline(always)]
    pub(super) fn soft_limit(&self) -> usize {
        self.config
            .backpressure_limit
            .min(self.config.max_queued_bytes)
    }

    /// After a data message was queued on `c` (connection `id`): note the
    /// data mark and the soft limit, and have the connection written at the
    /// end of the turn. Takes the fields it needs, so the caller's borrow of
    /// `c` serves (no second slab lookup per message).
    #[inline(always)]
    pub(super) fn queued(
        c: &mut Conn,
        id: ConnId,
        soft: usize,
        reading: Option<ConnId>,
        dirty: &mut Vec<ConnId>,
    ) -> SendStatus {
        c.data_mark = c.wq.len();
        let over = c.wq.len() > soft;
        if over {
            c.backpressured = true;
        }
        if !c.dirty {
            c.dirty = true;
            if reading != Some(id) {
                dirty.push(id);
            }
        }
        if over {
            SendStatus::Backpressured
        } else {
            SendStatus::Sent
        }
    }

    /// Queue a pre-framed message shared by many connections (a broadcast):
    /// copied if small, else referenced; see [`SendStatus`]. Always inlined:
    /// it is the body of every fan-out loop (`Ctx::broadcast`, the hub's
    /// deliveries), and left to the heuristics it stopped being inlined
    /// there once it had more callers (callgrind: +17 % instructions per
    /// delivery for examples/broadcast).
    #[inline(always)]
    pub fn send_shared(&mut self, id: ConnId, frame: &Frame) -> SendStatus {
        if let Err(st) = self.admit(id) {
            return st;
        }
        let soft = self.soft_limit();
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        // RFC 6455 §5.3: a client masks every frame (`client_send.rs`).
        if c.tx.role() == Role::Client {
            return self.send_shared_masked(id, frame);
        }
        // RFC 7692: the compressed frame for a connection that agreed to
        // permessage-deflate (off the plain path).
        #[cfg(feature = "deflate")]
        if let (Some(_), Some(key)) = (&frame.compressed, c.tx.shared_key()) {
            return self.send_shared_deflate(id, frame, key);
        }
        // RFC 6455 §5.4: a whole message may not be sent inside another
        // fragmented one, nor after our close frame.
        if c.tx.check_whole_message().is_err() {
            return SendStatus::Closed;
        }
        c.wq.push_shared(&frame.bytes, &mut self.pool);
        Self::queued(c, id, soft, self.reading, &mut self.dirty)
    }

    /// Queue a data message; see [`SendStatus`].
    #[inline]
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> SendStatus {
        if let Err(st) = self.admit(id) {
            return st;
        }
        let soft = self.soft_limit();
        let Some(c) = slot(&mut self.conns, id) else {
            return SendStatus::Closed;
        };
        // RFC 6455 §5.3: a client masks every frame (`client_send.rs`).
        if c.tx.role() == Role::Client {
            return self.send_masked(id, msg);
        }
        let payload = msg.as_bytes();
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        // RFC 7692: compressed for a connection that agreed to
        // permessage-deflate, from the size threshold on.
        #[cfg(feature = "deflate")]
        let c = if c.tx.shared_key().is_some() {
            if let Some(st) = self.send_deflate(id, op, payload, soft) {
                return st;
            }
            let Some(c) = slot(&mut self.conns, id) else {
                return SendStatus::Closed;
            };
            c
        } else {
            c
        };
        match payload.len() {
            0..=125 => {
                // The common small message: a 2-byte header, copied in.
                match c.tx.small_server_header(msg.is_text(), payload.len()) {
                    Some(h) => c.wq.push_frame(&h, payload, &mut self.pool),
                    None => {
                        let Ok(h) = c.tx.data_header(op, true, payload.len() as u64) else {
                            return SendStatus::Closed;
                        };
                        c.wq.push_bytes(&[h.as_bytes(), payload], &mut self.pool);
                    }
                }
            }
            _ => {
                let Ok(h) = c.tx.data_header(op, true, payload.len() as u64) else {
                    return SendStatus::Closed;
                };
                if payload.len() >= DIRECT_WRITE_THRESHOLD {
                    c.wq.push_large(h.as_bytes(), payload, &mut self.pool);
                } else {
                    c.wq.push_bytes(&[h.as_bytes(), payload], &mut self.pool);
                }
            }
        }
        Self::queued(c, id, soft, self.reading, &mut self.dirty)
    }

    /// Record the answer to the deferred upgrade of `id`; the loop carries
    /// it out after the current callback. `false` if `id` is not waiting
    /// for one (gone, timed out, answered already, or never deferred), or
    /// if `answer` defers again.
    pub fn answer_upgrade(&mut self, id: ConnId, answer: Upgrade) -> bool {
        if matches!(answer, Upgrade::Defer) {
            return false;
        }
        let Some(c) = self.get_mut(id) else {
            return false;
        };
        match &mut c.phase {
            Phase::Deferred(d) if d.answer.is_none() => d.answer = Some(answer),
            _ => return false,
        }
        self.answered.push(id);
        true
    }

    /// Begin a graceful shutdown: every open connection gets close 1001.
    pub fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.shutdown_at = Some(self.now + millis(self.config.shutdown_timeout));
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .map(|(k, c)| ConnId {
                key: k as u32,
                gen: c.gen,
            })
            .collect();
        let reason = self.config.shutdown_reason.clone();
        for id in ids {
            self.close(id, CloseCode::GOING_AWAY, &reason);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // `Handle::wake` reports `Stopped` from now on.
        self.wake.stop();
        if let Clock::Manual(clock) = &self.config.clock {
            clock.detach();
        }
    }
}
