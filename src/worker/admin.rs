//! INFO and SLOWLOG through the proxy: they describe aster and its cluster
//! (inspect backends directly for theirs), but for the servers' version and
//! their keyspace, which INFO asks them for.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::config::CacheType;
use crate::observe::catalogue::{PoolStats, Section, ServerStats};
use crate::observe::stats::{self, ClusterStats};
use crate::protocol::command::Args;
use crate::protocol::fanout::SERVER_SECTION;
use crate::protocol::local::VERSION;
use crate::protocol::resp;
use crate::worker::view::View;

/// Whether INFO's arguments ask for `section`: none, `all`, `everything`
/// and `default` ask for every section aster has.
fn wants(args: &(impl Args + ?Sized), section: &str) -> bool {
    args.len() < 2
        || (1..args.len()).any(|i| {
            let a = args.get(i);
            [section, "all", "everything", "default"]
                .iter()
                .any(|s| a.eq_ignore_ascii_case(s.as_bytes()))
        })
}

/// What INFO asks of every server (every master): their version, for the
/// Server section, and their Keyspace section, in one request every Redis
/// version takes; and whether the keyspace is wanted. `None`: neither is.
pub(crate) fn backend_request(args: &(impl Args + ?Sized)) -> Option<(Bytes, bool)> {
    let words: &[&[u8]] = match (wants(args, "server"), wants(args, "keyspace")) {
        (true, true) => &[b"INFO"],
        (true, false) => &[b"INFO", b"server"],
        (false, true) => &[b"INFO", b"keyspace"],
        (false, false) => return None,
    };
    Some((resp::command(words), wants(args, "keyspace")))
}

/// INFO [section ...]: aster's own sections (server, clients, stats, and
/// one line per backend; `usable`: whether this worker would send to route
/// server `i` now). The Server section comes first and lacks its
/// `redis_version` line, which the servers' replies give
/// (`fanout::Merge::Info`), as they give the Keyspace section.
pub(crate) fn info(
    view: &View,
    shared: &ClusterStats,
    usable: impl Fn(usize) -> bool,
    args: &(impl Args + ?Sized),
) -> String {
    let want = |section: &str| wants(args, section);
    let cfg = view.cfg();
    let (pool, servers) = shared.total();
    let mut s = String::with_capacity(1024);
    if want("server") {
        let _ = write!(
            s,
            "{SERVER_SECTION}aster_version:{VERSION}\r\nredis_mode:proxy\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\ncluster:{}\r\ncache_type:{}\r\nlisten_addr:{}\r\nthreads:{}\r\n\r\n",
            std::process::id(),
            stats::started().elapsed().as_secs(),
            cfg.name,
            match cfg.cache_type {
                CacheType::Redis => "redis",
                CacheType::RedisCluster => "redis_cluster",
            },
            cfg.listen_addr,
            cfg.thread,
        );
    }
    if want("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n",
            shared.clients.load(Ordering::Relaxed),
            cfg.max_clients,
        );
        lines(&mut s, Section::Clients, &pool);
        s.push_str("\r\n");
    }
    if want("stats") {
        s.push_str("# Stats\r\n");
        lines(&mut s, Section::Stats, &pool);
        let _ = write!(s, "slowlog_len:{}\r\n\r\n", shared.slowlog.len());
    }
    if want("backends") {
        s.push_str("# Backends\r\n");
        let health = shared.health();
        let none = ServerStats::default();
        for (i, b) in view.route().servers.iter().enumerate() {
            let ejected = health.get(i).is_some_and(|h| h.ejected);
            let state = if ejected {
                "ejected"
            } else if usable(i) {
                "up"
            } else {
                "down"
            };
            let st = servers.iter().find(|(n, _)| *n == b.name);
            let _ = write!(
                s,
                "backend{i}:name={},addr={},state={state}",
                b.name, b.addr
            );
            backend_pairs(&mut s, st.map_or(&none, |(_, st)| st));
            s.push_str("\r\n");
        }
    }
    s
}

/// The pool counters INFO shows in `section`, a `key:value` line each; a
/// counter by kind a `key_kind:value` line per kind counted, as Redis's
/// own per-kind lines (`errorstat_*`, `cmdstat_*`) list only what occurred.
fn lines(out: &mut String, section: Section, pool: &PoolStats) {
    for d in PoolStats::COUNTERS {
        if let Some(key) = d.info_key(section) {
            let _ = write!(out, "{key}:{}\r\n", (d.get)(pool));
        }
    }
    for d in PoolStats::LABELLED {
        let Some(key) = d.info_key(section) else {
            continue;
        };
        for (kind, v) in d.values(pool).filter(|&(_, v)| v > 0) {
            let _ = write!(out, "{key}_{kind}:{v}\r\n");
        }
    }
}

/// A server's counters on its `backendN:` line, `,key=value` each.
fn backend_pairs(out: &mut String, st: &ServerStats) {
    for d in ServerStats::COUNTERS {
        if let Some(key) = d.info_key(Section::Backends) {
            let _ = write!(out, ",{key}={}", (d.get)(st));
        }
    }
}

