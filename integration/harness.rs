//! Test harness: free ports, temp dirs, `redis-server` and `aster-proxy`
//! processes, and a small blocking RESP client for protocol-level checks.
//!
//! Every process started here is owned by a value whose `Drop` stops and
//! reaps it, so a panicking test leaves nothing running. Nothing here uses a
//! fixed port: tests run in parallel threads.
//!
//! Environment:
//! - `ASTER_PROXY_BIN` overrides the binary under test (default: the one cargo
//!   built for this test run), e.g. to run the suite against a saved build.
//! - `ASTER_TEST_VERBOSE` sets the proxies' `-v` level (default 3), whose log
//!   is printed when a test fails.

// Each test module uses a different subset of the helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Highest port handed out.
const MAX_PORT: u16 = 55535;
/// Lowest port handed out.
const MIN_PORT: u16 = 15000;
/// How long a process gets to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read timeout of test clients: a test fails instead of hanging.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Ports and temp dirs
// ---------------------------------------------------------------------------

static USED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// The lowest port of the kernel's ephemeral range (outgoing connections take
/// their local port from it).
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A port on 127.0.0.1 that nothing listens on right now, never the same
/// twice in one test process.
///
/// Ports come from below the kernel's ephemeral range when there is room
/// (the many outgoing connections of a test run then cannot be sitting on the
/// port when a server binds it), starting at a per-process offset so that two
/// test runs on one machine rarely probe the same ports; each candidate is
/// checked by binding it. Falls back to asking the kernel (bind port 0).
pub fn free_port() -> u16 {
    let high = ephemeral_low().clamp(MIN_PORT + 1000, MAX_PORT);
    let span = usize::from(high - MIN_PORT);
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
        let seed = (std::process::id() as usize).wrapping_mul(7919) ^ nanos;
        let _ =
            NEXT_PORT.compare_exchange(0, seed % span + 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = MIN_PORT + (n % span) as u16;
        if try_claim(port) {
            return port;
        }
    }
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if port <= MAX_PORT && try_claim(port) {
            return port;
        }
    }
    panic!("no free port found");
}

fn try_claim(port: u16) -> bool {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    if used.contains(&port) {
        return false;
    }
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        return false;
    }
    used.insert(port);
    true
}

/// A directory removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("aster-it-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Polling and processes
// ---------------------------------------------------------------------------

/// Calls `f` every `every` until it returns `Some`, or `None` after `timeout`.
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// Sends a signal (by name: TERM, KILL, STOP, CONT, HUP) to a process.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    })
}

/// The last `n` lines of a file (lossy), for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Runs `redis-cli -p PORT args...` and returns its stdout without the
/// trailing newline (redis-cli prints raw replies when stdout is not a tty).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_string()
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

