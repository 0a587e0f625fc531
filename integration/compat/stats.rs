//! The stats port.

use super::*;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Pool "alpha" of the stats tests: ketama over fnv1a_64 on `servers`,
/// named one, two, three.
fn stats_pool(port: u16, servers: &[&RedisServer]) -> String {
    pool_yml(
        "alpha",
        port,
        &[
            "hash: fnv1a_64",
            "distribution: ketama",
            "redis: true",
            "timeout: 2000",
        ],
        &server_lines(servers, &["one", "two", "three"]),
    )
}

#[test]
fn stats_document_has_every_field_and_counts_the_traffic() {
    let backends: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let names = ["one", "two", "three"];
    let (port, port2) = (free_port(), free_port());
    let yml = format!(
        "{}{}",
        stats_pool(port, &refs),
        pool_yml(
            "idle",
            port2,
            &["redis: true"],
            &server_lines(&refs[..1], &[])
        ),
    );
    let t0 = now_micros();
    let aster = Proxy::start_yml(&yml, &[]);
    let server_names: Vec<String> = names.map(String::from).to_vec();
    let idle_names = vec![refs[0].addr()];

    // Before any traffic: the full shape, all zero.
    let doc = aster.stats();
    assert_shape(
        &doc,
        &[
            ("alpha", server_names.clone()),
            ("idle", idle_names.clone()),
        ],
    );
    for c in ["requests", "responses", "request_bytes", "response_bytes"] {
        assert_eq!(server_sum(&doc, "alpha", c), 0, "{c} before traffic");
    }
    let ts = num(&doc, &["timestamp"]) * 1_000_000;
    assert!(
        ts + 2_000_000 >= t0 && ts <= now_micros() + 2_000_000,
        "timestamp {ts} vs now"
    );
    assert!(num(&doc, &["uptime"]) < 60, "uptime {doc:#}");

    // Traffic on client a: keys on every server, then SETs and GETs.
    let mut a = Client::connect(port);
    let mut sent = 0u64;
    let mut req_bytes = 0u64;
    let mut resp_bytes = 0u64;
    // (Every SET here reaches a backend: counted in `sent`.)
    let (per, setup) = keys_per_server(&mut a, &refs, "st:", 2, true);
    sent += setup;
    let mut keys: Vec<String> = per.iter().flatten().cloned().collect();
    keys.extend((0..30).map(|i| format!("more:{i}")));
    for k in &keys {
        let cmd = ["SET", k.as_str(), k.as_str()];
        req_bytes += encode_str(&cmd).len() as u64;
        assert_eq!(a.cmd(&cmd), Reply::ok());
        resp_bytes += 5;
        sent += 1;
    }
    for k in &keys {
        let cmd = ["GET", k.as_str()];
        req_bytes += encode_str(&cmd).len() as u64;
        assert_eq!(a.cmd(&cmd), Reply::bulk(k));
        resp_bytes += format!("${}\r\n{k}\r\n", k.len()).len() as u64;
        sent += 1;
    }
    // One MGET over all three servers: split in (at least) three fragments.
    let mget: Vec<&str> = std::iter::once("MGET")
        .chain(per.iter().map(|k| k[0].as_str()))
        .collect();
    let expect: Vec<Reply> = per.iter().map(|k| Reply::bulk(&k[0])).collect();
    assert_eq!(a.cmd(&mget), Reply::Array(expect));
    sent += 3;
    // Client b writes once and hangs up; client c stays, idle.
    {
        let mut b = Client::connect(port);
        assert_eq!(b.cmd(&["SET", "bye", "now"]), Reply::ok());
    }
    sent += 1;
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));

    // Everything sent has been answered: the document must have caught up.
    let doc = wait_stats(
        aster.stats_port(),
        "the traffic and two open clients",
        |d| {
            num(d, &["curr_connections"]) == 2
                && num(d, &["alpha", "client_eof"]) >= 1
                && server_sum(d, "alpha", "responses") >= sent
                && num(d, &["alpha", "fragments"]) > 0
        },
    );
    assert_shape(
        &doc,
        &[("alpha", server_names.clone()), ("idle", idle_names)],
    );
    assert_eq!(num(&doc, &["alpha", "client_connections"]), 2, "{doc:#}");
    assert_eq!(num(&doc, &["idle", "client_connections"]), 0, "{doc:#}");
    assert!(num(&doc, &["total_connections"]) >= 3, "{doc:#}");
    assert!(
        num(&doc, &["alpha", "fragments"]) > 0,
        "split MGET: {doc:#}"
    );
    assert_eq!(num(&doc, &["alpha", "client_err"]), 0, "{doc:#}");
    assert_eq!(num(&doc, &["alpha", "forward_error"]), 0, "{doc:#}");
    assert_eq!(num(&doc, &["alpha", "server_ejects"]), 0, "{doc:#}");
    let requests = server_sum(&doc, "alpha", "requests");
    assert!(
        requests >= sent,
        "requests {requests} < {sent} sent: {doc:#}"
    );
    let rb = server_sum(&doc, "alpha", "request_bytes");
    assert!(rb >= req_bytes, "request_bytes {rb} < {req_bytes}: {doc:#}");
    let responses = server_sum(&doc, "alpha", "responses");
    assert!(responses >= sent, "responses {responses} < {sent}: {doc:#}");
    let sb = server_sum(&doc, "alpha", "response_bytes");
    assert!(
        sb >= resp_bytes,
        "response_bytes {sb} < {resp_bytes}: {doc:#}"
    );
    for s in &server_names {
        assert!(num(&doc, &["alpha", s, "requests"]) > 0, "{s}: {doc:#}");
        assert!(
            num(&doc, &["alpha", s, "server_connections"]) >= 1,
            "{s}: {doc:#}"
        );
        assert_eq!(num(&doc, &["alpha", s, "server_ejected_at"]), 0, "{doc:#}");
        for q in ["in_queue", "in_queue_bytes", "out_queue", "out_queue_bytes"] {
            assert_eq!(num(&doc, &["alpha", s, q]), 0, "{s} idle {q}: {doc:#}");
        }
    }
    assert_eq!(server_sum(&doc, "idle", "requests"), 0, "{doc:#}");

    // More traffic makes the counters grow.
    for i in 0..10 {
        assert_eq!(a.cmd(&["INCR", &format!("n:{i}")]), Reply::Int(1));
    }
    wait_stats(aster.stats_port(), "requests growing by 10", |d| {
        server_sum(d, "alpha", "requests") >= requests + 10
            && server_sum(d, "alpha", "response_bytes") > sb
    });
    // Closing a and c brings curr_connections back to 0.
    drop(a);
    drop(c);
    let doc = wait_stats(aster.stats_port(), "no client left", |d| {
        num(d, &["curr_connections"]) == 0 && num(d, &["alpha", "client_eof"]) >= 3
    });
    assert_eq!(num(&doc, &["alpha", "client_connections"]), 0);
}

