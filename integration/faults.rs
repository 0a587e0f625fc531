//! Backends that die, stall, come back, or get ejected from the ring.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Client, Reply, Shards, args, poll_until};

/// Sends one command; returns its reply and how long it took.
fn timed(c: &mut Client, cmd: &[&str]) -> (Reply, Duration) {
    let start = Instant::now();
    let r = c.cmd(cmd);
    (r, start.elapsed())
}

#[test]
fn dead_backend_gives_errors_others_keep_working_and_it_reconnects() {
    let mut s = Shards::start_with(3, |c| {
        c.set("ping_fail_limit", "0").set("read_timeout", "2000")
    });
    let keys = s.key_per_server("down");
    let mut c = s.client();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "before"]), Reply::ok());
    }
    s.servers[1].kill();

    // Several times: the first request may meet the old connection's reset,
    // later ones a refused reconnect. Every one gets an error, quickly.
    for attempt in 0..5 {
        let (r, took) = timed(&mut c, &["GET", &keys[1]]);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("attempt {attempt}: GET on a dead backend: {r:?}"));
        assert!(
            e.starts_with("ERR") && e.to_lowercase().contains("connection"),
            "attempt {attempt}: expected a connection error like 'ERR Connection refused': {e:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "attempt {attempt}: error took {took:?}"
        );
        // The live backends still answer, on the same connection.
        assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::bulk("before"));
        assert_eq!(c.cmd(&["GET", &keys[2]]), Reply::bulk("before"));
    }
    // A multi-key request touching the dead backend fails as a whole, and
    // does not hang; the connection stays usable.
    let (r, took) = timed(&mut c, &["MGET", &keys[0], &keys[1], &keys[2]]);
    assert!(r.is_error(), "MGET over a dead backend: {r:?}");
    assert!(took < Duration::from_secs(2), "MGET error took {took:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["GET", &keys[2]]), Reply::bulk("before"));

    // Back on the same port (empty: no persistence): requests succeed again.
    s.servers[1].restart();
    let ok = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (c.cmd(&["SET", &keys[1], "after"]) == Reply::ok()).then_some(())
    });
    assert!(
        ok.is_some(),
        "no reconnect to the restarted backend within 5 s"
    );
    assert_eq!(c.cmd(&["GET", &keys[1]]), Reply::bulk("after"));
    assert_eq!(
        s.servers[1].client().cmd(&["GET", &keys[1]]),
        Reply::bulk("after")
    );
    // Every worker reconnects: fresh connections (spread over workers) work too.
    for _ in 0..8 {
        let mut other = s.client();
        let ok = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            (other.cmd(&["GET", &keys[1]]) == Reply::bulk("after")).then_some(())
        });
        assert!(
            ok.is_some(),
            "a worker did not reconnect to the restarted backend"
        );
    }
}

#[test]
fn stalled_backend_times_out_others_keep_serving() {
    let read_timeout = Duration::from_millis(500);
    let mut s = Shards::start_with(3, |c| {
        c.set("ping_fail_limit", "0").set("read_timeout", "500")
    });
    let keys = s.key_per_server("slow");
    let mut c = s.client();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    s.servers[1].pause();
    let port = s.proxy.port();
    let (k0, k1, k2) = (keys[0].clone(), keys[1].clone(), keys[2].clone());
    let waiter = thread::spawn(move || {
        let mut c = Client::connect(port);
        let start = Instant::now();
        let r = c.cmd(&["GET", &k1]);
        (r, start.elapsed(), Instant::now())
    });
    // Meanwhile the other backends answer other clients at once.
    let mut other = s.client();
    let mut served_at = Instant::now();
    for _ in 0..20 {
        assert_eq!(other.cmd(&["GET", &k0]), Reply::bulk("v"));
        assert_eq!(other.cmd(&["GET", &k2]), Reply::bulk("v"));
        served_at = Instant::now();
    }
    let (r, took, answered_at) = waiter.join().expect("waiter thread");
    let e = r
        .error()
        .unwrap_or_else(|| panic!("GET on a stalled backend: {r:?}"));
    assert!(
        e.contains("timed out"),
        "error should say 'timed out': {e:?}"
    );
    assert!(
        took >= read_timeout * 8 / 10,
        "timed out too early: {took:?}"
    );
    assert!(took < read_timeout * 5, "timed out too late: {took:?}");
    assert!(
        served_at < answered_at,
        "other backends were not served while one stalled"
    );
    // The same connection is usable afterwards.
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::bulk("v"));

    s.servers[1].resume();
    let ok = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (c.cmd(&["GET", &keys[1]]) == Reply::bulk("v")).then_some(())
    });
    assert!(ok.is_some(), "the resumed backend is not used again");
}

