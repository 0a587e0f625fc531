//! Operations: live reload (SIGHUP and scripts/reload.sh), Prometheus
//! metrics, INFO and SLOWLOG through the proxy, and real client libraries
//! (the `redis` crate and redis-py) in sharding and cluster mode.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cluster_harness::RedisCluster;
use crate::harness::{
    Client, ClusterConf, Proxy, RedisServer, Reply, Shards, TempDir, accepts, args, config_toml,
    free_port, poll_until, proxy_bin, redis_conn, tail, wait_timeout,
};

const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A proxy at log level info (reload progress is logged at info), with
/// `extra` arguments.
fn start_proxy(toml: &str, extra: &[&str]) -> Proxy {
    let mut a = vec!["-v", "info"];
    a.extend_from_slice(extra);
    Proxy::start_with_args(toml, &a)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Writes `toml` over the proxy's config file, sends SIGHUP and waits until
/// the log shows one more line containing `done` (e.g. "reload of").
fn rewrite_and_hup(proxy: &Proxy, toml: &str, done: &str) {
    let before = count(&proxy.log(), done);
    fs::write(proxy.config_path(), toml).expect("rewrite config");
    proxy.signal("HUP");
    let ok = poll_until(Duration::from_secs(10), POLL, || {
        (count(&proxy.log(), done) > before).then_some(())
    });
    assert!(
        ok.is_some(),
        "no new {done:?} in the log 10 s after SIGHUP; new config:\n{toml}\nlog:\n{}",
        proxy.log()
    );
}

/// INFO [section] through a client, as text.
fn info(c: &mut Client, section: Option<&str>) -> String {
    let r = match section {
        Some(s) => c.cmd(&["INFO", s]),
        None => c.cmd(&["INFO"]),
    };
    match r {
        Reply::Bulk(b) => String::from_utf8(b).expect("INFO is UTF-8"),
        other => panic!("INFO: {other:?}"),
    }
}

/// `key:value` of an INFO text.
fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
}

fn info_num(text: &str, key: &str) -> u64 {
    info_field(text, key)
        .unwrap_or_else(|| panic!("INFO has no {key}:\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO {key} is not a number:\n{text}"))
}

/// The `backendN:k=v,...` lines of an INFO text, each as a map.
fn info_backends(text: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .filter(|l| l.starts_with("backend"))
        .map(|l| {
            let (_, rest) = l.split_once(':').expect("backend line has ':'");
            rest.split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("k=v");
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .collect()
}

fn int(r: &Reply) -> i64 {
    match r {
        Reply::Int(n) => *n,
        other => panic!("expected an integer reply: {other:?}"),
    }
}

fn array(r: Reply) -> Vec<Reply> {
    match r {
        Reply::Array(v) => v,
        other => panic!("expected an array reply: {other:?}"),
    }
}

/// Keys of `server` that end with `suffix`. (Test keys vary at the front:
/// with twemproxy's 32-bit fnv1a_64, keys that differ only in their last
/// bytes hash close together and land on one server.)
fn keys_with(server: &RedisServer, suffix: &str) -> usize {
    server.keys().iter().filter(|k| k.ends_with(suffix)).count()
}

/// One key per server (by index), found by writing probes through `c`.
fn key_per_server(c: &mut Client, servers: &[RedisServer], prefix: &str) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; servers.len()];
    for i in 0..10_000 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let key = format!("{prefix}{i}");
        assert_eq!(c.cmd(&["SET", &key, "probe"]), Reply::ok());
        let at = servers
            .iter()
            .position(|s| s.client().cmd(&["EXISTS", &key]) == Reply::Int(1))
            .unwrap_or_else(|| panic!("{key} is on no server"));
        assert_eq!(c.cmd(&["DEL", &key]), Reply::Int(1));
        found[at].get_or_insert(key);
    }
    found
        .into_iter()
        .map(|k| k.expect("a key for every server"))
        .collect()
}

// ---------------------------------------------------------------------------
// Live reload
// ---------------------------------------------------------------------------

