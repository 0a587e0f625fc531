//! The configuration file: raw serde structs, then a validated `Config`.
//!
//! Every error names the file, the cluster (when there is one) and the key, so
//! an operator can fix a bad file without reading the code.

pub mod nutcracker;

use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::resp::Limits;
use crate::routing::hash::HashKind;
use crate::routing::ketama::Distribution;

/// How a cluster's keys are placed on its servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheType {
    /// Plain Redis servers, keys sharded by the cluster's hash and distribution.
    Redis,
    /// A Redis Cluster: `servers` are seeds, slots come from the cluster itself.
    RedisCluster,
}

/// One backend as configured: `host:port[:weight] [alias]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The address resolved at load time, so workers never block on DNS.
    pub addr: SocketAddr,
    /// `host:port` as written: what logs and stats show when there is no alias.
    pub host_port: String,
    pub weight: u32,
    /// The name hashed onto the continuum: the alias if given, else `host:port`
    /// (twemproxy drops the port when it is 11211).
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub name: String,
    pub listen_addr: SocketAddr,
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
    /// Requests slower than this (µs) enter the slow log; `None` = off.
    pub slowlog_log_slower_than: Option<u64>,
    pub slowlog_max_len: usize,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for User {
    /// Secrets never reach a log line, even through a Debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "User {{ username: {:?}, password: \"***\" }}",
            self.username
        )
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    clusters: Vec<toml::Value>,
    #[serde(default)]
    stats: Option<RawStats>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    listen_addr: String,
    #[serde(default = "default_stats_interval")]
    interval: u64,
}

fn default_stats_interval() -> u64 {
    30_000
}

/// One cluster as written (TOML), or as converted from a nutcracker pool.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) name: String,
    pub(crate) listen_addr: String,
    #[serde(default = "default_cache_type")]
    pub(crate) cache_type: String,
    pub(crate) servers: Vec<String>,
    #[serde(default = "default_thread")]
    pub(crate) thread: usize,
    #[serde(default = "default_timeout")]
    pub(crate) read_timeout: u64,
    #[serde(default = "default_timeout")]
    pub(crate) write_timeout: u64,
    #[serde(default = "default_ping_fail_limit")]
    pub(crate) ping_fail_limit: u32,
    #[serde(default = "default_ping_interval")]
    pub(crate) ping_interval: u64,
    #[serde(default)]
    pub(crate) hash_tag: Option<String>,
    #[serde(default = "default_hash")]
    pub(crate) hash: String,
    #[serde(default = "default_distribution")]
    pub(crate) distribution: String,
    #[serde(default = "default_server_connections")]
    pub(crate) server_connections: usize,
    #[serde(default = "default_fetch")]
    pub(crate) fetch: u64,
    #[serde(default)]
    pub(crate) read_from_slave: bool,
    #[serde(default)]
    pub(crate) backend_password: Option<String>,
    #[serde(default)]
    pub(crate) backend_username: Option<String>,
    #[serde(default)]
    pub(crate) backend_db: u32,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default = "default_backlog")]
    pub(crate) backlog: u32,
    #[serde(default)]
    pub(crate) preconnect: bool,
    #[serde(default)]
    pub(crate) tcpkeepalive: bool,
    #[serde(default)]
    pub(crate) max_clients: usize,
    #[serde(default)]
    pub(crate) users: Vec<User>,
    #[serde(default = "default_max_bulk_len")]
    pub(crate) max_bulk_len: usize,
    #[serde(default = "default_max_multibulk_len")]
    pub(crate) max_multibulk_len: usize,
    #[serde(default = "default_max_inline_len")]
    pub(crate) max_inline_len: usize,
    #[serde(default = "default_client_output_limit")]
    pub(crate) client_output_limit: usize,
    #[serde(default = "default_slowlog_slower_than")]
    pub(crate) slowlog_log_slower_than: i64,
    #[serde(default = "default_slowlog_max_len")]
    pub(crate) slowlog_max_len: usize,
}

