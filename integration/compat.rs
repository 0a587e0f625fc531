//! Drop-in compatibility with twemproxy: nutcracker.yml, flags, stats port, signals, texts.
//!
//! Every test runs `aster-proxy` on an unmodified nutcracker YAML file, and,
//! where it makes the point, the real `nutcracker` side by side on the same
//! backends (skipped, with a note, when nutcracker is not installed).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{
    Client, Nutcracker, POOL_COUNTERS, Proxy, RedisServer, Reply, SERVER_COUNTERS, START_TIMEOUT,
    TempDir, accepts, args, assert_shape, encode_str, free_port, holder, key_set,
    keys_not_read_back, keys_per_server, num, output_text, pid_alive, pids_with_arg, poll_until,
    read_lossy, redis_cli, run_nutcracker, run_proxy_bin, server_sum, signal, signal_quiet,
    stats_doc, wait_stats,
};

// ---------------------------------------------------------------------------
// Helpers: nutcracker.yml pools
// ---------------------------------------------------------------------------

const POLL: Duration = Duration::from_millis(20);

/// One pool of a nutcracker.yml: `keys` are raw `key: value` lines.
fn pool_yml(name: &str, port: u16, keys: &[&str], servers: &[String]) -> String {
    let mut s = format!("{name}:\n  listen: 127.0.0.1:{port}\n");
    for k in keys {
        s += &format!("  {k}\n");
    }
    s += "  servers:\n";
    for sv in servers {
        s += &format!("   - {sv}\n");
    }
    s
}

/// One pool `name` on a fresh port with `server` as its only server:
/// (port, YAML).
fn single_pool(name: &str, server: &RedisServer) -> (u16, String) {
    let port = free_port();
    let yml = pool_yml(name, port, &["redis: true"], &server_lines(&[server], &[]));
    (port, yml)
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

/// "127.0.0.1:PORT:1 NAME" lines (NAME omitted when empty).
fn server_lines(servers: &[&RedisServer], names: &[&str]) -> Vec<String> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| match names.get(i) {
            Some(n) if !n.is_empty() => format!("{}:1 {n}", s.addr()),
            _ => format!("{}:1", s.addr()),
        })
        .collect()
}

