//! `aster-proxy`, the binary under test: its TOML config (`ClusterConf`), one
//! running proxy (`Proxy`, on a TOML config or on a nutcracker YAML file),
//! one-shot runs of the binary, and `Shards` (redis servers behind a proxy).
//!
//! Lifecycle: `Proxy::start*` writes the config into its own temp dir,
//! spawns the proxy and returns once every listen port (and the stats port,
//! when it has one) accepts. The value owns the process: `terminate` sends
//! SIGTERM to its pid, and `Drop` does the same, then SIGKILL after 2 s,
//! printing the log's tail when a test panics. `Shards` owns its servers and
//! its proxy.
//!
//! Environment:
//! - `ASTER_PROXY_BIN` overrides the binary under test (default: the one cargo
//!   built for this test run), e.g. to run the suite against a saved build.
//! - `ASTER_TEST_VERBOSE` sets the `-v` level of proxies started on a TOML
//!   config (default 3), whose log is printed when a test fails.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::client::{Client, Reply};
use super::placement::{holder, holders, key_per_server};
use super::ports::{TempDir, free_port, local_addr};
use super::process::{Owned, output_text, read_lossy, run_captured, signal, tail};
use super::redis::{RedisServer, redis_cli, redis_conn};
use super::stats::stats_doc;

/// One `[[clusters]]` table. Defaults suit the tests: two workers, ketama over
/// fnv1a_64 with `{}` hash tags, ejection off, 3 s timeouts. Servers get
/// aliases (`redis0`, `redis1`, ...) so keys map to the same server index on
/// every run whatever the ports.
#[derive(Clone, Debug)]
pub struct ClusterConf {
    pub name: String,
    pub port: u16,
    pub servers: Vec<String>,
    /// (key, raw TOML value), in order; `set` replaces an existing key.
    pub fields: Vec<(String, String)>,
}

impl ClusterConf {
    pub fn new(name: &str, servers: &[&RedisServer]) -> ClusterConf {
        let servers = servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}:1 redis{i}", s.addr()))
            .collect();
        ClusterConf::with_server_lines(name, servers)
    }

    /// Servers as raw "host:port[:weight] [alias]" lines.
    pub fn with_server_lines(name: &str, servers: Vec<String>) -> ClusterConf {
        let fields = [
            ("cache_type", "\"redis\""),
            ("thread", "2"),
            ("read_timeout", "3000"),
            ("write_timeout", "3000"),
            ("ping_fail_limit", "0"),
            ("ping_interval", "1000"),
            ("hash_tag", "\"{}\""),
            ("hash", "\"fnv1a_64\""),
            ("distribution", "\"ketama\""),
            ("server_connections", "1"),
        ];
        ClusterConf {
            name: name.to_string(),
            port: free_port(),
            servers,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Sets a field to a raw TOML value (`"\"md5\""`, `"200"`).
    pub fn set(mut self, key: &str, value: &str) -> ClusterConf {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = value.to_string(),
            None => self.fields.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Removes a field (to test defaults).
    pub fn unset(mut self, key: &str) -> ClusterConf {
        self.fields.retain(|(k, _)| k != key);
        self
    }

    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[clusters]]\n");
        s += &format!("name = \"{}\"\n", self.name);
        s += &format!("listen_addr = \"127.0.0.1:{}\"\n", self.port);
        let servers: Vec<String> = self.servers.iter().map(|l| format!("\"{l}\"")).collect();
        s += &format!("servers = [{}]\n", servers.join(", "));
        for (k, v) in &self.fields {
            s += &format!("{k} = {v}\n");
        }
        s
    }
}

