//! Keyspace and script fan-out (issue 13, items 5 and 6): SCAN, KEYS,
//! DBSIZE, RANDOMKEY, SCRIPT LOAD/EXISTS/FLUSH and FUNCTION LOAD/DELETE/FLUSH
//! through the proxy, in both modes, compared with what the servers behind
//! it hold (asked directly).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{Client, Proxy, RedisCluster, Reply, Shards, args, cmd};

/// The proxy's port, the ports of the servers that hold keys (every server
/// in redis mode, every master in cluster mode), and of their replicas.
struct Fleet {
    port: u16,
    backends: Vec<u16>,
    replicas: Vec<u16>,
}

fn shards_fleet(s: &Shards) -> Fleet {
    Fleet {
        port: s.proxy.port(),
        backends: s.servers.iter().map(|r| r.port()).collect(),
        replicas: Vec::new(),
    }
}

fn cluster_fleet(rc: &RedisCluster, proxy: &Proxy) -> Fleet {
    Fleet {
        port: proxy.port(),
        backends: rc.masters().into_iter().map(|m| rc.port(m)).collect(),
        replicas: rc.replicas().into_iter().map(|r| rc.port(r)).collect(),
    }
}

/// A cluster of 3 masters with `replicas` each behind a proxy that reads
/// from replicas when there are some.
fn start_cluster(replicas: usize) -> (RedisCluster, Proxy) {
    let rc = RedisCluster::start(3, replicas);
    let from_replicas = if replicas > 0 { "true" } else { "false" };
    let conf = rc.proxy_conf(&[("read_timeout", "3000"), ("read_from_slave", from_replicas)]);
    let proxy = Proxy::start(&conf.to_toml());
    (rc, proxy)
}

fn strings(r: &Reply) -> Vec<String> {
    match r {
        Reply::Array(items) => items.iter().map(|i| i.text().to_owned()).collect(),
        other => panic!("expected an array: {other:?}"),
    }
}

fn backend_keys(port: u16, pattern: &str) -> BTreeSet<String> {
    strings(&cmd(port, &["KEYS", pattern]))
        .into_iter()
        .collect()
}

impl Fleet {
    fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// The union of every backend's own keys matching `pattern`.
    fn union(&self, pattern: &str) -> BTreeSet<String> {
        self.backends
            .iter()
            .flat_map(|&p| backend_keys(p, pattern))
            .collect()
    }

    fn flush_backends(&self) {
        for &p in &self.backends {
            assert_eq!(cmd(p, &["FLUSHALL"]), Reply::ok());
        }
    }

    /// One key per backend (written through the proxy with value = key).
    fn key_on_each(&self, c: &mut Client, prefix: &str) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; self.backends.len()];
        for i in 0..10_000 {
            if found.iter().all(Option::is_some) {
                break;
            }
            let key = format!("{prefix}{i}");
            assert_eq!(c.cmd(&["SET", &key, &key]), Reply::ok());
            let at = self
                .backends
                .iter()
                .position(|&p| cmd(p, &["EXISTS", &key]) == Reply::Int(1))
                .unwrap_or_else(|| panic!("{key} is on no backend"));
            found[at].get_or_insert(key);
        }
        found
            .into_iter()
            .map(|k| k.expect("a key on every backend"))
            .collect()
    }
}

/// A whole SCAN iteration: every key returned (in order, duplicates kept)
/// and the number of calls. Panics on a cursor 0 before the end, which
/// would be the end for the client.
fn scan_all(c: &mut Client, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut req = vec!["SCAN", cursor.as_str()];
        req.extend_from_slice(extra);
        let r = c.cmd(&req);
        calls += 1;
        let Reply::Array(parts) = &r else {
            panic!("SCAN {cursor} {extra:?}: {r:?}");
        };
        assert_eq!(parts.len(), 2, "{r:?}");
        let next = parts[0].text().to_owned();
        assert!(next.parse::<u64>().is_ok(), "cursor {next:?} is a u64");
        keys.extend(strings(&parts[1]));
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
        assert!(calls < 100_000, "SCAN never ends");
    }
}