fn default_slowlog_slower_than() -> i64 {
    10_000
}
fn default_slowlog_max_len() -> usize {
    128
}

fn default_max_bulk_len() -> usize {
    Limits::default().max_bulk
}
fn default_max_multibulk_len() -> usize {
    Limits::default().max_args
}
fn default_max_inline_len() -> usize {
    Limits::default().max_inline
}
fn default_client_output_limit() -> usize {
    1024 * 1024 * 1024
}

fn default_backlog() -> u32 {
    1024
}

fn default_cache_type() -> String {
    "redis".into()
}
fn default_thread() -> usize {
    1
}
fn default_timeout() -> u64 {
    1000
}
fn default_ping_fail_limit() -> u32 {
    3
}
fn default_ping_interval() -> u64 {
    1000
}
fn default_hash() -> String {
    "fnv1a_64".into()
}
fn default_distribution() -> String {
    "ketama".into()
}
fn default_server_connections() -> usize {
    1
}
fn default_fetch() -> u64 {
    600
}

/// Upper bounds that keep a typo from starting thousands of threads or sockets.
const MAX_THREADS: usize = 256;
const MAX_SERVER_CONNECTIONS: usize = 64;
/// twemproxy reads every number as a C int: weights, timeouts (ms), backlog
/// and the rest stop at 2^31-1 there, and a deadline that far out still fits
/// an `Instant`.
pub const MAX_INT: u64 = i32::MAX as u64;
/// `fetch` is in seconds: the same span as `MAX_INT` milliseconds.
const MAX_FETCH_SECS: u64 = MAX_INT / 1000;
/// Entries of one cluster's ring (ketama points or modula slots), about
/// 6500 servers at 160 points each: a few MB per route table, built in
/// well under a second, where an unbounded weight could ask for gigabytes.
pub const MAX_RING_POINTS: u64 = 1 << 20;
/// The shortest `ping_interval` (ms) when pings are on: each round pings
/// every server, so a shorter one is a busy loop.
pub const MIN_PING_INTERVAL_MS: u64 = 100;
/// Slow log entries kept: Redis bounds none, but each entry holds a request.
const MAX_SLOWLOG_LEN: usize = 1 << 20;

impl Config {
    /// Loads a TOML file or a twemproxy `nutcracker.yml`, whatever its name:
    /// the content decides (see [`detect`]), the extension only breaks ties.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            path: path.to_owned(),
            err,
        })?;
        let (format, why) = detect(path, &text);
        let parsed = match format {
            Format::Toml => Config::parse(path, &text),
            Format::Nutcracker => crate::config::nutcracker::parse(path, &text),
        };
        // Only a syntax error can come from reading the file the wrong way;
        // say how it was read so a misdetection is obvious.
        parsed.map_err(|e| match e {
            ConfigError::Syntax { path, msg } => ConfigError::Syntax {
                path,
                msg: format!("read as {} ({why}): {msg}", format.name()),
            },
            other => other,
        })
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let syntax = |msg: String| ConfigError::Syntax {
            path: path.to_owned(),
            msg,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        if raw.clusters.is_empty() {
            return Err(syntax("no [[clusters]] defined".into()));
        }
        let mut clusters = Vec::with_capacity(raw.clusters.len());
        for (i, value) in raw.clusters.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("#{}", i + 1));
            let rc: RawCluster = value.try_into().map_err(|e: toml::de::Error| {
                syntax(format!("cluster '{label}': {}", e.message()))
            })?;
            clusters.push(validate(path, rc)?);
        }
        let stats = match raw.stats {
            None => None,
            Some(st) => Some(StatsConfig {
                listen_addr: parse_listen(&st.listen_addr)
                    .map_err(|m| syntax(format!("stats: listen_addr: {m}")))?,
                interval: Duration::from_millis(
                    stats_interval(st.interval)
                        .map_err(|m| syntax(format!("stats: interval: {m}")))?,
                ),
            }),
        };
        Config::assemble(path, clusters, stats)
    }

    /// Checks what spans clusters (unique names and ports) and builds the config.
    pub(crate) fn assemble(
        path: &Path,
        clusters: Vec<ClusterConfig>,
        stats: Option<StatsConfig>,
    ) -> Result<Config, ConfigError> {
        let mut names = HashSet::new();
        let mut listens = HashSet::new();
        for cluster in &clusters {
            let invalid = |key, msg: String| ConfigError::Invalid {
                path: path.to_owned(),
                cluster: cluster.name.clone(),
                key,
                msg,
            };
            if !names.insert(cluster.name.clone()) {
                return Err(invalid("name", "duplicate cluster name".into()));
            }
            if !listens.insert(cluster.listen_addr.port()) {
                return Err(invalid(
                    "listen_addr",
                    format!(
                        "port {} is used by another cluster",
                        cluster.listen_addr.port()
                    ),
                ));
            }
        }
        if clusters.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                msg: "no clusters (pools) defined".into(),
            });
        }
        Ok(Config {
            path: path.to_owned(),
            clusters,
            stats,
        })
    }
}

