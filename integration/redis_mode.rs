//! Redis sharding mode (`cache_type = "redis"`): routing, multi-key commands,
//! commands the proxy answers itself, and the ones it refuses.

use std::collections::BTreeSet;

use crate::harness::{ClusterConf, Proxy, RedisServer, Reply, Shards, args, config_toml};

fn bulk(s: &str) -> Reply {
    Reply::bulk(s)
}

fn bulks(v: &[&str]) -> Reply {
    Reply::Array(v.iter().map(|s| bulk(s)).collect())
}

/// Sorted texts of an array reply (for set members).
fn sorted(r: &Reply) -> Vec<String> {
    match r {
        Reply::Array(items) => {
            let mut v: Vec<String> = items.iter().map(|i| i.text().to_string()).collect();
            v.sort();
            v
        }
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Asserts an error reply starting with "ERR", and that the connection still
/// answers PING afterwards.
fn assert_err_then_usable(c: &mut crate::harness::Client, cmd: &[&str]) -> String {
    let r = c.cmd(cmd);
    let e = r
        .error()
        .unwrap_or_else(|| panic!("{cmd:?}: expected an error reply, got {r:?}"))
        .to_string();
    assert!(
        e.starts_with("ERR"),
        "{cmd:?}: error should start with ERR: {e:?}"
    );
    assert_eq!(
        c.cmd(&["PING"]),
        Reply::status("PONG"),
        "connection unusable after {cmd:?}"
    );
    e
}

#[test]
fn data_commands_round_trip_and_land_on_one_backend() {
    let s = Shards::start(3);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", "str", "hello"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "str"]), bulk("hello"));
    assert_eq!(c.cmd(&["APPEND", "str", " world"]), Reply::Int(11));
    assert_eq!(c.cmd(&["STRLEN", "str"]), Reply::Int(11));
    assert_eq!(c.cmd(&["INCR", "counter"]), Reply::Int(1));
    assert_eq!(c.cmd(&["INCRBY", "counter", "41"]), Reply::Int(42));
    assert_eq!(
        c.cmd(&["HSET", "hash", "f1", "v1", "f2", "v2"]),
        Reply::Int(2)
    );
    assert_eq!(c.cmd(&["HGET", "hash", "f2"]), bulk("v2"));
    assert_eq!(c.cmd(&["HLEN", "hash"]), Reply::Int(2));
    assert_eq!(c.cmd(&["LPUSH", "list", "a", "b", "c"]), Reply::Int(3));
    assert_eq!(
        c.cmd(&["LRANGE", "list", "0", "-1"]),
        bulks(&["c", "b", "a"])
    );
    assert_eq!(c.cmd(&["SADD", "set", "x", "y"]), Reply::Int(2));
    assert_eq!(sorted(&c.cmd(&["SMEMBERS", "set"])), ["x", "y"]);
    assert_eq!(c.cmd(&["ZADD", "zset", "1.5", "m"]), Reply::Int(1));
    assert_eq!(c.cmd(&["ZSCORE", "zset", "m"]), bulk("1.5"));
    assert_eq!(c.cmd(&["SETEX", "ttl", "100", "v"]), Reply::ok());
    let ttl = c.cmd(&["TTL", "ttl"]);
    assert!(matches!(ttl, Reply::Int(90..=100)), "TTL: {ttl:?}");
    assert_eq!(c.cmd(&["TYPE", "hash"]), Reply::status("hash"));
    assert_eq!(c.cmd(&["GET", "missing"]), Reply::Nil);

    let keys = ["str", "counter", "hash", "list", "set", "zset", "ttl"];
    let mut used = BTreeSet::new();
    for k in keys {
        used.insert(s.holder(k));
    }
    // The same values, read directly from the backend that holds each key.
    let at = s.holder("counter");
    assert_eq!(s.servers[at].client().cmd(&["GET", "counter"]), bulk("42"));
    let at = s.holder("str");
    assert_eq!(
        s.servers[at].client().cmd(&["GET", "str"]),
        bulk("hello world")
    );
    let total: i64 = s.servers.iter().map(|srv| srv.dbsize()).sum();
    assert_eq!(
        total,
        keys.len() as i64,
        "each key exactly once over all backends"
    );
    assert!(used.len() >= 2, "7 keys all on one backend: {used:?}");
}

// Key names in these tests vary at the front: with twemproxy's fnv1a_64
// (truncated to 32 bits, as aster must match it), keys that differ only in
// their last characters hash close together on the ketama ring and often
// land on one server.

#[test]
fn keys_spread_over_all_backends() {
    let s = Shards::start(3);
    let mut c = s.client();
    let cmds: Vec<Vec<String>> = (0..300)
        .map(|i| args(&["SET", &format!("{i}:spread"), &format!("v{i}")]))
        .collect();
    let replies = c.pipeline(&cmds);
    assert!(
        replies.iter().all(|r| *r == Reply::ok()),
        "SET replies: {replies:?}"
    );
    let sizes: Vec<i64> = s.servers.iter().map(|srv| srv.dbsize()).collect();
    assert_eq!(
        sizes.iter().sum::<i64>(),
        300,
        "every key on exactly one backend: {sizes:?}"
    );
    for (i, n) in sizes.iter().enumerate() {
        assert!(*n >= 30, "backend {i} got {n} of 300 keys: {sizes:?}");
    }
    // Each backend holds exactly the keys the proxy reads back from it.
    for srv in &s.servers {
        for key in srv.keys() {
            let i: usize = key
                .strip_suffix(":spread")
                .expect("only our keys")
                .parse()
                .expect("number");
            assert_eq!(srv.client().cmd(&["GET", &key]), bulk(&format!("v{i}")));
        }
    }
    let gets: Vec<Vec<String>> = (0..300)
        .map(|i| args(&["GET", &format!("{i}:spread")]))
        .collect();
    let replies = c.pipeline(&gets);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(*r, bulk(&format!("v{i}")), "GET {i}:spread");
    }
}

#[test]
fn other_hashes_and_modula_route_consistently() {
    for (hash, dist) in [
        ("md5", "ketama"),
        ("murmur", "modula"),
        ("crc32a", "ketama"),
        ("fnv1a_32", "modula"),
    ] {
        let s = Shards::start_with(3, |c| {
            c.set("hash", &format!("\"{hash}\""))
                .set("distribution", &format!("\"{dist}\""))
        });
        let mut c = s.client();
        let cmds: Vec<Vec<String>> = (0..150)
            .map(|i| args(&["SET", &format!("k{i}"), &format!("{i}")]))
            .collect();
        assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
        let sizes: Vec<i64> = s.servers.iter().map(|srv| srv.dbsize()).collect();
        assert_eq!(sizes.iter().sum::<i64>(), 150, "{hash}/{dist}: {sizes:?}");
        assert!(
            sizes.iter().all(|&n| n > 0),
            "{hash}/{dist}: a backend got no key: {sizes:?}"
        );
        let gets: Vec<Vec<String>> = (0..150).map(|i| args(&["GET", &format!("k{i}")])).collect();
        for (i, r) in c.pipeline(&gets).iter().enumerate() {
            assert_eq!(*r, bulk(&format!("{i}")), "{hash}/{dist}: GET k{i}");
        }
    }
}

#[test]
fn hash_tags_keep_keys_together() {
    let s = Shards::start(3);
    let mut c = s.client();
    let mut tag_homes = BTreeSet::new();
    for i in 0..30 {
        let a = format!("{{{i}user}}.a");
        let b = format!("{{{i}user}}.b");
        let plain = format!("{i}user");
        assert_eq!(c.cmd(&["SET", &a, "1"]), Reply::ok());
        assert_eq!(c.cmd(&["SET", &b, "2"]), Reply::ok());
        assert_eq!(c.cmd(&["SET", &plain, "3"]), Reply::ok());
        let home = s.holder(&a);
        assert_eq!(s.holder(&b), home, "{a} and {b} on different backends");
        // Only the tag is hashed: "{user1}.a" goes where "user1" goes.
        assert_eq!(
            s.holder(&plain),
            home,
            "{a} and {plain} on different backends"
        );
        tag_homes.insert(home);
    }
    assert_eq!(
        tag_homes.len(),
        3,
        "30 tags should use all 3 backends: {tag_homes:?}"
    );
}

#[test]
fn mget_returns_values_in_key_order_with_nils() {
    let s = Shards::start(3);
    let mut c = s.client();
    let keys: Vec<String> = (0..12).map(|i| format!("{i}mg")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, &format!("val-{k}")]), Reply::ok());
    }
    let homes: BTreeSet<usize> = keys.iter().map(|k| s.holder(k)).collect();
    assert_eq!(homes.len(), 3, "test keys should span all backends");

    let mut req = vec!["MGET"];
    let order = [
        "5mg", "nope1", "0mg", "11mg", "5mg", "nope2", "3mg", "7mg", "1mg",
    ];
    req.extend(order);
    let expected: Vec<Reply> = order
        .iter()
        .map(|k| {
            if k.starts_with("nope") {
                Reply::Nil
            } else {
                bulk(&format!("val-{k}"))
            }
        })
        .collect();
    assert_eq!(c.cmd(&req), Reply::Array(expected));
    assert_eq!(c.cmd(&["MGET", "nope3"]), Reply::Array(vec![Reply::Nil]));
    assert_eq!(c.cmd(&["MGET", "2mg"]), bulks(&["val-2mg"]));
}

