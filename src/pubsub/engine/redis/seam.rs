//! What the hub asks of the Redis engine: the `Engine` seam's methods
//! (publish, attach and detach, history, presence, acks), each queuing an
//! operation for the command or subscriber thread and answering from this
//! node's copy where it can. What comes back is handled in `mod.rs`.

use std::sync::atomic::Ordering;

use super::commands::{Command, FetchFor};
use super::feed::{Feed, State};
use super::subscriber::SubCommand;
use super::{wire, InFlight, RedisEngine};
use crate::pubsub::engine::{
    check_ack, AckError, Creator, Engine, EngineError, EngineEvent, EngineStats, Fetched, Members,
    OpId, Outcome, Page, Position, Publish, Sequenced,
};
use crate::pubsub::history::Stored;
use crate::pubsub::protocol::Delivery;

impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    /// This process's instance id: each topic has its own epoch in Redis.
    fn epoch(&self) -> &str {
        &self.instance
    }

    fn ready(&self) -> bool {
        self.commands_up && self.subscriber_up
    }

    fn publish(&mut self, p: &Publish<'_>, now_ms: u64) -> Result<Outcome<Sequenced>, EngineError> {
        self.now_ms = now_ms;
        if !self.ready() {
            self.stats
                .errors
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Err(Self::unavailable());
        }
        self.next_publish += 1;
        let n = self.next_publish;
        let (head, tail) = Delivery {
            topic: p.topic,
            seq: 0,
            epoch: "",
            node: &self.cfg.node,
            from: p.from,
            ts: p.ts,
            data: p.data,
        }
        .parts();
        let c = Command::Publish {
            n,
            topic: p.topic.to_string(),
            tag: wire::tag(&self.instance, n),
            head,
            tail,
            idempotency: p
                .idempotency_key
                .map(|k| (p.from.to_string(), k.to_string())),
        };
        if !self.command(c) {
            return Err(Self::unavailable());
        }
        self.stats.publishes.fetch_add(1, Ordering::Relaxed);
        self.in_flight.insert(
            n,
            InFlight {
                op: p.op,
                topic: p.topic.to_string(),
                exclude: p.exclude,
                acked: false,
            },
        );
        self.bound_in_flight();
        Ok(Outcome::Pending)
    }

    fn position(&self, topic: &str) -> Option<Position> {
        let f = self.feeds.get(topic)?;
        (f.state == State::Live).then(|| Position {
            epoch: f.epoch.clone(),
            seq: f.last,
        })
    }

    fn head(&self, topic: &str) -> Option<(&str, u64)> {
        let f = self.feeds.get(topic)?;
        (f.state == State::Live).then_some((f.epoch.as_str(), f.last))
    }

    /// Topics live in Redis, bounded by its memory and their time-to-live:
    /// the creator's quota is not checked here.
    fn attach(
        &mut self,
        topic: &str,
        _creator: Creator<'_>,
    ) -> Result<Outcome<Position>, EngineError> {
        if let Some(f) = self.feeds.get_mut(topic) {
            f.attaches += 1;
            return Ok(match f.state {
                State::Live => Outcome::Done(Position {
                    epoch: f.epoch.clone(),
                    seq: f.last,
                }),
                // A failed attach starts again.
                State::Subscribing { gen: 0 } => {
                    self.next_gen += 1;
                    let gen = self.next_gen;
                    f.state = State::Subscribing { gen };
                    let topic = topic.to_string();
                    self.subscriber(SubCommand::Subscribe { topic, gen });
                    Outcome::Pending
                }
                _ => Outcome::Pending,
            });
        }
        if !self.ready() {
            return Err(Self::unavailable());
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        let age = self.cfg.history_age.as_millis() as u64;
        self.feeds
            .insert(topic.to_string(), Feed::new(gen, self.cfg.history_len, age));
        let topic = topic.to_string();
        self.subscriber(SubCommand::Subscribe { topic, gen });
        Ok(Outcome::Pending)
    }

    fn detach(&mut self, topic: &str) {
        let Some(f) = self.feeds.get_mut(topic) else {
            return;
        };
        f.attaches = f.attaches.saturating_sub(1);
        if f.attaches == 0 {
            self.feeds.remove(topic);
            self.in_flight.retain(|_, p| p.topic != topic || !p.acked);
            let topic = topic.to_string();
            self.subscriber(SubCommand::Unsubscribe { topic });
        }
    }

    fn history(&mut self, topic: &str, after: u64, max: usize, now_ms: u64) -> (Vec<Stored>, bool) {
        self.now_ms = now_ms;
        let Some(f) = self.feeds.get_mut(topic) else {
            return (Vec::new(), false);
        };
        if f.state != State::Live {
            return (Vec::new(), false);
        }
        f.cache.trim(now_ms);
        // Complete if the copy reaches back to `after` (or nothing is owed).
        let complete = after >= f.last || f.cache.first_seq().is_some_and(|s| s <= after + 1);
        (f.cache.after(after, max), complete)
    }

    fn fetch(
        &mut self,
        topic: &str,
        after: u64,
        op: OpId,
    ) -> Result<Outcome<Fetched>, EngineError> {
        let c = Command::Fetch {
            topic: topic.to_string(),
            after,
            purpose: FetchFor::Resume(op),
        };
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    fn join(&mut self, topic: &str, user: &str) -> Option<u64> {
        *self
            .members
            .entry((topic.to_string(), user.to_string()))
            .or_insert(0) += 1;
        self.command(Command::Presence {
            topic: topic.to_string(),
            user: user.to_string(),
            delta: 1,
        });
        None
    }

    fn leave(&mut self, topic: &str, user: &str) -> Option<u64> {
        let key = (topic.to_string(), user.to_string());
        match self.members.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.members.remove(&key);
            }
            None => return None,
        }
        self.command(Command::Presence {
            topic: key.0,
            user: key.1,
            delta: -1,
        });
        None
    }

    fn members(
        &mut self,
        topic: &str,
        page: &Page,
        op: OpId,
    ) -> Result<Outcome<Members>, EngineError> {
        let c = Command::Members {
            op,
            topic: topic.to_string(),
            after: page.cursor.clone().unwrap_or_default(),
            limit: page.limit.max(1),
        };
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    /// Coalesced: the newest position per user and topic goes to Redis
    /// with the next batch (one batch in flight at a time), so a client
    /// acking every delivery costs about one write per round trip.
    fn ack(
        &mut self,
        user: &str,
        topic: &str,
        seq: u64,
        claimed: Option<&str>,
        now_ms: u64,
    ) -> Result<(), AckError> {
        self.now_ms = now_ms;
        let f = self.feeds.get(topic).filter(|f| f.state == State::Live);
        let f = f.ok_or(AckError::Unknown)?;
        check_ack(&f.epoch, f.last, seq, claimed)?;
        let epoch = f.epoch.as_str();
        let topics = match self.acks.get_mut(user) {
            Some(t) => t,
            None => self.acks.entry(user.to_string()).or_default(),
        };
        match topics.get_mut(topic) {
            Some(p) if p.epoch == epoch && p.seq >= seq => {}
            Some(p) if p.epoch == epoch => p.seq = seq,
            Some(p) => {
                p.epoch = epoch.to_string();
                p.seq = seq;
            }
            None => {
                let p = Position {
                    epoch: epoch.to_string(),
                    seq,
                };
                topics.insert(topic.to_string(), p);
            }
        }
        self.send_acks();
        Ok(())
    }

    fn acked(
        &mut self,
        user: &str,
        topic: &str,
        op: OpId,
        now_ms: u64,
    ) -> Result<Outcome<Option<Position>>, EngineError> {
        self.now_ms = now_ms;
        // Not sent yet: this node knows the newest.
        if let Some(p) = self.acks.get(user).and_then(|t| t.get(topic)) {
            return Ok(Outcome::Done(Some(p.clone())));
        }
        let c = Command::Acked {
            op,
            user: user.to_string(),
            topic: topic.to_string(),
        };
        // Queued behind any ack batch on its way: Redis answers after it.
        if !self.commands_up || !self.command(c) {
            return Err(Self::unavailable());
        }
        Ok(Outcome::Pending)
    }

    fn poll(&mut self) -> Option<EngineEvent> {
        if self.events.is_empty() {
            self.refill();
        }
        self.events.pop_front()
    }

    /// Sessions and idempotency keys are kept in Redis, not counted here.
    fn stats(&self) -> EngineStats {
        EngineStats {
            topics: self.feeds.len() as u64,
            history_bytes: self.feeds.values().map(|f| f.cache.bytes() as u64).sum(),
            ..EngineStats::default()
        }
    }

    fn render_metrics(&self, out: &mut String) {
        self.stats.render(self.ready(), out);
    }
}
