//! Cluster mode (`cache_type = "redis_cluster"`) against a real six-node
//! Redis Cluster (three masters, one replica each): routing by slot, split
//! multi-key commands, CROSSSLOT, MOVED and ASK, failovers, reads from
//! replicas, start-up without a reachable seed, and load.

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, Proxy, RedisServer, Reply, TempDir, args, free_port, poll_until, run_proxy_bin,
    wait_timeout,
};
use crate::harness::{CmdStat, RedisCluster, Role, key_slot, proxy_conf_for};

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
/// What the supervisor logs (at info) when it publishes a new slot table.
const TABLE_UPDATED: &str = "slot table updated";

fn start(extra: &[(&str, &str)]) -> (RedisCluster, Proxy) {
    let rc = RedisCluster::start(3, 1);
    let proxy = Proxy::start(&rc.proxy_conf(extra).to_toml());
    (rc, proxy)
}

/// Like `start`, with the proxy logging at info (slot table updates).
fn start_logged(extra: &[(&str, &str)]) -> (RedisCluster, Proxy) {
    let rc = RedisCluster::start(3, 1);
    let proxy = Proxy::start_with_args(&rc.proxy_conf(extra).to_toml(), &["-v", "info"]);
    (rc, proxy)
}

fn count_updates(proxy: &Proxy) -> usize {
    proxy.log().matches(TABLE_UPDATED).count()
}

/// Waits (5 s at most) until the proxy has logged more than `before` slot
/// table updates.
fn await_table_update(proxy: &Proxy, before: usize) {
    let seen = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (count_updates(proxy) > before).then_some(())
    });
    assert!(
        seen.is_some(),
        "the proxy did not log {TABLE_UPDATED:?} within 5 s; log:\n{}",
        proxy.log()
    );
}

/// `n` keys `{prefix}N` whose slots all differ.
fn keys_in_distinct_slots(prefix: &str, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in 0.. {
        if out.len() == n {
            break;
        }
        let k = format!("{prefix}{i}");
        if out.iter().all(|o| key_slot(o) != key_slot(&k)) {
            out.push(k);
        }
    }
    out
}

#[test]
fn keys_spread_over_all_masters_and_are_readable_everywhere() {
    let (rc, proxy) = start(&[]);
    // The test's own slot function agrees with Redis.
    for k in ["foo", "bar", "{user1}.x", "key:17", "a{}b", ""] {
        assert_eq!(
            rc.cmd(0, &["CLUSTER", "KEYSLOT", k]),
            Reply::Int(i64::from(key_slot(k))),
            "slot of {k:?}"
        );
    }
    let keys: Vec<String> = (0..300).map(|i| format!("spread:{i}")).collect();
    let value = |k: &str| format!("value-of-{k}");
    let mut c = proxy.client();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, &value(k)])).collect();
    let replies = c.pipeline(&sets);
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!(*r, Reply::ok(), "SET {k} through the proxy");
    }

    let masters = rc.masters();
    assert_eq!(masters.len(), 3, "three masters");
    let mut by_owner: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
    for k in &keys {
        by_owner.entry(rc.key_owner(k)).or_default().push(k);
    }
    assert_eq!(
        by_owner.keys().copied().collect::<Vec<_>>(),
        masters,
        "300 keys should fall on every master"
    );
    for (&m, ks) in &by_owner {
        // Routed by slot from the start: no SET needed a MOVED.
        assert_eq!(
            rc.cmdstat(m, "set"),
            CmdStat {
                calls: ks.len() as u64,
                ..CmdStat::default()
            },
            "SETs on master {} (none rejected with MOVED)",
            rc.port(m)
        );
        assert_eq!(
            rc.dbsize(m),
            ks.len() as i64,
            "master {} holds exactly the keys of its slots",
            rc.port(m)
        );
        // Read back from the owning master directly (no MOVED: it owns them).
        let mut direct = Client::connect(rc.port(m));
        let gets: Vec<Vec<String>> = ks.iter().map(|k| args(&["GET", k])).collect();
        for (k, r) in ks.iter().zip(direct.pipeline(&gets)) {
            assert_eq!(r, Reply::bulk(&value(k)), "GET {k} on its master");
        }
    }
    // And through the proxy, on a fresh connection (the other worker, maybe).
    for mut client in [c, proxy.client(), proxy.client()] {
        let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
        for (k, r) in keys.iter().zip(client.pipeline(&gets)) {
            assert_eq!(r, Reply::bulk(&value(k)), "GET {k} through the proxy");
        }
    }
}

