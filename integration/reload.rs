//! Live reload: SIGHUP applies a rewritten config (servers, weights,
//! clusters, timeouts) without dropping clients, and refuses an invalid one.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, ClusterConf, Proxy, RedisServer, Reply, TempDir, accepts, args, config_toml, free_port,
    info, info_backends, info_field, keys_with, local_addr, poll_until, tail,
};

const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Live reload
// ---------------------------------------------------------------------------

#[test]
fn reload_swaps_servers_and_weights_without_dropping_clients() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("swap", &refs);
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);

    // Connections opened before the reload: a raw one and a redis-crate one.
    let mut old = proxy.client();
    let mut old_rs = proxy.conn();
    let cmds: Vec<Vec<String>> = (0..60)
        .map(|i| args(&["SET", &format!("{i}:before"), "x"]))
        .collect();
    assert!(old.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    for (i, s) in servers.iter().enumerate() {
        assert!(
            keys_with(s, ":before") > 0,
            "server {i} got no key before the reload"
        );
    }
    let local = old.stream().local_addr().expect("local addr");

    // 3 -> 2 servers, and redis2 weighs three times redis0.
    let new = ClusterConf {
        servers: vec![
            format!("{}:1 redis0", servers[0].addr()),
            format!("{}:3 redis2", servers[2].addr()),
        ],
        ..conf.clone()
    };
    proxy.reload(&new.to_toml(), "reload of", 1);
    assert!(
        proxy.log().contains("1 cluster(s) updated in place"),
        "{}",
        proxy.log()
    );

    // The old connection is the same socket and sees the new table.
    let swapped = poll_until(Duration::from_secs(3), POLL, || {
        (info_backends(&info(&mut old, Some("backends"))).len() == 2).then_some(())
    });
    assert!(
        swapped.is_some(),
        "the pre-reload connection's worker still routes over 3 servers:\n{}",
        info(&mut old, None)
    );
    assert_eq!(old.stream().local_addr().expect("local addr"), local);
    let b = info_backends(&info(&mut old, Some("backends")));
    assert_eq!(b[0]["name"], "redis0");
    assert_eq!(b[0]["addr"], servers[0].addr());
    assert_eq!(b[1]["name"], "redis2");
    assert_eq!(b[1]["addr"], servers[2].addr());

    let cmds: Vec<Vec<String>> = (0..400)
        .map(|i| args(&["SET", &format!("{i}:fresh"), "y"]))
        .collect();
    assert!(old.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let pong: String = redis::cmd("PING").query(&mut old_rs).expect("PING");
    assert_eq!(pong, "PONG");
    for i in 0..40 {
        let () = redis::cmd("SET")
            .arg(format!("{i}r:fresh"))
            .arg(i)
            .query(&mut old_rs)
            .expect("SET on the pre-reload redis-crate connection");
    }
    // New connections (spread over both workers) use the new table too.
    for n in 0..6 {
        let mut c = proxy.client();
        let ok = poll_until(Duration::from_secs(3), POLL, || {
            (info_backends(&info(&mut c, Some("backends"))).len() == 2).then_some(())
        });
        assert!(ok.is_some(), "a worker did not adopt the reloaded table");
        for i in 0..20 {
            assert_eq!(c.cmd(&["SET", &format!("{i}n{n}:fresh"), "z"]), Reply::ok());
        }
    }
    assert_eq!(
        keys_with(&servers[1], ":fresh"),
        0,
        "fresh keys landed on the removed server"
    );
    let (light, heavy) = (
        keys_with(&servers[0], ":fresh"),
        keys_with(&servers[2], ":fresh"),
    );
    assert_eq!(
        light + heavy,
        400 + 40 + 6 * 20,
        "every fresh key is stored"
    );
    assert!(
        heavy >= 2 * light && light > 0,
        "weights 1:3 should give about 1:3 keys, got redis0={light} redis2={heavy}"
    );
    // Old keys on the kept servers still read back on the old connection.
    let kept = (0..60)
        .map(|i| format!("{i}:before"))
        .find(|k| servers[2].client().cmd(&["EXISTS", k]) == Reply::Int(1))
        .expect("a pre-reload key on redis2");
    assert_eq!(old.cmd(&["GET", &kept]), Reply::bulk("x"));
}

#[test]
fn reload_adds_a_cluster_and_drains_a_removed_one() {
    let (sa, mut sb, sc) = (
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    );
    let a = ClusterConf::new("keep", &[&sa]);
    let b = ClusterConf::new("gone", &[&sb]);
    let c = ClusterConf::new("added", &[&sc]);
    let proxy = Proxy::start_at_info(&config_toml(&[a.clone(), b.clone()]), &[]);
    assert!(
        !accepts(c.port),
        "the added cluster's port is free at first"
    );

    let mut on_a = Client::connect(a.port);
    assert_eq!(on_a.cmd(&["SET", "ka", "va"]), Reply::ok());
    let mut b_idle = Client::connect(b.port);
    let mut b_busy = Client::connect(b.port);
    assert_eq!(b_busy.cmd(&["SET", "kb", "vb"]), Reply::ok());
    assert_eq!(b_idle.cmd(&["PING"]), Reply::status("PONG"));

    // One request of the removed cluster is in flight during the reload.
    sb.pause();
    b_busy.send_cmd(&["GET", "kb"]);
    thread::sleep(Duration::from_millis(100));
    let before = count(&proxy.log(), "reload of");
    fs::write(proxy.config_path(), config_toml(&[a.clone(), c.clone()])).expect("rewrite");
    proxy.signal("HUP");

    let closed = poll_until(Duration::from_secs(3), POLL, || {
        (!accepts(b.port)).then_some(())
    });
    let stop_listening = closed.is_some();
    // The in-flight request is answered before its connection closes.
    let answered_early = b_busy.readable_within(Duration::from_millis(300));
    sb.resume();
    assert!(
        stop_listening,
        "the removed cluster's port still accepts 3 s after SIGHUP"
    );
    assert!(
        !answered_early,
        "the in-flight request got an answer while its backend was paused"
    );
    let r = b_busy
        .read_reply()
        .expect("the in-flight request of a removed cluster is answered while draining");
    assert_eq!(r, Reply::bulk("vb"), "drained reply");
    assert!(
        b_busy.closed_within(Duration::from_secs(6)),
        "the removed cluster's busy client stays open after draining"
    );
    assert!(
        b_idle.closed_within(Duration::from_secs(6)),
        "the removed cluster's idle client stays open"
    );
    let done = poll_until(Duration::from_secs(10), POLL, || {
        (count(&proxy.log(), "reload of") > before).then_some(())
    });
    assert!(done.is_some(), "reload did not finish:\n{}", proxy.log());
    let log = proxy.log();
    assert!(
        log.contains("1 cluster(s) updated in place, 1 started, 1 stopped"),
        "{log}"
    );

    // The added cluster listens and routes to its server.
    let up = poll_until(Duration::from_secs(5), POLL, || {
        accepts(c.port).then_some(())
    });
    assert!(up.is_some(), "the added cluster does not accept:\n{log}");
    let mut on_c = Client::connect(c.port);
    assert_eq!(on_c.cmd(&["SET", "kc", "vc"]), Reply::ok());
    assert_eq!(sc.client().cmd(&["GET", "kc"]), Reply::bulk("vc"));
    let text = info(&mut on_c, Some("server"));
    assert_eq!(info_field(&text, "cluster"), Some("added"), "{text}");
    // The kept cluster did not notice: same connection, same data.
    assert_eq!(on_a.cmd(&["GET", "ka"]), Reply::bulk("va"));
    assert!(!accepts(b.port), "the removed cluster's port accepts again");
}

#[test]
fn reload_of_an_invalid_file_is_refused_and_sighup_reopens_the_log() {
    let dir = TempDir::new("ops-log");
    let log_path = dir.join("aster.log");
    let s = RedisServer::start();
    let t = RedisServer::start();
    let conf = ClusterConf::new("steady", &[&s, &t]);
    let proxy = Proxy::start_at_info(
        &conf.to_toml(),
        &["-o", log_path.to_str().expect("utf-8 path")],
    );
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let started = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("listening on").then_some(())
    });
    assert!(started.is_some(), "-o log file:\n{}", log());
    let mut c = proxy.client();
    let cmds: Vec<Vec<String>> = (0..40)
        .map(|i| args(&["SET", &format!("{i}:st"), &i.to_string()]))
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let placed: Vec<usize> = (0..40)
        .map(|i| usize::from(t.client().cmd(&["EXISTS", &format!("{i}:st")]) == Reply::Int(1)))
        .collect();
    let on_t: usize = placed.iter().sum();
    assert!(
        on_t > 0 && on_t < 40,
        "keys should spread over both servers"
    );

    // logrotate moves the file away; SIGHUP makes the proxy write a new one.
    let rotated = dir.join("aster.log.1");
    fs::rename(&log_path, &rotated).expect("rotate log");
    let bad_value = conf.clone().set("hash", "\"no_such_hash\"").to_toml();
    fs::write(proxy.config_path(), &bad_value).expect("write invalid config");
    proxy.signal("HUP");
    let refused = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("reload refused").then_some(())
    });
    assert!(
        refused.is_some(),
        "no 'reload refused' in the reopened log {}:\n{}\nrotated:\n{}",
        log_path.display(),
        log(),
        tail(&rotated, 30)
    );
    assert!(
        log().contains("no_such_hash"),
        "the refusal names the problem:\n{}",
        log()
    );
    assert!(log().contains("reopened"), "{}", log());
    let old_log = fs::read_to_string(&rotated).unwrap_or_default();
    assert!(
        old_log.contains("listening on") && !old_log.contains("reload refused"),
        "after SIGHUP the proxy still writes to the rotated file:\n{old_log}"
    );

    // A TOML syntax error is refused too.
    fs::write(proxy.config_path(), "[[clusters]\nname = ").expect("write broken config");
    proxy.signal("HUP");
    let refused = poll_until(Duration::from_secs(5), POLL, || {
        (count(&log(), "reload refused") >= 2).then_some(())
    });
    assert!(refused.is_some(), "second refusal missing:\n{}", log());

    // Still serving with the old configuration, on old and new connections.
    for i in 0..40 {
        assert_eq!(
            c.cmd(&["GET", &format!("{i}:st")]),
            Reply::bulk(&i.to_string())
        );
    }
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["SET", "st-after", "1"]), Reply::ok());
    let text = info(&mut fresh, None);
    assert_eq!(info_field(&text, "cluster"), Some("steady"));
    assert_eq!(info_backends(&text).len(), 2, "{text}");
    for (i, was) in placed.iter().enumerate() {
        let on_t = usize::from(t.client().cmd(&["EXISTS", &format!("{i}:st")]) == Reply::Int(1));
        assert_eq!(on_t, *was, "placement of {i}:st changed");
    }
    assert_eq!(count(&log(), "reload of"), 0, "nothing was applied");

    // A valid file is applied afterwards: the refusals left nothing stuck.
    let good = conf.clone().set("read_timeout", "2500").to_toml();
    fs::write(proxy.config_path(), good).expect("write valid config");
    proxy.signal("HUP");
    let applied = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("reload of").then_some(())
    });
    assert!(applied.is_some(), "valid reload not applied:\n{}", log());
    assert_eq!(c.cmd(&["GET", "1:st"]), Reply::bulk("1"));
}

