//! A client's commands run in the order it sent them: across a route change
//! while earlier requests are unanswered (a slot moved, MOVED coming back
//! late), between WATCH and EXEC, and across a protocol switch; and a server
//! that comes back serves the first request sent to it.

use std::time::Duration;

use crate::harness::{
    Client, Proxy, RedisCluster, RedisServer, Reply, Rng, Shards, encode_str, key_slot, poll_until,
    seed_from_env,
};

/// Keys `{prefix}N` until one is owned by `node`.
fn key_on(rc: &RedisCluster, node: usize, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| rc.key_owner(k) == node)
        .expect("a key for every master")
}

/// Sends several commands in one write.
fn send_all(c: &mut Client, cmds: &[&[&str]]) {
    let mut bytes = Vec::new();
    for cmd in cmds {
        bytes.extend(encode_str(cmd));
    }
    c.send(&bytes);
}

/// Three masters that will not fail a node stopped for a few seconds, and
/// aster in front (one worker, `read_timeout` 4 s, no periodic refresh,
/// logging its table updates).
fn stalled_node_cluster() -> (RedisCluster, Proxy) {
    let rc = RedisCluster::start(3, 0);
    rc.set_node_timeout(30_000);
    let conf = rc.proxy_conf(&[("thread", "1"), ("read_timeout", "4000"), ("fetch", "3600")]);
    let proxy = Proxy::start_with_args(&conf.to_toml(), &["-v", "info"]);
    (rc, proxy)
}

/// The reproduction: a write stuck on a slot's old owner comes back
/// with MOVED after the proxy learned the new owner and got a later write
/// for the same key. The later write must not run first.
#[test]
fn a_write_redirected_late_does_not_overwrite_a_later_one() {
    let (mut rc, proxy) = stalled_node_cluster();
    let masters = rc.masters();
    let (a, c_node) = (masters[0], masters[1]);
    let b = masters[2];
    let k = key_on(&rc, a, "k");
    let q = key_on(&rc, c_node, "q");

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &k, "v0"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &q, "x"]), Reply::ok());
    let updates = proxy.log().matches("slot table updated").count();

    // Behind the proxy's back: k's slot to B, q's slot to B.
    rc.move_slot(key_slot(&k), b);
    rc.move_slot(key_slot(&q), b);

    rc.pause(a);
    send_all(&mut c, &[&["SET", &k, "v1"], &["GET", &q]]);
    // GET q is answered MOVED by C: the proxy follows it and refreshes its
    // table, learning that k's slot is on B now.
    let learned = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (proxy.log().matches("slot table updated").count() > updates).then_some(())
    });
    if learned.is_none() {
        rc.resume(a);
        panic!("no table refresh within 5 s of the MOVED");
    }
    send_all(&mut c, &[&["SET", &k, "v2"], &["GET", &k]]);
    std::thread::sleep(Duration::from_millis(300));
    rc.resume(a);

    c.set_timeout(Duration::from_secs(10));
    let replies = c.read_replies(4);
    assert_eq!(
        replies,
        vec![
            Reply::ok(),
            Reply::bulk("x"),
            Reply::ok(),
            Reply::bulk("v2")
        ]
    );
    assert_eq!(
        c.cmd(&["GET", &k]),
        Reply::bulk("v2"),
        "the acknowledged later write was overwritten by the earlier one"
    );
    assert_eq!(rc.cmd(b, &["GET", &k]), Reply::bulk("v2"));
}