fn nutcracker_available() -> bool {
    let ok = Nutcracker::available();
    if !ok {
        eprintln!("nutcracker not installed: skipping the side-by-side part of this test");
    }
    ok
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------------------
// 1. The same nutcracker.yml, unchanged
// ---------------------------------------------------------------------------

/// A two-pool nutcracker.yml with most pool keys, for `servers`.
fn two_pool_yml(alpha: u16, beta: u16, servers: &[&RedisServer]) -> String {
    let alpha_pool = pool_yml(
        "alpha",
        alpha,
        &[
            "hash: fnv1a_64",
            "hash_tag: \"{}\"",
            "distribution: ketama",
            "timeout: 2000",
            "backlog: 1024",
            "preconnect: true",
            "redis: true",
            "server_connections: 1",
            "auto_eject_hosts: true",
            "server_retry_timeout: 2000",
            "server_failure_limit: 3",
            "client_connections: 1000",
            "tcpkeepalive: true",
        ],
        &server_lines(servers, &[]),
    );
    let beta_servers: Vec<String> = servers
        .iter()
        .zip(["red", "green", "blue"])
        .enumerate()
        .map(|(i, (s, n))| format!("{}:{} {n}", s.addr(), i % 2 + 1))
        .collect();
    let beta_pool = pool_yml(
        "beta",
        beta,
        &[
            "hash: murmur",
            "distribution: modula",
            "redis: true",
            "redis_db: 0",
            "timeout: 2000",
        ],
        &beta_servers,
    );
    format!("{alpha_pool}{beta_pool}")
}

#[test]
fn two_pool_nutcracker_yml_runs_unchanged_with_the_same_placement() {
    let backends: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let (alpha, beta) = (free_port(), free_port());
    let dir = TempDir::new("compat-two-pools");
    let yml_path = dir.join("nutcracker.yml");
    let yml = two_pool_yml(alpha, beta, &refs);
    fs::write(&yml_path, &yml).expect("write yml");

    // -t: valid for aster, and for nutcracker itself.
    assert_accepted(&["-t", "-c", path_str(&yml_path)], &yml);
    let have_nutcracker = nutcracker_available();
    if have_nutcracker {
        let out = run_nutcracker(&["-t", "-c", path_str(&yml_path)]);
        assert!(
            out.status.success(),
            "nutcracker -t: {}\n{yml}",
            output_text(&out)
        );
    }

    // 120 keys per pool, some sharing hash tags.
    let alpha_keys: Vec<String> = (0..120)
        .map(|i| match i % 3 {
            0 => format!("a:{i}"),
            1 => format!("{{user{}}}:name:{i}", i / 6),
            _ => format!("{i}:a{{}}"),
        })
        .collect();
    let beta_keys: Vec<String> = (0..120).map(|i| format!("b:{i}")).collect();

    let mut nut_doc = None;
    if have_nutcracker {
        let mut nut = Nutcracker::start_file(&yml_path);
        for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
            let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
            let replies = Client::connect(port).pipeline(&sets);
            assert!(
                replies.iter().all(|r| *r == Reply::ok()),
                "SET through nutcracker on {port}: {replies:?}"
            );
        }
        nut_doc = Some(wait_stats(nut.stats_port(), "nutcracker's requests", |d| {
            server_sum(d, "alpha", "requests") >= 120 && server_sum(d, "beta", "requests") >= 120
        }));
        nut.stop();
    } else {
        // Without the reference, write directly where aster puts them.
        let a = Proxy::start_yml_file(&yml_path, &[]);
        for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
            let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
            Client::connect(port).pipeline(&sets);
        }
        drop(a);
    }
    let sizes: Vec<i64> = backends.iter().map(RedisServer::dbsize).collect();
    assert_eq!(sizes.iter().sum::<i64>(), 240, "keys written: {sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n > 0).count() >= 2,
        "keys should spread over the backends: {sizes:?}"
    );

    // Now aster on the very same file and ports.
    let aster = Proxy::start_yml_file(&yml_path, &[]);
    for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
        let missed = keys_not_read_back(port, keys);
        assert!(
            missed.is_empty(),
            "port {port}: {} of {} keys written through nutcracker not found through aster, e.g. {:?}",
            missed.len(),
            keys.len(),
            &missed[..missed.len().min(5)]
        );
    }
    // Tagged keys of one user sit together (MGET is served whole).
    let tagged: Vec<&str> = alpha_keys
        .iter()
        .filter(|k| k.starts_with("{user3}"))
        .map(String::as_str)
        .collect();
    let holders: BTreeSet<usize> = tagged.iter().map(|k| holder(&refs, k)).collect();
    assert_eq!(holders.len(), 1, "{tagged:?} on {holders:?}");

    // Same stats shape as nutcracker for the same file: pools, counters, and
    // servers named as nutcracker names them (host:port unaliased, else alias).
    let doc = aster.stats();
    let alpha_names: Vec<String> = refs.iter().map(|s| s.addr()).collect();
    let beta_names: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    assert_shape(
        &doc,
        &[("alpha", alpha_names.clone()), ("beta", beta_names.clone())],
    );
    if let Some(nd) = nut_doc {
        assert_shape(&nd, &[("alpha", alpha_names), ("beta", beta_names)]);
        assert_eq!(key_set(&doc), key_set(&nd), "top-level members");
        for pool in ["alpha", "beta"] {
            assert_eq!(key_set(&doc[pool]), key_set(&nd[pool]), "pool {pool}");
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Flags
// ---------------------------------------------------------------------------

#[test]
fn help_version_and_describe_stats() {
    let out = run_proxy_bin(&["-h"]);
    let help = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "-h: {help}");
    for f in [
        "-h", "-V", "-t", "-d", "-D", "-v", "-o", "-c", "-s", "-a", "-i", "-p", "-m",
    ] {
        assert!(
            help.contains(&format!("{f},")),
            "-h should list nutcracker's {f}: {help}"
        );
    }
    let out = run_proxy_bin(&["-V"]);
    assert_eq!(out.status.code(), Some(0), "-V: {}", output_text(&out));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with("aster-proxy ") && v.trim().len() > "aster-proxy ".len(),
        "-V: {v:?}"
    );

    let out = run_proxy_bin(&["-D"]);
    let desc = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "-D: {}", output_text(&out));
    for c in POOL_COUNTERS.iter().chain(&SERVER_COUNTERS) {
        assert!(
            desc.lines().any(|l| l.split_whitespace().next() == Some(c)),
            "-D should describe {c}: {desc}"
        );
    }
    // Line for line what nutcracker -D prints (it writes to stderr).
    if nutcracker_available() {
        let nd = run_nutcracker(&["-D"]);
        let nd = output_text(&nd);
        let from = nd.find("pool stats:").expect("nutcracker -D: pool stats");
        for line in nd[from..].lines().map(str::trim).filter(|l| !l.is_empty()) {
            assert!(
                desc.lines().any(|l| l.trim() == line),
                "aster -D lacks nutcracker's line {line:?}:\n{desc}"
            );
        }
    }
}

