//! The outbox: every publish and direct message from the call that made
//! it to its ack, in call order, bounded.
//!
//! Each entry carries an idempotency key made when it was called, so that
//! every sending of it — the first, one after a connection dropped before
//! its ack, one after an `unavailable` answer — is the same message to the
//! hub, stored once (within the hub's `--idempotency-window`). An entry
//! leaves the outbox when its ack comes (reported once, `duplicate` or
//! not) or when it fails for good.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::value::RawValue;

use super::api::{OutboxError, PublishId};
use super::wire::Request;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// A `pub` on a topic.
    Topic { topic: String, exclude_self: bool },
    /// A `dm` to a user.
    User(String),
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for a connection (a welcomed one).
    Queued,
    /// Sent as request `request`; waiting for its answer.
    Sent { request: u64 },
    /// Answered `unavailable`: sent again at this time.
    RetryAt(Instant),
}

/// One publish or direct message.
#[derive(Debug)]
pub(super) struct Entry {
    pub id: PublishId,
    pub target: Target,
    pub data: Box<RawValue>,
    pub key: String,
    pub state: State,
    /// Times it was answered `unavailable` or `rate_limited`.
    pub retries: u32,
}

impl Entry {
    /// The request that sends it, with request id `id`.
    pub fn request(&self, id: u64) -> String {
        match &self.target {
            Target::Topic {
                topic,
                exclude_self,
            } => Request::Pub {
                topic,
                data: &self.data,
                exclude_self: *exclude_self,
                idempotency_key: &self.key,
                id,
            },
            Target::User(to) => Request::Dm {
                to,
                data: &self.data,
                idempotency_key: &self.key,
                id,
            },
        }
        .encode()
    }
}

/// The entries, oldest first (ids increase along the queue).
#[derive(Debug, Default)]
pub(super) struct Outbox {
    entries: VecDeque<Entry>,
    last_id: u64,
}

impl Outbox {
    /// Take a message, unless `limit` entries wait already.
    pub fn push(
        &mut self,
        target: Target,
        data: Box<RawValue>,
        key: String,
        limit: usize,
    ) -> Result<PublishId, OutboxError> {
        if self.entries.len() >= limit {
            return Err(OutboxError::Full { limit });
        }
        self.last_id += 1;
        let id = PublishId(self.last_id);
        self.entries.push_back(Entry {
            id,
            target,
            data,
            key,
            state: State::Queued,
            retries: 0,
        });
        Ok(id)
    }

    fn index(&self, id: PublishId) -> Option<usize> {
        self.entries.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// The entry `id`, if it still waits.
    pub fn get_mut(&mut self, id: PublishId) -> Option<&mut Entry> {
        let i = self.index(id)?;
        self.entries.get_mut(i)
    }

    /// Take `id` out (acked, or failed for good).
    pub fn remove(&mut self, id: PublishId) -> Option<Entry> {
        let i = self.index(id)?;
        self.entries.remove(i)
    }

    /// Entries to send now, in call order: the queued ones, and those
    /// whose retry time has come.
    pub fn due(&self, now: Instant) -> Vec<PublishId> {
        self.entries
            .iter()
            .filter(|e| match e.state {
                State::Queued => true,
                State::RetryAt(at) => at <= now,
                State::Sent { .. } => false,
            })
            .map(|e| e.id)
            .collect()
    }

    /// Retries whose time has come while there is no connection to send
    /// them on: they wait with the queued ones, in call order.
    pub fn queue_due_retries(&mut self, now: Instant) {
        for e in &mut self.entries {
            if matches!(e.state, State::RetryAt(at) if at <= now) {
                e.state = State::Queued;
            }
        }
    }

    /// The connection dropped: what was sent without an answer is sent
    /// again (same key) on the next one.
    pub fn connection_lost(&mut self) {
        for e in &mut self.entries {
            if let State::Sent { .. } = e.state {
                e.state = State::Queued;
            }
        }
    }

    /// The earliest retry time.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::RetryAt(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Everything, oldest first (the client stopped).
    pub fn drain(&mut self) -> Vec<Entry> {
        self.entries.drain(..).collect()
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn data() -> Box<RawValue> {
        RawValue::from_string("1".into()).unwrap()
    }

    fn push(o: &mut Outbox, n: u32) -> PublishId {
        let t = Target::Topic {
            topic: "t".into(),
            exclude_self: false,
        };
        o.push(t, data(), format!("k{n}"), 3).unwrap()
    }

    #[test]
    fn bounded_ordered_and_requeued_on_a_drop() {
        let mut o = Outbox::default();
        let ids: Vec<_> = (0..3).map(|n| push(&mut o, n)).collect();
        let t = Target::User("bob".into());
        assert_eq!(
            o.push(t, data(), "k".into(), 3),
            Err(OutboxError::Full { limit: 3 })
        );
        let now = Instant::now();
        assert_eq!(o.due(now), ids);
        for (n, id) in ids.iter().enumerate() {
            o.get_mut(*id).unwrap().state = State::Sent { request: n as u64 };
        }
        assert!(o.due(now).is_empty());
        o.get_mut(ids[1]).unwrap().state = State::RetryAt(now + Duration::from_secs(1));
        assert_eq!(o.next_retry(), Some(now + Duration::from_secs(1)));
        o.connection_lost();
        assert_eq!(o.due(now), [ids[0], ids[2]]);
        assert_eq!(o.due(now + Duration::from_secs(1)), ids);
        assert_eq!(o.remove(ids[0]).map(|e| e.key), Some("k0".into()));
        assert!(o.remove(ids[0]).is_none());
        assert_eq!(o.len(), 2);
    }
}