#[test]
fn mset_writes_every_key_to_its_backend() {
    let s = Shards::start(3);
    let mut c = s.client();
    let mut req: Vec<String> = vec!["MSET".into()];
    for i in 0..30 {
        req.push(format!("{i}ms"));
        req.push(format!("value{i}"));
    }
    let r: Vec<&str> = req.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&r), Reply::ok());
    let mut homes = BTreeSet::new();
    for i in 0..30 {
        let key = format!("{i}ms");
        let at = s.holder(&key);
        homes.insert(at);
        assert_eq!(
            s.servers[at].client().cmd(&["GET", &key]),
            bulk(&format!("value{i}"))
        );
        assert_eq!(c.cmd(&["GET", &key]), bulk(&format!("value{i}")));
    }
    assert_eq!(homes.len(), 3, "30 keys should use all 3 backends");
    // A later MSET overwrites, including a key repeated in one request (last wins).
    assert_eq!(
        c.cmd(&["MSET", "1ms", "a", "2ms", "b", "1ms", "c"]),
        Reply::ok()
    );
    assert_eq!(c.cmd(&["MGET", "1ms", "2ms"]), bulks(&["c", "b"]));
}

#[test]
fn del_unlink_exists_touch_sum_counts() {
    let s = Shards::start(3);
    let mut c = s.client();
    let k = s.key_per_server("cnt");
    let (a, b, d) = (k[0].as_str(), k[1].as_str(), k[2].as_str());
    for key in [a, b, d] {
        assert_eq!(c.cmd(&["SET", key, "x"]), Reply::ok());
    }
    // Redis counts a key named twice twice in EXISTS.
    assert_eq!(c.cmd(&["EXISTS", a, a, b]), Reply::Int(3));
    assert_eq!(c.cmd(&["EXISTS", a, b, d, "missing"]), Reply::Int(3));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), Reply::Int(0));
    assert_eq!(c.cmd(&["TOUCH", a, b, "missing"]), Reply::Int(2));
    assert_eq!(c.cmd(&["DEL", a, "missing"]), Reply::Int(1));
    assert_eq!(c.cmd(&["DEL", a]), Reply::Int(0));
    // A key deleted twice in one request counts once, as in Redis.
    assert_eq!(c.cmd(&["UNLINK", b, d, d]), Reply::Int(2));
    assert_eq!(c.cmd(&["EXISTS", a, b, d]), Reply::Int(0));
    for srv in &s.servers {
        assert_eq!(srv.dbsize(), 0, "{} still has keys", srv.addr());
    }
    for key in [a, b, d] {
        assert_eq!(c.cmd(&["SET", key, "x"]), Reply::ok());
    }
    assert_eq!(c.cmd(&["DEL", d, b, a, "missing", a]), Reply::Int(3));
}

