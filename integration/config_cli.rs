//! Command-line flags, exit codes, and config validation (`-t`).

use std::fs;
use std::process::Output;
use std::time::Duration;

use crate::harness::{ClusterConf, Proxy, Reply, TempDir, config_toml, poll_until, run_proxy_bin};

/// stdout and stderr together, for "the message names X" checks.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn conf(name: &str) -> ClusterConf {
    ClusterConf::with_server_lines(
        name,
        vec![
            "127.0.0.1:6379:1 redis0".into(),
            "127.0.0.1:6380:1 redis1".into(),
        ],
    )
}

/// Runs `aster-proxy -t -c FILE` on `toml`.
fn test_conf(toml: &str) -> Output {
    let dir = TempDir::new("conf");
    let path = dir.join("aster.toml");
    fs::write(&path, toml).expect("write config");
    run_proxy_bin(&["-t", "-c", path.to_str().expect("utf-8 path")])
}

fn assert_bad(toml: &str, must_name: &[&str]) {
    let out = test_conf(toml);
    let msg = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "-t on a bad config should exit 1; output: {msg}\nconfig:\n{toml}"
    );
    assert!(
        must_name.iter().any(|n| msg.contains(n)),
        "message should name one of {must_name:?}: {msg:?}\nconfig:\n{toml}"
    );
}

