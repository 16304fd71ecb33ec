//! The connection's lifecycle: connect, open, welcome, end; what a close
//! code or a refused upgrade means (reconnect, ask for a token, stop);
//! the backoff between attempts; and the timers of each phase.

use std::time::{Duration, Instant};

use super::api::CloseReason;
use super::events::{Action, Event, PublishError, StopReason};
use super::pending::Waiting;
use super::HubClient;

/// Where the connection stands; each phase's deadline in its variant.
#[derive(Debug)]
pub(super) enum Link {
    /// [`Action::Connect`] asked; given up at `deadline`.
    Connecting { deadline: Instant },
    /// The WebSocket opened at `since`; `welcomed` once the hub's
    /// welcome came (it must within the request timeout).
    Open { since: Instant, welcomed: bool },
    /// The next attempt is at `until`.
    Waiting { until: Instant },
    /// [`Event::TokenNeeded`] asked; the client stops at `deadline`.
    NeedToken { deadline: Instant },
    /// [`Action::Disconnect`] asked; waiting for `closed`, then `then`.
    /// `opened`: when the connection opened, if it did.
    Closing {
        then: After,
        opened: Option<Instant>,
    },
    /// For good.
    Stopped,
}

/// What follows a disconnect the client asked for.
#[derive(Debug)]
pub(super) enum After {
    Reconnect,
    Stop(StopReason),
}

impl Link {
    /// The phase's deadline, if it has one.
    pub fn deadline(&self, request_timeout: Duration) -> Option<Instant> {
        match *self {
            Link::Connecting { deadline } | Link::NeedToken { deadline } => Some(deadline),
            Link::Waiting { until } => Some(until),
            Link::Open {
                since,
                welcomed: false,
            } => Some(since + request_timeout),
            Link::Open { .. } | Link::Closing { .. } | Link::Stopped => None,
        }
    }
}

/// What an ended connection calls for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Reconnect,
    Token,
    Stop(StopReason),
}

/// Read a close code or a refused upgrade. `has_token`: the attempt
/// carried a token; `fresh_token`: one just given after `TokenNeeded`.
fn verdict(reason: &CloseReason, has_token: bool, fresh_token: bool) -> Verdict {
    let expired = |text: &str| text.contains("token expired");
    match reason {
        // Application codes: the hub (or the application behind it) says
        // do not come back.
        CloseReason::Close { code, reason } if (4000..=4999).contains(code) => {
            Verdict::Stop(StopReason::ClosedByHub {
                code: *code,
                reason: reason.clone(),
            })
        }
        // The hub's policy close when a token's `exp` passes.
        CloseReason::Close { code: 1008, reason } if expired(reason) => Verdict::Token,
        // A token that expired while disconnected is refused at the
        // upgrade; a fresh one refused the same way is not asked again.
        CloseReason::HandshakeRefused { status: 401, body }
            if expired(body) && has_token && !fresh_token =>
        {
            Verdict::Token
        }
        CloseReason::HandshakeRefused { status, body } if matches!(status, 401 | 403) => {
            Verdict::Stop(StopReason::Refused {
                status: *status,
                body: body.clone(),
            })
        }
        // 1000 from the hub, 1001 going away, 1006 dropped, 1011, 1012
        // restart, 1013 try later, 1008 for other reasons; 429, 503 and
        // other refusals; no connection at all.
        _ => Verdict::Reconnect,
    }
}

impl HubClient {
    /// The WebSocket of the last [`Action::Connect`] is open.
    pub fn connected(&mut self, now: Instant) {
        self.now = now;
        if let Link::Connecting { .. } = self.link {
            self.link = Link::Open {
                since: now,
                welcomed: false,
            };
        }
    }

    /// The connection, or the attempt, ended.
    pub fn closed(&mut self, reason: CloseReason, now: Instant) {
        self.now = now;
        match std::mem::replace(&mut self.link, Link::Stopped) {
            Link::Connecting { .. } => self.ended(reason, None),
            Link::Open { since, .. } => self.ended(reason, Some(since)),
            Link::Closing { then, opened } => {
                self.connection_lost(reason);
                match then {
                    After::Stop(why) => self.stop(why),
                    After::Reconnect => {
                        self.note_uptime(opened);
                        self.schedule_reconnect();
                    }
                }
            }
            // Not about a connection of ours (reported twice, or late).
            other => self.link = other,
        }
    }

