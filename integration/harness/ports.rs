//! Ports, temp dirs and polling: the ground every other component stands on.
//!
//! Lifecycle: a port handed out here is never handed out again in this test
//! process (the set lives as long as the process); a `TempDir` is created by
//! the component that needs it and removed with its contents when dropped.
//! Nothing here uses a fixed port: tests run in parallel threads.

use std::collections::BTreeSet;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Highest port handed out.
const MAX_PORT: u16 = 55535;
/// Lowest port handed out by `free_port` (the cluster's node ports sit below).
pub const MIN_PORT: u16 = 15000;

/// A range of ports handed out at most once per test process, starting at a
/// per-process offset so that two test runs on one machine rarely probe the
/// same ports.
pub struct PortPool {
    used: Mutex<BTreeSet<u16>>,
    next: AtomicUsize,
}

impl PortPool {
    pub const fn new() -> PortPool {
        PortPool {
            used: Mutex::new(BTreeSet::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// A port of `low..high` not handed out before for which `free` holds
    /// (it checks by binding), or None when the range is exhausted.
    pub fn take(&self, low: u16, high: u16, free: impl Fn(u16) -> bool) -> Option<u16> {
        let span = usize::from(high - low);
        if self.next.load(Ordering::Relaxed) == 0 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as usize)
                .unwrap_or(0);
            let seed = (std::process::id() as usize).wrapping_mul(7919) ^ nanos;
            let _ = self.next.compare_exchange(
                0,
                seed % span + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        for _ in 0..span {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let port = low + (n % span) as u16;
            if self.claim(port, &free) {
                return Some(port);
            }
        }
        None
    }

    /// Marks `port` used if it is not yet and `free` holds.
    pub fn claim(&self, port: u16, free: impl Fn(u16) -> bool) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains(&port) || !free(port) {
            return false;
        }
        used.insert(port);
        true
    }
}

static PORTS: PortPool = PortPool::new();

/// The lowest port of the kernel's ephemeral range (outgoing connections take
/// their local port from it).
pub fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// True if 127.0.0.1:`port` can be bound right now.
pub fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port on 127.0.0.1 that nothing listens on right now, never the same
/// twice in one test process.
///
/// Ports come from below the kernel's ephemeral range when there is room
/// (the many outgoing connections of a test run then cannot be sitting on the
/// port when a server binds it); each candidate is checked by binding it.
/// Falls back to asking the kernel (bind port 0).
pub fn free_port() -> u16 {
    let high = ephemeral_low().clamp(MIN_PORT + 1000, MAX_PORT);
    if let Some(port) = PORTS.take(MIN_PORT, high, bindable) {
        return port;
    }
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if port <= MAX_PORT && PORTS.claim(port, bindable) {
            return port;
        }
    }
    panic!("no free port found");
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// "127.0.0.1:PORT"
pub fn local_addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
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
