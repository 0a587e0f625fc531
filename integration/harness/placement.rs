//! Which backend holds a key, always asked of the `redis-server`s directly
//! (never computed with the proxy's own code), and keys chosen so that each
//! backend holds some. Owns no process; opens short-lived connections.

use std::borrow::Borrow;

use super::client::{Client, Reply, args};
use super::redis::RedisServer;

/// Indexes of the servers that hold `key`.
pub fn holders(servers: &[impl Borrow<RedisServer>], key: &str) -> Vec<usize> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| (*s).borrow().has(key))
        .map(|(i, _)| i)
        .collect()
}

/// The one server that holds `key`; panics if none or several do.
pub fn holder(servers: &[impl Borrow<RedisServer>], key: &str) -> usize {
    let h = holders(servers, key);
    assert_eq!(
        h.len(),
        1,
        "key {key:?} should be on exactly one backend, found on {h:?}"
    );
    h[0]
}

/// Writes `prefix0`, `prefix1`, ... (value = key) through `c`, a client of
/// the proxy in front of `servers`, until each server holds `per` of them.
/// Returns them by server index, and how many SETs that took (each reached a
/// backend). With `keep` false every probe is deleted again.
pub fn keys_per_server(
    c: &mut Client,
    servers: &[impl Borrow<RedisServer>],
    prefix: &str,
    per: usize,
    keep: bool,
) -> (Vec<Vec<String>>, u64) {
    let mut found: Vec<Vec<String>> = vec![Vec::new(); servers.len()];
    for i in 0..10_000 {
        if found.iter().all(|f| f.len() >= per) {
            return (found, i);
        }
        let key = format!("{prefix}{i}");
        assert_eq!(c.cmd(&["SET", &key, &key]), Reply::ok(), "SET {key}");
        let at = holder(servers, &key);
        if !keep {
            assert_eq!(c.cmd(&["DEL", &key]), Reply::Int(1), "DEL {key}");
        }
        if found[at].len() < per {
            found[at].push(key);
        }
    }
    panic!("keys {prefix}*: not every backend got {per}: {found:?}");
}

/// One key per server by index, found by writing probes through `c` and
/// deleting them again.
pub fn key_per_server(
    c: &mut Client,
    servers: &[impl Borrow<RedisServer>],
    prefix: &str,
) -> Vec<String> {
    keys_per_server(c, servers, prefix, 1, false)
        .0
        .into_iter()
        .map(|mut k| k.remove(0))
        .collect()
}

/// How many keys of `server` end with `suffix`. (Test keys vary at the front:
/// with twemproxy's 32-bit fnv1a_64, keys that differ only in their last
/// bytes hash close together and land on one server.)
pub fn keys_with(server: &RedisServer, suffix: &str) -> usize {
    server.keys().iter().filter(|k| k.ends_with(suffix)).count()
}

/// Of `keys`, each written with itself as its value, those that a pipelined
/// GET through the proxy on `port` does not read back.
pub fn keys_not_read_back(port: u16, keys: &[String]) -> Vec<&String> {
    let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
    let replies = Client::connect(port).pipeline(&gets);
    keys.iter()
        .zip(&replies)
        .filter(|(k, r)| **r != Reply::bulk(k))
        .map(|(k, _)| k)
        .collect()
}
