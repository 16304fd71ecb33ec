//! One topic's member list, kept as `wsmio.js` keeps it for `onPresence`:
//! read a page at a time after each subscription, kept current with
//! `presence_diff`, replaced by the bare count while the hub sends
//! `presence_count` (a topic over the welcome's `presence_events_max`),
//! and read again when it may have drifted — a diff that does not add up
//! to the hub's count, counts at or below the cap, diffs after counts.
//!
//! The decisions are here; the client sends the page requests and
//! reports [`Event::Presence`](super::Event::Presence).

use std::collections::BTreeSet;

/// Joins and leaves of one hub turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Diff {
    pub joins: Vec<String>,
    pub leaves: Vec<String>,
    pub count: u64,
}

/// What to do after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Nothing to tell (a diff kept for after the read under way).
    Nothing,
    /// The list or the count changed: report it.
    Report,
    /// The list is out of date: read it again from the first page.
    Reload,
    /// Ask for the page after `cursor` (a read under way).
    Page(String),
}

/// A read in progress.
#[derive(Debug, Default)]
struct Load {
    /// Its latest page request.
    request: u64,
    members: Vec<String>,
}

/// Diffs kept while a read is under way at most; past it the read is
/// done again once it ends (the hub sends diffs only for topics under its
/// `presence_events_max`, so a fresh read is cheap).
const MAX_QUEUED: usize = 64;

/// The member list of one topic.
#[derive(Debug, Default)]
pub(super) struct Roster {
    /// By name; `None` before the first read and while the topic is too
    /// big to list.
    members: Option<BTreeSet<String>>,
    count: u64,
    load: Option<Load>,
    /// Diffs that came during the read, applied after it (at most
    /// [`MAX_QUEUED`]).
    queued: Vec<Diff>,
    /// More diffs came during the read than are kept: read again.
    overflowed: bool,
}

impl Roster {
    /// What to report: the members (if listed) and the count.
    pub fn snapshot(&self) -> (Option<Vec<String>>, u64) {
        let members = self.members.as_ref().map(|m| m.iter().cloned().collect());
        (members, self.count)
    }

    /// Whether a read is under way.
    pub fn loading(&self) -> bool {
        self.load.is_some()
    }

    /// A read starts with page request `request` (diffs from now on are
    /// kept for after it).
    pub fn begin(&mut self, request: u64) {
        self.load = Some(Load {
            request,
            members: Vec::new(),
        });
        self.queued.clear();
        self.overflowed = false;
    }

    /// The read under way goes on with page request `request`.
    pub fn next_page(&mut self, request: u64) {
        if let Some(load) = self.load.as_mut() {
            load.request = request;
        }
    }

    /// The connection dropped: a read under way is abandoned (the next
    /// subscription reads again).
    pub fn connection_lost(&mut self) {
        self.load = None;
        self.queued.clear();
        self.overflowed = false;
    }

    /// A page came for request `request`. `max` bounds the members read;
    /// `cap` is the hub's `presence_events_max` (topics over it get no
    /// diffs, so a list of them could not be kept current).
    pub fn page(
        &mut self,
        request: u64,
        page: Vec<String>,
        count: u64,
        cursor: Option<String>,
        (max, cap): (usize, u64),
    ) -> Next {
        let Some(load) = self.load.as_mut().filter(|l| l.request == request) else {
            return Next::Nothing;
        };
        load.members.extend(page);
        let complete = cursor.is_none();
        if let Some(c) = cursor {
            if load.members.len() < max {
                return Next::Page(c);
            }
        }
        let read = self.load.take().map(|l| l.members).unwrap_or_default();
        self.count = count;
        // Over the cap no diffs come to keep a list current: the count
        // alone; and a list cut at `max` is no list.
        self.members = (complete && count <= cap).then(|| read.into_iter().collect());
        if std::mem::take(&mut self.overflowed) {
            self.queued.clear();
            return Next::Reload;
        }
        for d in std::mem::take(&mut self.queued) {
            self.apply(&d);
        }
        Next::Report
    }

    /// A `presence_diff`.
    pub fn diff(&mut self, d: Diff) -> Next {
        if self.load.is_some() {
            if self.queued.len() < MAX_QUEUED {
                self.queued.push(d);
            } else {
                self.overflowed = true;
            }
            return Next::Nothing;
        }
        if self.members.is_none() {
            // Diffs again after counts (the topic shrank under the cap),
            // or never read: read it.
            return Next::Reload;
        }
        self.apply(&d);
        match &self.members {
            Some(m) if m.len() as u64 == d.count => Next::Report,
            // Does not add up: a change was missed.
            _ => Next::Reload,
        }
    }

    /// A `presence_count`: at or below the cap it follows a turn with too
    /// many changes to list — read again; over it, the count alone.
    pub fn count(&mut self, count: u64, cap: u64) -> Next {
        self.count = count;
        if count <= cap {
            return Next::Reload;
        }
        self.members = None;
        self.queued.clear();
        Next::Report
    }

    fn apply(&mut self, d: &Diff) {
        if let Some(m) = self.members.as_mut() {
            for u in &d.leaves {
                m.remove(u);
            }
            m.extend(d.joins.iter().cloned());
        }
        self.count = d.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(name: &str, count: u64) -> Diff {
        Diff {
            joins: vec![name.to_string()],
            leaves: Vec::new(),
            count,
        }
    }

    #[test]
    fn diffs_during_a_read_are_kept_up_to_a_bound_then_it_reads_again() {
        let mut r = Roster::default();
        r.begin(1);
        for i in 0..MAX_QUEUED as u64 {
            assert_eq!(r.diff(join(&format!("u{i}"), i + 1)), Next::Nothing);
        }
        assert_eq!(r.queued.len(), MAX_QUEUED);
        let n = MAX_QUEUED as u64;
        assert_eq!(r.page(1, Vec::new(), 0, None, (1000, 1000)), Next::Report);
        assert_eq!(r.snapshot().1, n, "the queued diffs applied");
        // One more than kept: none is applied, and it reads again.
        r.begin(2);
        for i in 0..=MAX_QUEUED as u64 {
            let _ = r.diff(join(&format!("v{i}"), n + i + 1));
        }
        assert_eq!(r.queued.len(), MAX_QUEUED);
        assert_eq!(r.page(2, Vec::new(), 0, None, (1000, 1000)), Next::Reload);
        assert!(r.queued.is_empty());
    }
}