#[test]
fn reload_swaps_servers_and_weights_without_dropping_clients() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("swap", &refs);
    let proxy = start_proxy(&conf.to_toml(), &[]);

    // Connections opened before the reload: a raw one and a redis-crate one.
    let mut old = proxy.client();
    let mut old_rs = proxy.conn();
    let cmds: Vec<Vec<String>> = (0..60)
        .map(|i| args(&["SET", &format!("{i}:before"), "x"]))
        .collect();
    assert!(old.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    for (i, s) in servers.iter().enumerate() {
        assert!(
            keys_with(s, ":before") > 0,
            "server {i} got no key before the reload"
        );
    }
    let local = old.stream().local_addr().expect("local addr");

    // 3 -> 2 servers, and redis2 weighs three times redis0.
    let new = ClusterConf {
        servers: vec![
            format!("{}:1 redis0", servers[0].addr()),
            format!("{}:3 redis2", servers[2].addr()),
        ],
        ..conf.clone()
    };
    rewrite_and_hup(&proxy, &new.to_toml(), "reload of");
    assert!(
        proxy.log().contains("1 cluster(s) updated in place"),
        "{}",
        proxy.log()
    );

    // The old connection is the same socket and sees the new table.
    let swapped = poll_until(Duration::from_secs(3), POLL, || {
        (info_backends(&info(&mut old, Some("backends"))).len() == 2).then_some(())
    });
    assert!(
        swapped.is_some(),
        "the pre-reload connection's worker still routes over 3 servers:\n{}",
        info(&mut old, None)
    );
    assert_eq!(old.stream().local_addr().expect("local addr"), local);
    let b = info_backends(&info(&mut old, Some("backends")));
    assert_eq!(b[0]["name"], "redis0");
    assert_eq!(b[0]["addr"], servers[0].addr());
    assert_eq!(b[1]["name"], "redis2");
    assert_eq!(b[1]["addr"], servers[2].addr());

    let cmds: Vec<Vec<String>> = (0..400)
        .map(|i| args(&["SET", &format!("{i}:fresh"), "y"]))
        .collect();
    assert!(old.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let pong: String = redis::cmd("PING").query(&mut old_rs).expect("PING");
    assert_eq!(pong, "PONG");
    for i in 0..40 {
        let () = redis::cmd("SET")
            .arg(format!("{i}r:fresh"))
            .arg(i)
            .query(&mut old_rs)
            .expect("SET on the pre-reload redis-crate connection");
    }
    // New connections (spread over both workers) use the new table too.
    for n in 0..6 {
        let mut c = proxy.client();
        let ok = poll_until(Duration::from_secs(3), POLL, || {
            (info_backends(&info(&mut c, Some("backends"))).len() == 2).then_some(())
        });
        assert!(ok.is_some(), "a worker did not adopt the reloaded table");
        for i in 0..20 {
            assert_eq!(c.cmd(&["SET", &format!("{i}n{n}:fresh"), "z"]), Reply::ok());
        }
    }
    assert_eq!(
        keys_with(&servers[1], ":fresh"),
        0,
        "fresh keys landed on the removed server"
    );
    let (light, heavy) = (
        keys_with(&servers[0], ":fresh"),
        keys_with(&servers[2], ":fresh"),
    );
    assert_eq!(
        light + heavy,
        400 + 40 + 6 * 20,
        "every fresh key is stored"
    );
    assert!(
        heavy >= 2 * light && light > 0,
        "weights 1:3 should give about 1:3 keys, got redis0={light} redis2={heavy}"
    );
    // Old keys on the kept servers still read back on the old connection.
    let kept = (0..60)
        .map(|i| format!("{i}:before"))
        .find(|k| servers[2].client().cmd(&["EXISTS", k]) == Reply::Int(1))
        .expect("a pre-reload key on redis2");
    assert_eq!(old.cmd(&["GET", &kept]), Reply::bulk("x"));
}

#[test]
fn reload_adds_a_cluster_and_drains_a_removed_one() {
    let (sa, mut sb, sc) = (
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    );
    let a = ClusterConf::new("keep", &[&sa]);
    let b = ClusterConf::new("gone", &[&sb]);
    let c = ClusterConf::new("added", &[&sc]);
    let proxy = start_proxy(&config_toml(&[a.clone(), b.clone()]), &[]);
    assert!(
        !accepts(c.port),
        "the added cluster's port is free at first"
    );

    let mut on_a = Client::connect(a.port);
    assert_eq!(on_a.cmd(&["SET", "ka", "va"]), Reply::ok());
    let mut b_idle = Client::connect(b.port);
    let mut b_busy = Client::connect(b.port);
    assert_eq!(b_busy.cmd(&["SET", "kb", "vb"]), Reply::ok());
    assert_eq!(b_idle.cmd(&["PING"]), Reply::status("PONG"));

    // One request of the removed cluster is in flight during the reload.
    sb.pause();
    b_busy.send_cmd(&["GET", "kb"]);
    thread::sleep(Duration::from_millis(100));
    let before = count(&proxy.log(), "reload of");
    fs::write(proxy.config_path(), config_toml(&[a.clone(), c.clone()])).expect("rewrite");
    proxy.signal("HUP");

    let closed = poll_until(Duration::from_secs(3), POLL, || {
        (!accepts(b.port)).then_some(())
    });
    let stop_listening = closed.is_some();
    // The in-flight request is answered before its connection closes.
    let answered_early = b_busy.readable_within(Duration::from_millis(300));
    sb.resume();
    assert!(
        stop_listening,
        "the removed cluster's port still accepts 3 s after SIGHUP"
    );
    assert!(
        !answered_early,
        "the in-flight request got an answer while its backend was paused"
    );
    let r = b_busy
        .read_reply()
        .expect("the in-flight request of a removed cluster is answered while draining");
    assert_eq!(r, Reply::bulk("vb"), "drained reply");
    assert!(
        b_busy.closed_within(Duration::from_secs(6)),
        "the removed cluster's busy client stays open after draining"
    );
    assert!(
        b_idle.closed_within(Duration::from_secs(6)),
        "the removed cluster's idle client stays open"
    );
    let done = poll_until(Duration::from_secs(10), POLL, || {
        (count(&proxy.log(), "reload of") > before).then_some(())
    });
    assert!(done.is_some(), "reload did not finish:\n{}", proxy.log());
    let log = proxy.log();
    assert!(
        log.contains("1 cluster(s) updated in place, 1 started, 1 stopped"),
        "{log}"
    );

    // The added cluster listens and routes to its server.
    let up = poll_until(Duration::from_secs(5), POLL, || {
        accepts(c.port).then_some(())
    });
    assert!(up.is_some(), "the added cluster does not accept:\n{log}");
    let mut on_c = Client::connect(c.port);
    assert_eq!(on_c.cmd(&["SET", "kc", "vc"]), Reply::ok());
    assert_eq!(sc.client().cmd(&["GET", "kc"]), Reply::bulk("vc"));
    let text = info(&mut on_c, Some("server"));
    assert_eq!(info_field(&text, "cluster"), Some("added"), "{text}");
    // The kept cluster did not notice: same connection, same data.
    assert_eq!(on_a.cmd(&["GET", "ka"]), Reply::bulk("va"));
    assert!(!accepts(b.port), "the removed cluster's port accepts again");
}

#[test]
fn reload_of_an_invalid_file_is_refused_and_sighup_reopens_the_log() {
    let dir = TempDir::new("ops-log");
    let log_path = dir.join("aster.log");
    let s = RedisServer::start();
    let t = RedisServer::start();
    let conf = ClusterConf::new("steady", &[&s, &t]);
    let proxy = start_proxy(
        &conf.to_toml(),
        &["-o", log_path.to_str().expect("utf-8 path")],
    );
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let started = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("listening on").then_some(())
    });
    assert!(started.is_some(), "-o log file:\n{}", log());
    let mut c = proxy.client();
    let cmds: Vec<Vec<String>> = (0..40)
        .map(|i| args(&["SET", &format!("{i}:st"), &i.to_string()]))
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let placed: Vec<usize> = (0..40)
        .map(|i| usize::from(t.client().cmd(&["EXISTS", &format!("{i}:st")]) == Reply::Int(1)))
        .collect();
    let on_t: usize = placed.iter().sum();
    assert!(
        on_t > 0 && on_t < 40,
        "keys should spread over both servers"
    );

    // logrotate moves the file away; SIGHUP makes the proxy write a new one.
    let rotated = dir.join("aster.log.1");
    fs::rename(&log_path, &rotated).expect("rotate log");
    let bad_value = conf.clone().set("hash", "\"no_such_hash\"").to_toml();
    fs::write(proxy.config_path(), &bad_value).expect("write invalid config");
    proxy.signal("HUP");
    let refused = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("reload refused").then_some(())
    });
    assert!(
        refused.is_some(),
        "no 'reload refused' in the reopened log {}:\n{}\nrotated:\n{}",
        log_path.display(),
        log(),
        tail(&rotated, 30)
    );
    assert!(
        log().contains("no_such_hash"),
        "the refusal names the problem:\n{}",
        log()
    );
    assert!(log().contains("reopened"), "{}", log());
    let old_log = fs::read_to_string(&rotated).unwrap_or_default();
    assert!(
        old_log.contains("listening on") && !old_log.contains("reload refused"),
        "after SIGHUP the proxy still writes to the rotated file:\n{old_log}"
    );

    // A TOML syntax error is refused too.
    fs::write(proxy.config_path(), "[[clusters]\nname = ").expect("write broken config");
    proxy.signal("HUP");
    let refused = poll_until(Duration::from_secs(5), POLL, || {
        (count(&log(), "reload refused") >= 2).then_some(())
    });
    assert!(refused.is_some(), "second refusal missing:\n{}", log());

    // Still serving with the old configuration, on old and new connections.
    for i in 0..40 {
        assert_eq!(
            c.cmd(&["GET", &format!("{i}:st")]),
            Reply::bulk(&i.to_string())
        );
    }
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["SET", "st-after", "1"]), Reply::ok());
    let text = info(&mut fresh, None);
    assert_eq!(info_field(&text, "cluster"), Some("steady"));
    assert_eq!(info_backends(&text).len(), 2, "{text}");
    for (i, was) in placed.iter().enumerate() {
        let on_t = usize::from(t.client().cmd(&["EXISTS", &format!("{i}:st")]) == Reply::Int(1));
        assert_eq!(on_t, *was, "placement of {i}:st changed");
    }
    assert_eq!(count(&log(), "reload of"), 0, "nothing was applied");

    // A valid file is applied afterwards: the refusals left nothing stuck.
    let good = conf.clone().set("read_timeout", "2500").to_toml();
    fs::write(proxy.config_path(), good).expect("write valid config");
    proxy.signal("HUP");
    let applied = poll_until(Duration::from_secs(5), POLL, || {
        log().contains("reload of").then_some(())
    });
    assert!(applied.is_some(), "valid reload not applied:\n{}", log());
    assert_eq!(c.cmd(&["GET", "1:st"]), Reply::bulk("1"));
}