#[test]
fn multi_key_commands_on_one_backend_via_hash_tag() {
    let s = Shards::start(3);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", "{t}a", "1"]), Reply::ok());
    assert_eq!(c.cmd(&["RENAME", "{t}a", "{t}b"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "{t}b"]), bulk("1"));
    assert_eq!(c.cmd(&["GET", "{t}a"]), Reply::Nil);

    assert_eq!(c.cmd(&["SADD", "{t}s1", "x", "y"]), Reply::Int(2));
    assert_eq!(c.cmd(&["SADD", "{t}s2", "y", "z"]), Reply::Int(2));
    assert_eq!(c.cmd(&["SINTER", "{t}s1", "{t}s2"]), bulks(&["y"]));
    assert_eq!(c.cmd(&["SMOVE", "{t}s1", "{t}s2", "x"]), Reply::Int(1));
    assert_eq!(sorted(&c.cmd(&["SMEMBERS", "{t}s2"])), ["x", "y", "z"]);

    assert_eq!(c.cmd(&["RPUSH", "{t}l1", "a", "b"]), Reply::Int(2));
    assert_eq!(c.cmd(&["RPOPLPUSH", "{t}l1", "{t}l2"]), bulk("b"));
    assert_eq!(c.cmd(&["LRANGE", "{t}l2", "0", "-1"]), bulks(&["b"]));

    assert_eq!(c.cmd(&["MSETNX", "{t}x", "1", "{t}y", "2"]), Reply::Int(1));
    assert_eq!(c.cmd(&["MSETNX", "{t}x", "3", "{t}z", "4"]), Reply::Int(0));
    assert_eq!(
        c.cmd(&["MGET", "{t}x", "{t}y", "{t}z"]),
        Reply::Array(vec![bulk("1"), bulk("2"), Reply::Nil])
    );

    let home = s.holder("{t}b");
    assert_eq!(
        s.servers[home].dbsize(),
        7,
        "every {{t}} key on one backend"
    );
}