/// A good pool "alpha", then a pool "gamma" with `gamma_keys`.
fn bad_yml(gamma_keys: &[&str]) -> String {
    let good = pool_yml(
        "alpha",
        free_port(),
        &["redis: true"],
        &["127.0.0.1:6379:1".into()],
    );
    let mut keys = vec!["redis: true"];
    keys.extend(gamma_keys);
    format!(
        "{good}{}",
        pool_yml("gamma", free_port(), &keys, &["127.0.0.1:6380:1".into()])
    )
}

/// Runs `aster-proxy FLAGS...` (a `-t` check) and asserts it exits 0.
fn assert_accepted(flags: &[&str], yml: &str) {
    let out = run_proxy_bin(flags);
    assert_eq!(
        out.status.code(),
        Some(0),
        "aster {flags:?}: {}\n{yml}",
        output_text(&out)
    );
}

/// Runs aster on `yml` with `flags` (stats on port 1: it must never get that
/// far) and returns (exit code, stdout + stderr).
fn run_on_yml(dir: &TempDir, yml: &str, flags: &[&str]) -> (Option<i32>, String) {
    let path = dir.join("bad.yml");
    fs::write(&path, yml).expect("write");
    let mut a: Vec<&str> = flags.to_vec();
    a.extend(["-c", path_str(&path), "-s", "1", "-a", "127.0.0.1"]);
    let out = run_proxy_bin(&a);
    (out.status.code(), output_text(&out))
}