/// SLOWLOG GET [n] | LEN | RESET | HELP.
pub(crate) fn slowlog(shared: &ClusterStats, args: &(impl Args + ?Sized)) -> Bytes {
    let sub = args.get(1).to_ascii_uppercase();
    let log = &shared.slowlog;
    match (sub.as_slice(), args.len()) {
        (b"GET", 2) => log.get(10),
        (b"GET", 3) => match resp::parse_int(args.get(2)) {
            Some(n) if n >= -1 => log.get(n),
            _ => resp::error("ERR count should be greater than or equal to -1"),
        },
        (b"LEN", 2) => resp::int(log.len() as i64),
        (b"RESET", 2) => {
            log.reset();
            Bytes::from_static(resp::OK)
        }
        _ => resp::error("ERR SLOWLOG subcommand must be GET [count], LEN or RESET"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use crate::observe::catalogue::{Desc, LabelledDesc};
    use crate::observe::metrics;
    use crate::observe::stats::WorkerSnapshot;

    /// What the outputs show of one family's rows: the stats JSON, INFO by
    /// section, `/metrics` and the rows' labels there.
    struct Outputs<'a> {
        json: &'a str,
        info: &'a dyn Fn(Section) -> String,
        prom: &'a str,
        labels: &'a str,
    }

    /// Every row of a family names an output, and shows there with its value.
    fn check<T>(descs: &[Desc<T>], t: &T, out: &Outputs<'_>) {
        let Outputs {
            json, prom, labels, ..
        } = out;
        for d in descs {
            let v = (d.get)(t);
            assert!(
                d.twemproxy.is_some() || d.info.is_some() || d.prom.is_some(),
                "{} shows nowhere",
                d.name
            );
            if d.twemproxy.is_some() {
                let m = format!("\"{}\":{v}", d.name);
                assert!(
                    json.contains(&format!("{m},")) || json.contains(&format!("{m}}}")),
                    "JSON lacks {m}: {json}"
                );
            }
            if let Some((section, key)) = d.info {
                let text = (out.info)(section);
                let line = match section {
                    Section::Backends => format!(",{key}={v}"),
                    _ => format!("{key}:{v}\r\n"),
                };
                assert!(text.contains(&line), "INFO lacks {line:?}: {text}");
            }
            if let Some((name, _)) = d.prom {
                let kind = format!("# TYPE {name} {}\n", d.kind.prometheus());
                let sample = format!("{name}{{{labels}}} {v}\n");
                assert!(
                    prom.contains(&kind) && prom.contains(&sample),
                    "/metrics lacks {sample:?}: {prom}"
                );
            }
        }
    }

    /// Every labelled row names an output, and shows there each kind's
    /// value: a series per kind under one header in `/metrics`, a line per
    /// kind in INFO (`numbered` counts every kind), never in the JSON.
    fn check_labelled<T>(descs: &[LabelledDesc<T>], t: &T, out: &Outputs<'_>) {
        let Outputs {
            json, prom, labels, ..
        } = out;
        for d in descs {
            assert!(
                d.info.is_some() || d.prom.is_some(),
                "a row by {} shows nowhere",
                d.label
            );
            assert_eq!(d.values(t).count(), d.names.len(), "{:?}", d.prom);
            if let Some((name, _)) = d.prom {
                let kind = format!("# TYPE {name} {}\n", d.kind.prometheus());
                assert_eq!(prom.matches(&kind).count(), 1, "{kind:?} once: {prom}");
            }
            for (kind, v) in d.values(t) {
                assert!(v > 0, "numbered counts every kind");
                if let Some((section, key)) = d.info {
                    let json_key = format!("\"{key}_{kind}\"");
                    assert!(!json.contains(&json_key), "{json_key} in JSON: {json}");
                    let line = format!("{key}_{kind}:{v}\r\n");
                    let text = (out.info)(section);
                    assert!(text.contains(&line), "INFO lacks {line:?}: {text}");
                }
                if let Some((name, _)) = d.prom {
                    let sample = format!("{name}{{{labels},{}=\"{kind}\"}} {v}\n", d.label);
                    assert!(prom.contains(&sample), "/metrics lacks {sample:?}: {prom}");
                }
            }
        }
    }

    #[test]
    fn every_counter_shows_in_json_info_and_metrics() {
        let shared = Arc::new(ClusterStats::new("alpha", vec!["one".into()], 1, 8));
        let mut one = ServerStats::numbered(200);
        one.latency.observe(300);
        let mut pool = PoolStats::numbered(100);
        pool.latency.observe(300);
        let servers = vec![("one".into(), one)];
        shared.publish(0, WorkerSnapshot { pool, servers });
        shared.ejected(0);
        let (pool, servers) = shared.total();
        let registry = Arc::new(Mutex::new(vec![shared.clone()]));
        let json = stats::render(&[shared], Instant::now(), "host");
        let prom = metrics::render(&registry);
        let info_pool = |section| {
            let mut s = String::new();
            lines(&mut s, section, &pool);
            s
        };
        let out = Outputs {
            json: &json,
            info: &info_pool,
            prom: &prom,
            labels: "cluster=\"alpha\"",
        };
        check(PoolStats::COUNTERS, &pool, &out);
        check_labelled(PoolStats::LABELLED, &pool, &out);
        let one = &servers[0].1;
        let info_server = |_| {
            let mut s = String::new();
            backend_pairs(&mut s, one);
            s
        };
        let out = Outputs {
            info: &info_server,
            labels: "cluster=\"alpha\",backend=\"one\"",
            ..out
        };
        check(ServerStats::COUNTERS, one, &out);
        check_labelled(ServerStats::LABELLED, one, &out);
        let pool_hists = PoolStats::HISTOGRAMS.iter().map(|h| h.prom);
        for (name, _) in pool_hists.chain(ServerStats::HISTOGRAMS.iter().map(|h| h.prom)) {
            assert!(
                prom.contains(&format!("# TYPE {name} histogram\n")),
                "{prom}"
            );
            assert!(prom.contains(&format!("{name}_count{{")), "{prom}");
        }
        assert!(json.contains("\"server_ejects\":1,"), "{json}");
    }
}