#[test]
fn multi_key_commands_are_split_by_slot_and_merged_in_order() {
    let (rc, proxy) = start(&[]);
    let a = rc.key_per_master("a:");
    let b = rc.key_per_master("b:");
    let ks: Vec<String> = a.values().chain(b.values()).cloned().collect();
    assert_eq!(ks.len(), 6);
    let order = [&ks[5], &ks[0], &ks[4], &ks[2], &ks[1], &ks[3]];
    let mut c = proxy.client();

    let mut mset = vec!["MSET".to_string()];
    for k in order {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&mset), Reply::ok(), "MSET over three masters");
    for k in &ks {
        assert_eq!(
            rc.cmd(rc.key_owner(k), &["GET", k]),
            Reply::bulk(&format!("v-{k}")),
            "{k} on its owning master after MSET"
        );
    }

    let mget = c.cmd(&[
        "MGET",
        &ks[3],
        "missing:1",
        &ks[0],
        &ks[5],
        &ks[1],
        &ks[0],
        &ks[4],
        &ks[2],
    ]);
    let v = |k: &String| Reply::bulk(&format!("v-{k}"));
    assert_eq!(
        mget,
        Reply::Array(vec![
            v(&ks[3]),
            Reply::Nil,
            v(&ks[0]),
            v(&ks[5]),
            v(&ks[1]),
            v(&ks[0]),
            v(&ks[4]),
            v(&ks[2]),
        ]),
        "MGET replies in key order"
    );

    // Two keys in different slots of the SAME master must still be split:
    // Redis itself refuses a multi-key command across slots.
    let same_master: Vec<String> = {
        let owner = rc.key_owner(&ks[0]);
        let mut v = vec![ks[0].clone()];
        for i in 0.. {
            let k = format!("same:{i}");
            if rc.key_owner(&k) == owner && key_slot(&k) != key_slot(&ks[0]) {
                v.push(k);
                break;
            }
        }
        v
    };
    assert_eq!(
        c.cmd(&["MSET", &same_master[1], "x1", "other:{1}", "x2"]),
        Reply::ok()
    );
    assert_eq!(
        c.cmd(&["MGET", &same_master[0], &same_master[1]]),
        Reply::Array(vec![v(&ks[0]), Reply::bulk("x1")]),
        "MGET over two slots of one master"
    );

    assert_eq!(
        c.cmd(&[
            "EXISTS",
            &ks[0],
            &ks[4],
            "missing:2",
            &ks[0],
            &same_master[1]
        ]),
        Reply::Int(4),
        "EXISTS counts every existing key, duplicates included"
    );
    assert_eq!(
        c.cmd(&["TOUCH", &ks[1], &ks[2], &ks[3], "missing:3"]),
        Reply::Int(3),
        "TOUCH"
    );
    assert_eq!(
        c.cmd(&["DEL", &ks[0], &ks[4], "missing:4", &same_master[1]]),
        Reply::Int(3),
        "DEL"
    );
    assert_eq!(
        rc.cmd(rc.key_owner(&ks[0]), &["EXISTS", &ks[0]]),
        Reply::Int(0)
    );
    assert_eq!(
        c.cmd(&["UNLINK", &ks[1], &ks[2], &ks[3], &ks[4]]),
        Reply::Int(3),
        "UNLINK (one key already deleted)"
    );
    let mut all = vec!["MGET"];
    all.extend(ks.iter().map(String::as_str));
    let mut expect = vec![Reply::Nil; 5];
    expect.push(v(&ks[5]));
    assert_eq!(c.cmd(&all), Reply::Array(expect), "only one key is left");
    let mut exists = vec!["EXISTS"];
    exists.extend(ks.iter().map(String::as_str));
    assert_eq!(c.cmd(&exists), Reply::Int(1));
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn multi_key_commands_across_slots_get_crossslot_unless_hash_tagged() {
    let (rc, proxy) = start(&[]);
    let ks = keys_in_distinct_slots("x:", 2);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &ks[0], "1"]), Reply::ok());
    assert_eq!(
        c.cmd(&["RENAME", &ks[0], &ks[1]]),
        Reply::Error(CROSSSLOT.into()),
        "RENAME across slots"
    );
    assert_eq!(c.cmd(&["GET", &ks[0]]), Reply::bulk("1"), "nothing renamed");
    assert_eq!(c.cmd(&["EXISTS", &ks[1]]), Reply::Int(0));

    // Different slots of one master: still CROSSSLOT (Redis refuses it too).
    let owner = rc.key_owner(&ks[0]);
    let same_master = (0..)
        .map(|i| format!("x:same:{i}"))
        .find(|k| rc.key_owner(k) == owner && key_slot(k) != key_slot(&ks[0]))
        .expect("a key on the same master");
    assert_eq!(
        c.cmd(&["RENAME", &ks[0], &same_master]),
        Reply::Error(CROSSSLOT.into()),
        "RENAME across two slots of one master"
    );
    assert_eq!(rc.cmd(owner, &["GET", &ks[0]]), Reply::bulk("1"));

    let sets = keys_in_distinct_slots("set:", 2);
    assert_eq!(c.cmd(&["SADD", &sets[0], "x", "y"]), Reply::Int(2));
    assert_eq!(c.cmd(&["SADD", &sets[1], "y", "z"]), Reply::Int(2));
    assert_eq!(
        c.cmd(&["SINTER", &sets[0], &sets[1]]),
        Reply::Error(CROSSSLOT.into()),
        "SINTER across slots"
    );
    assert_eq!(
        c.cmd(&["SINTERSTORE", "dest:1", &sets[0], &sets[1]]),
        Reply::Error(CROSSSLOT.into()),
        "SINTERSTORE across slots"
    );

    // With a hash tag every key shares one slot: the command runs.
    let tag_owner = rc.key_owner("{u1}");
    assert_eq!(c.cmd(&["SET", "{u1}a", "1"]), Reply::ok());
    assert_eq!(c.cmd(&["RENAME", "{u1}a", "{u1}b"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "{u1}b"]), Reply::bulk("1"));
    assert_eq!(rc.cmd(tag_owner, &["GET", "{u1}b"]), Reply::bulk("1"));
    assert_eq!(rc.cmd(tag_owner, &["EXISTS", "{u1}a"]), Reply::Int(0));
    assert_eq!(c.cmd(&["SADD", "{u1}s1", "x", "y"]), Reply::Int(2));
    assert_eq!(c.cmd(&["SADD", "{u1}s2", "y", "z"]), Reply::Int(2));
    assert_eq!(
        c.cmd(&["SINTER", "{u1}s1", "{u1}s2"]),
        Reply::Array(vec![Reply::bulk("y")])
    );
    assert_eq!(
        c.cmd(&["SINTERSTORE", "{u1}d", "{u1}s1", "{u1}s2"]),
        Reply::Int(1)
    );
    assert_eq!(rc.cmd(tag_owner, &["SCARD", "{u1}d"]), Reply::Int(1));
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn slot_moved_behind_the_proxys_back_is_followed_and_the_table_refreshed() {
    // No periodic refresh during the test: only the MOVED may trigger one.
    let (rc, proxy) = start_logged(&[("fetch", "3600")]);
    let slot = key_slot("{mv}");
    let from = rc.slot_owner(slot);
    let to = rc.other_master(from);
    let others = rc.key_per_master("elsewhere:");
    let other_key = others.iter().find(|(m, _)| **m != from).expect("key").1;

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "{mv}a", "1"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "{mv}b", "2"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", other_key, "o"]), Reply::ok());
    assert_eq!(rc.cmd(from, &["GET", "{mv}a"]), Reply::bulk("1"));
    let before = count_updates(&proxy);

    rc.move_slot(slot, to);
    assert_eq!(rc.slot_owner(slot), to);
    assert_eq!(
        rc.keys_in_slot(to, slot).len(),
        2,
        "both keys moved with the slot"
    );

    // The proxy still routes the slot to `from`, which answers MOVED; every
    // request is followed to `to`, and replies stay in order.
    let replies = c.pipeline(&[
        args(&["GET", "{mv}a"]),
        args(&["GET", other_key]),
        args(&["SET", "{mv}c", "3"]),
        args(&["GET", "{mv}b"]),
        args(&["MGET", "{mv}a", other_key, "{mv}c"]),
        args(&["GET", "{mv}c"]),
    ]);
    assert_eq!(
        replies,
        vec![
            Reply::bulk("1"),
            Reply::bulk("o"),
            Reply::ok(),
            Reply::bulk("2"),
            Reply::Array(vec![Reply::bulk("1"), Reply::bulk("o"), Reply::bulk("3")]),
            Reply::bulk("3"),
        ]
    );
    assert_eq!(
        rc.cmd(to, &["GET", "{mv}c"]),
        Reply::bulk("3"),
        "written on the new owner"
    );
    assert!(
        rc.keys_in_slot(from, slot).is_empty(),
        "nothing left on the old owner"
    );

    // The MOVED made the proxy learn the new table...
    await_table_update(&proxy, before);
    std::thread::sleep(Duration::from_millis(200));
    // ...after which the slot goes straight to its new owner (no more MOVED).
    rc.reset_stats();
    let mut fresh = proxy.client();
    for client in [&mut c, &mut fresh] {
        assert_eq!(client.cmd(&["GET", "{mv}a"]), Reply::bulk("1"));
        assert_eq!(client.cmd(&["SET", "{mv}d", "4"]), Reply::ok());
    }
    let old = rc.commandstats(from);
    assert!(
        !old.contains_key("get") && !old.contains_key("set"),
        "after the table update the old owner still gets the slot's requests: {old:?}"
    );
    assert_eq!(rc.cmdstat(to, "get").calls, 2);
    assert_eq!(rc.cmdstat(to, "set").calls, 2);
}

