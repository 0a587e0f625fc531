//! Blocking commands and transactions on backend connections of the
//! client's own (issue 13, items 1, 2, 4 and 7): a blocked client stalls
//! nobody, its timeout governs, a client that leaves releases its
//! connection at once, transactions run on one server, and the pool is
//! bounded by `max_dedicated_connections`.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Client, Proxy, RedisCluster, Reply, Shards, args, info_u64, poll_until};

/// One worker and one shared connection per server: anything that stalled
/// a shared connection would stall the other client here.
fn one_worker(servers: usize) -> Shards {
    Shards::start_with(servers, |c| {
        c.set("thread", "1")
            .set("server_connections", "1")
            .set("read_timeout", "300")
    })
}

#[test]
fn a_blocked_client_stalls_nobody_and_is_woken_by_a_push() {
    let s = one_worker(1);
    let mut normal = s.client();
    let mut blocked = s.client();
    assert_eq!(normal.cmd(&["SET", "k", "v"]), Reply::ok());
    for (block, push, want) in [
        (
            args(&["BLPOP", "q", "0"]),
            args(&["RPUSH", "q", "x"]),
            Reply::Array(vec![Reply::bulk("q"), Reply::bulk("x")]),
        ),
        (
            args(&["BZPOPMIN", "z", "0"]),
            args(&["ZADD", "z", "1", "m"]),
            Reply::Array(vec![Reply::bulk("z"), Reply::bulk("m"), Reply::bulk("1")]),
        ),
        (
            args(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]),
            args(&["RPUSH", "src", "y"]),
            Reply::bulk("y"),
        ),
    ] {
        let words: Vec<&str> = block.iter().map(String::as_str).collect();
        blocked.send_cmd(&words);
        assert!(
            !blocked.readable_within(Duration::from_millis(400)),
            "{words:?} returned without data (timeout 0 blocks past read_timeout = 300)"
        );
        // The other client, on the same worker, is served at once.
        let started = Instant::now();
        assert_eq!(normal.cmd(&["GET", "k"]), Reply::bulk("v"));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "a GET waited {:?} behind {words:?}",
            started.elapsed()
        );
        let pw: Vec<&str> = push.iter().map(String::as_str).collect();
        assert!(!normal.cmd(&pw).is_error());
        assert_eq!(blocked.read_reply().expect("woken"), want, "{words:?}");
    }
    // XREAD BLOCK, the stream form.
    assert!(!normal.cmd(&["XADD", "s", "1-1", "f", "v"]).is_error());
    blocked.send_cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    assert!(!blocked.readable_within(Duration::from_millis(400)));
    assert!(!normal.cmd(&["XADD", "s", "2-1", "g", "w"]).is_error());
    let r = blocked.read_reply().expect("XREAD woken");
    assert!(format!("{r:?}").contains("2-1"), "{r:?}");
}

#[test]
fn the_command_s_own_timeout_governs() {
    let s = one_worker(1);
    let mut c = s.client();
    // 0.6 s > read_timeout (300 ms): the block's own timeout is honoured.
    let started = Instant::now();
    assert_eq!(c.cmd(&["BRPOP", "none", "0.6"]), Reply::Nil);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_millis(2000),
        "BRPOP 0.6 answered after {took:?}"
    );
    let started = Instant::now();
    let r = c.cmd(&["XREAD", "BLOCK", "500", "STREAMS", "nostream", "$"]);
    assert_eq!(r, Reply::Nil, "XREAD BLOCK 500 on nothing");
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Data already there: no wait at all.
    assert!(!c.cmd(&["RPUSH", "l", "a"]).is_error());
    assert_eq!(
        c.cmd(&["BLMPOP", "0", "1", "l", "LEFT"]),
        Reply::Array(vec![Reply::bulk("l"), Reply::Array(vec![Reply::bulk("a")])])
    );
}

#[test]
fn a_blocked_client_s_later_requests_wait_for_it() {
    let s = one_worker(1);
    let mut blocked = s.client();
    let mut other = s.client();
    blocked.send_cmd(&["BLPOP", "wake", "0"]);
    blocked.send_cmd(&["SET", "after", "1"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        other.cmd(&["EXISTS", "after"]),
        Reply::Int(0),
        "a request sent after a blocking command ran before it was answered"
    );
    assert!(!other.cmd(&["RPUSH", "wake", "x"]).is_error());
    assert_eq!(
        blocked.read_reply().expect("BLPOP"),
        Reply::Array(vec![Reply::bulk("wake"), Reply::bulk("x")])
    );
    assert_eq!(blocked.read_reply().expect("SET"), Reply::ok());
    assert_eq!(other.cmd(&["GET", "after"]), Reply::bulk("1"));
}

#[test]
fn a_client_that_leaves_while_blocked_releases_its_connection_at_once() {
    let s = one_worker(1);
    let mut other = s.client();
    for _ in 0..3 {
        let mut gone = s.client();
        gone.send_cmd(&["BLPOP", "orphan", "0"]);
        assert!(!gone.readable_within(Duration::from_millis(200)));
        drop(gone);
    }
    thread::sleep(Duration::from_millis(200));
    // Had a dead client's BLPOP stayed on the server, it would take this.
    assert!(!other.cmd(&["RPUSH", "orphan", "kept"]).is_error());
    thread::sleep(Duration::from_millis(100));
    assert_eq!(other.cmd(&["LLEN", "orphan"]), Reply::Int(1));
    let gone = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut other, "dedicated_connections_in_use") == Some(0)).then_some(())
    });
    assert!(
        gone.is_some(),
        "connections still leased after the clients left"
    );
}

