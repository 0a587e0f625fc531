//! For unit tests that drive a worker's state machines against a real
//! `redis-server` in-process: one started on a free 127.0.0.1 port, in its
//! own temp dir, and killed by pid when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct RedisProc {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl RedisProc {
    /// Starts one; panics (failing the test) when it cannot, as the suite
    /// installs redis-server (`scripts/test.sh`).
    pub(crate) fn start(extra: &[&str]) -> RedisProc {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            // Its own dir (and log) whatever the port: two tests may pick one port.
            static STARTED: AtomicUsize = AtomicUsize::new(0);
            let n = STARTED.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "aster-unit-redis-{}-{n}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
                .args(extra)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (scripts/test.sh installs it)");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut r = RedisProc { child, addr, dir };
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                // Ready by its own log: a connect could reach another
                // test's server that took the port first (ours then fails
                // to bind and exits).
                if ready(&r.dir) && TcpStream::connect(addr).is_ok() {
                    return r;
                }
                if let Ok(Some(_)) = r.child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r.stop();
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the server in `dir` logged that it listens.
fn ready(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("redis.log"))
        .is_ok_and(|log| log.contains("Ready to accept connections"))
}