#[test]
fn half_migrated_slot_is_served_through_ask() {
    let (rc, proxy) = start(&[("fetch", "3600")]);
    let slot = key_slot("{ask}");
    let from = rc.slot_owner(slot);
    let to = rc.other_master(from);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "{ask}a", "A"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "{ask}b", "B"]), Reply::ok());

    // Mid-migration: only {ask}a has moved.
    rc.begin_migration(slot, from, to);
    rc.migrate_keys(from, to, &["{ask}a"]);
    rc.reset_stats();
    // The source answers ASK for it (the proxy must follow with ASKING).
    let direct = rc.cmd(from, &["GET", "{ask}a"]);
    assert!(
        direct.text().starts_with("ASK "),
        "the source should answer ASK: {direct:?}"
    );

    assert_eq!(c.cmd(&["GET", "{ask}a"]), Reply::bulk("A"), "read via ASK");
    assert_eq!(c.cmd(&["GET", "{ask}b"]), Reply::bulk("B"), "not moved yet");
    assert_eq!(
        c.cmd(&["SET", "{ask}a", "A2"]),
        Reply::ok(),
        "write via ASK"
    );
    assert_eq!(
        c.cmd(&["SET", "{ask}new", "N"]),
        Reply::ok(),
        "new key via ASK"
    );
    assert_eq!(c.cmd(&["GET", "{ask}a"]), Reply::bulk("A2"));
    assert_eq!(c.cmd(&["GET", "{ask}new"]), Reply::bulk("N"));

    let on_to = rc.keys_in_slot(to, slot);
    let on_from = rc.keys_in_slot(from, slot);
    assert!(
        on_to.contains("{ask}a") && on_to.contains("{ask}new"),
        "the importing node holds the moved and the new key: {on_to:?}"
    );
    assert_eq!(
        on_from.into_iter().collect::<Vec<_>>(),
        vec!["{ask}b".to_string()],
        "the source keeps only the key not migrated"
    );
    assert_eq!(
        crate::harness::cmds(rc.port(to), &[&["ASKING"], &["GET", "{ask}a"]]),
        vec![Reply::ok(), Reply::bulk("A2")],
        "the value written through the proxy is on the importing node"
    );
    assert!(
        rc.cmdstat(to, "asking").calls >= 3,
        "the proxy sent ASKING before each redirected request: {:?}",
        rc.cmdstat(to, "asking")
    );
    // The slot is still the source's: a fresh connection works the same way.
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["GET", "{ask}a"]), Reply::bulk("A2"));
    assert_eq!(fresh.cmd(&["GET", "{ask}b"]), Reply::bulk("B"));
}

