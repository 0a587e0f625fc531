//! Test harness: one module per real component the tests start or talk to.
//!
//! | module       | owns                                                      |
//! |--------------|-----------------------------------------------------------|
//! | `ports`      | free ports, temp dirs, `poll_until`                       |
//! | `process`    | spawning, signals and liveness by pid, `Owned` children   |
//! | `redis`      | `RedisServer` (TCP, or a unix socket too), `redis-cli`, `redis` crate connections |
//! | `cluster`    | `RedisCluster` (a real Redis Cluster), key slots          |
//! | `proxy`      | `Proxy` (TOML or nutcracker YAML), `ClusterConf`, `Shards`|
//! | `nutcracker` | twemproxy, the reference                                  |
//! | `client`     | the RESP client, `Reply`, encode/parse                    |
//! | `placement`  | which server holds a key, a key per server                |
//! | `info`       | INFO text                                                 |
//! | `stats`      | the twemproxy stats document                              |
//! | `metrics`    | the Prometheus text                                       |
//! | `python`     | redis-py scripts                                          |
//! | `rng`        | `aster_proxy::rng::Rng`, seeds from the environment       |
//!
//! Every process started here is owned by a value whose `Drop` stops and
//! reaps it, so a panicking test leaves nothing running. Nothing uses a fixed
//! port: tests run in parallel threads. Everything is re-exported here, so a
//! test file imports from `crate::harness`.

// Each test module uses a different subset of the helpers.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod info;
pub mod metrics;
pub mod nutcracker;
pub mod placement;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod python;
pub mod redis;
pub mod rng;
pub mod stats;

pub use self::client::*;
pub use self::cluster::*;
pub use self::info::*;
pub use self::metrics::*;
pub use self::nutcracker::*;
pub use self::placement::*;
pub use self::ports::*;
pub use self::process::*;
pub use self::proxy::*;
pub use self::python::*;
pub use self::redis::*;
pub use self::rng::*;
pub use self::stats::*;
