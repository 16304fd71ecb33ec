//! Requests sent on the current connection and not answered yet, with
//! their deadlines.
//!
//! Request ids only grow and every request gets the same timeout, so the
//! oldest pending request has the earliest deadline: the table is ordered
//! by id and the first entry is the next to expire.

use std::collections::BTreeMap;
use std::time::Instant;

use super::api::PublishId;

/// What a request was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Waiting {
    Sub {
        topic: String,
    },
    Unsub,
    Publish(PublishId),
    /// A page of members: for the topic's kept member list (`roster`),
    /// or asked by the application.
    Presence {
        topic: String,
        roster: bool,
    },
}

/// The pending requests of the current connection.
#[derive(Debug, Default)]
pub(super) struct Pending {
    by_id: BTreeMap<u64, (Waiting, Instant)>,
}

impl Pending {
    /// Request `id` was sent; it must be answered by `deadline`.
    pub fn insert(&mut self, id: u64, what: Waiting, deadline: Instant) {
        self.by_id.insert(id, (what, deadline));
    }

    /// The answer to `id` came: what it was for, if it was still waited for.
    pub fn take(&mut self, id: Option<u64>) -> Option<Waiting> {
        self.by_id.remove(&id?).map(|(w, _)| w)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_id.values().next().map(|(_, d)| *d)
    }

    /// Whether a request is overdue at `now`.
    pub fn overdue(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|d| d <= now)
    }

    /// The connection is gone: everything it waited for, by request id.
    pub fn drain(&mut self) -> Vec<(u64, Waiting)> {
        std::mem::take(&mut self.by_id)
            .into_iter()
            .map(|(id, (w, _))| (id, w))
            .collect()
    }
}
