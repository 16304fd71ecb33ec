//! The sans-IO RFC 6455 core: no sockets, no clock, no threads.
//!
//! Reading order for learners:
//! 1. [`frame`] — the frame header (§5.2) and every rule checked on it.
//! 2. [`mask`] — client-to-server masking (§5.3).
//! 3. [`utf8`] — incremental UTF-8 validation for text (§8.1).
//! 4. [`close`] — close codes and the close handshake state (§5.5.1, §7).
//! 5. [`receiver`] — the streaming parser, one forward path from header to
//!    message: fragmentation (§5.4), control frames (§5.5), limits.
//! 6. [`sender`] — framing outgoing data, control replies, close.
//! 7. [`handshake`] — the opening handshake (§4); [`query`] — the request
//!    target's query string, decoded as browsers encode it.
//! 8. [`connection`] — the protocol core: receiver and sender joined, with
//!    the automatic replies, under both front-ends (the buffered
//!    [`Connection`] and the reactor).
//! 9. [`extension`] — `Sec-WebSocket-Extensions` and the permessage-deflate
//!    negotiation (RFC 7692 §5, §7.1); `deflate` (feature `deflate`) — the
//!    per-message compressor and decompressor (RFC 7692 §6, §7.2).
//!
//! Every MUST of RFC 6455 that applies after the handshake is enforced in
//! `frame::check_first_bytes`, `frame::decode_header`, `Receiver::start_frame`,
//! `close::parse_close_payload`, `Sender` and, for the automatic replies,
//! `connection::receive`; each carries a `// RFC 6455 §` comment at the line
//! that enforces it.

pub mod close;
pub mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod mask;
pub mod query;
pub mod receiver;
pub mod sender;
pub mod utf8;

pub use close::{CloseCode, CloseState};
pub use connection::{Connection, Event, Sink};
pub use error::Error;
pub use frame::{OpCode, Role};
#[allow(deprecated)]
pub use limits::Delivery;
pub use limits::{DeliveryMode, Limits};
pub use receiver::{Chunk, Message, ReceiveHandler, Receiver};
pub use sender::{ControlFrame, Sender};
