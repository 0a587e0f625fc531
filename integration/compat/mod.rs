//! Drop-in compatibility with twemproxy: nutcracker.yml, flags, stats port, signals, texts.
//!
//! Every test runs `aster-proxy` on an unmodified nutcracker YAML file, and,
//! where it makes the point, the real `nutcracker` side by side on the same
//! backends (skipped, with a note, when nutcracker is not installed).
//!
//! | file             | tests |
//! |------------------|-------|
//! | `same_yml.rs`    | the same nutcracker.yml, unchanged |
//! | `flags.rs`       | flags |
//! | `stats.rs`       | the stats port |
//! | `signals.rs`     | signals |
//! | `error_texts.rs` | error texts |
//! | `better.rs`      | better than twemproxy |

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{
    Client, Nutcracker, POOL_COUNTERS, Proxy, RedisServer, Reply, SERVER_COUNTERS, START_TIMEOUT,
    TempDir, accepts, args, assert_shape, encode_str, free_port, holder, key_set,
    keys_not_read_back, keys_per_server, num, output_text, pid_alive, pids_with_arg, poll_until,
    read_lossy, redis_cli, run_nutcracker, run_proxy_bin, server_sum, signal, signal_quiet,
    stats_doc, wait_stats,
};

mod better;
mod error_texts;
mod flags;
mod same_yml;
mod signals;
mod stats;

// ---------------------------------------------------------------------------
// Helpers: nutcracker.yml pools
// ---------------------------------------------------------------------------

const POLL: Duration = Duration::from_millis(20);

/// One pool of a nutcracker.yml: `keys` are raw `key: value` lines.
fn pool_yml(name: &str, port: u16, keys: &[&str], servers: &[String]) -> String {
    let mut s = format!("{name}:\n  listen: 127.0.0.1:{port}\n");
    for k in keys {
        s += &format!("  {k}\n");
    }
    s += "  servers:\n";
    for sv in servers {
        s += &format!("   - {sv}\n");
    }
    s
}

/// One pool `name` on a fresh port with `server` as its only server:
/// (port, YAML).
fn single_pool(name: &str, server: &RedisServer) -> (u16, String) {
    let port = free_port();
    let yml = pool_yml(name, port, &["redis: true"], &server_lines(&[server], &[]));
    (port, yml)
}

/// "127.0.0.1:PORT:1 NAME" lines (NAME omitted when empty).
fn server_lines(servers: &[&RedisServer], names: &[&str]) -> Vec<String> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| match names.get(i) {
            Some(n) if !n.is_empty() => format!("{}:1 {n}", s.addr()),
            _ => format!("{}:1", s.addr()),
        })
        .collect()
}

fn nutcracker_available() -> bool {
    let ok = Nutcracker::available();
    if !ok {
        eprintln!("nutcracker not installed: skipping the side-by-side part of this test");
    }
    ok
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `aster-proxy FLAGS...` (a `-t` check) and asserts it exits 0.
fn assert_accepted(flags: &[&str], yml: &str) {
    let out = run_proxy_bin(flags);
    assert_eq!(
        out.status.code(),
        Some(0),
        "aster {flags:?}: {}\n{yml}",
        output_text(&out)
    );
}