#[test]
fn bad_yml_unknown_flag_and_memcached_pools_are_refused() {
    let dir = TempDir::new("compat-bad");
    // An unknown key: exit 1 under -t and at startup, naming the key.
    let yml = bad_yml(&["hash: fnv1a_64", "bogus_key: 7"]);
    for flags in [&["-t"][..], &[][..]] {
        let (code, msg) = run_on_yml(&dir, &yml, flags);
        assert_eq!(code, Some(1), "{flags:?}: {msg}\n{yml}");
        assert!(
            msg.contains("bogus_key") && msg.contains("bad.yml"),
            "{flags:?}: the message should name the file and the key: {msg}"
        );
    }
    if nutcracker_available() {
        let path = dir.join("bad.yml");
        fs::write(&path, &yml).expect("write");
        let out = run_nutcracker(&["-t", "-c", path_str(&path)]);
        assert!(
            !out.status.success(),
            "nutcracker itself should refuse the unknown key: {}",
            output_text(&out)
        );
    }
    // --config is -c's long form.
    let good = pool_yml(
        "alpha",
        free_port(),
        &["redis: true"],
        &["127.0.0.1:6379:1".into()],
    );
    let path = dir.join("good.yml");
    fs::write(&path, &good).expect("write");
    assert_accepted(&["-t", "--config", path_str(&path)], &good);

    // Bad values of known keys: exit 1, naming the pool and the key.
    for (line, key) in [
        ("hash: sha1", "hash"),
        ("distribution: zigzag", "distribution"),
        ("server_connections: 0", "server_connections"),
        ("hash_tag: \"{\"", "hash_tag"),
    ] {
        let yml = bad_yml(&[line]);
        let (code, msg) = run_on_yml(&dir, &yml, &["-t"]);
        assert_eq!(code, Some(1), "{line}: {msg}\n{yml}");
        assert!(
            msg.contains("gamma") && msg.contains(key),
            "{line}: the message should name the pool and the key: {msg}"
        );
    }

    // Memcached pools: redis: false, and redis left out (nutcracker's default).
    for redis_line in ["redis: false", "hash: fnv1a_64"] {
        let yml = pool_yml(
            "pool9",
            free_port(),
            &[redis_line],
            &["127.0.0.1:11211:1".into()],
        );
        let (code, msg) = run_on_yml(&dir, &yml, &["-t"]);
        assert_eq!(code, Some(1), "{msg}\n{yml}");
        assert!(
            msg.contains("pool9") && msg.contains("redis") && msg.contains("memcached"),
            "the refusal should name the pool, the key and memcached: {msg}"
        );
    }

    for bad in [&["-x"][..], &["--no-such-flag"][..], &["-v"][..]] {
        let out = run_proxy_bin(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", output_text(&out));
    }
}

#[test]
fn unknown_key_error_names_the_pool() {
    let dir = TempDir::new("compat-bad-pool");
    let yml = bad_yml(&["hash: fnv1a_64", "bogus_key: 7"]);
    let (code, msg) = run_on_yml(&dir, &yml, &["-t"]);
    assert_eq!(code, Some(1), "{msg}");
    assert!(
        msg.contains("gamma") && msg.contains("bogus_key"),
        "the message should name the pool and the key: {msg}"
    );
}

#[test]
fn pid_file_written_and_removed_on_sigterm() {
    let server = RedisServer::start();
    let (port, yml) = single_pool("p", &server);
    let dir = TempDir::new("compat-pid");
    let pid_file = dir.join("aster.pid");
    let mut aster = Proxy::start_yml(&yml, &["-p", path_str(&pid_file)]);
    let written = fs::read_to_string(&pid_file).expect("pid file after start");
    assert_eq!(written.trim(), aster.pid().to_string(), "pid file content");
    assert_eq!(
        Client::connect(port).cmd(&["SET", "k", "v"]),
        Reply::ok(),
        "serves with -p"
    );
    let status = aster
        .terminate(Duration::from_secs(8))
        .expect("exits on SIGTERM");
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(
        !pid_file.exists(),
        "pid file {} should be removed at exit",
        pid_file.display()
    );
}

/// Kills the daemon named in a pid file when dropped (the test may fail
/// before it stops the daemon itself); without a pid file, the processes
/// whose command line names this test's own config file.
struct DaemonGuard {
    pid_file: PathBuf,
    config: PathBuf,
    pid: Option<u32>,
}

impl DaemonGuard {
    fn pid(&mut self) -> Option<u32> {
        if self.pid.is_none() {
            self.pid = fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
        self.pid
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let pid = poll_until(Duration::from_secs(2), POLL, || self.pid());
        let pids = match pid {
            Some(pid) => vec![pid],
            None => pids_with_arg(path_str(&self.config)),
        };
        for pid in pids {
            if pid_alive(pid) {
                signal_quiet(pid, "KILL");
            }
        }
    }
}

#[test]
fn daemonize_returns_at_once_and_the_daemon_serves() {
    let server = RedisServer::start();
    let (port, yml) = single_pool("d", &server);
    let dir = TempDir::new("compat-daemon");
    let config = dir.join("nutcracker.yml");
    fs::write(&config, &yml).expect("write yml");
    let pid_file = dir.join("daemon.pid");
    let log = dir.join("daemon.log");
    let stats = free_port();
    let mut guard = DaemonGuard {
        pid_file: pid_file.clone(),
        config: config.clone(),
        pid: None,
    };
    let t0 = Instant::now();
    let out = run_proxy_bin(&[
        "-d",
        "-c",
        path_str(&config),
        "-p",
        path_str(&pid_file),
        "-o",
        path_str(&log),
        "-s",
        &stats.to_string(),
        "-a",
        "127.0.0.1",
        "-i",
        "100",
    ]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "-d: {}", output_text(&out));
    assert!(took < Duration::from_secs(3), "-d took {took:?} to return");

    let pid = poll_until(START_TIMEOUT, POLL, || guard.pid())
        .unwrap_or_else(|| panic!("no pid file from the daemon; log:\n{}", read_lossy(&log)));
    assert!(pid_alive(pid), "daemon {pid} not running");
    assert!(
        poll_until(START_TIMEOUT, POLL, || accepts(port).then_some(())).is_some(),
        "daemon does not listen on {port}; log:\n{}",
        read_lossy(&log)
    );
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["SET", "dk", "dv"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "dk"]), Reply::bulk("dv"));
    assert_eq!(server.cli(&["GET", "dk"]), "dv");
    // Detached: its own process group.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let pgrp = stat
        .rsplit_once(") ")
        .and_then(|(_, r)| r.split_whitespace().nth(2))
        .expect("pgrp");
    assert_eq!(pgrp, pid.to_string(), "daemon process group");
    num(&stats_doc(stats), &["d", "client_connections"]);
    drop(c);

    signal_quiet(pid, "TERM");
    let gone = poll_until(Duration::from_secs(8), POLL, || {
        (!pid_alive(pid) && !pid_file.exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "daemon {pid} did not exit and remove its pid file; log:\n{}",
        read_lossy(&log)
    );
    assert!(!accepts(port), "port {port} still served after SIGTERM");
}

/// `-d` grouped with other short flags (`-dc FILE`, `-dv 5`, `-dv5`)
/// re-executed the program forever: the child was told it is the daemon by
/// dropping the exact argument `-d`, which a group keeps. Each form must give
/// one daemon that serves and writes its pid file.
#[test]
fn grouped_daemonize_flags_start_exactly_one_daemon() {
    let server = RedisServer::start();
    let dir = TempDir::new("compat-daemon-grouped");
    let forms: [&[&str]; 3] = [
        &["-dc", "CONF"],
        &["-dv", "5", "-c", "CONF"],
        &["-c", "CONF", "-dv5"],
    ];
    for (i, form) in forms.iter().enumerate() {
        let (port, yml) = single_pool("g", &server);
        let config = dir.join(&format!("nutcracker-{i}.yml"));
        fs::write(&config, &yml).expect("write yml");
        let pid_file = dir.join(&format!("daemon-{i}.pid"));
        let log = dir.join(&format!("daemon-{i}.log"));
        let mut guard = DaemonGuard {
            pid_file: pid_file.clone(),
            config: config.clone(),
            pid: None,
        };
        let mut argv: Vec<&str> = form
            .iter()
            .map(|a| if *a == "CONF" { path_str(&config) } else { *a })
            .collect();
        argv.extend(["-p", path_str(&pid_file), "-o", path_str(&log)]);
        let out = run_proxy_bin(&argv);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{argv:?}: {}",
            output_text(&out)
        );
        let pid = poll_until(START_TIMEOUT, POLL, || guard.pid()).unwrap_or_else(|| {
            panic!(
                "{argv:?}: no pid file; processes naming the config: {:?}",
                pids_with_arg(path_str(&config))
            )
        });
        assert!(
            poll_until(START_TIMEOUT, POLL, || accepts(port).then_some(())).is_some(),
            "{argv:?}: daemon does not listen on {port}; log:\n{}",
            read_lossy(&log)
        );
        assert_eq!(
            Client::connect(port).cmd(&["SET", "gk", "gv"]),
            Reply::ok(),
            "{argv:?}"
        );
        // Settled: the daemon is the only process, and stays the same one.
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            pids_with_arg(path_str(&config)),
            vec![pid],
            "{argv:?}: processes naming the config"
        );
        signal_quiet(pid, "TERM");
        let gone = poll_until(Duration::from_secs(8), POLL, || {
            (!pid_alive(pid) && !pid_file.exists()).then_some(())
        });
        assert!(
            gone.is_some(),
            "{argv:?}: daemon {pid} did not stop on SIGTERM"
        );
    }
    // -t wins over -d in a group, as separately: check and exit, no daemon.
    let config = dir.join("nutcracker-t.yml");
    fs::write(&config, single_pool("t", &server).1).expect("write yml");
    let out = run_proxy_bin(&["-tdc", path_str(&config)]);
    assert_eq!(out.status.code(), Some(0), "-tdc: {}", output_text(&out));
    assert!(
        output_text(&out).contains("is valid"),
        "-tdc: {}",
        output_text(&out)
    );
    thread::sleep(Duration::from_millis(100));
    assert!(
        pids_with_arg(path_str(&config)).is_empty(),
        "-tdc left a process running"
    );
}