#[test]
fn reload_applies_a_new_read_timeout() {
    let mut s = RedisServer::start();
    let conf = ClusterConf::new("timeouts", &[&s]).set("read_timeout", "5000");
    let proxy = start_proxy(&conf.to_toml(), &[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "rt", "v"]), Reply::ok());

    let adopted = count(&proxy.log(), "runs the reloaded configuration");
    rewrite_and_hup(
        &proxy,
        &conf.clone().set("read_timeout", "300").to_toml(),
        "reload of",
    );
    // Both workers adopt the new options with the route table.
    let ok = poll_until(Duration::from_secs(3), POLL, || {
        (count(&proxy.log(), "runs the reloaded configuration") >= adopted + 2).then_some(())
    });
    assert!(ok.is_some(), "workers did not adopt:\n{}", proxy.log());

    s.pause();
    let start = Instant::now();
    let r = c.cmd(&["GET", "rt"]);
    let took = start.elapsed();
    s.resume();
    let e = r
        .error()
        .unwrap_or_else(|| panic!("GET on a paused backend: {r:?}"));
    assert!(e.contains("timed out"), "{e:?}");
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(2500),
        "timed out after {took:?}: the reloaded read_timeout is 300 ms (was 5000 ms)"
    );
    let back = poll_until(Duration::from_secs(5), POLL, || {
        (c.cmd(&["GET", "rt"]) == Reply::bulk("v")).then_some(())
    });
    assert!(back.is_some(), "the backend is not used again after resume");
}

// ---------------------------------------------------------------------------
// scripts/start.sh, reload.sh, stop.sh
// ---------------------------------------------------------------------------

/// start.sh leaves the proxy behind (setsid, then start.sh exits), so the
/// orphan goes to the nearest child subreaper, else PID 1. PID 1 may reap it
/// late, or never (a container whose init does not reap), and stop.sh's
/// `kill -0` counts a zombie as running. The test makes itself a subreaper
/// while start.sh runs, so the proxy becomes its child and is reaped here,
/// at once, wherever the suite runs.
mod reaper {
    use std::os::raw::{c_int, c_ulong};

    unsafe extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
        fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }

    const PR_SET_CHILD_SUBREAPER: c_int = 36;

    pub fn set_subreaper(on: bool) -> bool {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        unsafe { prctl(PR_SET_CHILD_SUBREAPER, c_ulong::from(on)) == 0 }
    }

    /// Blocks until child `pid` exits and reaps it.
    pub fn reap(pid: u32) -> bool {
        let mut status: c_int = 0;
        let pid = pid as c_int;
        // SAFETY: status is a valid out pointer for the call's duration.
        unsafe { waitpid(pid, &mut status, 0) == pid }
    }
}

/// The parent pid of `pid`, from /proc.
fn ppid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Alive and not a zombie.
fn process_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// Runs a script of the repo with ASTER_BIN set to the binary under test
/// and ASTER_RUN_DIR to `run` (never the repo's run/); (success, stdout,
/// stderr). At most 30 s.
fn run_script(root: &Path, run: &Path, script: &str, args: &[&Path]) -> (bool, String, String) {
    let mut child = Command::new("bash")
        .arg(root.join("scripts").join(script))
        .args(args)
        .env("ASTER_BIN", proxy_bin())
        .env("ASTER_RUN_DIR", run)
        .current_dir(run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (o, e) = (
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    );
    (status.is_some_and(|s| s.success()), o, e)
}

/// The proxy started by start.sh: stopped (SIGKILL) and reaped on drop if
/// the test did not stop it.
struct ScriptedProxy {
    pid: u32,
    reaper: Option<thread::JoinHandle<bool>>,
    log: PathBuf,
}

impl Drop for ScriptedProxy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- start.sh's aster.log (last 60 lines) ----\n{}\n----",
                tail(&self.log, 60)
            );
        }
        if process_running(self.pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
    }
}

#[test]
fn scripts_start_reload_and_stop_the_proxy() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The scripts' run directory (pid file, log) is this test's own.
    let run_tmp = TempDir::new("ops-run");
    let run = run_tmp.path().to_path_buf();
    let pid_file = run.join("aster.pid");
    let repo_log = root.join("run").join("aster.log");
    let stamp = |p: &Path| fs::metadata(p).ok().map(|m| (m.len(), m.modified().ok()));
    let repo_log_before = stamp(&repo_log);

    let (s0, s1) = (RedisServer::start(), RedisServer::start());
    let one = ClusterConf::new("scripted", &[&s0]);
    let two = ClusterConf::new("scripted2", &[&s1]);
    let dir = TempDir::new("ops-scripts");
    let config = dir.join("aster.toml");
    fs::write(&config, one.to_toml()).expect("write config");

    assert!(reaper::set_subreaper(true), "prctl(PR_SET_CHILD_SUBREAPER)");
    let (ok, out, err) = run_script(&root, &run, "start.sh", &[&config]);
    reaper::set_subreaper(false);
    let pid: u32 = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("start.sh wrote no pid file; ok={ok}\n{out}\n{err}"));
    let adopted = ppid_of(pid) == Some(std::process::id());
    let mut proxy = ScriptedProxy {
        pid,
        reaper: adopted.then(|| thread::spawn(move || reaper::reap(pid))),
        log: run.join("aster.log"),
    };
    assert!(ok, "start.sh failed:\n{out}\n{err}");
    assert!(
        out.contains(&format!("aster-proxy started (pid {pid}")),
        "{out}"
    );
    assert!(
        adopted,
        "the started proxy (pid {pid}) was not reparented to the test"
    );
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains(&*proxy_bin().to_string_lossy()),
        "start.sh did not run ASTER_BIN"
    );

    let mut c = Client::connect(one.port);
    assert_eq!(c.cmd(&["SET", "sk", "sv"]), Reply::ok());
    assert_eq!(s0.client().cmd(&["GET", "sk"]), Reply::bulk("sv"));

    // reload.sh finds the config on the running command line and applies it.
    fs::write(&config, config_toml(&[one.clone(), two.clone()])).expect("write config");
    let (ok, out, err) = run_script(&root, &run, "reload.sh", &[]);
    assert!(ok, "reload.sh failed:\n{out}\n{err}");
    assert!(out.contains(&format!("(pid {pid}) reloading")), "{out}");
    let up = poll_until(Duration::from_secs(5), POLL, || {
        accepts(two.port).then_some(())
    });
    assert!(
        up.is_some(),
        "the cluster added by reload.sh does not accept"
    );
    let mut c2 = Client::connect(two.port);
    assert_eq!(c2.cmd(&["SET", "sk2", "sv2"]), Reply::ok());
    assert_eq!(s1.client().cmd(&["GET", "sk2"]), Reply::bulk("sv2"));
    assert_eq!(c.cmd(&["GET", "sk"]), Reply::bulk("sv"), "same connection");

    // An invalid file: reload.sh refuses it and the proxy keeps serving.
    fs::write(&config, one.clone().set("thread", "0").to_toml()).expect("write config");
    let (ok, out, err) = run_script(&root, &run, "reload.sh", &[]);
    assert!(!ok, "reload.sh accepted an invalid file:\n{out}\n{err}");
    assert!(err.contains("not valid; not reloading"), "{err}");
    assert!(process_running(pid));
    assert_eq!(c.cmd(&["GET", "sk"]), Reply::bulk("sv"));
    assert_eq!(c2.cmd(&["GET", "sk2"]), Reply::bulk("sv2"));

    // stop.sh: graceful stop, pid file removed, ports closed.
    let (ok, out, err) = run_script(&root, &run, "stop.sh", &[]);
    assert!(ok, "stop.sh failed:\n{out}\n{err}");
    assert!(
        out.contains(&format!("aster-proxy stopped (pid {pid})")),
        "stop.sh did not stop gracefully:\n{out}\n{err}"
    );
    assert!(!pid_file.exists(), "stop.sh left the pid file");
    assert!(!process_running(pid));
    if let Some(r) = proxy.reaper.take() {
        assert!(r.join().unwrap_or(false), "proxy not reaped");
    }
    assert!(!accepts(one.port) && !accepts(two.port), "ports still open");
    assert!(c.closed_within(Duration::from_secs(2)));
    let (ok, _, err) = run_script(&root, &run, "reload.sh", &[]);
    assert!(
        !ok && err.contains("not running"),
        "reload.sh after stop: {err}"
    );
    // Everything went to ASTER_RUN_DIR, nothing into the checkout.
    let logged = fs::read_to_string(run.join("aster.log")).unwrap_or_default();
    assert!(
        logged.contains("start: "),
        "no log in ASTER_RUN_DIR:\n{logged}"
    );
    assert_eq!(
        stamp(&repo_log),
        repo_log_before,
        "{} was written by the test",
        repo_log.display()
    );
}