#[test]
fn multi_key_commands_across_backends_are_refused() {
    let s = Shards::start(3);
    let mut c = s.client();
    let k = s.key_per_server("cross");
    let (a, b) = (k[0].as_str(), k[1].as_str());
    assert_err_then_usable(&mut c, &["MSETNX", a, "1", b, "2"]);
    assert_eq!(
        c.cmd(&["EXISTS", a, b]),
        Reply::Int(0),
        "a refused MSETNX must not write anything"
    );

    assert_eq!(c.cmd(&["SET", a, "1"]), Reply::ok());
    assert_err_then_usable(&mut c, &["RENAME", a, b]);
    assert_eq!(
        c.cmd(&["GET", a]),
        bulk("1"),
        "a refused RENAME must not move the key"
    );
    assert_eq!(c.cmd(&["DEL", a]), Reply::Int(1));

    assert_eq!(c.cmd(&["SADD", a, "m"]), Reply::Int(1));
    assert_eq!(c.cmd(&["SADD", b, "m"]), Reply::Int(1));
    assert_err_then_usable(&mut c, &["SMOVE", a, b, "m"]);
    assert_err_then_usable(&mut c, &["SINTER", a, b]);
    assert_eq!(c.cmd(&["DEL", a, b]), Reply::Int(2));

    assert_eq!(c.cmd(&["RPUSH", a, "v"]), Reply::Int(1));
    assert_err_then_usable(&mut c, &["RPOPLPUSH", a, b]);
    assert_eq!(c.cmd(&["LLEN", a]), Reply::Int(1));
}

#[test]
fn eval_needs_exactly_one_key() {
    let s = Shards::start(3);
    let mut c = s.client();
    let set = "return redis.call('set', KEYS[1], ARGV[1])";
    assert_eq!(c.cmd(&["EVAL", set, "1", "evkey", "evval"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "evkey"]), bulk("evval"));
    let at = s.holder("evkey");
    assert_eq!(s.servers[at].client().cmd(&["GET", "evkey"]), bulk("evval"));
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('get', KEYS[1])", "1", "evkey"]),
        bulk("evval")
    );
    assert_err_then_usable(&mut c, &["EVAL", "return 1", "0"]);
}