#[test]
fn reload_applies_a_new_read_timeout() {
    let mut s = RedisServer::start();
    let conf = ClusterConf::new("timeouts", &[&s]).set("read_timeout", "5000");
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "rt", "v"]), Reply::ok());

    let adopted = count(&proxy.log(), "runs the reloaded configuration");
    proxy.reload(
        &conf.clone().set("read_timeout", "300").to_toml(),
        "reload of",
        1,
    );
    // Both workers adopt the new options with the route table.
    let ok = poll_until(Duration::from_secs(3), POLL, || {
        (count(&proxy.log(), "runs the reloaded configuration") >= adopted + 2).then_some(())
    });
    assert!(ok.is_some(), "workers did not adopt:\n{}", proxy.log());

    s.pause();
    let start = Instant::now();
    let r = c.cmd(&["GET", "rt"]);
    let took = start.elapsed();
    s.resume();
    let e = r
        .error()
        .unwrap_or_else(|| panic!("GET on a paused backend: {r:?}"));
    assert!(e.contains("timed out"), "{e:?}");
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(2500),
        "timed out after {took:?}: the reloaded read_timeout is 300 ms (was 5000 ms)"
    );
    let back = poll_until(Duration::from_secs(5), POLL, || {
        (c.cmd(&["GET", "rt"]) == Reply::bulk("v")).then_some(())
    });
    assert!(back.is_some(), "the backend is not used again after resume");
}

