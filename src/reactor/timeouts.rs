//! Connection timers: when a connection's timer-heap entry comes due, find
//! its real deadline and either re-arm or act (handshake `408`, idle ping,
//! pong deadline → close 1001, close timeout).

use super::conn::Phase;
use super::core::{slot, Core};
use super::handler::Handler;
use super::id::ConnId;
use super::server::Server;
use crate::proto::handshake::Rejection;
use crate::proto::CloseCode;

impl Server {
    pub(super) fn run_timers<H: Handler>(&mut self, handler: &mut H) {
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
                Phase::Handshake { .. } => {
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
                Phase::Open { pong_due: None } => {
                    // Idle: ask for a sign of life.
                    c.phase = Phase::Open {
                        pong_due: Some(now + pong_ms),
                    };
                    if let Ok(f) = c.tx.ping(b"") {
                        self.core.push_control(id, f.as_bytes());
                    }
                    self.core.arm_timer(id);
                }
                Phase::Open { pong_due: Some(_) } => {
                    log::debug!("conn {id}: no answer to heartbeat");
                    self.core
                        .close(id, CloseCode::GOING_AWAY, "heartbeat timeout");
                    // Don't wait for a close reply from a silent peer.
                    self.core.finish(id, false);
                }
                Phase::Closing { .. } | Phase::Finishing(_) => {
                    log::debug!("conn {id}: close timeout");
                    self.remove(id, handler);
                }
            }
        }
    }
}
