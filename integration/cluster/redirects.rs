//! MOVED and ASK, failovers (manual, a killed master).

use super::*;

/// What the supervisor logs (at info) when it publishes a new slot table.
const TABLE_UPDATED: &str = "slot table updated";

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