#[test]
fn manual_failover_moves_writes_to_the_new_master() {
    let (rc, proxy) = start_logged(&[]);
    let key = "failover:key";
    let old_master = rc.key_owner(key);
    let replica = rc.replicas_of(old_master)[0];
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", key, "v1"]), Reply::ok());
    let before = count_updates(&proxy);

    rc.failover(replica);

    let mut last = Reply::Nil;
    let resumed = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        last = c.cmd(&["SET", key, "v2"]);
        (last == Reply::ok()).then_some(())
    });
    assert!(
        resumed.is_some(),
        "writes did not resume within 10 s after CLUSTER FAILOVER; last reply {last:?}"
    );
    assert_eq!(c.cmd(&["GET", key]), Reply::bulk("v2"));
    assert_eq!(rc.role(replica), Role::Master);
    assert_eq!(
        rc.cmd(replica, &["GET", key]),
        Reply::bulk("v2"),
        "the write landed on the new master"
    );
    let demoted = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (rc.role(old_master) == Role::Replica(rc.port(replica))).then_some(())
    });
    assert!(demoted.is_some(), "the old master did not become a replica");
    await_table_update(&proxy, before);
    // New connections write too.
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["SET", key, "v3"]), Reply::ok());
    assert_eq!(rc.cmd(replica, &["GET", key]), Reply::bulk("v3"));
}

