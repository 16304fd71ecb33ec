//! The pub/sub hub on top of the reactor: topics, encode-once fan-out,
//! presence, history with resume, acks, auth, Origin and Host checks, rate limits,
//! metrics. Its wire protocol is in `docs/PROTOCOL.md`.
//!
//! Reading order: [`protocol`] (the messages), [`hub`] (the handler and
//! the map of its rooms: `gate`, `request`, `publish`, `subscribe`,
//! `replay`, `presence`, `fanout`, `events`), `local` (this node's
//! subscriptions), [`engine`] (sequence numbers, history and presence:
//! [`engine::memory`], and `engine::redis` for many nodes), [`history`],
//! `missed` and `batch`, then [`auth`], [`browser`], `ratelimit`,
//! [`metrics`]. The other side of the wire: [`hub_client`], a
//! reconnecting client of the hub, sans-IO.

mod ack;
pub mod auth;
mod batch;
pub mod browser;
mod client;
mod config;
pub mod engine;
mod events;
mod fanout;
mod fanout_queue;
mod gate;
pub mod history;
pub mod hub;
pub mod hub_client;
mod local;
pub mod metrics;
mod missed;
mod pacing;
mod presence;
mod presence_feed;
pub mod protocol;
mod publish;
mod quota;
mod ratelimit;
mod reading;
mod redeliver;
mod replay;
mod request;
mod resume;
mod subscribe;

pub use auth::Identity;
pub use browser::{HostPolicy, OriginPolicy};
pub use config::HubConfig;
pub use engine::{Engine, EngineEvent};
pub use hub::Hub;
