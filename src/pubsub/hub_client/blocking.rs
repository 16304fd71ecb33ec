//! The blocking facade: a [`HubClient`] driven on one
//! [`BlockingClient`](crate::reactor::BlockingClient) socket, for simple
//! programs and scripts (the `wsmio sub` and `pub` commands). Every call
//! returns within the time it is given; meanwhile it carries out the
//! client's actions (connect, reconnect after the backoff), sends its
//! frames, feeds it what the hub sends and runs its timers.
//!
//! ```no_run
//! use std::time::Duration;
//! use wsmio::pubsub::hub_client::{BlockingHub, Event, HubClientConfig, SubOptions};
//! use wsmio::reactor::ClientOptions;
//!
//! let config = HubClientConfig::new("ws://127.0.0.1:9001/ws");
//! let mut hub = BlockingHub::new(config, ClientOptions::default());
//! hub.client().subscribe("room", SubOptions::default())?;
//! let ack = hub.publish_wait("room", r#"{"text":"hi"}"#, Duration::from_secs(10))?;
//! println!("stored as seq {}", ack.seq);
//! while let Some(ev) = hub.next_event(Duration::from_secs(30)) {
//!     if let Event::Message(m) = ev {
//!         println!("{} #{}: {}", m.topic, m.seq, m.data);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::{Action, CloseReason, Event, HubClient, HubClientConfig, OutboxError, PublishError};
use super::{PublishId, StopReason};
use crate::reactor::{BlockingClient, ClientOptions, Incoming};

/// Asked for a fresh token when the hub says the current one expired.
pub type TokenSource = Box<dyn FnMut() -> Option<String> + Send>;

/// A publish's ack, from [`BlockingHub::publish_wait`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    /// Where it went.
    pub topic: String,
    /// Its seq there.
    pub seq: u64,
    /// Its epoch.
    pub epoch: String,
    /// The hub had stored it already (a retry after a lost ack).
    pub duplicate: bool,
}

/// Why [`BlockingHub::publish_wait`] has no ack.
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitError {
    /// Not taken into the outbox.
    Outbox(OutboxError),
    /// The hub refused it, or it could not be stored.
    Failed(PublishError),
    /// No ack within the time given (it stays in the outbox).
    Timeout,
    /// The client stopped.
    Stopped(StopReason),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Outbox(e) => write!(f, "{e}"),
            WaitError::Failed(e) => write!(f, "{e}"),
            WaitError::Timeout => f.write_str("no ack in time"),
            WaitError::Stopped(r) => write!(f, "stopped: {r}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// A [`HubClient`] on a blocking socket.
pub struct BlockingHub {
    hub: HubClient,
    ws: Option<BlockingClient>,
    options: ClientOptions,
    tokens: Option<TokenSource>,
    events: VecDeque<Event>,
}

impl fmt::Debug for BlockingHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHub")
            .field("connected", &self.ws.is_some())
            .field("events", &self.events.len())
            .finish()
    }
}

/// The longest a turn waits on the socket (so timers run on time).
const MAX_WAIT: Duration = Duration::from_millis(250);

impl BlockingHub {
    /// A client of the hub at `config.url`, connecting with `options`
    /// (TLS roots, timeouts, compression). It connects at the first call
    /// that waits.
    pub fn new(config: HubClientConfig, options: ClientOptions) -> Self {
        BlockingHub {
            hub: HubClient::new(config, Instant::now()),
            ws: None,
            options,
            tokens: None,
            events: VecDeque::new(),
        }
    }

    /// Answer [`Event::TokenNeeded`] by calling `source` (a refresh call
    /// to your auth service); `None` from it stops the client. Without a
    /// source the event is passed on: answer it with
    /// `client().set_token(…)`.
    pub fn with_token_source(mut self, source: TokenSource) -> Self {
        self.tokens = Some(source);
        self
    }

    /// The state machine, for its calls (`subscribe`, `publish`, `ack`,
    /// `presence`, `close`, …). What they send goes out at the next call
    /// that waits.
    pub fn client(&mut self) -> &mut HubClient {
        &mut self.hub
    }

