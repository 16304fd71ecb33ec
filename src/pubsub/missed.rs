//! What a client missed and is still owed: deliveries dropped for a full
//! queue (reported as `gap` events once it drains) and resume replays that
//! stopped at a full queue (continued from history as it drains).

use std::collections::VecDeque;

use super::history::Stored;

/// Deliveries `first..=last` of `topic` (numbered in `epoch`) dropped for a
/// full queue: a `gap` event once the queue drains.
#[derive(Debug)]
pub(super) struct Gap {
    pub(super) topic: String,
    pub(super) epoch: String,
    pub(super) first: u64,
    pub(super) last: u64,
}

/// A resume replay of `topic` that stopped at a full queue.
#[derive(Debug)]
pub(super) struct CatchUp {
    pub(super) topic: String,
    /// The next seq to send from history.
    pub(super) next: u64,
    /// This client's own publishes with `exclude_self` made meanwhile: not
    /// replayed to it (at most [`MAX_SKIP`]).
    pub(super) skip: Vec<u64>,
    /// Deliveries fetched from the engine's history (older than what this
    /// node holds), sent before the node's own copy takes over.
    pub(super) fetched: VecDeque<Stored>,
}

impl CatchUp {
    /// A replay of `topic` from seq `next` on.
    pub(super) fn new(topic: &str, next: u64, fetched: Vec<Stored>) -> Self {
        CatchUp {
            topic: topic.to_string(),
            next,
            skip: Vec::new(),
            fetched: fetched.into(),
        }
    }
}

/// Separate `gap` reports kept per topic until the client's queue drains.
pub(super) const MAX_GAPS_PER_TOPIC: usize = 16;

/// Note that deliveries `first..=last` of `topic` were dropped. They join
/// the topic's latest gap if they continue it; else they make a new gap, so
/// deliveries that got through in between are not reported lost. Past
/// [`MAX_GAPS_PER_TOPIC`] the latest gap is widened instead (bounded memory;
/// the report may then include delivered seqs).
pub(super) fn record_gap(gaps: &mut Vec<Gap>, topic: &str, epoch: &str, first: u64, last: u64) {
    let same = |g: &Gap| g.topic == topic && g.epoch == epoch;
    let count = gaps.iter().filter(|g| same(g)).count();
    match gaps.iter_mut().rev().find(|g| same(g)) {
        Some(g) if first <= g.last + 1 || count >= MAX_GAPS_PER_TOPIC => {
            g.first = g.first.min(first);
            g.last = g.last.max(last);
        }
        _ => gaps.push(Gap {
            topic: topic.to_string(),
            epoch: epoch.to_string(),
            first,
            last,
        }),
    }
}

/// The seqs `next..first` (exclusive) without those in `skip` (increasing),
/// as inclusive ranges.
pub(super) fn lost_ranges(next: u64, first: u64, skip: &[u64]) -> Vec<(u64, u64)> {
    let mut from = next;
    let mut ranges = Vec::new();
    for &s in skip.iter().filter(|&&s| s >= next && s < first) {
        if s > from {
            ranges.push((from, s - 1));
        }
        from = s + 1;
    }
    if from < first {
        ranges.push((from, first - 1));
    }
    ranges
}

/// Own `exclude_self` publishes remembered per unfinished replay; past
/// this many the publisher gets its own copies in the replay.
pub(super) const MAX_SKIP: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_ranges_leave_out_own_publishes() {
        assert_eq!(lost_ranges(5, 10, &[]), [(5, 9)]);
        assert_eq!(lost_ranges(5, 10, &[3, 5, 7, 8, 12]), [(6, 6), (9, 9)]);
        assert_eq!(lost_ranges(5, 10, &[5, 6, 7, 8, 9]), []);
        assert_eq!(lost_ranges(5, 5, &[]), []);
    }

    #[test]
    fn gaps_join_only_when_they_continue() {
        let mut g = Vec::new();
        record_gap(&mut g, "t", "e", 5, 5);
        record_gap(&mut g, "t", "e", 6, 7); // continues 5
        record_gap(&mut g, "u", "e", 1, 1);
        record_gap(&mut g, "t", "e", 10, 10); // 8 and 9 were delivered
        record_gap(&mut g, "t", "e.1", 11, 11); // another epoch's 11
        let t = |v: &[Gap], e: &str| -> Vec<(u64, u64)> {
            v.iter()
                .filter(|x| x.topic == "t" && x.epoch == e)
                .map(|x| (x.first, x.last))
                .collect()
        };
        assert_eq!(t(&g, "e"), [(5, 7), (10, 10)]);
        assert_eq!(t(&g, "e.1"), [(11, 11)]);
        // Bounded: past the cap the latest gap widens.
        for s in 0..2 * MAX_GAPS_PER_TOPIC as u64 {
            record_gap(&mut g, "t", "e", 20 + 2 * s, 20 + 2 * s);
        }
        assert_eq!(t(&g, "e").len(), MAX_GAPS_PER_TOPIC);
        let last = *t(&g, "e").last().unwrap();
        assert_eq!(last.1, 20 + 2 * (2 * MAX_GAPS_PER_TOPIC as u64 - 1));
        assert_eq!(g.iter().filter(|x| x.topic == "u").count(), 1);
    }
}
