//! Fan-out in slices: a budget of deliveries and bytes per loop turn, the
//! queue of fan-outs that did not fit, and publishers paused while it is
//! long.
//!
//! One publish to a topic with S subscribers is S sends. Done all at once,
//! 24 messages of 64 KiB to 2,000 subscribers hold the loop for seconds:
//! every other client waits. Here a fan-out runs until the turn's budget
//! (`fanout_per_turn` sends, `fanout_bytes_per_turn` bytes) is spent; the
//! rest waits in a queue and goes on after the loop has read, accepted and
//! flushed (the hub's `wake` runs the queue once per turn). uWebSockets and
//! nginx bound a turn's work the same way.
//!
//! Order: a topic's fan-outs run in the order they were made, and one that
//! waits keeps later ones of its topic (deliveries and events alike)
//! behind it. A change of who gets a topic's deliveries — a subscriber
//! added or removed, held for a resume replay or released — first finishes
//! the topic's queued fan-outs ([`Hub::settle`]), so a queued fan-out
//! always walks the subscribers it was made for, and each subscriber gets
//! every delivery once: live, or from history.
//!
//! Bound: while the queued fan-outs owe more than `max_fanout_backlog`
//! bytes, a connection that publishes stops being read
//! ([`Ctx::pause_reading`]) and the engine's events wait; reading resumes
//! below half of it.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use super::hub::Hub;
use super::missed::record_gap;
use super::reading::Hold;
use crate::reactor::{ConnId, Ctx, Frame, SendStatus};

/// One fan-out: a frame for every local subscriber of a topic.
#[derive(Debug)]
pub(super) struct Job {
    topic: Box<str>,
    frame: Frame,
    /// The deliveries it carries (`None`: an event such as a presence
    /// change, not counted as deliveries and not reported as a gap).
    seqs: Option<RangeInclusive<u64>>,
    exclude: Option<ConnId>,
    /// The next subscriber (index into the topic's list, which does not
    /// change while the job waits).
    next: usize,
}

/// The fan-out queue and this turn's budget.
#[derive(Debug, Default)]
pub(super) struct FanoutQueue {
    jobs: VecDeque<Job>,
    /// Sends and bytes queued this turn (reset by [`Hub::run_fanout`]).
    sends: usize,
    bytes: usize,
    /// Bytes the queued jobs still owe (frame length × subscribers left).
    backlog: u64,
    /// Connections paused for publishing into a long backlog.
    paused: Vec<ConnId>,
    /// The loop was asked to call `wake` (which resets the budget).
    armed: bool,
}

impl FanoutQueue {
    /// Fan-outs waiting.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Bytes the waiting fan-outs owe.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }
}

/// How a job's walk ended.
#[derive(PartialEq, Eq)]
enum Walk {
    Done,
    /// The budget ran out (the job is to wait).
    Spent,
}

/// A walk's end, where it stopped, and how many subscribers it got past.
struct Walked {
    end: Walk,
    next: usize,
    passed: usize,
}

/// What one walk sends (borrowed: the common fan-out that fits its turn
/// costs no allocation).
struct Sending<'a> {
    topic: &'a str,
    frame: &'a Frame,
    seqs: Option<&'a RangeInclusive<u64>>,
    exclude: Option<ConnId>,
}

impl Job {
    fn sending(&self) -> Sending<'_> {
        Sending {
            topic: &self.topic,
            frame: &self.frame,
            seqs: self.seqs.as_ref(),
            exclude: self.exclude,
        }
    }
}

