//! The pub/sub hub on top of the reactor: topics, encode-once fan-out,
//! presence, history with resume, acks, auth, Origin and Host checks, rate limits,
//! metrics. Its wire protocol is in `docs/PROTOCOL.md`.
//!
//! Reading order: [`protocol`] (the messages), [`hub`] (the handler),
//! [`topics`], [`topic`], [`history`], `missed` and [`batch`], then
//! [`auth`], [`browser`], [`ratelimit`], [`metrics`].

pub mod auth;
pub mod batch;
pub mod browser;
pub mod history;
pub mod hub;
pub mod metrics;
mod missed;
pub mod protocol;
pub mod ratelimit;
pub mod topic;
pub mod topics;

pub use auth::Identity;
pub use browser::{HostPolicy, OriginPolicy};
pub use hub::{Hub, HubConfig};