    /// Stop for good: acknowledgements processed so far are sent, the
    /// connection closed (code 1000), and what waits in the outbox is
    /// reported failed. [`Event::Stopped`] follows once the connection is
    /// gone.
    pub fn close(&mut self) {
        let why = After::Stop(StopReason::Closed);
        match &mut self.link {
            Link::Open { since, .. } => {
                let opened = Some(*since);
                self.flush_acks();
                self.actions.push_back(Action::Disconnect);
                self.link = Link::Closing { then: why, opened };
            }
            Link::Connecting { .. } => {
                self.actions.push_back(Action::Disconnect);
                self.link = Link::Closing {
                    then: why,
                    opened: None,
                };
            }
            Link::Closing { then, .. } => *then = why,
            Link::Waiting { .. } | Link::NeedToken { .. } => self.stop(StopReason::Closed),
            Link::Stopped => {}
        }
    }

    /// The time from [`HubClient::poll_timeout`] has come (calling it
    /// earlier, or more often, is harmless).
    pub fn timeout(&mut self, now: Instant) {
        self.now = now;
        self.link_timeout(now);
        if self.is_connected() && self.pending.overdue(now) {
            let t = self.config.request_timeout;
            self.abandon(format!("a request got no answer within {t:?}"));
        }
        if self.is_connected() {
            self.flush_outbox();
            self.resubscribe_due(now);
        } else {
            self.outbox.queue_due_retries(now);
        }
        if self.ack_flush_at.is_some_and(|at| at <= now) {
            self.flush_acks();
        }
    }

    fn link_timeout(&mut self, now: Instant) {
        match self.link {
            Link::Waiting { until } if until <= now => self.connect_now(),
            Link::NeedToken { deadline } if deadline <= now => self.stop(StopReason::TokenTimeout),
            Link::Connecting { deadline } if deadline <= now => {
                let t = self.config.connect_timeout;
                self.abandon(format!("no connection within {t:?}"));
            }
            Link::Open {
                since,
                welcomed: false,
            } if since + self.config.request_timeout <= now => {
                let t = self.config.request_timeout;
                self.abandon(format!("no welcome within {t:?}"));
            }
            _ => {}
        }
    }