/// The two configuration formats aster reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    /// twemproxy's YAML: a mapping of pool names to pools.
    Nutcracker,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Nutcracker => "a nutcracker YAML file",
        }
    }
}

/// Which format `text` is in, and why it was chosen. twemproxy reads any
/// file name (`nutcracker.conf`, `/etc/twemproxy/pool`), so the content
/// decides: a TOML table or `key = value` line against a YAML block key
/// (`name:` alone on its line, as every pool starts). The extension
/// only decides when the content says both or neither.
pub fn detect(path: &Path, text: &str) -> (Format, String) {
    let mut toml_line = None;
    let mut yaml_line = None;
    for (n, line) in text.lines().enumerate() {
        // Both formats allow indentation, and neither has the other's
        // shapes at any depth.
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if toml_line.is_none() && (t.starts_with('[') || is_toml_assignment(t)) {
            toml_line = Some((n + 1, t));
        }
        if yaml_line.is_none() && (t == "---" || is_yaml_header(t)) {
            yaml_line = Some((n + 1, t));
        }
    }
    let ext = path.extension().and_then(|e| e.to_str());
    let by_name = match ext {
        Some("yml" | "yaml") => Some(Format::Nutcracker),
        Some("toml") => Some(Format::Toml),
        _ => None,
    };
    let quote = |(n, t): (usize, &str)| {
        let t: String = t.chars().take(40).collect();
        format!("line {n}: '{t}'")
    };
    match (toml_line, yaml_line, by_name) {
        (Some(l), None, _) => (Format::Toml, format!("a TOML table or key at {}", quote(l))),
        (None, Some(l), _) => (
            Format::Nutcracker,
            format!("a YAML pool mapping at {}", quote(l)),
        ),
        (_, _, Some(f)) => (
            f,
            format!(
                "the content is ambiguous and the file name ends in .{}",
                ext.unwrap_or_default()
            ),
        ),
        _ => (
            Format::Toml,
            "neither a TOML [[clusters]] table nor a YAML pool mapping was found; TOML is the default"
                .into(),
        ),
    }
}

/// `key = value` with a bare or quoted key.
fn is_toml_assignment(t: &str) -> bool {
    let Some((key, _)) = t.split_once('=') else {
        return false;
    };
    let key = key.trim();
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\''))
}

/// `name:` alone (maybe with a comment): a YAML mapping key opening a block.
fn is_yaml_header(t: &str) -> bool {
    let t = t.split(" #").next().unwrap_or(t).trim_end();
    t.strip_suffix(':')
        .is_some_and(|key| !key.is_empty() && !key.contains(['=', '[', ' ', '\t']))
}

