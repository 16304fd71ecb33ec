//! wsmio: a WebSocket stack written from RFC 6455 up.
//!
//! - [`proto`]: the sans-IO protocol core (bytes in, events and bytes out).
//! - [`reactor`]: a `mio` event loop serving many connections.
//! - [`pubsub`]: the hub: topics, fan-out, presence, history, auth.
//!
//! See `docs/ARCHITECTURE.md` for the layering and a reading order.
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
    BlockingClient, ClientOptions, Clock, CloseInfo, Config, ConnId, ConnIdMap, ConnectError, Ctx,
    Frame, FullQueuePolicy, Handle, HandleError, Handler, HttpResponse, Incoming, ManualClock,
    SendError, SendStatus, Server, Stats, TimerError, TimerId, Upgrade, UrlError, WsUrl,
};
