//! The Redis engine (in progress).