#[test]
fn killed_backend_is_ejected_and_shown_in_stats() {
    let mut backends: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let port = free_port();
    let yml = {
        let refs: Vec<&RedisServer> = backends.iter().collect();
        pool_yml(
            "ej",
            port,
            &[
                "redis: true",
                "auto_eject_hosts: true",
                "server_failure_limit: 1",
                "server_retry_timeout: 200",
                "timeout: 500",
            ],
            &server_lines(&refs, &["a", "b"]),
        )
    };
    let aster = Proxy::start_yml(&yml, &[]);
    let mut c = Client::connect(port);
    let keys: Vec<String> = (0..20).map(|i| format!("e:{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "1"]), Reply::ok());
    }
    assert!(backends[1].dbsize() > 0, "no key on b before the kill");
    let before = now_micros();
    backends[1].kill();
    let doc = wait_stats(aster.stats_port(), "b ejected", |d| {
        num(d, &["ej", "server_ejects"]) >= 1 && num(d, &["ej", "b", "server_ejected_at"]) > 0
    });
    let at = num(&doc, &["ej", "b", "server_ejected_at"]);
    assert!(
        at + 1_000_000 >= before && at <= now_micros() + 1_000_000,
        "server_ejected_at {at} should be µs since the epoch, after {before}"
    );
    assert_eq!(num(&doc, &["ej", "a", "server_ejected_at"]), 0, "{doc:#}");
    // With b out, every key goes to a.
    let all_ok = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        keys.iter()
            .all(|k| c.cmd(&["SET", k, "2"]) == Reply::ok())
            .then_some(())
    });
    assert!(
        all_ok.is_some(),
        "SETs should all reach a after b's ejection"
    );
    assert_eq!(backends[0].cli(&["GET", &keys[0]]), "2");
}

/// Waits until a counter reaches `at_least` in both documents.
fn both_stats(ports: &[u16], what: &str, cond: impl Fn(&Value) -> bool) -> Vec<Value> {
    ports.iter().map(|&p| wait_stats(p, what, &cond)).collect()
}

