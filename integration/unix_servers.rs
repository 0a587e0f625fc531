//! Servers on a unix socket (`/path/redis.sock:1 [name]` in `servers`):
//! a pool of them and a pool mixing them with TCP ones serve single and
//! split multi-key commands; keys land where nutcracker puts them for the
//! same YAML, named or not, and stats name them as nutcracker does; a
//! killed one is ejected and rejoins; redis-benchmark runs through them.

use std::time::Duration;

use crate::harness::{
    Client, ClusterConf, Nutcracker, Proxy, RedisServer, Reply, TempDir, args, free_port, holder,
    info, info_backends, key_per_server, key_set, keys_not_read_back, output_text, poll_until,
    redis_benchmark, run_proxy_bin,
};

fn unix_servers(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start_unix()).collect()
}

/// `path:1 redisN` for unix servers, `host:port:1 redisN` for TCP ones.
fn lines(servers: &[(&RedisServer, bool)]) -> Vec<String> {
    servers
        .iter()
        .enumerate()
        .map(|(i, (s, unix))| match unix {
            true => format!("{}:1 redis{i}", s.sock_path().display()),
            false => format!("{}:1 redis{i}", s.addr()),
        })
        .collect()
}

/// SETs 60 keys, reads them back one by one and in one MGET, checks each
/// server holds some, then deletes them all in one DEL.
fn serves_across(c: &mut Client, servers: &[&RedisServer]) {
    let keys: Vec<String> = (0..60).map(|i| format!("{i}:unix-key")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), Reply::ok(), "SET {k}");
    }
    let mut per_server = vec![0; servers.len()];
    for k in &keys {
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk(k), "GET {k}");
        per_server[holder(servers, k)] += 1;
    }
    assert!(
        per_server.iter().all(|&n| n > 0),
        "every server holds some keys: {per_server:?}"
    );
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let want = Reply::Array(keys.iter().map(|k| Reply::bulk(k)).collect());
    assert_eq!(c.cmd(&mget), want, "MGET split across the servers");
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(c.cmd(&del), Reply::Int(keys.len() as i64));
}

#[test]
fn a_pool_of_unix_socket_servers_serves_keys_across_them() {
    let servers = unix_servers(3);
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let with: Vec<(&RedisServer, bool)> = refs.iter().map(|s| (*s, true)).collect();
    let conf = ClusterConf::with_server_lines("unix", lines(&with));
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    serves_across(&mut c, &refs);
    // INFO names each backend by its alias and its path.
    let backends = info_backends(&info(&mut c, Some("backends")));
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(backends[i]["addr"], s.sock_path().display().to_string());
        assert_eq!(backends[i]["state"], "up");
    }
}

#[test]
fn a_pool_mixing_tcp_and_unix_socket_servers_serves_keys_across_them() {
    let tcp: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let unix = unix_servers(2);
    let with = [
        (&tcp[0], false),
        (&unix[0], true),
        (&tcp[1], false),
        (&unix[1], true),
    ];
    let refs: Vec<&RedisServer> = with.iter().map(|(s, _)| *s).collect();
    let conf = ClusterConf::with_server_lines("mixed", lines(&with));
    let proxy = Proxy::start(&conf.to_toml());
    serves_across(&mut proxy.client(), &refs);
}

/// One pool on the same YAML for nutcracker and aster: two path servers
/// without a name (nutcracker hashes `/path:`), one with, one TCP.
#[test]
fn keys_land_where_nutcracker_puts_them_and_stats_name_servers_alike() {
    if !Nutcracker::available() {
        eprintln!("nutcracker not installed: skipping");
        return;
    }
    let unix = unix_servers(3);
    let tcp = RedisServer::start();
    let entries = [
        format!("{}:1", unix[0].sock_path().display()),
        format!("{}:2", unix[1].sock_path().display()),
        format!("{}:1 named", unix[2].sock_path().display()),
        format!("{}:1", tcp.addr()),
    ];
    let yml = |port: u16| {
        let mut y = format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  timeout: 2000\n  servers:\n"
        );
        for e in &entries {
            y += &format!("   - {e}\n");
        }
        y
    };
    let twem = Nutcracker::start_yml(&yml(free_port()));
    let aster = Proxy::start_yml(&yml(free_port()), &[]);
    let keys: Vec<String> = (0..300).map(|i| format!("{i}:placed")).collect();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    let replies = twem.client().pipeline(&sets);
    assert!(replies.iter().all(|r| *r == Reply::ok()), "{replies:?}");
    let all: Vec<&RedisServer> = unix.iter().chain([&tcp]).collect();
    for (i, s) in all.iter().enumerate() {
        assert!(s.dbsize() > 0, "nutcracker put no key on server {i}");
    }
    let missed = keys_not_read_back(aster.port(), &keys);
    assert!(
        missed.is_empty(),
        "{} of {} keys placed unlike nutcracker, e.g. {:?}",
        missed.len(),
        keys.len(),
        &missed[..missed.len().min(5)]
    );
    let servers_of = |doc: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = key_set(&doc["pool"])
            .into_iter()
            .filter(|k| doc["pool"][k].is_object())
            .collect();
        names.sort();
        names
    };
    let theirs = servers_of(&twem.stats());
    assert_eq!(servers_of(&aster.stats()), theirs, "server names in stats");
    let unnamed = format!("{}:", unix[0].sock_path().display());
    assert!(theirs.contains(&unnamed), "{unnamed} in {theirs:?}");
}

