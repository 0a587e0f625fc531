//! The config matrix: aster started from every kind of configuration (TOML
//! at its defaults, each numeric or boolean option at 0 and at its limits,
//! health pings on and off, nutcracker files at twemproxy's defaults and
//! under other names, both modes). Each either is refused at once with a
//! message naming file, cluster and key (by `-t` and by a real start alike),
//! or listens, serves a SET/GET, and uses next to no CPU while idle.
//!
//! Servers start once; every serving proxy runs at the same time on its own
//! port, so the idle measurement is one window for all of them.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::RedisCluster;
use crate::harness::{
    Client, RedisServer, Reply, TempDir, accepts, free_port, proxy_bin, run_proxy_bin, tail,
    wait_timeout,
};

/// The largest number twemproxy accepts for any option (a C int).
const MAX_INT: u64 = i32::MAX as u64;
/// Idle window, and the most CPU ticks (1/100 s) one thread may use in it:
/// a thread that spins takes ~150, one that wakes once a second ~0.
const IDLE_WINDOW: Duration = Duration::from_millis(1500);
const MAX_IDLE_TICKS: u64 = 5;

enum Expect {
    /// Starts, listens, serves and idles.
    Serve,
    /// Exits 1 at once; the message names the file and every one of these.
    Refuse(Vec<String>),
}

struct Case {
    label: String,
    /// File name inside the matrix's directory.
    file: String,
    text: String,
    port: u16,
    /// Extra flags (a free stats port for nutcracker files).
    args: Vec<String>,
    expect: Expect,
}

fn refuse(names: &[&str]) -> Expect {
    Expect::Refuse(names.iter().map(|s| s.to_string()).collect())
}

/// A TOML case: one cluster `name` with `fields` (raw TOML values) on top
/// of the required keys only.
fn toml_case(
    label: &str,
    servers: &[String],
    fields: &[(&str, String)],
    extra: &str,
    expect: Expect,
) -> Case {
    let port = free_port();
    let name = label.replace([' ', '=', '.', '/'], "_");
    let mut text = format!(
        "[[clusters]]\nname = \"{name}\"\nlisten_addr = \"127.0.0.1:{port}\"\nservers = [{}]\n",
        servers
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, v) in fields {
        text += &format!("{k} = {v}\n");
    }
    text += extra;
    let expect = match expect {
        Expect::Refuse(mut names) => {
            names.push(format!("cluster '{name}'"));
            Expect::Refuse(names)
        }
        serve => serve,
    };
    Case {
        label: label.into(),
        file: format!("{name}.toml"),
        text,
        port,
        args: Vec::new(),
        expect,
    }
}

/// A nutcracker pool `alpha` with `keys` (YAML lines) and these servers.
fn yaml_case(label: &str, file: &str, servers: &[String], keys: &[&str], expect: Expect) -> Case {
    let port = free_port();
    let mut text = format!("alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n");
    for k in keys {
        text += &format!("  {k}\n");
    }
    text += "  servers:\n";
    for s in servers {
        text += &format!("   - {s}\n");
    }
    let expect = match expect {
        Expect::Refuse(mut names) => {
            names.push("'alpha'".into());
            Expect::Refuse(names)
        }
        serve => serve,
    };
    Case {
        label: label.into(),
        file: file.into(),
        text,
        port,
        args: vec![
            "-s".into(),
            free_port().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
        ],
        expect,
    }
}