    /// The next event, waiting at most `timeout`; `None` if none came or
    /// the client has stopped (after its [`Event::Stopped`]).
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.hub.is_stopped() && self.ws.is_none() {
                return None;
            }
            self.turn(left);
        }
    }

    /// Publish `data` (one JSON value) on `topic` and wait for its ack;
    /// other events meanwhile are kept for [`BlockingHub::next_event`].
    /// Through drops and reconnects: the publish keeps its idempotency
    /// key, so it is stored once.
    pub fn publish_wait(
        &mut self,
        topic: &str,
        data: &str,
        timeout: Duration,
    ) -> Result<PublishAck, WaitError> {
        let id = self
            .hub
            .publish(topic, data, false)
            .map_err(WaitError::Outbox)?;
        self.wait_for(id, timeout)
    }

    /// Wait for the ack of publish `id` (from `client().publish` or
    /// `client().dm`).
    pub fn wait_for(&mut self, id: PublishId, timeout: Duration) -> Result<PublishAck, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut kept = VecDeque::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(ev) = self.next_event(left) else {
                break Err(WaitError::Timeout);
            };
            match ev {
                Event::PublishAcked {
                    id: i,
                    topic,
                    seq,
                    epoch,
                    duplicate,
                } if i == id => {
                    break Ok(PublishAck {
                        topic,
                        seq,
                        epoch,
                        duplicate,
                    })
                }
                Event::PublishFailed {
                    id: i,
                    error: PublishError::Stopped,
                } if i == id => {
                    // The client's `Stopped` says why: take it if it is here.
                    let why = self.events.iter().find_map(|e| match e {
                        Event::Stopped { reason } => Some(reason.clone()),
                        _ => None,
                    });
                    break Err(
                        why.map_or(WaitError::Failed(PublishError::Stopped), WaitError::Stopped)
                    );
                }
                Event::PublishFailed { id: i, error } if i == id => {
                    break Err(WaitError::Failed(error))
                }
                Event::Stopped { reason } => {
                    kept.push_back(Event::Stopped {
                        reason: reason.clone(),
                    });
                    break Err(WaitError::Stopped(reason));
                }
                other => kept.push_back(other),
            }
        };
        kept.append(&mut self.events);
        self.events = kept;
        result
    }

    /// Close: unacknowledged publishes are dropped; the connection closes
    /// with 1000 (waiting at most `timeout` for the hub's answer).
    pub fn close(&mut self, timeout: Duration) {
        self.hub.close();
        let deadline = Instant::now() + timeout;
        while self.ws.is_some() && Instant::now() < deadline {
            self.turn(deadline.saturating_duration_since(Instant::now()));
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(1000, "");
        }
    }

    /// One turn: frames out, actions, input for at most `wait`, timers,
    /// events.
    fn turn(&mut self, wait: Duration) {
        self.transmit();
        while let Some(action) = self.hub.poll_action() {
            match action {
                Action::Connect { url } => self.connect(&url),
                Action::Disconnect => {
                    if let Some(mut ws) = self.ws.take() {
                        let _ = ws.close(1000, "");
                    }
                    let reason = CloseReason::Close {
                        code: 1000,
                        reason: String::new(),
                    };
                    self.hub.closed(reason, Instant::now());
                }
            }
            self.transmit();
        }
        self.read(wait);
        let now = Instant::now();
        if self.hub.poll_timeout().is_some_and(|t| t <= now) {
            self.hub.timeout(now);
        }
        self.transmit();
        self.collect();
    }

    /// Send the client's frames.
    fn transmit(&mut self) {
        while let Some(text) = self.hub.poll_transmit() {
            let Some(ws) = self.ws.as_mut() else {
                continue; // the client resends what matters after a reconnect
            };
            if ws.send_text(&text).is_err() {
                self.lost(1006, "write failed".into());
            }
        }
    }

    fn connect(&mut self, url: &str) {
        let now = || Instant::now();
        match BlockingClient::connect(url, &self.options) {
            Ok(ws) => {
                self.ws = Some(ws);
                self.hub.connected(now());
            }
            Err(e) => self.hub.closed(CloseReason::from(e), now()),
        }
    }

    /// Input for at most `wait` (or until the client's next timer).
    fn read(&mut self, wait: Duration) {
        let now = Instant::now();
        let until_timer = self
            .hub
            .poll_timeout()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(now));
        let wait = wait.min(until_timer).min(MAX_WAIT);
        let Some(ws) = self.ws.as_mut() else {
            std::thread::sleep(wait);
            return;
        };
        match ws.recv(Some(wait.max(Duration::from_millis(1)))) {
            None | Some(Incoming::Binary(_)) | Some(Incoming::Pong(_)) => {}
            Some(Incoming::Text(t)) => self.hub.text(&t, Instant::now()),
            Some(Incoming::Closed { code, reason }) => self.lost(code.unwrap_or(1006), reason),
        }
    }

    fn lost(&mut self, code: u16, reason: String) {
        self.ws = None;
        self.hub
            .closed(CloseReason::Close { code, reason }, Instant::now());
    }

    /// Take the client's events; answer a token request from the source.
    fn collect(&mut self) {
        while let Some(ev) = self.hub.poll_event() {
            if matches!(ev, Event::TokenNeeded) {
                if let Some(source) = self.tokens.as_mut() {
                    match source() {
                        Some(t) => self.hub.set_token(t),
                        None => self.hub.close(),
                    }
                    continue;
                }
            }
            self.events.push_back(ev);
        }
    }
}