// ---------------------------------------------------------------------------
// Reloads that restart a cluster
// ---------------------------------------------------------------------------

#[test]
fn a_listener_moved_onto_a_busy_port_keeps_serving_on_the_old_one() {
    let s = RedisServer::start();
    let conf = ClusterConf::new("mv", &[&s]);
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "mv", "1"]), Reply::ok());

    let busy = free_port();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", busy)).expect("bind busy port");
    let onto_busy = ClusterConf {
        port: busy,
        ..conf.clone()
    };
    proxy.reload(&onto_busy.to_toml(), "reload of", 1);
    let log = proxy.log();
    // The old listener and its clients are untouched.
    assert!(accepts(conf.port), "the old port is closed:\n{log}");
    assert_eq!(c.cmd(&["GET", "mv"]), Reply::bulk("1"));
    assert_eq!(
        Client::connect(conf.port).cmd(&["GET", "mv"]),
        Reply::bulk("1")
    );
    assert!(
        log.contains("reload refused for cluster mv") && log.contains(&local_addr(busy)),
        "the refusal names the cluster and the address:\n{log}"
    );
    assert!(log.contains("0 started, 0 stopped, 1 refused"), "{log}");

    // A move onto a free port is applied: the new port serves, the old closes.
    let moved = ClusterConf {
        port: free_port(),
        ..conf.clone()
    };
    proxy.reload(&moved.to_toml(), "reload of", 1);
    assert_eq!(
        Client::connect(moved.port).cmd(&["GET", "mv"]),
        Reply::bulk("1")
    );
    assert!(
        !accepts(conf.port),
        "the old port still accepts after the move"
    );
    assert!(
        c.closed_within(Duration::from_secs(6)),
        "the old client stays open"
    );
}