/// The TOML for several clusters in one file.
pub fn config_toml(clusters: &[ClusterConf]) -> String {
    clusters
        .iter()
        .map(ClusterConf::to_toml)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ports of every listen address of a config: `listen_addr = "host:port"`
/// lines of a TOML file, `listen: host:port` lines of a nutcracker YAML file.
pub fn listen_ports(config: &str) -> Vec<u16> {
    config
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = match line.strip_prefix("listen_addr") {
                Some(rest) => rest.trim_start().strip_prefix('=')?,
                None => line.strip_prefix("listen:")?,
            };
            let addr = rest.trim().trim_matches('"');
            addr.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

/// The binary under test.
pub fn proxy_bin() -> OsString {
    std::env::var_os("ASTER_PROXY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_aster-proxy").into())
}

/// Runs the binary to completion with `args` (stdin closed, 10 s limit).
pub fn run_proxy_bin(args: &[&str]) -> Output {
    run_captured(
        Command::new(proxy_bin()).args(args),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("aster-proxy {args:?} did not exit within 10 s"))
}

/// `aster-proxy --version`, e.g. "aster-proxy 0.1.0".
pub fn proxy_version() -> String {
    let out = run_proxy_bin(&["--version"]);
    assert!(out.status.success(), "--version: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running `aster-proxy`; stdout and stderr go to a log file whose tail is
/// printed when a test panics while the proxy is alive.
pub struct Proxy {
    process: Owned,
    ports: Vec<u16>,
    stats: Option<u16>,
    config: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Proxy {
    /// Starts `aster-proxy -c FILE -v 3` on a TOML config and waits (10 s at
    /// most) until every `listen_addr` of the config accepts connections.
    pub fn start(toml: &str) -> Proxy {
        Proxy::start_with_args(toml, &[])
    }

    /// Like `start` with extra command-line arguments.
    pub fn start_with_args(toml: &str, args: &[&str]) -> Proxy {
        let dir = TempDir::new("proxy");
        let config = dir.join("aster.toml");
        fs::write(&config, toml).expect("write config");
        // "-v 3" unless the caller passes its own level (ASTER_TEST_VERBOSE
        // raises it for a debugging run).
        let level = std::env::var("ASTER_TEST_VERBOSE").unwrap_or_else(|_| "3".into());
        let mut all: Vec<String> = if args.iter().any(|a| *a == "-v" || *a == "--verbose") {
            Vec::new()
        } else {
            vec!["-v".into(), level]
        };
        all.extend(args.iter().map(|a| a.to_string()));
        Proxy::launch(dir, config, toml, None, &all)
    }

    /// Like `start_with_args` at log level info (reload progress and the
    /// listeners are logged at info).
    pub fn start_at_info(toml: &str, args: &[&str]) -> Proxy {
        let mut all = vec!["-v", "info"];
        all.extend_from_slice(args);
        Proxy::start_with_args(toml, &all)
    }

    /// Starts on a nutcracker YAML file written from `yml`, as twemproxy is
    /// run: `-c FILE.yml -s STATS -a 127.0.0.1 -i 100 ARGS...` (no `-v`: the
    /// default level unless `args` says otherwise).
    pub fn start_yml(yml: &str, args: &[&str]) -> Proxy {
        let dir = TempDir::new("proxy-yml");
        let config = dir.join("nutcracker.yml");
        fs::write(&config, yml).expect("write yml");
        Proxy::start_yml_in(dir, config, yml, args)
    }

    /// Like `start_yml` on an existing YAML file.
    pub fn start_yml_file(config: &Path, args: &[&str]) -> Proxy {
        let yml =
            fs::read_to_string(config).unwrap_or_else(|e| panic!("read {}: {e}", config.display()));
        Proxy::start_yml_in(TempDir::new("proxy-yml"), config.to_path_buf(), &yml, args)
    }

    fn start_yml_in(dir: TempDir, config: PathBuf, yml: &str, args: &[&str]) -> Proxy {
        let stats = free_port();
        let mut all: Vec<String> = ["-s", &stats.to_string(), "-a", "127.0.0.1", "-i", "100"]
            .map(String::from)
            .to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        Proxy::launch(dir, config, yml, Some(stats), &all)
    }

    fn launch(
        dir: TempDir,
        config: PathBuf,
        text: &str,
        stats: Option<u16>,
        args: &[String],
    ) -> Proxy {
        let log = dir.join("aster.stderr.log");
        let log_file = File::create(&log).expect("create log");
        let process = Owned::spawn(
            Command::new(proxy_bin())
                .arg("-c")
                .arg(&config)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log"))
                .stderr(log_file),
            "aster-proxy",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ports = listen_ports(text);
        // A YAML config may listen on unix sockets only: its stats port is
        // awaited then.
        assert!(
            !ports.is_empty() || stats.is_some(),
            "config has no listen address:\n{text}"
        );
        let mut proxy = Proxy {
            process,
            ports,
            stats,
            config,
            log,
            dir,
        };
        let mut wait: Vec<u16> = proxy.ports.clone();
        wait.extend(stats);
        proxy
            .process
            .await_ports(&wait, &proxy.log, &format!("; config:\n{text}"));
        proxy
    }

    /// The first listen port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// Every listen port, in config order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn addr(&self) -> String {
        local_addr(self.port())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The stats port of a proxy started on a YAML file.
    pub fn stats_port(&self) -> u16 {
        self.stats
            .expect("this proxy was started without a stats port")
    }

    /// One stats document from the stats port.
    pub fn stats(&self) -> Value {
        stats_doc(self.stats_port())
    }

    /// The proxy's stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.process.is_alive()
    }

    /// A raw RESP client on the first listen port.
    pub fn client(&self) -> Client {
        Client::connect(self.port())
    }

    /// A `redis` crate connection (its handshake included).
    pub fn conn(&self) -> redis::Connection {
        redis_conn(self.port())
    }

    /// `redis-cli` through the proxy.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port(), args)
    }

    /// Writes `bytes` on a fresh connection and reads until `replies` complete
    /// replies arrived, the peer closed, or 5 s passed; returns every byte read.
    pub fn raw(&self, bytes: &[u8], replies: usize) -> Vec<u8> {
        let mut c = self.client();
        c.send(bytes);
        c.read_raw(replies, Duration::from_secs(5))
    }

    /// SIGTERM, then waits up to `grace` for exit; None if it is still running.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.process.terminate(grace)
    }

    /// Waits up to `timeout` for the proxy to exit (after a signal it was sent).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Writes `toml` over the config file, sends SIGHUP and waits (10 s at
    /// most) until the log holds `at_least` more lines containing `done` than
    /// before (e.g. "reload of", once; or a line per worker).
    pub fn reload(&self, toml: &str, done: &str, at_least: usize) {
        let count = || self.log().matches(done).count();
        let before = count();
        fs::write(&self.config, toml).expect("rewrite config");
        self.signal("HUP");
        let ok =
            super::ports::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                (count() >= before + at_least).then_some(())
            });
        assert!(
            ok.is_some(),
            "no {at_least} new {done:?} in the log 10 s after SIGHUP; new config:\n{toml}\nlog:\n{}",
            self.log()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- aster-proxy log (last 200 lines) ----\n{}\n----",
                tail(&self.log, 200)
            );
        }
        // Graceful first (the proxy removes its pid file on SIGTERM); `Owned`
        // kills what is left.
        let _ = self.terminate(Duration::from_secs(2));
    }
}

