//! twemproxy (`nutcracker`), the reference aster must match: one launcher
//! for a pool built from a `ClusterConf` (same servers, hash, distribution)
//! and for a whole nutcracker YAML file, plus one-shot runs (`-t`, `-D`).
//!
//! Lifecycle: `Nutcracker::start*` spawns `nutcracker -c FILE -o LOG -s STATS
//! -a 127.0.0.1 -i 100` and returns once every `listen:` port and the stats
//! port accept. The value owns the process: `stop` or `Drop` kills it by pid
//! and reaps it, printing the log's tail when a test panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::ports::{TempDir, free_port};
use super::process::{Owned, run_captured, tail};
use super::proxy::{ClusterConf, listen_ports};
use super::stats::stats_doc;

pub struct Nutcracker {
    process: Owned,
    ports: Vec<u16>,
    stats: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Nutcracker {
    /// Whether `nutcracker` is on PATH.
    pub fn available() -> bool {
        Command::new("nutcracker")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts one pool with the same servers, hash and distribution as `conf`
    /// (ejection off).
    pub fn start(conf: &ClusterConf) -> Nutcracker {
        let field = |k: &str| {
            conf.fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("config has no {k}"))
        };
        let mut yaml = String::from("pool:\n");
        yaml += &format!("  listen: 127.0.0.1:{}\n", free_port());
        yaml += &format!("  hash: {}\n", field("hash").trim_matches('"'));
        yaml += &format!(
            "  distribution: {}\n",
            field("distribution").trim_matches('"')
        );
        if let Some((_, tag)) = conf.fields.iter().find(|(k, _)| k == "hash_tag") {
            yaml += &format!("  hash_tag: \"{}\"\n", tag.trim_matches('"'));
        }
        yaml += "  redis: true\n  auto_eject_hosts: false\n  timeout: 2000\n  servers:\n";
        for s in &conf.servers {
            yaml += &format!("    - {s}\n");
        }
        Nutcracker::start_yml(&yaml)
    }

    /// Starts on a YAML file written from `yml`.
    pub fn start_yml(yml: &str) -> Nutcracker {
        let dir = TempDir::new("nutcracker");
        let config = dir.join("nutcracker.yml");
        fs::write(&config, yml).expect("write nutcracker config");
        Nutcracker::start_in(dir, &config, yml)
    }

    /// Starts on an existing YAML file.
    pub fn start_file(config: &Path) -> Nutcracker {
        let yml =
            fs::read_to_string(config).unwrap_or_else(|e| panic!("read {}: {e}", config.display()));
        Nutcracker::start_in(TempDir::new("nutcracker"), config, &yml)
    }

    fn start_in(dir: TempDir, config: &Path, yml: &str) -> Nutcracker {
        let log = dir.join("nutcracker.log");
        let stats = free_port();
        let process = Owned::spawn(
            Command::new("nutcracker")
                .arg("-c")
                .arg(config)
                .arg("-o")
                .arg(&log)
                .arg("-p")
                .arg(dir.join("nutcracker.pid"))
                .args(["-s", &stats.to_string(), "-a", "127.0.0.1", "-i", "100"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "nutcracker",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ports = listen_ports(yml);
        assert!(!ports.is_empty(), "nutcracker config has no listen:\n{yml}");
        let mut n = Nutcracker {
            process,
            ports,
            stats,
            log,
            _dir: dir,
        };
        let mut wait = n.ports.clone();
        wait.push(stats);
        n.process
            .await_ports(&wait, &n.log, &format!("; config:\n{yml}"));
        n
    }

    /// The first listen port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn stats_port(&self) -> u16 {
        self.stats
    }

    /// One stats document from the stats port.
    pub fn stats(&self) -> Value {
        stats_doc(self.stats)
    }

    /// A raw RESP client on the first listen port.
    pub fn client(&self) -> Client {
        Client::connect(self.port())
    }

    /// Kills and reaps it now.
    pub fn stop(&mut self) {
        self.process.kill();
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- nutcracker log (last 40 lines) ----\n{}\n----",
                tail(&self.log, 40)
            );
        }
    }
}

/// Runs `nutcracker ARGS...` to completion (10 s at most).
pub fn run_nutcracker(args: &[&str]) -> Output {
    run_captured(
        Command::new("nutcracker").args(args),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("nutcracker {args:?} did not exit within 10 s"))
}
