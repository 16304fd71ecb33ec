//! The embedding API: what the application implements ([`Handler`]) and the
//! small types it exchanges with the loop.

use super::client_options::ConnectError;
use super::ctx::Ctx;
use super::id::ConnId;
use crate::proto::handshake::{http_response_with_reason, status_text, HttpRequest};
use crate::proto::{Chunk, CloseCode, Message};

/// The answer to an upgrade request ([`Handler::upgrade`]): accept it,
/// refuse it, or answer later ([`Upgrade::defer`]).
///
/// ```
/// use wsmio::{HttpResponse, Upgrade};
///
/// let chat = Upgrade::accept_protocol("chat.v2").with_header("X-Node", "eu-1");
/// let banned = Upgrade::reject(451, "not available in your region");
/// let custom = Upgrade::Reject(HttpResponse::text(499, "bye").with_reason("Client Closed Request"));
/// # let _ = (chat, banned, custom);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upgrade {
    /// Switch protocols, optionally selecting one of the subprotocols the
    /// client offered (RFC 6455 §4.2.2: only an offered one), and adding
    /// headers to the `101` response.
    Accept {
        /// The selected subprotocol.
        protocol: Option<String>,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// Refuse with this HTTP response; the connection then closes.
    Reject(HttpResponse),
    /// Answer later, with [`Ctx::answer_upgrade`] (or
    /// [`Handle::answer_upgrade`](super::Handle::answer_upgrade) from
    /// another thread): see [`Upgrade::defer`].
    Defer,
}

impl Upgrade {
    /// Accept without a subprotocol.
    pub fn accept() -> Self {
        Upgrade::Accept {
            protocol: None,
            headers: Vec::new(),
        }
    }

    /// Accept, selecting `protocol`.
    pub fn accept_protocol(protocol: &str) -> Self {
        Upgrade::Accept {
            protocol: Some(protocol.to_string()),
            headers: Vec::new(),
        }
    }

    /// Refuse with `status` and its standard reason phrase (RFC 9110 §15:
    /// `451` goes out as `451 Unavailable For Legal Reasons`), and a
    /// one-line `reason` as a plain-text body. For a phrase of your own,
    /// refuse with [`Upgrade::Reject`] and [`HttpResponse::with_reason`].
    pub fn reject(status: u16, reason: &str) -> Self {
        Upgrade::Reject(HttpResponse::text(status, reason))
    }

    /// Answer later: the connection waits, its request head parsed and
    /// validated, until the application calls [`Ctx::answer_upgrade`]
    /// ([`Ctx::accept_upgrade`], [`Ctx::reject_upgrade`]) or
    /// [`Handle::answer_upgrade`](super::Handle::answer_upgrade) — for an
    /// asynchronous check (a token verified by another service, a database
    /// lookup). The handshake timeout
    /// ([`Config::handshake_timeout`](super::Config::handshake_timeout),
    /// from accept) still applies: unanswered by then, the client gets
    /// `503` and [`Handler::rejected`] is called. A waiting connection
    /// counts against
    /// [`Config::max_pending_handshakes`](super::Config::max_pending_handshakes).
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use wsmio::{Config, ConnId, Ctx, Handle, Handler, HttpRequest, Message, Server, Upgrade};
    ///
    /// struct App {
    ///     auth: mpsc::Sender<(ConnId, String)>, // to the thread that checks tokens
    /// }
    ///
    /// impl Handler for App {
    ///     type Conn = ();
    ///     fn upgrade(&mut self, _ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, req: &HttpRequest) -> Upgrade {
    ///         let token = req.query_param("token").unwrap_or_default().into_owned();
    ///         let _ = self.auth.send((id, token));
    ///         Upgrade::defer()
    ///     }
    ///     fn message(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, msg: Message<'_>) {
    ///         let _ = ctx.send(id, msg);
    ///     }
    /// }
    ///
    /// let server = Server::bind("127.0.0.1:9001".parse().unwrap(), Config::default())?;
    /// let handle: Handle = server.handle();
    /// let (tx, rx) = mpsc::channel::<(ConnId, String)>();
    /// std::thread::spawn(move || {
    ///     for (id, token) in rx {
    ///         let answer = if token == "let-me-in" {
    ///             Upgrade::accept()
    ///         } else {
    ///             Upgrade::reject(401, "bad token")
    ///         };
    ///         let _ = handle.answer_upgrade(id, answer);
    ///     }
    /// });
    /// server.run(App { auth: tx })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn defer() -> Self {
        Upgrade::Defer
    }

    /// Add a header to the `101` response (or to the refusal). Nothing
    /// for [`Upgrade::Defer`]: add it to the answer instead.
    #[must_use = "with_header returns the changed answer"]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Upgrade::Accept { headers, .. } => headers.push((name.into(), value.into())),
            Upgrade::Reject(r) => r.headers.push((name.into(), value.into())),
            Upgrade::Defer => {}
        }
        self
    }
}