#[test]
fn stats_counters_match_nutcracker_for_the_same_traffic() {
    if !nutcracker_available() {
        return;
    }
    let backends: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let names = ["one", "two", "three"];
    let yml = |port| stats_pool(port, &refs);
    let (ap, np) = (free_port(), free_port());
    let aster = Proxy::start_yml(&yml(ap), &[]);
    let nut = Nutcracker::start_yml(&yml(np));
    let stats_ports = [aster.stats_port(), nut.stats_port()];
    let who = ["aster", "nutcracker"];

    // Identical SET/GET traffic through each: the same requests and bytes
    // reach the same servers, and the same replies come back.
    let keys: Vec<String> = (0..40).map(|i| format!("cmp:{i}")).collect();
    let mut cmds: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    cmds.extend(keys.iter().map(|k| args(&["GET", k])));
    cmds.extend(keys.iter().map(|k| args(&["GET", &format!("{k}:none")])));
    let mut clients = Vec::new();
    for port in [ap, np] {
        let mut c = Client::connect(port);
        let replies = c.pipeline(&cmds);
        assert_eq!(replies.len(), cmds.len());
        clients.push(c);
    }
    let n = cmds.len() as u64;
    let docs = both_stats(&stats_ports, "the SET/GET traffic", |d| {
        server_sum(d, "alpha", "responses") >= n
    });
    for s in names {
        for c in ["requests", "request_bytes", "responses", "response_bytes"] {
            let v: Vec<u64> = docs.iter().map(|d| num(d, &["alpha", s, c])).collect();
            assert_eq!(v[0], v[1], "{s} {c}: {} vs {}", who[0], who[1]);
        }
    }
    // Every server got its share, in both.
    for d in &docs {
        for s in names {
            assert!(num(d, &["alpha", s, "requests"]) > 0, "{s}: {d:#}");
        }
    }

    // A split MGET (one key per server) and a client that hangs up.
    let per = keys_per_server(&mut clients[0], &refs, "frag:", 1, true).0;
    let mget: Vec<&str> = std::iter::once("MGET")
        .chain(per.iter().map(|k| k[0].as_str()))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let want: Vec<Reply> = per.iter().map(|k| Reply::bulk(&k[0])).collect();
        assert_eq!(c.cmd(&mget), Reply::Array(want), "{}", who[i]);
    }
    for port in [ap, np] {
        let mut b = Client::connect(port);
        assert_eq!(b.cmd(&["GET", "cmp:0"]), Reply::bulk("cmp:0"));
    }
    // (Each side also saw one probe connection from the start-up wait.)
    let docs = both_stats(&stats_ports, "the client EOFs", |d| {
        num(d, &["alpha", "client_eof"]) >= 2
    });
    for c in ["client_eof", "client_err", "client_connections"] {
        let v: Vec<u64> = docs.iter().map(|d| num(d, &["alpha", c])).collect();
        assert_eq!(v[0], v[1], "pool {c}: {} vs {}", who[0], who[1]);
    }
    // nutcracker 0.5.0 leaves fragments at 0 for a split MGET; aster counts
    // one per sub-request.
    wait_stats(aster.stats_port(), "fragments for the split MGET", |d| {
        num(d, &["alpha", "fragments"]) >= 3
    });
}

#[test]
fn timed_out_request_shows_in_stats_without_further_traffic() {
    let mut slow = RedisServer::start();
    let port = free_port();
    let yml = pool_yml(
        "slow",
        port,
        &["redis: true", "timeout: 300"],
        &server_lines(&[&slow], &["s"]),
    );
    let aster = Proxy::start_yml(&yml, &[]);
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    slow.pause();
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Reply::Error("ERR Connection timed out".into())
    );
    slow.resume();
    wait_stats(aster.stats_port(), "server_timedout >= 1", |d| {
        num(d, &["slow", "s", "server_timedout"]) >= 1
    });
}

/// The stats port answered one connection at a time, each write allowed
/// 1 s of no progress: clients that do not read a large document (many
/// servers, long names) held every other client, for 19 s with six of them.
/// Each connection is served on its own now.
#[test]
fn a_stats_client_that_does_not_read_holds_no_other() {
    let port = free_port();
    // 1000 servers named with 3000-byte aliases: a 3 MB document, more than
    // the socket buffers hold. Nothing connects to them (no preconnect, no
    // auto_eject_hosts pings).
    let servers: Vec<String> = (0..1000)
        .map(|i| format!("127.0.0.1:{}:1 s{i:04}-{}", 20000 + i, "x".repeat(3000)))
        .collect();
    let yml = pool_yml(
        "big",
        port,
        &["redis: true", "distribution: modula"],
        &servers,
    );
    let aster = Proxy::start_yml(&yml, &[]);
    let stats = aster.stats_port();
    let t0 = Instant::now();
    let doc = stats_doc(stats);
    let alone = t0.elapsed();
    assert_eq!(doc["big"].as_object().map(|o| o.len()), Some(1006));
    let stuck: Vec<socket2::Socket> = (0..6)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            // A tiny window: the document stays in aster's send buffer.
            s.set_recv_buffer_size(1024).expect("SO_RCVBUF");
            s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], stats)).into())
                .expect("connect");
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    stats_doc(stats);
    let took = t0.elapsed();
    assert!(
        took < alone + Duration::from_secs(2),
        "a stats document behind 6 clients that do not read took {took:?} (alone {alone:?})"
    );
    drop(stuck);
}
