//! The twemproxy stats document: fetched from a stats port (the proxy's or
//! nutcracker's), waited for, and read field by field. Owns no process; each
//! fetch is one connection the server closes after the document.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::ports::poll_until;

pub const TOP_FIELDS: [&str; 7] = [
    "service",
    "source",
    "version",
    "uptime",
    "timestamp",
    "total_connections",
    "curr_connections",
];
pub const POOL_COUNTERS: [&str; 6] = [
    "client_eof",
    "client_err",
    "client_connections",
    "server_ejects",
    "forward_error",
    "fragments",
];
pub const SERVER_COUNTERS: [&str; 13] = [
    "server_eof",
    "server_err",
    "server_timedout",
    "server_connections",
    "server_ejected_at",
    "requests",
    "request_bytes",
    "responses",
    "response_bytes",
    "in_queue",
    "in_queue_bytes",
    "out_queue",
    "out_queue_bytes",
];

/// One stats document: reads until the server closes (a read timeout is a
/// failure: the document must be followed by a close), then parses it.
pub fn stats_doc(port: u16) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to stats port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap_or_else(|e| {
        panic!("stats port {port}: no close after the document ({e}); got {body:?}")
    });
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("stats port {port}: not JSON ({e}): {body:?}"))
}

/// Polls the stats port until `cond` holds (5 s at most), returning the
/// document; panics with the last one otherwise.
pub fn wait_stats(port: u16, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let got = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let d = stats_doc(port);
        if cond(&d) {
            Some(d)
        } else {
            last = d;
            None
        }
    });
    got.unwrap_or_else(|| panic!("stats never showed {what}; last document:\n{last:#}"))
}

/// A counter as u64 (panics if missing or not a number).
pub fn num(doc: &Value, path: &[&str]) -> u64 {
    let mut v = doc;
    for p in path {
        v = v
            .get(p)
            .unwrap_or_else(|| panic!("stats: no {path:?} in {doc:#}"));
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("stats: {path:?} is not a number: {v}"))
}

/// The sum of one server counter over every server of a pool.
pub fn server_sum(doc: &Value, pool: &str, counter: &str) -> u64 {
    doc[pool]
        .as_object()
        .unwrap_or_else(|| panic!("stats: no pool {pool} in {doc:#}"))
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(name, _)| num(doc, &[pool, name, counter]))
        .sum()
}

/// The keys of a JSON object, sorted.
pub fn key_set(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks the document's shape: the top-level fields, and for each pool every
/// pool counter plus exactly the given servers, each with every server counter.
pub fn assert_shape(doc: &Value, pools: &[(&str, Vec<String>)]) {
    for f in TOP_FIELDS {
        assert!(doc.get(f).is_some(), "stats: no top-level {f}: {doc:#}");
    }
    assert_eq!(doc["service"], "nutcracker", "{doc:#}");
    for f in ["source", "version"] {
        assert!(
            doc[f].as_str().is_some_and(|s| !s.is_empty()),
            "stats: {f} should be a non-empty string: {doc:#}"
        );
    }
    for f in [
        "uptime",
        "timestamp",
        "total_connections",
        "curr_connections",
    ] {
        num(doc, &[f]);
    }
    let mut expect_top: BTreeSet<String> = TOP_FIELDS.iter().map(|s| s.to_string()).collect();
    for (pool, servers) in pools {
        expect_top.insert(pool.to_string());
        let mut expect: BTreeSet<String> = POOL_COUNTERS.iter().map(|s| s.to_string()).collect();
        expect.extend(servers.iter().cloned());
        assert_eq!(key_set(&doc[pool]), expect, "stats: members of pool {pool}");
        for c in POOL_COUNTERS {
            num(doc, &[pool, c]);
        }
        for s in servers {
            assert_eq!(
                key_set(&doc[pool][s]),
                SERVER_COUNTERS.iter().map(|s| s.to_string()).collect(),
                "stats: members of server {s} of pool {pool}"
            );
            for c in SERVER_COUNTERS {
                num(doc, &[pool, s, c]);
            }
        }
    }
    assert_eq!(key_set(doc), expect_top, "stats: top-level members");
}