#[test]
fn dedicated_connections_are_pooled_bounded_and_counted() {
    let s = Shards::start_with(1, |c| {
        c.set("thread", "1").set("max_dedicated_connections", "1")
    });
    let mut a = s.client();
    let mut b = s.client();
    let mut watcher = s.client();
    a.send_cmd(&["BLPOP", "q1", "0"]);
    assert!(!a.readable_within(Duration::from_millis(200)));
    let counted = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut watcher, "blocked_clients") == Some(1)
            && info_u64(&mut watcher, "dedicated_connections_in_use") == Some(1))
        .then_some(())
    });
    assert!(counted.is_some(), "{:?}", watcher.cmd(&["INFO"]));
    // The only dedicated connection is taken: a clear refusal, at once.
    let r = b.cmd(&["BLPOP", "q2", "0"]);
    assert!(
        r.error()
            .is_some_and(|e| e.contains("max_dedicated_connections = 1")),
        "{r:?}"
    );
    assert!(!watcher.cmd(&["RPUSH", "q1", "x"]).is_error());
    assert!(!a.read_reply().expect("woken").is_error());
    // Released to the pool, then reused: still one connection in all.
    let pooled = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut watcher, "dedicated_connections_pooled") == Some(1)).then_some(())
    });
    assert!(pooled.is_some(), "{:?}", watcher.cmd(&["INFO"]));
    assert_eq!(b.cmd(&["BRPOP", "q2", "0.1"]), Reply::Nil);
    assert_eq!(
        info_u64(&mut watcher, "dedicated_connections_refused"),
        Some(1)
    );

    // max_dedicated_connections = 0: blocking commands are refused.
    let none = Shards::start_with(1, |c| c.set("max_dedicated_connections", "0"));
    let r = none.client().cmd(&["BLPOP", "q", "0"]);
    assert!(r.is_error(), "{r:?}");
}

#[test]
fn transactions_run_on_one_server_as_redis_runs_them() {
    let s = one_worker(3);
    let keys = s.key_per_server("tx");
    let mut c = s.client();
    // A plain transaction.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &keys[0], "1"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["INCR", &keys[0]]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["PING"]), Reply::status("QUEUED"));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Reply::Array(vec![Reply::ok(), Reply::Int(2), Reply::status("PONG")])
    );
    // PING queued before the first key still reaches the server's EXEC.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["ECHO", "hi"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::status("QUEUED"));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Reply::Array(vec![Reply::bulk("hi"), Reply::bulk("2")])
    );
    // No keyed command: answered without a server.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["PING"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::Array(vec![Reply::status("PONG")]));
    // A key on another server dooms the transaction, as a queued error does.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &keys[1], "a"]), Reply::status("QUEUED"));
    let r = c.cmd(&["SET", &keys[2], "b"]);
    assert!(r.error().is_some_and(|e| e.contains("one server")), "{r:?}");
    let r = c.cmd(&["EXEC"]);
    assert!(
        r.error().is_some_and(|e| e.starts_with("EXECABORT")),
        "{r:?}"
    );
    assert_eq!(c.cmd(&["EXISTS", &keys[1]]), Reply::Int(0), "nothing ran");
    // DISCARD, and the errors Redis gives.
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &keys[1], "a"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["DISCARD"]), Reply::ok());
    assert_eq!(c.cmd(&["EXISTS", &keys[1]]), Reply::Int(0));
    assert_eq!(c.cmd(&["EXEC"]).error(), Some("ERR EXEC without MULTI"));
    assert_eq!(
        c.cmd(&["DISCARD"]).error(),
        Some("ERR DISCARD without MULTI")
    );
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        c.cmd(&["MULTI"]).error(),
        Some("ERR MULTI calls can not be nested")
    );
    assert_eq!(
        c.cmd(&["WATCH", &keys[0]]).error(),
        Some("ERR WATCH inside MULTI is not allowed")
    );
    assert!(c.cmd(&["NOSUCHCOMMAND"]).is_error());
    let r = c.cmd(&["EXEC"]);
    assert!(
        r.error().is_some_and(|e| e.starts_with("EXECABORT")),
        "{r:?}"
    );
    // Requests after EXEC see what it wrote.
    c.send_cmd(&["MULTI"]);
    c.send_cmd(&["SET", &keys[2], "seen"]);
    c.send_cmd(&["EXEC"]);
    c.send_cmd(&["GET", &keys[2]]);
    let replies = c.read_replies(4);
    assert_eq!(replies[3], Reply::bulk("seen"), "{replies:?}");
}