#[test]
fn proxy_answers_connection_commands() {
    let s = Shards::start(3);
    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(c.cmd(&["ping", "hello there"]), bulk("hello there"));
    assert_eq!(c.cmd(&["ECHO", "echo me"]), bulk("echo me"));
    assert_eq!(c.cmd(&["SELECT", "0"]), Reply::ok());
    let r = c.cmd(&["SELECT", "1"]);
    assert!(r.text().starts_with("ERR"), "SELECT 1: {r:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));

    // COMMAND: any well-formed reply; the connection stays usable.
    let r = c.cmd(&["COMMAND"]);
    assert!(
        matches!(r, Reply::Array(_) | Reply::Error(_)),
        "COMMAND: {r:?}"
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));

    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Reply::Nil);
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "tester"]), Reply::ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("tester"));
    let mut other = s.client();
    assert_eq!(
        other.cmd(&["CLIENT", "GETNAME"]),
        Reply::Nil,
        "names are per connection"
    );

    match c.cmd(&["HELLO", "2"]) {
        Reply::Array(items) => {
            assert!(
                items.len() >= 2 && items.len() % 2 == 0,
                "HELLO 2 map: {items:?}"
            );
            let proto = items
                .chunks(2)
                .find(|kv| kv[0].text() == "proto")
                .map(|kv| kv[1].clone());
            assert_eq!(
                proto,
                Some(Reply::Int(2)),
                "HELLO 2 should say proto 2: {items:?}"
            );
        }
        other => panic!("HELLO 2: {other:?}"),
    }
    assert_eq!(
        c.cmd(&["PING"]),
        Reply::status("PONG"),
        "still RESP2 after HELLO 2"
    );

    assert_eq!(c.cmd(&["QUIT"]), Reply::ok());
    assert!(
        c.closed_within(std::time::Duration::from_secs(3)),
        "QUIT should close the connection"
    );
}

#[test]
fn redis_crate_client_works_through_proxy() {
    let s = Shards::start(3);
    let mut conn = s.proxy.conn();
    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET")
        .arg("rk")
        .arg(42)
        .query(&mut conn)
        .expect("SET");
    let v: i64 = redis::cmd("INCR").arg("rk").query(&mut conn).expect("INCR");
    assert_eq!(v, 43);
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("rp{i}")).arg(i).ignore();
    }
    for i in 0..100 {
        pipe.cmd("GET").arg(format!("rp{i}"));
    }
    let got: Vec<i64> = pipe.query(&mut conn).expect("pipeline");
    assert_eq!(got, (0..100).collect::<Vec<i64>>());
    let many: Vec<Option<String>> = redis::cmd("MGET")
        .arg("rp1")
        .arg("nope")
        .arg("rp99")
        .query(&mut conn)
        .expect("MGET");
    assert_eq!(
        many,
        vec![Some("1".to_string()), None, Some("99".to_string())]
    );
    let err = redis::cmd("WAIT")
        .arg(0)
        .arg(0)
        .query::<()>(&mut conn)
        .expect_err("WAIT is unsupported");
    assert_eq!(err.code(), Some("ERR"), "{err}");
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .expect("PING after an error");
    assert_eq!(pong, "PONG");
    // Another connection (a second handshake) sees the same data.
    let mut conn2 = s.proxy.conn();
    let v: i64 = redis::cmd("GET").arg("rk").query(&mut conn2).expect("GET");
    assert_eq!(v, 43);
}

#[test]
fn redis_cli_works_through_proxy() {
    let s = Shards::start(3);
    assert_eq!(s.proxy.cli(&["SET", "clikey", "clival"]), "OK");
    assert_eq!(s.proxy.cli(&["GET", "clikey"]), "clival");
    assert_eq!(s.proxy.cli(&["PING"]), "PONG");
    let at = s.holder("clikey");
    assert_eq!(s.servers[at].cli(&["GET", "clikey"]), "clival");
}