#[test]
fn a_killed_unix_socket_server_is_ejected_and_rejoins() {
    let mut servers = unix_servers(2);
    let with: Vec<(&RedisServer, bool)> = servers.iter().map(|s| (s, true)).collect();
    let conf = ClusterConf::with_server_lines("eject", lines(&with))
        .set("ping_fail_limit", "2")
        .set("ping_interval", "200");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    let state = |c: &mut Client, i: usize| -> String {
        info_backends(&info(c, Some("backends")))[i]["state"].clone()
    };
    let wait_state = |c: &mut Client, i: usize, want: &str| {
        poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            (state(c, i) == want).then_some(())
        })
        .unwrap_or_else(|| panic!("backend{i} not {want} within 5 s: {}", state(c, i)))
    };
    wait_state(&mut c, 1, "up");
    let on_1 = key_per_server(&mut c, &servers, "eject")[1].clone();
    // The socket file stays behind a killed server: connects are refused.
    servers[1].kill();
    wait_state(&mut c, 1, "ejected");
    // INFO reads the verdict before the worker may have taken the table
    // without the server: a key of the killed one is stored once it has.
    let moved = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (c.cmd(&["SET", &on_1, "v"]) == Reply::ok()).then_some(())
    });
    assert!(moved.is_some(), "{on_1} not stored elsewhere within 5 s");
    assert_eq!(servers[0].dbsize(), 1);
    for i in 0..20 {
        let k = format!("{i}:after-eject");
        assert_eq!(c.cmd(&["SET", &k, "v"]), Reply::ok(), "SET {k}");
    }
    assert_eq!(servers[0].dbsize(), 21, "the live server took every key");
    servers[1].restart();
    wait_state(&mut c, 1, "up");
    let back = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (c.cmd(&["SET", &on_1, "v"]) == Reply::ok() && servers[1].has(&on_1)).then_some(())
    });
    assert!(back.is_some(), "{on_1} not back on its server within 5 s");
    let refs: Vec<&RedisServer> = servers.iter().collect();
    serves_across(&mut c, &refs);
}

#[test]
fn redis_benchmark_runs_through_unix_socket_servers() {
    let servers = unix_servers(2);
    let with: Vec<(&RedisServer, bool)> = servers.iter().map(|s| (s, true)).collect();
    // (fnv1a_64 puts keys differing only at the end, as the benchmark's
    // do, on one server: murmur spreads them.)
    let conf = ClusterConf::with_server_lines("bench", lines(&with)).set("hash", "\"murmur\"");
    let proxy = Proxy::start(&conf.to_toml());
    let port = proxy.port().to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-q",
        "-n",
        "5000",
        "-c",
        "20",
        "-P",
        "4",
        "-r",
        "1000",
        "-t",
        "set,get,mset",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let text = redis_benchmark(&args);
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    for (i, s) in servers.iter().enumerate() {
        assert!(
            s.dbsize() > 0,
            "server {i} got none of the benchmark's keys"
        );
    }
}

/// A Redis Cluster is reached over TCP: `-t` refuses a path among its
/// seeds, naming the cluster and the key.
#[test]
fn a_redis_cluster_refuses_a_unix_socket_seed() {
    let conf = ClusterConf::with_server_lines("rc", vec!["/tmp/aster-rc.sock:1".into()])
        .set("cache_type", "\"redis_cluster\"");
    let dir = TempDir::new("unix-rc");
    let path = dir.join("aster.toml");
    std::fs::write(&path, conf.to_toml()).expect("write config");
    let out = run_proxy_bin(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("aster.toml")
            && text.contains("cluster 'rc'")
            && text.contains("servers")
            && text.contains("TCP"),
        "{text}"
    );
}