#[test]
fn watch_makes_exec_fail_when_a_watched_key_changed() {
    let s = one_worker(2);
    let keys = s.key_per_server("w");
    let mut c = s.client();
    let mut other = s.client();
    assert_eq!(c.cmd(&["SET", &keys[0], "1"]), Reply::ok());
    // Untouched: EXEC runs.
    assert_eq!(c.cmd(&["WATCH", &keys[0]]), Reply::ok());
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", &keys[0]]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::Array(vec![Reply::Int(2)]));
    // Changed by another client: EXEC answers nil and nothing runs.
    assert_eq!(c.cmd(&["WATCH", &keys[0]]), Reply::ok());
    assert_eq!(other.cmd(&["SET", &keys[0], "10"]), Reply::ok());
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", &keys[0]]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::Nil);
    assert_eq!(other.cmd(&["GET", &keys[0]]), Reply::bulk("10"));
    // A WATCH on another server than the one watched: refused.
    assert_eq!(c.cmd(&["WATCH", &keys[0]]), Reply::ok());
    let r = c.cmd(&["WATCH", &keys[1]]);
    assert!(r.error().is_some_and(|e| e.contains("one server")), "{r:?}");
    assert_eq!(c.cmd(&["UNWATCH"]), Reply::ok());
    // After UNWATCH a change no longer matters.
    assert_eq!(other.cmd(&["SET", &keys[0], "11"]), Reply::ok());
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", &keys[0]]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::Array(vec![Reply::Int(12)]));
}

#[test]
fn cluster_mode_blocks_and_runs_transactions_per_node() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("thread", "1")]).to_toml());
    let mut c = proxy.client();
    let mut other = proxy.client();
    c.send_cmd(&["BLPOP", "{cq}list", "0"]);
    assert!(!c.readable_within(Duration::from_millis(300)));
    assert_eq!(other.cmd(&["SET", "{cq}k", "v"]), Reply::ok());
    assert!(!other.cmd(&["RPUSH", "{cq}list", "x"]).is_error());
    assert_eq!(
        c.read_reply().expect("woken"),
        Reply::Array(vec![Reply::bulk("{cq}list"), Reply::bulk("x")])
    );
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["INCR", "{cq}n"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["GET", "{cq}k"]), Reply::status("QUEUED"));
    assert_eq!(
        c.cmd(&["EXEC"]),
        Reply::Array(vec![Reply::Int(1), Reply::bulk("v")])
    );
}

/// A client's pipelined requests around a transaction ran out of order:
/// the plain ones went on shared connections, the transaction on one of
/// its own, and nothing ordered the two. A request that moves the client
/// onto its own connection now waits for its earlier requests.
#[test]
fn pipelined_requests_around_transactions_and_blocks_run_in_order() {
    for s in [one_worker(1), one_worker(3)] {
        let mut c = s.client();
        let mut check = s.client();
        for i in 0..40 {
            let (b, v) = (format!("b{i}"), format!("c{i}"));
            let mut batch = Vec::new();
            for cmd in [
                &["WATCH", "fin"][..],
                &["UNWATCH"],
                &["SET", "fin", &b],
                &["MULTI"],
                &["SET", "fin", &v],
                &["EXEC"],
                &["SET", "x", "1"],
                &["MULTI"],
                &["INCR", "x"],
                &["EXEC"],
                &["RPUSH", "q", "a"],
                &["BLPOP", "q", "0"],
            ] {
                batch.extend(crate::harness::encode_str(cmd));
            }
            c.send(&batch);
            let replies = c.read_replies(12);
            assert_eq!(
                check.cmd(&["GET", "fin"]),
                Reply::bulk(&v),
                "round {i}: {replies:?}"
            );
            assert_eq!(replies[9], Reply::Array(vec![Reply::Int(2)]), "round {i}");
            assert_eq!(
                replies[11],
                Reply::Array(vec![Reply::bulk("q"), Reply::bulk("a")]),
                "round {i}"
            );
        }
    }
}

