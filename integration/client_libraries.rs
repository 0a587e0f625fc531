//! Real client libraries through the proxy, in sharding and cluster mode:
//! the `redis` crate and redis-py.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::{
    Proxy, RedisCluster, Reply, Shards, keys_with, python_available, redis_conn, run_python,
};

// ---------------------------------------------------------------------------
// Real client libraries, both modes
// ---------------------------------------------------------------------------

/// The `redis` crate (sync API) through the proxy on `port`: handshake,
/// common commands, a 100-command pipeline, errors. Keys start with `p`.
fn exercise_redis_crate(port: u16, p: &str) {
    use redis::Commands;
    let k = |s: &str| format!("{s}:{p}");
    let mut conn = redis_conn(port);

    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");

    // strings
    let () = conn.set(k("s"), "hello").expect("SET");
    let v: String = conn.get(k("s")).expect("GET");
    assert_eq!(v, "hello");
    let n: usize = conn.append(k("s"), " world").expect("APPEND");
    assert_eq!(n, 11);
    let v: String = conn.getrange(k("s"), 0, 4).expect("GETRANGE");
    assert_eq!(v, "hello");
    let n: i64 = conn.incr(k("n"), 1).expect("INCR");
    assert_eq!(n, 1);
    let n: i64 = conn.incr(k("n"), 41).expect("INCRBY");
    assert_eq!(n, 42);
    let set: bool = conn.set_nx(k("s"), "x").expect("SETNX");
    assert!(!set);
    let none: Option<String> = conn.get(k("missing")).expect("GET missing");
    assert_eq!(none, None);

    // expire / ttl
    let () = conn.set_ex(k("e"), "v", 100).expect("SETEX");
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    let ok: bool = conn.persist(k("e")).expect("PERSIST");
    assert!(ok);
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert_eq!(ttl, -1);
    let ok: bool = conn.expire(k("e"), 50).expect("EXPIRE");
    assert!(ok);
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert!((1..=50).contains(&ttl), "ttl {ttl}");
    let ttl: i64 = conn.ttl(k("missing")).expect("TTL");
    assert_eq!(ttl, -2);

    // hashes
    let () = conn
        .hset_multiple(k("h"), &[("a", "1"), ("b", "2")])
        .expect("HSET");
    let v: String = conn.hget(k("h"), "a").expect("HGET");
    assert_eq!(v, "1");
    let all: BTreeMap<String, String> = conn.hgetall(k("h")).expect("HGETALL");
    assert_eq!(
        all,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    let n: i64 = conn.hincr(k("h"), "a", 5).expect("HINCRBY");
    assert_eq!(n, 6);
    let n: usize = conn.hdel(k("h"), "b").expect("HDEL");
    assert_eq!(n, 1);
    let n: usize = conn.hlen(k("h")).expect("HLEN");
    assert_eq!(n, 1);

    // lists
    let n: usize = conn.rpush(k("l"), &["a", "b", "c"]).expect("RPUSH");
    assert_eq!(n, 3);
    let n: usize = conn.lpush(k("l"), "z").expect("LPUSH");
    assert_eq!(n, 4);
    let l: Vec<String> = conn.lrange(k("l"), 0, -1).expect("LRANGE");
    assert_eq!(l, ["z", "a", "b", "c"]);
    let v: Option<String> = conn.lpop(k("l"), None).expect("LPOP");
    assert_eq!(v.as_deref(), Some("z"));
    let n: usize = conn.llen(k("l")).expect("LLEN");
    assert_eq!(n, 3);

    // sets
    let n: usize = conn.sadd(k("set"), &["a", "b", "c"]).expect("SADD");
    assert_eq!(n, 3);
    let m: BTreeSet<String> = conn.smembers(k("set")).expect("SMEMBERS");
    assert_eq!(m, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
    let is: bool = conn.sismember(k("set"), "b").expect("SISMEMBER");
    assert!(is);
    let n: usize = conn.srem(k("set"), "a").expect("SREM");
    assert_eq!(n, 1);
    let n: usize = conn.scard(k("set")).expect("SCARD");
    assert_eq!(n, 2);

    // sorted sets
    let n: usize = conn
        .zadd_multiple(k("z"), &[(1, "a"), (2, "b"), (3, "c")])
        .expect("ZADD");
    assert_eq!(n, 3);
    let z: Vec<(String, f64)> = conn.zrange_withscores(k("z"), 0, -1).expect("ZRANGE");
    assert_eq!(
        z,
        vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.0)]
    );
    let s: f64 = conn.zincr(k("z"), "a", 10).expect("ZINCRBY");
    assert_eq!(s, 11.0);
    let s: Option<f64> = conn.zscore(k("z"), "b").expect("ZSCORE");
    assert_eq!(s, Some(2.0));
    let r: Option<usize> = conn.zrank(k("z"), "a").expect("ZRANK");
    assert_eq!(r, Some(2));
    let n: usize = conn.zcard(k("z")).expect("ZCARD");
    assert_eq!(n, 3);

    // multi-key commands over several servers / slots
    let keys: Vec<String> = (0..20).map(|i| k(&format!("{i}m"))).collect();
    let items: Vec<(String, String)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (key.clone(), format!("v{i}")))
        .collect();
    let () = conn.mset(&items).expect("MSET");
    let mut ask = keys.clone();
    ask.push(k("nope"));
    let got: Vec<Option<String>> = conn.mget(&ask).expect("MGET");
    let mut want: Vec<Option<String>> = (0..20).map(|i| Some(format!("v{i}"))).collect();
    want.push(None);
    assert_eq!(got, want);
    let n: usize = conn.exists(&keys).expect("EXISTS");
    assert_eq!(n, 20);
    let n: usize = conn.del(&keys).expect("DEL");
    assert_eq!(n, 20);
    let n: usize = conn.exists(&keys).expect("EXISTS");
    assert_eq!(n, 0);

    // a non-transactional pipeline of 100 commands
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.set(k(&format!("{i}p")), i);
    }
    for i in 0..50 {
        pipe.get(k(&format!("{i}p")));
    }
    let got: Vec<redis::Value> = pipe.query(&mut conn).expect("pipeline");
    assert_eq!(got.len(), 100);
    for (i, v) in got.iter().enumerate() {
        match (i < 50, v) {
            (true, redis::Value::Okay) => {}
            (false, redis::Value::BulkString(b)) => {
                assert_eq!(String::from_utf8_lossy(b), (i - 50).to_string());
            }
            _ => panic!("pipeline reply {i}: {v:?}"),
        }
    }

    // errors: refused by the proxy, and from a backend; the connection stays
    let err = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query::<redis::Value>(&mut conn)
        .expect_err("CONFIG is not supported");
    assert_eq!(err.code(), Some("ERR"), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
    let err = conn
        .lpush::<_, _, usize>(k("s"), "x")
        .expect_err("LPUSH on a string");
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
    let v: String = conn.get(k("s")).expect("GET after errors");
    assert_eq!(v, "hello world");
    let id2: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");
    assert_eq!(id, id2, "the errors did not cost the connection");
}

