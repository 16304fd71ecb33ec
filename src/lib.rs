//! wsmio: a WebSocket stack written from RFC 6455 up.
//!
//! Three layers, each usable on its own, dependencies pointing down only:
//!
//! - [`proto`]: the sans-IO protocol core — handshake, streaming frame
//!   parser, masking, fragmentation, UTF-8 validation, ping/pong, the close
//!   handshake, limits, permessage-deflate. Bytes in, events and bytes out;
//!   no sockets, no clock.
//! - [`reactor`]: a single-threaded `mio` event loop serving many
//!   connections with that core ([`Server`], [`Handler`], [`Ctx`],
//!   [`Handle`]), and a blocking client ([`BlockingClient`]).
//! - `pubsub` (feature `hub`): the hub — topics, encode-once fan-out,
//!   presence, history with resume, acks, auth, metrics — and its client.
//!
//! # Embedding the server
//!
//! Implement [`Handler`] and run it on a [`Server`]. Everything the
//! application does in a callback goes through the [`Ctx`]; other threads
//! reach the loop with a [`Handle`].
//!
//! ```no_run
//! use wsmio::{Config, ConnId, Ctx, Handler, HttpRequest, Message, Server, Upgrade};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Conn = (); // per-connection state: none here (see `Handler::Conn`)
//!
//!     // Optional: pick a subprotocol, check auth, refuse with a status, or answer later.
//!     fn upgrade(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, req: &HttpRequest) -> Upgrade {
//!         if req.protocols().any(|p| p == "echo") { Upgrade::accept_protocol("echo") } else { Upgrade::accept() }
//!     }
//!     fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
//!         let _ = ctx.send(id, msg); // queued; written once per loop turn
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let server = Server::bind("127.0.0.1:9001".parse().unwrap(), Config::default())?;
//!     let handle = server.handle(); // Send + Clone: send, broadcast, shutdown from other threads
//!     std::thread::spawn(move || {
//!         let _ = std::io::stdin().read_line(&mut String::new()); // Enter: a graceful shutdown
//!         handle.shutdown()
//!     });
//!     server.run(Echo)?;
//!     Ok(())
//! }
//! ```
//!
//! From there:
//!
//! - **Per-connection state**: `type Conn = MyState;` and [`Ctx::conn`] —
//!   no map keyed by [`ConnId`] to keep in step (see [`Handler`]).
//! - **Asynchronous auth**: [`Handler::upgrade`] returns
//!   [`Upgrade::defer`]; answer later with [`Ctx::answer_upgrade`] or
//!   [`Handle::answer_upgrade`].
//! - **Fan-out**: frame once with [`Frame`], send it to many
//!   ([`Ctx::send_frame`], [`Ctx::broadcast`]); [`SendStatus`] says what
//!   became of each send, [`Handler::drain`] when a slow peer caught up.
//! - **Time**: [`Ctx::set_timer`] and [`Handler::timer`]; heartbeats,
//!   handshake and close timeouts are the loop's ([`Config`]). Tests drive
//!   the loop's clock with a [`ManualClock`].
//! - **Other threads**: [`Handle::send`], [`Handle::broadcast`],
//!   [`Handle::call_handler`] (the handler itself), [`Handle::wake`],
//!   [`Handle::shutdown`].
//! - **HTTP next to WebSocket**: [`Handler::http`] answers plain requests
//!   with an [`HttpResponse`]; [`HttpRequest::query_param`] decodes query
//!   parameters as browsers encode them.
//! - **Limits**: every one is a [`Config`] field with a `with_*` setter
//!   and a documented default.
//!
//! # The sans-IO core on its own
//!
//! ```
//! use wsmio::proto::{Connection, Event, Limits, Role};
//! let mut conn = Connection::new(Role::Server, Limits::default());
//! let mut bytes = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]; // RFC 6455 §5.7
//! conn.receive(&mut bytes, |ev| if let Event::Message(m) = ev { println!("{m:?}") }).unwrap();
//! // conn.output() holds whatever must be written back (pongs, close replies).
//! ```
//!
//! [`proto::Connection`] is the buffered front-end of the protocol core
//! (`proto::connection::receive`), which the reactor runs too; in the
//! client role it masks every frame, and
//! [`proto::handshake::ClientHandshake`] writes the upgrade request and
//! checks the answer. [`proto::Receiver`] and [`proto::Sender`] are the
//! two halves under it.
//!
//! # Cargo features
//!
//! The default build is the lean core (`proto` + `reactor`). `tls` adds
//! `wss://` and `https://` through rustls (the `tls` module, `Config::with_tls`);
//! `deflate` permessage-deflate (RFC 7692); `hub` the pub/sub hub,
//! `redis` its cluster engine; `cli` the `wsmio` binary; `full` all of
//! them.
//!
//! # Reading the code
//!
//! `docs/ARCHITECTURE.md` gives the layering and a reading order through
//! the RFC's rules: [`proto::frame`], [`proto::mask`], [`proto::utf8`],
//! [`proto::close`], [`proto::receiver`], [`proto::sender`],
//! [`proto::handshake`], [`proto::connection`], then the reactor's rooms
//! ([`reactor`] lists them).
#![deny(missing_docs)]

pub mod proto;
#[cfg(feature = "hub")]
pub mod pubsub;
pub mod reactor;

pub use proto::handshake::HttpRequest;
#[allow(deprecated)]
pub use proto::handshake::Request;
pub use proto::{Chunk, CloseCode, DeliveryMode, Message};
/// TLS for servers (`wss://`, `https://`): rustls configurations from PEM
/// files or your own, with the crypto provider of your choice.
#[cfg(feature = "tls")]
pub use reactor::tls;
#[cfg(feature = "deflate")]
pub use reactor::DeflateSettings;
pub use reactor::{
    BlockingClient, ClientOptions, ClientRequest, Clock, CloseInfo, Config, ConnId, ConnIdMap,
    ConnectError, Ctx, Frame, FullQueuePolicy, Handle, HandleError, Handler, HttpResponse,
    Incoming, ManualClock, SendError, SendStatus, Server, Stats, TimerError, TimerId, Upgrade,
    UrlError, WsUrl,
};