fn cases(shards: &[String], seeds: &[String]) -> Vec<Case> {
    let v = |s: &str| s.to_string();
    let n = |x: u64| x.to_string();
    let mut c = Vec::new();
    let t = |label: &str, fields: &[(&str, String)], expect: Expect| {
        toml_case(label, shards, fields, "", expect)
    };
    let rc = |label: &str, fields: &[(&str, String)], expect: Expect| {
        let mut f = vec![("cache_type", v("\"redis_cluster\""))];
        f.extend(fields.iter().cloned());
        toml_case(label, seeds, &f, "", expect)
    };

    // TOML at its defaults: health pings on (3 fails, every second).
    c.push(t("defaults", &[], Expect::Serve));
    c.push(t("pings off", &[("ping_fail_limit", n(0))], Expect::Serve));
    c.push(t(
        "pings off interval 0",
        &[("ping_fail_limit", n(0)), ("ping_interval", n(0))],
        Expect::Serve,
    ));
    c.push(t(
        "pings fastest",
        &[("ping_fail_limit", n(1)), ("ping_interval", n(100))],
        Expect::Serve,
    ));
    c.push(t(
        "pings at the limits",
        &[
            ("ping_fail_limit", n(MAX_INT)),
            ("ping_interval", n(MAX_INT)),
        ],
        Expect::Serve,
    ));
    c.push(t(
        "ping_interval too short",
        &[("ping_fail_limit", n(1)), ("ping_interval", n(99))],
        refuse(&["ping_interval"]),
    ));
    c.push(t(
        "ping_interval past int",
        &[("ping_interval", n(MAX_INT + 1))],
        refuse(&["ping_interval"]),
    ));
    c.push(t(
        "ping_fail_limit past int",
        &[("ping_fail_limit", n(MAX_INT + 1))],
        refuse(&["ping_fail_limit"]),
    ));
    c.push(t("thread 0", &[("thread", n(0))], refuse(&["thread"])));
    c.push(t("thread 256", &[("thread", n(256))], Expect::Serve));
    c.push(t("thread 257", &[("thread", n(257))], refuse(&["thread"])));
    c.push(t(
        "server_connections 0",
        &[("server_connections", n(0))],
        refuse(&["server_connections"]),
    ));
    c.push(t(
        "server_connections 64 preconnect",
        &[("server_connections", n(64)), ("preconnect", v("true"))],
        Expect::Serve,
    ));
    c.push(t(
        "server_connections 65",
        &[("server_connections", n(65))],
        refuse(&["server_connections"]),
    ));
    c.push(t(
        "timeouts 0",
        &[("read_timeout", n(0)), ("write_timeout", n(0))],
        Expect::Serve,
    ));
    c.push(t(
        "timeouts at the limit",
        &[("read_timeout", n(MAX_INT)), ("write_timeout", n(MAX_INT))],
        Expect::Serve,
    ));
    c.push(t(
        "read_timeout past int",
        &[("read_timeout", n(MAX_INT + 1))],
        refuse(&["read_timeout"]),
    ));
    c.push(t(
        "write_timeout huge",
        &[("write_timeout", n(i64::MAX as u64))],
        refuse(&["write_timeout"]),
    ));
    c.push(t("backlog 0", &[("backlog", n(0))], Expect::Serve));
    c.push(t(
        "backlog at the limit",
        &[("backlog", n(MAX_INT))],
        Expect::Serve,
    ));
    c.push(t(
        "backlog past int",
        &[("backlog", n(MAX_INT + 1))],
        refuse(&["backlog"]),
    ));
    c.push(t(
        "limits and clients at 0",
        &[
            ("max_clients", n(0)),
            ("client_output_limit", n(0)),
            ("slowlog_max_len", n(0)),
            ("slowlog_log_slower_than", v("-1")),
            ("backend_db", n(0)),
        ],
        Expect::Serve,
    ));
    c.push(t(
        "limits at the top",
        &[
            ("max_clients", n(i64::MAX as u64)),
            ("client_output_limit", n(i64::MAX as u64)),
            ("max_bulk_len", n(i64::MAX as u64)),
            ("max_multibulk_len", n(i64::MAX as u64)),
            ("max_inline_len", n(i64::MAX as u64)),
            ("slowlog_max_len", n(1 << 20)),
            ("slowlog_log_slower_than", n(0)),
            ("backend_db", n(15)),
            ("tcpkeepalive", v("true")),
        ],
        Expect::Serve,
    ));
    c.push(t(
        "max_bulk_len 0",
        &[("max_bulk_len", n(0))],
        refuse(&["max_bulk_len"]),
    ));
    c.push(t(
        "slowlog_max_len past the limit",
        &[("slowlog_max_len", n((1 << 20) + 1))],
        refuse(&["slowlog_max_len"]),
    ));
    c.push(t(
        "backend_db past int",
        &[("backend_db", n(MAX_INT + 1))],
        refuse(&["backend_db"]),
    ));
    // Weights: twemproxy's int limit, and the ring size behind it.
    let weighted = |w: u64| vec![format!("{}:{w} a", shards[0]), format!("{}:1 b", shards[1])];
    c.push(toml_case(
        "weight at the limit ketama",
        &weighted(MAX_INT),
        &[],
        "",
        Expect::Serve,
    ));
    c.push(toml_case(
        "weight 4000000000",
        &weighted(4_000_000_000),
        &[],
        "",
        refuse(&["servers", "weight"]),
    ));
    c.push(toml_case(
        "weight at the limit modula",
        &weighted(MAX_INT),
        &[("distribution", v("\"modula\""))],
        "",
        refuse(&["servers", "ring entries"]),
    ));
    c.push(toml_case(
        "weights summing past u32 ketama",
        &[
            format!("{}:{MAX_INT} a", shards[0]),
            format!("{}:{MAX_INT} b", shards[1]),
            "127.0.0.1:1:2 c".into(),
        ],
        &[],
        "",
        refuse(&["servers"]),
    ));
    c.push(toml_case(
        "weight 1000 modula",
        &weighted(1000),
        &[("distribution", v("\"modula\""))],
        "",
        Expect::Serve,
    ));
    // The stats port: rendered on demand, so even 1 ms costs nothing idle.
    let stats = |interval: u64| {
        format!(
            "[stats]\nlisten_addr = \"127.0.0.1:{}\"\ninterval = {interval}\n",
            free_port()
        )
    };
    c.push(toml_case(
        "stats every ms",
        shards,
        &[],
        &stats(1),
        Expect::Serve,
    ));
    let mut st0 = toml_case("stats interval 0", shards, &[], &stats(0), Expect::Serve);
    st0.expect = refuse(&["stats", "interval"]);
    c.push(st0);
    // Redis Cluster mode.
    c.push(rc("cluster defaults", &[], Expect::Serve));
    c.push(rc(
        "cluster fetch 1 replicas",
        &[("fetch", n(1)), ("read_from_slave", v("true"))],
        Expect::Serve,
    ));
    c.push(rc(
        "cluster fetch at the limit",
        &[("fetch", n(MAX_INT / 1000))],
        Expect::Serve,
    ));
    c.push(rc(
        "cluster fetch 0",
        &[("fetch", n(0))],
        refuse(&["fetch"]),
    ));
    c.push(rc(
        "cluster fetch past the limit",
        &[("fetch", n(MAX_INT / 1000 + 1))],
        refuse(&["fetch"]),
    ));
    // A TOML file under another name is still TOML.
    let mut conf = t("toml named conf", &[], Expect::Serve);
    conf.file = "aster.conf".into();
    c.push(conf);

    // nutcracker files: twemproxy's defaults (no auto_eject_hosts: no pings).
    let lines = |w: u64| vec![format!("{}:{w} a", shards[0]), format!("{}:1 b", shards[1])];
    for file in ["nutcracker.yml", "nutcracker.conf", "pool"] {
        c.push(yaml_case(
            &format!("nutcracker defaults as {file}"),
            file,
            &lines(1),
            &[],
            Expect::Serve,
        ));
    }
    c.push(yaml_case(
        "nutcracker ejection fastest",
        "eject.yml",
        &lines(1),
        &[
            "auto_eject_hosts: true",
            "server_retry_timeout: 1",
            "server_failure_limit: 1",
            "timeout: 0",
            "backlog: 0",
        ],
        Expect::Serve,
    ));
    c.push(yaml_case(
        "nutcracker weight 4000000000",
        "weight.yml",
        &lines(4_000_000_000),
        &[],
        refuse(&["servers"]),
    ));
    for key in [
        "timeout",
        "backlog",
        "redis_db",
        "server_connections",
        "server_retry_timeout",
        "server_failure_limit",
        "client_connections",
    ] {
        c.push(yaml_case(
            &format!("nutcracker {key} past int"),
            &format!("{key}.conf"),
            &lines(1),
            &[&format!("{key}: {}", MAX_INT + 1)],
            refuse(&[key]),
        ));
    }
    c
}

