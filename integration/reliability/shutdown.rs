//! Graceful shutdown.

use super::*;

/// Waits for the proxy to exit and returns its status and when it was seen.
fn wait_exit(proxy: &mut Proxy, timeout: Duration) -> Option<(std::process::ExitStatus, Instant)> {
    let at = poll_until(timeout, Duration::from_millis(10), || {
        (!proxy.is_alive()).then(Instant::now)
    })?;
    proxy.terminate(Duration::ZERO).map(|st| (st, at))
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits_zero() {
    let mut s = Shards::start_with(2, |c| c.set("read_timeout", "0"));
    let keys = s.key_per_server("drain");
    let port = s.proxy.port();
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", &keys[0], "slow"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", &keys[1], "fast"]), Reply::ok());
    s.servers[0].pause();
    // In flight: a request to the paused backend, and one behind it.
    c.send_cmd(&["GET", &keys[0]]);
    c.send_cmd(&["GET", &keys[1]]);
    assert!(!c.readable_within(Duration::from_millis(200)));

    let termed = Instant::now();
    s.proxy.signal("TERM");
    // Once draining began, new connections are refused.
    let refused = poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    assert!(refused.is_some(), "still accepting 2 s after SIGTERM");
    for _ in 0..10 {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a connection accepted while draining"
        );
    }
    assert!(s.proxy.is_alive(), "exited with a request in flight");

    // The backend answers within the drain window: the client gets both replies.
    thread::sleep(Duration::from_millis(300));
    s.servers[0].resume();
    assert_eq!(
        c.read_reply().expect("reply in flight at SIGTERM"),
        Reply::bulk("slow")
    );
    assert_eq!(c.read_reply().expect("second reply"), Reply::bulk("fast"));
    let (status, exited) = wait_exit(&mut s.proxy, Duration::from_secs(6))
        .expect("the proxy did not exit after draining");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        exited - termed < Duration::from_secs(4),
        "exit took {:?} after SIGTERM though nothing was left in flight after ~1 s",
        exited - termed
    );
    assert!(c.closed_within(Duration::from_secs(2)), "client left open");
}

#[test]
fn drain_is_bounded_when_a_backend_never_answers() {
    let mut s = Shards::start_with(2, |c| c.set("read_timeout", "0").set("write_timeout", "0"));
    let keys = s.key_per_server("stuck");
    let mut c = s.client();
    assert_eq!(c.cmd(&["SET", &keys[0], "v"]), Reply::ok());
    s.servers[0].pause();
    c.send_cmd(&["GET", &keys[0]]);
    assert!(!c.readable_within(Duration::from_millis(200)));
    let termed = Instant::now();
    s.proxy.signal("TERM");
    let (status, exited) = wait_exit(&mut s.proxy, Duration::from_secs(10))
        .expect("the proxy still runs 10 s after SIGTERM with a request stuck");
    let took = exited - termed;
    eprintln!("bounded drain: exit {took:?} after SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took < Duration::from_millis(6500),
        "drain took {took:?} (bounded at 5 s)"
    );
    assert!(
        took >= Duration::from_secs(3),
        "exited after {took:?}: the request in flight was not given the drain window"
    );
    assert!(c.closed_within(Duration::from_secs(2)), "client left open");
    s.servers[0].resume();
}
