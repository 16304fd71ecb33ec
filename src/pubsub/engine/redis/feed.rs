//! One attached topic as this node sees it: the position it has delivered
//! up to, its copy of recent deliveries, and what arrived early.
//!
//! Redis pub/sub is at-most-once: a node that was cut off, or too slow for
//! Redis's output buffer, misses messages without being told. Every
//! delivery carries its seq, so the feed sees a jump, fetches the missing
//! ones from the topic's history (`filled`), and only then delivers what
//! came after. What history no longer holds becomes a `Gap` — never
//! silence. Duplicates (a fetch and the channel racing) are dropped by seq.
//!
//! Sans-IO: the feed returns [`Action`]s; `mod.rs` runs them.

use std::collections::BTreeMap;

use crate::pubsub::history::{History, Stored};
use crate::reactor::Frame;

/// Deliveries kept while they wait for a fill, per topic; later ones are
/// dropped and fetched from history instead.
pub(super) const MAX_EARLY: usize = 4096;

/// A delivery read from the channel or from history.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    pub seq: u64,
    pub epoch: String,
    pub frame: Frame,
    /// Which node instance and publish sent it.
    pub tag: String,
}

/// What the engine must do for a feed.
#[derive(Debug)]
pub(super) enum Action {
    /// Hand a delivery to the local subscribers.
    Deliver(Arrival),
    /// Deliveries `from..=to` are lost for the local subscribers.
    Gap { epoch: String, from: u64, to: u64 },
    /// The topic's numbering started over in `epoch`; what follows comes
    /// after seq 0 of it.
    Reset { epoch: String },
    /// Fetch the topic's history after seq `after` (and its position).
    Fetch { after: u64 },
}

/// Where the feed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for the channel subscription (attach number `gen`).
    Subscribing { gen: u64 },
    /// Subscribed; waiting for the topic's position.
    Positioning { gen: u64 },
    /// Delivering.
    Live,
}

/// One attached topic.
#[derive(Debug)]
pub(super) struct Feed {
    pub state: State,
    /// Local subscriptions.
    pub attaches: u32,
    pub epoch: String,
    /// The last seq delivered to local subscribers.
    pub last: u64,
    /// Recent deliveries, for resumes served without Redis.
    pub cache: History,
    /// Deliveries that came before their turn (or before the position).
    early: BTreeMap<u64, Arrival>,
    /// A fetch to fill a hole is under way.
    filling: bool,
}

impl Feed {
    /// A feed that is being subscribed (attach number `gen`), with a
    /// cache of at most `len` deliveries none older than `age_ms`.
    pub fn new(gen: u64, len: usize, age_ms: u64) -> Self {
        Feed {
            state: State::Subscribing { gen },
            attaches: 1,
            epoch: String::new(),
            last: 0,
            cache: History::new(len, age_ms),
            early: BTreeMap::new(),
            filling: false,
        }
    }

    /// Whether a fetch to fill a hole is under way.
    #[cfg(test)]
    pub fn filling(&self) -> bool {
        self.filling
    }

    /// The fill could not be sent or answered: the next delivery or
    /// reconnect tries again.
    pub fn failed_fill(&mut self) {
        self.filling = false;
    }

    /// The topic's position arrived (the attach finished): deliver what
    /// waited.
    pub fn positioned(&mut self, epoch: &str, seq: u64, now_ms: u64) -> Vec<Action> {
        self.state = State::Live;
        self.epoch = epoch.to_string();
        self.last = seq;
        let mut out = Vec::new();
        self.drain(now_ms, &mut out);
        out
    }

    /// A delivery came on the channel.
    pub fn arrive(&mut self, a: Arrival, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Live {
            self.keep(a);
            return out;
        }
        if a.epoch == self.epoch && a.seq <= self.last {
            return out; // had it already
        }
        if a.epoch == self.epoch && a.seq == self.last + 1 {
            self.deliver(a, now_ms, &mut out);
            self.drain(now_ms, &mut out);
            return out;
        }
        // A hole, or another epoch: wait for history to tell.
        self.keep(a);
        self.fill(&mut out);
        out
    }

