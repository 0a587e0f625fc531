//! The configuration as written: serde structs for the TOML file (and, via
//! `nutcracker.rs`, twemproxy's pools), with every default in one place.

use serde::Deserialize;

use crate::protocol::local::User;
use crate::protocol::resp::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) clusters: Vec<toml::Value>,
    #[serde(default)]
    pub(crate) stats: Option<RawStats>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStats {
    pub(crate) listen_addr: String,
    #[serde(default = "default_stats_interval")]
    pub(crate) interval: u64,
}

fn default_stats_interval() -> u64 {
    30_000
}

/// One cluster as written (TOML), or as converted from a nutcracker pool.
/// A key left out takes its value from `Default` below, the one place the
/// defaults are stated; validation refuses a missing name, address or server list.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) name: String,
    pub(crate) listen_addr: String,
    pub(crate) cache_type: String,
    pub(crate) servers: Vec<String>,
    pub(crate) thread: usize,
    pub(crate) read_timeout: u64,
    pub(crate) write_timeout: u64,
    pub(crate) ping_fail_limit: u32,
    pub(crate) ping_interval: u64,
    pub(crate) hash_tag: Option<String>,
    pub(crate) hash: String,
    pub(crate) distribution: String,
    pub(crate) server_connections: usize,
    pub(crate) fetch: u64,
    pub(crate) read_from_slave: bool,
    pub(crate) backend_password: Option<String>,
    pub(crate) backend_username: Option<String>,
    pub(crate) backend_db: u32,
    pub(crate) password: Option<String>,
    pub(crate) backlog: u32,
    pub(crate) preconnect: bool,
    pub(crate) tcpkeepalive: bool,
    pub(crate) max_clients: usize,
    pub(crate) users: Vec<User>,
    pub(crate) max_bulk_len: usize,
    pub(crate) max_multibulk_len: usize,
    pub(crate) max_inline_len: usize,
    pub(crate) client_output_limit: usize,
    pub(crate) max_dedicated_connections: usize,
    pub(crate) slowlog_log_slower_than: i64,
    pub(crate) slowlog_max_len: usize,
}

impl Default for RawCluster {
    fn default() -> RawCluster {
        RawCluster {
            name: String::new(),
            listen_addr: String::new(),
            cache_type: "redis".into(),
            servers: Vec::new(),
            thread: 1,
            read_timeout: 1000,
            write_timeout: 1000,
            ping_fail_limit: 3,
            ping_interval: 1000,
            hash_tag: None,
            hash: "fnv1a_64".into(),
            distribution: "ketama".into(),
            server_connections: 1,
            fetch: 600,
            read_from_slave: false,
            backend_password: None,
            backend_username: None,
            backend_db: 0,
            password: None,
            backlog: 1024,
            preconnect: false,
            tcpkeepalive: false,
            max_clients: 0,
            users: Vec::new(),
            max_bulk_len: Limits::default().max_bulk,
            max_multibulk_len: Limits::default().max_args,
            max_inline_len: Limits::default().max_inline,
            client_output_limit: 1024 * 1024 * 1024,
            max_dedicated_connections: 64,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
        }
    }
}