/// A `redis-server` on 127.0.0.1 with no persistence, in its own temp dir.
pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--maxclients", "50"]`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let dir = TempDir::new("redis");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        // A port can be taken between free_port() and the bind: retry on a new one.
        for _ in 0..5 {
            let port = free_port();
            match spawn_redis(port, &args, &dir) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        args,
                        child: Some(child),
                        paused: false,
                        dir,
                    };
                }
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("redis-server is not running")
            .id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis-cli` against this server directly.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// A raw RESP client connected to this server directly.
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// A `redis` crate connection to this server directly.
    pub fn conn(&self) -> redis::Connection {
        redis_conn(self.port)
    }

    /// Number of keys on this server.
    pub fn dbsize(&self) -> i64 {
        match self.client().cmd(&["DBSIZE"]) {
            Reply::Int(n) => n,
            other => panic!("DBSIZE on {}: {other:?}", self.addr()),
        }
    }

    /// Every key on this server.
    pub fn keys(&self) -> BTreeSet<String> {
        match self.client().cmd(&["KEYS", "*"]) {
            Reply::Array(items) => items.iter().map(|r| r.text().to_string()).collect(),
            other => panic!("KEYS on {}: {other:?}", self.addr()),
        }
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        signal(self.pid(), "STOP");
        self.paused = true;
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self) {
        signal(self.pid(), "CONT");
        self.paused = false;
    }

    /// Kills the server (SIGKILL) and reaps it. Its port stays reserved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Same as `kill`.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port (killing it first if needed).
    pub fn restart(&mut self) {
        self.kill();
        let mut last_err = String::new();
        let ok = poll_until(
            START_TIMEOUT,
            Duration::from_millis(50),
            || match spawn_redis(self.port, &self.args, &self.dir) {
                Ok(child) => Some(child),
                Err(e) => {
                    last_err = e;
                    None
                }
            },
        );
        match ok {
            Some(child) => self.child = Some(child),
            None => panic!("redis-server did not restart on {}: {last_err}", self.port),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_redis(port: u16, args: &[String], dir: &TempDir) -> Result<Child, String> {
    let log_path = dir.join("redis.log");
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("spawn redis-server: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server on port {port} exited ({status}):\n{}",
                tail(&log_path, 20)
            ));
        }
        if redis_ping(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on port {port} not ready:\n{}",
                tail(&log_path, 20)
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// True if something on `port` answers PING with +PONG.
fn redis_ping(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A `redis` crate connection to 127.0.0.1:`port`, with read/write timeouts.
pub fn redis_conn(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("redis client");
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("redis connection to {port}: {e}"));
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("set_read_timeout");
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))
        .expect("set_write_timeout");
    conn
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

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

/// The ports of every `listen_addr = "host:port"` line of a TOML config.
fn listen_ports(toml: &str) -> Vec<u16> {
    toml.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("listen_addr")?
                .trim_start()
                .strip_prefix('=')?;
            let addr = rest.trim().trim_matches('"');
            addr.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// aster-proxy
// ---------------------------------------------------------------------------

/// The binary under test.
pub fn proxy_bin() -> OsString {
    std::env::var_os("ASTER_PROXY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_aster-proxy").into())
}

/// Runs the binary to completion with `args` (stdin closed, 10 s limit).
pub fn run_proxy_bin(args: &[&str]) -> Output {
    let mut child = Command::new(proxy_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aster-proxy");
    // Read both pipes in threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match wait_timeout(&mut child, Duration::from_secs(10)) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aster-proxy {args:?} did not exit within 10 s");
        }
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// A running `aster-proxy -c FILE -v 3`; stdout and stderr go to a log file
/// whose tail is printed when a test panics while the proxy is alive.
pub struct Proxy {
    child: Option<Child>,
    ports: Vec<u16>,
    config: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Proxy {
    /// Starts the proxy and waits (10 s at most) until every `listen_addr`
    /// of the config accepts connections.
    pub fn start(toml: &str) -> Proxy {
        Proxy::start_with_args(toml, &[])
    }

    /// Like `start` with extra command-line arguments.
    pub fn start_with_args(toml: &str, args: &[&str]) -> Proxy {
        let dir = TempDir::new("proxy");
        let config = dir.join("aster.toml");
        fs::write(&config, toml).expect("write config");
        let log = dir.join("aster.stderr.log");
        let log_file = File::create(&log).expect("create log");
        // "-v 3" unless the caller passes its own level (ASTER_TEST_VERBOSE
        // raises it for a debugging run).
        let level = std::env::var("ASTER_TEST_VERBOSE").unwrap_or_else(|_| "3".into());
        let verbosity: Vec<String> = if args.iter().any(|a| *a == "-v" || *a == "--verbose") {
            Vec::new()
        } else {
            vec!["-v".into(), level]
        };
        let child = Command::new(proxy_bin())
            .arg("-c")
            .arg(&config)
            .args(verbosity)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn aster-proxy");
        let ports = listen_ports(toml);
        assert!(!ports.is_empty(), "config has no listen_addr:\n{toml}");
        let mut proxy = Proxy {
            child: Some(child),
            ports,
            config,
            log,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for &port in &proxy.ports.clone() {
            loop {
                if let Some(status) = proxy
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    proxy.child = None;
                    panic!(
                        "aster-proxy exited during startup ({status}); config:\n{toml}\nlog:\n{}",
                        proxy.log()
                    );
                }
                if accepts(port) {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "aster-proxy did not accept on port {port} within {START_TIMEOUT:?}; config:\n{toml}\nlog:\n{}",
                        proxy.log()
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
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
        format!("127.0.0.1:{}", self.port())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy is not running").id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The proxy's stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
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
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        signal(child.id(), "TERM");
        let status = wait_timeout(child, grace);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
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
        if self.terminate(Duration::from_secs(2)).is_none()
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        self.servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.client().cmd(&["EXISTS", key]) == Reply::Int(1))
            .map(|(i, _)| i)
            .collect()
    }

    /// The one server that holds `key`; panics if none or several do.
    pub fn holder(&self, key: &str) -> usize {
        let h = self.holders(key);
        assert_eq!(
            h.len(),
            1,
            "key {key:?} should be on exactly one backend, found on {h:?}"
        );
        h[0]
    }

    /// Writes `prefix0`, `prefix1`, ... through the proxy until it has one key
    /// on each server, deletes them again, and returns them by server index.
    pub fn key_per_server(&self, prefix: &str) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; self.servers.len()];
        let mut c = self.client();
        for i in 0..10_000 {
            if found.iter().all(Option::is_some) {
                break;
            }
            let key = format!("{prefix}{i}");
            assert_eq!(c.cmd(&["SET", &key, "probe"]), Reply::ok(), "SET {key}");
            let at = self.holder(&key);
            assert_eq!(c.cmd(&["DEL", &key]), Reply::Int(1), "DEL {key}");
            if found[at].is_none() {
                found[at] = Some(key);
            }
        }
        found
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                k.unwrap_or_else(|| panic!("no key with prefix {prefix:?} maps to server {i}"))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// RESP client
// ---------------------------------------------------------------------------

/// A RESP reply (RESP3 maps and sets are flattened into `Array`).
#[derive(Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    Double(String),
    Bool(bool),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    pub fn status(s: &str) -> Reply {
        Reply::Status(s.into())
    }

    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The error text (without the leading '-'), or None.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Status, error or bulk text (lossy for non-UTF-8 bulks: "" then).
    pub fn text(&self) -> &str {
        match self {
            Reply::Status(s) | Reply::Error(s) | Reply::Double(s) => s,
            Reply::Bulk(b) => std::str::from_utf8(b).unwrap_or(""),
            _ => "",
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(b) if b.len() > 200 => write!(f, "${}<{} bytes>", b.len(), b.len()),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "nil"),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::Double(s) => write!(f, ",{s}"),
            Reply::Bool(b) => write!(f, "#{b}"),
        }
    }
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a command given as strings.
pub fn encode_str(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode(&v)
}

/// Parses one reply from the front of `buf`: Ok(None) if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if line_end == 0 {
        return Err("empty reply line".into());
    }
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let after = line_end + 2;
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("bad integer {s:?} in reply"))
    };
    let reply = match buf[0] {
        b'+' => Reply::Status(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Int(int(&line)?),
        b',' => Reply::Double(line),
        b'#' => Reply::Bool(line == "t"),
        b'_' => Reply::Nil,
        b'(' => Reply::Status(line),
        b'$' | b'=' | b'!' => {
            let n = int(&line)?;
            if n < 0 {
                Reply::Nil
            } else {
                let n = n as usize;
                if buf.len() < after + n + 2 {
                    return Ok(None);
                }
                let data = buf[after..after + n].to_vec();
                let consumed = after + n + 2;
                let r = if buf[0] == b'!' {
                    Reply::Error(String::from_utf8_lossy(&data).into_owned())
                } else {
                    Reply::Bulk(data)
                };
                return Ok(Some((r, consumed)));
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int(&line)?;
            if n < 0 {
                Reply::Nil
            } else {
                let count = if matches!(buf[0], b'%' | b'|') {
                    n * 2
                } else {
                    n
                } as usize;
                let mut items = Vec::with_capacity(count.min(1024));
                let mut pos = after;
                for _ in 0..count {
                    match parse_reply(&buf[pos..])? {
                        Some((r, used)) => {
                            items.push(r);
                            pos += used;
                        }
                        None => return Ok(None),
                    }
                }
                if buf[0] == b'|' {
                    // An attribute precedes the real reply: skip it.
                    return match parse_reply(&buf[pos..])? {
                        Some((r, used)) => Ok(Some((r, pos + used))),
                        None => Ok(None),
                    };
                }
                return Ok(Some((Reply::Array(items), pos)));
            }
        }
        other => return Err(format!("bad reply type byte {:?}", other as char)),
    };
    Ok(Some((reply, after)))
}

/// Parses every complete reply in `buf`.
pub fn parse_all(buf: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some((r, used)) = parse_reply(&buf[pos..])? {
        out.push(r);
        pos += used;
    }
    Ok(out)
}

/// A blocking RESP client over a plain `TcpStream`; reads time out after
/// `CLIENT_TIMEOUT` (a test fails instead of hanging).
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    port: u16,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("write timeout");
        Client {
            stream,
            buf: Vec::new(),
            port,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("read timeout");
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(&encode_str(args));
        self.read_reply()
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// Sends one command with binary arguments and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.send(&encode(args));
        self.read_reply()
            .unwrap_or_else(|e| panic!("command on port {}: {e}", self.port))
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to port {}: {e}", self.port));
    }

    /// Writes one encoded command without reading.
    pub fn send_cmd(&mut self, args: &[&str]) {
        self.send(&encode_str(args));
    }

    /// Reads one reply: Err on timeout, close or a malformed reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed (unparsed: {:?})",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads `n` replies, panicking on failure.
    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n)
            .map(|i| {
                self.read_reply()
                    .unwrap_or_else(|e| panic!("reply {i} of {n}: {e}"))
            })
            .collect()
    }

    /// Reads raw bytes until `replies` complete replies are buffered, the peer
    /// closes, or `timeout` passes; returns (and consumes) everything read.
    pub fn read_raw(&mut self, replies: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if parse_all(&self.buf)
                .map(|r| r.len() >= replies)
                .unwrap_or(true)
            {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        std::mem::take(&mut self.buf)
    }

    /// True if the peer closes the connection (EOF or reset) within `timeout`;
    /// bytes that arrive meanwhile are kept for `read_reply`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        let _ = self.stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        result
    }

    /// True if any byte arrives within `timeout` (kept for `read_reply`).
    pub fn readable_within(&mut self, timeout: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        };
        self.stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        got
    }

    /// Sends every command (from a writer thread, so neither side can block
    /// the other on full socket buffers) and reads one reply per command.
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) -> Vec<Reply> {
        let mut bytes = Vec::new();
        for c in cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            bytes.extend_from_slice(&encode_str(&args));
        }
        self.pipeline_raw(bytes, cmds.len())
    }

    /// Sends `bytes` in one `write_all` from a writer thread and reads `n` replies.
    pub fn pipeline_raw(&mut self, bytes: Vec<u8>, n: usize) -> Vec<Reply> {
        let mut writer = self.stream.try_clone().expect("clone stream");
        let port = self.port;
        let t = thread::spawn(move || {
            writer
                .write_all(&bytes)
                .unwrap_or_else(|e| panic!("pipeline write to {port}: {e}"));
        });
        let replies = self.read_replies(n);
        t.join().expect("writer thread");
        replies
    }

    /// Half-closes (no more writes from us).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A command as owned strings, for `Client::pipeline`.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// twemproxy (nutcracker), the reference for key routing
// ---------------------------------------------------------------------------

/// A running `nutcracker` with one pool; None from `start` if it is not installed.
pub struct Nutcracker {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl Nutcracker {
    /// Whether `nutcracker` is on PATH.
    pub fn available() -> bool {
        Command::new("nutcracker")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts one pool with the same servers, hash and distribution as `conf`
    /// (ejection off) and waits until it accepts.
    pub fn start(conf: &ClusterConf) -> Nutcracker {
        let dir = TempDir::new("nutcracker");
        let field = |k: &str| {
            conf.fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("config has no {k}"))
        };
        let port = free_port();
        let mut yaml = String::from("pool:\n");
        yaml += &format!("  listen: 127.0.0.1:{port}\n");
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
        let config = dir.join("nutcracker.yml");
        fs::write(&config, &yaml).expect("write nutcracker config");
        let log = dir.join("nutcracker.log");
        let stats_port = free_port();
        let child = Command::new("nutcracker")
            .arg("-c")
            .arg(&config)
            .arg("-o")
            .arg(&log)
            .arg("-p")
            .arg(dir.join("nutcracker.pid"))
            .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nutcracker");
        let mut n = Nutcracker {
            child: Some(child),
            port,
            log,
            dir,
        };
        let ok = poll_until(START_TIMEOUT, Duration::from_millis(10), || {
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "nutcracker exited ({status}):\n{yaml}\n{}",
                    tail(&n.log, 30)
                );
            }
            accepts(port).then_some(())
        });
        assert!(
            ok.is_some(),
            "nutcracker did not accept on {port}:\n{}",
            tail(&n.log, 30)
        );
        n
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