    /// Subscriptions refused for a while whose time has come.
    fn resubscribe_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| t.retry_at.is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for topic in due {
            self.send_sub(&topic);
        }
    }

    /// Ask the transport to connect now.
    pub(super) fn connect_now(&mut self) {
        let url = url_with_token(&self.config.url, self.token.as_deref());
        self.actions.push_back(Action::Connect { url });
        self.link = Link::Connecting {
            deadline: self.now + self.config.connect_timeout,
        };
    }

    /// The connection (or attempt) seems stuck: drop it and make another.
    fn abandon(&mut self, message: String) {
        let opened = match self.link {
            Link::Open { since, .. } => Some(since),
            Link::Connecting { .. } => None,
            _ => return,
        };
        self.error(None, "timeout", message);
        self.actions.push_back(Action::Disconnect);
        self.link = Link::Closing {
            then: After::Reconnect,
            opened,
        };
    }

    /// A connection we did not ask to end ended.
    fn ended(&mut self, reason: CloseReason, opened: Option<Instant>) {
        let v = verdict(&reason, self.token.is_some(), self.fresh_token);
        self.connection_lost(reason);
        self.note_uptime(opened);
        match v {
            Verdict::Reconnect => self.schedule_reconnect(),
            Verdict::Token => {
                self.backoff.reset();
                self.events.push_back(Event::TokenNeeded);
                self.link = Link::NeedToken {
                    deadline: self.now + self.config.token_timeout,
                };
            }
            Verdict::Stop(why) => self.stop(why),
        }
    }

    /// A connection that stayed up long enough starts the backoff over.
    fn note_uptime(&mut self, opened: Option<Instant>) {
        if let Some(since) = opened {
            let up = self.now.saturating_duration_since(since);
            self.backoff.connection_ended(up, self.config.stable_after);
        }
    }

    fn schedule_reconnect(&mut self) {
        let (base, max) = (self.config.base_delay, self.config.max_delay);
        let (attempt, delay) = self.backoff.next(base, max, &mut *self.random);
        self.events
            .push_back(Event::Reconnecting { attempt, delay });
        self.link = Link::Waiting {
            until: self.now + delay,
        };
    }

    /// Whatever belonged to the connection that ended: frames not sent,
    /// requests not answered (publishes go back to the outbox, presence
    /// queries of the application are answered with an error), the
    /// subscriptions' live state.
    fn connection_lost(&mut self, reason: CloseReason) {
        self.transmits.clear();
        self.welcome = None;
        for (id, what) in self.pending.drain() {
            if let Waiting::Presence { roster: false, .. } = what {
                self.error(
                    Some(id),
                    "disconnected",
                    "the connection ended before the answer",
                );
            }
        }
        self.outbox.connection_lost();
        for t in self.topics.values_mut() {
            t.connection_lost();
            t.retry_at = None;
        }
        self.events.push_back(Event::Disconnected { reason });
    }

    /// Stop for good; what waits in the outbox fails.
    fn stop(&mut self, reason: StopReason) {
        self.link = Link::Stopped;
        self.transmits.clear();
        self.ack_flush_at = None;
        self.pending.drain();
        for e in self.outbox.drain() {
            self.events.push_back(Event::PublishFailed {
                id: e.id,
                error: PublishError::Stopped,
            });
        }
        self.events.push_back(Event::Stopped { reason });
    }
}

/// `url` with `token` added to its query (percent-encoded).
fn url_with_token(url: &str, token: Option<&str>) -> String {
    let Some(token) = token else {
        return url.to_owned();
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut out = format!("{url}{sep}token=");
    for b in token.bytes() {
        // RFC 3986 §2.3 unreserved characters pass; the rest is %XX.
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16, reason: &str) -> CloseReason {
        CloseReason::Close {
            code,
            reason: reason.into(),
        }
    }

    fn refused(status: u16, body: &str) -> CloseReason {
        CloseReason::HandshakeRefused {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn close_codes_and_refusals() {
        for code in [1000, 1001, 1006, 1008, 1011, 1012, 1013, 3000, 5000] {
            assert_eq!(verdict(&close(code, "x"), true, false), Verdict::Reconnect);
        }
        assert_eq!(
            verdict(&close(1008, "token expired"), true, false),
            Verdict::Token
        );
        assert!(matches!(
            verdict(&close(4000, "banned"), true, false),
            Verdict::Stop(StopReason::ClosedByHub { code: 4000, .. })
        ));
        assert!(matches!(
            verdict(&close(4999, ""), false, false),
            Verdict::Stop(_)
        ));
        for status in [429, 503, 500, 404] {
            assert_eq!(
                verdict(&refused(status, ""), true, false),
                Verdict::Reconnect
            );
        }
        assert_eq!(
            verdict(&refused(401, "token expired"), true, false),
            Verdict::Token
        );
        for (status, has, fresh) in [(401, true, true), (401, false, false), (403, true, false)] {
            assert!(matches!(
                verdict(&refused(status, "token expired"), has, fresh),
                Verdict::Stop(StopReason::Refused { .. })
            ));
        }
        let failed = CloseReason::ConnectFailed {
            error: "refused".into(),
        };
        assert_eq!(verdict(&failed, false, false), Verdict::Reconnect);
    }

    #[test]
    fn tokens_go_in_the_query() {
        assert_eq!(url_with_token("ws://h/ws", None), "ws://h/ws");
        assert_eq!(
            url_with_token("ws://h/ws", Some("a.b-c_~")),
            "ws://h/ws?token=a.b-c_~"
        );
        assert_eq!(
            url_with_token("ws://h/ws?x=1", Some("a b/é")),
            "ws://h/ws?x=1&token=a%20b%2F%C3%A9"
        );
    }
}