// ---------------------------------------------------------------------------
// Prometheus metrics
// ---------------------------------------------------------------------------

/// One HTTP/1.1 request on a fresh connection: (status code, headers, body).
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to metrics port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (code, head.to_string(), body.to_string())
}

fn get(port: u16, path: &str) -> (u16, String, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n"),
    )
}

/// A parsed sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    fn parse(text: String) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label k=v");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics { text, samples }
    }

    /// Waits until the metrics port accepts (it opens after the clusters).
    fn wait_ready(port: u16) {
        let ok = poll_until(Duration::from_secs(5), POLL, || accepts(port).then_some(()));
        assert!(ok.is_some(), "the metrics port {port} does not accept");
    }

    fn fetch(port: u16) -> Metrics {
        let (code, head, body) = get(port, "/metrics");
        assert_eq!(code, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        Metrics::parse(body)
    }

    /// The value of `name` whose labels include every pair of `want`.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Checks `# TYPE` and at least one sample for a family.
    fn assert_family(&self, name: &str, kind: &str) {
        assert!(
            self.text.contains(&format!("# TYPE {name} {kind}\n")),
            "no '# TYPE {name} {kind}':\n{}",
            self.text
        );
        assert!(
            self.text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        let sample = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(
            self.samples.iter().any(|s| s.name == sample),
            "no sample of {name}:\n{}",
            self.text
        );
    }

    /// Every series of histogram `name`: buckets ascending in `le` and
    /// cumulative, the +Inf bucket equal to _count. Returns the _counts.
    fn check_histogram(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let bucket = format!("{name}_bucket");
        // Labels without `le` -> (le, cumulative count) in order of appearance.
        type Series = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;
        let mut series = Series::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let le = s.labels.get("le").expect("bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "no buckets for {name}");
        let mut counts = Vec::new();
        for (labels, buckets) in series {
            let want: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(buckets.len() >= 2, "{name}{labels:?}: {buckets:?}");
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{name}{labels:?}: le not ascending");
                assert!(
                    w[0].1 <= w[1].1,
                    "{name}{labels:?}: buckets not cumulative: {buckets:?}"
                );
            }
            let (last_le, inf) = *buckets.last().expect("buckets");
            assert!(
                last_le.is_infinite(),
                "{name}{labels:?}: last bucket is not +Inf"
            );
            let count = self
                .value(&format!("{name}_count"), &want)
                .unwrap_or_else(|| panic!("{name}_count{labels:?} missing"));
            assert_eq!(inf, count, "{name}{labels:?}: +Inf bucket != _count");
            let sum = self
                .value(&format!("{name}_sum"), &want)
                .unwrap_or_else(|| panic!("{name}_sum{labels:?} missing"));
            assert!(
                sum >= 0.0 && (count > 0.0 || sum == 0.0),
                "{name}_sum {sum}"
            );
            counts.push((labels.into_iter().collect(), count));
        }
        counts
    }
}

#[test]
fn metrics_endpoint_serves_every_family_with_consistent_counts() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("metered", &refs);
    let mport = free_port();
    let maddr = format!("127.0.0.1:{mport}");
    let proxy = start_proxy(&conf.to_toml(), &["--metrics", &maddr]);
    Metrics::wait_ready(mport);
    let mut c = proxy.client();
    let n = 60;
    let mut cmds: Vec<Vec<String>> = (0..n)
        .map(|i| args(&["SET", &format!("m{i}"), "v"]))
        .collect();
    cmds.extend((0..n).map(|i| args(&["GET", &format!("m{i}")])));
    assert!(c.pipeline(&cmds).iter().all(|r| !r.is_error()));
    let keys = key_per_server(&mut c, &servers, "mk");
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert!(!c.cmd(&mget).is_error());
    let sent = 2 * n + 1;
    let backend_min = 2 * n + 3;

    let cl = [("cluster", "metered")];
    let m = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let m = Metrics::fetch(mport);
        let done = m.value("aster_commands_total", &cl).unwrap_or(0.0) >= sent as f64
            && m.sum("aster_backend_requests_total", &cl) >= backend_min as f64
            && m.sum("aster_backend_responses_total", &cl)
                >= m.sum("aster_backend_requests_total", &cl)
            && m.value("aster_fragments_total", &cl).unwrap_or(0.0) > 0.0;
        done.then_some(m)
    });
    let m = m.unwrap_or_else(|| {
        panic!(
            "counters not published within 5 s (sent {sent} commands):\n{}",
            Metrics::fetch(mport).text
        )
    });

    for (name, kind) in [
        ("aster_build_info", "gauge"),
        ("aster_uptime_seconds", "gauge"),
        ("aster_client_connections", "gauge"),
        ("aster_client_connections_total", "counter"),
        ("aster_commands_total", "counter"),
        ("aster_client_errors_total", "counter"),
        ("aster_forward_errors_total", "counter"),
        ("aster_fragments_total", "counter"),
        ("aster_backend_ejections_total", "counter"),
        ("aster_request_duration_seconds", "histogram"),
        ("aster_backend_requests_total", "counter"),
        ("aster_backend_responses_total", "counter"),
        ("aster_backend_errors_total", "counter"),
        ("aster_backend_timeouts_total", "counter"),
        ("aster_backend_connections", "gauge"),
        ("aster_backend_in_flight", "gauge"),
        ("aster_backend_up", "gauge"),
        ("aster_backend_request_duration_seconds", "histogram"),
    ] {
        m.assert_family(name, kind);
    }
    let version = m
        .samples
        .iter()
        .find(|s| s.name == "aster_build_info")
        .and_then(|s| s.labels.get("version").cloned())
        .expect("build_info version label");
    let own = String::from_utf8_lossy(
        &Command::new(proxy_bin())
            .arg("--version")
            .output()
            .expect("--version")
            .stdout,
    )
    .trim()
    .to_string();
    assert_eq!(own, format!("aster-proxy {version}"));
    assert!(m.value("aster_uptime_seconds", &[]).expect("uptime") >= 0.0);
    assert!(m.value("aster_client_connections", &cl).expect("clients") >= 1.0);
    assert!(
        m.value("aster_client_connections_total", &cl)
            .expect("accepted")
            >= 1.0
    );
    assert_eq!(m.value("aster_backend_ejections_total", &cl), Some(0.0));
    assert_eq!(m.value("aster_forward_errors_total", &cl), Some(0.0));
    for i in 0..3 {
        let b = [("cluster", "metered"), ("backend", &*format!("redis{i}"))];
        assert_eq!(m.value("aster_backend_up", &b), Some(1.0), "redis{i} up");
        assert!(
            m.value("aster_backend_requests_total", &b)
                .expect("requests")
                >= 1.0
        );
        assert!(m.value("aster_backend_connections", &b).expect("conns") >= 1.0);
        assert_eq!(m.value("aster_backend_in_flight", &b), Some(0.0));
        assert_eq!(m.value("aster_backend_errors_total", &b), Some(0.0));
        assert_eq!(m.value("aster_backend_timeouts_total", &b), Some(0.0));
    }
    let cluster_counts = m.check_histogram("aster_request_duration_seconds");
    assert_eq!(cluster_counts.len(), 1);
    assert!(
        cluster_counts[0].1 >= backend_min as f64,
        "request histogram counted {} of {backend_min} backend requests",
        cluster_counts[0].1
    );
    let backend_counts = m.check_histogram("aster_backend_request_duration_seconds");
    assert_eq!(backend_counts.len(), 3);
    let per_backend: f64 = backend_counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        per_backend,
        m.sum("aster_backend_responses_total", &cl),
        "per-backend histogram counts vs responses"
    );

    // Only GET /metrics is served.
    let (code, _, _) = get(mport, "/other");
    assert_eq!(code, 404);
    let (code, _, _) = get(mport, "/");
    assert_eq!(code, 404);
    let (code, _, _) = http(
        mport,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(code, 404, "POST /metrics");
    // Still serving after the 404s.
    assert!(
        Metrics::fetch(mport)
            .value("aster_commands_total", &cl)
            .is_some()
    );
}