#[test]
fn killed_master_is_replaced_without_restarting_the_proxy() {
    // The default `fetch` (600 s): only the failed connections can trigger
    // the refreshes that find the new master.
    let (mut rc, proxy) = start_logged(&[]);
    // The first master: after `--cluster create` that is node 0, a seed.
    let victim = rc.masters()[0];
    let keys = rc.key_per_master("kill:");
    let key = keys[&victim].clone();
    let other = keys
        .iter()
        .find(|(m, _)| **m != victim)
        .expect("key")
        .1
        .clone();
    let replica = rc.replicas_of(victim)[0];
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &key, "v0"]), Reply::ok());
    rc.wait_replicated();

    rc.kill(victim);
    let killed_at = Instant::now();
    let mut errors = Vec::new();
    let mut written = None;
    for i in 0.. {
        if killed_at.elapsed() > Duration::from_secs(15) {
            break;
        }
        let value = format!("v{}", i + 1);
        match c.cmd(&["SET", &key, &value]) {
            r if r == Reply::ok() => {
                written = Some(value);
                break;
            }
            r => errors.push(r),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed_at.elapsed();
    let value = written.unwrap_or_else(|| {
        panic!(
            "writes to the dead master's slots did not resume within 15 s; last errors: {:?}",
            &errors[errors.len().saturating_sub(3)..]
        )
    });
    assert!(
        !errors.is_empty(),
        "the first write after SIGKILL should fail (the failover takes > 1 s)"
    );
    assert!(
        errors.iter().all(Reply::is_error),
        "failures are error replies: {errors:?}"
    );
    eprintln!(
        "writes resumed {took:?} after the kill, after {} errors (first {:?})",
        errors.len(),
        errors[0]
    );
    assert_eq!(rc.role(replica), Role::Master, "the replica took over");
    assert_eq!(rc.cmd(replica, &["GET", &key]), Reply::bulk(&value));
    assert_eq!(c.cmd(&["GET", &key]), Reply::bulk(&value));
    // The rest of the cluster works through the same proxy.
    assert_eq!(c.cmd(&["SET", &other, "fine"]), Reply::ok());
    let mut fresh = proxy.client();
    assert_eq!(
        fresh.cmd(&["MGET", &key, &other]),
        Reply::Array(vec![Reply::bulk(&value), Reply::bulk("fine")])
    );
    assert!(count_updates(&proxy) >= 1, "the proxy logged the new table");
}

#[test]
fn read_from_slave_sends_reads_to_replicas_and_writes_to_masters() {
    let (rc, proxy) = start(&[("read_from_slave", "true")]);
    let keys: Vec<String> = (0..60).map(|i| format!("rfs:{i}")).collect();
    let mut c = proxy.client();
    rc.reset_stats();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    assert!(c.pipeline(&sets).iter().all(|r| *r == Reply::ok()));
    rc.wait_replicated();

    let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
    for mut client in [c, proxy.client()] {
        for (k, r) in keys.iter().zip(client.pipeline(&gets)) {
            assert_eq!(r, Reply::bulk(k), "GET {k} from a replica");
        }
    }
    let masters = rc.masters();
    let replicas = rc.replicas();
    let total = |nodes: &[usize], cmd: &str| -> (u64, u64) {
        nodes.iter().fold((0, 0), |(c, r), &n| {
            let s = rc.cmdstat(n, cmd);
            (c + s.calls, r + s.rejected_calls)
        })
    };
    assert_eq!(
        total(&masters, "get"),
        (0, 0),
        "no GET reached a master (calls, rejected)"
    );
    assert_eq!(
        total(&replicas, "get"),
        (2 * keys.len() as u64, 0),
        "every GET was served by a replica (calls, rejected)"
    );
    for &r in &replicas {
        assert!(
            rc.cmdstat(r, "get").calls > 0,
            "replica {} served none of the GETs",
            rc.port(r)
        );
    }
    assert_eq!(
        total(&masters, "set"),
        (keys.len() as u64, 0),
        "every SET was served by a master"
    );
    assert_eq!(
        total(&replicas, "set").1,
        0,
        "no SET was sent to a replica (it would answer MOVED)"
    );
}

/// MGET and EXISTS are read-only too: with `read_from_slave` their per-slot
/// parts should be read from replicas like GET.
#[test]
fn read_from_slave_sends_split_reads_to_replicas() {
    let (rc, proxy) = start(&[("read_from_slave", "true")]);
    let keys: Vec<String> = rc.key_per_master("split-rfs:").into_values().collect();
    let mut c = proxy.client();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), Reply::ok());
    }
    rc.wait_replicated();
    rc.reset_stats();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert_eq!(
        c.cmd(&mget),
        Reply::Array(keys.iter().map(|k| Reply::bulk(k)).collect())
    );
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    assert_eq!(c.cmd(&exists), Reply::Int(3));
    for m in rc.masters() {
        let st = rc.commandstats(m);
        assert!(
            !st.contains_key("mget") && !st.contains_key("exists"),
            "read-only MGET/EXISTS parts went to master {}: {st:?}",
            rc.port(m)
        );
    }
    for r in rc.replicas() {
        assert_eq!(
            rc.cmdstat(r, "mget").calls,
            1,
            "MGET part on replica {}",
            rc.port(r)
        );
        assert_eq!(
            rc.cmdstat(r, "exists").calls,
            1,
            "EXISTS part on replica {}",
            rc.port(r)
        );
    }
}

