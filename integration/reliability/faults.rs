//! Faults.

use super::*;

/// One `field:value` line of the proxy's INFO.
fn proxy_info(c: &mut Client, field: &str) -> String {
    let r = c.cmd(&["INFO"]);
    let text = match &r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO through the proxy: {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        .unwrap_or_else(|| panic!("no {field} in the proxy's INFO:\n{text}"))
}

/// `requests=N` of one backend line of the proxy's INFO (by server alias).
fn proxy_backend_requests(c: &mut Client, alias: &str) -> u64 {
    let r = c.cmd(&["INFO", "backends"]);
    let text = r.text().to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("name={alias},")))
        .unwrap_or_else(|| panic!("no backend {alias} in INFO backends:\n{text}"));
    line.split(',')
        .find_map(|kv| kv.strip_prefix("requests=")?.parse().ok())
        .unwrap_or_else(|| panic!("no requests= in {line:?}"))
}

/// The soft RLIMIT_NOFILE of this test process (children inherit it).
fn nofile_soft_limit() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[test]
fn backend_killed_with_thousands_in_flight_answers_each_request_once() {
    let mut s = Shards::start_with(3, |c| c.set("read_timeout", "10000"));
    let keys = s.key_per_server("fly");
    let mut c = s.client();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.cmd(&["SET", k, &format!("v{i}")]), Reply::ok());
    }
    // The victim answers nothing from now on: every request sent to it stays
    // in flight until the kill.
    s.servers[1].pause();
    let clients = 8;
    let per_client = 2500;
    let port = s.proxy.port();
    // Request j of every client: GET keys[j % 3], every 10th an MGET over the
    // two live backends. Expected: the value, or an error for the victim's key.
    let expect = |j: usize| -> Option<Reply> {
        if j % 10 == 9 {
            Some(Reply::Array(vec![Reply::bulk("v0"), Reply::bulk("v2")]))
        } else {
            match j % 3 {
                1 => None,
                i => Some(Reply::bulk(&format!("v{i}"))),
            }
        }
    };
    let mut bytes = Vec::new();
    for j in 0..per_client {
        if j % 10 == 9 {
            bytes.extend(encode_str(&["MGET", &keys[0], &keys[2]]));
        } else {
            bytes.extend(encode_str(&["GET", &keys[j % 3]]));
        }
    }
    let killed = AtomicBool::new(false);
    let (errors, victim_in_flight) = thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|id| {
                let bytes = bytes.clone();
                let killed = &killed;
                scope.spawn(move || {
                    let mut c = Client::connect(port);
                    let mut w = c.stream().try_clone().expect("clone");
                    let writer = thread::spawn(move || {
                        let _ = w.write_all(&bytes);
                    });
                    let mut errors = 0;
                    for j in 0..per_client {
                        let r = c
                            .read_reply()
                            .unwrap_or_else(|e| panic!("client {id}: reply {j}: {e}"));
                        // Everything after request 1 (on the victim) waits for it.
                        assert!(
                            j == 0 || killed.load(Ordering::SeqCst),
                            "client {id}: reply {j} arrived before the kill: {r:?}"
                        );
                        match expect(j) {
                            Some(want) => assert_eq!(r, want, "client {id}: reply {j}"),
                            None => {
                                assert!(r.is_error(), "client {id}: reply {j}: {r:?}");
                                errors += 1;
                            }
                        }
                    }
                    assert!(
                        !c.readable_within(Duration::from_millis(300)),
                        "client {id}: more replies than its {per_client} requests"
                    );
                    writer.join().expect("writer");
                    errors
                })
            })
            .collect();
        // Wait until many requests wait on the victim, then kill it.
        let mut info = Client::connect(port);
        let mut in_flight = 0;
        poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            in_flight = proxy_backend_requests(&mut info, "redis1");
            (in_flight >= 2000).then_some(())
        });
        killed.store(true, Ordering::SeqCst);
        s.servers[1].kill();
        let errors: usize = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum();
        (errors, in_flight)
    });
    eprintln!("{victim_in_flight} requests waited on the victim; {errors} errors");
    assert!(
        victim_in_flight >= 1000,
        "only {victim_in_flight} requests reached the victim before the kill"
    );
    let victim_requests = (0..per_client).filter(|&j| expect(j).is_none()).count();
    assert_eq!(errors, victim_requests * clients);
    // The other backends keep serving, on old and new connections.
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::bulk("v0"));
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["GET", &keys[2]]), Reply::bulk("v2"));
    assert!(fresh.cmd(&["GET", &keys[1]]).is_error());
    assert_eq!(fresh.cmd(&["SET", &keys[0], "after"]), Reply::ok());
}

