//! The supervisor thread under hung servers: health pings and slot
//! refreshes wait on no single server, a reload keeps what pings learned,
//! and pinging costs next to no CPU.
//!
//! Hung servers are SIGSTOPped (`Paused`): the kernel still accepts their
//! connections, so only a deadline tells them from slow ones.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, ClusterConf, Paused, Proxy, RedisCluster, RedisServer, Reply, Role, config_toml,
    cpu_ticks, info, info_backends, key_per_server, poll_until,
};

const POLL: Duration = Duration::from_millis(10);

/// The `state=` of backend `i` in the proxy's INFO (up, down, ejected).
fn backend_state(c: &mut Client, i: usize) -> String {
    let backends = info_backends(&info(c, Some("backends")));
    backends
        .get(i)
        .and_then(|b| b.get("state"))
        .cloned()
        .unwrap_or_else(|| panic!("no backend{i} in INFO: {backends:?}"))
}

/// How long until INFO says backend `i` is ejected (at most `limit`).
fn time_to_eject(c: &mut Client, i: usize, since: Instant, limit: Duration) -> Option<Duration> {
    poll_until(limit, POLL, || {
        (backend_state(c, i) == "ejected").then(|| since.elapsed())
    })
}

/// Asserts that backend `i`, killed at `killed`, is ejected within 1.6 s:
/// 3 rounds of 300 ms take 0.6-0.9 s.
fn ejected_on_time(c: &mut Client, i: usize, killed: Instant, while_: &str) {
    let took = time_to_eject(c, i, killed, Duration::from_secs(10));
    let took = took.expect("the killed server was not ejected within 10 s");
    eprintln!("killed server ejected after {took:?} with {while_}");
    assert!(
        took < Duration::from_millis(1600),
        "ejected {took:?} after the kill, with {while_}"
    );
}

/// A sharding cluster over `servers` pinging every 300 ms, 3 failures to eject.
fn pinged(name: &str, servers: &[RedisServer]) -> ClusterConf {
    let refs: Vec<&RedisServer> = servers.iter().collect();
    ClusterConf::new(name, &refs)
        .set("ping_fail_limit", "3")
        .set("ping_interval", "300")
}

/// Lets every server answer a few pings, so each has a kept connection
/// and nothing is ejected yet when the test starts its clock.
fn settle(c: &mut Client, n: usize) {
    thread::sleep(Duration::from_millis(700));
    for i in 0..n {
        assert_eq!(backend_state(c, i), "up", "backend{i} before any fault");
    }
}

/// Before the fix the supervisor pinged one server after another, 300 ms
/// each for the stopped ones: the killed third was ejected after ~2.8 s.
/// Pinged together with a deadline each, it goes after 3 rounds at most:
/// 0.6-0.9 s.
#[test]
fn a_dead_server_is_ejected_on_time_while_two_others_hang() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let conf = pinged("hung", &servers);
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    settle(&mut c, 3);

    let paused = Paused::new(&[servers[0].pid(), servers[1].pid()]);
    servers[2].kill();
    let killed = Instant::now();
    ejected_on_time(&mut c, 2, killed, "two servers of the pool stopped");
    // The stopped ones are ejected too, each on its own deadlines.
    for i in 0..2 {
        let t = time_to_eject(&mut c, i, killed, Duration::from_secs(5));
        assert!(t.is_some(), "stopped backend{i} was never ejected");
    }
    paused.resume();
}

/// Before the fix one pool's stopped servers held up another pool's
/// pings: 6 stopped servers at 300 ms each made every round of the other
/// pool wait 1.8 s, so its dead server went after ~5 s.
#[test]
fn stopped_servers_in_one_pool_do_not_delay_ejection_in_another() {
    let stalled: Vec<RedisServer> = (0..8).map(|_| RedisServer::start()).collect();
    let mut quick: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let a = pinged("stalled", &stalled);
    let b = pinged("quick", &quick);
    let proxy = Proxy::start(&config_toml(&[a, b.clone()]));
    let mut c = Client::connect(b.port);
    settle(&mut c, 3);

    let pids: Vec<u32> = stalled[..6].iter().map(RedisServer::pid).collect();
    let paused = Paused::new(&pids);
    quick[1].kill();
    ejected_on_time(
        &mut c,
        1,
        Instant::now(),
        "6 servers of another pool stopped",
    );
    // The stalled pool's own live servers stay in.
    let mut s = proxy.client();
    assert_eq!(backend_state(&mut s, 7), "up");
    paused.resume();
}