#[test]
fn reads_on_a_dead_replica_are_retried_on_its_master() {
    let (mut rc, proxy) = start(&[("read_from_slave", "true"), ("fetch", "1")]);
    let keys: Vec<String> = (0..30).map(|i| format!("fallback:{i}")).collect();
    let mut c = proxy.client();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    assert!(c.pipeline(&sets).iter().all(|r| *r == Reply::ok()));
    rc.wait_replicated();
    let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
    assert!(
        c.pipeline(&gets)
            .iter()
            .zip(&keys)
            .all(|(r, k)| *r == Reply::bulk(k))
    );

    let dead = rc.replicas()[0];
    let Role::Replica(master_port) = rc.role(dead) else {
        unreachable!()
    };
    let master = rc.node_of_port(master_port);
    rc.kill(dead);
    rc.reset_stats();
    let killed_at = Instant::now();
    // Reads sent to the dead replica, in flight or sent while the proxy
    // retries it, are retried on its master: no read fails. Watch for a
    // window longer than the longest backoff (1 s).
    let quiet = Duration::from_millis(1500);
    let mut last_error: Option<(Duration, Reply)> = None;
    let mut error_rounds = Vec::new();
    let mut quiet_since = Instant::now();
    while killed_at.elapsed() < Duration::from_secs(12) && quiet_since.elapsed() < quiet {
        let replies = c.pipeline(&gets);
        let errors: Vec<&Reply> = replies.iter().filter(|r| r.is_error()).collect();
        if let Some(&e) = errors.first() {
            last_error = Some((killed_at.elapsed(), e.clone()));
            error_rounds.push((killed_at.elapsed(), errors.len()));
            quiet_since = Instant::now();
        } else {
            for (r, k) in replies.iter().zip(&keys) {
                assert_eq!(*r, Reply::bulk(k), "GET {k} after a replica died");
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        error_rounds.is_empty(),
        "reads failed after a replica died (time, count): {error_rounds:?}; last {last_error:?}"
    );
    assert!(quiet_since.elapsed() >= quiet);
    assert!(
        rc.cmdstat(master, "get").calls > 0,
        "the dead replica's master serves its reads"
    );
}

#[test]
fn startup_fails_with_exit_code_3_when_no_seed_gives_a_slot_table() {
    let dir = TempDir::new("cluster-noseed");
    let seeds = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let conf = proxy_conf_for(seeds.clone(), &[]);
    let path = dir.join("aster.toml");
    fs::write(&path, conf.to_toml()).expect("write config");
    let started = Instant::now();
    let out = run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot learn the cluster's slots"),
        "stderr should say why: {stderr}"
    );
    for s in &seeds {
        assert!(
            stderr.contains(s.as_str()),
            "stderr should name seed {s}: {stderr}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused seeds should fail fast: {:?}",
        started.elapsed()
    );
    // Nothing listens: the proxy did not half-start.
    assert!(!crate::harness::accepts(conf.port));

    // A seed that answers but is no cluster node is no better.
    let plain = RedisServer::start();
    let conf = proxy_conf_for(vec![plain.addr()], &[]);
    fs::write(&path, conf.to_toml()).expect("write config");
    let out = run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot learn the cluster's slots") && stderr.contains(&plain.addr()),
        "stderr should say why: {stderr}"
    );
    assert!(
        stderr.contains("cluster support disabled"),
        "stderr should carry the node's own error: {stderr}"
    );
}

#[test]
fn one_answering_seed_is_enough_to_start() {
    let rc = RedisCluster::start(3, 1);
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&proxy_conf_for(vec![dead, rc.addr(4)], &[]).to_toml());
    let mut c = proxy.client();
    for (m, k) in rc.key_per_master("seed:") {
        assert_eq!(c.cmd(&["SET", &k, "x"]), Reply::ok());
        assert_eq!(rc.cmd(m, &["GET", &k]), Reply::bulk("x"));
    }
}

