//! Reliability and security: malformed and hostile input, memory bounds,
//! backends dying under load, clients leaving mid-pipeline, thousands of
//! clients, authentication (front and back), secrets kept out of the log,
//! listener addresses, and the graceful drain on SIGTERM.
//!
//! Faults already covered in `faults.rs` (a backend that restarts, a stalled
//! backend past `read_timeout`) and the protocol cases of `protocol.rs` are
//! not repeated here.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, ClusterConf, Proxy, RedisServer, Reply, Rng, Shards, TempDir, config_toml, encode,
    encode_str, fd_count, parse_all, poll_until,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A `kB` field of /proc/PID/status (VmRSS, VmSize), in KiB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_mb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS") / 1024
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

/// `calls` of `cmdstat_<cmd>` in a backend's INFO commandstats (0 if absent).
fn backend_calls(c: &mut Client, cmd: &str) -> u64 {
    let r = c.cmd(&["INFO", "commandstats"]);
    let text = match &r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO commandstats on a backend: {other:?}"),
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("cmdstat_{cmd}:calls="))?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Writes raw bytes, ignoring errors: the proxy may close first.
fn send_lossy(c: &Client, bytes: &[u8]) {
    let _ = c.stream().write_all(bytes);
}

/// Sends `bytes` on a fresh connection and checks that the reply is a
/// `-ERR Protocol error...` and that the proxy then closes the connection.
/// Returns the error text.
fn assert_protocol_error(port: u16, bytes: &[u8], what: &str) -> String {
    let mut c = Client::connect(port);
    send_lossy(&c, bytes);
    let text = match c.read_reply() {
        Ok(Reply::Error(e)) => e,
        other => panic!("{what}: expected '-ERR Protocol error...', got {other:?}"),
    };
    assert!(
        text.starts_with("ERR Protocol error"),
        "{what}: reply should start with 'ERR Protocol error': {text:?}"
    );
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "{what}: the connection should be closed after the protocol error"
    );
    text
}

/// A deterministic byte pattern of `len` bytes (every byte value occurs).
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(7) ^ salt ^ ((i >> 12) as u8))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Bad input
// ---------------------------------------------------------------------------

#[test]
fn malformed_requests_get_a_protocol_error_and_only_their_connection_closes() {
    let s = Shards::start(2);
    let port = s.proxy.port();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "steady", "0"]), Reply::ok());

    let mut rng = Rng(0x1234_5678_9abc_def1);
    // Random bytes with no line end and no leading '*': an inline line that never ends.
    let garbage_line: Vec<u8> = (0..100_000)
        .map(|i| {
            loop {
                let b = rng.next() as u8;
                if b != b'\n' && b != b'\r' && !(i == 0 && b == b'*') {
                    break b;
                }
            }
        })
        .collect();
    let mut long_count = b"*".to_vec();
    long_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let mut long_bulk_header = b"*1\r\n$".to_vec();
    long_bulk_header.extend(std::iter::repeat_n(b'2', 70 * 1024));
    let endless_inline = vec![b'x'; 70 * 1024];

    // (what, bytes, expected text when Redis has a well-known one)
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "bad type byte in a multibulk",
            b"*1\r\n+x\r\n".to_vec(),
            Some("ERR Protocol error: expected '$', got '+'"),
        ),
        (
            "negative bulk length",
            b"*1\r\n$-3\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "overflowing multibulk count",
            b"*99999999999999999999\r\n".to_vec(),
            Some("ERR Protocol error: invalid multibulk length"),
        ),
        (
            "overflowing bulk length",
            b"*1\r\n$99999999999999999999\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "non-numeric bulk length",
            b"*2\r\n$3\r\nGET\r\n$1x\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "bulk length over max_bulk_len (512 MiB default)",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "bulk body longer than declared",
            b"*2\r\n$4\r\nECHO\r\n$3\r\nhello\r\n".to_vec(),
            None,
        ),
        ("multibulk count line over 64 KiB", long_count, None),
        ("bulk length line over 64 KiB", long_bulk_header, None),
        (
            "endless inline line over 64 KiB",
            endless_inline,
            Some("ERR Protocol error: too big inline request"),
        ),
        (
            "binary garbage as a count",
            b"*\x00\xff\xfe\x80\r\n".to_vec(),
            Some("ERR Protocol error: invalid multibulk length"),
        ),
        (
            "binary garbage instead of a bulk",
            b"*2\r\n$3\r\nGET\r\n\x00\xff\x10\x02junk\r\n".to_vec(),
            None,
        ),
        ("100 KB of binary garbage", garbage_line, None),
    ];
    for (i, (what, bytes, want)) in cases.iter().enumerate() {
        let text = assert_protocol_error(port, bytes, what);
        if let Some(want) = want {
            assert_eq!(text, *want, "{what}");
        }
        // Only that connection was closed: an older one keeps working, in order.
        assert_eq!(
            steady.cmd(&["INCR", "steady"]),
            Reply::Int(i as i64 + 1),
            "{what}: another client was disturbed"
        );
    }
    // A fresh connection works too, and nothing was written by the bad ones.
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["EXISTS", "k"]), Reply::Int(0));
    assert_eq!(
        fresh.cmd(&["GET", "steady"]),
        Reply::bulk(&cases.len().to_string())
    );
}