#[test]
fn a_threads_change_restarts_the_cluster_on_its_port() {
    let s = RedisServer::start();
    let conf = ClusterConf::new("thr", &[&s]);
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    assert_eq!(proxy.client().cmd(&["SET", "thr", "1"]), Reply::ok());

    proxy.reload(&conf.clone().set("thread", "3").to_toml(), "reload of", 1);
    let log = proxy.log();
    assert!(
        log.contains("0 cluster(s) updated in place, 1 started, 1 stopped, 0 refused"),
        "{log}"
    );
    let mut c = proxy.client();
    assert_eq!(
        info_field(&info(&mut c, Some("server")), "threads"),
        Some("3")
    );
    assert_eq!(c.cmd(&["GET", "thr"]), Reply::bulk("1"));
}

#[test]
fn a_restart_that_fails_starts_the_previous_configuration_again() {
    let s = RedisServer::start();
    let conf = ClusterConf::new("back", &[&s]);
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    assert_eq!(proxy.client().cmd(&["SET", "back", "1"]), Reply::ok());

    // Same port, another mode: the cluster must stop first, and the new one
    // cannot start (a plain redis-server has no slots to learn).
    let as_cluster = conf.clone().set("cache_type", "\"redis_cluster\"");
    proxy.reload(&as_cluster.to_toml(), "reload of", 1);
    let log = proxy.log();
    assert!(accepts(conf.port), "the cluster is gone:\n{log}");
    assert!(
        log.contains("reload refused for cluster back") && log.contains("slots"),
        "the refusal names the cluster and why:\n{log}"
    );
    assert!(log.contains("0 started, 0 stopped, 1 refused"), "{log}");
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "back"]), Reply::bulk("1"));
    let text = info(&mut c, Some("server"));
    assert_eq!(info_field(&text, "cache_type"), Some("redis"), "{text}");
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}