#[test]
fn ejected_backend_shows_in_metrics_and_info() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("health", &refs)
        .set("ping_fail_limit", "1")
        .set("ping_interval", "100");
    let mut servers = servers;
    let mport = free_port();
    // --metrics PORT alone listens on 127.0.0.1.
    let proxy = start_proxy(&conf.to_toml(), &["--metrics", &mport.to_string()]);
    Metrics::wait_ready(mport);
    let mut c = proxy.client();
    let text = info(&mut c, Some("backends"));
    let b = info_backends(&text);
    assert_eq!(b.len(), 3, "{text}");
    for (i, line) in b.iter().enumerate() {
        assert_eq!(line["name"], format!("redis{i}"));
        assert_eq!(line["addr"], servers[i].addr());
        assert_eq!(line["state"], "up", "{text}");
    }
    let up = |m: &Metrics, i: usize| {
        m.value(
            "aster_backend_up",
            &[("cluster", "health"), ("backend", &format!("redis{i}"))],
        )
    };
    let m = Metrics::fetch(mport);
    assert!((0..3).all(|i| up(&m, i) == Some(1.0)), "{}", m.text);

    servers[1].kill();
    let m = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let m = Metrics::fetch(mport);
        (up(&m, 1) == Some(0.0)).then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "aster_backend_up of a killed backend is not 0 after 5 s:\n{}",
            Metrics::fetch(mport).text
        )
    });
    assert_eq!(up(&m, 0), Some(1.0));
    assert_eq!(up(&m, 2), Some(1.0));
    let ejections = m
        .value("aster_backend_ejections_total", &[("cluster", "health")])
        .expect("ejections");
    assert!(ejections >= 1.0, "ejections {ejections}");
    let text = info(&mut c, None);
    let b = info_backends(&text);
    assert_eq!(b[1]["state"], "ejected", "{text}");
    assert_eq!(b[0]["state"], "up", "{text}");
    assert_eq!(b[2]["state"], "up", "{text}");
    assert!(info_num(&text, "server_ejects") >= 1, "{text}");

    // The first answered ping brings it back.
    servers[1].restart();
    let back = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        (up(&Metrics::fetch(mport), 1) == Some(1.0)).then_some(())
    });
    assert!(back.is_some(), "aster_backend_up stays 0 after the restart");
    let ok = poll_until(Duration::from_secs(3), POLL, || {
        (info_backends(&info(&mut c, Some("backends")))[1]["state"] == "up").then_some(())
    });
    assert!(ok.is_some(), "INFO: {}", info(&mut c, None));
    let (code, _, _) = get(mport, "/other");
    assert_eq!(code, 404);
}

// ---------------------------------------------------------------------------
// INFO and SLOWLOG
// ---------------------------------------------------------------------------

#[test]
fn info_describes_the_proxy_its_cluster_and_backends() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("infocl", &refs)
        .set("thread", "3")
        .set("max_clients", "77");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    let _other = proxy.client();

    let text = info(&mut c, None);
    for section in ["# Server", "# Clients", "# Stats", "# Backends"] {
        assert!(text.contains(section), "INFO lacks {section}:\n{text}");
    }
    assert_eq!(info_field(&text, "cluster"), Some("infocl"), "{text}");
    assert_eq!(info_field(&text, "cache_type"), Some("redis"), "{text}");
    assert_eq!(
        info_field(&text, "listen_addr"),
        Some(&*format!("127.0.0.1:{}", conf.port)),
        "{text}"
    );
    assert_eq!(info_num(&text, "threads"), 3);
    assert_eq!(info_num(&text, "maxclients"), 77);
    let redis_version = info_field(&text, "redis_version").expect("redis_version");
    assert!(
        redis_version.split('.').count() == 3
            && redis_version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "redis_version {redis_version:?}"
    );
    let own = String::from_utf8_lossy(
        &Command::new(proxy_bin())
            .arg("--version")
            .output()
            .expect("--version")
            .stdout,
    )
    .trim()
    .to_string();
    assert_eq!(
        format!(
            "aster-proxy {}",
            info_field(&text, "aster_version").expect("aster_version")
        ),
        own
    );
    assert!(info_num(&text, "uptime_in_seconds") < 600);
    let b = info_backends(&text);
    assert_eq!(b.len(), 2, "{text}");
    for (i, line) in b.iter().enumerate() {
        assert_eq!(line["name"], format!("redis{i}"), "{text}");
        assert_eq!(line["addr"], servers[i].addr(), "{text}");
        assert_eq!(line["state"], "up", "{text}");
        for k in ["requests", "errors", "timeouts"] {
            assert!(line[k].parse::<u64>().is_ok(), "{k} in {line:?}");
        }
    }

    // Counters move with traffic (workers publish them every ~200 ms).
    let n = 50;
    let cmds: Vec<Vec<String>> = (0..n)
        .map(|i| args(&["SET", &format!("{i}:inf"), "v"]))
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    let text = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let t = info(&mut c, None);
        let requests: u64 = info_backends(&t)
            .iter()
            .map(|b| b["requests"].parse::<u64>().expect("requests"))
            .sum();
        // Every worker publishes on its own ~200 ms clock: wait for all.
        (info_num(&t, "total_commands_processed") >= n
            && requests >= n
            && info_num(&t, "total_connections_received") >= 2)
            .then_some(t)
    })
    .unwrap_or_else(|| panic!("INFO counters did not move:\n{}", info(&mut c, None)));
    assert!(info_num(&text, "total_connections_received") >= 2, "{text}");
    assert!(info_num(&text, "connected_clients") >= 2, "{text}");
    for b in info_backends(&text) {
        assert!(b["requests"].parse::<u64>().expect("requests") > 0, "{b:?}");
        assert_eq!(b["errors"], "0");
    }

    // INFO <section> gives that section alone.
    let server = info(&mut c, Some("server"));
    assert!(server.contains("# Server"), "{server}");
    assert_eq!(info_field(&server, "cluster"), Some("infocl"));
    for other in ["# Clients", "# Stats", "# Backends", "backend0:"] {
        assert!(
            !server.contains(other),
            "INFO server has {other}:\n{server}"
        );
    }
    let clients = info(&mut c, Some("clients"));
    assert!(clients.contains("connected_clients:") && !clients.contains("# Server"));
}

