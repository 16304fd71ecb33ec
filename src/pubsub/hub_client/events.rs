//! What the hub client reports: [`Action`]s for the transport and
//! [`Event`]s for the application.

use std::time::Duration;

use super::api::{CloseReason, Position, PublishId, RequestId};

/// Something the transport must do. Send whatever
/// [`HubClient::poll_transmit`](super::HubClient::poll_transmit) returns
/// before acting on the next action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a WebSocket to `url` (the configured endpoint, with
    /// `?token=…` when there is a token). Report the outcome with
    /// [`HubClient::connected`](super::HubClient::connected) or
    /// [`HubClient::closed`](super::HubClient::closed).
    Connect {
        /// The endpoint with the token in its query.
        url: String,
    },
    /// Close the current connection, or give up the attempt under way
    /// (close code 1000), and report
    /// [`HubClient::closed`](super::HubClient::closed) once it is gone.
    Disconnect,
}

/// Why the client stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The application called [`HubClient::close`](super::HubClient::close).
    Closed,
    /// The hub closed with an application code (4000–4999): do not come
    /// back.
    ClosedByHub {
        /// The close code.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// The upgrade was refused with 401 or 403: the token is missing,
    /// wrong, or not allowed here (see the body).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// No token came within
    /// [`HubClientConfig::token_timeout`](super::HubClientConfig::token_timeout)
    /// after [`Event::TokenNeeded`].
    TokenTimeout,
}

/// Why a publish or direct message failed (reported once, by
/// [`Event::PublishFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The hub refused it (`forbidden`, `bad_topic`, …): not stored.
    Rejected {
        /// The error code.
        code: String,
        /// The hub's message.
        message: String,
    },
    /// Still `unavailable` (or `rate_limited`) after
    /// [`HubClientConfig::publish_retries`](super::HubClientConfig::publish_retries)
    /// retries. `maybe_stored`: the last answer said it may have been
    /// stored all the same.
    Unavailable {
        /// It may have been stored and delivered.
        maybe_stored: bool,
    },
    /// The client stopped before it was acknowledged (it may have been
    /// stored if it had been sent).
    Stopped,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Closed => f.write_str("closed by the application"),
            StopReason::ClosedByHub { code, reason } => {
                write!(f, "the hub closed with {code}: {reason}")
            }
            StopReason::Refused { status, body } => {
                write!(f, "refused with HTTP {status}: {}", body.trim())
            }
            StopReason::TokenTimeout => f.write_str("no fresh token came in time"),
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Rejected { code, message } => write!(f, "{code}: {message}"),
            PublishError::Unavailable { maybe_stored } => write!(
                f,
                "the hub could not store it (maybe stored: {maybe_stored})"
            ),
            PublishError::Stopped => f.write_str("the client stopped first"),
        }
    }
}

/// The hub's `welcome`: who this connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The user id (from the token, or generated for an anonymous user:
    /// then it differs per connection).
    pub user: String,
    /// An anonymous user.
    pub anonymous: bool,
    /// The node's name.
    pub node: String,
    /// The node's epoch (memory engine: every topic numbers in it, or in
    /// it with a `.N` suffix; a restarted hub has a new one).
    pub epoch: String,
    /// The user's inbox topic (`@user`).
    pub inbox: String,
    /// `memory` or `redis`.
    pub engine: String,
    /// Topics with at most this many members send joins and leaves;
    /// bigger ones their count only.
    pub presence_events_max: Option<u64>,
}

/// A delivery on a subscribed topic, each seq once per epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// Its sequence number within `epoch`.
    pub seq: u64,
    /// The numbering `seq` belongs to.
    pub epoch: String,
    /// The sender's user id.
    pub from: String,
    /// The node that took the publish.
    pub node: String,
    /// The hub's clock when it was published (ms since the Unix epoch).
    pub ts: u64,
    /// The payload: one JSON value, as its text.
    pub data: String,
}

impl Message {
    /// The message's position (for [`HubClient::ack`](super::HubClient::ack)).
    pub fn position(&self) -> Position {
        Position::new(self.epoch.clone(), self.seq)
    }
}