fn assert_each_once(got: &[String], want: &BTreeSet<String>, what: &str) {
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "{what}: a key came back twice");
    assert_eq!(&set, want, "{what}: not the servers' keys");
}

fn populate(f: &Fleet) {
    let mut c = f.client();
    let mut cmds = Vec::new();
    for i in 0..400 {
        cmds.push(args(&["SET", &format!("s:{i}"), "v"]));
    }
    for i in 0..40 {
        cmds.push(args(&["HSET", &format!("h:{i}"), "f", "v"]));
    }
    for r in c.pipeline(&cmds) {
        assert!(!r.is_error(), "{r:?}");
    }
    for &p in &f.backends {
        assert!(
            !backend_keys(p, "*").is_empty(),
            "backend {p} holds no key: the test would prove nothing"
        );
    }
}

fn check_keyspace(f: &Fleet) {
    populate(f);
    let all = f.union("*");
    assert_eq!(all.len(), 440);
    let mut c = f.client();

    // SCAN: every key exactly once, whatever COUNT; each server visited.
    for extra in [&["COUNT", "3"][..], &["COUNT", "10000"], &[]] {
        let (keys, calls) = scan_all(&mut c, extra);
        assert_each_once(&keys, &all, &format!("SCAN {extra:?}"));
        assert!(calls >= f.backends.len(), "{calls} calls for {extra:?}");
    }
    let (keys, _) = scan_all(&mut c, &["MATCH", "h:*", "COUNT", "7"]);
    assert_each_once(&keys, &f.union("h:*"), "SCAN MATCH h:*");
    let (keys, _) = scan_all(&mut c, &["TYPE", "hash", "COUNT", "50"]);
    assert_each_once(&keys, &f.union("h:*"), "SCAN TYPE hash");
    let (keys, _) = scan_all(&mut c, &["MATCH", "s:1*", "TYPE", "string"]);
    assert_each_once(&keys, &f.union("s:1*"), "SCAN MATCH s:1* TYPE string");

    // Invalid cursors: not a number, or a server past the list.
    let past = ((f.backends.len() as u64) << 48).to_string();
    for bad in ["abc", "-", " 1", "18446744073709551616", past.as_str()] {
        assert_eq!(
            c.cmd(&["SCAN", bad]),
            Reply::Error("ERR invalid cursor".into()),
            "SCAN {bad:?}"
        );
    }
    // A backend's own errors come back as they are.
    assert_eq!(
        c.cmd(&["SCAN", "0", "COUNT", "0"]),
        Reply::Error("ERR syntax error".into())
    );

    // KEYS: the union; DBSIZE: the sum.
    let keys = strings(&c.cmd(&["KEYS", "*"]));
    assert_each_once(&keys, &all, "KEYS *");
    let keys = strings(&c.cmd(&["KEYS", "h:*"]));
    assert_each_once(&keys, &f.union("h:*"), "KEYS h:*");
    let sum: i64 = f
        .backends
        .iter()
        .map(|&p| match cmd(p, &["DBSIZE"]) {
            Reply::Int(n) => n,
            other => panic!("DBSIZE on {p}: {other:?}"),
        })
        .sum();
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::Int(sum));
    assert_eq!(sum, 440);

    // RANDOMKEY: an existing key, from more than one server over many calls.
    let mut from = BTreeSet::new();
    for _ in 0..40 {
        let k = c.cmd(&["RANDOMKEY"]).text().to_owned();
        assert!(all.contains(&k), "RANDOMKEY gave {k:?}");
        from.insert(
            f.backends
                .iter()
                .position(|&p| cmd(p, &["EXISTS", &k]) == Reply::Int(1)),
        );
    }
    assert!(from.len() > 1, "RANDOMKEY always from {from:?}");

    // RESP3: the same shapes, RESP3's null.
    let mut c3 = f.client();
    assert!(!c3.cmd(&["HELLO", "3"]).is_error());
    let (keys, _) = scan_all(&mut c3, &["COUNT", "100"]);
    assert_each_once(&keys, &all, "RESP3 SCAN");
    assert_each_once(&strings(&c3.cmd(&["KEYS", "*"])), &all, "RESP3 KEYS");
    assert_eq!(c3.cmd(&["DBSIZE"]), Reply::Int(440));

    // Only one server holds a key: RANDOMKEY always finds it.
    f.flush_backends();
    assert_eq!(c.cmd(&["SET", "only", "1"]), Reply::ok());
    for _ in 0..10 {
        assert_eq!(c.cmd(&["RANDOMKEY"]), Reply::bulk("only"));
    }
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::Int(1));

    // Empty everywhere.
    f.flush_backends();
    c.send_cmd(&["RANDOMKEY"]);
    assert_eq!(c.read_raw(1, Duration::from_secs(5)), b"$-1\r\n");
    c3.send_cmd(&["RANDOMKEY"]);
    assert_eq!(c3.read_raw(1, Duration::from_secs(5)), b"_\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::Int(0));
    assert_eq!(c.cmd(&["KEYS", "*"]), Reply::Array(vec![]));
    let (keys, calls) = scan_all(&mut c, &[]);
    assert!(keys.is_empty());
    assert_eq!(calls, f.backends.len(), "one call per empty server");
}