#[test]
fn sigterm_closes_blocked_clients_at_once() {
    let mut s = one_worker(1);
    let mut blocked = s.client();
    blocked.send_cmd(&["BLPOP", "never", "0"]);
    assert!(!blocked.readable_within(Duration::from_millis(300)));
    let started = Instant::now();
    s.proxy.signal("TERM");
    assert!(
        blocked.closed_within(Duration::from_secs(2)),
        "a blocked client was kept by the drain"
    );
    let exited = s.proxy.wait_exit(Duration::from_secs(4));
    assert!(
        exited.is_some() && started.elapsed() < Duration::from_secs(3),
        "the proxy waited {:?} for a blocked client",
        started.elapsed()
    );
}

#[test]
fn a_subscribe_is_applied_whole_or_refused_whole() {
    let s = Shards::start_with(3, |c| {
        c.set("thread", "1").set("max_dedicated_connections", "2")
    });
    let chans = s.key_per_server("whole");
    let mut sub = s.client();
    sub.send_cmd(&["SUBSCRIBE", &chans[0], &chans[1], &chans[2]]);
    let r = sub.read_reply().expect("reply");
    assert!(
        r.error().is_some_and(|e| e.contains("pub/sub")),
        "three servers, two connections allowed: {r:?}"
    );
    assert!(
        !sub.readable_within(Duration::from_millis(200)),
        "more replies"
    );
    // Nothing was left subscribed: a normal command still works (RESP2).
    assert_eq!(sub.cmd(&["SET", "k", "v"]), Reply::ok());
}

#[test]
fn a_reload_that_lowers_the_bound_trims_the_pool() {
    let s = Shards::start_with(1, |c| {
        c.set("thread", "1").set("max_dedicated_connections", "8")
    });
    let mut clients: Vec<Client> = (0..4).map(|_| s.client()).collect();
    for c in &mut clients {
        c.send_cmd(&["BLPOP", "trim", "0"]);
    }
    let mut w = s.client();
    let all = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut w, "dedicated_connections_in_use") == Some(4)).then_some(())
    });
    assert!(all.is_some());
    for _ in 0..4 {
        assert!(!w.cmd(&["RPUSH", "trim", "x"]).is_error());
    }
    for c in &mut clients {
        assert!(!c.read_reply().expect("woken").is_error());
    }
    let pooled = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut w, "dedicated_connections_pooled") == Some(4)).then_some(())
    });
    assert!(pooled.is_some(), "{:?}", w.cmd(&["INFO"]));
    std::fs::write(
        s.proxy.config_path(),
        s.conf
            .clone()
            .set("max_dedicated_connections", "1")
            .to_toml(),
    )
    .expect("rewrite config");
    s.proxy.signal("HUP");
    let trimmed = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut w, "dedicated_connections_pooled") == Some(1)).then_some(())
    });
    assert!(trimmed.is_some(), "{:?}", w.cmd(&["INFO"]));
}

/// Dedicated connections are opened as shared ones are: backend password,
/// `backend_db` (and HELLO 3 for RESP3 clients) first.
#[test]
fn dedicated_connections_get_the_backend_options() {
    let s = one_worker(1);
    let mut direct = s.servers[0].client();
    assert_eq!(
        direct.cmd(&["CONFIG", "SET", "requirepass", "bpass"]),
        Reply::ok()
    );
    // A proxy of its own (the Shards one keeps its port, without these).
    let conf = crate::harness::ClusterConf::new("opts", &[&s.servers[0]])
        .set("thread", "1")
        .set("backend_password", "\"bpass\"")
        .set("backend_db", "3");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "in3", "m"]), Reply::status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), Reply::Array(vec![Reply::ok()]));
    assert!(!c.cmd(&["RPUSH", "l3", "x"]).is_error());
    assert_eq!(
        c.cmd(&["BLPOP", "l3", "1"]),
        Reply::Array(vec![Reply::bulk("l3"), Reply::bulk("x")])
    );
    let mut r3 = proxy.client();
    assert!(!r3.cmd(&["HELLO", "3"]).is_error());
    assert_eq!(r3.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(r3.cmd(&["HSET", "h3", "f", "v"]), Reply::status("QUEUED"));
    assert_eq!(r3.cmd(&["HGETALL", "h3"]), Reply::status("QUEUED"));
    r3.send_cmd(&["EXEC"]);
    let raw = r3.read_raw(1, Duration::from_secs(2));
    assert!(
        raw.starts_with(b"*2\r\n:1\r\n%1\r\n"),
        "a RESP3 client's transaction runs on a RESP3 connection: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(direct.cmd(&["AUTH", "bpass"]), Reply::ok());
    assert_eq!(direct.cmd(&["SELECT", "3"]), Reply::ok());
    assert_eq!(direct.cmd(&["GET", "in3"]), Reply::bulk("m"));
    assert_eq!(direct.cmd(&["EXISTS", "h3"]), Reply::Int(1));
    assert_eq!(direct.cmd(&["SELECT", "0"]), Reply::ok());
    assert_eq!(direct.cmd(&["DBSIZE"]), Reply::Int(0));
}
