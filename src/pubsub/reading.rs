//! Why a connection is not read, and the one place that pauses and
//! resumes it. Two rooms stop reading a client for reasons of their own —
//! requests waiting past the turn's budget (`pacing.rs`) and publishing
//! into a long fan-out backlog (`fanout_queue.rs`) — and the loop has one
//! switch per connection ([`Ctx::pause_reading`]). Each reason is a bit;
//! the switch goes off when the first one is set and on again only when
//! the last one clears, so neither room undoes the other's pause.

use super::hub::Hub;
use crate::reactor::{ConnId, Ctx};

/// A reason not to read a connection (a bit of `Client::holds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Hold {
    /// Its requests wait for later turns (`pacing.rs`).
    Deferred = 1,
    /// It published into a fan-out backlog over its bound
    /// (`fanout_queue.rs`).
    Backlog = 2,
}

impl Hub {
    /// Stop reading `id` for `why` (it may already be stopped for another
    /// reason). `false` if `id` is gone or already held for `why`.
    pub(super) fn hold_reading(&mut self, ctx: &mut Ctx<'_>, id: ConnId, why: Hold) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        if c.holds & why as u8 != 0 {
            return false;
        }
        if c.holds == 0 {
            ctx.pause_reading(id);
        }
        c.holds |= why as u8;
        true
    }

    /// `why` no longer holds `id`: read it again unless another reason
    /// still does.
    pub(super) fn release_reading(&mut self, ctx: &mut Ctx<'_>, id: ConnId, why: Hold) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.holds & why as u8 == 0 {
            return;
        }
        c.holds &= !(why as u8);
        if c.holds == 0 {
            ctx.resume_reading(id);
        }
    }
}
