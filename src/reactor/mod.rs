//! The `mio` reactor: one thread, one `Poll`, a slab of connections.
//!
//! Reading order: [`Config`] (every limit), [`Handler`] (what an application
//! implements) and [`Frame`] (what goes out), then the loop's rooms, one job
//! each: `server.rs` (the loop), `listen.rs` (the accept queue),
//! `accept.rs`, `read.rs` (input through the protocol core,
//! `proto::connection`), `upgrade.rs` (the handshake), `core.rs` (what a
//! callback can do), `state.rs` (the application's state per
//! connection), `budget.rs` (one memory budget for input), `conn.rs`
//! (one connection and its phase), `timeouts.rs` and `clock.rs` (timer
//! decisions, time as an input), `app_timers.rs` (the application's
//! timers), `flush.rs` (output and the end of a connection),
//! `write_queue.rs` (corked, copy-free output), `timer.rs` and
//! `wake_timer.rs`; the loop's client connections ([`Ctx::connect`]):
//! `client_options.rs` (options and errors, shared with the blocking
//! client `blocking.rs`), `connect.rs` (dial), `resolve.rs` (host names
//! resolved off the loop), `client_handshake.rs` (TLS, the request, the
//! response) and `client_send.rs` (masked sends); with the `deflate`
//! feature, `deflate.rs`
//! (permessage-deflate: settings, negotiation, the loop's compressors, the
//! compressed sends) and
//! `compressed_frame.rs` (a shared frame compressed once for many).
//!
//! Per loop turn: poll; read every readable connection into one shared
//! buffer and run the protocol over it (messages are delivered straight
//! from that buffer); accept a slice of the accept queue; run due timers;
//! then write each connection's queued output once, with one `writev`
//! (`send` when it is one buffer). Sends only queue: the socket is written
//! at those flush points, never inside a send.

mod accept;
mod app_timers;
mod blocking;
mod budget;
mod client_handshake;
mod client_options;
mod client_send;
mod clock;
#[cfg(feature = "deflate")]
mod compressed_frame;
mod config;
mod conn;
mod connect;
mod core;
mod ctx;
#[cfg(feature = "deflate")]
mod deflate;
mod flush;
mod frame;
mod handle;
mod handler;
mod id;
mod listen;
mod read;
mod resolve;
mod server;
mod state;
mod stream;
mod timeouts;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tls")]
pub mod tls_client;
mod upgrade;
mod url;
mod wake;
mod wake_timer;
mod write_queue;

pub use self::core::Stats;
pub use self::ctx::Ctx;
pub use app_timers::{TimerError, TimerId};
pub use blocking::{BlockingClient, Incoming, SendError};
pub use client_options::{ClientOptions, ConnectError};
pub use clock::{Clock, ManualClock};
pub use config::{Config, FullQueuePolicy, MAX_BUSY_POLL};
pub use connect::ClientRequest;
#[cfg(feature = "deflate")]
pub use deflate::DeflateSettings;
pub use frame::{Frame, SendStatus};
pub use handle::{Handle, HandleError};
pub use handler::{CloseInfo, Handler, HttpResponse, Upgrade};
pub use id::{ConnId, ConnIdHasher, ConnIdMap};
pub use server::Server;
pub use url::{UrlError, WsUrl};
