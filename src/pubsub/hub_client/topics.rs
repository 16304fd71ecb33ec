//! One subscribed topic's state across connections: where to resume
//! from, which seqs were seen (duplicates dropped), what was processed
//! and acknowledged, and its member list if kept.

use std::time::Instant;

use super::api::{Position, Since, SubOptions};
use super::events::Subscribed;
use super::roster::Roster;
use super::wire::SinceWire;

/// A topic the application subscribed to.
#[derive(Debug)]
pub(super) struct Topic {
    /// Where the application asked to start; used until a position is
    /// known.
    since: Option<Since>,
    /// The last message seen, or where the last subscription started:
    /// the next one resumes after it, and messages at or before it (in
    /// its epoch) are duplicates.
    pub last: Option<Position>,
    /// Subscribed on the current connection (its `sub` was acked).
    pub live: bool,
    /// The `sub` request waiting for its ack.
    pub sub_request: Option<u64>,
    /// Refused with `rate_limited`/`unavailable`: asked again then.
    pub retry_at: Option<Instant>,
    /// Processed up to here (the application's `ack`), not yet sent.
    ack_want: Option<Position>,
    /// Last acknowledgement sent on the current connection.
    ack_sent: Option<Position>,
    /// The member list, if the application keeps one.
    pub roster: Option<Roster>,
}

impl Topic {
    pub fn new(opts: SubOptions) -> Self {
        Topic {
            since: opts.since,
            last: None,
            live: false,
            sub_request: None,
            retry_at: None,
            ack_want: None,
            ack_sent: None,
            roster: opts.roster.then(Roster::default),
        }
    }