const REDIS_PY_SCRIPT: &str = r#"
import sys
import redis

port, p, proto = int(sys.argv[1]), sys.argv[2], sys.argv[3]
major = int(redis.__version__.split(".")[0])
assert major >= 5, "redis-py %s is older than 5" % redis.__version__
print("redis-py", redis.__version__, "protocol", proto)
# "default": what redis.Redis() picks (RESP3 since redis-py 8).
extra = {} if proto == "default" else {"protocol": int(proto)}


def k(s):
    return "%s:%s" % (s, p)


# Connecting sends CLIENT SETINFO LIB-NAME / LIB-VER (redis-py 5+).
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10,
                socket_connect_timeout=5, decode_responses=True, **extra)
assert r.ping() is True
assert r.client_setinfo("LIB-NAME", "aster-ops-test") is True
cid = r.client_id()

# strings
assert r.set(k("s"), "hello") is True
assert r.get(k("s")) == "hello"
assert r.append(k("s"), " world") == 11
assert r.strlen(k("s")) == 11
assert r.getrange(k("s"), 0, 4) == "hello"
assert r.incr(k("n")) == 1
assert r.incrby(k("n"), 41) == 42
assert r.decr(k("n")) == 41
assert r.setnx(k("s"), "x") is False
assert r.get(k("missing")) is None

