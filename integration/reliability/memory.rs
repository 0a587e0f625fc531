//! Memory bounds.

use super::*;

/// A deterministic byte pattern of `len` bytes (every byte value occurs).
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(7) ^ salt ^ ((i >> 12) as u8))
        .collect()
}

const VALUE_100K: usize = 100 * 1024;

/// Pipelines `n` GETs of `key` on a fresh connection without reading.
fn unread_gets(port: u16, key: &str, n: usize) -> Client {
    let c = Client::connect(port);
    let mut bytes = Vec::with_capacity(n * 32);
    for _ in 0..n {
        bytes.extend(encode_str(&["GET", key]));
    }
    // Small enough for the socket buffers; the write never blocks for long.
    send_lossy(&c, &bytes);
    c
}

#[test]
fn a_client_that_does_not_read_is_paused_and_memory_stays_bounded() {
    let s = Shards::start(2);
    let pid = s.proxy.pid();
    let value = pattern(VALUE_100K, 1);
    let mut other = s.client();
    assert_eq!(other.cmd_bytes(&[b"SET", b"big", &value]), Reply::ok());
    let holder = s.holder("big");
    let mut direct = s.servers[holder].client();
    let gets_before = backend_calls(&mut direct, "get");
    let rss0 = rss_mb(pid);

    let n = 4000; // 400 MB of replies
    let mut hog = unread_gets(s.proxy.port(), "big", n);
    // For 1.5 s: RSS sampled, other clients served meanwhile. Those sharing
    // the hog's backend connection wait behind the ~100 MB of replies it
    // already asked for (debug build, loaded machine): seconds, not forever.
    let mut peak = 0;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_millis(1500);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        peak = peak.max(rss_mb(pid));
        let start = Instant::now();
        let key = format!("other{round}");
        assert_eq!(other.cmd(&["SET", &key, "x"]), Reply::ok());
        assert_eq!(other.cmd(&["GET", &key]), Reply::bulk("x"));
        let r = other.cmd(&["STRLEN", "big"]);
        assert_eq!(r, Reply::Int(VALUE_100K as i64));
        slowest = slowest.max(start.elapsed());
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "another client waited {:?} while one did not read",
            start.elapsed()
        );
        thread::sleep(Duration::from_millis(50));
    }
    peak = peak.max(rss_mb(pid));
    assert!(
        peak < rss0 + 300,
        "proxy RSS went from {rss0} MB to {peak} MB with a client owing 400 MB of replies"
    );
    // The proxy stopped reading the hog's requests: far fewer than n reached the backend.
    let forwarded = backend_calls(&mut direct, "get") - gets_before;
    eprintln!(
        "unread GETs: RSS {rss0} -> peak {peak} MB, {forwarded} of {n} GETs forwarded, \
         others waited at most {slowest:?}"
    );
    assert!(
        forwarded < 2500,
        "{forwarded} of {n} GETs forwarded for a client that reads nothing"
    );
    // Once it reads, it gets every reply, intact and in order.
    for i in 0..n {
        match hog.read_reply() {
            Ok(Reply::Bulk(b)) if b == value => {}
            Ok(other) => panic!("reply {i} of {n}: {other:?}"),
            Err(e) => panic!("reply {i} of {n}: {e}"),
        }
    }
    assert!(
        !hog.readable_within(Duration::from_millis(200)),
        "more replies than requests"
    );
    assert_eq!(hog.cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn client_output_limit_disconnects_a_client_that_does_not_read() {
    // At warn level, so the disconnect's log line shows.
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("limit", &refs).set("client_output_limit", "1048576");
    let proxy = Proxy::start_with_args(&conf.to_toml(), &["-v", "warn"]);
    let s = Shards {
        proxy,
        conf,
        servers,
    };
    let value = pattern(VALUE_100K, 2);
    let mut other = s.client();
    assert_eq!(other.cmd_bytes(&[b"SET", b"big", &value]), Reply::ok());

    let n = 1000; // 100 MB of replies
    let mut hog = unread_gets(s.proxy.port(), "big", n);
    // Meanwhile a client that reads is served, big values included.
    for _ in 0..5 {
        assert_eq!(other.cmd(&["GET", "big"]), Reply::Bulk(value.clone()));
    }
    let closed = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        s.proxy.log().contains("client_output_limit").then_some(())
    });
    // Whatever was sent before the close is read, then EOF (or a reset).
    let raw = hog.read_raw(n, Duration::from_secs(5));
    let got = parse_all(&raw).map(|r| r.len()).unwrap_or(0);
    eprintln!("client_output_limit: {got} of {n} replies before the close");
    assert!(
        hog.closed_within(Duration::from_secs(1)),
        "a client owing 100 MB over client_output_limit = 1 MiB was not disconnected \
         ({got} replies read)"
    );
    assert!(got < n, "all {n} replies arrived: the limit did nothing");
    assert!(
        closed.is_some(),
        "no log line names client_output_limit:\n{}",
        s.proxy.log()
    );
    // Others unaffected.
    assert_eq!(other.cmd(&["GET", "big"]), Reply::Bulk(value.clone()));
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["STRLEN", "big"]), Reply::Int(VALUE_100K as i64));
}

