//! [`Ctx`], the handle the application gets in every callback: sends,
//! closes, broadcasts, timers, per-connection state and queries, over the
//! loop's shared state (`core.rs`).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::app_timers::{TimerError, TimerId};
use super::clock::millis;
use super::config::Config;
use super::conn::Phase;
use super::core::{Core, Stats};
use super::frame::{Frame, SendStatus};
use super::handler::Upgrade;
use super::id::ConnId;
use super::state;
use crate::proto::{CloseCode, Error, Message};

/// The application's view of the loop inside a callback: send, close,
/// broadcast, set timers, reach a connection's state, query. Sends only
/// queue: each connection is written once per loop turn.
///
/// `S` is the handler's per-connection state ([`Handler::Conn`]); a
/// handler without one (`type Conn = ()`) writes `Ctx<'_>`.
///
/// ```
/// use std::time::Duration;
/// use wsmio::{ConnId, Ctx, Frame, Handler, Message, SendStatus};
///
/// #[derive(Default)]
/// struct Peer {
///     messages: u64,
/// }
///
/// struct Counter;
///
/// impl Handler for Counter {
///     type Conn = Peer;
///
///     fn open(&mut self, ctx: &mut Ctx<'_, Peer>, _id: ConnId) {
///         // Tell everyone every 10 s how many are connected.
///         let _ = ctx.set_timer(Duration::from_secs(10), 0);
///     }
///
///     fn message(&mut self, ctx: &mut Ctx<'_, Peer>, id: ConnId, msg: Message<'_>) {
///         let Some(peer) = ctx.conn(id) else { return };
///         peer.messages += 1;
///         let n = peer.messages; // the borrow of `ctx` ends here
///         if ctx.send(id, msg) == SendStatus::Dropped {
///             ctx.close(id, wsmio::CloseCode::POLICY, "too slow");
///         }
///         let _ = ctx.send_text(id, &format!("{n} so far"));
///     }
///
///     fn timer(&mut self, ctx: &mut Ctx<'_, Peer>, _token: u64) {
///         let text = format!("{} connected", ctx.open_connections());
///         ctx.broadcast(&Frame::text(&text));
///         let _ = ctx.set_timer(Duration::from_secs(10), 0);
///     }
/// }
/// ```
///
/// [`Handler::Conn`]: super::Handler::Conn
pub struct Ctx<'a, S = ()> {
    pub(crate) core: &'a mut Core,
    state: PhantomData<fn() -> S>,
}

impl<'a, S> Ctx<'a, S> {
    #[inline(always)]
    pub(crate) fn new(core: &'a mut Core) -> Self {
        Ctx {
            core,
            state: PhantomData,
        }
    }
}

impl<S: 'static> Ctx<'_, S> {
    /// The application's state of connection `id` ([`Handler::Conn`]):
    /// made with `Default` when the connection was accepted (so
    /// [`Handler::upgrade`] can fill it in), dropped after
    /// [`Handler::close`] (or, for a connection never upgraded, when it
    /// ends). `None` for an id that is gone, and inside a
    /// [`Handle::call`](super::Handle::call) closure (use
    /// [`Handle::call_handler`](super::Handle::call_handler) there).
    ///
    /// The state borrows the `Ctx`: read what a send needs first, then
    /// send (see the example on [`Ctx`]).
    ///
    /// [`Handler::Conn`]: super::Handler::Conn
    /// [`Handler::upgrade`]: super::Handler::upgrade
    /// [`Handler::close`]: super::Handler::close
    #[inline]
    pub fn conn(&mut self, id: ConnId) -> Option<&mut S> {
        state::get::<S>(&mut *self.core.states, id)
    }
}