# expire / ttl
assert r.set(k("e"), "v", ex=100) is True
assert 0 < r.ttl(k("e")) <= 100
assert r.persist(k("e")) is True
assert r.ttl(k("e")) == -1
assert r.expire(k("e"), 50) is True
assert 0 < r.ttl(k("e")) <= 50
assert r.pexpire(k("e"), 100000) is True
assert 0 < r.pttl(k("e")) <= 100000
assert r.ttl(k("missing")) == -2

# hashes
assert r.hset(k("h"), mapping={"a": "1", "b": "2"}) == 2
assert r.hget(k("h"), "a") == "1"
assert r.hgetall(k("h")) == {"a": "1", "b": "2"}
assert r.hincrby(k("h"), "a", 5) == 6
assert r.hexists(k("h"), "b") is True
assert r.hdel(k("h"), "b") == 1
assert r.hlen(k("h")) == 1
assert r.hkeys(k("h")) == ["a"]

# lists
assert r.rpush(k("l"), "a", "b", "c") == 3
assert r.lpush(k("l"), "z") == 4
assert r.lrange(k("l"), 0, -1) == ["z", "a", "b", "c"]
assert r.lpop(k("l")) == "z"
assert r.rpop(k("l")) == "c"
assert r.llen(k("l")) == 2
assert r.lindex(k("l"), 1) == "b"

# sets
assert r.sadd(k("set"), "a", "b", "c") == 3
assert r.smembers(k("set")) == {"a", "b", "c"}
assert r.sismember(k("set"), "b")
assert r.srem(k("set"), "a") == 1
assert r.scard(k("set")) == 2

# sorted sets
assert r.zadd(k("z"), {"a": 1, "b": 2, "c": 3}) == 3
assert r.zrange(k("z"), 0, -1, withscores=True) == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
assert r.zscore(k("z"), "b") == 2.0
assert r.zincrby(k("z"), 10, "a") == 11.0
assert r.zrank(k("z"), "a") == 2
assert r.zcard(k("z")) == 3
assert r.zrangebyscore(k("z"), 2, 3) == ["b", "c"]

# multi-key commands over several servers / slots
keys = [k("%dm" % i) for i in range(20)]
assert r.mset({key: "v%d" % i for i, key in enumerate(keys)}) is True
assert r.mget(keys + [k("nope")]) == ["v%d" % i for i in range(20)] + [None]
assert r.exists(*keys) == 20
assert r.delete(*keys) == 20
assert r.exists(*keys) == 0

# a non-transactional pipeline of 100 commands
pipe = r.pipeline(transaction=False)
for i in range(50):
    pipe.set(k("%dp" % i), i)
for i in range(50):
    pipe.get(k("%dp" % i))
res = pipe.execute()
assert len(res) == 100, res
assert res[:50] == [True] * 50, res[:50]
assert res[50:] == [str(i) for i in range(50)], res[50:]

# errors: refused by the proxy, and from a backend; the connection stays
try:
    r.execute_command("CONFIG", "GET", "maxmemory")
    raise AssertionError("CONFIG did not raise")
except redis.ResponseError as e:
    assert "not supported" in str(e), e
try:
    r.lpush(k("s"), "x")
    raise AssertionError("LPUSH on a string did not raise")
except redis.ResponseError as e:
    assert "WRONGTYPE" in str(e), e