/// Found by the fault run (integration/chaos.rs): a request that comes back
/// with MOVED is re-sent to the node it names, yet the client's later
/// requests kept going where the (unchanged) route table says. When that
/// node owns the slot again by then, they ran before the re-sent one.
///
/// aster's table says k's slot is on B (it was, before it moved to A behind
/// aster's back); B is importing it back from A, k already on B; A is
/// stopped. `SET k v1` goes to B, which answers MOVED A: re-sent to A, it
/// waits there. B then takes the slot (SETSLOT NODE), so the table aster
/// has is right again and no table change holds anything back: `SET k v2`
/// goes to B and runs. When A resumes it sends `SET k v1` back (ASK or
/// MOVED) to B: it must not land on top of v2. (The refresh the MOVED asks
/// for tries A first, the owner of slot 0, and waits on it: nothing changes
/// the table meanwhile.)
#[test]
fn a_write_redirected_to_a_stalled_node_is_not_overtaken() {
    let (mut rc, proxy) = stalled_node_cluster();
    // A owns slot 0: aster lists it first, and asks it first for the table.
    let a = rc.slot_owner(0);
    let b = rc.other_master(a);
    let k = key_on(&rc, b, "k");
    let slot = key_slot(&k);
    assert_ne!(slot, 0);

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &k, "v0"]), Reply::ok());
    // Behind aster's back: the slot to A, then being imported back by B,
    // k already moved.
    rc.move_slot(slot, a);
    rc.begin_migration(slot, a, b);
    rc.migrate_keys(a, b, &[&k]);
    rc.reset_stats();
    // B first: the importing node takes the slot, then the others learn it.
    let mut others = vec![b];
    others.extend(rc.masters().into_iter().filter(|&m| m != a && m != b));

    rc.pause(a);
    send_all(&mut c, &[&["SET", &k, "v1"]]);
    let moved = poll_until(Duration::from_secs(5), Duration::from_millis(5), || {
        (rc.cmdstat(b, "set").rejected_calls > 0).then_some(())
    });
    if moved.is_none() {
        rc.resume(a);
        panic!("B did not answer the first SET with MOVED");
    }
    // B takes the slot: aster's table is right again.
    rc.set_slot_node(slot, b, &others);
    send_all(&mut c, &[&["SET", &k, "v2"], &["GET", &k]]);
    std::thread::sleep(Duration::from_millis(300));
    rc.resume(a);

    c.set_timeout(Duration::from_secs(10));
    assert_eq!(
        c.read_replies(3),
        vec![Reply::ok(), Reply::ok(), Reply::bulk("v2")]
    );
    assert_eq!(
        c.cmd(&["GET", &k]),
        Reply::bulk("v2"),
        "the acknowledged later write was overwritten by the earlier one"
    );
    rc.finish_migration(slot, a, b);
}

/// What Redis answers for a pipeline written in one go, against the same
/// pipeline through the proxy.
fn same_as_redis(proxy_port: u16, reference: &RedisServer, cmds: &[&[&str]]) {
    let mut want_c = reference.client();
    send_all(&mut want_c, cmds);
    let want = want_c.read_replies(cmds.len());
    let mut c = Client::connect(proxy_port);
    send_all(&mut c, cmds);
    let got = c.read_replies(cmds.len());
    assert_eq!(got, want, "pipeline {cmds:?}");
}

/// The client's own write to a watched key, pipelined between WATCH and
/// MULTI, aborts the transaction; its reads see its writes.
fn watch_pipelines(port: u16, reference: &RedisServer) {
    for round in 0..20 {
        let key = format!("{{t{round}}}k");
        let other = format!("{{t{round}}}o");
        same_as_redis(
            port,
            reference,
            &[
                &["WATCH", &key],
                &["SET", &key, "x"],
                &["MULTI"],
                &["SET", &key, "y"],
                &["EXEC"],
                &["GET", &key],
            ],
        );
        same_as_redis(
            port,
            reference,
            &[
                &["WATCH", &key],
                &["SET", &other, "x"],
                &["GET", &other],
                &["MGET", &other, &key],
                &["MULTI"],
                &["GET", &other],
                &["EXEC"],
                &["DEL", &key, &other],
            ],
        );
    }
}

#[test]
fn commands_between_watch_and_multi_run_in_order_redis_mode() {
    let s = Shards::start(3);
    let reference = RedisServer::start();
    watch_pipelines(s.proxy.port(), &reference);
}

#[test]
fn commands_between_watch_and_multi_run_in_order_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    let reference = RedisServer::start();
    watch_pipelines(proxy.port(), &reference);
}

/// HELLO 3 moves a client to other backend connections: what it sent before
/// must still run first.
#[test]
fn requests_before_a_protocol_switch_run_first() {
    let s = Shards::start(2);
    let mut c = s.client();
    // Enough bytes before the switch that the server is still reading the
    // first connection when the second one's request arrives.
    let value = "v".repeat(16 * 1024);
    for round in 0..6 {
        let key = format!("hello:{round}");
        let mut bytes = Vec::new();
        for _ in 0..64 {
            bytes.extend(encode_str(&["SET", &key, &value]));
        }
        bytes.extend(encode_str(&["SET", &key, "last"]));
        bytes.extend(encode_str(&[
            "HELLO",
            if round % 2 == 0 { "3" } else { "2" },
        ]));
        bytes.extend(encode_str(&["GET", &key]));
        c.send(&bytes);
        let replies = c.read_replies(67);
        let last = replies.last().cloned();
        assert_eq!(last, Some(Reply::bulk("last")), "round {round}");
    }
}

