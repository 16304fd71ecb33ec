//! The callback form: a [`HubClient`] driven from a reactor [`Handler`]
//! over the loop's client ([`Ctx::connect`]). [`LoopHub`] is an adapter the
//! application's handler embeds: the handler hands it the callbacks of
//! the hub's connection and of its timer (each `on_*` call says whether it
//! was the hub's), and takes the client's events with
//! [`LoopHub::poll_event`]. The client's timers (reconnect backoff, request
//! timeouts, outbox retries, ack flushes) run on one application timer of
//! the loop ([`Ctx::set_timer`]); nothing blocks the loop.

use std::time::{Duration, Instant};

use super::{Action, CloseReason, Event, HubClient, HubClientConfig};
use crate::proto::{CloseCode, Message};
#[cfg(doc)]
use crate::reactor::Handler;
use crate::reactor::{ClientOptions, ClientRequest, CloseInfo, ConnId, ConnectError, Ctx, TimerId};

/// A [`HubClient`] on a reactor loop, embedded in the application's
/// [`Handler`]: the handler hands it the callbacks of the hub's connection
/// and of its timer (each `on_*` call says whether it was the hub's) and
/// takes the client's events with [`LoopHub::poll_event`]. Its calls
/// ([`LoopHub::client`]) queue; what they send goes out at the next
/// [`LoopHub::pump`] (every `on_*` call pumps). The client's timers
/// (reconnect backoff, request timeouts, outbox retries, ack flushes) run
/// on one application timer of the loop ([`Ctx::set_timer`]).
///
/// ```no_run
/// use wsmio::pubsub::hub_client::{Event, HubClientConfig, LoopHub, SubOptions};
/// use wsmio::{ClientOptions, CloseInfo, Config, ConnId, ConnectError, Ctx, Handler, Message, Server};
///
/// /// The application: one hub client, and whatever else it serves.
/// struct App {
///     hub: Option<LoopHub>,
/// }
///
/// const HUB_TIMER: u64 = 1;
///
/// impl App {
///     fn events(&mut self) {
///         let Some(hub) = self.hub.as_mut() else { return };
///         while let Some(ev) = hub.poll_event() {
///             if let Event::Message(m) = ev {
///                 println!("{} #{}: {}", m.topic, m.seq, m.data);
///             }
///         }
///     }
/// }
///
/// impl Handler for App {
///     type Conn = ();
///     fn wake(&mut self, ctx: &mut Ctx<'_>) {
///         let config = HubClientConfig::new("ws://127.0.0.1:9001/ws");
///         let mut hub = LoopHub::new(config, ClientOptions::default(), HUB_TIMER, ctx.now());
///         let _ = hub.client().subscribe("room", SubOptions::default());
///         hub.pump(ctx);
///         self.hub = Some(hub);
///     }
///     fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
///         if let Some(hub) = self.hub.as_mut() { hub.on_open(ctx, id); }
///         self.events();
///     }
///     fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
///         if let Some(hub) = self.hub.as_mut() { hub.on_message(ctx, id, msg); }
///         self.events();
///     }
///     fn close(&mut self, ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
///         if let Some(hub) = self.hub.as_mut() { hub.on_close(ctx, id, info); }
///         self.events();
///     }
///     fn connect_failed(&mut self, ctx: &mut Ctx<'_>, id: ConnId, e: ConnectError) {
///         if let Some(hub) = self.hub.as_mut() { hub.on_connect_failed(ctx, id, e); }
///         self.events();
///     }
///     fn timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
///         if let Some(hub) = self.hub.as_mut() { hub.on_timer(ctx, token); }
///         self.events();
///     }
/// }
///
/// let lp = Server::new(Config::default())?;
/// lp.handle().wake().unwrap();
/// lp.run(App { hub: None })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct LoopHub {
    hub: HubClient,
    options: ClientOptions,
    /// The application timer token this client uses.
    token: u64,
    /// The hub's connection (connecting or open), and whether it is open.
    conn: Option<ConnId>,
    open: bool,
    /// A connection we closed (`Action::Disconnect`): its `close` is ours.
    retired: Option<ConnId>,
    /// The loop timer set for the client's next deadline.
    timer: Option<(TimerId, Instant)>,
}

impl LoopHub {
    /// A client of the hub at `config.url`, connecting with `options`
    /// (TLS roots, timeouts, compression) at the first [`LoopHub::pump`];
    /// `token` is the application timer token it uses (its
    /// [`Handler::timer`] calls go to [`LoopHub::on_timer`]); `now`: the
    /// loop's time ([`Ctx::now`]).
    pub fn new(config: HubClientConfig, options: ClientOptions, token: u64, now: Instant) -> Self {
        LoopHub {
            hub: HubClient::new(config, now),
            options,
            token,
            conn: None,
            open: false,
            retired: None,
            timer: None,
        }
    }

    /// The state machine, for its calls (`subscribe`, `publish`, `ack`,
    /// `presence`, `set_token`, `close`, …); call [`LoopHub::pump`] after.
    pub fn client(&mut self) -> &mut HubClient {
        &mut self.hub
    }

