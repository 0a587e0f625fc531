//! Commands aster must answer as Redis does (issue 18, defects 6 to 8):
//! EVALSHA wherever its key lives, SORT with BY/GET patterns, COMMAND, INFO
//! keyspace and the backends' version. Each compares aster with a plain
//! `redis-server` (in cluster mode, with the key's own node asked directly).

use std::collections::BTreeSet;

use crate::harness::{
    Client, Proxy, RedisCluster, RedisServer, Reply, Shards, args, info, info_field,
};

const INCR: &str = "return redis.call('incr', KEYS[1])";

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
// Defect 6: EVALSHA of a script aster has seen works wherever its key lives
// ---------------------------------------------------------------------------

/// `keys`: one per server (master). The same script traffic on a plain
/// Redis and through aster gives the same replies: EVAL on one key, then
/// EVALSHA on keys of every other server, one by one and pipelined, and
/// NOSCRIPT again after SCRIPT FLUSH.
fn evalsha_everywhere(aster: u16, keys: &[String]) {
    assert!(keys.len() >= 3, "{keys:?}");
    let reference = RedisServer::start();
    let mut r = flushed(reference.port());
    let sha = r.cmd(&["SCRIPT", "LOAD", INCR]).text().to_owned();
    assert_eq!(sha.len(), 40, "{sha}");
    let mut a = Client::connect(aster);
    // The issue's scenario, one command at a time.
    let upper = sha.to_ascii_uppercase();
    let mut one_by_one = vec![
        args(&["SCRIPT", "FLUSH"]),
        args(&["EVAL", INCR, "1", &keys[0]]),
    ];
    for k in &keys[1..] {
        one_by_one.push(args(&["EVALSHA", &sha, "1", k]));
    }
    // Redis reads the sha case-insensitively; EVALSHA_RO of a writing
    // script is refused by the script itself, with the same text.
    one_by_one.push(args(&["EVALSHA", &upper, "1", &keys[1]]));
    one_by_one.push(args(&["EVALSHA_RO", &sha, "1", &keys[2]]));
    let run = |c: &mut Client| -> Vec<Reply> {
        one_by_one
            .iter()
            .map(|cmd| {
                let v: Vec<&str> = cmd.iter().map(String::as_str).collect();
                c.cmd(&v)
            })
            .collect()
    };
    let want = run(&mut r);
    assert_eq!(want[1..keys.len() + 1], vec![Reply::Int(1); keys.len()][..]);
    assert_eq!(want[keys.len() + 1], Reply::Int(2));
    assert_eq!(run(&mut a), want);
    // Pipelined after a SCRIPT FLUSH, interleaved with reads of the same
    // keys: every EVALSHA runs, in the client's order.
    let mut pipe = vec![
        args(&["SCRIPT", "FLUSH"]),
        args(&["EVAL", INCR, "1", &keys[0]]),
    ];
    for round in 0..3 {
        for k in keys {
            pipe.push(args(&["EVALSHA", &sha, "1", k]));
            pipe.push(args(&["GET", k]));
            if round == 1 {
                pipe.push(args(&["INCR", k]));
            }
        }
    }
    // Inside a transaction, on a server that has not run it yet.
    pipe.push(args(&["SCRIPT", "FLUSH"]));
    pipe.push(args(&["EVAL", INCR, "1", &keys[0]]));
    pipe.push(args(&["MULTI"]));
    pipe.push(args(&["EVALSHA", &sha, "1", &keys[2]]));
    pipe.push(args(&["GET", &keys[2]]));
    pipe.push(args(&["EXEC"]));
    pipe.push(args(&["SCRIPT", "FLUSH"]));
    pipe.push(args(&["EVALSHA", &sha, "1", &keys[1]]));
    let want = r.pipeline(&pipe);
    let got = a.pipeline(&pipe);
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "#{i} {:?}", pipe[i]);
    }
    assert_eq!(got.len(), want.len());
    assert!(
        want.last()
            .and_then(Reply::error)
            .is_some_and(|e| e.starts_with("NOSCRIPT")),
        "{want:?}"
    );
}