#[test]
fn configured_request_limits_refuse_early() {
    let s = Shards::start_with(2, |c| {
        c.set("max_bulk_len", "1024")
            .set("max_multibulk_len", "10")
            .set("max_inline_len", "100")
    });
    let port = s.proxy.port();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["PING"]), Reply::status("PONG"));

    // At the limits: accepted.
    let at_limit = vec![b'v'; 1024];
    assert_eq!(
        steady.cmd_bytes(&[b"SET", b"lim:1024", &at_limit]),
        Reply::ok(),
        "a 1024-byte value with max_bulk_len = 1024"
    );
    let ten: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..9).map(|i| format!("lim:{i}")))
        .collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    assert_eq!(steady.cmd(&ten), Reply::Int(0), "10 arguments");
    let mut inline_ok = b"ECHO ".to_vec();
    inline_ok.extend(vec![b'a'; 90]);
    inline_ok.extend(b"\r\n");
    assert_eq!(inline_ok.len(), 97);
    steady.send(&inline_ok);
    assert_eq!(
        steady.read_reply().expect("inline reply"),
        Reply::Bulk(vec![b'a'; 90]),
        "a 97-byte inline line with max_inline_len = 100"
    );

    // A 2 KB value: refused on its header, before the body is sent.
    let mut c = Client::connect(port);
    c.send(b"*3\r\n$3\r\nSET\r\n$7\r\nlim:big\r\n$2048\r\n");
    assert!(
        c.readable_within(Duration::from_secs(3)),
        "no reply to a bulk header over max_bulk_len before its body"
    );
    let r = c.read_reply().expect("reply to an oversized bulk header");
    assert_eq!(
        r,
        Reply::Error("ERR Protocol error: invalid bulk length".into())
    );
    assert!(c.closed_within(Duration::from_secs(3)), "not closed");
    // Whole, and one byte over: refused too.
    let over = vec![b'v'; 1025];
    let mut bytes = encode(&[b"SET", b"lim:1025", &over]);
    bytes.extend(encode_str(&["PING"]));
    assert_protocol_error(port, &bytes, "a 1025-byte value");
    assert_eq!(
        steady.cmd(&["EXISTS", "lim:big", "lim:1025"]),
        Reply::Int(0)
    );

    // 11 arguments: refused on the count line alone, and whole.
    let mut c = Client::connect(port);
    c.send(b"*11\r\n");
    assert!(
        c.readable_within(Duration::from_secs(3)),
        "no reply to a count over max_multibulk_len"
    );
    let r = c.read_reply().expect("reply");
    assert_eq!(
        r,
        Reply::Error("ERR Protocol error: invalid multibulk length".into())
    );
    assert!(c.closed_within(Duration::from_secs(3)), "not closed");
    let eleven: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..10).map(|i| format!("lim:{i}")))
        .collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_protocol_error(port, &encode_str(&eleven), "an 11-argument DEL");

    // A 200-byte inline line, with and without its line end.
    let mut long_inline = b"ECHO ".to_vec();
    long_inline.extend(vec![b'a'; 193]);
    long_inline.extend(b"\r\n");
    assert_eq!(long_inline.len(), 200);
    let text = assert_protocol_error(port, &long_inline, "a 200-byte inline line");
    assert_eq!(text, "ERR Protocol error: too big inline request");
    assert_protocol_error(port, &[b'a'; 200], "200 inline bytes, no line end");

    assert_eq!(
        steady.cmd(&["GET", "lim:1024"]),
        Reply::Bulk(at_limit),
        "the steady client is unaffected"
    );
}

