//! Routing by slot, split multi-key commands, CROSSSLOT.

use super::*;

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

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
