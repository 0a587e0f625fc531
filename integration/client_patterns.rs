//! Clients as real libraries and applications drive them, not as a polite
//! test client does: a whole pipeline written before any reply is read
//! (redis-py's pipelines, batch loaders), clients that vanish with replies
//! owed, and an idle proxy that must not wake up for nothing.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Proxy, RedisCluster, Shards, encode_str, fd_count, poll_until, run_python};

/// Writes `count` GETs of `key` in one go, without reading anything, then
/// reads every reply and checks each is `expect`. A proxy that stops reading
/// a client until it reads its replies deadlocks here: the write would block
/// for ever, so it is bounded by a timeout that fails the test instead.
fn pipeline_written_whole(port: u16, key: &str, expect: &[u8], count: usize) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    sock.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("write timeout");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let one = encode_str(&["GET", key]);
    let mut batch = Vec::with_capacity(one.len() * count);
    for _ in 0..count {
        batch.extend_from_slice(&one);
    }
    let started = Instant::now();
    if let Err(e) = sock.write_all(&batch) {
        panic!(
            "writing {count} pipelined GETs ({} MB) before reading failed after {:?}: {e} \
             (the proxy stopped reading a client that had not read its replies yet)",
            batch.len() >> 20,
            started.elapsed()
        );
    }
    drop(batch);
    // Every reply is the same bytes: compare the stream against them.
    let total = expect.len() * count;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    while got < total {
        let n = match sock.read(&mut buf) {
            Ok(0) => panic!("the proxy closed after {got} of {total} reply bytes"),
            Ok(n) => n,
            Err(e) => panic!("reading replies: {e} after {got} of {total} bytes"),
        };
        for (i, b) in buf[..n].iter().enumerate() {
            let at = got + i;
            assert!(at < total, "more reply bytes than {count} replies");
            assert_eq!(
                *b,
                expect[at % expect.len()],
                "reply {} differs at byte {}",
                at / expect.len(),
                at % expect.len()
            );
        }
        got += n;
    }
    // Nothing more: exactly one reply per request.
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    match sock.read(&mut buf) {
        Ok(0) => panic!("the proxy closed the connection after the pipeline"),
        Ok(n) => panic!("{n} bytes more than {count} replies"),
        Err(_) => {}
    }
    eprintln!(
        "{count} GETs written whole, then read, in {:?}",
        started.elapsed()
    );
}

const VALUE: &[u8; 100] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzAB";

fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn a_million_gets_written_before_reading_are_all_answered_redis_mode() {
    let s = Shards::start(3);
    let mut c = s.client();
    c.cmd_bytes(&[b"SET", b"pipe:key", VALUE]);
    pipeline_written_whole(s.proxy.port(), "pipe:key", &bulk(VALUE), 1_000_000);
    // The proxy serves on afterwards.
    assert_eq!(
        c.cmd(&["GET", "pipe:key"]).text().as_bytes(),
        VALUE.as_slice()
    );
}

#[test]
fn a_million_gets_written_before_reading_are_all_answered_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("thread", "1")]).to_toml());
    let mut c = proxy.client();
    c.cmd_bytes(&[b"SET", b"pipe:key", VALUE]);
    pipeline_written_whole(proxy.port(), "pipe:key", &bulk(VALUE), 1_000_000);
    assert_eq!(
        c.cmd(&["GET", "pipe:key"]).text().as_bytes(),
        VALUE.as_slice()
    );
}

/// redis-py sends a pipeline's commands in one write and only then reads;
/// 100k commands of mixed kinds, keys spread over every server.
const REDIS_PY_PIPELINE: &str = r#"
import sys
import redis
port, n = int(sys.argv[1]), int(sys.argv[2])
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60, decode_responses=True)
p = r.pipeline(transaction=False)
for i in range(n):
    p.set(f"py:{i}", f"v{i}")
res = p.execute()
assert len(res) == n and all(x is True for x in res), "SETs"
p = r.pipeline(transaction=False)
for i in range(n):
    p.get(f"py:{i}")
res = p.execute()
assert len(res) == n, len(res)
for i, v in enumerate(res):
    assert v == f"v{i}", (i, v)
