//! Connection timers: when each connection must be looked at next
//! ([`deadline`]), what its timer calls for at a given time
//! ([`on_timeout`]), keeping its timer-heap entry in step
//! (`Core::arm_timer`), and the loop's pass over the heap that acts on what
//! is due (`Server::run_timers`).
//!
//! The decisions are pure functions of (phase, last read, now, config), as
//! quinn-proto's `poll_timeout()` and `handle_timeout(now)` are: they read
//! no clock and touch no socket, so they are tested directly below, and the
//! loop's clock can be driven by a test ([`super::ManualClock`]).

use std::io;

use super::client_options::ConnectError;
use super::clock::millis;
use super::config::Config;
use super::conn::Phase;
use super::core::{slot, Core};
use super::handler::Handler;
use super::id::ConnId;
use super::server::Server;
use super::timer::Millis;
use crate::proto::handshake::Rejection;
use crate::proto::CloseCode;

/// What a connection's timer calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// No timer runs in this phase (open, with heartbeats off).
    Never,
    /// Nothing is due yet: look again at this time.
    Wait(Millis),
    /// The request head did not come in time: answer `408` and close.
    Handshake,
    /// The request came, but the application did not answer its deferred
    /// upgrade in time: answer `503` and close.
    Unanswered,
    /// Idle for `idle_timeout`: send a heartbeat ping; some byte from the
    /// peer is due by `pong_due`.
    Ping { pong_due: Millis },
    /// Nothing came since the heartbeat ping: close with 1001 and do not wait
    /// for a reply from a silent peer.
    Heartbeat,
    /// The close handshake or the TCP close took too long: drop the
    /// connection.
    Close,
    /// A client connection did not connect, or its handshake did not
    /// complete, in time.
    Dial,
    /// The address being tried did not answer within its share of the
    /// connect timeout: try the next one.
    NextAddress,
}

/// When the timer of a connection in `phase`, last read from at
/// `last_read`, must be looked at next: `None` when no timer runs.
pub(crate) fn deadline(phase: &Phase, last_read: Millis, config: &Config) -> Option<Millis> {
    match *phase {
        Phase::Handshake { deadline, .. } | Phase::Closing { deadline } => Some(deadline),
        Phase::Deferred(ref d) => Some(d.deadline),
        Phase::Connecting(ref d) => Some(d.attempt_deadline.min(d.deadline)),
        Phase::Requested(ref d) => Some(d.deadline),
        Phase::Open { pong_due: None } => config.idle_timeout.map(|d| last_read + millis(d)),
        Phase::Open { pong_due } => pong_due,
        Phase::Finishing(f) => Some(f.deadline),
    }
}

/// What the timer of a connection in `phase`, last read from at
/// `last_read`, calls for at `now`.
pub(crate) fn on_timeout(
    phase: &Phase,
    last_read: Millis,
    now: Millis,
    config: &Config,
) -> Timeout {
    match deadline(phase, last_read, config) {
        None => Timeout::Never,
        Some(at) if at > now => Timeout::Wait(at),
        Some(_) => match phase {
            Phase::Handshake { .. } => Timeout::Handshake,
            Phase::Deferred(_) => Timeout::Unanswered,
            Phase::Open { pong_due: None } => Timeout::Ping {
                pong_due: now + millis(config.pong_timeout),
            },
            Phase::Open { pong_due: Some(_) } => Timeout::Heartbeat,
            Phase::Closing { .. } | Phase::Finishing(_) => Timeout::Close,
            Phase::Connecting(d) if now < d.deadline && !d.addrs.is_empty() => Timeout::NextAddress,
            Phase::Connecting(_) | Phase::Requested(_) => Timeout::Dial,
        },
    }
}

impl Core {
    /// Make sure the timer heap will look at `id` by its deadline (an entry
    /// is added only if the deadline moved earlier: see `timer.rs`).
    pub fn arm_timer(&mut self, id: ConnId) {
        let Some(c) = self.get(id) else { return };
        let Some(at) = deadline(&c.phase, c.last_read, &self.config) else {
            return;
        };
        let heap_at = c.heap_at;
        if heap_at == 0 || at < heap_at {
            self.timers.push(at, id.key, id.gen);
            if let Some(c) = self.get_mut(id) {
                c.heap_at = at;
            }
        }
    }
}