#[test]
fn replies_stay_in_order_when_backends_answer_out_of_order() {
    let mut s = Shards::start_with(3, |c| c.set("read_timeout", "0"));
    let keys = s.key_per_server("order");
    let mut c = s.client();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.cmd(&["SET", k, &format!("v{i}")]), Reply::ok());
    }
    s.servers[0].pause();
    // The first request waits on the paused backend; the others are answered
    // by their backends at once, but must not reach the client before it.
    let mut bytes = Vec::new();
    for cmd in [
        args(&["GET", &keys[0]]),
        args(&["GET", &keys[1]]),
        args(&["GET", &keys[2]]),
        args(&["PING"]),
        args(&["MGET", &keys[2], &keys[0]]),
    ] {
        let a: Vec<&str> = cmd.iter().map(String::as_str).collect();
        bytes.extend(crate::harness::encode_str(&a));
    }
    c.send(&bytes);
    let early = c.readable_within(Duration::from_millis(300));
    s.servers[0].resume();
    assert!(
        !early,
        "a reply arrived while the first request's backend was paused"
    );
    let replies = c.read_replies(5);
    assert_eq!(
        replies,
        vec![
            Reply::bulk("v0"),
            Reply::bulk("v1"),
            Reply::bulk("v2"),
            Reply::status("PONG"),
            Reply::Array(vec![Reply::bulk("v2"), Reply::bulk("v0")]),
        ]
    );
}

/// Writes `n` fresh keys `{i}{suffix}` (varying at the front, so they spread
/// over the ring); true if every SET answered OK.
fn all_writes_succeed(c: &mut Client, suffix: &str, n: usize) -> bool {
    let cmds: Vec<Vec<String>> = (0..n)
        .map(|i| args(&["SET", &format!("{i}{suffix}"), "x"]))
        .collect();
    c.pipeline(&cmds).iter().all(|r| *r == Reply::ok())
}

#[test]
fn dead_backend_is_ejected_and_rejoins() {
    let mut s = Shards::start_with(3, |c| {
        c.set("ping_fail_limit", "2").set("ping_interval", "200")
    });
    let mut c = s.client();
    assert!(all_writes_succeed(&mut c, "warm", 60));
    assert!(
        s.servers.iter().all(|srv| srv.dbsize() > 0),
        "all three backends in use at first"
    );

    s.servers[2].kill();
    let mut round = 0;
    let ejected = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        round += 1;
        all_writes_succeed(&mut c, &format!("ej{round}:"), 30).then_some(())
    });
    assert!(
        ejected.is_some(),
        "writes still fail 5 s after a backend died (no ejection?)"
    );
    // Stable afterwards: every fresh key lands on a live backend and reads back.
    let before: i64 = s.servers[..2].iter().map(|srv| srv.dbsize()).sum();
    assert!(all_writes_succeed(&mut c, "after-eject:", 100));
    let after: i64 = s.servers[..2].iter().map(|srv| srv.dbsize()).sum();
    assert_eq!(
        after - before,
        100,
        "fresh keys should all land on the two live backends"
    );
    for i in 0..100 {
        assert_eq!(
            c.cmd(&["GET", &format!("{i}after-eject:")]),
            Reply::bulk("x")
        );
    }

    s.servers[2].restart();
    let mut round = 0;
    let rejoined = poll_until(Duration::from_secs(6), Duration::from_millis(100), || {
        round += 1;
        let ok = all_writes_succeed(&mut c, &format!("rj{round}:"), 30);
        (ok && s.servers[2].dbsize() > 0).then_some(())
    });
    assert!(
        rejoined.is_some(),
        "no fresh key reached the restarted backend within 6 s"
    );
    assert!(all_writes_succeed(&mut c, "settled:", 60));
}

#[test]
fn proxy_exits_cleanly_on_sigterm() {
    let mut s = Shards::start(2);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    let status = s.proxy.terminate(Duration::from_secs(5));
    let status = status.expect("proxy still running 5 s after SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "client connection left open after exit"
    );
}