/// SLOWLOG GET [n] as (id, unix time, µs, args, client addr, client name).
type SlowEntry = (i64, i64, i64, Vec<String>, String, String);

fn slowlog_get(c: &mut Client, n: Option<&str>) -> Vec<SlowEntry> {
    let r = match n {
        Some(n) => c.cmd(&["SLOWLOG", "GET", n]),
        None => c.cmd(&["SLOWLOG", "GET"]),
    };
    array(r)
        .into_iter()
        .map(|e| {
            let f = array(e);
            assert_eq!(f.len(), 6, "a slowlog entry has 6 fields: {f:?}");
            let args = array(f[3].clone())
                .iter()
                .map(|a| a.text().to_string())
                .collect();
            (
                int(&f[0]),
                int(&f[1]),
                int(&f[2]),
                args,
                f[4].text().to_string(),
                f[5].text().to_string(),
            )
        })
        .collect()
}

fn slowlog_len(c: &mut Client) -> i64 {
    int(&c.cmd(&["SLOWLOG", "LEN"]))
}

#[test]
fn slowlog_logs_every_request_at_zero_and_nothing_when_off() {
    let s = RedisServer::start();
    let t = RedisServer::start();
    let all = ClusterConf::new("slow_all", &[&s, &t])
        .set("slowlog_log_slower_than", "0")
        .set("slowlog_max_len", "5");
    let off = ClusterConf::new("slow_off", &[&s]).set("slowlog_log_slower_than", "-1");
    let proxy = Proxy::start(&config_toml(&[all.clone(), off.clone()]));
    let mut c = Client::connect(all.port);
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 0);
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "slowpoke"]), Reply::ok());

    assert_eq!(c.cmd(&["SET", "sl1", "v1"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 1);
    assert_eq!(c.cmd(&["GET", "sl1"]), Reply::bulk("v1"));
    assert_eq!(slowlog_len(&mut c), 2);
    // Answered by the proxy itself: no backend time, not logged.
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(slowlog_len(&mut c), 2);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let local = c.stream().local_addr().expect("local addr").to_string();
    let e = slowlog_get(&mut c, Some("2"));
    assert_eq!(e.len(), 2, "{e:?}");
    // Newest first.
    assert_eq!(e[0].3, vec!["GET", "sl1"], "{e:?}");
    assert_eq!(e[1].3, vec!["SET", "sl1", "v1"], "{e:?}");
    assert!(e[0].0 > e[1].0, "ids grow: {e:?}");
    for entry in &e {
        assert!((entry.1 - now).abs() <= 60, "unix time {entry:?}");
        assert!(entry.2 >= 0, "µs {entry:?}");
        assert_eq!(entry.4, local, "client address");
        assert_eq!(entry.5, "slowpoke", "client name");
    }
    assert_eq!(slowlog_get(&mut c, Some("1")).len(), 1);

    // From another connection (other worker too): the log is per cluster.
    let mut other = Client::connect(all.port);
    assert_eq!(other.cmd(&["SET", "sl2", "v2"]), Reply::ok());
    let e = slowlog_get(&mut other, None);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0].3, vec!["SET", "sl2", "v2"]);
    assert_eq!(
        e[0].4,
        other.stream().local_addr().expect("addr").to_string()
    );
    assert_eq!(e[0].5, "", "no name set on this client");

    // At most slowlog_max_len entries, newest kept.
    for i in 0..6 {
        assert_eq!(c.cmd(&["SET", &format!("cap{i}"), "x"]), Reply::ok());
    }
    assert_eq!(slowlog_len(&mut c), 5);
    let e = slowlog_get(&mut c, Some("-1"));
    assert_eq!(e.len(), 5);
    assert_eq!(e[0].3, vec!["SET", "cap5", "x"]);
    assert_eq!(e[4].3, vec!["SET", "cap1", "x"]);

    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());
    assert_eq!(slowlog_len(&mut c), 0);
    assert_eq!(c.cmd(&["SLOWLOG", "GET"]), Reply::Array(vec![]));
    assert!(c.cmd(&["SLOWLOG", "NOPE"]).is_error());

    // slowlog_log_slower_than = -1: nothing is logged.
    let mut o = Client::connect(off.port);
    for i in 0..20 {
        assert_eq!(o.cmd(&["SET", &format!("off{i}"), "x"]), Reply::ok());
    }
    assert_eq!(slowlog_len(&mut o), 0);
    assert_eq!(o.cmd(&["SLOWLOG", "GET"]), Reply::Array(vec![]));
    drop(proxy);
}

#[test]
fn slowlog_catches_exactly_the_stalled_request() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("stall", &refs).set("slowlog_log_slower_than", "20000");
    let proxy = Proxy::start(&conf.to_toml());
    let mut c = proxy.client();
    let keys = key_per_server(&mut c, &servers, "stall");
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v"]), Reply::ok());
    }
    // Warm both backend connections, then nothing but the stalled request
    // runs between RESET and the check.
    assert_eq!(c.cmd(&["GET", &keys[0]]), Reply::bulk("v"));
    assert_eq!(c.cmd(&["GET", &keys[1]]), Reply::bulk("v"));
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Reply::ok());

    servers[0].pause();
    let start = Instant::now();
    c.send_cmd(&["GET", &keys[0]]);
    thread::sleep(Duration::from_millis(50));
    servers[0].resume();
    assert_eq!(c.read_reply().expect("reply"), Reply::bulk("v"));
    let took = start.elapsed();

    let e = slowlog_get(&mut c, None);
    assert_eq!(e.len(), 1, "exactly the stalled request is logged: {e:?}");
    assert_eq!(e[0].3, vec!["GET".to_string(), keys[0].clone()]);
    let us = e[0].2;
    assert!(
        us >= 40_000 && us <= took.as_micros() as i64 + 5_000,
        "logged {us} µs for a request that took {took:?} with a 50 ms stall"
    );
    assert_eq!(e[0].4, c.stream().local_addr().expect("addr").to_string());

    // Fast requests stay out. (On a loaded machine one may really take
    // 20 ms; whatever is logged must have been that slow, and most are not.)
    let fast = 20;
    for i in 0..fast {
        assert_eq!(c.cmd(&["GET", &keys[i % 2]]), Reply::bulk("v"));
    }
    let e = slowlog_get(&mut c, Some("-1"));
    assert_eq!(e.last().map(|x| x.3[1].clone()), Some(keys[0].clone()));
    assert!(
        e.iter().all(|x| x.2 >= 20_000),
        "an entry below the 20000 µs threshold: {e:?}"
    );
    assert!(
        e.len() <= 1 + fast / 2,
        "most fast requests were logged as slow: {e:?}"
    );
}

// ---------------------------------------------------------------------------
// Real client libraries, both modes
// ---------------------------------------------------------------------------