/// A subscription was taken (the first time, and again after each
/// reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The topic.
    pub topic: String,
    /// The topic's epoch now.
    pub epoch: String,
    /// Its last seq when subscribed.
    pub seq: u64,
    /// The subscription resumed from a position (`since`).
    pub resumed: bool,
    /// Every missed message is replayed (follows this event).
    pub recovered: bool,
    /// Missed messages no longer in the hub's history.
    pub lost: u64,
    /// The position named another epoch (the hub restarted, or the topic
    /// was recreated): the client now follows `epoch`.
    pub epoch_changed: bool,
    /// Messages replayed after this event.
    pub replayed: u64,
    /// With `Since::Acked`: the stored position it resumed from, or
    /// `None` when none was stored.
    pub acked: Option<Position>,
}

/// What the hub client reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is ready: subscriptions are being resumed and the
    /// outbox sent.
    Welcome(Welcome),
    /// A message on a subscribed topic (duplicates dropped).
    Message(Message),
    /// A subscription was taken or resumed.
    Subscribed(Subscribed),
    /// The hub refused a subscription. With a lasting `code`
    /// (`forbidden`, `bad_topic`, `too_many_topics`) the topic is
    /// dropped; after `rate_limited` or `unavailable` it is asked again
    /// shortly.
    SubscribeFailed {
        /// The topic.
        topic: String,
        /// The error code.
        code: String,
        /// The hub's message.
        message: String,
        /// It will be asked again.
        retrying: bool,
    },
    /// Messages `from..=to` of `topic` are lost for this client.
    Gap {
        /// The topic.
        topic: String,
        /// Their epoch.
        epoch: String,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// The topic's numbering started over (the hub lost its data):
    /// messages of `epoch` after `seq` follow.
    Reset {
        /// The topic.
        topic: String,
        /// The new epoch.
        epoch: String,
        /// Its last seq.
        seq: u64,
    },
    /// The member list of a topic subscribed with a roster changed:
    /// `members` in name order, or `None` while the topic is too big to
    /// list (then the count alone).
    Presence {
        /// The topic.
        topic: String,
        /// Its members, if listed.
        members: Option<Vec<String>>,
        /// How many members it has.
        count: u64,
    },
    /// The answer to [`HubClient::presence`](super::HubClient::presence).
    PresencePage {
        /// The request it answers.
        request: RequestId,
        /// The topic.
        topic: String,
        /// Members on this page, by name.
        members: Vec<String>,
        /// Members in all.
        count: u64,
        /// Where the next page starts (`None`: this was the last).
        cursor: Option<String>,
    },
    /// `user` subscribed to `topic` (its first connection there).
    Joined {
        /// The topic.
        topic: String,
        /// The user.
        user: String,
    },
    /// `user` left `topic` (its last connection there).
    Left {
        /// The topic.
        topic: String,
        /// The user.
        user: String,
    },
    /// A publish or direct message was stored: reported once, also when
    /// the hub recognized a retry (`duplicate`).
    PublishAcked {
        /// The publish.
        id: PublishId,
        /// Where it went (`@user` for a direct message).
        topic: String,
        /// Its seq there.
        seq: u64,
        /// Its epoch.
        epoch: String,
        /// The hub had stored it already (a retry after a lost ack).
        duplicate: bool,
    },
    /// A publish or direct message failed (reported once).
    PublishFailed {
        /// The publish.
        id: PublishId,
        /// Why.
        error: PublishError,
    },
    /// The token expired: answer with
    /// [`HubClient::set_token`](super::HubClient::set_token) within
    /// [`HubClientConfig::token_timeout`](super::HubClientConfig::token_timeout);
    /// the client reconnects at once then.
    TokenNeeded,
    /// The connection, or the attempt, ended.
    Disconnected {
        /// How.
        reason: CloseReason,
    },
    /// The next attempt comes after `delay`.
    Reconnecting {
        /// Attempts in a row (1 for the first retry).
        attempt: u32,
        /// The wait.
        delay: Duration,
    },
    /// The client stopped for good: nothing more will happen.
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// An error the hub reported outside a publish or subscription (a
    /// refused `ack`, a failed presence query), a message from the hub
    /// the client could not read (`bad_message`), or a timeout
    /// (`timeout`: the connection is being replaced).
    Error {
        /// The request it answers, if any.
        request: Option<RequestId>,
        /// The error code.
        code: String,
        /// What went wrong.
        message: String,
    },
}