    /// Ask for what history has after the last delivered seq (after a
    /// reconnect: what was missed meanwhile).
    pub fn resync(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Live {
            self.fill(&mut out);
        }
        out
    }

    /// History arrived: the topic's `epoch` and last `seq`, and the
    /// entries after the seq asked for (at most `limit` were asked for).
    pub fn filled(
        &mut self,
        epoch: &str,
        seq: u64,
        entries: Vec<Arrival>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Action> {
        self.filling = false;
        let mut out = Vec::new();
        if self.state != State::Live {
            return out;
        }
        if epoch != self.epoch {
            // The topic's data was lost and it started over: subscribers
            // are told, then get the new epoch's deliveries.
            self.epoch = epoch.to_string();
            self.last = 0;
            self.cache.clear();
            out.push(Action::Reset {
                epoch: epoch.to_string(),
            });
        }
        let full = entries.len() >= limit;
        for e in entries {
            if e.seq <= self.last {
                continue;
            }
            if e.seq > self.last + 1 {
                out.push(self.gap(e.seq - 1));
            }
            self.deliver(e, now_ms, &mut out);
        }
        if full {
            // History may hold more after these: fetch on.
            self.fill(&mut out);
            return out;
        }
        // History has nothing else up to `seq`: what it lacks is lost.
        self.early.retain(|&s, a| a.epoch == epoch && s > self.last);
        let upto = match self.early.keys().next() {
            Some(&first) => first - 1,
            None => seq,
        };
        if upto > self.last {
            out.push(self.gap(upto));
        }
        self.drain(now_ms, &mut out);
        out
    }

    /// Note that deliveries after the last one, up to `to`, are lost.
    fn gap(&mut self, to: u64) -> Action {
        let gap = Action::Gap {
            epoch: self.epoch.clone(),
            from: self.last + 1,
            to,
        };
        self.last = to;
        gap
    }

    fn deliver(&mut self, a: Arrival, now_ms: u64, out: &mut Vec<Action>) {
        self.last = a.seq;
        self.cache.trim(now_ms);
        self.cache.push(Stored {
            seq: a.seq,
            ts: now_ms,
            frame: a.frame.clone(),
        });
        out.push(Action::Deliver(a));
    }

    /// Deliver what waited and is next in line; ask for history if a hole
    /// is left before what still waits.
    fn drain(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        loop {
            let Some((&seq, a)) = self.early.iter().next() else {
                return;
            };
            if a.epoch != self.epoch {
                // Another epoch: history will say which is current.
                return self.fill(out);
            }
            if seq <= self.last {
                self.early.remove(&seq);
                continue;
            }
            if seq > self.last + 1 {
                return self.fill(out);
            }
            if let Some(a) = self.early.remove(&seq) {
                self.deliver(a, now_ms, out);
            }
        }
    }

    fn keep(&mut self, a: Arrival) {
        if self.early.len() < MAX_EARLY || self.early.contains_key(&a.seq) {
            self.early.insert(a.seq, a);
        }
        // Past the bound the delivery is dropped: the fill fetches it.
    }

    fn fill(&mut self, out: &mut Vec<Action>) {
        if !self.filling {
            self.filling = true;
            out.push(Action::Fetch { after: self.last });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(seq: u64, epoch: &str) -> Arrival {
        Arrival {
            seq,
            epoch: epoch.into(),
            frame: Frame::text(&format!("{epoch}{seq}")),
            tag: String::new(),
        }
    }

    /// The actions as short strings: `d5`, `g3-4`, `r:e2`, `f7`.
    fn show(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|x| match x {
                Action::Deliver(a) => format!("d{}", a.seq),
                Action::Gap { from, to, .. } => format!("g{from}-{to}"),
                Action::Reset { epoch } => format!("r:{epoch}"),
                Action::Fetch { after } => format!("f{after}"),
            })
            .collect()
    }

    fn live(last: u64) -> Feed {
        let mut f = Feed::new(1, 100, 60_000);
        assert!(f.positioned("e", last, 0).is_empty());
        f
    }

    #[test]
    fn in_order_deliveries_pass_and_duplicates_do_not() {
        let mut f = live(4);
        assert_eq!(show(&f.arrive(a(5, "e"), 0)), ["d5"]);
        assert_eq!(show(&f.arrive(a(5, "e"), 0)), Vec::<String>::new());
        assert_eq!(show(&f.arrive(a(3, "e"), 0)), Vec::<String>::new());
        assert_eq!(show(&f.arrive(a(6, "e"), 0)), ["d6"]);
        assert_eq!(f.cache.first_seq(), Some(5));
    }

    #[test]
    fn what_came_before_the_position_waits_for_it() {
        let mut f = Feed::new(1, 100, 60_000);
        assert!(f.arrive(a(7, "e"), 0).is_empty());
        assert!(f.arrive(a(8, "e"), 0).is_empty());
        // The position says 7 was in it already: only 8 is new.
        assert_eq!(show(&f.positioned("e", 7, 0)), ["d8"]);
    }

    #[test]
    fn a_hole_is_filled_from_history_before_later_deliveries() {
        let mut f = live(4);
        // 5 and 6 were missed; 7 waits while history is read.
        assert_eq!(show(&f.arrive(a(7, "e"), 0)), ["f4"]);
        assert!(f.filling());
        assert!(f.arrive(a(8, "e"), 0).is_empty(), "one fetch at a time");
        let got = f.filled("e", 8, vec![a(5, "e"), a(6, "e"), a(7, "e")], 100, 0);
        assert_eq!(show(&got), ["d5", "d6", "d7", "d8"]);
        assert!(!f.filling());
    }

    #[test]
    fn what_history_lost_is_a_gap_never_silence() {
        let mut f = live(4);
        assert_eq!(show(&f.arrive(a(9, "e"), 0)), ["f4"]);
        // History kept only 7 and 8 of 5..8.
        let got = f.filled("e", 9, vec![a(7, "e"), a(8, "e")], 100, 0);
        assert_eq!(show(&got), ["g5-6", "d7", "d8", "d9"]);
        // After a reconnect: history says the topic is at 12 and has 11
        // and 12 only.
        assert_eq!(show(&f.resync()), ["f9"]);
        let got = f.filled("e", 12, vec![a(11, "e"), a(12, "e")], 100, 0);
        assert_eq!(show(&got), ["g10-10", "d11", "d12"]);
        // Nothing at all in history, but the topic moved on.
        f.resync();
        assert_eq!(show(&f.filled("e", 14, vec![], 100, 0)), ["g13-14"]);
    }

    #[test]
    fn a_full_answer_means_more_to_fetch() {
        let mut f = live(0);
        f.resync();
        let got = f.filled("e", 5, vec![a(1, "e"), a(2, "e")], 2, 0);
        assert_eq!(show(&got), ["d1", "d2", "f2"]);
        let got = f.filled("e", 5, vec![a(3, "e"), a(4, "e"), a(5, "e")], 100, 0);
        assert_eq!(show(&got), ["d3", "d4", "d5"]);
    }

    #[test]
    fn a_new_epoch_resets_then_delivers_its_history() {
        let mut f = live(40);
        // Redis lost the topic; a publish started epoch f at 1.
        assert_eq!(show(&f.arrive(a(2, "f"), 0)), ["f40"]);
        let got = f.filled("f", 2, vec![a(1, "f")], 100, 0);
        assert_eq!(show(&got), ["r:f", "d1", "d2"]);
        assert_eq!((f.epoch.as_str(), f.last), ("f", 2));
        assert_eq!(f.cache.first_seq(), Some(1), "the old epoch's copy is gone");
        // A late message of the old epoch is not taken for the new one.
        assert_eq!(show(&f.arrive(a(41, "e"), 0)), ["f2"]);
        assert_eq!(
            show(&f.filled("f", 2, vec![], 100, 0)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn early_deliveries_are_bounded() {
        let mut f = live(0);
        for s in 2..(MAX_EARLY as u64 + 10) {
            f.arrive(a(s, "e"), 0);
        }
        assert_eq!(f.early.len(), MAX_EARLY);
    }
}
