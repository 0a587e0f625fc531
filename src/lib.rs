//! aster: a Redis proxy. twemproxy-compatible sharding over plain Redis
//! servers, and a front for Redis Cluster that cluster-unaware clients can use.
//!
//! The binary (`src/main.rs`) is a thin shell over `control::app::main`. The
//! library exports only what benchmarks and fuzz targets use: the protocol
//! parsers and command table, the hashes and distributions, the slot
//! functions, the socket read/write primitives, the supervisor's reply
//! decoder, and the small generator the integration tests share. `docs/design.md` maps the
//! folders.

#![deny(rust_2018_idioms, unused_imports, dead_code)]

mod config;
pub mod control;
pub mod hashing;
pub mod net;
mod observe;
pub mod protocol;
pub mod rng;
pub mod routing;
mod worker;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;
