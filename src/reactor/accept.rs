//! Accepting connections: at most `accepts_per_turn` per loop turn
//! (the rest of the queue next turn), each registered and put in its
//! handshake phase; refused with `503` while `max_connections` upgraded
//! connections are open; the oldest connection not upgraded dropped to
//! make room past `max_pending_handshakes`; and answers kept coming when
//! the process runs out of file descriptors (a spare descriptor released
//! to accept and refuse one waiting connection; `accept` retried every
//! 100 ms while none is free).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::Interest;

use super::clock::millis;
use super::conn::{Conn, Phase};
use super::core::slot;
use super::ctx::Ctx;
use super::handler::Handler;
use super::id::ConnId;
use super::server::Server;
use super::stream::Stream;
use super::timer::Millis;
use crate::proto::handshake::{rejection_response, Rejection};

/// Delay before retrying `accept` after it failed for lack of descriptors.
const ACCEPT_RETRY_MS: Millis = 100;

/// A descriptor to hold in reserve (see [`Server::out_of_fds`]).
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// What one `accept` call came to.
enum Next {
    /// A new connection.
    Conn(TcpStream, SocketAddr),
    /// Nothing for this connection; call `accept` again.
    Again,
    /// The backlog is empty, or `accept` fails: stop for now.
    Stop,
}

impl Server {
    /// Take the descriptor held in reserve for running out of them.
    pub(super) fn reserve_fd(&mut self) {
        self.spare_fd = spare_fd();
    }

    /// Accept waiting connections, at most `accepts_per_turn` of them:
    /// each goes into the slab in its handshake phase (the oldest
    /// connection not upgraded is dropped first if `max_pending_handshakes`
    /// are waiting), or is refused with `503` while `max_connections`
    /// upgraded connections are open. When the budget runs out the rest
    /// wait for the next turn, after the other connections and the timers
    /// (`accept_ready` stays set: the listener raises no new edge for
    /// them).
    pub(super) fn accept<H: Handler>(&mut self, handler: &mut H) {
        self.accept_ready = false;
        for _ in 0..self.core.config.accepts_per_turn.max(1) {
            let (stream, addr) = match self.accept_one(handler) {
                Next::Conn(stream, addr) => (stream, addr),
                Next::Again => continue,
                Next::Stop => return,
            };
            self.accept_failing = false;
            if self.core.open_count >= self.core.config.max_connections {
                log::warn!("refusing {addr}: connection limit reached");
                self.refuse(stream, "connection limit reached", handler);
                continue;
            }
            if self.core.pending() >= self.core.config.max_pending_handshakes.max(1) {
                self.drop_oldest_pending(handler);
            }
            self.add_conn(stream, addr);
        }
        self.accept_ready = true;
    }

    /// Make room for a new handshake: drop the oldest connection that is
    /// not upgraded. One still waiting for its request head is answered
    /// `408` first; one whose HTTP answer is on its way is just closed.
    fn drop_oldest_pending<H: Handler>(&mut self, handler: &mut H) {
        while let Some(id) = self.pending_order.pop_front() {
            let Some(c) = slot(&mut self.core.conns, id) else {
                continue;
            };
            if c.phase.upgraded() {
                continue;
            }
            self.core.counts.handshakes_dropped += 1;
            // 408 if the request had not arrived; 503 if its upgrade
            // waited for the application's answer.
            let status = match c.phase {
                Phase::Handshake { .. } => Some(408),
                Phase::Deferred(_) => Some(503),
                _ => None,
            };
            if let Some(status) = status {
                log::debug!("conn {id}: dropped, the oldest of too many pending handshakes");
                let rej = Rejection {
                    status,
                    reason: "too many pending handshakes",
                };
                if let (false, Some(sock)) = (c.stream.is_tls(), c.stream.socket()) {
                    answer_and_close(sock, &rejection_response(&rej));
                }
                let mut ctx = Ctx::new(&mut self.core);
                handler.rejected(&mut ctx, rej.status, rej.reason);
            }
            self.remove(id, handler);
            return;
        }
    }

    /// One `accept` call, its errors handled.
    fn accept_one<H: Handler>(&mut self, handler: &mut H) -> Next {
        let Some(listener) = self.listener.as_ref() else {
            return Next::Stop;
        };
        match listener.accept() {
            Ok((stream, addr)) => Next::Conn(stream, addr),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Stop,
            // Interrupted, or that connection is gone already: take the next.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Next::Again
            }
            Err(e) if is_out_of_fds(&e) => self.out_of_fds(&e, handler),
            Err(e) => {
                self.accept_failed(&e);
                Next::Stop
            }
        }
    }

    /// `accept` failed with `e` for lack of file descriptors. Release the
    /// spare descriptor to take one waiting connection and refuse it; without
    /// a spare, retry shortly (the backlog raises no new readiness edge).
    /// (Linux reports EMFILE before it looks at the backlog, so an empty
    /// backlog shows only once a descriptor is free.)
    fn out_of_fds<H: Handler>(&mut self, e: &io::Error, handler: &mut H) -> Next {
        if self.spare_fd.take().is_some() {
            let Some(listener) = self.listener.as_ref() else {
                return Next::Stop;
            };
            let accepted = listener.accept();
            if let Ok((stream, addr)) = accepted {
                log::warn!("refusing {addr}: out of file descriptors ({e})");
                self.refuse(stream, "server out of file descriptors", handler);
                // Its descriptor is free again (the stream is closed).
                self.spare_fd = spare_fd();
                if self.spare_fd.is_some() {
                    return Next::Again;
                }
            } else {
                self.spare_fd = spare_fd();
                if matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                    return Next::Stop;
                }
            }
        }
        self.accept_failed(e);
        Next::Stop
    }

    /// Register a just-accepted socket and put it in the slab, waiting for
    /// its request head until the handshake timeout.
    fn add_conn(&mut self, mut stream: TcpStream, addr: SocketAddr) {
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
            return;
        }
        let stream = match Stream::accepted(stream, &self.core.config) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("tls setup for {addr}: {e}");
                return;
            }
        };
        let now = self.core.now;
        let deadline = now + millis(self.core.config.handshake_timeout);
        entry.insert(Conn::new(stream, gen, now, deadline));
        self.core.states.create(id.key as usize, gen);
        self.core.arm_timer(id);
        self.pending_order.push_back(id);
        // Prune ids of connections since upgraded or gone (amortized: only
        // once they outnumber the pending ones by a margin).
        if self.pending_order.len() > 2 * self.core.pending() + 1024 {
            let core = &self.core;
            self.pending_order
                .retain(|&id| core.get(id).is_some_and(|c| !c.phase.upgraded()));
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
        let mut ctx = Ctx::new(&mut self.core);
        handler.rejected(&mut ctx, rej.status, rej.reason);
        let response = rejection_response(&rej);
        let response: &[u8] = if self.core.config.serves_tls() {
            &[]
        } else {
            &response
        };
        answer_and_close(&mut stream, response);
    }
}

/// Write `response` (best effort: it fits an empty socket buffer), then
/// prepare the socket to be closed without a reset: shut down our side and
/// read what already arrived, so that closing sends FIN, not a reset that
/// could destroy the response in flight. Written here, at once, because the
/// connection is dropped right after (it never reaches a flush).
fn answer_and_close(stream: &mut TcpStream, response: &[u8]) {
    if !response.is_empty() {
        let _ = stream.write(response);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Bounded: a client that keeps sending does not hold the loop.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// `accept` failed because this process (EMFILE) or the system (ENFILE)
/// has no file descriptor left.
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
