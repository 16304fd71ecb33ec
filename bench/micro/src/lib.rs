//! Only the benches matter; see benches/hot_paths.rs.