/// twemproxy connects on demand: once a server that was down answers again,
/// the next request reaches it, however often connects failed before.
#[test]
fn a_restarted_server_serves_its_next_request() {
    let mut servers = [RedisServer::start(), RedisServer::start()];
    let yml = format!(
        "pool:\n  listen: 127.0.0.1:{}\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  \
         preconnect: true\n  auto_eject_hosts: false\n  server_failure_limit: 2\n  \
         server_retry_timeout: 2000\n  servers:\n   - {}:1\n   - {}:1\n",
        crate::harness::free_port(),
        servers[0].addr(),
        servers[1].addr(),
    );
    let proxy = Proxy::start_yml(&yml, &[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["MSET", "a", "1", "b", "2", "c", "3"]), Reply::ok());
    // Twice, after failures for a while: a backoff would have grown to
    // 0.8-1 s, and refused what is sent as soon as the servers are back.
    for (round, failing) in [1200u64, 1700].into_iter().enumerate() {
        for s in &mut servers {
            s.kill();
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(failing) {
            let r = c.cmd(&["MSET", "a", "1", "b", "2", "c", "3"]);
            assert!(r.is_error(), "MSET with both servers down: {r:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        for s in &mut servers {
            s.restart();
        }
        let replies = c.pipeline(&[
            crate::harness::args(&["MSET", "a", "1", "b", "2", "c", "3"]),
            crate::harness::args(&["MGET", "a", "b", "c"]),
        ]);
        assert_eq!(
            replies,
            vec![
                Reply::ok(),
                Reply::Array(vec![Reply::bulk("1"), Reply::bulk("2"), Reply::bulk("3")])
            ],
            "round {round}: the first requests after both servers answer PING again"
        );
    }
}

// ---------------------------------------------------------------------------
// Modes mixed in one pipeline, against a plain redis-server
// ---------------------------------------------------------------------------

/// One pipeline of plain commands, WATCH/MULTI/EXEC/DISCARD/UNWATCH and
/// blocking pops interleaved, sometimes ending in SUBSCRIBE: written in one
/// go. Transactions and WATCH use tag `{a}` (one server, as aster requires);
/// plain commands any of three tags, so they spread over the servers.
fn mixed_pipeline(rng: &mut Rng, round: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut in_multi = false;
    let key = |tag: &str, kind: &str| format!("{{{tag}}}r{round}:{kind}");
    let n = 15 + rng.below(25);
    for i in 0..n {
        let tag = if in_multi {
            "a"
        } else {
            rng.pick(&["a", "a", "b", "c"])
        };
        let v = i.to_string();
        let cmd: Vec<String> = match rng.below(20) {
            0 | 1 if !in_multi => vec!["WATCH".into(), key("a", rng.pick(&["s", "n", "l"]))],
            2 if !in_multi => {
                in_multi = true;
                vec!["MULTI".into()]
            }
            3 | 4 if in_multi => {
                in_multi = false;
                vec![if rng.one_in(3) { "DISCARD" } else { "EXEC" }.into()]
            }
            5 if !in_multi => vec!["UNWATCH".into()],
            6 => vec![
                rng.pick(&["BLPOP", "BRPOP"]).into(),
                key(tag, "l"),
                "0.01".into(),
            ],
            7 if !in_multi => vec!["MGET".into(), key("a", "s"), key("b", "s"), key("c", "s")],
            8 if !in_multi => vec![
                "MSET".into(),
                key("a", "s"),
                v.clone(),
                key("b", "s"),
                v.clone(),
            ],
            9 | 10 => vec!["INCR".into(), key(tag, "n")],
            11 | 12 => vec!["RPUSH".into(), key(tag, "l"), v],
            13 => vec!["LRANGE".into(), key(tag, "l"), "0".into(), "-1".into()],
            14 | 15 => vec!["GET".into(), key(tag, "s")],
            16 => vec!["DEL".into(), key(tag, rng.pick(&["s", "n", "l"]))],
            _ => vec!["SET".into(), key(tag, "s"), v],
        };
        out.push(cmd);
    }
    if in_multi {
        out.push(vec!["EXEC".into()]);
    }
    if rng.one_in(4) {
        out.push(vec!["SUBSCRIBE".into(), format!("mixed:{round}")]);
        out.push(vec!["PING".into()]);
    }
    out
}

/// Every mixed pipeline gets the replies a plain redis-server gives.
fn mixed_pipelines_match_redis(port: u16, seed: u64) {
    let reference = RedisServer::start();
    let mut rng = Rng::new(seed);
    for round in 0..40 {
        let cmds = mixed_pipeline(&mut rng, round);
        let bytes: Vec<u8> = cmds
            .iter()
            .flat_map(|c| encode_str(&c.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        let mut want_c = reference.client();
        want_c.send(&bytes);
        let want = want_c.read_replies(cmds.len());
        let mut c = Client::connect(port);
        c.send(&bytes);
        let got = c.read_replies(cmds.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g, w,
                "seed {seed} round {round}: reply {i} to {:?} differs; pipeline {cmds:?}",
                cmds[i]
            );
        }
    }
}

fn seed() -> u64 {
    seed_from_env("ASTER_MIXED_SEED")
}

#[test]
fn mixed_pipelines_match_redis_redis_mode() {
    let s = Shards::start(3);
    let seed = seed();
    eprintln!("ASTER_MIXED_SEED={seed}");
    mixed_pipelines_match_redis(s.proxy.port(), seed);
}

#[test]
fn mixed_pipelines_match_redis_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    let seed = seed();
    eprintln!("ASTER_MIXED_SEED={seed}");
    mixed_pipelines_match_redis(proxy.port(), seed);
}

/// A MOVED read on a client's own connection (a blocking command, WATCH)
/// reaches the client, but refreshes the table: the next one goes to the
/// slot's new owner, not to the old one for ever.
#[test]
fn a_redirect_on_a_clients_own_connection_refreshes_the_table() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("fetch", "3600")]).to_toml());
    let masters = rc.masters();
    let k = key_on(&rc, masters[0], "own");
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &k, "v"]), Reply::ok());
    rc.move_slot(key_slot(&k), masters[1]);
    // Only blocking commands and WATCH from now on: no plain command would
    // meet the MOVED and refresh the table.
    let served = poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let r = c.cmd(&["BLPOP", &format!("{{{k}}}:list"), "0.01"]);
        let w = c.cmd(&["WATCH", &k]);
        c.cmd(&["UNWATCH"]);
        (!r.is_error() && !w.is_error()).then_some(())
    });
    assert!(
        served.is_some(),
        "BLPOP/WATCH still redirected 3 s after the slot moved: {:?}",
        c.cmd(&["WATCH", &k])
    );
}