#[test]
fn unsupported_commands_are_refused_by_name() {
    let s = Shards::start(3);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", "keep", "me"]), Reply::ok());
    let cases: [&[&str]; 9] = [
        &["WAIT", "0", "0"],
        &["EXEC"],
        &["PUBSUB", "HELP"],
        &["RESET"],
        &["MONITOR"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["SCRIPT", "KILL"],
    ];
    for cmd in cases {
        let e = assert_err_then_usable(&mut c, cmd);
        assert!(
            e.to_lowercase().contains(&cmd[0].to_lowercase()),
            "{cmd:?}: error should name the command: {e:?}"
        );
    }
    assert_eq!(
        c.cmd(&["GET", "keep"]),
        bulk("me"),
        "FLUSHALL/FLUSHDB must not reach a backend"
    );
    let total: i64 = s.servers.iter().map(|srv| srv.dbsize()).sum();
    assert_eq!(total, 1);
}

#[test]
fn unknown_command_and_wrong_arity() {
    let s = Shards::start(3);
    let mut c = s.client();
    assert_err_then_usable(&mut c, &["NOSUCHCOMMAND", "x"]);
    assert_err_then_usable(&mut c, &["nosuchcommand"]);
    assert_eq!(
        c.cmd(&["GET"]),
        Reply::Error("ERR wrong number of arguments for 'get' command".into())
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(
        c.cmd(&["set", "only-key"]),
        Reply::Error("ERR wrong number of arguments for 'set' command".into())
    );
    assert_eq!(
        c.cmd(&["MGET"]),
        Reply::Error("ERR wrong number of arguments for 'mget' command".into())
    );
    assert_err_then_usable(&mut c, &["MSET", "a", "1", "b"]);
    assert_eq!(
        c.cmd(&["EXISTS", "a", "b"]),
        Reply::Int(0),
        "a malformed MSET must not write"
    );
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn large_values_round_trip() {
    let s = Shards::start(3);
    let mut c = s.client();
    let k = s.key_per_server("big");
    let values: Vec<Vec<u8>> = (0..3u8)
        .map(|i| (0..3_000_000u32).map(|j| (j as u8) ^ i).collect())
        .collect();
    for (key, v) in k.iter().zip(&values) {
        assert_eq!(c.cmd_bytes(&[b"SET", key.as_bytes(), v]), Reply::ok());
    }
    for (key, v) in k.iter().zip(&values) {
        assert_eq!(c.cmd(&["GET", key]), Reply::Bulk(v.clone()), "GET {key}");
    }
    let all = c.cmd(&["MGET", &k[2], &k[0], &k[1]]);
    assert_eq!(
        all,
        Reply::Array(vec![
            Reply::Bulk(values[2].clone()),
            Reply::Bulk(values[0].clone()),
            Reply::Bulk(values[1].clone())
        ])
    );
}

#[test]
fn several_clusters_in_one_process() {
    let a_servers = [RedisServer::start(), RedisServer::start()];
    let b_servers = [RedisServer::start(), RedisServer::start()];
    let a = ClusterConf::new("alpha", &[&a_servers[0], &a_servers[1]]);
    let b = ClusterConf::new("beta", &[&b_servers[0], &b_servers[1]])
        .set("distribution", "\"modula\"")
        .set("hash", "\"md5\"")
        .set("thread", "1");
    let proxy = Proxy::start(&config_toml(&[a, b]));
    assert_eq!(proxy.ports().len(), 2);
    let mut ca = crate::harness::Client::connect(proxy.ports()[0]);
    let mut cb = crate::harness::Client::connect(proxy.ports()[1]);
    let sets_a: Vec<Vec<String>> = (0..50)
        .map(|i| args(&["SET", &format!("a:{i}"), "A"]))
        .collect();
    let sets_b: Vec<Vec<String>> = (0..50)
        .map(|i| args(&["SET", &format!("b:{i}"), "B"]))
        .collect();
    assert!(ca.pipeline(&sets_a).iter().all(|r| *r == Reply::ok()));
    assert!(cb.pipeline(&sets_b).iter().all(|r| *r == Reply::ok()));
    for (servers, prefix) in [(&a_servers, "a:"), (&b_servers, "b:")] {
        let mut total = 0;
        for srv in servers.iter() {
            let keys = srv.keys();
            assert!(!keys.is_empty(), "{} got no keys", srv.addr());
            assert!(
                keys.iter().all(|k| k.starts_with(prefix)),
                "{} has foreign keys: {keys:?}",
                srv.addr()
            );
            total += keys.len();
        }
        assert_eq!(total, 50);
    }
    assert_eq!(
        ca.cmd(&["GET", "b:1"]),
        Reply::Nil,
        "cluster alpha must not see beta's keys"
    );
    assert_eq!(cb.cmd(&["GET", "b:1"]), bulk("B"));
    assert_eq!(ca.cmd(&["GET", "a:1"]), bulk("A"));
}