/// A plain HTTP response (for refused upgrades and non-upgrade requests,
/// [`Handler::http`]). The connection closes after it is sent. The status
/// line carries the status's standard reason phrase (RFC 9110 §15) unless
/// [`HttpResponse::with_reason`] sets another.
///
/// ```
/// use wsmio::HttpResponse;
///
/// let ok = HttpResponse::new(200, "application/json", br#"{"up":true}"#.to_vec())
///     .with_header("Cache-Control", "no-store");
/// assert!(ok.to_bytes().starts_with(b"HTTP/1.1 200 OK\r\n"));
///
/// let legal = HttpResponse::text(451, "blocked by court order");
/// assert!(legal.to_bytes().starts_with(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n"));
///
/// let mine = HttpResponse::text(599, "try the other door").with_reason("Network Connect Timeout");
/// assert!(mine.to_bytes().starts_with(b"HTTP/1.1 599 Network Connect Timeout\r\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// Status code (100–999; anything else goes out as `500`).
    pub status: u16,
    /// The reason phrase; `None`: the status's standard one
    /// ([`status_text`](crate::proto::handshake::status_text)).
    pub reason: Option<String>,
    /// `Content-Type` value.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response whose body is `text` and a newline.
    pub fn text(status: u16, text: &str) -> Self {
        HttpResponse::new(
            status,
            "text/plain; charset=utf-8",
            format!("{text}\n").into_bytes(),
        )
    }

    /// A response with any content type.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            reason: None,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
        }
    }

    /// Add a header.
    #[must_use = "with_header returns the changed response"]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Send `phrase` as the reason phrase instead of the standard one (RFC
    /// 9112 §4: characters other than tab, space and visible ones — CR and
    /// LF above all — go out as spaces).
    #[must_use = "with_reason returns the changed response"]
    pub fn with_reason(mut self, phrase: &str) -> Self {
        self.reason = Some(phrase.into());
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reason = self.reason.as_deref().unwrap_or(status_text(self.status));
        http_response_with_reason(self.status, reason, &self.content_type, &self.body, &h)
    }
}

/// Why a connection ended, reported by [`Handler::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// The close code: the peer's (1005 if its frame had none) when it
    /// closed first, ours when we did, 1006 when no close frame was exchanged.
    pub code: CloseCode,
    /// Both close frames were exchanged.
    pub clean: bool,
    /// The peer started the close.
    pub by_peer: bool,
}