const GET_SCRIPT: &str = "return redis.call('get', KEYS[1])";
const LIBRARY: &str = "#!lua name=asterfan\nredis.register_function{function_name='aster_get', callback=function(keys, args) return redis.call('get', keys[1]) end, flags={'no-writes'}}";

/// `wait_replicated` returns once replicas have what their masters have.
fn check_scripts(f: &Fleet, wait_replicated: &dyn Fn()) {
    let mut c = f.client();
    let keys = f.key_on_each(&mut c, "sk");
    wait_replicated();

    // SCRIPT LOAD reaches every server, replicas too (Redis 7 does not
    // replicate the script cache): EVALSHA and EVALSHA_RO (read from a
    // replica when there are some) work wherever a key lives.
    let sha = c.cmd(&["SCRIPT", "LOAD", GET_SCRIPT]).text().to_owned();
    assert_eq!(sha.len(), 40, "{sha:?}");
    for &p in f.backends.iter().chain(&f.replicas) {
        assert_eq!(
            cmd(p, &["SCRIPT", "EXISTS", &sha]),
            Reply::Array(vec![Reply::Int(1)]),
            "server {p}"
        );
    }
    for k in &keys {
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", k]), Reply::bulk(k));
        assert_eq!(c.cmd(&["EVALSHA_RO", &sha, "1", k]), Reply::bulk(k));
    }
    let bogus = "0123456789012345678901234567890123456789";
    assert_eq!(
        c.cmd(&["SCRIPT", "EXISTS", &sha, bogus]),
        Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
    );
    // EXISTS is 1 only where every server has it.
    assert_eq!(cmd(f.backends[0], &["SCRIPT", "FLUSH"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SCRIPT", "EXISTS", &sha]),
        Reply::Array(vec![Reply::Int(0)])
    );

    // SCRIPT FLUSH reaches every server: NOSCRIPT everywhere after it.
    assert_eq!(c.cmd(&["SCRIPT", "LOAD", GET_SCRIPT]), Reply::bulk(&sha));
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), Reply::ok());
    for k in &keys {
        for eval in ["EVALSHA", "EVALSHA_RO"] {
            let r = c.cmd(&[eval, &sha, "1", k]);
            assert!(
                r.error().is_some_and(|e| e.starts_with("NOSCRIPT")),
                "{eval} on {k}: {r:?}"
            );
        }
    }
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH", "ASYNC"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SCRIPT", "FLUSH", "NOW"]),
        Reply::Error("ERR SCRIPT FLUSH only support SYNC|ASYNC option".into())
    );
    assert_eq!(
        c.cmd(&["SCRIPT", "LOAD"]),
        Reply::Error("ERR wrong number of arguments for 'script|load' command".into())
    );

    // Functions the same way (loaded on masters, replicated to replicas).
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", LIBRARY]),
        Reply::bulk("asterfan")
    );
    wait_replicated();
    for k in &keys {
        assert_eq!(c.cmd(&["FCALL", "aster_get", "1", k]), Reply::bulk(k));
        assert_eq!(c.cmd(&["FCALL_RO", "aster_get", "1", k]), Reply::bulk(k));
    }
    let again = c.cmd(&["FUNCTION", "LOAD", LIBRARY]);
    assert_eq!(
        again,
        Reply::Error("ERR Library 'asterfan' already exists".into())
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", "REPLACE", LIBRARY]),
        Reply::bulk("asterfan")
    );
    assert_eq!(c.cmd(&["FUNCTION", "DELETE", "asterfan"]), Reply::ok());
    for k in &keys {
        let r = c.cmd(&["FCALL", "aster_get", "1", k]);
        assert!(r.is_error(), "FCALL on {k} after DELETE: {r:?}");
    }
    assert_eq!(
        c.cmd(&["FUNCTION", "DELETE", "asterfan"]),
        Reply::Error("ERR Library not found".into())
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", LIBRARY]),
        Reply::bulk("asterfan")
    );
    assert_eq!(c.cmd(&["FUNCTION", "FLUSH", "SYNC"]), Reply::ok());
    for &p in &f.backends {
        assert_eq!(
            cmd(p, &["FUNCTION", "LIST"]),
            Reply::Array(vec![]),
            "backend {p}"
        );
    }
    assert_eq!(c.cmd(&["FUNCTION", "FLUSH"]), Reply::ok());

    // What concerns one backend stays refused, with a reason.
    for req in [
        &["SCRIPT", "KILL"][..],
        &["SCRIPT", "DEBUG", "YES"],
        &["FUNCTION", "LIST"],
        &["FUNCTION", "DUMP"],
        &["FUNCTION", "RESTORE", "x"],
        &["FUNCTION", "STATS"],
        &["FUNCTION", "KILL"],
    ] {
        let r = c.cmd(req);
        assert!(
            r.error()
                .is_some_and(|e| e.contains("not supported by aster")),
            "{req:?}: {r:?}"
        );
    }
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn keyspace_fan_out_redis_mode() {
    let s = Shards::start(3);
    check_keyspace(&shards_fleet(&s));
}