#[test]
fn evalsha_runs_on_every_server_after_eval_redis_mode() {
    let shards = Shards::start(3);
    let keys = shards.key_per_server("user:");
    evalsha_everywhere(shards.proxy.port(), &keys);
}

#[test]
fn evalsha_runs_on_every_master_after_eval_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("read_timeout", "3000")]).to_toml());
    let keys: Vec<String> = rc.key_per_master("user:").into_values().collect();
    evalsha_everywhere(proxy.port(), &keys);
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

// ---------------------------------------------------------------------------
// Defect 8: COMMAND, INFO keyspace, the backends' version
// ---------------------------------------------------------------------------

fn command_replies_match(aster: u16, reference: u16) {
    let mut a = Client::connect(aster);
    let mut r = Client::connect(reference);
    let count = r.cmd(&["COMMAND", "COUNT"]);
    assert!(matches!(count, Reply::Int(n) if n > 200), "{count:?}");
    assert_eq!(a.cmd(&["COMMAND", "COUNT"]), count);
    let list: BTreeSet<String> = strings(&a.cmd(&["COMMAND", "LIST"])).into_iter().collect();
    assert!(list.contains("set") && list.contains("get"), "{list:?}");
    let want: BTreeSet<String> = strings(&r.cmd(&["COMMAND", "LIST"])).into_iter().collect();
    assert_eq!(list, want);
    // Listed in the server's hash table order: compared as sets.
    let mut both = |cmd: &[&str]| {
        let got: BTreeSet<String> = strings(&a.cmd(cmd)).into_iter().collect();
        let want: BTreeSet<String> = strings(&r.cmd(cmd)).into_iter().collect();
        assert_eq!(got, want, "{cmd:?}");
        got
    };
    let set_star = both(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "set*"]);
    assert!(
        set_star.contains("set") && set_star.contains("setex"),
        "{set_star:?}"
    );
    let hll = both(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "hyperloglog"]);
    assert!(hll.contains("pfadd"), "{hll:?}");
    for cmd in [
        &[
            "COMMAND",
            "INFO",
            "zunionstore",
            "xread",
            "eval",
            "sort",
            "migrate",
            "georadius",
        ][..],
        &["COMMAND", "INFO", "get", "nosuchcommand"],
        &["COMMAND", "LIST", "FILTERBY"],
        &["COMMAND", "GETKEYS", "SORT", "l", "STORE", "d"],
        &["COMMAND", "GETKEYS", "GET"],
        &["COMMAND", "DOCS", "get"],
        &["COMMAND", "NOSUCHSUB"],
        &["COMMAND", "COUNT", "x"],
    ] {
        assert_eq!(a.cmd(cmd), r.cmd(cmd), "{cmd:?}");
    }
    let all = a.cmd(&["COMMAND"]);
    assert_eq!(Reply::Int(strings(&all).len() as i64), count);
}

fn version_of(port: u16) -> String {
    let text = info(&mut Client::connect(port), Some("server"));
    info_field(&text, "redis_version")
        .expect("redis_version")
        .to_owned()
}

/// HELLO's `version` field.
fn hello_version(c: &mut Client, proto: &str) -> String {
    let Reply::Array(items) = c.cmd(&["HELLO", proto]) else {
        panic!("HELLO {proto}");
    };
    let at = items
        .iter()
        .position(|i| i.text() == "version")
        .expect("version field");
    items[at + 1].text().to_owned()
}

/// `dbN:keys=..,expires=..,avg_ttl=..` of an INFO text, as (keys, expires, avg_ttl).
fn db0(text: &str) -> Option<(u64, u64, u64)> {
    let line = info_field(text, "db0")?;
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("keys")?, field("expires")?, field("avg_ttl")?))
}

