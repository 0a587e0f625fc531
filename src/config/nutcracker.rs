//! twemproxy's `nutcracker.yml`, read as it is and mapped onto aster's
//! cluster options with twemproxy's meaning for every pool key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Error as _, MapAccess, Visitor};

use crate::config::raw::RawCluster;
use crate::config::types::{Config, ConfigError, StatsConfig};
use crate::config::validate::{self, MAX_INT, MIN_PING_INTERVAL_MS};

/// nutcracker's stats defaults (`-s 22222 -a 0.0.0.0 -i 30000`).
pub const STATS_PORT: u16 = 22222;
pub const STATS_ADDR: &str = "0.0.0.0";
pub const STATS_INTERVAL_MS: u64 = 30_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    listen: String,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    hash_tag: Option<String>,
    #[serde(default)]
    distribution: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    backlog: Option<u32>,
    #[serde(default)]
    preconnect: Option<bool>,
    #[serde(default)]
    redis: Option<bool>,
    #[serde(default)]
    redis_auth: Option<String>,
    #[serde(default)]
    redis_db: Option<u32>,
    #[serde(default)]
    server_connections: Option<usize>,
    #[serde(default)]
    auto_eject_hosts: Option<bool>,
    #[serde(default)]
    server_retry_timeout: Option<u64>,
    #[serde(default)]
    server_failure_limit: Option<u32>,
    #[serde(default)]
    client_connections: Option<usize>,
    #[serde(default)]
    tcpkeepalive: Option<bool>,
    servers: Vec<String>,
}

/// Pools in file order (serde maps would sort or hash them).
struct Pools(Vec<(String, RawPool)>);

impl<'de> Deserialize<'de> for Pools {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pools, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pools;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of pool names to pools")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pools, A::Error> {
                let mut pools = Vec::new();
                while let Some(name) = m.next_key::<String>()? {
                    // Name the pool in errors about its keys (serde alone
                    // would only give a line and a column).
                    let pool = m
                        .next_value::<RawPool>()
                        .map_err(|e| A::Error::custom(format!("pool '{name}': {e}")))?;
                    pools.push((name, pool));
                }
                Ok(Pools(pools))
            }
        }
        d.deserialize_map(V)
    }
}

/// How long the health checker waits between pings at most: twemproxy's
/// `server_retry_timeout` is a retry delay after ejection, and aster
/// readmits a server as soon as a ping answers, so it only caps the interval.
const MAX_PING_INTERVAL_MS: u64 = 1000;

pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let syntax = |msg: String| ConfigError::Syntax {
        path: path.to_owned(),
        msg,
    };
    let pools: Pools =
        serde_saphyr::from_str(text).map_err(|e| syntax(yaml_message(&e.to_string())))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut clusters = Vec::with_capacity(pools.0.len());
    for (name, p) in pools.0 {
        let invalid = |key, msg: &str| ConfigError::Invalid {
            path: path.to_owned(),
            cluster: name.clone(),
            key,
            msg: msg.to_owned(),
        };
        if p.redis != Some(true) {
            return Err(invalid(
                "redis",
                "memcached pools (redis: false, nutcracker's default) are not supported by aster; set redis: true",
            ));
        }
        if let Some(tag) = &p.hash_tag
            && tag.len() != 2
        {
            return Err(invalid("hash_tag", "must be exactly two characters"));
        }
        if p.server_connections == Some(0) {
            return Err(invalid("server_connections", "must be greater than 0"));
        }
        // twemproxy reads every number as a C int and refuses a bigger one.
        for (key, v) in [
            ("timeout", p.timeout),
            ("backlog", p.backlog.map(u64::from)),
            ("redis_db", p.redis_db.map(u64::from)),
            ("server_connections", p.server_connections.map(|c| c as u64)),
            ("server_retry_timeout", p.server_retry_timeout),
            (
                "server_failure_limit",
                p.server_failure_limit.map(u64::from),
            ),
            ("client_connections", p.client_connections.map(|c| c as u64)),
        ] {
            if v.is_some_and(|v| v > MAX_INT) {
                return Err(invalid(key, "is past twemproxy's limit of 2147483647"));
            }
        }
        let mut rc = RawCluster {
            name: name.clone(),
            listen_addr: p.listen.clone(),
            servers: p.servers,
            ..RawCluster::default()
        };
        rc.thread = threads;
        if let Some(h) = p.hash {
            rc.hash = h;
        }
        rc.hash_tag = p.hash_tag;
        if let Some(d) = p.distribution {
            rc.distribution = d;
        }
        // No timeout in twemproxy means waiting for ever.
        rc.read_timeout = p.timeout.unwrap_or(0);
        rc.write_timeout = p.timeout.unwrap_or(0);
        rc.backlog = p.backlog.unwrap_or(512);
        rc.preconnect = p.preconnect.unwrap_or(false);
        rc.backend_password = p.redis_auth.clone();
        rc.password = p.redis_auth;
        rc.backend_db = p.redis_db.unwrap_or(0);
        rc.server_connections = p.server_connections.unwrap_or(1);
        rc.ping_fail_limit = if p.auto_eject_hosts.unwrap_or(false) {
            p.server_failure_limit.unwrap_or(2).max(1)
        } else {
            0
        };
        rc.ping_interval = p
            .server_retry_timeout
            .unwrap_or(30_000)
            .clamp(MIN_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS);
        rc.max_clients = p.client_connections.unwrap_or(0);
        rc.tcpkeepalive = p.tcpkeepalive.unwrap_or(false);
        clusters.push(validate::validate(path, rc).map_err(in_yaml_terms)?);
    }
    let stats = StatsConfig {
        listen_addr: format!("{STATS_ADDR}:{STATS_PORT}")
            .parse()
            .map_err(|_| syntax("bad default stats address".into()))?,
        interval: Duration::from_millis(STATS_INTERVAL_MS),
    };
    Config::assemble(path, clusters, Some(stats))
}