/// Cluster mode: a replica takes over from a killed master while the node
/// the supervisor used to ask first (the owner of slot 0) is stopped.
/// Before the fix each refresh spent 1 s on the stopped node, and after a
/// kick found the old table nothing asked again until a worker's backoff
/// let its next failure through: writes resumed 1-2 s after the takeover.
#[test]
fn a_takeover_is_picked_up_quickly_while_another_node_hangs() {
    let mut rc = RedisCluster::start(3, 1);
    // No automatic failover during the test: only the takeover below
    // changes the table (the stopped node would otherwise be replaced too).
    rc.set_node_timeout(60_000);
    let hung = rc.slot_owner(0);
    let victim = rc.other_master(hung);
    let replica = rc.replicas_of(victim)[0];
    let third = rc
        .masters()
        .into_iter()
        .find(|m| *m != hung && *m != victim)
        .expect("a third master");
    let keys = rc.key_per_master("takeover:");
    let (key, other) = (keys[&victim].clone(), keys[&third].clone());
    let proxy = Proxy::start_at_info(&rc.proxy_conf(&[]).to_toml(), &[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", &key, "v0"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &other, "o0"]), Reply::ok());
    rc.wait_replicated();

    let paused = Paused::new(&[rc.pid(hung)]);
    rc.kill(victim);
    // The dead master's slots fail (and the workers kick the supervisor)
    // until the takeover.
    for _ in 0..5 {
        assert!(c.cmd(&["SET", &key, "x"]).is_error());
        thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(
        rc.cmd(replica, &["CLUSTER", "FAILOVER", "TAKEOVER"]),
        Reply::ok()
    );
    let promoted = poll_until(Duration::from_secs(5), POLL, || {
        (rc.role(replica) == Role::Master).then(Instant::now)
    });
    let promoted = promoted.expect("the replica did not take over within 5 s");
    let mut errors = 0;
    let resumed = poll_until(Duration::from_secs(8), POLL, || {
        if c.cmd(&["SET", &key, "v1"]) == Reply::ok() {
            return Some(promoted.elapsed());
        }
        errors += 1;
        None
    });
    let took = resumed.expect("writes did not resume within 8 s of the takeover");
    eprintln!("writes resumed {took:?} after the takeover ({errors} errors meanwhile)");
    assert!(
        took < Duration::from_millis(500),
        "writes resumed {took:?} after the takeover, with a node stopped"
    );
    assert_eq!(rc.cmd(replica, &["GET", &key]), Reply::bulk("v1"));
    assert_eq!(c.cmd(&["GET", &other]), Reply::bulk("o0"));
    paused.resume();
}

/// SIGHUP with an unchanged file (logrotate sends one) used to put an
/// ejected, dead server back in the ring: its keys failed until pings
/// ejected it again. Now a server the reload leaves unchanged keeps its
/// health; one the reload changes starts live.
#[test]
fn a_reload_keeps_an_unchanged_ejected_server_out_and_lets_a_changed_one_in() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("kept", &refs)
        .set("ping_fail_limit", "2")
        .set("ping_interval", "200");
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    let mut c = proxy.client();
    let keys = key_per_server(&mut c, &servers, "kept");
    servers[2].kill();
    let ejected = time_to_eject(&mut c, 2, Instant::now(), Duration::from_secs(5));
    assert!(ejected.is_some(), "the killed server was not ejected");
    assert_eq!(c.cmd(&["SET", &keys[2], "elsewhere"]), Reply::ok());

    proxy.reload(&conf.to_toml(), "reload of", 1);
    let until = Instant::now() + Duration::from_millis(1000);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        assert_eq!(
            backend_state(&mut c, 2),
            "ejected",
            "round {round} after an unchanged reload: the dead server is back"
        );
        let v = format!("v{round}");
        assert_eq!(
            c.cmd(&["SET", &keys[2], &v]),
            Reply::ok(),
            "round {round}: the dead server's key after an unchanged reload"
        );
        assert_eq!(c.cmd(&["GET", &keys[2]]), Reply::bulk(&v));
        thread::sleep(Duration::from_millis(20));
    }
    // Still ejected by its old failures, not by fresh ones: the counter
    // did not move.
    let ejects = |c: &mut Client| -> String {
        let text = info(c, Some("stats"));
        crate::harness::info_field(&text, "server_ejects")
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(ejects(&mut c), "1", "ejections counted");

    // The same server with another weight is a changed server: it starts
    // live (and fails) until pings, now 5 s apart, eject it again.
    let mut changed = conf.clone().set("ping_interval", "5000");
    changed.servers[2] = format!("{}:2 redis2", servers[2].addr());
    proxy.reload(&changed.to_toml(), "reload of", 1);
    let live = poll_until(Duration::from_secs(2), POLL, || {
        (backend_state(&mut c, 2) != "ejected").then_some(())
    });
    assert!(live.is_some(), "the changed server did not start live");
    assert_eq!(backend_state(&mut c, 0), "up");
    let fails = (0..60)
        .map(|i| c.cmd(&["SET", &format!("{i}:changed"), "x"]))
        .filter(Reply::is_error)
        .count();
    assert!(fails > 0, "no key reached the changed (dead) server");
}

/// Pinging at the shortest interval, one server hung (a timeout and a
/// reconnect every round), costs the supervisor thread next to nothing: no
/// busy loop between deadlines.
#[test]
fn pings_at_the_configured_interval_do_not_spin() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("idle", &refs)
        .set("ping_fail_limit", "3")
        .set("ping_interval", "100");
    let proxy = Proxy::start(&conf.to_toml());
    let paused = Paused::new(&[servers[1].pid()]);
    let mut c = proxy.client();
    let ejected = time_to_eject(&mut c, 1, Instant::now(), Duration::from_secs(3));
    assert!(ejected.is_some(), "the stopped server was not ejected");
    // "aster-supervisor", as /proc cuts thread names to 15 bytes.
    let before = cpu_ticks(proxy.pid(), "aster-superv");
    thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(proxy.pid(), "aster-superv") - before;
    eprintln!("supervisor CPU over 3 s of 100 ms pings: {used} tick(s)");
    assert!(
        used <= 10,
        "the supervisor used {used} ticks (1/100 s each) in 3 s of pings"
    );
    // It did ping all along: the stopped server comes back once resumed.
    paused.resume();
    let back = poll_until(Duration::from_secs(3), POLL, || {
        (backend_state(&mut c, 1) == "up").then_some(())
    });
    assert!(back.is_some(), "the resumed server was not readmitted");
}