#[test]
fn keyspace_fan_out_cluster_mode() {
    let (rc, proxy) = start_cluster(0);
    check_keyspace(&cluster_fleet(&rc, &proxy));
}

#[test]
fn scripts_fan_out_redis_mode() {
    let s = Shards::start(3);
    check_scripts(&shards_fleet(&s), &|| {});
}

#[test]
fn scripts_fan_out_cluster_mode_with_replica_reads() {
    let (rc, proxy) = start_cluster(1);
    let f = cluster_fleet(&rc, &proxy);
    assert_eq!(f.replicas.len(), 3);
    check_scripts(&f, &|| rc.wait_replicated());
}

#[test]
fn a_server_down_fails_the_whole_fan_out() {
    let mut s = Shards::start(3);
    let f = shards_fleet(&s);
    let mut c = f.client();
    assert_eq!(c.cmd(&["DBSIZE"]), Reply::Int(0));
    s.servers[1].kill();
    for req in [
        &["KEYS", "*"][..],
        &["DBSIZE"],
        &["SCRIPT", "LOAD", GET_SCRIPT],
        &["RANDOMKEY"],
    ] {
        let r = c.cmd(req);
        assert!(
            r.error().is_some_and(|e| e.contains("Connection refused")),
            "{req:?}: {r:?}"
        );
    }
    // SCAN fails only on the dead server's turn.
    let on_dead = (1u64 << 48).to_string();
    let r = c.cmd(&["SCAN", &on_dead]);
    assert!(
        r.error().is_some_and(|e| e.contains("Connection refused")),
        "{r:?}"
    );
    let r = c.cmd(&["SCAN", "0"]);
    assert_eq!(strings(&r).len(), 2, "server 0 still scans: {r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}
