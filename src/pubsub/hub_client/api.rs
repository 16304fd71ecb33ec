//! What the transport and the application hand to the hub client — how a
//! connection ended, subscription options, positions — and the errors its
//! calls return at once.

use std::fmt;

/// Where a topic's numbering stands: a `seq` within an `epoch` (see
/// `docs/PROTOCOL.md`, "History and resume").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The numbering the seq belongs to.
    pub epoch: String,
    /// The sequence number.
    pub seq: u64,
}

impl Position {
    /// `seq` in `epoch`.
    pub fn new(epoch: impl Into<String>, seq: u64) -> Self {
        Position {
            epoch: epoch.into(),
            seq,
        }
    }
}

/// Where a subscription starts the first time; after that the client
/// resumes from the last message it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Since {
    /// From this user's last acknowledged position, kept by the hub for
    /// every connection of the user (`"since":"acked"`): another device,
    /// a restarted program.
    Acked,
    /// After a position the application kept.
    From(Position),
}

/// How to subscribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubOptions {
    /// Where to start the first time (default: from now on).
    pub since: Option<Since>,
    /// Keep the topic's member list and report it with
    /// [`Event::Presence`](super::Event::Presence) (default false).
    pub roster: bool,
}

impl SubOptions {
    /// Start from this user's acknowledged position.
    pub fn acked() -> Self {
        SubOptions {
            since: Some(Since::Acked),
            ..Self::default()
        }
    }

    /// Start after `epoch`/`seq`.
    pub fn from(epoch: impl Into<String>, seq: u64) -> Self {
        SubOptions {
            since: Some(Since::From(Position::new(epoch, seq))),
            ..Self::default()
        }
    }

    /// The same, keeping the member list.
    pub fn with_roster(mut self) -> Self {
        self.roster = true;
        self
    }
}

/// How a connection, or an attempt at one, ended: what the transport
/// reports through [`HubClient::closed`](super::HubClient::closed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The WebSocket closed: the code of the hub's close frame (or 1006
    /// if the connection ended without one) and its reason.
    Close {
        /// The close code.
        code: u16,
        /// The close reason (may be empty).
        reason: String,
    },
    /// The hub answered the upgrade with an HTTP status other than 101.
    HandshakeRefused {
        /// The status (401, 403, 429, 503, …).
        status: u16,
        /// The response body, or as much of it as the transport read (the
        /// hub says why in one line: `token expired`, …).
        body: String,
    },
    /// No connection: name resolution, TCP, TLS, or a transport timeout.
    ConnectFailed {
        /// What went wrong, for logs.
        error: String,
    },
}

/// A failed connect as the client takes it: a refusal with its status
/// and body, anything else as `ConnectFailed`.
impl From<crate::reactor::ConnectError> for CloseReason {
    fn from(e: crate::reactor::ConnectError) -> Self {
        match e {
            crate::reactor::ConnectError::Refused { status, body, .. } => {
                CloseReason::HandshakeRefused { status, body }
            }
            e => CloseReason::ConnectFailed {
                error: e.to_string(),
            },
        }
    }
}

/// A publish or direct message, from the call that made it to its
/// [`Event::PublishAcked`](super::Event::PublishAcked) or
/// [`Event::PublishFailed`](super::Event::PublishFailed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub(super) u64);

impl PublishId {
    /// The number (increasing in the order of the calls).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PublishId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publish #{}", self.0)
    }
}

/// The id of a request on the wire; a one-off presence query's answer
/// ([`Event::PresencePage`](super::Event::PresencePage)) carries it.
pub type RequestId = u64;

/// Why `publish` or `dm` did not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxError {
    /// [`HubClientConfig::outbox_limit`](super::HubClientConfig::outbox_limit)
    /// messages are not acknowledged yet.
    Full {
        /// The limit.
        limit: usize,
    },
    /// `data` is not one JSON value.
    InvalidJson(String),
    /// The topic, or the recipient's user id, is not a valid name
    /// (1–128 visible characters).
    BadTopic,
    /// The client has stopped.
    Stopped,
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::Full { limit } => write!(f, "outbox full ({limit} unacknowledged)"),
            OutboxError::InvalidJson(e) => write!(f, "data is not JSON: {e}"),
            OutboxError::BadTopic => f.write_str("not a valid topic or user id"),
            OutboxError::Stopped => f.write_str("the client has stopped"),
        }
    }
}

impl std::error::Error for OutboxError {}

/// Why `subscribe` or `presence` refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// [`HubClientConfig::max_topics`](super::HubClientConfig::max_topics)
    /// topics are subscribed already.
    TooManyTopics {
        /// The limit.
        limit: usize,
    },
    /// Not a valid topic name (1–128 visible characters).
    BadTopic,
    /// A presence query needs a connection (subscriptions wait for one).
    NotConnected,
    /// The client has stopped.
    Stopped,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooManyTopics { limit } => write!(f, "{limit} topics subscribed already"),
            RequestError::BadTopic => f.write_str("not a valid topic"),
            RequestError::NotConnected => f.write_str("not connected"),
            RequestError::Stopped => f.write_str("the client has stopped"),
        }
    }
}

impl std::error::Error for RequestError {}
