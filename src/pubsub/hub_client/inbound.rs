//! The hub's messages, each taken to the part of the client it concerns:
//! the welcome starts the session (resubscribe, send the outbox), acks
//! and errors settle pending requests, deliveries pass the duplicate
//! check, presence messages update member lists.

use std::time::Instant;

use super::events::{Event, Message, PublishError, Subscribed, Welcome};
use super::link::Link;
use super::pending::Waiting;
use super::roster::{Diff, Next};
use super::wire::{self, Inbound};
use super::{HubClient, PublishId};

/// Error codes after which a request is worth sending again shortly.
fn transient(code: &str) -> bool {
    matches!(code, "unavailable" | "rate_limited")
}

impl HubClient {
    /// A text message from the hub on the current connection.
    pub fn text(&mut self, text: &str, now: Instant) {
        self.now = now;
        if !matches!(self.link, Link::Open { .. } | Link::Closing { .. }) {
            return; // not from a connection of ours
        }
        match wire::parse(text) {
            Ok(m) => self.dispatch(m),
            Err(message) => self.error(None, "bad_message", message),
        }
    }

    fn dispatch(&mut self, m: Inbound) {
        match m {
            Inbound::Welcome(w) => self.on_welcome(w),
            Inbound::Msg(m) => self.on_msg(m),
            Inbound::SubAck { id, ack } => self.on_sub_ack(id, ack),
            Inbound::PubAck {
                id,
                topic,
                seq,
                epoch,
                duplicate,
            } => self.on_pub_ack(id, topic, seq, epoch, duplicate),
            Inbound::OtherAck { id } => {
                self.pending.take(id);
            }
            Inbound::Presence {
                id,
                topic,
                members,
                count,
                cursor,
            } => self.on_presence(id, topic, members, count, cursor),
            Inbound::PresenceDiff {
                topic,
                joins,
                leaves,
                count,
            } => self.on_diff(
                topic,
                Diff {
                    joins,
                    leaves,
                    count,
                },
            ),
            Inbound::PresenceCount { topic, count } => self.on_count(&topic, count),
            Inbound::Gap {
                topic,
                epoch,
                from,
                to,
            } => {
                if self.topics.contains_key(&topic) {
                    let gap = Event::Gap {
                        topic,
                        epoch,
                        from,
                        to,
                    };
                    self.events.push_back(gap);
                }
            }
            Inbound::Reset { topic, epoch, seq } => {
                if let Some(t) = self.topics.get_mut(&topic) {
                    t.reset(&epoch, seq);
                    self.events.push_back(Event::Reset { topic, epoch, seq });
                }
            }
            Inbound::Error {
                id,
                code,
                message,
                maybe_stored,
            } => self.on_error(id, code, message, maybe_stored),
            Inbound::Unknown => {}
        }
    }

    /// The session starts: every topic is subscribed (resumed), then the
    /// outbox goes out in order.
    fn on_welcome(&mut self, w: Welcome) {
        let Link::Open {
            since,
            welcomed: false,
        } = self.link
        else {
            return; // a second welcome, or one while closing
        };
        self.link = Link::Open {
            since,
            welcomed: true,
        };
        self.fresh_token = false;
        self.cap = w.presence_events_max;
        self.welcome = Some(w.clone());
        self.events.push_back(Event::Welcome(w));
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        for topic in topics {
            self.send_sub(&topic);
        }
        self.flush_outbox();
    }

    fn on_msg(&mut self, m: Message) {
        let Some(t) = self.topics.get_mut(&m.topic) else {
            return; // not subscribed (any more)
        };
        if t.fresh(&m.epoch, m.seq) {
            self.events.push_back(Event::Message(m));
        } else {
            self.duplicates += 1;
        }
    }

    fn on_sub_ack(&mut self, id: Option<u64>, ack: Subscribed) {
        // Acks without our id (the hub's own inbox subscription) and of
        // subscriptions since replaced are not ours to apply.
        let Some(Waiting::Sub { topic }) = self.pending.take(id) else {
            return;
        };
        let Some(t) = self.topics.get_mut(&topic).filter(|t| t.sub_request == id) else {
            return;
        };
        t.subscribed(&ack);
        if t.ack_due() && self.ack_flush_at.is_none() {
            self.ack_flush_at = Some(self.now + self.config.ack_every);
        }
        let roster = t.roster.is_some();
        self.events.push_back(Event::Subscribed(ack));
        if roster {
            self.reload_roster(&topic);
        }
    }

    /// A publish or direct message was stored: reported once (a second
    /// answer finds nothing pending).
    fn on_pub_ack(&mut self, id: Option<u64>, topic: String, seq: u64, epoch: String, dup: bool) {
        let Some(Waiting::Publish(pid)) = self.pending.take(id) else {
            return;
        };
        if self.outbox.remove(pid).is_some() {
            self.events.push_back(Event::PublishAcked {
                id: pid,
                topic,
                seq,
                epoch,
                duplicate: dup,
            });
        }
    }