/// The application side of a server: the loop calls it for every event.
/// Every method but [`Handler::message`] has a default.
///
/// All methods run on the loop thread; they must not block (hand slow work
/// to a thread, and come back with [`Handle::call_handler`],
/// [`Handle::wake`] or [`Handle::answer_upgrade`]). The [`Ctx`] sends,
/// closes, broadcasts, sets timers and reaches each connection's state.
///
/// # Per-connection state
///
/// [`Handler::Conn`] is the application's state for one connection,
/// reached with [`Ctx::conn`]: made with `Default` when the connection is
/// accepted (fill it in [`Handler::upgrade`] or [`Handler::open`]),
/// dropped after [`Handler::close`]. The loop keeps it in a slot per
/// connection, so there is no `HashMap<ConnId, _>` to keep in step with
/// `open` and `close`, and a stale id never reaches the next connection's
/// state. A handler without any writes `type Conn = ();` (stable Rust has
/// no defaults for associated types) and pays nothing for it.
///
/// Why this shape: the state's type is checked by the compiler where the
/// handler names it (`Ctx<'_, Self::Conn>`), it costs no allocation per
/// connection beyond its own size, and the message path is untouched — the
/// loop itself never looks at it (the slots sit beside the loop's
/// connections, behind one type check per [`Ctx::conn`]). Passing the
/// state as an argument of every callback would change every signature
/// for handlers that have none, and a map in the handler costs a hash per
/// message.
///
/// ```
/// use wsmio::{CloseInfo, ConnId, Ctx, Handler, HttpRequest, Message, Upgrade};
///
/// #[derive(Default)]
/// struct User {
///     name: String,
/// }
///
/// struct Greeter;
///
/// impl Handler for Greeter {
///     type Conn = User;
///
///     fn upgrade(&mut self, ctx: &mut Ctx<'_, User>, id: ConnId, req: &HttpRequest) -> Upgrade {
///         match req.query_param("name") {
///             Some(name) if !name.is_empty() => {
///                 ctx.conn(id).unwrap().name = name.into_owned();
///                 Upgrade::accept()
///             }
///             _ => Upgrade::reject(400, "?name= missing"),
///         }
///     }
///
///     fn message(&mut self, ctx: &mut Ctx<'_, User>, id: ConnId, msg: Message<'_>) {
///         let Some(user) = ctx.conn(id) else { return };
///         let reply = format!("{} said {} bytes", user.name, msg.as_bytes().len());
///         let _ = ctx.send_text(id, &reply);
///     }
///
///     fn close(&mut self, ctx: &mut Ctx<'_, User>, id: ConnId, _info: CloseInfo) {
///         let name = std::mem::take(&mut ctx.conn(id).unwrap().name);
///         println!("{name} left");
///     }
/// }
/// ```
///
/// [`Handle::call_handler`]: super::Handle::call_handler
/// [`Handle::wake`]: super::Handle::wake
/// [`Handle::answer_upgrade`]: super::Handle::answer_upgrade
pub trait Handler: 'static {
    /// The application's state for one connection (`()` for none): see
    /// [Per-connection state](Handler#per-connection-state). `Send`,
    /// because the [`Server`](super::Server) that keeps it may be moved to
    /// the thread that runs it.
    type Conn: Default + Send + 'static;

    /// A WebSocket upgrade request passed RFC 6455 validation: accept it
    /// (optionally with a subprotocol), refuse it (auth, Origin, ...), or
    /// answer later ([`Upgrade::defer`]). Default: accept.
    fn upgrade(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, req: &HttpRequest) -> Upgrade {
        let _ = (ctx, id, req);
        Upgrade::accept()
    }

    /// A plain HTTP request (no upgrade). Default: `426 Upgrade Required`.
    /// Answer a `HEAD` request as you would the `GET`: the loop sends the
    /// response's head alone, `Content-Length` still the body's length
    /// (RFC 9110 §9.3.2).
    fn http(
        &mut self,
        ctx: &mut Ctx<'_, Self::Conn>,
        id: ConnId,
        req: &HttpRequest,
    ) -> HttpResponse {
        let _ = (ctx, id, req);
        HttpResponse::text(426, "this endpoint speaks WebSocket only")
            .with_header("Upgrade", "websocket")
    }

    /// A request was refused before any handler decision: RFC 6455
    /// handshake rules (`400`, `405`, `426`, `431`), the handshake timeout
    /// or a handshake dropped as the oldest past
    /// [`Config::max_pending_handshakes`](super::Config::max_pending_handshakes)
    /// (`408`; `503` for a deferred upgrade still unanswered), the
    /// connection limit or the memory budget (`503`), or an unoffered
    /// subprotocol (`500`). For metrics and logs; the response
    /// is already on its way.
    fn rejected(&mut self, ctx: &mut Ctx<'_, Self::Conn>, status: u16, reason: &'static str) {
        let _ = (ctx, status, reason);
    }

    /// A client connection made with [`Ctx::connect`] did not open: the
    /// host did not resolve, no address took the connection, the connect
    /// or handshake timed out, TLS failed, the server refused the upgrade
    /// ([`ConnectError::Refused`] carries its status, headers and bounded
    /// body) or answered it against RFC 6455 §4.1, or the loop closed it
    /// first. Its id is dead once this returns ([`Ctx::conn`] still
    /// reaches its state here). Not called for a connection that opened:
    /// that one gets [`Handler::open`], and later [`Handler::close`].
    /// Default: nothing.
    ///
    /// [`ConnectError::Refused`]: super::ConnectError::Refused
    fn connect_failed(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, error: ConnectError) {
        let _ = (ctx, id, error);
    }

    /// The connection is upgraded and open (a client connection: the
    /// server's `101` is checked).
    fn open(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A complete message ([`crate::proto::DeliveryMode::Messages`]). The payload
    /// borrows the loop's buffer: copy what must outlive the call.
    fn message(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, msg: Message<'_>);

    /// Every message of one read from `id` has been handled; its replies
    /// are written next. The place to send what was batched over those
    /// messages (default: nothing).
    fn read_done(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A message chunk ([`crate::proto::DeliveryMode::Chunks`]).
    fn chunk(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, chunk: Chunk<'_>) {
        let _ = (ctx, id, chunk);
    }

    /// A pong arrived (the loop's heartbeat pongs included).
    fn pong(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, payload: &[u8]) {
        let _ = (ctx, id, payload);
    }

    /// The queue fell below the backpressure limit after a send reported
    /// [`super::SendStatus::Backpressured`].
    fn drain(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// Called on the loop thread after [`super::Handle::wake`] (from any
    /// thread) or [`Ctx::wake`] (from a callback): work that another
    /// thread prepared for the handler is waiting. Default: nothing.
    fn wake(&mut self, ctx: &mut Ctx<'_, Self::Conn>) {
        let _ = ctx;
    }

    /// A timer set with [`Ctx::set_timer`] is due: `token` is the one it
    /// was set with. Runs on the loop thread after the connections'
    /// timers. Default: nothing.
    fn timer(&mut self, ctx: &mut Ctx<'_, Self::Conn>, token: u64) {
        let _ = (ctx, token);
    }

    /// An upgraded connection is gone; its id is dead once this returns
    /// ([`Ctx::conn`] still reaches its state here, for the last time).
    fn close(&mut self, ctx: &mut Ctx<'_, Self::Conn>, id: ConnId, info: CloseInfo) {
        let _ = (ctx, id, info);
    }
}
