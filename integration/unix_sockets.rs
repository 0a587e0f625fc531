//! Unix socket listeners: `listen_addr = "/path 0600"` (TOML) and
//! `listen: /path 0666` (nutcracker YAML), served to redis-cli -s and
//! redis-benchmark -s; the file's mode; removed on exit; a stale file
//! replaced, a live or foreign one refused; reloads that change the path or
//! only the mode.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{
    ClusterConf, Proxy, RedisServer, TempDir, config_toml, poll_until, redis_benchmark, run_bounded,
};

/// A proxy with two clusters over the same servers: one on TCP (which the
/// harness waits for), one on the unix socket `path` with `mode`.
fn start_both(servers: &[&RedisServer], path: &Path, mode: &str) -> (Proxy, ClusterConf) {
    let both = Both::start(servers, path, mode);
    (both.proxy, both.tcp)
}

/// The proxy of `start_both` with its two clusters, "tcp" and "unix", so a
/// test can reload the unix one onto another path or mode.
struct Both {
    proxy: Proxy,
    tcp: ClusterConf,
    unix: ClusterConf,
}

impl Both {
    fn start(servers: &[&RedisServer], path: &Path, mode: &str) -> Both {
        let tcp = ClusterConf::new("tcp", servers);
        let unix = ClusterConf::new("unix", servers);
        let proxy = Proxy::start_at_info(&Both::toml(&tcp, &unix, path, mode), &[]);
        await_socket(path);
        Both { proxy, tcp, unix }
    }

    fn toml(tcp: &ClusterConf, unix: &ClusterConf, path: &Path, mode: &str) -> String {
        let unix_toml = unix.to_toml().replace(
            &format!("listen_addr = \"127.0.0.1:{}\"", unix.port),
            &format!("listen_addr = \"{} {mode}\"", path.display()),
        );
        format!("{}\n{unix_toml}", config_toml(std::slice::from_ref(tcp)))
    }

    /// Moves "unix" to `path` with `mode` and waits for the reload's summary.
    fn reload(&self, path: &Path, mode: &str) {
        self.reload_until(path, mode, "reload of");
    }

    /// Reloads and waits for a log line containing `done`.
    fn reload_until(&self, path: &Path, mode: &str, done: &str) {
        let toml = Both::toml(&self.tcp, &self.unix, path, mode);
        self.proxy.reload(&toml, done, 1);
    }
}

fn await_socket(path: &Path) {
    let up = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_socket())
            .then_some(())
    });
    assert!(up.is_some(), "no socket at {} within 10 s", path.display());
}

fn cli_s(path: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("socket metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_unix_listener_serves_redis_cli_and_redis_benchmark() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let dir = TempDir::new("unix");
    let path = dir.join("aster.sock");
    let (proxy, _) = start_both(&refs, &path, "0600");
    assert_eq!(mode_of(&path), 0o600, "the configured mode");

    assert_eq!(cli_s(&path, &["SET", "via-unix", "1"]), "OK");
    // The same keys, the same servers: what one listener wrote the other reads.
    assert_eq!(proxy.cli(&["GET", "via-unix"]), "1");
    assert_eq!(proxy.cli(&["SET", "via-tcp", "2"]), "OK");
    assert_eq!(cli_s(&path, &["GET", "via-tcp"]), "2");
    assert_eq!(cli_s(&path, &["MGET", "via-unix", "via-tcp"]), "1\n2");

    let text = redis_benchmark(&[
        "-s".as_ref(),
        path.as_os_str(),
        "-q".as_ref(),
        "-n".as_ref(),
        "5000".as_ref(),
        "-c".as_ref(),
        "20".as_ref(),
        "-P".as_ref(),
        "4".as_ref(),
        "-t".as_ref(),
        "set,get".as_ref(),
    ]);
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
}

#[test]
fn the_socket_file_is_removed_on_exit_and_a_stale_one_replaced() {
    let server = RedisServer::start();
    let dir = TempDir::new("unix-life");
    let path = dir.join("s.sock");
    let (mut proxy, _) = start_both(&[&server], &path, "0666");
    assert_eq!(mode_of(&path), 0o666);
    proxy.signal("KILL");
    proxy.wait_exit(Duration::from_secs(5));
    assert!(
        fs::symlink_metadata(&path).is_ok(),
        "a killed proxy leaves its socket file"
    );
    // Nobody listens on the file left behind: the next start replaces it.
    let (mut proxy, _) = start_both(&[&server], &path, "0666");
    assert_eq!(cli_s(&path, &["PING"]), "PONG");
    proxy.terminate(Duration::from_secs(10));
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "a proxy that exits removes its socket file"
    );
}

