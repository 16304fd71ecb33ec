//! The hub client's settings ([`HubClientConfig`]): the endpoint, the
//! token, and every limit and delay, each with a documented default (the
//! defaults of `wsmio.js` where it has the same setting).

use std::time::Duration;

/// Settings of a [`HubClient`](super::HubClient). Build with
/// [`HubClientConfig::new`] and change the fields that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubClientConfig {
    /// The hub's WebSocket endpoint, e.g. `ws://127.0.0.1:9001/ws`. The
    /// token, if any, is added as `?token=` (or `&token=`) in each
    /// [`Action::Connect`](super::Action::Connect).
    pub url: String,
    /// The token of the first connection (default none: anonymous). A
    /// later one comes through [`HubClient::set_token`](super::HubClient::set_token).
    pub token: Option<String>,
    /// Ceiling of the first reconnect delay (default 500 ms). The n-th
    /// delay in a row is random in `[0, min(max_delay, base_delay · 2ⁿ)]`
    /// ("full jitter").
    pub base_delay: Duration,
    /// The cap on any reconnect delay (default 15 s).
    pub max_delay: Duration,
    /// How long a connection must stay up for the backoff to start over
    /// (default 5 s): a hub that accepts and then closes at once is not
    /// hammered.
    pub stable_after: Duration,
    /// How long an [`Action::Connect`](super::Action::Connect) may take
    /// to open (default 15 s); then the attempt is abandoned
    /// ([`Action::Disconnect`](super::Action::Disconnect)) and retried.
    pub connect_timeout: Duration,
    /// How long the `welcome` and each request's answer (`sub`, `pub`,
    /// `dm`, `presence`, `unsub`) may take (default 15 s). Past it the
    /// connection is taken for stuck: it is dropped and a new one made;
    /// publishes waiting for their ack are sent again with their key.
    pub request_timeout: Duration,
    /// How long the application has to answer
    /// [`Event::TokenNeeded`](super::Event::TokenNeeded) with
    /// [`HubClient::set_token`](super::HubClient::set_token) (default
    /// 30 s); then the client stops.
    pub token_timeout: Duration,
    /// The mean wait before a publish answered `unavailable` or
    /// `rate_limited` is sent again, and a subscription so answered
    /// (default 1 s; each wait is random in `[½, 1½]` of it, so retries
    /// of many clients spread out).
    pub retry_delay: Duration,
    /// How many times one publish is sent again after `unavailable` or
    /// `rate_limited` before it is reported failed (default 30: about
    /// half a minute).
    pub publish_retries: u32,
    /// Publishes and direct messages not yet acknowledged — waiting to be
    /// sent, sent, or waiting for a retry — at most (default 1,000).
    /// Past it `publish` and `dm` return
    /// [`OutboxError::Full`](super::OutboxError::Full): the application
    /// is publishing faster than the hub acknowledges, or the hub has
    /// been away for long.
    pub outbox_limit: usize,
    /// Acknowledgements go out at most once per topic per this interval
    /// (default 1 s), cumulative: the latest position processed.
    pub ack_every: Duration,
    /// Acknowledge each [`Event::Message`](super::Event::Message) once
    /// [`HubClient::poll_event`](super::HubClient::poll_event) has handed
    /// it out (default true, as `wsmio.js`'s `autoAck`). Off: the
    /// application calls [`HubClient::ack`](super::HubClient::ack) when it
    /// has processed a message.
    pub auto_ack: bool,
    /// Topics subscribed at once (default 100, the hub's default
    /// `--max-topics-per-conn`).
    pub max_topics: usize,
    /// Members read for one topic's member list (default 1,000; read a
    /// page of up to 256 at a time). A topic with more is reported by its
    /// count alone.
    pub max_members: usize,
}

impl HubClientConfig {
    /// The defaults, for the endpoint `url`.
    pub fn new(url: impl Into<String>) -> Self {
        HubClientConfig {
            url: url.into(),
            token: None,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            stable_after: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(15),
            token_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            publish_retries: 30,
            outbox_limit: 1000,
            ack_every: Duration::from_secs(1),
            auto_ack: true,
            max_topics: 100,
            max_members: 1000,
        }
    }

    /// The same with `token` for the first connection.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}