impl Server {
    /// Act on every timer-heap entry due at the turn's time. The heap is
    /// lazy (see `timer.rs`): an entry whose connection's deadline moved
    /// later is re-armed at the real deadline.
    pub(super) fn run_timers<H: Handler>(&mut self, handler: &mut H) {
        let now = self.core.now;
        while let Some((at, key, gen)) = self.core.timers.pop_due(now) {
            let id = ConnId { key, gen };
            let Some(c) = slot(&mut self.core.conns, id) else {
                continue;
            };
            if c.heap_at != at {
                continue; // superseded by an earlier entry
            }
            c.heap_at = 0;
            match on_timeout(&c.phase, c.last_read, now, &self.core.config) {
                Timeout::Never => {}
                Timeout::Wait(_) => self.core.arm_timer(id),
                Timeout::Handshake => {
                    log::debug!("conn {id}: handshake timeout");
                    let rej = Rejection {
                        status: 408,
                        reason: "handshake timeout",
                    };
                    self.reject(id, &rej, handler);
                }
                Timeout::Unanswered => {
                    log::debug!("conn {id}: deferred upgrade not answered in time");
                    let rej = Rejection {
                        status: 503,
                        reason: "upgrade not answered in time",
                    };
                    self.reject(id, &rej, handler);
                }
                Timeout::Ping { pong_due } => {
                    c.phase = Phase::Open {
                        pong_due: Some(pong_due),
                    };
                    if let Ok(f) = c.tx.ping(b"") {
                        self.core.push_control(id, f.as_bytes());
                    }
                    self.core.arm_timer(id);
                }
                Timeout::Heartbeat => {
                    log::debug!("conn {id}: no answer to heartbeat");
                    self.core
                        .close(id, CloseCode::GOING_AWAY, "heartbeat timeout");
                    // Don't wait for a close reply from a silent peer.
                    self.core.finish(id, false);
                }
                Timeout::Close => {
                    log::debug!("conn {id}: close timeout");
                    self.remove(id, handler);
                }
                Timeout::NextAddress => {
                    if let Phase::Connecting(d) = &mut c.phase {
                        log::debug!("conn {id}: no answer from this address; the next one");
                        d.last_error = Some(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "an address did not answer within its share of the connect timeout",
                        ));
                    }
                    self.core.dial_next(id);
                }
                Timeout::Dial => {
                    // A refusal whose body is still coming is reported as
                    // what came (`Dial::failure`).
                    // Still dialing: the connect timeout, reported as the
                    // blocking client does (`Connect`, `TimedOut`); past
                    // TCP: the handshake's (`Timeout`).
                    match &mut c.phase {
                        Phase::Connecting(d) => {
                            d.error.get_or_insert(ConnectError::Connect(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no address accepted the connection within the connect timeout",
                            )));
                        }
                        Phase::Requested(d) if d.refusal.is_none() => {
                            d.error.get_or_insert(ConnectError::Timeout);
                        }
                        _ => {}
                    }
                    self.remove(id, handler);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::conn::Finish;
    use std::time::Duration;

    fn config() -> Config {
        Config::default()
            .with_idle_timeout(Some(Duration::from_millis(200)))
            .with_pong_timeout(Duration::from_millis(300))
    }

    /// `(phase, last read)` at `now` → what is due.
    fn due(phase: &Phase, last_read: Millis, now: Millis) -> Timeout {
        on_timeout(phase, last_read, now, &config())
    }

    #[test]
    fn handshake_gets_408_at_its_deadline() {
        let p = Phase::Handshake {
            head: None,
            deadline: 5_000,
        };
        assert_eq!(due(&p, 0, 4_999), Timeout::Wait(5_000));
        assert_eq!(due(&p, 0, 5_000), Timeout::Handshake);
        // Input that does not complete the head does not move it.
        assert_eq!(due(&p, 4_900, 5_001), Timeout::Handshake);
    }

    #[test]
    fn an_unanswered_deferred_upgrade_gets_503_at_the_handshake_deadline() {
        let head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let req = crate::proto::handshake::parse_request(head.as_bytes(), &Default::default());
        let p = Phase::Deferred(Box::new(crate::reactor::conn::Deferred {
            req: req.unwrap(),
            deflate: None,
            rest: Vec::new(),
            held: head.len(),
            head_len: head.len(),
            deadline: 5_000,
            answer: None,
        }));
        assert_eq!(due(&p, 0, 4_999), Timeout::Wait(5_000));
        assert_eq!(due(&p, 0, 5_000), Timeout::Unanswered);
        // Input while it waits does not move the deadline.
        assert_eq!(due(&p, 4_990, 5_001), Timeout::Unanswered);
    }

    #[test]
    fn idle_open_connection_is_pinged_then_closed_without_a_sign_of_life() {
        let idle = Phase::Open { pong_due: None };
        // The idle period runs from the last read.
        assert_eq!(due(&idle, 1_000, 1_199), Timeout::Wait(1_200));
        assert_eq!(due(&idle, 1_000, 1_200), Timeout::Ping { pong_due: 1_500 });
        // A late look pings at once, with the full pong timeout from then.
        assert_eq!(due(&idle, 1_000, 1_250), Timeout::Ping { pong_due: 1_550 });
        let pinged = Phase::Open {
            pong_due: Some(1_500),
        };
        assert_eq!(due(&pinged, 1_000, 1_499), Timeout::Wait(1_500));
        assert_eq!(due(&pinged, 1_000, 1_500), Timeout::Heartbeat);
    }

    #[test]
    fn no_heartbeat_without_an_idle_timeout() {
        let cfg = config().with_idle_timeout(None);
        let idle = Phase::Open { pong_due: None };
        assert_eq!(deadline(&idle, 0, &cfg), None);
        assert_eq!(on_timeout(&idle, 0, u64::MAX / 4, &cfg), Timeout::Never);
    }

    #[test]
    fn closing_and_finishing_are_dropped_at_their_deadline() {
        let closing = Phase::Closing { deadline: 700 };
        assert_eq!(due(&closing, 0, 699), Timeout::Wait(700));
        assert_eq!(due(&closing, 690, 700), Timeout::Close);
        let finishing = Phase::Finishing(Finish {
            deadline: 900,
            upgraded: true,
            by_peer: true,
            write_shut: true,
            peer_eof: false,
        });
        assert_eq!(due(&finishing, 0, 899), Timeout::Wait(900));
        assert_eq!(due(&finishing, 0, 901), Timeout::Close);
    }

    /// A client connection dialing its first of three addresses at 0, with
    /// a connect timeout of 3,000 ms shared: 1,000 ms for this one.
    fn dialing(addrs_left: usize, attempt_deadline: Millis) -> Phase {
        use crate::reactor::client_options::{client_handshake, ClientOptions};
        let options = ClientOptions::default();
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        Phase::Connecting(Box::new(crate::reactor::conn::Dial {
            url: crate::reactor::url::WsUrl::parse("ws://h/").unwrap(),
            hs: client_handshake([7; 16], &options),
            options,
            request: Vec::new(),
            addrs: vec![addr; addrs_left],
            last_error: None,
            deadline: 3_000,
            attempt_deadline,
            head: Vec::new(),
            refusal: None,
            error: None,
        }))
    }

    #[test]
    fn each_address_gets_its_share_of_the_connect_timeout() {
        let first = dialing(2, 1_000);
        assert_eq!(due(&first, 0, 999), Timeout::Wait(1_000));
        assert_eq!(due(&first, 0, 1_000), Timeout::NextAddress);
        // The last address keeps what is left; then the connection fails.
        let last = dialing(0, 3_000);
        assert_eq!(due(&last, 0, 2_999), Timeout::Wait(3_000));
        assert_eq!(due(&last, 0, 3_000), Timeout::Dial);
        // Past the whole timeout nothing more is tried, addresses or not.
        let late = dialing(2, 1_000);
        assert_eq!(due(&late, 0, 3_000), Timeout::Dial);
    }
}