/// Connects and tells whether the proxy admits the client: Ok with a working
/// connection, or Err with the text of the refusal (the proxy then closes).
fn try_admit(port: u16) -> Result<Client, String> {
    let mut c = Client::connect(port);
    if c.readable_within(Duration::from_millis(250)) {
        let r = c.read_reply();
        let closed = c.closed_within(Duration::from_secs(2));
        return Err(format!("{r:?} (closed: {closed})"));
    }
    match c.cmd(&["PING"]) {
        Reply::Status(s) if s == "PONG" => Ok(c),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn max_clients_refuses_the_sixth_and_admits_again_after_one_leaves() {
    let s = Shards::start_with(2, |c| c.set("max_clients", "5"));
    let port = s.proxy.port();
    let mut admitted: Vec<Client> = (0..5)
        .map(|i| try_admit(port).unwrap_or_else(|e| panic!("client {i} of 5 refused: {e}")))
        .collect();
    // The sixth (and any more) is refused with Redis's text, then closed.
    for attempt in 0..3 {
        let mut c = Client::connect(port);
        let r = c.read_reply();
        match r {
            Ok(Reply::Error(e)) => assert_eq!(e, "ERR max number of clients reached"),
            other => panic!("attempt {attempt}: the 6th client got {other:?}"),
        }
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "a refused client is left open"
        );
    }
    // Refusals do not take slots: the five still work.
    for (i, c) in admitted.iter_mut().enumerate() {
        assert_eq!(c.cmd(&["SET", &format!("mc{i}"), "v"]), Reply::ok());
    }
    // One leaves: a new client is admitted (once the proxy has seen the close).
    drop(admitted.pop());
    let again = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        try_admit(port).ok()
    });
    let mut again = again.expect("no client admitted within 5 s after one of 5 left");
    assert_eq!(again.cmd(&["GET", "mc0"]), Reply::bulk("v"));
    // And the cap holds again.
    assert!(
        try_admit(port).is_err(),
        "a 6th client admitted after the slot was reused"
    );
}

#[test]
fn a_64_mb_value_round_trips_byte_exact() {
    // Hundreds of MB cross loopback here: on a loaded 2-core machine a
    // reply can take longer than the harness's 3 s read_timeout.
    let s = Shards::start_with(3, |c| c.set("read_timeout", "15000"));
    let mut c = s.client();
    let big = pattern(64 * 1024 * 1024, 3);
    let keys = s.key_per_server("huge");
    assert_eq!(
        c.cmd_bytes(&[b"SET", keys[0].as_bytes(), &big]),
        Reply::ok()
    );
    assert_eq!(c.cmd(&["SET", &keys[1], "small"]), Reply::ok());
    let r = c.cmd(&["GET", &keys[0]]);
    assert!(
        r == Reply::Bulk(big.clone()),
        "GET of the 64 MB value: {r:?} differs"
    );
    let r = c.cmd(&["MGET", &keys[1], &keys[0], &keys[2]]);
    let want = Reply::Array(vec![
        Reply::bulk("small"),
        Reply::Bulk(big.clone()),
        Reply::Nil,
    ]);
    assert!(r == want, "MGET with the 64 MB value: {r:?}");
    // Stored byte-exact on its backend.
    let mut direct = s.servers[0].client();
    assert_eq!(
        direct.cmd(&["STRLEN", &keys[0]]),
        Reply::Int(big.len() as i64)
    );
    assert_eq!(
        direct.cmd(&["GETRANGE", &keys[0], "-5", "-1"]),
        Reply::Bulk(big[big.len() - 5..].to_vec())
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

/// After 60 clients each SET and GET a 4 MB value, the proxy's idle RSS
/// stayed ~200 MB: the buffers were freed, but the allocator kept the memory.
/// Idle RSS must come back near where it started, with the clients still
/// connected.
#[test]
fn memory_returns_after_a_burst_of_large_values() {
    const CLIENTS: usize = 60;
    const VALUE: usize = 4 * 1024 * 1024;
    // 240 MB through one connection per server: see the 64 MB test.
    let s = Shards::start_with(3, |c| c.set("thread", "2").set("read_timeout", "15000"));
    let pid = s.proxy.pid();
    let mut warm = s.client();
    assert_eq!(warm.cmd(&["SET", "warm", "x"]), Reply::ok());
    let rss0 = rss_mb(pid);
    let value = std::sync::Arc::new(pattern(VALUE, 9));
    let start = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let port = s.proxy.port();
    let clients: Vec<thread::JoinHandle<Client>> = (0..CLIENTS)
        .map(|i| {
            let (value, start) = (value.clone(), start.clone());
            thread::spawn(move || {
                let mut c = Client::connect(port);
                let key = format!("burst{i}");
                start.wait();
                assert_eq!(c.cmd_bytes(&[b"SET", key.as_bytes(), &value]), Reply::ok());
                match c.cmd(&["GET", &key]) {
                    Reply::Bulk(got) => assert!(got == *value, "GET {key}: wrong value"),
                    other => panic!("GET {key}: {other:?}"),
                }
                c
            })
        })
        .collect();
    let mut peak = rss_mb(pid);
    let idle: Vec<Client> = clients
        .into_iter()
        .map(|t| {
            peak = peak.max(rss_mb(pid));
            t.join().expect("burst client")
        })
        .collect();
    let t0 = Instant::now();
    let settled = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let rss = rss_mb(pid);
        (rss < rss0 + 64).then_some(rss)
    });
    eprintln!(
        "burst of {CLIENTS} x 4 MB: RSS {rss0} MB before, peak >= {peak} MB, {} MB after {:?}",
        rss_mb(pid),
        t0.elapsed()
    );
    assert!(
        settled.is_some(),
        "idle RSS {} MB 20 s after the burst; {rss0} MB before it",
        rss_mb(pid)
    );
    // Still serving, and the clients are still connected.
    assert_eq!(warm.cmd(&["GET", "warm"]), Reply::bulk("x"));
    for mut c in idle {
        assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    }
}
