//! Flags.

use super::*;

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