#[test]
fn test_conf_accepts_a_good_config() {
    let toml = config_toml(&[
        conf("alpha"),
        conf("beta").set("cache_type", "\"redis_cluster\""),
    ]);
    let out = test_conf(&toml);
    assert_eq!(
        out.status.code(),
        Some(0),
        "output: {}\nconfig:\n{toml}",
        text(&out)
    );
    // Long flag names work the same.
    let dir = TempDir::new("conf");
    let path = dir.join("aster.toml");
    fs::write(&path, &toml).expect("write config");
    let out = run_proxy_bin(&[
        "--test-conf",
        "--config",
        path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "output: {}", text(&out));
}

#[test]
fn test_conf_rejects_an_unknown_key() {
    let toml = conf("alpha").set("bogus_setting", "1").to_toml();
    assert_bad(&toml, &["bogus_setting"]);
}

#[test]
fn test_conf_rejects_a_bad_listen_address() {
    for bad in ["127.0.0.1:notaport", "nohost", "127.0.0.1:99999"] {
        let toml: String = conf("alpha")
            .to_toml()
            .lines()
            .map(|l| {
                if l.starts_with("listen_addr") {
                    format!("listen_addr = \"{bad}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_bad(&toml, &["alpha", bad]);
    }
}

#[test]
fn test_conf_rejects_duplicate_cluster_names() {
    let toml = config_toml(&[conf("twin"), conf("twin")]);
    assert_bad(&toml, &["twin"]);
}

#[test]
fn test_conf_rejects_duplicate_listen_ports() {
    let a = conf("first");
    let mut b = conf("second");
    b.port = a.port;
    let toml = config_toml(&[a.clone(), b]);
    assert_bad(&toml, &["second", &a.port.to_string()]);
}

#[test]
fn test_conf_rejects_bad_values() {
    // Each case names what the message must mention.
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            conf("alpha").set("hash", "\"nosuchhash\"").to_toml(),
            vec!["nosuchhash", "hash"],
        ),
        (
            conf("alpha")
                .set("distribution", "\"roundrobin\"")
                .to_toml(),
            vec!["roundrobin", "distribution"],
        ),
        (
            conf("alpha")
                .set("cache_type", "\"memcache_binary\"")
                .to_toml(),
            vec!["memcache_binary", "cache_type"],
        ),
        (
            ClusterConf::with_server_lines("alpha", vec!["not-a-server-line".into()]).to_toml(),
            vec!["not-a-server-line", "alpha"],
        ),
        (
            ClusterConf::with_server_lines("alpha", vec![]).to_toml(),
            vec!["alpha", "servers"],
        ),
        (
            "[[clusters]\nname = ".to_string(),
            vec!["line", "TOML", "toml", "parse"],
        ),
    ];
    for (toml, names) in cases {
        assert_bad(&toml, &names);
    }
}

#[test]
fn bad_config_makes_startup_fail_with_exit_1() {
    let dir = TempDir::new("conf");
    let path = dir.join("aster.toml");
    fs::write(&path, conf("alpha").set("bogus_setting", "1").to_toml()).expect("write config");
    let out = run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "output: {}", text(&out));
    assert!(
        text(&out).contains("bogus_setting"),
        "output: {}",
        text(&out)
    );

    let missing = dir.join("nope.toml");
    let out = run_proxy_bin(&["-c", missing.to_str().expect("utf-8 path")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "missing config file; output: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("nope.toml"),
        "should name the missing file: {}",
        text(&out)
    );
}

#[test]
fn help_and_usage_errors() {
    let out = run_proxy_bin(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out);
    for flag in [
        "--config",
        "--test-conf",
        "--verbose",
        "--output",
        "--version",
        "--help",
    ] {
        assert!(help.contains(flag), "--help should mention {flag}: {help}");
    }
    let out = run_proxy_bin(&["-h"]);
    assert_eq!(out.status.code(), Some(0));

    let out = run_proxy_bin(&["--no-such-flag"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown flag; output: {}",
        text(&out)
    );
    let out = run_proxy_bin(&["-c"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "-c without a value; output: {}",
        text(&out)
    );
}

#[test]
fn output_flag_writes_the_log_file() {
    let server = crate::harness::RedisServer::start();
    let dir = TempDir::new("logs");
    let log = dir.join("aster.log");
    let toml = ClusterConf::new("logged", &[&server]).to_toml();
    let proxy =
        Proxy::start_with_args(&toml, &["-v", "6", "-o", log.to_str().expect("utf-8 path")]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Reply::ok());
    let written = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        fs::metadata(&log).ok().filter(|m| m.len() > 0).map(|_| ())
    });
    assert!(
        written.is_some(),
        "-o {} stayed empty or missing",
        log.display()
    );
    // The log goes to the file, not to stderr.
    let first = fs::read_to_string(&log).expect("read log");
    let first = first.lines().next().unwrap_or_default();
    assert!(
        !proxy.log().contains(first),
        "with -o the log should not also go to stderr: {first:?}"
    );
}

#[test]
fn shipped_default_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/default.toml");
    let out = run_proxy_bin(&["-t", "-c", path]);
    assert_eq!(out.status.code(), Some(0), "{path}: {}", text(&out));
}

/// A nutcracker pool on 127.0.0.1:`port` in twemproxy's own words.
fn nutcracker_pool(port: u16) -> String {
    format!(
        "# twemproxy, whatever the file is called\nalpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n  servers:\n   - 127.0.0.1:6379:1 redis0\n"
    )
}

#[test]
fn nutcracker_files_are_read_whatever_their_name() {
    let dir = TempDir::new("conf-names");
    for name in ["nutcracker.conf", "pool", "twemproxy.txt", "nutcracker.yml"] {
        let path = dir.join(name);
        fs::write(&path, nutcracker_pool(crate::harness::free_port())).expect("write config");
        let out = run_proxy_bin(&["-t", "-c", path.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
    // A mistake in such a file says how it was read and why.
    let path = dir.join("pool");
    fs::write(
        &path,
        nutcracker_pool(crate::harness::free_port()).replace("hash:", "hashh:"),
    )
    .expect("write config");
    let out = run_proxy_bin(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    for part in ["nutcracker YAML", "'alpha:'", "hashh", "pool"] {
        assert!(msg.contains(part), "should name {part:?}: {msg}");
    }
    // And TOML stays TOML under a .yml name, saying so when it is wrong.
    let path = dir.join("aster.yml");
    fs::write(&path, conf("alpha").set("bogus_setting", "1").to_toml()).expect("write config");
    let out = run_proxy_bin(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("read as TOML") && msg.contains("bogus_setting"),
        "{msg}"
    );
}

/// Starts a proxy logging to a file, sends it `sig`, and checks that it
/// died of that signal with a line naming it in the log. It runs in a temp
/// directory with core dumps off, so no core file lands anywhere.
fn dies_of_signal_and_logs_it(sig: &str, number: i32) {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let dir = TempDir::new("fatal");
    let log = dir.join("aster.log");
    let c = conf("fatal");
    let config = dir.join("aster.toml");
    fs::write(&config, c.to_toml()).expect("write config");
    let mut cmd = Command::new(crate::harness::proxy_bin());
    cmd.arg("-c")
        .arg(&config)
        .arg("-o")
        .arg(&log)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn aster-proxy");
    let up = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        crate::harness::accepts(c.port).then_some(())
    });
    if up.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("aster did not listen on {}", c.port);
    }
    crate::harness::signal(child.id(), sig);
    let status = crate::harness::wait_timeout(&mut child, Duration::from_secs(5));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(number),
        "SIG{sig} should end aster by that signal ({status:?}); log:\n{logged}"
    );
    let line = format!("signal {number} ({sig}) received");
    assert!(logged.contains(&line), "log should say {line:?}:\n{logged}");
}

#[test]
fn sigabrt_is_logged_and_kills_with_abrt() {
    dies_of_signal_and_logs_it("ABRT", 6);
}

#[test]
fn sigsegv_is_logged_and_kills_with_segv() {
    dies_of_signal_and_logs_it("SEGV", 11);
}