/// The `redis` crate (sync API) through the proxy on `port`: handshake,
/// common commands, a 100-command pipeline, errors. Keys start with `p`.
fn exercise_redis_crate(port: u16, p: &str) {
    use redis::Commands;
    let k = |s: &str| format!("{s}:{p}");
    let mut conn = redis_conn(port);

    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");

    // strings
    let () = conn.set(k("s"), "hello").expect("SET");
    let v: String = conn.get(k("s")).expect("GET");
    assert_eq!(v, "hello");
    let n: usize = conn.append(k("s"), " world").expect("APPEND");
    assert_eq!(n, 11);
    let v: String = conn.getrange(k("s"), 0, 4).expect("GETRANGE");
    assert_eq!(v, "hello");
    let n: i64 = conn.incr(k("n"), 1).expect("INCR");
    assert_eq!(n, 1);
    let n: i64 = conn.incr(k("n"), 41).expect("INCRBY");
    assert_eq!(n, 42);
    let set: bool = conn.set_nx(k("s"), "x").expect("SETNX");
    assert!(!set);
    let none: Option<String> = conn.get(k("missing")).expect("GET missing");
    assert_eq!(none, None);

    // expire / ttl
    let () = conn.set_ex(k("e"), "v", 100).expect("SETEX");
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    let ok: bool = conn.persist(k("e")).expect("PERSIST");
    assert!(ok);
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert_eq!(ttl, -1);
    let ok: bool = conn.expire(k("e"), 50).expect("EXPIRE");
    assert!(ok);
    let ttl: i64 = conn.ttl(k("e")).expect("TTL");
    assert!((1..=50).contains(&ttl), "ttl {ttl}");
    let ttl: i64 = conn.ttl(k("missing")).expect("TTL");
    assert_eq!(ttl, -2);

    // hashes
    let () = conn
        .hset_multiple(k("h"), &[("a", "1"), ("b", "2")])
        .expect("HSET");
    let v: String = conn.hget(k("h"), "a").expect("HGET");
    assert_eq!(v, "1");
    let all: BTreeMap<String, String> = conn.hgetall(k("h")).expect("HGETALL");
    assert_eq!(
        all,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    let n: i64 = conn.hincr(k("h"), "a", 5).expect("HINCRBY");
    assert_eq!(n, 6);
    let n: usize = conn.hdel(k("h"), "b").expect("HDEL");
    assert_eq!(n, 1);
    let n: usize = conn.hlen(k("h")).expect("HLEN");
    assert_eq!(n, 1);

    // lists
    let n: usize = conn.rpush(k("l"), &["a", "b", "c"]).expect("RPUSH");
    assert_eq!(n, 3);
    let n: usize = conn.lpush(k("l"), "z").expect("LPUSH");
    assert_eq!(n, 4);
    let l: Vec<String> = conn.lrange(k("l"), 0, -1).expect("LRANGE");
    assert_eq!(l, ["z", "a", "b", "c"]);
    let v: Option<String> = conn.lpop(k("l"), None).expect("LPOP");
    assert_eq!(v.as_deref(), Some("z"));
    let n: usize = conn.llen(k("l")).expect("LLEN");
    assert_eq!(n, 3);

    // sets
    let n: usize = conn.sadd(k("set"), &["a", "b", "c"]).expect("SADD");
    assert_eq!(n, 3);
    let m: BTreeSet<String> = conn.smembers(k("set")).expect("SMEMBERS");
    assert_eq!(m, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
    let is: bool = conn.sismember(k("set"), "b").expect("SISMEMBER");
    assert!(is);
    let n: usize = conn.srem(k("set"), "a").expect("SREM");
    assert_eq!(n, 1);
    let n: usize = conn.scard(k("set")).expect("SCARD");
    assert_eq!(n, 2);

    // sorted sets
    let n: usize = conn
        .zadd_multiple(k("z"), &[(1, "a"), (2, "b"), (3, "c")])
        .expect("ZADD");
    assert_eq!(n, 3);
    let z: Vec<(String, f64)> = conn.zrange_withscores(k("z"), 0, -1).expect("ZRANGE");
    assert_eq!(
        z,
        vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.0)]
    );
    let s: f64 = conn.zincr(k("z"), "a", 10).expect("ZINCRBY");
    assert_eq!(s, 11.0);
    let s: Option<f64> = conn.zscore(k("z"), "b").expect("ZSCORE");
    assert_eq!(s, Some(2.0));
    let r: Option<usize> = conn.zrank(k("z"), "a").expect("ZRANK");
    assert_eq!(r, Some(2));
    let n: usize = conn.zcard(k("z")).expect("ZCARD");
    assert_eq!(n, 3);

    // multi-key commands over several servers / slots
    let keys: Vec<String> = (0..20).map(|i| k(&format!("{i}m"))).collect();
    let items: Vec<(String, String)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (key.clone(), format!("v{i}")))
        .collect();
    let () = conn.mset(&items).expect("MSET");
    let mut ask = keys.clone();
    ask.push(k("nope"));
    let got: Vec<Option<String>> = conn.mget(&ask).expect("MGET");
    let mut want: Vec<Option<String>> = (0..20).map(|i| Some(format!("v{i}"))).collect();
    want.push(None);
    assert_eq!(got, want);
    let n: usize = conn.exists(&keys).expect("EXISTS");
    assert_eq!(n, 20);
    let n: usize = conn.del(&keys).expect("DEL");
    assert_eq!(n, 20);
    let n: usize = conn.exists(&keys).expect("EXISTS");
    assert_eq!(n, 0);

    // a non-transactional pipeline of 100 commands
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.set(k(&format!("{i}p")), i);
    }
    for i in 0..50 {
        pipe.get(k(&format!("{i}p")));
    }
    let got: Vec<redis::Value> = pipe.query(&mut conn).expect("pipeline");
    assert_eq!(got.len(), 100);
    for (i, v) in got.iter().enumerate() {
        match (i < 50, v) {
            (true, redis::Value::Okay) => {}
            (false, redis::Value::BulkString(b)) => {
                assert_eq!(String::from_utf8_lossy(b), (i - 50).to_string());
            }
            _ => panic!("pipeline reply {i}: {v:?}"),
        }
    }

    // errors: refused by the proxy, and from a backend; the connection stays
    let err = redis::cmd("KEYS")
        .arg("*")
        .query::<redis::Value>(&mut conn)
        .expect_err("KEYS is not supported");
    assert_eq!(err.code(), Some("ERR"), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
    let err = conn
        .lpush::<_, _, usize>(k("s"), "x")
        .expect_err("LPUSH on a string");
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
    let v: String = conn.get(k("s")).expect("GET after errors");
    assert_eq!(v, "hello world");
    let id2: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");
    assert_eq!(id, id2, "the errors did not cost the connection");
}

/// True when python3 runs; prints a loud note otherwise.
fn python_available() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "\n!!!! SKIPPED: python3 is not installed, so the redis-py client tests did not run !!!!\n"
        );
    }
    ok
}

const REDIS_PY_SCRIPT: &str = r#"
import sys
import redis

port, p, proto = int(sys.argv[1]), sys.argv[2], sys.argv[3]
major = int(redis.__version__.split(".")[0])
assert major >= 5, "redis-py %s is older than 5" % redis.__version__
print("redis-py", redis.__version__, "protocol", proto)
# "default": what redis.Redis() picks (RESP3 since redis-py 8).
extra = {} if proto == "default" else {"protocol": int(proto)}


def k(s):
    return "%s:%s" % (s, p)


# Connecting sends CLIENT SETINFO LIB-NAME / LIB-VER (redis-py 5+).
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10,
                socket_connect_timeout=5, decode_responses=True, **extra)
assert r.ping() is True
assert r.client_setinfo("LIB-NAME", "aster-ops-test") is True
cid = r.client_id()

# strings
assert r.set(k("s"), "hello") is True
assert r.get(k("s")) == "hello"
assert r.append(k("s"), " world") == 11
assert r.strlen(k("s")) == 11
assert r.getrange(k("s"), 0, 4) == "hello"
assert r.incr(k("n")) == 1
assert r.incrby(k("n"), 41) == 42
assert r.decr(k("n")) == 41
assert r.setnx(k("s"), "x") is False
assert r.get(k("missing")) is None