#[test]
fn output_mbuf_and_verbosity_flags() {
    let server = RedisServer::start();
    let dir = TempDir::new("compat-logs");
    let mut logs = Vec::new();
    let mut proxies = Vec::new();
    // -v 11 (most verbose) and -v 5 (nutcracker's default) side by side.
    for level in ["11", "5"] {
        let port = free_port();
        let yml = pool_yml(
            "logged",
            port,
            &["redis: true"],
            &server_lines(&[&server], &[]),
        );
        let log = dir.join(&format!("aster-{level}.log"));
        let a = Proxy::start_yml(&yml, &["-o", path_str(&log), "-m", "16384", "-v", level]);
        let mut c = Client::connect(port);
        assert_eq!(c.cmd(&["SET", "lk", "lv"]), Reply::ok(), "-m 16384 serves");
        assert_eq!(c.cmd(&["GET", "lk"]), Reply::bulk("lv"));
        drop(c);
        logs.push(log);
        proxies.push(a);
    }
    let debug = |l: &str| l.contains("[DEBUG]") || l.contains("[TRACE]");
    let verbose = poll_until(Duration::from_secs(5), POLL, || {
        let t = read_lossy(&logs[0]);
        (t.contains("starting") && t.lines().any(|l| debug(l) && l.contains("connected")))
            .then_some(t)
    });
    assert!(
        verbose.is_some(),
        "-v 11 -o: no 'starting' line or no debug line for the client:\n{}",
        read_lossy(&logs[0])
    );
    let quiet = read_lossy(&logs[1]);
    assert!(quiet.contains("starting"), "-v 5 -o log: {quiet}");
    assert!(
        !quiet.lines().any(debug),
        "-v 5 should log no debug lines:\n{quiet}"
    );
    for a in &proxies {
        assert!(
            !a.log().contains("starting"),
            "with -o the log should not go to stderr: {}",
            a.log()
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Stats
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. Signals
// ---------------------------------------------------------------------------

#[test]
fn signals_move_the_log_level_and_reopen_the_log() {
    let server = RedisServer::start();
    let (port, yml) = single_pool("sig", &server);
    let dir = TempDir::new("compat-signals");
    let log = dir.join("aster.log");
    // Default level (nutcracker's 5: notice, aster's info).
    let aster = Proxy::start_yml(&yml, &["-o", path_str(&log)]);
    let wait_log = |path: &Path, what: &str, f: &dyn Fn(&str) -> bool| {
        poll_until(Duration::from_secs(5), POLL, || {
            let t = read_lossy(path);
            f(&t).then_some(t)
        })
        .unwrap_or_else(|| panic!("log never showed {what}:\n{}", read_lossy(path)))
    };
    let is_debug = |l: &str| l.contains("[DEBUG]") && l.contains("connected");
    // No debug line at the default level.
    drop(Client::connect(port));
    thread::sleep(Duration::from_millis(200));
    assert!(
        !read_lossy(&log).lines().any(is_debug),
        "{}",
        read_lossy(&log)
    );

    signal(aster.pid(), "TTIN");
    wait_log(&log, "got SIGTTIN", &|t| {
        t.contains("got SIGTTIN: log level now DEBUG")
    });
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    wait_log(&log, "a debug line after SIGTTIN", &|t| {
        t.lines().any(is_debug)
    });

    signal(aster.pid(), "TTOU");
    let t = wait_log(&log, "got SIGTTOU", &|t| {
        t.contains("got SIGTTOU: log level now INFO")
    });
    let debug_lines = t.lines().filter(|l| is_debug(l)).count();
    drop(Client::connect(port));
    thread::sleep(Duration::from_millis(200));
    let t = read_lossy(&log);
    assert_eq!(
        t.lines().filter(|l| is_debug(l)).count(),
        debug_lines,
        "no debug line after SIGTTOU:\n{t}"
    );

    // logrotate: move the file away, SIGHUP, a new file at the -o path.
    let rotated = dir.join("aster.log.1");
    fs::rename(&log, &rotated).expect("rename log");
    signal(aster.pid(), "HUP");
    wait_log(&log, "the reopened line in a new file", &|t| {
        t.contains("got SIGHUP: log file") && t.contains("reopened")
    });
    assert!(
        !read_lossy(&rotated).contains("reopened"),
        "the reopened line should go to the new file"
    );
    assert!(read_lossy(&rotated).contains("got SIGTTOU"));
    assert_eq!(
        c.cmd(&["SET", "after", "hup"]),
        Reply::ok(),
        "serves after SIGHUP"
    );

    // SIGINT: exit 0.
    let mut aster = aster;
    signal(aster.pid(), "INT");
    let status = aster
        .wait_exit(Duration::from_secs(8))
        .expect("exits on SIGINT");
    assert!(status.success(), "SIGINT exit: {status}");
    assert!(
        read_lossy(&log).contains("got SIGINT"),
        "{}",
        read_lossy(&log)
    );
}

// ---------------------------------------------------------------------------
// 5. Error texts
// ---------------------------------------------------------------------------

#[test]
fn refused_and_timed_out_texts_match_nutcracker() {
    let mut down = RedisServer::start();
    let mut slow = RedisServer::start();
    let yml_for = |p_down: u16, p_slow: u16| {
        format!(
            "{}{}",
            pool_yml(
                "down",
                p_down,
                &["redis: true", "timeout: 300"],
                &server_lines(&[&down], &[])
            ),
            pool_yml(
                "slow",
                p_slow,
                &["redis: true", "timeout: 300"],
                &server_lines(&[&slow], &[])
            ),
        )
    };
    let (ad, as_) = (free_port(), free_port());
    let aster = Proxy::start_yml(&yml_for(ad, as_), &[]);
    let mut proxies = vec![("aster", ad, as_)];
    let mut _nut = None;
    if nutcracker_available() {
        let (nd, ns) = (free_port(), free_port());
        _nut = Some(Nutcracker::start_yml(&yml_for(nd, ns)));
        proxies.push(("nutcracker", nd, ns));
    }
    // Both pools work, and every proxy holds a connection to each backend.
    let mut clients: Vec<(Client, Client)> = Vec::new();
    for (who, pd, ps) in &proxies {
        let (mut cd, mut cs) = (Client::connect(*pd), Client::connect(*ps));
        assert_eq!(cd.cmd(&["SET", "k", "v"]), Reply::ok(), "{who}");
        assert_eq!(cs.cmd(&["SET", "k", "v"]), Reply::ok(), "{who}");
        clients.push((cd, cs));
    }

    down.kill();
    thread::sleep(Duration::from_millis(100));
    for ((who, pd, _), (cd, _)) in proxies.iter().zip(clients.iter_mut()) {
        for i in 0..3 {
            assert_eq!(
                cd.cmd(&["GET", "k"]),
                Reply::Error("ERR Connection refused".into()),
                "{who}: GET #{i} with the backend killed"
            );
        }
        // A fresh client too.
        assert_eq!(
            Client::connect(*pd).cmd(&["GET", "k"]),
            Reply::Error("ERR Connection refused".into()),
            "{who}: fresh client"
        );
    }

    slow.pause();
    let t0 = Instant::now();
    for (_, cs) in clients.iter_mut() {
        cs.send_cmd(&["GET", "k"]);
    }
    for ((who, _, _), (_, cs)) in proxies.iter().zip(clients.iter_mut()) {
        let r = cs.read_reply().expect("reply to GET on a stopped backend");
        let took = t0.elapsed();
        assert_eq!(
            r,
            Reply::Error("ERR Connection timed out".into()),
            "{who}: GET with the backend stopped"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{who}: timed out after {took:?}, timeout is 300 ms"
        );
    }
    slow.resume();
    drop(aster);
}

#[test]
fn auth_and_db_texts_and_backend_setup() {
    let secured: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    for s in &secured {
        assert_eq!(
            s.client().cmd(&["CONFIG", "SET", "requirepass", "s3cret"]),
            Reply::ok()
        );
    }
    let plain = RedisServer::start();
    let (p_auth, p_open, p_db) = (free_port(), free_port(), free_port());
    let sec_refs: Vec<&RedisServer> = secured.iter().collect();
    let yml = format!(
        "{}{}{}",
        pool_yml(
            "auth",
            p_auth,
            &["redis: true", "redis_auth: s3cret", "timeout: 2000"],
            &server_lines(&sec_refs, &["s0", "s1"]),
        ),
        pool_yml(
            "open",
            p_open,
            &["redis: true"],
            &server_lines(&[&plain], &[])
        ),
        pool_yml(
            "db3",
            p_db,
            &["redis: true", "redis_db: 3"],
            &server_lines(&[&plain], &[])
        ),
    );
    let _aster = Proxy::start_yml(&yml, &[]);

    let noauth = Reply::Error("NOAUTH Authentication required.".into());
    let mut c = Client::connect(p_auth);
    assert_eq!(c.cmd(&["PING"]), noauth, "PING before AUTH");
    assert_eq!(c.cmd(&["GET", "x"]), noauth, "GET before AUTH");
    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(c.cmd(&["PING"]), noauth, "PING after a wrong AUTH");
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Reply::ok());
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    // Keys on both backends: the proxy authenticated to each of them.
    let keys: Vec<String> = (0..40).map(|i| format!("au:{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), Reply::ok(), "SET {k}");
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk(k), "GET {k}");
    }
    let counts: Vec<String> = secured
        .iter()
        .map(|s| redis_cli(s.port(), &["--no-auth-warning", "-a", "s3cret", "DBSIZE"]))
        .collect();
    assert!(
        counts.iter().all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
        "each secured backend should hold keys: {counts:?}"
    );

    let mut o = Client::connect(p_open);
    assert_eq!(
        o.cmd(&["AUTH", "x"]),
        Reply::Error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
                .into()
        )
    );
    assert_eq!(
        o.cmd(&["PING"]),
        Reply::status("PONG"),
        "open pool after AUTH"
    );

    let mut d = Client::connect(p_db);
    assert_eq!(d.cmd(&["SET", "in3", "three"]), Reply::ok());
    assert_eq!(plain.cli(&["-n", "3", "GET", "in3"]), "three", "db 3");
    assert_eq!(plain.cli(&["-n", "0", "EXISTS", "in3"]), "0", "not in db 0");
    assert_eq!(plain.cli(&["-n", "3", "SET", "direct3", "d"]), "OK");
    assert_eq!(d.cmd(&["GET", "direct3"]), Reply::bulk("d"));
    // The open pool on the same backend stays on db 0.
    assert_eq!(o.cmd(&["GET", "in3"]), Reply::Nil);
}

// ---------------------------------------------------------------------------
// 6. Better than twemproxy
// ---------------------------------------------------------------------------

fn side_by_side_yml(port: u16, servers: &[&RedisServer]) -> String {
    pool_yml(
        "pool",
        port,
        &[
            "redis: true",
            "hash: fnv1a_64",
            "distribution: ketama",
            "timeout: 2000",
        ],
        &server_lines(servers, &["x", "y"]),
    )
}

#[test]
fn unsupported_command_gets_an_error_and_the_connection_stays() {
    let backends: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let ap = free_port();
    let _aster = Proxy::start_yml(&side_by_side_yml(ap, &refs), &[]);
    let mut c = Client::connect(ap);
    assert_eq!(c.cmd(&["SET", "u", "1"]), Reply::ok());
    let r = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(
        r.error()
            .is_some_and(|e| e.starts_with("ERR ") && e.contains("CONFIG")),
        "aster: CONFIG GET should get an error naming CONFIG: {r:?}"
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"), "same connection");
    assert_eq!(c.cmd(&["GET", "u"]), Reply::bulk("1"), "same connection");

    if nutcracker_available() {
        let np = free_port();
        let _nut = Nutcracker::start_yml(&side_by_side_yml(np, &refs));
        let mut n = Client::connect(np);
        assert_eq!(n.cmd(&["GET", "u"]), Reply::bulk("1"));
        n.send_cmd(&["CONFIG", "GET", "maxmemory"]);
        assert!(
            n.closed_within(Duration::from_secs(3)),
            "nutcracker should close the connection on CONFIG"
        );
        assert!(
            n.read_raw(1, Duration::from_millis(10)).is_empty(),
            "nutcracker answers nothing"
        );
    }
}

#[test]
fn exists_over_several_servers_is_summed() {
    let backends: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let ap = free_port();
    let _aster = Proxy::start_yml(&side_by_side_yml(ap, &refs), &[]);
    let mut c = Client::connect(ap);
    let per = keys_per_server(&mut c, &refs, "ex:", 2, true).0;
    let (x0, x1) = (per[0][0].as_str(), per[0][1].as_str());
    let (y0, y1) = (per[1][0].as_str(), per[1][1].as_str());
    let cases: Vec<(Vec<&str>, i64)> = vec![
        (vec![x0, y0, y1], 3),
        (vec![y0, x0, x1], 3),
        (vec![x0, "ex:missing", y0], 2),
        (vec![x0, y0, x0], 3),
        (vec![x0, x1, y0, y1], 4),
    ];
    for (keys, want) in &cases {
        let mut cmd = vec!["EXISTS"];
        cmd.extend(keys);
        assert_eq!(c.cmd(&cmd), Reply::Int(*want), "aster: {cmd:?}");
    }
    if nutcracker_available() {
        let np = free_port();
        let _nut = Nutcracker::start_yml(&side_by_side_yml(np, &refs));
        let mut n = Client::connect(np);
        let r = n.cmd(&["EXISTS", x0, y0, y1]);
        assert!(
            r != Reply::Int(3),
            "nutcracker was expected to count on the first key's server only: {r:?}"
        );
    }
}