    /// `since` of the next `sub`: after the last message seen, else what
    /// the application asked for.
    pub fn since(&self) -> Option<SinceWire<'_>> {
        match (&self.last, &self.since) {
            (Some(p), _) | (None, Some(Since::From(p))) => Some(SinceWire::At {
                epoch: &p.epoch,
                seq: p.seq,
            }),
            (None, Some(Since::Acked)) => Some(SinceWire::Word("acked")),
            (None, None) => None,
        }
    }

    /// The `sub` was acked.
    pub fn subscribed(&mut self, ack: &Subscribed) {
        self.live = true;
        self.sub_request = None;
        self.retry_at = None;
        // Where to resume from if no message comes before a disconnect;
        // after an epoch change the new epoch is followed, and the
        // replayed messages (which follow) move it on.
        if self.last.is_none() || ack.epoch_changed {
            let start = ack.seq.saturating_sub(ack.replayed);
            self.last = Some(Position::new(ack.epoch.clone(), start));
        }
        self.forget_acks_outside(&ack.epoch);
    }

    /// A message `seq` of `epoch` came: whether it is new (then it is the
    /// last seen). Within an epoch a topic's seqs only grow, so one at or
    /// below the last seen was delivered already (a replay overlapping
    /// live messages, a resend after a reconnect).
    pub fn fresh(&mut self, epoch: &str, seq: u64) -> bool {
        match &mut self.last {
            Some(l) if l.epoch == epoch => {
                if seq <= l.seq {
                    return false;
                }
                l.seq = seq; // the same epoch: no new string per message
                true
            }
            _ => {
                self.last = Some(Position::new(epoch, seq));
                true
            }
        }
    }

    /// The topic's numbering started over in `epoch` after `seq`.
    pub fn reset(&mut self, epoch: &str, seq: u64) {
        self.last = Some(Position::new(epoch, seq));
        self.forget_acks_outside(epoch);
    }

    /// Positions of another epoch mean nothing now.
    fn forget_acks_outside(&mut self, epoch: &str) {
        if self.ack_want.as_ref().is_some_and(|p| p.epoch != epoch) {
            self.ack_want = None;
        }
        if self.ack_sent.as_ref().is_some_and(|p| p.epoch != epoch) {
            self.ack_sent = None;
        }
    }

    /// The application processed up to `seq` of `epoch`: kept if it moves
    /// the position on (cumulative) in the epoch the topic follows.
    /// Returns whether there is now something to send.
    pub fn processed(&mut self, epoch: &str, seq: u64) -> bool {
        if self.last.as_ref().is_some_and(|l| l.epoch != epoch) {
            return false; // from before a reset or epoch change
        }
        match &mut self.ack_want {
            Some(w) if w.epoch == epoch => w.seq = w.seq.max(seq),
            _ => self.ack_want = Some(Position::new(epoch, seq)),
        }
        self.ack_due()
    }

    /// Whether an acknowledgement waits to be sent.
    pub fn ack_due(&self) -> bool {
        self.ack_want.is_some() && self.ack_want != self.ack_sent
    }

    /// The acknowledgement to send now, if any (the topic must be live).
    pub fn take_ack(&mut self) -> Option<Position> {
        if !self.live || !self.ack_due() {
            return None;
        }
        self.ack_sent.clone_from(&self.ack_want);
        self.ack_want.clone()
    }

    /// The connection dropped: subscribe again on the next one, and send
    /// the latest acknowledgement again there (one that was queued when
    /// the connection dropped may not have left).
    pub fn connection_lost(&mut self) {
        self.live = false;
        self.sub_request = None;
        self.ack_sent = None;
        if let Some(r) = self.roster.as_mut() {
            r.connection_lost();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(epoch: &str, seq: u64, replayed: u64, epoch_changed: bool) -> Subscribed {
        Subscribed {
            topic: "t".into(),
            epoch: epoch.into(),
            seq,
            resumed: true,
            recovered: !epoch_changed,
            lost: 0,
            epoch_changed,
            replayed,
            acked: None,
        }
    }

    #[test]
    fn resume_point_and_duplicates() {
        let mut t = Topic::new(SubOptions::acked());
        assert!(matches!(t.since(), Some(SinceWire::Word("acked"))));
        t.subscribed(&ack("e", 10, 3, false));
        // The three replayed (8, 9, 10) are new; 7 was seen before.
        assert!(!t.fresh("e", 7));
        assert!(t.fresh("e", 8) && t.fresh("e", 9) && t.fresh("e", 10));
        assert!(!t.fresh("e", 9));
        assert!(matches!(
            t.since(),
            Some(SinceWire::At {
                epoch: "e",
                seq: 10
            })
        ));
        // A resume in the same epoch keeps the position.
        t.connection_lost();
        t.subscribed(&ack("e", 12, 2, false));
        assert!(!t.fresh("e", 10) && t.fresh("e", 11));
        // Another epoch: from its start less what is replayed.
        t.subscribed(&ack("f", 5, 5, true));
        assert_eq!(t.last, Some(Position::new("f", 0)));
        assert!(t.fresh("f", 1));
        t.reset("g", 0);
        assert!(t.fresh("g", 1) && !t.fresh("g", 1));
    }

    #[test]
    fn acks_are_cumulative_and_sent_once() {
        let mut t = Topic::new(SubOptions::default());
        t.subscribed(&ack("e", 0, 0, false));
        assert!(t.processed("e", 3));
        assert!(t.processed("e", 2)); // still 3 to send
        assert_eq!(t.take_ack(), Some(Position::new("e", 3)));
        assert_eq!(t.take_ack(), None);
        assert!(!t.processed("e", 1));
        assert!(!t.processed("old", 9));
        assert!(t.processed("e", 5));
        t.connection_lost();
        assert_eq!(t.take_ack(), None, "not live");
        t.subscribed(&ack("e", 5, 0, false));
        assert_eq!(t.take_ack(), Some(Position::new("e", 5)));
        // An epoch change drops positions of the old one.
        t.processed("e", 6);
        t.subscribed(&ack("f", 0, 0, true));
        assert_eq!(t.take_ack(), None);
    }
}