impl<S> Ctx<'_, S> {
    /// Send a whole message to `id`.
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> SendStatus {
        self.core.send(id, msg)
    }

    /// Send a text message.
    pub fn send_text(&mut self, id: ConnId, text: &str) -> SendStatus {
        self.core.send(id, Message::Text(text))
    }

    /// Send a binary message.
    pub fn send_binary(&mut self, id: ConnId, data: &[u8]) -> SendStatus {
        self.core.send(id, Message::Binary(data))
    }

    /// Send a pre-framed, shared message: nothing is re-framed; the queue
    /// references the frame's bytes, or copies them if the frame is at most
    /// 512 bytes (cheaper than a reference for small frames).
    #[inline]
    pub fn send_frame(&mut self, id: ConnId, frame: &Frame) -> SendStatus {
        self.core.send_shared(id, frame)
    }

    /// Send `frame` to every open connection. Returns how many took it.
    pub fn broadcast(&mut self, frame: &Frame) -> usize {
        // The id list is a reused scratch vector: no allocation per broadcast.
        let mut ids = std::mem::take(&mut self.core.scratch_ids);
        ids.clear();
        ids.extend(self.open_ids());
        let n = ids
            .iter()
            .filter(|&&id| {
                matches!(
                    self.send_frame(id, frame),
                    SendStatus::Sent | SendStatus::Backpressured
                )
            })
            .count();
        self.core.scratch_ids = ids;
        n
    }

    /// Ids of all open (upgraded, not closing) connections.
    pub fn open_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.core
            .conns
            .iter()
            .filter(|(_, c)| c.phase.is_open())
            .map(|(k, c)| ConnId {
                key: k as u32,
                gen: c.gen,
            })
    }

    /// Send a ping (e.g. an application-level heartbeat). `AlreadyClosed`
    /// if `id` is gone, closing, or not upgraded yet (RFC 6455 §5.5.2: a
    /// ping goes on an established connection; during the handshake its
    /// bytes would land in the HTTP response).
    pub fn ping(&mut self, id: ConnId, payload: &[u8]) -> Result<(), Error> {
        let c = self.core.get_mut(id).ok_or(Error::AlreadyClosed)?;
        if !c.phase.is_open() {
            return Err(Error::AlreadyClosed);
        }
        let f = c.tx.ping(payload)?;
        self.core.push_control(id, f.as_bytes());
        Ok(())
    }

    /// Start the close handshake with `code` and `reason`. A connection
    /// still in its handshake is dropped without an answer (refuse it with
    /// [`Ctx::reject_upgrade`] instead to send one).
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) {
        self.core.close(id, code, reason);
    }

    /// Answer an upgrade that [`Handler::upgrade`] deferred
    /// ([`Upgrade::defer`]): accept it (with a subprotocol and headers,
    /// as [`Handler::upgrade`] would) or refuse it. The loop carries the
    /// answer out once this callback returns: the `101`, then
    /// [`Handler::open`] and the frames that came with the request. From
    /// another thread: [`Handle::answer_upgrade`](super::Handle::answer_upgrade).
    ///
    /// Returns `false` if `id` is not waiting for an answer: the client
    /// left, the handshake timeout passed (the client got `503`), it was
    /// answered already, or `answer` is [`Upgrade::defer`] again. See
    /// [`Upgrade::defer`] for an example.
    ///
    /// [`Handler::upgrade`]: super::Handler::upgrade
    /// [`Handler::open`]: super::Handler::open
    pub fn answer_upgrade(&mut self, id: ConnId, answer: Upgrade) -> bool {
        self.core.answer_upgrade(id, answer)
    }

    /// [`Ctx::answer_upgrade`] with [`Upgrade::accept`] (no subprotocol).
    pub fn accept_upgrade(&mut self, id: ConnId) -> bool {
        self.core.answer_upgrade(id, Upgrade::accept())
    }

    /// [`Ctx::answer_upgrade`] with [`Upgrade::reject`]`(status, reason)`:
    /// the status with its standard reason phrase, `reason` as the body.
    pub fn reject_upgrade(&mut self, id: ConnId, status: u16, reason: &str) -> bool {
        self.core
            .answer_upgrade(id, Upgrade::reject(status, reason))
    }

    /// Ask for a [`Handler::drain`](super::Handler::drain) call for `id`
    /// once its queue is below the soft limit (at the end of this turn if
    /// it already is), as after a send that reported backpressure. For a
    /// handler that stopped sending on its own, e.g. before a full queue.
    pub fn want_drain(&mut self, id: ConnId) {
        if let Some(c) = self.core.get_mut(id) {
            c.backpressured = true;
        }
        self.core.mark_dirty(id);
    }

    /// Bytes queued for `id`, if it exists.
    pub fn queued_bytes(&self, id: ConnId) -> Option<usize> {
        self.core.get(id).map(|c| c.wq.len())
    }

    /// True if `id` is open (upgraded and not closing).
    pub fn is_open(&self, id: ConnId) -> bool {
        self.core.get(id).is_some_and(|c| c.phase.is_open())
    }

    /// The peer's address.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.core.get(id).and_then(|c| c.stream.peer_addr().ok())
    }

    /// The subprotocol the server chose for client connection `id`
    /// (RFC 6455 §4.1: one of those offered in
    /// [`ClientOptions::protocols`](super::ClientOptions::protocols)), from
    /// `open` on; `None` if it chose none, or for a server connection
    /// (whose subprotocol the handler chose itself in `upgrade`).
    pub fn protocol(&self, id: ConnId) -> Option<&str> {
        self.core.get(id)?;
        self.core.protocols.get(&id).map(|p| &**p)
    }

    /// Upgraded connections (open, or closing after they were open).
    pub fn open_connections(&self) -> usize {
        self.core.open_count
    }

    /// All connections (including those handshaking or closing).
    pub fn connections(&self) -> usize {
        self.core.conns.len()
    }

    /// The loop's clock for this turn.
    pub fn now(&self) -> Instant {
        self.core.start + Duration::from_millis(self.core.now)
    }

    /// The loop's clock for this turn as milliseconds since the loop
    /// started: monotonic, and cheaper to read and compare than
    /// [`Ctx::now`] (no `Instant` arithmetic).
    pub fn now_ms(&self) -> u64 {
        self.core.now
    }

    /// Have the loop call [`Handler::wake`](super::Handler::wake) again at
    /// the end of this turn, without sleeping first: how a handler that
    /// stopped at a budget of work per turn continues after the other
    /// connections had theirs.
    pub fn wake(&mut self) {
        // On the loop thread the loop is running: this cannot fail.
        let _ = self.core.wake.raise();
    }

    /// Stop reading from `id` until [`Ctx::resume_reading`]: its input
    /// waits in the kernel, whose buffers fill until TCP's flow control
    /// stops the peer. Input already read is still handled: the rest of
    /// the current read (at most `read_buffer_size` bytes), and frames
    /// that came with the request head when paused from
    /// [`Handler::upgrade`](super::Handler::upgrade) or
    /// [`Handler::open`](super::Handler::open). Independent of the pause
    /// for a full send queue: a
    /// connection paused here stays paused whatever its queue does. It
    /// holds during the handshake and while the connection is open; once
    /// it starts closing (our close frame, or a failure) the pause is
    /// lifted, so the close handshake can complete, and pausing a closing
    /// connection does nothing. Pongs are not read either: a connection
    /// paused for longer than `idle_timeout + pong_timeout` is closed by
    /// the heartbeat (1001). Returns `false` if `id` is gone.
    pub fn pause_reading(&mut self, id: ConnId) -> bool {
        let Some(c) = self.core.get_mut(id) else {
            return false;
        };
        if matches!(
            c.phase,
            Phase::Handshake { .. } | Phase::Deferred(_) | Phase::Open { .. }
        ) {
            c.app_paused = true;
        }
        true
    }

    /// Read from `id` again after [`Ctx::pause_reading`]. Input that waited
    /// meanwhile is read next turn (its readiness was reported while the
    /// connection was paused, and will not be again). Reading stays paused
    /// while the send queue is over `max_queued_bytes`. Returns `false` if
    /// `id` is gone.
    pub fn resume_reading(&mut self, id: ConnId) -> bool {
        let Some(c) = self.core.get_mut(id) else {
            return false;
        };
        if c.app_paused {
            c.app_paused = false;
            self.core.read_again(id);
        }
        true
    }

    /// Whether reading from `id` is paused by [`Ctx::pause_reading`]
    /// (`None` if `id` is gone).
    pub fn is_reading_paused(&self, id: ConnId) -> Option<bool> {
        self.core.get(id).map(|c| c.app_paused)
    }

    /// Have the loop call [`Handler::timer`](super::Handler::timer) with
    /// `token` once `after` has passed on the loop's clock (whole
    /// milliseconds; a [`ManualClock`](super::ManualClock) drives it in
    /// tests). It fires at the first turn at or after its deadline, after
    /// the connections' timers; a timer set from a timer callback fires at
    /// a later turn, even with `after` zero. One-shot: set it again from
    /// the callback for a periodic one. At most
    /// [`Config::max_timers`] are set at once; past it:
    /// [`TimerError::Full`].
    pub fn set_timer(&mut self, after: Duration, token: u64) -> Result<TimerId, TimerError> {
        let at = self.core.now.saturating_add(millis(after));
        let max = self.core.config.max_timers;
        self.core.app_timers.set(at, token, max)
    }

    /// Cancel a timer set with [`Ctx::set_timer`]: `true` if it was still
    /// set (it will not fire), `false` if it already fired or was
    /// cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.app_timers.cancel(id)
    }

    /// Input bytes held by all connections (messages being reassembled,
    /// request heads collected in pieces), against
    /// [`Config::max_buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.core.buffered
    }

    /// The loop's fairness bounds and what they did, for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            buffered_bytes: self.core.buffered,
            budget_closes: self.core.counts.budget_closes,
            pending_handshakes: self.core.pending(),
            handshakes_dropped: self.core.counts.handshakes_dropped,
            upgraded_connections: self.core.open_count,
            timers: self.core.app_timers.len(),
            ..self.deflate_stats()
        }
    }

    /// The compression counters of [`Stats`] (zero without deflate).
    fn deflate_stats(&self) -> Stats {
        #[cfg(feature = "deflate")]
        if let Some(z) = &self.core.deflate {
            let c = &z.counts;
            return Stats {
                compressions: c.compressions,
                compress_bytes_before: c.bytes_before,
                compress_bytes_after: c.bytes_after,
                sent_compressed: c.sent_compressed,
                sent_plain: c.sent_plain,
                sent_shared_compressed: c.sent_shared,
                ..Stats::default()
            };
        }
        Stats::default()
    }

    /// Begin a graceful shutdown.
    pub fn shutdown(&mut self) {
        self.core.shutdown_requested = true;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.core.config
    }
}