impl Hub {
    /// Queue `frame` (deliveries `seqs` of `topic`, or an event) to every
    /// local subscriber but `exclude`: now, as far as the turn's budget
    /// goes, and the rest on later turns.
    pub(super) fn deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: &str,
        seqs: Option<RangeInclusive<u64>>,
        frame: &Frame,
        exclude: Option<ConnId>,
    ) {
        let Some(t) = self.local.get(topic) else {
            return;
        };
        // A topic with fan-outs waiting: this one goes behind them.
        let next = match t.jobs() {
            0 => {
                let s = Sending {
                    topic,
                    frame,
                    seqs: seqs.as_ref(),
                    exclude,
                };
                let w = self.walk(ctx, &s, 0, false);
                if w.end == Walk::Done {
                    return;
                }
                w.next
            }
            _ => 0,
        };
        let job = Job {
            topic: Box::from(topic),
            frame: frame.clone(),
            seqs,
            exclude,
            next,
        };
        self.enqueue(ctx, job);
    }

    fn enqueue(&mut self, ctx: &mut Ctx<'_>, job: Job) {
        let left = self
            .local
            .get(&job.topic)
            .map_or(0, |t| t.subscribers().len().saturating_sub(job.next));
        if let Some(t) = self.local.get_mut(&job.topic) {
            t.jobs_changed(1);
        }
        self.fanout.backlog += (left * job.frame.as_bytes().len()) as u64;
        self.fanout.jobs.push_back(job);
        self.metrics.fanout_slices += 1;
        self.arm(ctx);
    }

    /// Have the loop call `wake` at the end of this turn (where the budget
    /// starts over and the queue goes on).
    fn arm(&mut self, ctx: &mut Ctx<'_>) {
        if !self.fanout.armed {
            self.fanout.armed = true;
            ctx.wake();
        }
    }

    /// Send `s` to the topic's subscribers from index `start` on; with
    /// `settle`, past the budget too.
    fn walk(&mut self, ctx: &mut Ctx<'_>, s: &Sending<'_>, start: usize, settle: bool) -> Walked {
        let Some(t) = self.local.get(s.topic) else {
            return Walked {
                end: Walk::Done,
                next: start,
                passed: 0,
            };
        };
        let (max_sends, max_bytes) = (
            self.config.fanout_per_turn,
            self.config.fanout_bytes_per_turn,
        );
        let len = s.frame.as_bytes().len();
        let n = s.seqs.map_or(0, |r| r.end() - r.start() + 1);
        let held = t.held();
        let subs = t.subscribers();
        let mut dropped = Vec::new();
        let mut next = subs.len().max(start);
        for (i, &sub) in subs.iter().enumerate().skip(start) {
            let q = &mut self.fanout;
            if !settle && (q.sends >= max_sends || q.bytes >= max_bytes) {
                next = i;
                break;
            }
            if Some(sub) == s.exclude || (!held.is_empty() && held.contains(&sub)) {
                continue;
            }
            q.sends += 1;
            match ctx.send_frame(sub, s.frame) {
                SendStatus::Sent => {
                    q.bytes += len;
                    self.metrics.fanout_deliveries += n;
                    self.metrics.out_n(n.max(1), len);
                }
                SendStatus::Backpressured => {
                    q.bytes += len;
                    self.metrics.fanout_deliveries += n;
                    self.metrics.out_n(n.max(1), len);
                    self.metrics.queued(ctx.queued_bytes(sub));
                }
                SendStatus::Dropped => dropped.push(sub),
                SendStatus::Closed => {}
            }
        }
        let end = match next < subs.len() {
            true => Walk::Spent,
            false => Walk::Done,
        };
        if let Some(seqs) = s.seqs.filter(|_| !dropped.is_empty()) {
            self.dropped_all(s.topic, seqs, &dropped);
        }
        Walked {
            end,
            next,
            passed: next - start,
        }
    }

    /// A queued job got past `passed` more subscribers.
    fn paid(&mut self, len: usize, passed: usize) {
        let owed = (passed * len) as u64;
        self.fanout.backlog = self.fanout.backlog.saturating_sub(owed);
    }

    /// Deliveries `seqs` of `topic` did not fit in the queues of `subs`:
    /// count them and remember the gaps (a `gap` event once each drains).
    #[cold]
    fn dropped_all(&mut self, topic: &str, seqs: &RangeInclusive<u64>, subs: &[ConnId]) {
        let epoch = self
            .engine
            .topic_epoch(topic)
            .unwrap_or_default()
            .to_string();
        let (first, last) = (*seqs.start(), *seqs.end());
        for id in subs {
            self.metrics.drop_n("slow_consumer", last - first + 1);
            if let Some(c) = self.clients.get_mut(id) {
                record_gap(&mut c.gaps, topic, &epoch, first, last);
            }
        }
    }

    /// The hub's `wake`: a new turn's budget, then the queue as far as it
    /// goes; another `wake` next turn if fan-outs still wait.
    pub(super) fn run_fanout(&mut self, ctx: &mut Ctx<'_>) {
        self.fanout.armed = false;
        self.fanout.sends = 0;
        self.fanout.bytes = 0;
        while let Some(mut job) = self.fanout.jobs.pop_front() {
            let w = self.walk(ctx, &job.sending(), job.next, false);
            self.paid(job.frame.as_bytes().len(), w.passed);
            match w.end {
                Walk::Done => self.job_done(&job),
                Walk::Spent => {
                    job.next = w.next;
                    self.fanout.jobs.push_front(job);
                    break;
                }
            }
        }
        if !self.fanout.jobs.is_empty() {
            self.arm(ctx);
        }
        self.resume_publishers(ctx);
    }

    fn job_done(&mut self, job: &Job) {
        if let Some(t) = self.local.get_mut(&job.topic) {
            t.jobs_changed(-1);
        }
    }

    /// Finish `topic`'s waiting fan-outs now, past the budget: who gets
    /// the topic is about to change (see the module comment).
    pub(super) fn settle(&mut self, ctx: &mut Ctx<'_>, topic: &str) {
        if self.local.get(topic).is_none_or(|t| t.jobs() == 0) {
            return;
        }
        let mut rest = VecDeque::with_capacity(self.fanout.jobs.len());
        while let Some(job) = self.fanout.jobs.pop_front() {
            if &*job.topic == topic {
                let w = self.walk(ctx, &job.sending(), job.next, true);
                self.paid(job.frame.as_bytes().len(), w.passed);
                self.job_done(&job);
            } else {
                rest.push_back(job);
            }
        }
        self.fanout.jobs = rest;
        self.metrics.fanout_settles += 1;
    }

    /// Whether the waiting fan-outs owe more than `max_fanout_backlog`.
    pub(super) fn fanout_over(&self) -> bool {
        self.fanout.backlog > self.config.max_fanout_backlog as u64
    }

    /// `id` published while the backlog is over its bound: stop reading
    /// it until the backlog is below half (what it sent meanwhile waits in
    /// its socket; its own deliveries, acks and events still go out).
    pub(super) fn pause_publisher(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        if self.hold_reading(ctx, id, Hold::Backlog) {
            self.fanout.paused.push(id);
            self.metrics.publishers_paused += 1;
        }
    }

    fn resume_publishers(&mut self, ctx: &mut Ctx<'_>) {
        if self.fanout.paused.is_empty()
            || self.fanout.backlog > self.config.max_fanout_backlog as u64 / 2
        {
            return;
        }
        for id in std::mem::take(&mut self.fanout.paused) {
            self.release_reading(ctx, id, Hold::Backlog);
        }
    }

    /// Send `text` (an event, not a delivery) to every local subscriber
    /// of `topic`, framed once, after the topic's waiting fan-outs.
    pub(super) fn notify(&mut self, ctx: &mut Ctx<'_>, topic: &str, text: &str) {
        self.release(ctx);
        let frame = Frame::text(text);
        self.deliver(ctx, topic, None, &frame, None);
    }
}