#[test]
fn a_live_or_foreign_path_is_refused() {
    let server = RedisServer::start();
    let dir = TempDir::new("unix-busy");
    let path = dir.join("busy.sock");
    let (_first, _) = start_both(&[&server], &path, "0600");

    // A second proxy on the same path: refused, the first one untouched.
    let conf = ClusterConf::new("second", &[&server]);
    let toml = conf.to_toml().replace(
        &format!("listen_addr = \"127.0.0.1:{}\"", conf.port),
        &format!("listen_addr = \"{}\"", path.display()),
    );
    let second = dir.join("second.toml");
    fs::write(&second, toml).expect("write config");
    let (status, _, err) = run_bounded(
        Command::new(crate::harness::proxy_bin())
            .arg("-c")
            .arg(&second)
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&err);
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second listener must not start: {err}"
    );
    assert!(
        err.contains(&path.display().to_string()) && err.contains("another process listens"),
        "the error names the path and why: {err}"
    );
    assert_eq!(
        cli_s(&path, &["PING"]),
        "PONG",
        "the first proxy still serves"
    );

    // A file that is not a socket is never removed.
    let plain = dir.join("plain.sock");
    fs::write(&plain, "keep me").expect("write file");
    let toml = fs::read_to_string(&second)
        .expect("read config")
        .replace(&path.display().to_string(), &plain.display().to_string());
    fs::write(&second, toml).expect("write config");
    let (status, _, err) = run_bounded(
        Command::new(crate::harness::proxy_bin())
            .arg("-c")
            .arg(&second)
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&err);
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&plain).expect("still there"), "keep me");
}

/// nutcracker's own form, `listen: /path 0666`, in a redis pool.
#[test]
fn a_nutcracker_pool_listens_on_a_unix_socket() {
    let server = RedisServer::start();
    let dir = TempDir::new("unix-yml");
    let path = dir.join("omega");
    let yml = format!(
        "omega:\n  listen: {} 0666\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n   - {}:1\n",
        path.display(),
        server.addr()
    );
    let _proxy = Proxy::start_yml(&yml, &[]);
    await_socket(&path);
    assert_eq!(mode_of(&path), 0o666);
    assert_eq!(cli_s(&path, &["SET", "k", "v"]), "OK");
    assert_eq!(
        server.cli(&["GET", "k"]),
        "v",
        "stored on the pool's server"
    );
}

/// PING on an open unix connection: its answer, or why there is none.
fn ping(conn: &mut UnixStream) -> Result<String, String> {
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    conn.write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => Err("closed by the proxy".into()),
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) => Err(format!("read: {e}")),
    }
}

#[test]
fn a_reload_onto_an_unusable_path_keeps_the_old_socket() {
    let server = RedisServer::start();
    let dir = TempDir::new("unix-reload-bad");
    let path = dir.join("r.sock");
    let both = Both::start(&[&server], &path, "0666");
    let mut open = UnixStream::connect(&path).expect("connect");
    assert_eq!(ping(&mut open).as_deref(), Ok("+PONG\r\n"));

    // A directory: the file is refused as a whole when it is read.
    let a_dir = dir.join("a-dir");
    fs::create_dir(&a_dir).expect("mkdir");
    both.reload_until(
        &a_dir,
        "0666",
        "reload refused, the running configuration stays",
    );
    let log = both.proxy.log();
    assert!(log.contains("is a directory"), "{log}");
    assert_eq!(ping(&mut open).as_deref(), Ok("+PONG\r\n"), "{log}");
    assert_eq!(cli_s(&path, &["PING"]), "PONG", "{log}");
    // A path where another process listens: that cluster's reload is
    // refused when it cannot bind.
    let taken = dir.join("taken.sock");
    let _other = UnixListener::bind(&taken).expect("bind the other socket");
    both.reload(&taken, "0666");
    let log = both.proxy.log();
    assert_eq!(
        ping(&mut open).as_deref(),
        Ok("+PONG\r\n"),
        "the open client after a reload onto {}",
        taken.display()
    );
    assert_eq!(cli_s(&path, &["PING"]), "PONG", "{log}");
    assert_eq!(mode_of(&path), 0o666);
    assert_eq!(
        log.matches("reload refused for cluster unix").count(),
        1,
        "{}: {log}",
        taken.display()
    );
    assert!(log.contains(&taken.display().to_string()), "{log}");
    assert!(log.contains("0 started, 0 stopped, 1 refused"), "{log}");
    assert!(a_dir.is_dir(), "the directory is left alone");
    assert!(
        UnixStream::connect(&taken).is_ok(),
        "the other process's socket is left alone"
    );
}

#[test]
fn a_mode_only_reload_applies_in_place() {
    let server = RedisServer::start();
    let dir = TempDir::new("unix-reload-mode");
    let path = dir.join("m.sock");
    let both = Both::start(&[&server], &path, "0600");
    assert_eq!(mode_of(&path), 0o600);
    let mut open = UnixStream::connect(&path).expect("connect");
    assert_eq!(ping(&mut open).as_deref(), Ok("+PONG\r\n"));

    both.reload(&path, "0644");
    let log = both.proxy.log();
    assert_eq!(
        ping(&mut open).as_deref(),
        Ok("+PONG\r\n"),
        "the client connected before the reload"
    );
    assert_eq!(mode_of(&path), 0o644);
    assert!(
        log.contains("2 cluster(s) updated in place, 0 started"),
        "{log}"
    );
    assert!(
        log.contains("cluster unix: mode of"),
        "the mode change is logged: {log}"
    );
    assert_eq!(cli_s(&path, &["PING"]), "PONG");
}