# expire / ttl
assert r.set(k("e"), "v", ex=100) is True
assert 0 < r.ttl(k("e")) <= 100
assert r.persist(k("e")) is True
assert r.ttl(k("e")) == -1
assert r.expire(k("e"), 50) is True
assert 0 < r.ttl(k("e")) <= 50
assert r.pexpire(k("e"), 100000) is True
assert 0 < r.pttl(k("e")) <= 100000
assert r.ttl(k("missing")) == -2

# hashes
assert r.hset(k("h"), mapping={"a": "1", "b": "2"}) == 2
assert r.hget(k("h"), "a") == "1"
assert r.hgetall(k("h")) == {"a": "1", "b": "2"}
assert r.hincrby(k("h"), "a", 5) == 6
assert r.hexists(k("h"), "b") is True
assert r.hdel(k("h"), "b") == 1
assert r.hlen(k("h")) == 1
assert r.hkeys(k("h")) == ["a"]

# lists
assert r.rpush(k("l"), "a", "b", "c") == 3
assert r.lpush(k("l"), "z") == 4
assert r.lrange(k("l"), 0, -1) == ["z", "a", "b", "c"]
assert r.lpop(k("l")) == "z"
assert r.rpop(k("l")) == "c"
assert r.llen(k("l")) == 2
assert r.lindex(k("l"), 1) == "b"

# sets
assert r.sadd(k("set"), "a", "b", "c") == 3
assert r.smembers(k("set")) == {"a", "b", "c"}
assert r.sismember(k("set"), "b")
assert r.srem(k("set"), "a") == 1
assert r.scard(k("set")) == 2

# sorted sets
assert r.zadd(k("z"), {"a": 1, "b": 2, "c": 3}) == 3
assert r.zrange(k("z"), 0, -1, withscores=True) == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
assert r.zscore(k("z"), "b") == 2.0
assert r.zincrby(k("z"), 10, "a") == 11.0
assert r.zrank(k("z"), "a") == 2
assert r.zcard(k("z")) == 3
assert r.zrangebyscore(k("z"), 2, 3) == ["b", "c"]

# multi-key commands over several servers / slots
keys = [k("%dm" % i) for i in range(20)]
assert r.mset({key: "v%d" % i for i, key in enumerate(keys)}) is True
assert r.mget(keys + [k("nope")]) == ["v%d" % i for i in range(20)] + [None]
assert r.exists(*keys) == 20
assert r.delete(*keys) == 20
assert r.exists(*keys) == 0

# a non-transactional pipeline of 100 commands
pipe = r.pipeline(transaction=False)
for i in range(50):
    pipe.set(k("%dp" % i), i)
for i in range(50):
    pipe.get(k("%dp" % i))
res = pipe.execute()
assert len(res) == 100, res
assert res[:50] == [True] * 50, res[:50]
assert res[50:] == [str(i) for i in range(50)], res[50:]

# errors: refused by the proxy, and from a backend; the connection stays
try:
    r.execute_command("KEYS", "*")
    raise AssertionError("KEYS did not raise")
except redis.ResponseError as e:
    assert "not supported" in str(e), e
try:
    r.lpush(k("s"), "x")
    raise AssertionError("LPUSH on a string did not raise")
except redis.ResponseError as e:
    assert "WRONGTYPE" in str(e), e
pipe = r.pipeline(transaction=False)
pipe.set(k("q"), 1)
pipe.execute_command("KEYS", "*")
pipe.get(k("q"))
res = pipe.execute(raise_on_error=False)
assert res[0] is True and isinstance(res[1], redis.ResponseError) and res[2] == "1", res
assert r.get(k("s")) == "hello world"
assert r.client_id() == cid, "the errors cost the connection"
print("ALL OK")
"#;

/// Runs the redis-py script against the proxy on `port` with `protocol`
/// ("2", or "default" for redis-py's own default); panics with its output
/// unless it prints ALL OK. Returns false if python3 is missing.
fn exercise_redis_py(port: u16, prefix: &str, protocol: &str) -> bool {
    if !python_available() {
        return false;
    }
    let dir = TempDir::new("ops-py");
    let script = dir.join("client.py");
    fs::write(&script, REDIS_PY_SCRIPT).expect("write script");
    let (out_path, err_path) = (dir.join("out"), dir.join("err"));
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(prefix)
        .arg(protocol)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("out"))
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("run python3");
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        !err.contains("No module named 'redis'"),
        "redis-py is not installed: scripts/test.sh installs it \
         (python3 -m pip install 'redis>=5')\n{err}"
    );
    assert!(
        status.is_some_and(|s| s.success()) && out.contains("ALL OK"),
        "redis-py through the proxy on {port} failed ({status:?}):\nstdout:\n{out}\nstderr:\n{err}"
    );
    true
}

#[test]
fn redis_crate_client_through_sharding_proxy() {
    let s = Shards::start(3);
    exercise_redis_crate(s.proxy.port(), "rs");
    assert_landed_on_backends(&s, "rs");
}

/// What a client library wrote with `tag` is really on the backends: the
/// string on its one server, the pipeline's keys spread over all three.
fn assert_landed_on_backends(s: &Shards, tag: &str) {
    let key = format!("s:{tag}");
    let at = s.holder(&key);
    assert_eq!(
        s.servers[at].client().cmd(&["GET", &key]),
        Reply::bulk("hello world")
    );
    let prefix = format!("p:{tag}");
    let spread = s
        .servers
        .iter()
        .filter(|srv| keys_with(srv, &prefix) > 0)
        .count();
    assert_eq!(spread, 3, "pipeline keys should land on every server");
}

#[test]
fn redis_py_client_through_sharding_proxy() {
    let s = Shards::start(3);
    if !exercise_redis_py(s.proxy.port(), "py", "2") {
        return;
    }
    assert_landed_on_backends(&s, "py");
}

#[test]
fn client_libraries_through_cluster_proxy() {
    let cluster = RedisCluster::start(3, 0);
    let conf = cluster.proxy_conf(&[]);
    let proxy = Proxy::start(&conf.to_toml());
    exercise_redis_crate(proxy.port(), "rsc");
    let owner = cluster.key_owner("s:rsc");
    assert_eq!(
        cluster.cmd(owner, &["GET", "s:rsc"]),
        Reply::bulk("hello world")
    );
    let python = exercise_redis_py(proxy.port(), "pyc", "2");
    if python {
        let owner = cluster.key_owner("s:pyc");
        assert_eq!(
            cluster.cmd(owner, &["GET", "s:pyc"]),
            Reply::bulk("hello world")
        );
    }
    // The pipeline keys are spread over all three masters.
    let spread = (0..cluster.len())
        .filter(|&n| (0..50).any(|i| cluster.key_owner(&format!("{i}p:rsc")) == n))
        .count();
    assert_eq!(spread, 3);
    for i in 0..50 {
        let key = format!("{i}p:rsc");
        let owner = cluster.key_owner(&key);
        assert_eq!(
            cluster.cmd(owner, &["GET", &key]),
            Reply::bulk(&i.to_string())
        );
    }
}

/// redis-py 8 made RESP3 its default: `redis.Redis()` opens every connection
/// with HELLO 3 and gives up on any error. aster answers HELLO 3 with
/// NOPROTO (it speaks RESP2 only), so an application that does not pass
/// `protocol=2` cannot connect at all.
#[test]
fn redis_py_default_protocol_client_connects() {
    let s = Shards::start(2);
    exercise_redis_py(s.proxy.port(), "pyd", "default");
}