    /// The next event of the client (messages, acks, `TokenNeeded`, …).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.hub.poll_event()
    }

    /// Whether `id` is (or was, until its `close`) the hub's connection.
    pub fn owns(&self, id: ConnId) -> bool {
        self.conn == Some(id) || self.retired == Some(id)
    }

    /// Carry out what the client asks for: its actions (connect,
    /// disconnect), its frames, its next deadline on the loop's timer.
    pub fn pump<S: 'static>(&mut self, ctx: &mut Ctx<'_, S>) {
        while let Some(action) = self.hub.poll_action() {
            match action {
                Action::Connect { url } => self.connect(ctx, &url),
                Action::Disconnect => self.disconnect(ctx),
            }
        }
        self.transmit(ctx);
        self.arm(ctx);
    }

    /// [`Handler::open`]: `true` if `id` is the hub's connection.
    pub fn on_open<S: 'static>(&mut self, ctx: &mut Ctx<'_, S>, id: ConnId) -> bool {
        if self.conn != Some(id) {
            return false;
        }
        self.open = true;
        self.hub.connected(ctx.now());
        self.pump(ctx);
        true
    }

    /// [`Handler::message`]: `true` if `id` is the hub's connection. The
    /// hub speaks text; a binary message is ignored.
    pub fn on_message<S: 'static>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        id: ConnId,
        msg: Message<'_>,
    ) -> bool {
        if !self.owns(id) {
            return false;
        }
        if let (Message::Text(t), true) = (msg, self.conn == Some(id)) {
            self.hub.text(t, ctx.now());
            self.pump(ctx);
        }
        true
    }

    /// [`Handler::close`]: `true` if `id` is (or was) the hub's
    /// connection. The client reconnects after its backoff.
    pub fn on_close<S: 'static>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        id: ConnId,
        info: CloseInfo,
    ) -> bool {
        match self.ending(id) {
            Ending::NotOurs => return false,
            Ending::Retired => return true,
            Ending::Current => {}
        }
        let reason = CloseReason::Close {
            code: info.code.0,
            reason: String::new(),
        };
        self.lost(ctx, reason);
        true
    }

    /// [`Handler::connect_failed`]: `true` if `id` was the hub's
    /// connection. A refusal (`401` for an expired token, `503`, …) goes
    /// to the client with its status and body.
    pub fn on_connect_failed<S: 'static>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        id: ConnId,
        e: ConnectError,
    ) -> bool {
        match self.ending(id) {
            Ending::NotOurs => return false,
            Ending::Retired => return true,
            Ending::Current => {}
        }
        self.lost(ctx, CloseReason::from(e));
        true
    }

    /// Whose last callback `id`'s is: the retired connection's (now
    /// forgotten), the current one's, or another connection's.
    fn ending(&mut self, id: ConnId) -> Ending {
        if self.retired == Some(id) {
            self.retired = None;
            Ending::Retired
        } else if self.conn == Some(id) {
            Ending::Current
        } else {
            Ending::NotOurs
        }
    }

    /// [`Handler::timer`]: `true` if `token` is this client's.
    pub fn on_timer<S: 'static>(&mut self, ctx: &mut Ctx<'_, S>, token: u64) -> bool {
        if token != self.token {
            return false;
        }
        self.timer = None;
        let now = ctx.now();
        if self.hub.poll_timeout().is_some_and(|t| t <= now) {
            self.hub.timeout(now);
        }
        self.pump(ctx);
        true
    }

    fn connect<S>(&mut self, ctx: &mut Ctx<'_, S>, url: &str) {
        let req = ClientRequest::new(url).map(|r| r.with_options(self.options.clone()));
        match req.and_then(|r| ctx.connect(r)) {
            Ok(id) => {
                self.conn = Some(id);
                self.open = false;
            }
            Err(e) => {
                let now = ctx.now();
                self.hub.closed(CloseReason::from(e), now);
            }
        }
    }

    /// The client closes the connection (1000); it hears so at once.
    fn disconnect<S>(&mut self, ctx: &mut Ctx<'_, S>) {
        if let Some(id) = self.conn.take() {
            ctx.close(id, CloseCode::NORMAL, "");
            self.retired = Some(id);
        }
        self.open = false;
        let reason = CloseReason::Close {
            code: 1000,
            reason: String::new(),
        };
        self.hub.closed(reason, ctx.now());
    }

    fn lost<S: 'static>(&mut self, ctx: &mut Ctx<'_, S>, reason: CloseReason) {
        self.conn = None;
        self.open = false;
        self.hub.closed(reason, ctx.now());
        self.pump(ctx);
    }

    /// Send the client's frames on the open connection (while there is
    /// none they are dropped: the client resends what matters after it
    /// reconnects).
    fn transmit<S>(&mut self, ctx: &mut Ctx<'_, S>) {
        while let Some(text) = self.hub.poll_transmit() {
            if let (Some(id), true) = (self.conn, self.open) {
                let _ = ctx.send_text(id, &text);
            }
        }
    }

    /// Keep one loop timer at the client's next deadline.
    fn arm<S>(&mut self, ctx: &mut Ctx<'_, S>) {
        let next = self.hub.poll_timeout();
        if self.timer.map(|(_, at)| at) == next {
            return;
        }
        if let Some((id, _)) = self.timer.take() {
            ctx.cancel_timer(id);
        }
        let Some(at) = next else { return };
        // Whole milliseconds, rounded up: never before the deadline.
        let after = at.saturating_duration_since(ctx.now()) + Duration::from_millis(1);
        match ctx.set_timer(after, self.token) {
            Ok(id) => self.timer = Some((id, at)),
            Err(e) => log::warn!("hub client: no loop timer ({e}); it waits for the next event"),
        }
    }
}

/// See [`LoopHub::ending`].
enum Ending {
    /// The connection the client gave up on (its replacement may be up).
    Retired,
    /// The client's connection: it is lost.
    Current,
    /// Not the hub's.
    NotOurs,
}
