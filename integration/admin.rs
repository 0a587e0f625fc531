//! The proxy's own INFO and SLOWLOG, answered without a backend.

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{
    Client, ClusterConf, Proxy, RedisServer, Reply, args, config_toml, info, info_backends,
    info_field, info_num, key_per_server, poll_until, proxy_version,
};

// ---------------------------------------------------------------------------
// INFO and SLOWLOG
// ---------------------------------------------------------------------------

#[test]
fn info_describes_the_proxy_its_cluster_and_backends() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("infocl", &refs)
        .set("thread", "3")
        .set("max_clients", "77");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    let _other = proxy.client();

    let text = info(&mut c, None);
    for section in ["# Server", "# Clients", "# Stats", "# Backends"] {
        assert!(text.contains(section), "INFO lacks {section}:\n{text}");
    }
    assert_eq!(info_field(&text, "cluster"), Some("infocl"), "{text}");
    assert_eq!(info_field(&text, "cache_type"), Some("redis"), "{text}");
    assert_eq!(
        info_field(&text, "listen_addr"),
        Some(&*format!("127.0.0.1:{}", conf.port)),
        "{text}"
    );
    assert_eq!(info_num(&text, "threads"), 3);
    assert_eq!(info_num(&text, "maxclients"), 77);
    let redis_version = info_field(&text, "redis_version").expect("redis_version");
    assert!(
        redis_version.split('.').count() == 3
            && redis_version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "redis_version {redis_version:?}"
    );
    let own = proxy_version();
    assert_eq!(
        format!(
            "aster-proxy {}",
            info_field(&text, "aster_version").expect("aster_version")
        ),
        own
    );
    assert!(info_num(&text, "uptime_in_seconds") < 600);
    let b = info_backends(&text);
    assert_eq!(b.len(), 2, "{text}");
    for (i, line) in b.iter().enumerate() {
        assert_eq!(line["name"], format!("redis{i}"), "{text}");
        assert_eq!(line["addr"], servers[i].addr(), "{text}");
        assert_eq!(line["state"], "up", "{text}");
        for k in ["requests", "errors", "timeouts"] {
            assert!(line[k].parse::<u64>().is_ok(), "{k} in {line:?}");
        }
    }

    // Counters move with traffic (workers publish them every ~200 ms).
    let n = 50;
    let cmds: Vec<Vec<String>> = (0..n)
        .map(|i| args(&["SET", &format!("{i}:inf"), "v"]))
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let text = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let t = info(&mut c, None);
        let requests: u64 = info_backends(&t)
            .iter()
            .map(|b| b["requests"].parse::<u64>().expect("requests"))
            .sum();
        // Every worker publishes on its own ~200 ms clock: wait for all.
        (info_num(&t, "total_commands_processed") >= n
            && requests >= n
            && info_num(&t, "total_connections_received") >= 2)
            .then_some(t)
    })
    .unwrap_or_else(|| panic!("INFO counters did not move:\n{}", info(&mut c, None)));
    assert!(info_num(&text, "total_connections_received") >= 2, "{text}");
    assert!(info_num(&text, "connected_clients") >= 2, "{text}");
    for b in info_backends(&text) {
        assert!(b["requests"].parse::<u64>().expect("requests") > 0, "{b:?}");
        assert_eq!(b["errors"], "0");
    }

    // INFO <section> gives that section alone.
    let server = info(&mut c, Some("server"));
    assert!(server.contains("# Server"), "{server}");
    assert_eq!(info_field(&server, "cluster"), Some("infocl"));
    for other in ["# Clients", "# Stats", "# Backends", "backend0:"] {
        assert!(
            !server.contains(other),
            "INFO server has {other}:\n{server}"
        );
    }
    let clients = info(&mut c, Some("clients"));
    assert!(clients.contains("connected_clients:") && !clients.contains("# Server"));
}

fn int(r: &Reply) -> i64 {
    match r {
        Reply::Int(n) => *n,
        other => panic!("expected an integer reply: {other:?}"),
    }
}

fn array(r: Reply) -> Vec<Reply> {
    match r {
        Reply::Array(v) => v,
        other => panic!("expected an array reply: {other:?}"),
    }
}

/// SLOWLOG GET [n] as (id, unix time, µs, args, client addr, client name).
type SlowEntry = (i64, i64, i64, Vec<String>, String, String);

fn slowlog_get(c: &mut Client, n: Option<&str>) -> Vec<SlowEntry> {
    let r = match n {
        Some(n) => c.cmd(&["SLOWLOG", "GET", n]),
        None => c.cmd(&["SLOWLOG", "GET"]),
    };
    array(r)
        .into_iter()
        .map(|e| {
            let f = array(e);
            assert_eq!(f.len(), 6, "a slowlog entry has 6 fields: {f:?}");
            let args = array(f[3].clone())
                .iter()
                .map(|a| a.text().to_string())
                .collect();
            (
                int(&f[0]),
                int(&f[1]),
                int(&f[2]),
                args,
                f[4].text().to_string(),
                f[5].text().to_string(),
            )
        })
        .collect()
}

fn slowlog_len(c: &mut Client) -> i64 {
    int(&c.cmd(&["SLOWLOG", "LEN"]))
}

