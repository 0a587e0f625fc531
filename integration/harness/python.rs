//! Python clients (redis-py): a script run with `python3` under a time limit.
//!
//! Lifecycle: `run_python` writes the script into its own temp dir, runs it
//! to completion, and kills it if it outlives the limit; nothing outlives
//! the call.

use std::fs;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::ports::TempDir;
use super::process::run_bounded;

/// What a script did: its exit status (None if it was killed at the time
/// limit) and its output.
pub struct PythonRun {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl PythonRun {
    /// Exited 0 and printed `marker` (e.g. "ALL OK").
    pub fn passed(&self, marker: &str) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stdout.contains(marker)
    }
}

/// True when python3 runs; prints a loud note otherwise.
pub fn python_available() -> bool {
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

/// Runs `script` with `python3 SCRIPT ARGS...`, killing it after `limit`.
pub fn run_python(script: &str, args: &[&str], limit: Duration) -> PythonRun {
    let dir = TempDir::new("python");
    let path = dir.join("script.py");
    fs::write(&path, script).expect("write script");
    let mut cmd = Command::new("python3");
    cmd.arg(&path).args(args);
    let (status, stdout, stderr) = run_bounded(&mut cmd, limit);
    PythonRun {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
