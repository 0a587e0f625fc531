//! Commands aster must answer as Redis does (issue 18): SORT with BY/GET
//! patterns. Each compares aster with a plain `redis-server` (in cluster
//! mode, with the key's own node asked directly).

use crate::harness::{Client, Proxy, RedisCluster, RedisServer, Reply, Shards, args};

fn strings(r: &Reply) -> Vec<String> {
    match r {
        Reply::Array(items) => items.iter().map(|i| i.text().to_owned()).collect(),
        other => panic!("expected an array: {other:?}"),
    }
}

fn flushed(port: u16) -> Client {
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["FLUSHALL"]), Reply::ok());
    c
}

// ---------------------------------------------------------------------------
// Defect 7: SORT with BY/GET patterns
// ---------------------------------------------------------------------------

/// The list `l` = 1 2 3 with weights `w_N` and objects `o_N`, `h_N->f`,
/// every name prefixed with `p`.
fn sort_data(p: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![args(&["RPUSH", &format!("{p}l"), "1", "2", "3"])];
    for (n, w, o) in [("1", "30", "a"), ("2", "10", "b"), ("3", "20", "c")] {
        cmds.push(args(&["SET", &format!("{p}w_{n}"), w]));
        cmds.push(args(&["SET", &format!("{p}o_{n}"), o]));
        cmds.push(args(&["HSET", &format!("{p}h_{n}"), "f", o]));
    }
    cmds
}

fn sort_denied(r: &Reply, option: &str) -> bool {
    r.error()
        .is_some_and(|e| e.starts_with(&format!("ERR {option} option of SORT denied")))
}

#[test]
fn sort_patterns_across_servers_are_refused_and_tagged_ones_work_redis_mode() {
    let shards = Shards::start(3);
    let reference = RedisServer::start();
    let mut r = flushed(reference.port());
    let mut a = shards.client();
    // `tags[i]` hashes to server i: `{tags[i]}x` lives there.
    let tags = shards.key_per_server("tag");
    let t = format!("{{{}}}", tags[0]);
    let elsewhere = format!("{{{}}}", tags[1]);
    for c in [&mut r, &mut a] {
        for p in ["", &t] {
            let data = sort_data(p);
            assert!(c.pipeline(&data).iter().all(|x| !x.is_error()));
        }
    }
    // The issue's command: Redis answers b 2 c 3 a 1; aster refuses.
    let issue = ["SORT", "l", "BY", "w_*", "GET", "o_*", "GET", "#"];
    assert_eq!(strings(&r.cmd(&issue)), ["b", "2", "c", "3", "a", "1"]);
    for (cmd, option) in [
        (&issue[..], "BY"),
        (&["SORT", "l", "GET", "o_*"], "GET"),
        (
            &["SORT", "l", "BY", "nosort", "GET", "#", "GET", "o_*"],
            "GET",
        ),
        (&["SORT", "l", "GET", "h_*->f"], "GET"),
        (&["SORT_RO", "l", "BY", "w_*"], "BY"),
        (&["SORT_RO", "l", "GET", "#", "GET", "o_*"], "GET"),
        (
            &[
                "SORT",
                &format!("{t}l"),
                "BY",
                &format!("{t}w_*"),
                "GET",
                "o_*",
            ],
            "GET",
        ),
        (
            &["SORT", &format!("{t}l"), "BY", &format!("{elsewhere}w_*")],
            "BY",
        ),
        // A tag after the '*' does not bind the keys: the element comes first.
        (&["SORT", &format!("{t}l"), "BY", &format!("w_*{t}")], "BY"),
    ] {
        let got = a.cmd(cmd);
        assert!(sort_denied(&got, option), "{cmd:?}: {got:?}");
    }
    // Patterns that read no other key, or only keys of the list's own
    // server (its hash tag before the '*'), work as on one Redis.
    let tl = format!("{t}l");
    let (tw, to, th) = (format!("{t}w_*"), format!("{t}o_*"), format!("{t}h_*->f"));
    let dst = format!("{t}dst");
    let same: Vec<Vec<&str>> = vec![
        vec!["SORT", "l"],
        vec!["SORT", "l", "BY", "nosort", "GET", "#"],
        vec!["SORT", "l", "GET", "#", "DESC", "LIMIT", "0", "2"],
        vec!["SORT", "l", "BY", "constant", "GET", "#"],
        vec!["SORT", "l", "GET", "nostar"],
        vec!["SORT_RO", "l", "BY", "nosort", "GET", "#"],
        vec!["SORT", &tl, "BY", &tw, "GET", &to, "GET", "#"],
        vec!["SORT", &tl, "BY", &tw, "GET", &th, "DESC"],
        vec!["SORT_RO", &tl, "BY", &tw, "GET", &to, "GET", "#"],
        vec!["SORT", &tl, "BY", &tw, "GET", &to, "STORE", &dst],
        vec!["LRANGE", &dst, "0", "-1"],
        // Redis's own errors come before any pattern is looked at.
        vec!["SORT", "l", "NOSUCHOPTION", "BY", "w_*"],
        vec!["SORT", "l", "LIMIT", "0"],
    ];
    for cmd in &same {
        assert_eq!(a.cmd(cmd), r.cmd(cmd), "{cmd:?}");
    }
    assert_eq!(
        strings(&a.cmd(&["SORT", &tl, "BY", &tw, "GET", &to, "GET", "#"])),
        ["b", "2", "c", "3", "a", "1"]
    );
}

#[test]
fn sort_patterns_in_cluster_mode_get_the_nodes_own_answer() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("read_timeout", "3000")]).to_toml());
    let mut a = proxy.client();
    for p in ["", "{t}"] {
        assert!(a.pipeline(&sort_data(p)).iter().all(|x| !x.is_error()));
    }
    for (cmd, option) in [
        (
            &["SORT", "l", "BY", "w_*", "GET", "o_*", "GET", "#"][..],
            Some("BY"),
        ),
        (&["SORT", "l", "GET", "o_*"], Some("GET")),
        (&["SORT_RO", "l", "BY", "w_*"], Some("BY")),
        (
            &["SORT", "{t}l", "BY", "{t}w_*", "GET", "{t}o_*", "GET", "#"],
            None,
        ),
        (&["SORT", "{t}l", "BY", "nosort", "GET", "#"], None),
        (&["SORT", "l"], None),
    ] {
        let got = a.cmd(cmd);
        let node = rc.key_owner(cmd[1]);
        assert_eq!(got, rc.cmd(node, cmd), "{cmd:?}");
        if let Some(option) = option {
            assert!(sort_denied(&got, option), "{cmd:?}: {got:?}");
        }
    }
}