/// A client that writes its whole pipeline and then closes its side (a
/// script piping commands into a socket) still has every command run, as
/// Redis runs what it read before the EOF: also the requests that were
/// waiting for earlier ones (the first WATCH after a write, the commands
/// after an EXEC), not only those dispatched before the last reply went out.
#[test]
fn a_half_closed_pipeline_runs_to_its_end() {
    let s = Shards::start(3);
    let reference = RedisServer::start();
    for round in 0..10 {
        let key = format!("{{half{round}}}k");
        let cmds: &[&[&str]] = &[
            &["SET", &key, "1"],
            &["WATCH", &key],
            &["SET", &key, "2"],
            &["MULTI"],
            &["INCR", &key],
            &["EXEC"],
            &["SET", &key, "last"],
            &["GET", &key],
        ];
        let mut bytes = Vec::new();
        for cmd in cmds {
            bytes.extend(encode_str(cmd));
        }
        let run = |port: u16| {
            let mut c = Client::connect(port);
            c.send(&bytes);
            c.shutdown_write();
            let raw = c.read_raw(cmds.len(), Duration::from_secs(5));
            let replies = crate::harness::parse_all(&raw).expect("replies parse");
            let after = Client::connect(port).cmd(&["GET", &key]);
            (replies, after)
        };
        let want = run(reference.port());
        let got = run(s.proxy.port());
        assert_eq!(got, want, "round {round}");
        assert_eq!(got.1, Reply::bulk("last"), "round {round}");
    }
}
