//! Requests per loop turn: past the hub's budget (`requests_per_turn`),
//! a connection's requests wait for later turns, taken round robin, and
//! the connection is not read until they are done.
//!
//! One read can hold hundreds of requests (a client that resubscribes 100
//! topics sends them at once), and one turn can read hundreds of such
//! clients: without a bound, 30,000 subscribes run in one turn and every
//! other client waits for all of them. With it a turn does at most the
//! budget's worth, then the loop writes, accepts and reads again; a client
//! with one request waits at most a turn or two. A connection's requests
//! keep their order: once one waits, the later ones wait behind it.

use std::collections::VecDeque;

use super::hub::Hub;
use super::reading::Hold;
use crate::reactor::{ConnId, Ctx};

/// The turn's request count, and the connections with requests waiting.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    /// Requests run since the budget last started over.
    used: usize,
    /// The loop was asked to call `wake` (where the budget starts over).
    armed: bool,
    /// Connections with deferred requests, in turn order.
    ready: VecDeque<ConnId>,
}

impl Hub {
    /// Run request `text` of `id` now, or after the ones it already has
    /// waiting, or on a later turn if this turn's budget is spent.
    pub(super) fn paced_request(&mut self, ctx: &mut Ctx<'_>, id: ConnId, text: &str) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let waits = !c.deferred.is_empty();
        if !waits && self.pacing.used < self.config.requests_per_turn {
            self.count_request(ctx);
            return self.request(ctx, id, text);
        }
        // Bounded by what one read brought: the connection is not read
        // again until these are done.
        c.deferred.push_back(Box::from(text));
        if !waits {
            // Its input stays in the socket until these are done.
            self.hold_reading(ctx, id, Hold::Deferred);
            self.pacing.ready.push_back(id);
            self.metrics.requests_deferred += 1;
        }
        self.arm_pacing(ctx);
    }

    fn count_request(&mut self, ctx: &mut Ctx<'_>) {
        self.pacing.used += 1;
        self.arm_pacing(ctx);
    }

    fn arm_pacing(&mut self, ctx: &mut Ctx<'_>) {
        if !self.pacing.armed {
            self.pacing.armed = true;
            ctx.wake();
        }
    }

    /// The hub's `wake`: the budget starts over and the waiting requests
    /// run, one per connection in turn, as far as it goes.
    pub(super) fn run_deferred(&mut self, ctx: &mut Ctx<'_>) {
        self.pacing.armed = false;
        self.pacing.used = 0;
        while self.pacing.used < self.config.requests_per_turn {
            let Some(id) = self.pacing.ready.pop_front() else {
                break;
            };
            let Some(text) = self
                .clients
                .get_mut(&id)
                .and_then(|c| c.deferred.pop_front())
            else {
                continue; // closed meanwhile
            };
            self.count_request(ctx);
            self.request(ctx, id, &text);
            match self.clients.get(&id).map(|c| c.deferred.is_empty()) {
                Some(false) => self.pacing.ready.push_back(id),
                Some(true) => self.release_reading(ctx, id, Hold::Deferred),
                None => {}
            }
        }
        if !self.pacing.ready.is_empty() {
            self.arm_pacing(ctx);
        }
    }
}
