//! The operator scripts: scripts/start.sh, reload.sh and stop.sh drive the
//! real binary, in a run directory of the test's own.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::harness::{
    Client, ClusterConf, RedisServer, Reply, TempDir, accepts, config_toml, pid_alive, poll_until,
    ppid_of, proxy_bin, run_bounded, signal_quiet, tail,
};

const POLL: Duration = Duration::from_millis(50);

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

/// Runs a script of the repo with ASTER_BIN set to the binary under test
/// and ASTER_RUN_DIR to `run` (never the repo's run/); (success, stdout,
/// stderr). At most 30 s.
fn run_script(root: &Path, run: &Path, script: &str, args: &[&Path]) -> (bool, String, String) {
    let (status, out, err) = run_bounded(
        Command::new("bash")
            .arg(root.join("scripts").join(script))
            .args(args)
            .env("ASTER_BIN", proxy_bin())
            .env("ASTER_RUN_DIR", run)
            .current_dir(run),
        Duration::from_secs(30),
    );
    (
        status.is_some_and(|s| s.success()),
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
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
        if pid_alive(self.pid) {
            signal_quiet(self.pid, "KILL");
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
    assert!(pid_alive(pid));
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
    assert!(!pid_alive(pid));
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

/// start.sh waits for every listener, unix socket paths included (with a
/// mode, in TOML and in nutcracker's YAML), and stop.sh removes the files.
#[test]
fn start_sh_waits_for_unix_socket_listeners() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let server = RedisServer::start();
    let dir = TempDir::new("ops-unix");
    let toml_sock = dir.join("t.sock");
    let yml_sock = dir.join("y.sock");
    let conf = ClusterConf::new("unixscripted", &[&server]);
    let toml = conf.to_toml().replace(
        &format!("listen_addr = \"127.0.0.1:{}\"", conf.port),
        &format!("listen_addr = \"{} 0660\"", toml_sock.display()),
    );
    let yml = format!(
        "pool:\n  listen: {} 0666 # a comment\n  redis: true\n  servers:\n   - {}:1\n",
        yml_sock.display(),
        server.addr()
    );
    for (name, text, sock) in [("aster.toml", toml, &toml_sock), ("n.yml", yml, &yml_sock)] {
        let run_tmp = TempDir::new("ops-unix-run");
        let run = run_tmp.path().to_path_buf();
        let config = dir.join(name);
        fs::write(&config, text).expect("write config");
        let (ok, out, err) = run_script(&root, &run, "start.sh", &[&config]);
        let pid: Option<u32> = fs::read_to_string(run.join("aster.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let _proxy = pid.map(|pid| ScriptedProxy {
            pid,
            reaper: None,
            log: run.join("aster.log"),
        });
        assert!(ok, "start.sh {name}:\n{out}\n{err}");
        let mut c = UnixStream::connect(sock).expect("the socket accepts");
        c.write_all(b"PING\r\n").expect("write");
        let mut buf = [0u8; 7];
        c.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"+PONG\r\n");
        let (ok, out, err) = run_script(&root, &run, "stop.sh", &[]);
        assert!(ok, "stop.sh {name}:\n{out}\n{err}");
        let gone = poll_until(Duration::from_secs(5), POLL, || {
            (!sock.exists()).then_some(())
        });
        assert!(gone.is_some(), "{} left behind", sock.display());
    }
}

// ---------------------------------------------------------------------------
// The repository stands alone
// ---------------------------------------------------------------------------

/// Code and docs cited a facts file and a design page in a folder beside
/// the repository, which a clone does not have. No tracked file may name
/// that folder; what aster relies on lives in docs/.
#[test]
fn no_tracked_file_cites_files_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("run git ls-files");
    assert!(listed.status.success(), "git ls-files: {listed:?}");
    // Spelled in pieces so this file does not name the folder itself.
    let outside = [["..", "/shared"].concat(), ["/work", "/shared"].concat()];
    let mut found = Vec::new();
    let files: Vec<&[u8]> = listed
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    assert!(
        files.len() > 50,
        "git ls-files listed {} files",
        files.len()
    );
    for path in files {
        let path = String::from_utf8_lossy(path).into_owned();
        // A tracked file deleted in the work tree has nothing to cite.
        let Ok(bytes) = fs::read(root.join(&path)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files cite a folder outside the repository:\n{}",
        found.join("\n")
    );
}