impl RawCluster {
    /// A cluster with every option at its default.
    pub(crate) fn new(name: String, listen_addr: String, servers: Vec<String>) -> RawCluster {
        RawCluster {
            name,
            listen_addr,
            cache_type: default_cache_type(),
            servers,
            thread: default_thread(),
            read_timeout: default_timeout(),
            write_timeout: default_timeout(),
            ping_fail_limit: default_ping_fail_limit(),
            ping_interval: default_ping_interval(),
            hash_tag: None,
            hash: default_hash(),
            distribution: default_distribution(),
            server_connections: default_server_connections(),
            fetch: default_fetch(),
            read_from_slave: false,
            backend_password: None,
            backend_username: None,
            backend_db: 0,
            password: None,
            backlog: default_backlog(),
            preconnect: false,
            tcpkeepalive: false,
            max_clients: 0,
            users: Vec::new(),
            max_bulk_len: default_max_bulk_len(),
            max_multibulk_len: default_max_multibulk_len(),
            max_inline_len: default_max_inline_len(),
            client_output_limit: default_client_output_limit(),
            slowlog_log_slower_than: default_slowlog_slower_than(),
            slowlog_max_len: default_slowlog_max_len(),
        }
    }
}

pub(crate) fn validate(path: &Path, rc: RawCluster) -> Result<ClusterConfig, ConfigError> {
    let invalid = |key, msg: String| ConfigError::Invalid {
        path: path.to_owned(),
        cluster: rc.name.clone(),
        key,
        msg,
    };
    if rc.name.is_empty() {
        return Err(invalid("name", "must not be empty".into()));
    }
    let listen_addr = parse_listen(&rc.listen_addr).map_err(|m| invalid("listen_addr", m))?;
    let cache_type = match rc.cache_type.as_str() {
        "redis" => CacheType::Redis,
        "redis_cluster" => CacheType::RedisCluster,
        other => {
            return Err(invalid(
                "cache_type",
                format!("'{other}' is not one of: redis, redis_cluster"),
            ));
        }
    };
    if rc.servers.is_empty() {
        return Err(invalid("servers", "at least one server is required".into()));
    }
    let mut servers = Vec::with_capacity(rc.servers.len());
    let mut seen_names = HashSet::new();
    for s in &rc.servers {
        let spec = parse_server(s).map_err(|m| invalid("servers", format!("'{s}': {m}")))?;
        if !seen_names.insert(spec.name.clone()) {
            return Err(invalid(
                "servers",
                format!("'{s}': name '{}' is used twice", spec.name),
            ));
        }
        servers.push(spec);
    }
    if rc.thread == 0 || rc.thread > MAX_THREADS {
        return Err(invalid("thread", format!("must be 1..={MAX_THREADS}")));
    }
    if rc.server_connections == 0 || rc.server_connections > MAX_SERVER_CONNECTIONS {
        return Err(invalid(
            "server_connections",
            format!("must be 1..={MAX_SERVER_CONNECTIONS}"),
        ));
    }
    if cache_type == CacheType::Redis {
        let dist = Distribution::from_name(&rc.distribution).unwrap_or(Distribution::Ketama);
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        match crate::routing::ketama::ring_size(dist, &weights) {
            Some(n) if n <= MAX_RING_POINTS => {}
            size => {
                let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
                let what = match size {
                    Some(n) => format!("{n} ring entries"),
                    None => "a total past 2^32-1".into(),
                };
                return Err(invalid(
                    "servers",
                    format!(
                        "{} server(s) with total weight {total} make {what} for {} distribution; \
                         at most {MAX_RING_POINTS} are allowed (lower the weights)",
                        servers.len(),
                        dist.name()
                    ),
                ));
            }
        }
    }
    for (key, v) in [
        ("read_timeout", rc.read_timeout),
        ("write_timeout", rc.write_timeout),
        ("ping_interval", rc.ping_interval),
        ("backlog", u64::from(rc.backlog)),
        ("ping_fail_limit", u64::from(rc.ping_fail_limit)),
        ("backend_db", u64::from(rc.backend_db)),
    ] {
        if v > MAX_INT {
            return Err(invalid(key, format!("{v} is past the limit of {MAX_INT}")));
        }
    }
    if rc.fetch > MAX_FETCH_SECS {
        return Err(invalid(
            "fetch",
            format!("{} is past the limit of {MAX_FETCH_SECS} seconds", rc.fetch),
        ));
    }
    if rc.slowlog_max_len > MAX_SLOWLOG_LEN {
        return Err(invalid(
            "slowlog_max_len",
            format!(
                "{} is past the limit of {MAX_SLOWLOG_LEN}",
                rc.slowlog_max_len
            ),
        ));
    }
    if rc.ping_fail_limit > 0 && rc.ping_interval < MIN_PING_INTERVAL_MS {
        return Err(invalid(
            "ping_interval",
            format!(
                "{} ms is too short: at least {MIN_PING_INTERVAL_MS} when ping_fail_limit is set",
                rc.ping_interval
            ),
        ));
    }
    let hash_tag = match rc.hash_tag.as_deref() {
        None | Some("") => None,
        Some(t) if t.len() == 2 => {
            let b = t.as_bytes();
            Some([b[0], b[1]])
        }
        Some(t) => {
            return Err(invalid(
                "hash_tag",
                format!("'{t}' must be exactly two characters, like \"{{}}\""),
            ));
        }
    };
    let hash = HashKind::from_name(&rc.hash)
        .ok_or_else(|| invalid("hash", format!("unknown hash '{}'", rc.hash)))?;
    let distribution = Distribution::from_name(&rc.distribution).ok_or_else(|| {
        invalid(
            "distribution",
            format!(
                "'{}' is not one of: ketama, modula, random",
                rc.distribution
            ),
        )
    })?;
    if cache_type == CacheType::RedisCluster && rc.fetch == 0 {
        return Err(invalid("fetch", "must be > 0 seconds".into()));
    }
    if rc.backend_username.is_some() && rc.backend_password.is_none() {
        return Err(invalid(
            "backend_username",
            "needs backend_password as well".into(),
        ));
    }
    if rc.max_bulk_len == 0 || rc.max_multibulk_len == 0 || rc.max_inline_len == 0 {
        return Err(invalid(
            "max_bulk_len",
            "request limits (max_bulk_len, max_multibulk_len, max_inline_len) must be > 0".into(),
        ));
    }
    for u in &rc.users {
        if u.username.is_empty() || u.password.is_empty() {
            return Err(invalid(
                "users",
                "every user needs a username and a password".into(),
            ));
        }
    }
    let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
    Ok(ClusterConfig {
        name: rc.name.clone(),
        listen_addr,
        cache_type,
        servers,
        thread: rc.thread,
        read_timeout: ms(rc.read_timeout),
        write_timeout: ms(rc.write_timeout),
        ping_fail_limit: rc.ping_fail_limit,
        ping_interval: Duration::from_millis(rc.ping_interval.max(1)),
        hash_tag,
        hash,
        distribution,
        server_connections: rc.server_connections,
        fetch: Duration::from_secs(rc.fetch),
        read_from_slave: rc.read_from_slave,
        backend_password: rc.backend_password.clone().filter(|p| !p.is_empty()),
        backend_username: rc.backend_username.clone().filter(|u| !u.is_empty()),
        backend_db: rc.backend_db,
        password: rc.password.clone().filter(|p| !p.is_empty()),
        backlog: rc.backlog.max(1),
        preconnect: rc.preconnect,
        tcpkeepalive: rc.tcpkeepalive,
        max_clients: rc.max_clients,
        users: rc.users.clone(),
        limits: Limits {
            max_bulk: rc.max_bulk_len,
            max_args: rc.max_multibulk_len,
            max_inline: rc.max_inline_len,
        },
        client_output_limit: rc.client_output_limit,
        slowlog_log_slower_than: u64::try_from(rc.slowlog_log_slower_than).ok(),
        slowlog_max_len: rc.slowlog_max_len,
    })
}

