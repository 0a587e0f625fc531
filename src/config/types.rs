//! The validated configuration: what the rest of the proxy reads.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::server::Addr;
use crate::hashing::hash::HashKind;
use crate::hashing::ketama::Distribution;
use crate::protocol::local::User;
use crate::protocol::resp::Limits;
use crate::protocol::wire::Wire;

/// How a cluster's keys are placed on its servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheType {
    /// Plain Redis servers, keys sharded by the cluster's hash and distribution.
    Redis,
    /// A Redis Cluster: `servers` are seeds, slots come from the cluster itself.
    RedisCluster,
}

/// Where a cluster listens: a TCP address, or a unix socket path with the
/// file mode to give it (`/path 0666`, as nutcracker writes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix { path: PathBuf, mode: Option<u32> },
}

impl Listen {
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Listen::Tcp(a) => Some(*a),
            Listen::Unix { .. } => None,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

impl CacheType {
    /// The protocol the cluster speaks.
    pub fn wire(self) -> Wire {
        match self {
            CacheType::Redis | CacheType::RedisCluster => Wire::Redis,
        }
    }
}

/// One backend as configured: `host:port[:weight] [alias]`, or
/// `/path/to.sock[:weight] [alias]` (see `config::server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The address resolved at load time, so workers never block on DNS.
    pub addr: Addr,
    /// `host:port` (or the path) as written.
    pub host_port: String,
    pub weight: u32,
    /// The name hashed onto the continuum, and shown by stats: the alias if
    /// given, else `host:port` (twemproxy drops the port when it is 11211)
    /// or `/path:`.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub name: String,
    pub listen_addr: Listen,
    pub cache_type: CacheType,
    pub servers: Vec<ServerSpec>,
    pub thread: usize,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub ping_fail_limit: u32,
    pub ping_interval: Duration,
    pub hash_tag: Option<[u8; 2]>,
    pub hash: HashKind,
    pub distribution: Distribution,
    pub server_connections: usize,
    pub fetch: Duration,
    pub read_from_slave: bool,
    /// Sent as AUTH on every new backend connection.
    pub backend_password: Option<String>,
    pub backend_username: Option<String>,
    /// Sent as SELECT on every new backend connection when not 0.
    pub backend_db: u32,
    /// Clients must AUTH with this password (or one of `users`) first.
    pub password: Option<String>,
    pub backlog: u32,
    /// Connect every worker to every server at start, not on first use.
    pub preconnect: bool,
    pub tcpkeepalive: bool,
    /// Clients past this many (per cluster) get an error and are closed. 0 = no limit.
    pub max_clients: usize,
    /// More users for `AUTH username password`, besides `password` (user "default").
    pub users: Vec<User>,
    /// Request limits, checked before anything is buffered for a frame.
    pub limits: Limits,
    /// Unsent reply bytes past which a client is disconnected. 0 = no limit.
    pub client_output_limit: usize,
    /// Backend connections a worker may open for clients of their own
    /// (blocking commands, transactions), in use and pooled together.
    pub max_dedicated_connections: usize,
    /// Requests slower than this (µs) enter the slow log; `None` = off.
    pub slowlog_log_slower_than: Option<u64>,
    pub slowlog_max_len: usize,
}

/// The stats port: twemproxy's JSON document on each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsConfig {
    pub listen_addr: SocketAddr,
    pub interval: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub clusters: Vec<ClusterConfig>,
    /// Off unless configured (or given with -s).
    pub stats: Option<StatsConfig>,
}

/// Why a configuration was refused. `Display` is the message shown to the operator.
#[derive(Debug)]
pub enum ConfigError {
    Io {
        path: PathBuf,
        err: std::io::Error,
    },
    Syntax {
        path: PathBuf,
        msg: String,
    },
    Invalid {
        path: PathBuf,
        cluster: String,
        key: &'static str,
        msg: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, err } => write!(f, "{}: cannot read: {err}", path.display()),
            ConfigError::Syntax { path, msg } => write!(f, "{}: {msg}", path.display()),
            ConfigError::Invalid {
                path,
                cluster,
                key,
                msg,
            } => {
                write!(f, "{}: cluster '{cluster}': {key}: {msg}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}
