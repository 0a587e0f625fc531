//! `redis-server`: one server on 127.0.0.1 with no persistence, in its own
//! temp dir, plus `redis-cli` and `redis` crate connections to any port.
//!
//! Lifecycle: `RedisServer::start*` spawns the server and returns once it
//! answers PING; the value owns the process (`kill`, `pause`/`resume` by
//! signal to its pid, `restart` on the same port) and kills and reaps it on
//! drop. Its port stays reserved for the whole test process.
//! `start_unix` listens on a unix socket in its temp dir as well (the port
//! stays, so what asks the server directly works the same).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{CLIENT_TIMEOUT, Client, Reply};
use super::ports::{TempDir, free_port, local_addr, poll_until};
use super::process::{Owned, START_TIMEOUT, signal, tail};

pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    /// Also listening on `sock_path()`.
    unix: bool,
    process: Owned,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--maxclients", "50"]`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::start_on(args, free_port)
    }

    /// Starts with extra arguments on a port from `pick_port`. A port can be
    /// taken between picking and binding: each retry takes a new port and a
    /// fresh directory (no state of a failed start is carried over).
    pub fn start_on(args: &[&str], pick_port: impl Fn() -> u16) -> RedisServer {
        RedisServer::start_as(args, pick_port, false)
    }

    /// Starts listening on a unix socket (`sock_path()`, mode 700) too.
    pub fn start_unix() -> RedisServer {
        RedisServer::start_as(&[], free_port, true)
    }

    fn start_as(args: &[&str], pick_port: impl Fn() -> u16, unix: bool) -> RedisServer {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = pick_port();
            let dir = TempDir::new("redis");
            match spawn_redis(port, &args, &dir, unix) {
                Ok(process) => {
                    return RedisServer {
                        port,
                        args,
                        unix,
                        process,
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
        local_addr(self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The unix socket of a server started with `start_unix`.
    pub fn sock_path(&self) -> PathBuf {
        assert!(self.unix, "this server was not started with start_unix");
        sock_path(&self.dir)
    }

    /// False once killed (until `restart`).
    pub fn is_running(&self) -> bool {
        self.process.is_held()
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.dir.join("redis.log"), n)
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

    /// True if this server holds `key` (asked directly).
    pub fn has(&self, key: &str) -> bool {
        self.client().cmd(&["EXISTS", key]) == Reply::Int(1)
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self) {
        signal(self.pid(), "CONT");
    }

    /// Kills the server (SIGKILL) and reaps it. Its port stays reserved.
    pub fn kill(&mut self) {
        self.process.kill();
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
            || match spawn_redis(self.port, &self.args, &self.dir, self.unix) {
                Ok(process) => Some(process),
                Err(e) => {
                    last_err = e;
                    None
                }
            },
        );
        match ok {
            Some(process) => self.process = process,
            None => panic!("redis-server did not restart on {}: {last_err}", self.port),
        }
    }
}

fn sock_path(dir: &TempDir) -> PathBuf {
    dir.join("redis.sock")
}

fn spawn_redis(port: u16, args: &[String], dir: &TempDir, unix: bool) -> Result<Owned, String> {
    let log_path = dir.join("redis.log");
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path());
    if unix {
        // Redis replaces a socket file left by a killed predecessor.
        cmd.arg("--unixsocket")
            .arg(sock_path(dir))
            .args(["--unixsocketperm", "700"]);
    }
    let mut process = Owned::spawn(
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(log2),
        "redis-server",
    )?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(format!(
                "redis-server on port {port} exited ({status}):\n{}",
                tail(&log_path, 20)
            ));
        }
        if answers_ping(port) {
            return Ok(process);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "redis-server on port {port} not ready:\n{}",
                tail(&log_path, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True if something on `port` answers an inline PING with +PONG.
fn answers_ping(port: u16) -> bool {
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

/// Runs `redis-benchmark` with `args` (the target and the load), at most
/// 60 s: asserts it succeeded and reported no error; returns its output.
pub fn redis_benchmark(args: &[&std::ffi::OsStr]) -> String {
    let (status, out, err) = super::process::run_bounded(
        Command::new("redis-benchmark").args(args),
        Duration::from_secs(60),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "redis-benchmark {args:?}: {text}"
    );
    assert!(!text.to_lowercase().contains("error"), "{text}");
    text
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
