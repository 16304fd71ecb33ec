//! The embedding API: what the application implements ([`Handler`]) and the
//! small types it exchanges with the loop.

use super::core::Ctx;
use super::id::ConnId;
use crate::proto::handshake::{http_response, Request};
use crate::proto::{Chunk, CloseCode, Message};

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// Refuse with `status` and a one-line `reason` as a plain-text body.
    pub fn reject(status: u16, reason: &str) -> Self {
        Upgrade::Reject(HttpResponse::text(status, reason))
    }
}

/// A plain HTTP response (for refused upgrades and non-upgrade requests).
/// The connection closes after it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
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
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: format!("{text}\n").into_bytes(),
        }
    }

    /// A response with any content type.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http_response(self.status, &self.content_type, &self.body, &h)
    }
}

/// Why a connection ended, reported by [`Handler::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the peer's (1005 if its frame had none) when it
    /// closed first, ours when we did, 1006 when no close frame was exchanged.
    pub code: CloseCode,
    /// Both close frames were exchanged.
    pub clean: bool,
    /// The peer started the close.
    pub by_peer: bool,
}

/// The application side of a server. Every method but
/// [`Handler::message`] has a default.
///
/// All methods run on the loop thread; they must not block. Use the
/// [`Ctx`] to send, close, or broadcast.
pub trait Handler {
    /// A WebSocket upgrade request passed RFC 6455 validation: accept it
    /// (optionally with a subprotocol) or refuse it (auth, Origin, ...).
    fn upgrade(&mut self, ctx: &mut Ctx<'_>, id: ConnId, req: &Request) -> Upgrade {
        let _ = (ctx, id, req);
        Upgrade::accept()
    }

    /// A plain HTTP request (no upgrade). Default: `426 Upgrade Required`.
    /// Answer a `HEAD` request as you would the `GET`: the loop sends the
    /// response's head alone, `Content-Length` still the body's length
    /// (RFC 9110 §9.3.2).
    fn http(&mut self, ctx: &mut Ctx<'_>, id: ConnId, req: &Request) -> HttpResponse {
        let _ = (ctx, id, req);
        HttpResponse::text(426, "this endpoint speaks WebSocket only")
            .with_header("Upgrade", "websocket")
    }

    /// A request was refused before any handler decision: RFC 6455
    /// handshake rules (`400`, `405`, `426`, `431`), the handshake timeout
    /// or a handshake dropped as the oldest past
    /// [`Config::max_pending_handshakes`](super::Config::max_pending_handshakes)
    /// (`408`), the connection limit or the memory budget (`503`), or an
    /// unoffered subprotocol (`500`). For metrics and logs; the response
    /// is already on its way.
    fn rejected(&mut self, ctx: &mut Ctx<'_>, status: u16, reason: &'static str) {
        let _ = (ctx, status, reason);
    }

    /// The connection is upgraded and open.
    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A complete message ([`crate::proto::Delivery::Messages`]). The payload
    /// borrows the loop's buffer: copy what must outlive the call.
    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>);

    /// Every message of one read from `id` has been handled; its replies
    /// are written next. The place to send what was batched over those
    /// messages (default: nothing).
    fn read_done(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A message chunk ([`crate::proto::Delivery::Chunks`]).
    fn chunk(&mut self, ctx: &mut Ctx<'_>, id: ConnId, chunk: Chunk<'_>) {
        let _ = (ctx, id, chunk);
    }

    /// A pong arrived (the loop's heartbeat pongs included).
    fn pong(&mut self, ctx: &mut Ctx<'_>, id: ConnId, payload: &[u8]) {
        let _ = (ctx, id, payload);
    }

    /// The queue fell below the backpressure limit after a send reported
    /// [`super::SendStatus::Backpressured`].
    fn drain(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// Called on the loop thread after [`super::Handle::wake`] (from any
    /// thread) or [`Ctx::wake`] (from a callback): work that another
    /// thread prepared for the handler is waiting. Default: nothing.
    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A timer set with [`Ctx::set_timer`] is due: `token` is the one it
    /// was set with. Runs on the loop thread after the connections'
    /// timers. Default: nothing.
    fn timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        let _ = (ctx, token);
    }

    /// An upgraded connection is gone; its id is dead from now on.
    fn close(&mut self, ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = (ctx, id, info);
    }
}