#[test]
fn slowlog_logs_every_request_at_zero_and_nothing_when_off() {
    let s = RedisServer::start();
    let t = RedisServer::start();
    let all = ClusterConf::new("slow_all", &[&s, &t])
        .set("slowlog_log_slower_than", "0")
        .set("slowlog_max_len", "5");
    let off = ClusterConf::new("slow_off", &[&s]).set("slowlog_log_slower_than", "-1");
    let proxy = Proxy::start(&config_toml(&[all.clone(), off.clone()]));
    let mut c = Client::connect(all.port);
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 0);
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "slowpoke"]), Reply::ok());

    assert_eq!(c.cmd(&["SET", "sl1", "v1"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 1);
    assert_eq!(c.cmd(&["GET", "sl1"]), Reply::bulk("v1"));
    assert_eq!(slowlog_len(&mut c), 2);
    // Answered by the proxy itself: no backend time, not logged.
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(slowlog_len(&mut c), 2);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let local = c.stream().local_addr().expect("local addr").to_string();
    let e = slowlog_get(&mut c, Some("2"));
    assert_eq!(e.len(), 2, "{e:?}");
    // Newest first.
    assert_eq!(e[0].3, vec!["GET", "sl1"], "{e:?}");
    assert_eq!(e[1].3, vec!["SET", "sl1", "v1"], "{e:?}");
    assert!(e[0].0 > e[1].0, "ids grow: {e:?}");
    for entry in &e {
        assert!((entry.1 - now).abs() <= 60, "unix time {entry:?}");
        assert!(entry.2 >= 0, "µs {entry:?}");
        assert_eq!(entry.4, local, "client address");
        assert_eq!(entry.5, "slowpoke", "client name");
    }
    assert_eq!(slowlog_get(&mut c, Some("1")).len(), 1);

    // From another connection (other worker too): the log is per cluster.
    let mut other = Client::connect(all.port);
    assert_eq!(other.cmd(&["SET", "sl2", "v2"]), Reply::ok());
    let e = slowlog_get(&mut other, None);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0].3, vec!["SET", "sl2", "v2"]);
    assert_eq!(
        e[0].4,
        other.stream().local_addr().expect("addr").to_string()
    );
    assert_eq!(e[0].5, "", "no name set on this client");

    // At most slowlog_max_len entries, newest kept.
    for i in 0..6 {
        assert_eq!(c.cmd(&["SET", &format!("cap{i}"), "x"]), Reply::ok());
    }
    assert_eq!(slowlog_len(&mut c), 5);
    let e = slowlog_get(&mut c, Some("-1"));
    assert_eq!(e.len(), 5);
    assert_eq!(e[0].3, vec!["SET", "cap5", "x"]);
    assert_eq!(e[4].3, vec!["SET", "cap1", "x"]);

    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 0);
    assert_eq!(c.cmd(&["SLOWLOG", "GET"]), Reply::Array(vec![]));
    assert!(c.cmd(&["SLOWLOG", "NOPE"]).is_error());

    // slowlog_log_slower_than = -1: nothing is logged.
    let mut o = Client::connect(off.port);
    for i in 0..20 {
        assert_eq!(o.cmd(&["SET", &format!("off{i}"), "x"]), Reply::ok());
    }
    assert_eq!(slowlog_len(&mut o), 0);
    assert_eq!(o.cmd(&["SLOWLOG", "GET"]), Reply::Array(vec![]));
    drop(proxy);
}

#[test]
fn slowlog_catches_exactly_the_stalled_request() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("stall", &refs).set("slowlog_log_slower_than", "20000");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    let keys = key_per_server(&mut c, &servers, "stall");
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    // Warm both backend connections, then nothing but the stalled request
    // runs between RESET and the check.
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::bulk("v"));
    assert_eq!(c.cmd(&["GET", &keys[1]]), Reply::bulk("v"));
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());

    servers[0].pause();
    let start = Instant::now();
    c.send_cmd(&["GET", &keys[0]]);
    thread::sleep(Duration::from_millis(50));
    servers[0].resume();
    assert_eq!(c.read_reply().expect("reply"), Reply::bulk("v"));
    let took = start.elapsed();

    let e = slowlog_get(&mut c, None);
    assert_eq!(e.len(), 1, "exactly the stalled request is logged: {e:?}");
    assert_eq!(e[0].3, vec!["GET".to_string(), keys[0].clone()]);
    let us = e[0].2;
    assert!(
        us >= 40_000 && us <= took.as_micros() as i64 + 5_000,
        "logged {us} µs for a request that took {took:?} with a 50 ms stall"
    );
    assert_eq!(e[0].4, c.stream().local_addr().expect("addr").to_string());

    // Fast requests stay out. (On a loaded machine one may really take
    // 20 ms; whatever is logged must have been that slow, and most are not.)
    let fast = 20;
    for i in 0..fast {
        assert_eq!(c.cmd(&["GET", &keys[i % 2]]), Reply::bulk("v"));
    }
    let e = slowlog_get(&mut c, Some("-1"));
    assert_eq!(e.last().map(|x| x.3[1].clone()), Some(keys[0].clone()));
    assert!(
        e.iter().all(|x| x.2 >= 20_000),
        "an entry below the 20000 µs threshold: {e:?}"
    );
    assert!(
        e.len() <= 1 + fast / 2,
        "most fast requests were logged as slow: {e:?}"
    );
}