#[test]
fn a_declared_500_mb_bulk_allocates_nothing() {
    let s = Shards::start(2);
    let pid = s.proxy.pid();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "a", "1"]), Reply::ok());
    thread::sleep(Duration::from_millis(200));
    let (rss0, vsz0) = (rss_mb(pid), status_kb(pid, "VmSize") / 1024);
    // Eight clients each announce a 500 MB value and send nothing more.
    let mut hogs: Vec<Client> = (0..8)
        .map(|i| {
            let mut c = s.client();
            let key = format!("huge{i}");
            let mut header = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n", key.len()).into_bytes();
            header.extend(b"$500000000\r\n");
            c.send(&header);
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // Served meanwhile.
    assert_eq!(steady.cmd(&["GET", "a"]), Reply::bulk("1"));
    let (rss1, vsz1) = (rss_mb(pid), status_kb(pid, "VmSize") / 1024);
    eprintln!("500 MB headers: RSS {rss0} -> {rss1} MB, VmSize {vsz0} -> {vsz1} MB");
    assert!(
        rss1 < rss0 + 64,
        "RSS grew from {rss0} MB to {rss1} MB after 8 headers declaring 500 MB each"
    );
    // 8 x 500 MB reserved (even untouched) would show in the address space.
    assert!(
        vsz1 < vsz0 + 1024,
        "VmSize grew from {vsz0} MB to {vsz1} MB after 8 headers declaring 500 MB each"
    );
    // The hogs are still waiting for their bodies (500 MB is within limits).
    for h in &mut hogs {
        assert!(
            !h.readable_within(Duration::from_millis(20)),
            "a valid (if large) header got a reply"
        );
    }
    drop(hogs);
    assert_eq!(steady.cmd(&["EXISTS", "huge0"]), Reply::Int(0));
}

// ---------------------------------------------------------------------------
// 2. Memory bounds
// ---------------------------------------------------------------------------

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
    let s = Shards::start(3);
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
    let s = Shards::start_with(3, |c| c.set("thread", "2"));
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

// ---------------------------------------------------------------------------
// 3. Faults
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. Security
// ---------------------------------------------------------------------------

const NOAUTH: &str = "NOAUTH Authentication required.";

#[test]
fn front_password_and_users_gate_every_command() {
    let s = Shards::start_with(2, |c| {
        c.set("password", "\"s3cret\"")
            .set("users", "[{ username = \"app\", password = \"apppass\" }]")
    });
    let port = s.proxy.port();
    let noauth = Reply::Error(NOAUTH.into());

    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), noauth, "PING before AUTH");
    assert_eq!(c.cmd(&["GET", "gated"]), noauth, "GET before AUTH");
    assert_eq!(c.cmd(&["SET", "gated", "x"]), noauth, "SET before AUTH");
    assert_eq!(c.cmd(&["MSET", "gated", "x", "g2", "y"]), noauth);
    assert_eq!(c.cmd(&["DEL", "gated", "g2"]), noauth);
    assert_eq!(c.cmd(&["EVAL", "return 1", "1", "gated"]), noauth);
    assert_eq!(c.cmd(&["INFO"]), noauth);
    let r = c.cmd(&["HELLO", "2"]);
    assert!(
        r.text().starts_with("NOAUTH"),
        "HELLO 2 without AUTH before authenticating: {r:?}"
    );
    // Nothing reached a backend.
    for (i, srv) in s.servers.iter().enumerate() {
        let mut d = srv.client();
        for cmd in ["get", "set", "mset", "del", "eval"] {
            assert_eq!(
                backend_calls(&mut d, cmd),
                0,
                "backend {i} saw {cmd} from an unauthenticated client"
            );
        }
        assert_eq!(srv.dbsize(), 0, "backend {i} has keys");
    }

    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        c.cmd(&["GET", "gated"]),
        noauth,
        "still locked after a bad AUTH"
    );
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "gated", "x"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"));
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    // A later failed AUTH does not lock out an authenticated connection (as Redis).
    assert!(c.cmd(&["AUTH", "nope"]).is_error());
    assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"));

    // Named users; "default" is the password's user.
    let cases: [(&[&str], bool); 6] = [
        (&["AUTH", "app", "apppass"], true),
        (&["AUTH", "app", "wrong"], false),
        (&["AUTH", "app", "s3cret"], false),
        (&["AUTH", "default", "s3cret"], true),
        (&["AUTH", "default", "apppass"], false),
        (&["AUTH", "nobody", "apppass"], false),
    ];
    for (cmd, ok) in cases {
        let mut c = Client::connect(port);
        let r = c.cmd(cmd);
        if ok {
            assert_eq!(r, Reply::ok(), "{cmd:?}");
            assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"), "after {cmd:?}");
        } else {
            assert!(r.is_error(), "{cmd:?}: {r:?}");
            assert_eq!(c.cmd(&["GET", "gated"]), noauth, "after {cmd:?}");
        }
    }

    // HELLO 2 AUTH user pass authenticates; with a wrong password it does not.
    let mut h = Client::connect(port);
    let r = h.cmd(&["HELLO", "2", "AUTH", "app", "wrong"]);
    assert!(r.is_error(), "HELLO with a wrong password: {r:?}");
    assert_eq!(h.cmd(&["GET", "gated"]), noauth);
    let r = h.cmd(&["HELLO", "2", "AUTH", "app", "apppass"]);
    assert!(
        matches!(r, Reply::Array(_)),
        "HELLO 2 AUTH app apppass: {r:?}"
    );
    assert_eq!(h.cmd(&["GET", "gated"]), Reply::bulk("x"));

    // Pipelined: each request is judged in order.
    let mut p = Client::connect(port);
    let mut bytes = encode_str(&["GET", "gated"]);
    bytes.extend(b"AUTH s3cret\r\n");
    bytes.extend(encode_str(&["GET", "gated"]));
    let replies = p.pipeline_raw(bytes, 3);
    assert_eq!(replies, vec![noauth.clone(), Reply::ok(), Reply::bulk("x")]);

    // QUIT works before AUTH.
    let mut q = Client::connect(port);
    assert_eq!(q.cmd(&["QUIT"]), Reply::ok());
    assert!(q.closed_within(Duration::from_secs(3)));
}