/// The stats interval in ms: 1..=MAX_INT, as `-i` takes it.
pub fn stats_interval(ms: u64) -> Result<u64, String> {
    if ms == 0 || ms > MAX_INT {
        return Err(format!("{ms} ms is not in 1..={MAX_INT}"));
    }
    Ok(ms)
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("'{s}' is not a host:port address");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    (host, port)
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Parses `host:port[:weight] [alias]`.
pub fn parse_server(s: &str) -> Result<ServerSpec, String> {
    let mut words = s.split_whitespace();
    let addr_part = words.next().ok_or("empty server entry")?;
    let alias = words.next();
    if words.next().is_some() {
        return Err("expected 'host:port[:weight] [alias]'".into());
    }
    let parts: Vec<&str> = addr_part.split(':').collect();
    let (host, port, weight) = match parts.as_slice() {
        [h, p] => (*h, *p, "1"),
        [h, p, w] => (*h, *p, *w),
        _ => return Err("expected 'host:port[:weight] [alias]'".into()),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port '{port}'"))?;
    let weight: u32 = weight
        .parse()
        .ok()
        .filter(|w| *w > 0 && u64::from(*w) <= MAX_INT)
        .ok_or_else(|| format!("bad weight '{weight}': must be a whole number 1..={MAX_INT}"))?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{host}' resolves to no address"))?;
    let host_port = format!("{host}:{port}");
    let name = match alias {
        Some(a) => a.to_owned(),
        None if port == 11211 => host.to_owned(),
        None => host_port.clone(),
    };
    Ok(ServerSpec {
        addr,
        host_port,
        weight,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("test.toml"), text).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
        [[clusters]]
        name = "a"
        listen_addr = "127.0.0.1:7000"
        servers = ["127.0.0.1:7001:1 r1", "127.0.0.1:7002:2", "localhost:7003"]
        hash_tag = "{}"
    "#;

    #[test]
    fn good_config_with_defaults() {
        let c = parse(GOOD).unwrap();
        let cl = &c.clusters[0];
        assert_eq!(cl.cache_type, CacheType::Redis);
        assert_eq!(cl.servers.len(), 3);
        assert_eq!(cl.servers[0].name, "r1");
        assert_eq!(cl.servers[1].name, "127.0.0.1:7002");
        assert_eq!(cl.servers[1].weight, 2);
        assert_eq!(cl.servers[2].name, "localhost:7003");
        assert_eq!(cl.hash_tag, Some(*b"{}"));
        assert_eq!(cl.thread, 1);
        assert_eq!(cl.read_timeout, Some(Duration::from_millis(1000)));
        assert_eq!(cl.hash, HashKind::Fnv1a_64);
        assert_eq!(cl.distribution, Distribution::Ketama);
    }

    #[test]
    fn unknown_key_names_cluster_and_key() {
        let e = parse(&GOOD.replace("hash_tag", "bogus_key")).unwrap_err();
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("cluster 'a'"), "{e}");
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (from, to, key) in [
            ("127.0.0.1:7000", "nowhere", "listen_addr"),
            ("\"{}\"", "\"{\"", "hash_tag"),
            ("7002:2", "7002:0", "servers"),
            ("7002:2", "7002:x", "servers"),
            ("7001:1 r1", "70011:1 r1", "servers"),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.contains(key), "{from}->{to}: {e}");
            assert!(e.contains("cluster 'a'"), "{e}");
        }
        let e = parse(&format!("{GOOD}\ncache_type = \"memcache\"")).unwrap_err();
        assert!(e.contains("cache_type"), "{e}");
        let e = parse(&format!("{GOOD}\nthread = 0")).unwrap_err();
        assert!(e.contains("thread"), "{e}");
        let e = parse(&format!("{GOOD}\nhash = \"sha1\"")).unwrap_err();
        assert!(e.contains("hash"), "{e}");
    }

    #[test]
    fn duplicate_names_and_ports_are_refused() {
        let two = format!("{GOOD}\n{}", GOOD.replace("7000", "7100"));
        let e = parse(&two).unwrap_err();
        assert!(e.contains("duplicate cluster name"), "{e}");
        let two = format!("{GOOD}\n{}", GOOD.replace("\"a\"", "\"b\""));
        let e = parse(&two).unwrap_err();
        assert!(
            e.contains("cluster 'b'") && e.contains("listen_addr"),
            "{e}"
        );
        let dup = GOOD.replace("127.0.0.1:7002:2", "127.0.0.1:7001:2 r1");
        assert!(parse(&dup).unwrap_err().contains("used twice"));
    }

    #[test]
    fn format_comes_from_the_content() {
        let yaml = "# pools\nalpha:\n  listen: 127.0.0.1:1\n";
        for name in ["nutcracker.conf", "pool", "x.toml", "x.yml"] {
            assert_eq!(
                detect(Path::new(name), yaml).0,
                Format::Nutcracker,
                "{name}"
            );
            assert_eq!(detect(Path::new(name), GOOD).0, Format::Toml, "{name}");
        }
        let (f, why) = detect(Path::new("p.yaml"), "");
        assert_eq!(f, Format::Nutcracker);
        assert!(why.contains(".yaml"), "{why}");
        let (f, why) = detect(Path::new("p"), "# nothing\n");
        assert_eq!(f, Format::Toml);
        assert!(why.contains("default"), "{why}");
    }

    #[test]
    fn numbers_past_their_limits_are_refused() {
        let over = MAX_INT + 1;
        for (key, value) in [
            ("read_timeout", over.to_string()),
            ("write_timeout", i64::MAX.to_string()),
            ("ping_interval", over.to_string()),
            ("backlog", over.to_string()),
            ("fetch", (MAX_FETCH_SECS + 1).to_string()),
            ("slowlog_max_len", (MAX_SLOWLOG_LEN + 1).to_string()),
        ] {
            let e = parse(&format!("{GOOD}\n{key} = {value}")).unwrap_err();
            assert!(e.contains(key) && e.contains("cluster 'a'"), "{e}");
        }
        let e = parse(&format!("{GOOD}\nping_interval = 10")).unwrap_err();
        assert!(e.contains("ping_interval"), "{e}");
        let e = parse(&format!("{GOOD}\nping_fail_limit = 0\nping_interval = 0")).map(|_| ());
        assert!(e.is_ok(), "{e:?}");
        let heavy = GOOD.replace("7002:2", "7002:2147483647");
        assert!(parse(&heavy).is_ok());
        let e = parse(&GOOD.replace("7002:2", "7002:2147483648")).unwrap_err();
        assert!(e.contains("weight"), "{e}");
        let e = parse(&format!("{heavy}\ndistribution = \"modula\"")).unwrap_err();
        assert!(e.contains("servers") && e.contains("ring entries"), "{e}");
        // 2 * (2^31 - 1) + 2 no longer fits nutcracker's u32 total.
        let both = heavy
            .replace("7001:1 r1", "7001:2147483647 r1")
            .replace("localhost:7003", "localhost:7003:2");
        let e = parse(&both).unwrap_err();
        assert!(e.contains("servers") && e.contains("2^32"), "{e}");
    }

    #[test]
    fn server_names_follow_twemproxy() {
        assert_eq!(parse_server("127.0.0.1:11211").unwrap().name, "127.0.0.1");
        assert_eq!(parse_server("127.0.0.1:6379:3").unwrap().weight, 3);
        assert!(parse_server("127.0.0.1").is_err());
        assert!(parse_server("127.0.0.1:1:1 a b").is_err());
    }
}
