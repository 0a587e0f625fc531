//! aster: a Redis proxy. twemproxy-compatible sharding over plain Redis
//! servers, and a front for Redis Cluster that cluster-unaware clients can use.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; the library
//! form exists so benchmarks and fuzz targets can reach the parsers, the
//! command table and the hashes.

#![deny(rust_2018_idioms, unused_imports)]

pub mod admin;
pub mod backend;
pub mod client;
pub mod clusters;
pub mod command;
pub mod config;
pub mod dispatch;
pub mod hash;
pub mod ketama;
pub mod local;
pub mod metrics;
pub mod multikey;
pub mod netio;
pub mod nutcracker;
pub mod proxy;
pub mod resp;
pub mod route;
pub mod rpc;
pub mod slots;
pub mod slowlog;
pub mod stats;
pub mod supervisor;
pub mod upstream;
pub mod worker;

#[cfg(test)]
mod proptests;