pipe = r.pipeline(transaction=False)
pipe.set(k("q"), 1)
pipe.execute_command("CONFIG", "GET", "maxmemory")
pipe.get(k("q"))
res = pipe.execute(raise_on_error=False)
assert res[0] is True and isinstance(res[1], redis.ResponseError) and res[2] == "1", res
assert r.get(k("s")) == "hello world"
assert r.client_id() == cid, "the errors cost the connection"
print("ALL OK")
"#;

/// Runs the redis-py script against the proxy on `port` with `protocol`
/// ("2", or "default" for redis-py's own default); panics with its output
/// unless it prints ALL OK. Returns false if python3 is missing.
fn exercise_redis_py(port: u16, prefix: &str, protocol: &str) -> bool {
    if !python_available() {
        return false;
    }
    let run = run_python(
        REDIS_PY_SCRIPT,
        &[&port.to_string(), prefix, protocol],
        Duration::from_secs(60),
    );
    assert!(
        !run.stderr.contains("No module named 'redis'"),
        "redis-py is not installed: scripts/test.sh installs it \
         (python3 -m pip install 'redis>=5')\n{}",
        run.stderr
    );
    assert!(
        run.passed("ALL OK"),
        "redis-py through the proxy on {port} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    true
}

#[test]
fn redis_crate_client_through_sharding_proxy() {
    let s = Shards::start(3);
    exercise_redis_crate(s.proxy.port(), "rs");
    assert_landed_on_backends(&s, "rs");
}

/// What a client library wrote with `tag` is really on the backends: the
/// string on its one server, the pipeline's keys spread over all three.
fn assert_landed_on_backends(s: &Shards, tag: &str) {
    let key = format!("s:{tag}");
    let at = s.holder(&key);
    assert_eq!(
        s.servers[at].client().cmd(&["GET", &key]),
        Reply::bulk("hello world")
    );
    let prefix = format!("p:{tag}");
    let spread = s
        .servers
        .iter()
        .filter(|srv| keys_with(srv, &prefix) > 0)
        .count();
    assert_eq!(spread, 3, "pipeline keys should land on every server");
}

#[test]
fn redis_py_client_through_sharding_proxy() {
    let s = Shards::start(3);
    if !exercise_redis_py(s.proxy.port(), "py", "2") {
        return;
    }
    assert_landed_on_backends(&s, "py");
}

#[test]
fn client_libraries_through_cluster_proxy() {
    let cluster = RedisCluster::start(3, 0);
    let conf = cluster.proxy_conf(&[]);
    let proxy = Proxy::start(&conf.to_toml());
    exercise_redis_crate(proxy.port(), "rsc");
    let owner = cluster.key_owner("s:rsc");
    assert_eq!(
        cluster.cmd(owner, &["GET", "s:rsc"]),
        Reply::bulk("hello world")
    );
    let python = exercise_redis_py(proxy.port(), "pyc", "2");
    if python {
        let owner = cluster.key_owner("s:pyc");
        assert_eq!(
            cluster.cmd(owner, &["GET", "s:pyc"]),
            Reply::bulk("hello world")
        );
    }
    // The pipeline keys are spread over all three masters.
    let spread = (0..cluster.len())
        .filter(|&n| (0..50).any(|i| cluster.key_owner(&format!("{i}p:rsc")) == n))
        .count();
    assert_eq!(spread, 3);
    for i in 0..50 {
        let key = format!("{i}p:rsc");
        let owner = cluster.key_owner(&key);
        assert_eq!(
            cluster.cmd(owner, &["GET", &key]),
            Reply::bulk(&i.to_string())
        );
    }
}

/// redis-py 8 made RESP3 its default: `redis.Redis()` opens every connection
/// with HELLO 3 and gives up on any error. aster answers HELLO 3 with
/// NOPROTO (it speaks RESP2 only), so an application that does not pass
/// `protocol=2` cannot connect at all.
#[test]
fn redis_py_default_protocol_client_connects() {
    let s = Shards::start(2);
    exercise_redis_py(s.proxy.port(), "pyd", "default");
}
