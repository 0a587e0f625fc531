//! INFO and SLOWLOG through the proxy: they describe aster and its cluster
//! (inspect backends directly for theirs), but for the servers' version and
//! their keyspace, which INFO asks them for.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::config::CacheType;
use crate::observe::stats;
use crate::observe::stats::ClusterStats;
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
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
            shared.clients.load(Ordering::Relaxed),
            cfg.max_clients,
            pool.blocked_clients,
        );
    }
    if want("stats") {
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nclient_eof:{}\r\nclient_err:{}\r\nforward_error:{}\r\nfragments:{}\r\nserver_ejects:{}\r\nslowlog_len:{}\r\ndedicated_connections_in_use:{}\r\ndedicated_connections_pooled:{}\r\ndedicated_connections_refused:{}\r\n\r\n",
            pool.total_connections,
            pool.commands,
            pool.client_eof,
            pool.client_err,
            pool.forward_error,
            pool.fragments,
            shared.server_ejects.load(Ordering::Relaxed),
            shared.slowlog.len(),
            pool.dedicated_in_use,
            pool.dedicated_pooled,
            pool.dedicated_refused,
        );
    }
    if want("backends") {
        s.push_str("# Backends\r\n");
        let health = shared.health();
        for (i, b) in view.route().servers.iter().enumerate() {
            let ejected = health.get(i).is_some_and(|h| h.ejected);
            let state = if ejected {
                "ejected"
            } else if usable(i) {
                "up"
            } else {
                "down"
            };
            let st = servers.iter().find(|(n, _)| *n == b.name).map(|(_, st)| st);
            let _ = write!(
                s,
                "backend{i}:name={},addr={},state={state},requests={},errors={},timeouts={}\r\n",
                b.name,
                b.addr,
                st.map_or(0, |x| x.requests),
                st.map_or(0, |x| x.server_err + x.server_eof),
                st.map_or(0, |x| x.server_timedout),
            );
        }
    }
    s
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
