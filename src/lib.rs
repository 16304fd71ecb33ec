//! wsmio: a WebSocket stack written from RFC 6455 up.
//!
//! - [`proto`]: the sans-IO protocol core (bytes in, events and bytes out).
//! - [`reactor`]: a `mio` event loop serving many connections.
//!
//! See `docs/ARCHITECTURE.md` for the layering and a reading order.
#![deny(missing_docs)]

pub mod proto;