/// The YAML parser's message without its advice to the programmer
/// (", set DuplicateKeyPolicy in Options if acceptable").
fn yaml_message(msg: &str) -> String {
    match msg.find(", set DuplicateKeyPolicy") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A validation error names the key as the YAML file spells it.
fn in_yaml_terms(e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid {
            path,
            cluster,
            key,
            msg,
        } => ConfigError::Invalid {
            path,
            cluster,
            key: yaml_key(key),
            msg,
        },
        other => other,
    }
}

/// nutcracker's name for a key of the validated configuration.
fn yaml_key(key: &'static str) -> &'static str {
    match key {
        "listen_addr" => "listen",
        "read_timeout" | "write_timeout" => "timeout",
        "password" | "backend_password" => "redis_auth",
        "backend_db" => "redis_db",
        "ping_fail_limit" => "server_failure_limit",
        "ping_interval" => "server_retry_timeout",
        "max_clients" => "client_connections",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        parse(Path::new("nutcracker.yml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_duplicate_pool_is_named_without_the_parser_s_advice() {
        let e = load("a:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:2:1\na:\n  listen: 127.0.0.1:3\n  servers:\n   - 127.0.0.1:2:1\n").unwrap_err();
        assert!(
            e.contains("duplicate") && !e.contains("DuplicateKeyPolicy"),
            "{e}"
        );
    }

    const ALPHA: &str = "
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: \"{}\"
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  redis_auth: s3cret
  redis_db: 2
  server_retry_timeout: 2000
  server_failure_limit: 1
  timeout: 400
  servers:
   - 127.0.0.1:6379:1 one
   - 127.0.0.1:6380:2 two
beta:
  listen: 127.0.0.1:22122
  redis: true
  servers:
   - 127.0.0.1:6381:1
";

    #[test]
    fn pools_map_onto_clusters() {
        let c = load(ALPHA).unwrap();
        assert_eq!(
            c.stats.as_ref().map(|s| s.listen_addr.port()),
            Some(STATS_PORT)
        );
        let a = &c.clusters[0];
        assert_eq!(a.name, "alpha");
        assert_eq!(a.servers[1].name, "two");
        assert_eq!(a.servers[1].weight, 2);
        assert_eq!(a.hash_tag, Some(*b"{}"));
        assert_eq!(a.ping_fail_limit, 1);
        assert_eq!(a.ping_interval, Duration::from_millis(1000));
        assert_eq!(a.read_timeout, Some(Duration::from_millis(400)));
        assert_eq!(a.password.as_deref(), Some("s3cret"));
        assert_eq!(a.backend_password.as_deref(), Some("s3cret"));
        assert_eq!(a.backend_db, 2);
        let b = &c.clusters[1];
        assert_eq!(b.name, "beta");
        assert_eq!(b.ping_fail_limit, 0);
        assert_eq!(b.read_timeout, None);
        assert_eq!(b.backlog, 512);
    }

    #[test]
    fn refusals_name_pool_and_key() {
        let e = load(&ALPHA.replace("  redis_db: 2", "  bogus: 2")).unwrap_err();
        assert!(e.contains("bogus") && e.contains("'alpha'"), "{e}");
        let e = load("m:\n  listen: 127.0.0.1:1\n  servers: [\"127.0.0.1:2:1\"]\n").unwrap_err();
        assert!(e.contains("'m'") && e.contains("memcached"), "{e}");
        let e = load(&ALPHA.replace("hash: fnv1a_64", "hash: sha1")).unwrap_err();
        assert!(e.contains("'alpha'") && e.contains("hash"), "{e}");
        // Errors name the key as the file spells it.
        let e = load(&ALPHA.replace("127.0.0.1:22121", "/tmp/sock 0999")).unwrap_err();
        assert!(e.contains("listen:") && !e.contains("listen_addr"), "{e}");
        // A unix socket listener, nutcracker's `listen: /path mode`, is taken.
        let c = load(&ALPHA.replace("127.0.0.1:22121", "/tmp/sock 0666")).expect("unix listen");
        assert_eq!(c.clusters[0].listen_addr.to_string(), "/tmp/sock");
        // So are servers on a path, named as nutcracker names them.
        let c = load(&ALPHA.replace("127.0.0.1:6380:2 two", "/tmp/r.sock:2"))
            .expect("a unix socket server");
        let s = &c.clusters[0].servers[1];
        assert_eq!((s.name.as_str(), s.weight), ("/tmp/r.sock:", 2));
    }
}
