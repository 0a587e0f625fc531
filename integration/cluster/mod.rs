//! Cluster mode (`cache_type = "redis_cluster"`) against a real six-node
//! Redis Cluster (three masters, one replica each): routing by slot, split
//! multi-key commands, CROSSSLOT, MOVED and ASK, failovers, reads from
//! replicas, start-up without a reachable seed, and load.
//!
//! | file           | tests |
//! |----------------|-------|
//! | `routing.rs`   | routing by slot, split multi-key commands, CROSSSLOT |
//! | `redirects.rs` | MOVED and ASK, failovers (manual, a killed master) |
//! | `replicas.rs`  | reads from replicas (`read_from_slave`) |
//! | `startup.rs`   | start-up with and without a reachable seed |
//! | `load.rs`      | load: redis-benchmark, blocking commands that time out |

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, Proxy, RedisServer, Reply, TempDir, args, free_port, poll_until, run_proxy_bin,
    wait_timeout,
};
use crate::harness::{CmdStat, RedisCluster, Role, key_slot, proxy_conf_for};

mod load;
mod redirects;
mod replicas;
mod routing;
mod startup;

fn start(extra: &[(&str, &str)]) -> (RedisCluster, Proxy) {
    let rc = RedisCluster::start(3, 1);
    let proxy = Proxy::start(&rc.proxy_conf(extra).to_toml());
    (rc, proxy)
}