fn benchmark(port: u16, extra: &[&str]) {
    let p = port.to_string();
    let mut child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &p])
        .args(["-t", "set,get,mset", "-n", "20000", "-c", "20", "-q"])
        .args(["-r", "100000"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-benchmark");
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-benchmark {extra:?} did not finish within 60 s");
    }
    let out = child.wait_with_output().expect("benchmark output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("redis-benchmark {extra:?}:\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "redis-benchmark {extra:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for name in ["SET", "GET", "MSET (10 keys)"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{name}: ")) && l.contains("requests per second")),
            "no result for {name} in:\n{stdout}\n{stderr}"
        );
    }
    let all = format!("{stdout}\n{stderr}").to_lowercase();
    // redis-benchmark warns that it cannot read CONFIG (the proxy refuses
    // CONFIG); any other error is a failure.
    let errors: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("error") || l.contains("err "))
        .collect();
    assert!(
        errors.is_empty(),
        "redis-benchmark {extra:?} saw errors: {errors:?}"
    );
}

#[test]
fn redis_benchmark_through_the_proxy_has_no_errors() {
    let (rc, proxy) = start(&[]);
    benchmark(proxy.port(), &[]);
    benchmark(proxy.port(), &["-P", "16"]);
    for m in rc.masters() {
        assert!(
            rc.dbsize(m) > 1000,
            "master {} got few keys: {}",
            rc.port(m),
            rc.dbsize(m)
        );
    }
    assert_eq!(proxy.client().cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn blocking_commands_time_out_and_the_connection_stays_usable() {
    let (_rc, proxy) = start(&[]);
    let mut c = proxy.client();
    // Blocking commands run on a connection of the client's own
    // (integration/dedicated.rs); here they time out on empty lists.
    assert_eq!(c.cmd(&["BLPOP", "list:1", "0.2"]), Reply::Nil);
    assert_eq!(
        c.cmd(&["BRPOPLPUSH", "{list}1", "{list}2", "0.2"]),
        Reply::Nil
    );
    // Pub/sub is served (integration/pubsub.rs); PUBSUB introspection and
    // MONITOR are refused, and the connection stays usable.
    for cmd in [&["PUBSUB", "HELP"][..], &["MONITOR"]] {
        let r = c.cmd(cmd);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("{cmd:?} should be refused: {r:?}"));
        assert!(
            e.to_uppercase().contains(cmd[0]),
            "the error should name {}: {e:?}",
            cmd[0]
        );
        assert_eq!(c.cmd(&["SET", "after:block", cmd[0]]), Reply::ok());
        assert_eq!(c.cmd(&["GET", "after:block"]), Reply::bulk(cmd[0]));
    }
    // A BLPOP in a pipeline: what follows waits for it, then runs.
    let started = Instant::now();
    let replies = c.pipeline(&[
        args(&["BLPOP", "list:empty", "0.2"]),
        args(&["SET", "after:pipe", "1"]),
        args(&["MONITOR"]),
        args(&["GET", "after:pipe"]),
    ]);
    assert!(
        replies[0] == Reply::Nil && replies[2].is_error(),
        "{replies:?}"
    );
    assert_eq!(replies[1], Reply::ok());
    assert_eq!(replies[3], Reply::bulk("1"));
    assert!(started.elapsed() < Duration::from_secs(2));
}