#[test]
fn clients_leaving_mid_pipeline_leave_no_descriptors_behind() {
    // Backend connections opened at start, so the descriptor count is stable.
    let s = Shards::start_with(3, |c| c.set("preconnect", "true"));
    let pid = s.proxy.pid();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "steady", "0"]), Reply::ok());
    let baseline = poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let a = fd_count(pid);
        thread::sleep(Duration::from_millis(100));
        (fd_count(pid) == a).then_some(a)
    })
    .expect("the proxy's descriptor count never settled");
    eprintln!("descriptor baseline: {baseline}");

    for round in 0..50 {
        let c = s.client();
        let mut bytes = Vec::new();
        for i in 0..500 {
            bytes.extend(encode_str(&["SET", &format!("gone{round}:{i}"), "x"]));
            bytes.extend(encode_str(&["MGET", "steady", &format!("gone{round}:{i}")]));
        }
        if round % 2 == 1 {
            // Leave in the middle of a frame.
            bytes.extend(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\nabc");
        }
        send_lossy(&c, &bytes);
        if round % 5 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
        drop(c);
    }
    let settled = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (fd_count(pid) <= baseline).then_some(())
    });
    assert!(
        settled.is_some(),
        "the proxy holds {} descriptors 5 s after 50 clients left, {baseline} before",
        fd_count(pid)
    );
    let clients = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        let n = proxy_info(&mut steady, "connected_clients");
        (n == "1").then_some(n)
    });
    assert!(
        clients.is_some(),
        "INFO connected_clients is {} with one client left",
        proxy_info(&mut steady, "connected_clients")
    );
    assert_eq!(steady.cmd(&["EXISTS", "half"]), Reply::Int(0));
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["INCR", "steady"]), Reply::Int(1));
    assert_eq!(steady.cmd(&["GET", "steady"]), Reply::bulk("1"));
}

/// Counts a thread as arrived when dropped, so a panicking thread never
/// leaves the others waiting.
struct Arrive<'a>(&'a AtomicUsize);

impl Drop for Arrive<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn three_thousand_concurrent_clients_each_get_their_own_data() {
    let threads = 10;
    let per_thread = 320;
    let total = threads * per_thread;
    match nofile_soft_limit() {
        Some(n) if n >= total as u64 + 1024 => {}
        other => {
            eprintln!(
                "skipped: {total} clients need about {} open files, the soft limit is {other:?}",
                total + 1024
            );
            return;
        }
    }
    let s = Shards::start(3);
    let port = s.proxy.port();
    let arrived = AtomicUsize::new(0);
    let release = AtomicBool::new(false);
    let mut connected = String::new();
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (arrived, release) = (&arrived, &release);
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        let guard = Arrive(arrived);
                        let mut conns: Vec<Client> =
                            (0..per_thread).map(|_| Client::connect(port)).collect();
                        // All requests of this thread's clients in flight at once.
                        for (i, c) in conns.iter_mut().enumerate() {
                            c.send_cmd(&["SET", &format!("cc:{t}:{i}"), &format!("val-{t}-{i}")]);
                        }
                        for (i, c) in conns.iter_mut().enumerate() {
                            assert_eq!(c.read_reply().ok(), Some(Reply::ok()), "client {t}/{i}");
                        }
                        for (i, c) in conns.iter_mut().enumerate() {
                            c.send_cmd(&["GET", &format!("cc:{t}:{i}")]);
                            c.send_cmd(&["INCR", &format!("cc:n:{t}:{i}")]);
                        }
                        for (i, c) in conns.iter_mut().enumerate() {
                            let want = Reply::bulk(&format!("val-{t}-{i}"));
                            assert_eq!(c.read_reply().ok(), Some(want), "client {t}/{i}");
                            assert_eq!(c.read_reply().ok(), Some(Reply::Int(1)), "client {t}/{i}");
                        }
                        drop(guard);
                        // Stay connected until the count is checked.
                        poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
                            release.load(Ordering::SeqCst).then_some(())
                        });
                        drop(conns);
                    })
                    .expect("spawn client thread")
            })
            .collect();
        poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
            (arrived.load(Ordering::SeqCst) == threads).then_some(())
        });
        let mut info = Client::connect(port);
        connected = proxy_info(&mut info, "connected_clients");
        release.store(true, Ordering::SeqCst);
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    assert_eq!(
        connected,
        (total + 1).to_string(),
        "INFO connected_clients with {total} clients and the INFO one connected"
    );
    let keys: i64 = s.servers.iter().map(|srv| srv.dbsize()).sum();
    assert_eq!(keys, 2 * total as i64);
    let mut c = s.client();
    assert_eq!(c.cmd(&["GET", "cc:9:319"]), Reply::bulk("val-9-319"));
}
