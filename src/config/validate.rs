//! Raw clusters to validated ones: every value checked and bounded, every
//! error naming the file, the cluster and the key.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::config::raw::RawCluster;
use crate::config::server::parse_server;
use crate::config::types::{CacheType, ClusterConfig, ConfigError, Listen};
use crate::hashing::hash::HashKind;
use crate::hashing::ketama::Distribution;
use crate::protocol::resp::Limits;

/// Upper bounds that keep a typo from starting thousands of threads or sockets.
pub(crate) const MAX_THREADS: usize = 256;
/// Dedicated backend connections per worker: each is a socket and a
/// backend client, so a typo must not ask for millions.
pub(crate) const MAX_DEDICATED: usize = 65536;
pub(crate) const MAX_SERVER_CONNECTIONS: usize = 64;
/// twemproxy reads every number as a C int: weights, timeouts (ms), backlog
/// and the rest stop at 2^31-1 there, and a deadline that far out still fits
/// an `Instant`.
pub(crate) const MAX_INT: u64 = i32::MAX as u64;
/// `fetch` is in seconds: the same span as `MAX_INT` milliseconds.
pub(crate) const MAX_FETCH_SECS: u64 = MAX_INT / 1000;
/// Entries of one cluster's ring (ketama points or modula slots), about
/// 6500 servers at 160 points each: a few MB per route table, built in
/// well under a second, where an unbounded weight could ask for gigabytes.
pub(crate) const MAX_RING_POINTS: u64 = 1 << 20;
/// The shortest `ping_interval` (ms) when pings are on: each round pings
/// every server, so a shorter one is a busy loop.
pub(crate) const MIN_PING_INTERVAL_MS: u64 = 100;
/// Slow log entries kept: Redis bounds none, but each entry holds a request.
pub(crate) const MAX_SLOWLOG_LEN: usize = 1 << 20;

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
    let listen_addr = parse_cluster_listen(&rc.listen_addr)
        .and_then(|l| bindable(&l).map(|()| l))
        .map_err(|m| invalid("listen_addr", m))?;
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
        if cache_type == CacheType::RedisCluster && spec.addr.tcp().is_none() {
            return Err(invalid(
                "servers",
                format!(
                    "'{s}': a Redis Cluster is reached over TCP (its nodes name each other \
                     by host:port): unix socket servers are for cache_type = \"redis\""
                ),
            ));
        }
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
        match crate::hashing::ketama::ring_size(dist, &weights) {
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
    // Unused in redis mode, but a value outside its documented range is
    // refused there too, so a file stays valid when its mode changes.
    if rc.fetch == 0 {
        return Err(invalid("fetch", "must be > 0 seconds".into()));
    }
    if rc.backend_username.is_some() && rc.backend_password.is_none() {
        return Err(invalid(
            "backend_username",
            "needs backend_password as well".into(),
        ));
    }
    if rc.max_dedicated_connections > MAX_DEDICATED {
        return Err(invalid(
            "max_dedicated_connections",
            format!(
                "{} is past the limit of {MAX_DEDICATED} per worker",
                rc.max_dedicated_connections
            ),
        ));
    }
    for (key, value) in [
        ("max_bulk_len", rc.max_bulk_len),
        ("max_multibulk_len", rc.max_multibulk_len),
        ("max_inline_len", rc.max_inline_len),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be > 0".into()));
        }
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
        max_dedicated_connections: rc.max_dedicated_connections,
        slowlog_log_slower_than: u64::try_from(rc.slowlog_log_slower_than).ok(),
        slowlog_max_len: rc.slowlog_max_len,
    })
}

/// The stats interval in ms: 1..=MAX_INT, as `-i` takes it.
pub(crate) fn stats_interval(ms: u64) -> Result<u64, String> {
    if ms == 0 || ms > MAX_INT {
        return Err(format!("{ms} ms is not in 1..={MAX_INT}"));
    }
    Ok(ms)
}

/// The longest unix socket path the kernel takes (`sun_path` less its NUL).
const UNIX_PATH_MAX: usize = 107;

/// A cluster's listener: `host:port`, or a unix socket `/path [mode]` with
/// the mode in octal (`0666`), as nutcracker takes it.
pub(crate) fn parse_cluster_listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if !s.starts_with('/') {
        return parse_listen(s).map(Listen::Tcp);
    }
    let mut words = s.split_whitespace();
    let path = words.next().unwrap_or_default();
    let mode = words.next();
    if words.next().is_some() {
        return Err(format!("'{s}' is not '/path [mode]'"));
    }
    check_socket_path(path)?;
    let mode = match mode {
        None => None,
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(v) if v <= 0o777 => Some(v),
            _ => return Err(format!("'{m}' is not an octal file mode (0000..0777)")),
        },
    };
    Ok(Listen::Unix {
        path: path.into(),
        mode,
    })
}

/// A unix socket path the kernel can bind or connect to.
pub(crate) fn check_socket_path(path: &str) -> Result<(), String> {
    if path.len() > UNIX_PATH_MAX {
        return Err(format!(
            "the unix socket path is {} bytes, over the {UNIX_PATH_MAX} the kernel takes",
            path.len()
        ));
    }
    if path.ends_with('/') {
        return Err(format!("'{path}' names a directory, not a socket"));
    }
    Ok(())
}

/// A unix socket path can be made: not a directory, in a directory that
/// exists (checked at load, so `-t` says it before a start fails).
fn bindable(l: &Listen) -> Result<(), String> {
    let Listen::Unix { path, .. } = l else {
        return Ok(());
    };
    if path.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("the directory {} does not exist", dir.display()))
        }
        _ => Ok(()),
    }
}

pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
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