p = r.pipeline(transaction=False)
for i in range(0, n, 10):
    p.mget([f"py:{j}" for j in range(i, i + 10)])
res = p.execute()
for k, vals in enumerate(res):
    assert vals == [f"v{j}" for j in range(k * 10, k * 10 + 10)], (k, vals)
print("ALL OK")
"#;

fn redis_py_pipelines(port: u16) {
    let run = run_python(
        REDIS_PY_PIPELINE,
        &[&port.to_string(), "100000"],
        Duration::from_secs(120),
    );
    assert!(
        run.passed("ALL OK"),
        "redis-py pipelines of 100k commands through the proxy on {port} \
         ({:?}):\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

#[test]
fn redis_py_pipelines_of_100k_commands_redis_mode() {
    let s = Shards::start(3);
    redis_py_pipelines(s.proxy.port());
    for srv in &s.servers {
        assert!(srv.dbsize() > 10_000, "keys spread over every server");
    }
}

#[test]
fn redis_py_pipelines_of_100k_commands_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    redis_py_pipelines(proxy.port());
    for m in rc.masters() {
        assert!(rc.dbsize(m) > 10_000, "keys spread over every master");
    }
}

/// Clients that write a pipeline and vanish (a reset, not a close) with
/// every reply still owed: the proxy drops what it owed them, keeps serving
/// others, and holds no descriptor or connection for them afterwards.
#[test]
fn clients_that_vanish_with_replies_owed_leave_nothing_behind() {
    // One worker, so the vanishing clients share the backend connection
    // `other` opened: any descriptor more afterwards is a leak.
    let s = Shards::start_with(3, |c| c.set("thread", "1"));
    let mut other = s.client();
    other.cmd_bytes(&[b"SET", b"vanish", VALUE]);
    let pid = s.proxy.pid();
    let fds_before = fd_count(pid);
    let one = encode_str(&["GET", "vanish"]);
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 20_000)
        .collect();
    for round in 0..20 {
        let mut sock = TcpStream::connect(("127.0.0.1", s.proxy.port())).expect("connect");
        sock.write_all(&batch).expect("write the pipeline");
        // SO_LINGER 0: close sends a reset, as a killed client's kernel may.
        socket2::SockRef::from(&sock)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(sock);
        assert_eq!(
            other.cmd(&["GET", "vanish"]).text().as_bytes(),
            VALUE.as_slice(),
            "round {round}: another client was not served"
        );
    }
    let settled = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (fd_count(pid) <= fds_before).then_some(())
    });
    assert!(
        settled.is_some(),
        "descriptors: {fds_before} before, {} after 20 vanished clients",
        fd_count(pid)
    );
    let info = other.cmd(&["INFO", "clients"]);
    assert!(
        info.text().contains("connected_clients:1"),
        "only one client is left connected:\n{}",
        info.text()
    );
}

/// (thread id, name, voluntary context switches) of each of a process's threads.
fn thread_wakes(pid: u32) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let Ok(status) = fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let wakes = field("voluntary_ctxt_switches:").parse().unwrap_or(0);
        out.push((tid, field("Name:"), wakes));
    }
    out
}

/// An idle worker sleeps until something happens: no periodic wake-ups.
/// (Each wake-up is a voluntary context switch of the worker's thread.)
#[test]
fn idle_workers_do_not_wake_up() {
    let s = Shards::start_with(2, |c| c.set("thread", "2"));
    let mut c = s.client();
    c.cmd(&["SET", "idle", "1"]);
    drop(c);
    // Let the last counters publish, then watch.
    thread::sleep(Duration::from_millis(500));
    let pid = s.proxy.pid();
    let before = thread_wakes(pid);
    thread::sleep(Duration::from_secs(3));
    let after = thread_wakes(pid);
    let workers: Vec<_> = before
        .iter()
        .filter(|(_, name, _)| name.starts_with("aster-shards"))
        .collect();
    assert!(!workers.is_empty(), "worker threads by name: {before:?}");
    for (tid, name, w0) in workers {
        let w1 = after
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(*w0, |(_, _, w)| *w);
        assert!(
            w1 - w0 <= 1,
            "worker thread {name} ({tid}) woke {} times in 3 s idle",
            w1 - w0
        );
    }
}
