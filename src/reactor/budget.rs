//! One memory budget for the input of every connection
//! (`Config::max_buffered_bytes`): when the bytes held in messages being
//! reassembled and in request heads collected in pieces pass it, the
//! largest holders are closed until the total is back to 7/8 of it.
//!
//! The total (`Core::buffered`) is kept where buffers change, so the hot
//! path pays one comparison per read; this pass runs only past the limit.
//! Closing the largest first is what one attacker holding a lot costs
//! least to the others; closing rather than pausing frees the memory now
//! (a paused reader keeps its buffer, and if every holder were paused none
//! could ever finish its message).

use super::conn::Phase;
use super::core::slot;
use super::handler::Handler;
use super::id::ConnId;
use super::server::Server;
use crate::proto::handshake::Rejection;
use crate::proto::{CloseCode, Receiver, Role};

/// The reason sent with 1013 (and as the `503` body in the handshake).
const REASON: &str = "server memory budget exceeded";

impl Server {
    /// The input held passed `max_buffered_bytes`: close the largest
    /// holders until it is at most 7/8 of that (one pass makes room for
    /// more than the next read, so an attack does not cost a pass per
    /// read).
    #[cold]
    #[inline(never)]
    pub(super) fn shed<H: Handler>(&mut self, handler: &mut H) {
        self.core.over_budget = false;
        let limit = self.core.config.max_buffered_bytes;
        if self.core.buffered <= limit {
            return;
        }
        let target = limit - limit / 8;
        let mut holders: Vec<(usize, ConnId)> = self
            .core
            .conns
            .iter()
            .filter_map(|(k, c)| {
                let held = c.held();
                let id = ConnId {
                    key: k as u32,
                    gen: c.gen,
                };
                (held > 0).then_some((held, id))
            })
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        log::warn!(
            "input held {} B > max_buffered_bytes {limit} B: closing the largest of {} holders",
            self.core.buffered,
            holders.len()
        );
        for (_, id) in holders {
            if self.core.buffered <= target {
                break;
            }
            self.shed_one(id, handler);
        }
    }

    /// Free what `id` holds and end it: `503` in the handshake, 1013 once
    /// upgraded (RFC 6455 §7.4.1, IANA registry: "Try Again Later"),
    /// without waiting for the peer's close frame (its input is discarded
    /// from now on, so it cannot grow again).
    fn shed_one<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        self.core.counts.budget_closes += 1;
        log::debug!("conn {id}: closed, holding {} B of input", c.held());
        if let Phase::Handshake { .. } | Phase::Deferred(_) = c.phase {
            let rej = Rejection {
                status: 503,
                reason: REASON,
            };
            // Answering ends the handshake phase, which frees its head.
            return self.reject(id, &rej, handler);
        }
        let before = c.rx.buffer_capacity();
        c.rx = Receiver::new(Role::Server);
        c.rx_held = false;
        let open = c.phase.is_open();
        let finishing = matches!(c.phase, Phase::Finishing(_));
        self.core.held_changed(before, 0);
        if open {
            self.core.close(id, CloseCode::TRY_AGAIN_LATER, REASON);
        }
        if !finishing {
            self.core.finish(id, false);
        }
    }
}
