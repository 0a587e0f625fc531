//! Reliability and security: malformed and hostile input, memory bounds,
//! backends dying under load, clients leaving mid-pipeline, thousands of
//! clients, authentication (front and back), secrets kept out of the log,
//! listener addresses, and the graceful drain on SIGTERM.
//!
//! Faults already covered in `integration/faults.rs` (a backend that
//! restarts, a stalled backend past `read_timeout`) and the protocol cases
//! of `integration/protocol.rs` are not repeated here.
//!
//! | file           | tests |
//! |----------------|-------|
//! | `bad_input.rs` | bad input |
//! | `memory.rs`    | memory bounds |
//! | `faults.rs`    | faults |
//! | `security.rs`  | security |
//! | `shutdown.rs`  | graceful shutdown |

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, ClusterConf, Proxy, RedisServer, Reply, Rng, Shards, TempDir, config_toml, encode,
    encode_str, fd_count, parse_all, poll_until,
};

mod bad_input;
mod faults;
mod memory;
mod security;
mod shutdown;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A `kB` field of /proc/PID/status (VmRSS, VmSize), in KiB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_mb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS") / 1024
}

/// `calls` of `cmdstat_<cmd>` in a backend's INFO commandstats (0 if absent).
fn backend_calls(c: &mut Client, cmd: &str) -> u64 {
    let r = c.cmd(&["INFO", "commandstats"]);
    let text = match &r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO commandstats on a backend: {other:?}"),
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("cmdstat_{cmd}:calls="))?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Writes raw bytes, ignoring errors: the proxy may close first.
fn send_lossy(c: &Client, bytes: &[u8]) {
    let _ = c.stream().write_all(bytes);
}

/// Sends `bytes` on a fresh connection and checks that the reply is a
/// `-ERR Protocol error...` and that the proxy then closes the connection.
/// Returns the error text.
fn assert_protocol_error(port: u16, bytes: &[u8], what: &str) -> String {
    let mut c = Client::connect(port);
    send_lossy(&c, bytes);
    let text = match c.read_reply() {
        Ok(Reply::Error(e)) => e,
        other => panic!("{what}: expected '-ERR Protocol error...', got {other:?}"),
    };
    assert!(
        text.starts_with("ERR Protocol error"),
        "{what}: reply should start with 'ERR Protocol error': {text:?}"
    );
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "{what}: the connection should be closed after the protocol error"
    );
    text
}
