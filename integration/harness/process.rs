//! Processes: spawning with a bounded wait, signals and liveness by pid,
//! `Owned`, the child a test value owns, `Paused`, processes held with
//! SIGSTOP until it goes, and CPU time per thread.
//!
//! Lifecycle: the component that spawns a process (`RedisServer`, `Proxy`,
//! `Nutcracker`, ...) keeps it in an `Owned`, whose `Drop` kills (SIGKILL)
//! and reaps it, so a panicking test leaves nothing running; a component that
//! wants a graceful stop calls `terminate` first. Processes a test does not
//! spawn itself (a daemon, a script's orphan) are signalled by pid only,
//! never by name.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::ports::{accepts, poll_until};

/// How long a process gets to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a signal (by name: TERM, KILL, STOP, CONT, HUP) to a process,
/// asserting that `kill` succeeded.
pub fn signal(pid: u32, sig: &str) {
    assert!(signal_quiet(pid, sig), "kill -{sig} {pid} failed");
}

/// Sends a signal, returning whether `kill` succeeded (the process may be
/// gone already).
pub fn signal_quiet(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    })
}

/// A file's text (lossy), empty if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of a file (lossy), for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = read_lossy(path);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The parent pid of `pid`, from /proc.
pub fn ppid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// Live processes whose command line contains `needle` as one argument.
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|a| a == needle.as_bytes()))
                .unwrap_or(false)
        })
        .filter(|&pid| pid != std::process::id() && pid_alive(pid))
        .collect()
}

/// Runs `cmd` to completion with stdin closed and both pipes captured (read
/// in threads, so a chatty child cannot block on a full pipe). None if it did
/// not exit within `limit`: it is killed then.
pub fn run_captured(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let (status, stdout, stderr) = run_bounded(cmd, limit);
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// Spawns `cmd` with stdin closed and both pipes read to the end in threads
/// (so a chatty child cannot block on a full pipe); join the threads for
/// what it wrote once it has exited.
pub fn spawn_captured(cmd: &mut Command) -> (Child, JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out_t = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err_t = drain(child.stderr.take().map(|p| Box::new(p) as _));
    (child, out_t, err_t)
}

/// Like `run_captured`, keeping what a killed child wrote: (exit status or
/// None if killed at `limit`, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<ExitStatus>, Vec<u8>, Vec<u8>) {
    let (mut child, out_t, err_t) = spawn_captured(cmd);
    let status = wait_timeout(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (
        status,
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    )
}

/// stdout and stderr of a finished command, together (lossy).
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A spawned child owned by a test value: stopped and reaped on drop.
pub struct Owned {
    child: Option<Child>,
    what: String,
}

impl Owned {
    /// Spawns `cmd`; `what` names it in failure messages.
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Owned, String> {
        let child = cmd.spawn().map_err(|e| format!("spawn {what}: {e}"))?;
        Ok(Owned {
            child: Some(child),
            what: what.to_string(),
        })
    }

    /// The pid; panics once the process has been reaped.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.what))
            .id()
    }

    /// True until the process has been seen to exit (or was reaped).
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// True until the process was reaped by this value.
    pub fn is_held(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status if it has exited (reaping it), else None.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_timeout(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM, then waits up to `grace`; None if it is still running.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        // Quiet: it may exit between the check above and the signal.
        signal_quiet(self.child.as_ref()?.id(), "TERM");
        self.wait_exit(grace)
    }

    /// SIGKILL and reap (no-op once reaped).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (`START_TIMEOUT` at most) until every port accepts; panics with
    /// the tail of `log` if the process exits first or time runs out.
    pub fn await_ports(&mut self, ports: &[u16], log: &Path, context: &str) {
        for &port in ports {
            let ok = poll_until(START_TIMEOUT, Duration::from_millis(10), || {
                if let Some(status) = self.exited() {
                    panic!(
                        "{} exited during startup ({status}){context}\nlog:\n{}",
                        self.what,
                        tail(log, 40)
                    );
                }
                accepts(port).then_some(())
            });
            assert!(
                ok.is_some(),
                "{} did not accept on port {port} within {START_TIMEOUT:?}{context}\nlog:\n{}",
                self.what,
                tail(log, 40)
            );
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time (user + system, in clock ticks) used so far by the threads of
/// process `pid` whose name starts with `prefix` ("" for all of them).
pub fn cpu_ticks(pid: u32, prefix: &str) -> u64 {
    let mut ticks = 0;
    let mut threads = 0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list threads");
    for task in tasks {
        let path = task.expect("thread entry").path().join("stat");
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        // The name sits in parentheses and may hold spaces; after it,
        // state is the first field, utime and stime the 12th and 13th.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        threads += 1;
    }
    assert!(threads > 0, "no thread named {prefix}* in /proc/{pid}/task");
    ticks
}

/// Processes stopped with SIGSTOP (a hung server: its sockets stay open,
/// nothing answers) until this value goes: `Drop` sends SIGCONT, so a
/// failing test does not leave them stopped (a stopped process is killed
/// all the same, but a resumed one exits the way it would).
pub struct Paused(Vec<u32>);

impl Paused {
    pub fn new(pids: &[u32]) -> Paused {
        for &pid in pids {
            signal(pid, "STOP");
        }
        Paused(pids.to_vec())
    }

    /// SIGCONT now.
    pub fn resume(self) {}
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &pid in &self.0 {
            signal_quiet(pid, "CONT");
        }
    }
}