/// Writes 30 keys through aster, 12 of them with a TTL, and checks INFO
/// keyspace against what `backends` hold.
fn keyspace_is_summed(aster: u16, backends: &[u16]) {
    let mut a = Client::connect(aster);
    let mut cmds = Vec::new();
    for i in 0..30 {
        let k = format!("ks:{i}");
        cmds.push(if i % 5 < 2 {
            args(&["SET", &k, "v", "EX", "1000"])
        } else {
            args(&["SET", &k, "v"])
        });
    }
    assert!(a.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let holding = backends
        .iter()
        .filter(|&&p| db0(&info(&mut Client::connect(p), Some("keyspace"))).is_some())
        .count();
    assert!(holding >= 2, "the keys should spread over the servers");
    for section in [Some("keyspace"), None, Some("all"), Some("everything")] {
        let text = info(&mut a, section);
        assert!(text.contains("# Keyspace\r\n"), "{section:?}:\n{text}");
        let (keys, expires, avg_ttl) =
            db0(&text).unwrap_or_else(|| panic!("{section:?} has no db0:\n{text}"));
        assert_eq!((keys, expires), (30, 12), "{section:?}:\n{text}");
        // The servers estimate it as they expire keys: 0 at first.
        assert!(avg_ttl <= 1_000_000, "{text}");
    }
    let only = info(&mut a, Some("keyspace"));
    assert!(
        !only.contains("# Server") && !only.contains("# Stats"),
        "{only}"
    );
}

#[test]
fn command_info_keyspace_and_version_come_from_the_servers_redis_mode() {
    let shards = Shards::start(3);
    let reference = RedisServer::start();
    command_replies_match(shards.proxy.port(), reference.port());
    let ports: Vec<u16> = shards.servers.iter().map(|s| s.port()).collect();
    keyspace_is_summed(shards.proxy.port(), &ports);
    let version = version_of(ports[0]);
    let mut a = shards.client();
    assert_eq!(version_of(shards.proxy.port()), version);
    assert_eq!(
        info_field(&info(&mut a, None), "redis_version"),
        Some(&*version)
    );
    // A proxy that was never asked INFO learns the version for HELLO.
    let other = Shards::start(2);
    let mut c = other.client();
    assert_eq!(hello_version(&mut c, "3"), version);
    assert_eq!(hello_version(&mut c, "2"), version);
    assert_eq!(hello_version(&mut a, "2"), version);
}

#[test]
fn command_info_keyspace_and_version_come_from_the_masters_cluster_mode() {
    let rc = RedisCluster::start(3, 1);
    let proxy = Proxy::start(&rc.proxy_conf(&[("read_timeout", "3000")]).to_toml());
    let reference = RedisServer::start();
    let mut c = proxy.client();
    let version = version_of(rc.port(0));
    assert_eq!(hello_version(&mut c, "3"), version);
    command_replies_match(proxy.port(), reference.port());
    let masters: Vec<u16> = rc.masters().into_iter().map(|m| rc.port(m)).collect();
    keyspace_is_summed(proxy.port(), &masters);
    assert_eq!(version_of(proxy.port()), version);
}

/// INFO must answer while a server is down (client libraries send it when
/// they connect): the keyspace then says how many servers it lacks.
#[test]
fn info_answers_with_a_server_down() {
    let mut shards = Shards::start(3);
    let mut a = shards.client();
    assert_eq!(a.cmd(&["SET", "k", "v"]), Reply::ok());
    shards.servers[2].kill();
    let text = info(&mut a, None);
    assert!(
        text.contains("# Server") && text.contains("# Keyspace"),
        "{text}"
    );
    assert_eq!(
        info_field(&text, "keyspace_servers_missing"),
        Some("1"),
        "{text}"
    );
    assert!(info_field(&text, "redis_version").is_some(), "{text}");
}