/// A proxy started by the matrix: killed and reaped on drop.
struct Running {
    label: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU ticks (utime + stime) of every thread of `pid`, by thread id.
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ...": comm may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of the line are the 12th and 13th after comm.
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let tid = t.file_name().to_string_lossy().parse().unwrap_or(0);
        out.push((tid, name, ticks));
    }
    out
}

/// Runs the proxy with `args` for `limit` at most (killed after that, as a
/// refusal should take no time); its exit code (None if killed) and output.
fn run_briefly(args: &[&str], log: &std::path::Path, limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(proxy_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(log).expect("create log"))
        .stderr(File::create(log.with_extension("err")).expect("create log"))
        .spawn()
        .expect("spawn aster-proxy");
    let code = match wait_timeout(&mut child, limit) {
        Some(st) => st.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let text = [log.to_path_buf(), log.with_extension("err")]
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    (code, text)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn config_matrix_refuses_clearly_or_serves_and_idles() {
    let s0 = RedisServer::start();
    let s1 = RedisServer::start();
    let cluster = RedisCluster::start(3, 0);
    let shards = vec![s0.addr(), s1.addr()];
    let seeds = vec![cluster.addr(0), cluster.addr(1)];
    let dir = TempDir::new("matrix");
    let mut failures = Vec::new();
    let mut running = Vec::new();

    for case in cases(&shards, &seeds) {
        let path = dir.join(&case.file);
        fs::write(&path, &case.text).expect("write config");
        let path_s = path.to_str().expect("utf-8 path").to_string();
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let mut t_args = vec!["-t", "-c", &path_s];
        t_args.extend(&args);
        let checked = run_proxy_bin(&t_args);
        let msg = output_text(&checked);
        match &case.expect {
            Expect::Refuse(names) => {
                // A real start must refuse just as fast as -t.
                let mut run_args = vec!["-c", path_s.as_str()];
                run_args.extend(&args);
                let log = dir.join(&format!("{}.refused.log", case.file));
                let (code, run_msg) = run_briefly(&run_args, &log, Duration::from_secs(3));
                for (how, code, text) in [
                    ("-t", checked.status.code(), &msg),
                    ("start", code, &run_msg),
                ] {
                    let missing: Vec<&String> = names
                        .iter()
                        .chain([&case.file])
                        .filter(|n| !text.contains(n.as_str()))
                        .collect();
                    if code != Some(1) || !missing.is_empty() {
                        failures.push(format!(
                            "{}: {how} should refuse (exit 1) naming {missing:?}; got {code:?}: {}",
                            case.label,
                            text.lines().take(3).collect::<Vec<_>>().join(" | ")
                        ));
                    }
                }
            }
            Expect::Serve => {
                if checked.status.code() != Some(0) {
                    failures.push(format!(
                        "{}: -t should accept; got {:?}: {msg}\n{}",
                        case.label,
                        checked.status.code(),
                        case.text
                    ));
                    continue;
                }
                let log = dir.join(&format!("{}.log", case.file));
                let child = Command::new(proxy_bin())
                    .args(["-c", &path_s, "-v", "3"])
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(File::create(&log).expect("create log"))
                    .spawn()
                    .expect("spawn aster-proxy");
                running.push(Running {
                    label: case.label.clone(),
                    child,
                    port: case.port,
                    log,
                });
            }
        }
    }

    // Every proxy listens and serves a SET/GET.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut serving = Vec::new();
    for mut r in running {
        let up = loop {
            if let Ok(Some(st)) = r.child.try_wait() {
                break Err(format!("exited during startup ({st})"));
            }
            if accepts(r.port) {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err("does not listen".into());
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Err(e) = up {
            failures.push(format!("{}: {e}; log:\n{}", r.label, tail(&r.log, 20)));
            continue;
        }
        let mut c = Client::connect(r.port);
        let key = format!("matrix:{}", r.port);
        let set = c.cmd(&["SET", &key, "v"]);
        let get = c.cmd(&["GET", &key]);
        if set != Reply::ok() || get != Reply::bulk("v") {
            failures.push(format!(
                "{}: SET/GET gave {set:?} / {get:?}; log:\n{}",
                r.label,
                tail(&r.log, 20)
            ));
        }
        drop(c);
        serving.push(r);
    }

    // Then nothing to do: every thread of every proxy stays (nearly) idle.
    thread::sleep(Duration::from_millis(300));
    let before: Vec<_> = serving.iter().map(|r| thread_ticks(r.child.id())).collect();
    thread::sleep(IDLE_WINDOW);
    for (r, before) in serving.iter().zip(before) {
        for (tid, name, ticks) in thread_ticks(r.child.id()) {
            let was = before.iter().find(|(t, _, _)| *t == tid).map_or(0, |b| b.2);
            let used = ticks.saturating_sub(was);
            if used > MAX_IDLE_TICKS {
                failures.push(format!(
                    "{}: thread {name} ({tid}) used {used} CPU ticks in {IDLE_WINDOW:?} idle",
                    r.label
                ));
            }
        }
    }
    for mut r in serving {
        crate::harness::signal(r.child.id(), "TERM");
        if wait_timeout(&mut r.child, Duration::from_secs(5)).is_none() {
            failures.push(format!("{}: no exit within 5 s of SIGTERM", r.label));
        }
    }
    drop(cluster);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
