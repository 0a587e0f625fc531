//! The configuration file: raw serde structs, then a validated `Config`.
//!
//! Every error names the file, the cluster (when there is one) and the key, so
//! an operator can fix a bad file without reading the code.

pub(crate) mod nutcracker;
pub(crate) mod raw;
pub(crate) mod server;
pub(crate) mod types;
pub(crate) mod validate;

use raw::{RawCluster, RawFile};
pub use server::Addr;
pub use types::{CacheType, ClusterConfig, Config, ConfigError, Listen, ServerSpec, StatsConfig};
use validate::parse_listen;
pub(crate) use validate::{MAX_INT, stats_interval, validate};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

impl Config {
    /// The stats port must not be a cluster's port: both would bind it and
    /// the second would fail at start, after `-t` said the file was fine.
    /// Checked once `-s`/`-a` have been applied.
    pub fn check_stats_port(&self) -> Result<(), ConfigError> {
        let Some(st) = &self.stats else {
            return Ok(());
        };
        let overlaps = |a: SocketAddr, b: SocketAddr| {
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        match self.clusters.iter().find(|c| {
            c.listen_addr
                .tcp()
                .is_some_and(|a| overlaps(a, st.listen_addr))
        }) {
            Some(c) => Err(ConfigError::Invalid {
                path: self.path.clone(),
                cluster: c.name.clone(),
                key: "listen_addr",
                msg: format!("{} is also the stats port", c.listen_addr),
            }),
            None => Ok(()),
        }
    }

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
            let taken = match &cluster.listen_addr {
                Listen::Tcp(a) => !listens.insert(format!(":{}", a.port())),
                Listen::Unix { path, .. } => !listens.insert(path.display().to_string()),
            };
            if taken {
                return Err(invalid(
                    "listen_addr",
                    match &cluster.listen_addr {
                        Listen::Tcp(a) => format!("port {} is used by another cluster", a.port()),
                        Listen::Unix { path, .. } => {
                            format!("{} is used by another cluster", path.display())
                        }
                    },
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

#[cfg(test)]
mod tests {
    use super::Listen;
    use super::validate::parse_cluster_listen;

    #[test]
    fn a_listen_path_is_a_unix_socket_with_an_optional_octal_mode() {
        assert_eq!(
            parse_cluster_listen("/tmp/gamma 0666"),
            Ok(Listen::Unix {
                path: "/tmp/gamma".into(),
                mode: Some(0o666)
            })
        );
        assert_eq!(
            parse_cluster_listen(" /tmp/g "),
            Ok(Listen::Unix {
                path: "/tmp/g".into(),
                mode: None
            })
        );
        assert!(parse_cluster_listen("127.0.0.1:1").is_ok_and(|l| l.tcp().is_some()));
        for bad in [
            "/tmp/g 0999",
            "/tmp/g 1777",
            "/tmp/g rw",
            "/tmp/g 0666 x",
            "/tmp/",
        ] {
            assert!(parse_cluster_listen(bad).is_err(), "{bad}");
        }
        let long = format!("/{}", "d".repeat(107));
        assert!(parse_cluster_listen(&long).is_err_and(|e| e.contains("107")));
    }

    #[test]
    fn a_socket_path_that_cannot_be_made_is_refused_at_load() {
        let e = parse(&GOOD.replace("127.0.0.1:7000", "/tmp")).unwrap_err();
        assert!(
            e.contains("listen_addr") && e.contains("is a directory"),
            "{e}"
        );
        let e = parse(&GOOD.replace("127.0.0.1:7000", "/no-such-dir-of-aster/s.sock 0600"))
            .unwrap_err();
        assert!(e.contains("/no-such-dir-of-aster does not exist"), "{e}");
    }

    #[test]
    fn two_clusters_on_one_socket_path_are_refused() {
        let toml = "[[clusters]]\nname = \"a\"\nlisten_addr = \"/tmp/x.sock\"\nservers = [\"127.0.0.1:2:1\"]\n\
                    [[clusters]]\nname = \"b\"\nlisten_addr = \"/tmp/x.sock 0600\"\nservers = [\"127.0.0.1:2:1\"]\n";
        let e = parse(toml).unwrap_err();
        assert!(
            e.contains("cluster 'b'") && e.contains("/tmp/x.sock is used by another cluster"),
            "{e}"
        );
    }

    use super::validate::*;
    use super::*;
    use crate::hashing::hash::HashKind;
    use crate::hashing::ketama::Distribution;

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
        // fetch is checked in redis mode too; each zero limit names its key.
        for key in [
            "fetch",
            "max_bulk_len",
            "max_multibulk_len",
            "max_inline_len",
        ] {
            let e = parse(&format!("{GOOD}\n{key} = 0")).unwrap_err();
            assert!(e.contains(&format!("{key}: ")), "{e}");
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
    fn unix_socket_servers_are_for_sharding_clusters_only() {
        let mixed = GOOD.replace("\"localhost:7003\"", "\"/tmp/r.sock:1\", \"/tmp/s.sock\"");
        let c = parse(&mixed).unwrap();
        let s = &c.clusters[0].servers;
        assert_eq!(s[2].addr.to_string(), "/tmp/r.sock");
        assert_eq!(s[2].name, "/tmp/r.sock:");
        assert_eq!(s[3].name, "/tmp/s.sock:");
        let e = parse(&format!("{mixed}\ncache_type = \"redis_cluster\"")).unwrap_err();
        assert!(
            e.contains("cluster 'a'") && e.contains("servers") && e.contains("/tmp/r.sock:1"),
            "{e}"
        );
    }
}