/// A redis-server whose clients must authenticate: `requirepass` (the
/// harness's readiness check needs a password-less PING, so it is set after
/// start), plus a user `proxyuser` with password `ppass`.
fn locked_server(pass: &str) -> RedisServer {
    let srv = RedisServer::start();
    let mut c = srv.client();
    assert_eq!(
        c.cmd(&[
            "ACL",
            "SETUSER",
            "proxyuser",
            "on",
            ">ppass",
            "~*",
            "&*",
            "+@all"
        ]),
        Reply::ok()
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", pass]), Reply::ok());
    srv
}

/// A direct client to a locked server, authenticated as default.
fn locked_client(srv: &RedisServer, pass: &str) -> Client {
    let mut c = srv.client();
    assert_eq!(c.cmd(&["AUTH", pass]), Reply::ok());
    c
}

#[test]
fn backend_password_username_and_db_are_sent_on_every_backend_connection() {
    let servers = [locked_server("bpass"), locked_server("bpass")];
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let good = ClusterConf::new("good", &refs).set("backend_password", "\"bpass\"");
    let named = ClusterConf::new("named", &refs)
        .set("backend_username", "\"proxyuser\"")
        .set("backend_password", "\"ppass\"")
        .set("backend_db", "2");
    let bad = ClusterConf::new("bad", &refs).set("backend_password", "\"not-it\"");
    let proxy = Proxy::start(&config_toml(&[good, named, bad]));
    let ports = proxy.ports().to_vec();

    // Plain password: commands work, data lands in db 0.
    let mut c = Client::connect(ports[0]);
    let mut cmds = Vec::new();
    for i in 0..20 {
        cmds.push(vec!["SET".to_string(), format!("bp{i}"), format!("v{i}")]);
    }
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    for i in 0..20 {
        assert_eq!(
            c.cmd(&["GET", &format!("bp{i}")]),
            Reply::bulk(&format!("v{i}"))
        );
    }
    let mut db0 = 0;
    for srv in &servers {
        match locked_client(srv, "bpass").cmd(&["DBSIZE"]) {
            Reply::Int(n) => db0 += n,
            other => panic!("DBSIZE: {other:?}"),
        }
    }
    assert_eq!(db0, 20, "keys written through the proxy, in db 0");

    // Username + password + db: the backend sees user proxyuser, keys in db 2.
    let mut n = Client::connect(ports[1]);
    for i in 0..20 {
        assert_eq!(n.cmd(&["SET", &format!("named{i}"), "x"]), Reply::ok());
    }
    assert_eq!(n.cmd(&["GET", "named3"]), Reply::bulk("x"));
    let mut db2 = 0;
    let mut saw_user = false;
    for srv in &servers {
        let mut d = locked_client(srv, "bpass");
        assert_eq!(
            d.cmd(&["EXISTS", "named3"]),
            Reply::Int(0),
            "named3 in db 0"
        );
        let list = d.cmd(&["CLIENT", "LIST"]);
        saw_user |= list.text().contains("user=proxyuser");
        assert_eq!(d.cmd(&["SELECT", "2"]), Reply::ok());
        match d.cmd(&["DBSIZE"]) {
            Reply::Int(k) => db2 += k,
            other => panic!("DBSIZE: {other:?}"),
        }
    }
    assert_eq!(db2, 20, "keys written with backend_db = 2");
    assert!(saw_user, "no backend connection authenticated as proxyuser");

    // A wrong backend password: errors, promptly, every time; never a hang.
    let mut b = Client::connect(ports[2]);
    for attempt in 0..5 {
        let start = Instant::now();
        let r = b.cmd(&["GET", &format!("bp{attempt}")]);
        let took = start.elapsed();
        assert!(
            r.is_error(),
            "attempt {attempt}: GET with a wrong backend password: {r:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: took {took:?}"
        );
        assert_eq!(b.cmd(&["PING"]), Reply::status("PONG"));
        thread::sleep(Duration::from_millis(100));
    }
    // The good clusters are unaffected.
    assert_eq!(c.cmd(&["GET", "bp1"]), Reply::bulk("v1"));
}

#[test]
fn secrets_never_reach_the_log_or_the_slowlog() {
    let secrets = [
        "front-s3cret-7f",
        "user-pass-9c",
        "guess-pw-1a",
        "hello-guess-2b",
        "back-pass-3d",
        "bad-back-4e",
    ];
    let servers = [locked_server("back-pass-3d"), locked_server("back-pass-3d")];
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let front = |name: &str| {
        ClusterConf::new(name, &refs)
            .set("password", "\"front-s3cret-7f\"")
            .set(
                "users",
                "[{ username = \"app\", password = \"user-pass-9c\" }]",
            )
            .set("slowlog_log_slower_than", "0")
    };
    let good = front("good").set("backend_password", "\"back-pass-3d\"");
    let bad = front("bad").set("backend_password", "\"bad-back-4e\"");
    let dir = TempDir::new("secrets");
    let log_path = dir.join("aster.log");
    let log_arg = log_path.to_string_lossy().into_owned();
    let proxy =
        Proxy::start_with_args(&config_toml(&[good, bad]), &["-v", "trace", "-o", &log_arg]);
    let ports = proxy.ports().to_vec();

    for &port in &ports {
        let mut c = Client::connect(port);
        assert!(c.cmd(&["AUTH", "guess-pw-1a"]).is_error());
        assert!(c.cmd(&["AUTH", "app", "guess-pw-1a"]).is_error());
        assert!(
            c.cmd(&["HELLO", "2", "AUTH", "app", "hello-guess-2b"])
                .is_error()
        );
        assert_eq!(c.cmd(&["AUTH", "front-s3cret-7f"]), Reply::ok());
        assert_eq!(c.cmd(&["AUTH", "app", "user-pass-9c"]), Reply::ok());
        let r = c.cmd(&["HELLO", "2", "AUTH", "app", "user-pass-9c"]);
        assert!(matches!(r, Reply::Array(_)), "{r:?}");
        // Requests that reach backends (through a fresh backend connection, so
        // AUTH to the backend happens now), and fail there on the bad cluster.
        for i in 0..10 {
            let _ = c.cmd(&["SET", &format!("s{i}"), "v"]);
            let _ = c.cmd(&["GET", &format!("s{i}")]);
        }
        // Inline AUTH, and malformed frames carrying a secret.
        c.send(b"AUTH front-s3cret-7f\r\n");
        assert_eq!(c.read_reply().expect("inline AUTH"), Reply::ok());
        let slowlog = c.cmd(&["SLOWLOG", "GET", "1000"]);
        let shown = format!("{slowlog:?}");
        // The good cluster's backends answered: its slow log has entries.
        assert!(
            matches!(slowlog, Reply::Array(ref v) if port != ports[0] || !v.is_empty()),
            "SLOWLOG GET with slowlog_log_slower_than = 0: {shown}"
        );
        for s in secrets {
            assert!(!shown.contains(s), "the slow log shows {s:?}: {shown}");
        }
        let _ = assert_protocol_error(
            port,
            b"*2\r\n$4\r\nAUTH\r\n$3\r\nfront-s3cret-7f\r\n",
            "AUTH with a bulk longer than declared",
        );
        let _ = assert_protocol_error(
            port,
            b"AUTH \"front-s3cret-7f\r\n",
            "inline AUTH with an unbalanced quote",
        );
    }
    let mut c = Client::connect(ports[0]);
    assert_eq!(c.cmd(&["AUTH", "front-s3cret-7f"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "s3"]), Reply::bulk("v"));
    drop(c);
    // Flush by stopping the proxy, then read what it wrote.
    let stderr_log = proxy.log();
    drop(proxy);
    for s in secrets {
        assert!(!stderr_log.contains(s), "stderr shows {s:?}:\n{stderr_log}");
    }
    let log = fs::read(&log_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        log.lines().count() >= 10,
        "the trace log is nearly empty ({} lines):\n{log}",
        log.lines().count()
    );
    for s in secrets {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(s)).collect();
        assert!(hits.is_empty(), "the log shows {s:?}:\n{}", hits.join("\n"));
    }
}

