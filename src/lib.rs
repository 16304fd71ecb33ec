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

pub use proto::handshake::Request;
pub use proto::{Chunk, CloseCode, Message};
pub use reactor::{
    CloseInfo, Config, ConnId, Ctx, Frame, FullQueuePolicy, Handle, Handler, HttpResponse,
    SendStatus, Server, Upgrade,
};
