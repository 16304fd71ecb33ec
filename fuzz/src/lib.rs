//! Support code for the fuzz targets (and `tests/proto_props.rs`).

pub mod reference;