/// Whether /proc/net/tcp{,6} has a listening socket on `port` whose local
/// address is not 127.0.0.1; and whether it has one on 127.0.0.1.
fn listeners_on(port: u16) -> (bool, bool) {
    let (mut on_loopback, mut elsewhere) = (false, false);
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((addr, p)) = f[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            if addr == "0100007F" {
                on_loopback = true;
            } else {
                elsewhere = true;
            }
        }
    }
    (on_loopback, elsewhere)
}

#[test]
fn listeners_bind_only_the_configured_address() {
    let s = Shards::start(1);
    let port = s.proxy.port();
    let (on_loopback, elsewhere) = listeners_on(port);
    assert!(
        on_loopback,
        "no listener on 127.0.0.1:{port} in /proc/net/tcp"
    );
    assert!(
        !elsewhere,
        "a listener on port {port} at another address than 127.0.0.1"
    );
    let other: SocketAddr = ([127, 0, 0, 2], port).into();
    assert!(
        TcpStream::connect_timeout(&other, Duration::from_secs(1)).is_err(),
        "the proxy listening on 127.0.0.1:{port} accepted a connection on 127.0.0.2"
    );
    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}

// ---------------------------------------------------------------------------
// 5. Graceful shutdown
// ---------------------------------------------------------------------------

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