    fn on_presence(
        &mut self,
        id: Option<u64>,
        topic: String,
        members: Vec<String>,
        count: u64,
        cursor: Option<String>,
    ) {
        match self.pending.take(id) {
            Some(Waiting::Presence { roster: false, .. }) => {
                self.events.push_back(Event::PresencePage {
                    request: id.unwrap_or_default(),
                    topic,
                    members,
                    count,
                    cursor,
                });
            }
            Some(Waiting::Presence { roster: true, .. }) => {
                let limits = (self.config.max_members, self.cap.unwrap_or(u64::MAX));
                let Some(r) = self.topics.get_mut(&topic).and_then(|t| t.roster.as_mut()) else {
                    return;
                };
                let next = r.page(id.unwrap_or_default(), members, count, cursor, limits);
                self.roster_next(&topic, next);
            }
            _ => {}
        }
    }

    fn on_diff(&mut self, topic: String, diff: Diff) {
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let joined: Vec<Event> = (diff.joins.iter())
            .map(|u| Event::Joined {
                topic: topic.clone(),
                user: u.clone(),
            })
            .chain(diff.leaves.iter().map(|u| Event::Left {
                topic: topic.clone(),
                user: u.clone(),
            }))
            .collect();
        if let Some(r) = t.roster.as_mut() {
            let next = r.diff(diff);
            self.roster_next(&topic, next);
        }
        self.events.extend(joined);
    }

    fn on_count(&mut self, topic: &str, count: u64) {
        let cap = self.cap.unwrap_or(0);
        let Some(r) = self.topics.get_mut(topic).and_then(|t| t.roster.as_mut()) else {
            return;
        };
        let next = r.count(count, cap);
        self.roster_next(topic, next);
    }

    /// Act on what a member list asks for.
    fn roster_next(&mut self, topic: &str, next: Next) {
        match next {
            Next::Nothing => {}
            Next::Reload => self.reload_roster(topic),
            Next::Page(cursor) => {
                let id = self.send_page(topic, Some(&cursor), true);
                if let Some(r) = self.topics.get_mut(topic).and_then(|t| t.roster.as_mut()) {
                    r.next_page(id);
                }
            }
            Next::Report => {
                if let Some(r) = self.topics.get(topic).and_then(|t| t.roster.as_ref()) {
                    let (members, count) = r.snapshot();
                    self.events.push_back(Event::Presence {
                        topic: topic.to_owned(),
                        members,
                        count,
                    });
                }
            }
        }
    }

    /// Read `topic`'s member list from the first page (unless a read is
    /// under way, or there is no connection to read on).
    fn reload_roster(&mut self, topic: &str) {
        let loading =
            (self.topics.get(topic).and_then(|t| t.roster.as_ref())).is_none_or(|r| r.loading());
        if loading || !self.is_connected() {
            return;
        }
        let id = self.send_page(topic, None, true);
        if let Some(r) = self.topics.get_mut(topic).and_then(|t| t.roster.as_mut()) {
            r.begin(id);
        }
    }

    fn on_error(&mut self, id: Option<u64>, code: String, message: String, maybe_stored: bool) {
        match self.pending.take(id) {
            Some(Waiting::Publish(pid)) => self.publish_error(pid, code, message, maybe_stored),
            Some(Waiting::Sub { topic }) => self.sub_error(&topic, id, code, message),
            Some(Waiting::Presence {
                topic,
                roster: true,
            }) => {
                if let Some(r) = self.topics.get_mut(&topic).and_then(|t| t.roster.as_mut()) {
                    r.connection_lost(); // read again after the next subscription
                }
                self.error(id, &code, message);
            }
            _ => self.error(id, &code, message),
        }
    }

    /// A publish was refused: sent again shortly if the hub could not
    /// take it now (same key: stored once even if it was stored after
    /// all, `maybe_stored`), else reported failed.
    fn publish_error(&mut self, pid: PublishId, code: String, message: String, maybe: bool) {
        let retries = self.config.publish_retries;
        let wait = self.jittered_retry();
        let now = self.now;
        let Some(e) = self.outbox.get_mut(pid) else {
            return;
        };
        let error = if !transient(&code) {
            PublishError::Rejected { code, message }
        } else if e.retries < retries {
            e.retries += 1;
            e.state = super::State::RetryAt(now + wait);
            return;
        } else {
            PublishError::Unavailable {
                maybe_stored: maybe,
            }
        };
        self.outbox.remove(pid);
        self.events
            .push_back(Event::PublishFailed { id: pid, error });
    }

    /// A subscription was refused: asked again shortly if the hub could
    /// not take it now, else dropped.
    fn sub_error(&mut self, topic: &str, id: Option<u64>, code: String, message: String) {
        let wait = self.jittered_retry();
        let now = self.now;
        let Some(t) = self.topics.get_mut(topic).filter(|t| t.sub_request == id) else {
            return;
        };
        let retrying = transient(&code);
        if retrying {
            t.sub_request = None;
            t.retry_at = Some(now + wait);
        } else {
            self.topics.remove(topic);
        }
        self.events.push_back(Event::SubscribeFailed {
            topic: topic.to_owned(),
            code,
            message,
            retrying,
        });
    }
}