/// Three-or-so redis servers behind one proxy cluster.
pub struct Shards {
    pub proxy: Proxy,
    pub conf: ClusterConf,
    pub servers: Vec<RedisServer>,
}

impl Shards {
    /// `n` fresh servers behind a proxy with the default `ClusterConf`.
    pub fn start(n: usize) -> Shards {
        Shards::start_with(n, |c| c)
    }

    /// Like `start`, letting the caller adjust the cluster config.
    pub fn start_with(n: usize, adjust: impl FnOnce(ClusterConf) -> ClusterConf) -> Shards {
        let servers: Vec<RedisServer> = (0..n).map(|_| RedisServer::start()).collect();
        let refs: Vec<&RedisServer> = servers.iter().collect();
        let conf = adjust(ClusterConf::new("shards", &refs));
        let proxy = Proxy::start(&conf.to_toml());
        Shards {
            proxy,
            conf,
            servers,
        }
    }

    pub fn client(&self) -> Client {
        self.proxy.client()
    }

    /// Indexes of the servers that hold `key` (checked directly).
    pub fn holders(&self, key: &str) -> Vec<usize> {
        holders(&self.servers, key)
    }

    /// The one server that holds `key`; panics if none or several do.
    pub fn holder(&self, key: &str) -> usize {
        holder(&self.servers, key)
    }

    /// One key per server by index (`prefix0`, `prefix1`, ... probed through
    /// the proxy and deleted again).
    pub fn key_per_server(&self, prefix: &str) -> Vec<String> {
        key_per_server(&mut self.client(), &self.servers, prefix)
    }
}
