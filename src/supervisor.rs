//! The supervisor thread: pings every server of the sharding clusters and
//! ejects a server after `ping_fail_limit` consecutive failures, bringing it
//! back when it answers again. Each change publishes one new route table.
//!
//! It uses its own blocking connections with timeouts and never touches
//! worker state: the only thing it shares is the route table pointer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Waker;

use crate::config::{CacheType, ClusterConfig};
use crate::route::{RouteHandle, RouteTable};

/// What the supervisor needs of one cluster.
pub struct Watched {
    pub cfg: Arc<ClusterConfig>,
    pub route: RouteHandle,
    pub wakers: Vec<Arc<Waker>>,
}

struct Health {
    fails: u32,
    live: bool,
    conn: Option<TcpStream>,
}

struct Pinger {
    w: Watched,
    health: Vec<Health>,
    next: Instant,
}

/// The longest a single ping may take, whatever the interval.
const MAX_PING_TIMEOUT: Duration = Duration::from_secs(1);

pub fn spawn(
    watched: Vec<Watched>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let now = Instant::now();
    let mut pingers: Vec<Pinger> = watched
        .into_iter()
        .filter(|w| w.cfg.cache_type == CacheType::Redis && w.cfg.ping_fail_limit > 0)
        .map(|w| Pinger {
            health: (0..w.cfg.servers.len())
                .map(|_| Health {
                    fails: 0,
                    live: true,
                    conn: None,
                })
                .collect(),
            w,
            next: now,
        })
        .collect();
    std::thread::Builder::new()
        .name("aster-supervisor".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                let now = Instant::now();
                for p in pingers.iter_mut().filter(|p| p.next <= now) {
                    p.round();
                    p.next = Instant::now() + p.w.cfg.ping_interval;
                }
                let next = pingers.iter().map(|p| p.next).min();
                let wait = next
                    .map(|n| n.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100));
                std::thread::sleep(wait);
            }
        })
}

impl Pinger {
    fn round(&mut self) {
        let cfg = Arc::clone(&self.w.cfg);
        let timeout = cfg.ping_interval.min(MAX_PING_TIMEOUT);
        let mut changed = false;
        for (i, h) in self.health.iter_mut().enumerate() {
            let server = &cfg.servers[i];
            match ping(&mut h.conn, server.addr, timeout) {
                Ok(()) => {
                    h.fails = 0;
                    if !h.live {
                        h.live = true;
                        changed = true;
                        info!(
                            "cluster {}: backend {} ({}) answers again: back in the ring",
                            cfg.name, server.name, server.addr
                        );
                    }
                }
                Err(e) => {
                    h.conn = None;
                    h.fails = h.fails.saturating_add(1);
                    if h.live && h.fails >= cfg.ping_fail_limit {
                        h.live = false;
                        changed = true;
                        warn!(
                            "cluster {}: backend {} ({}) failed {} pings ({e}): ejected",
                            cfg.name, server.name, server.addr, h.fails
                        );
                    }
                }
            }
        }
        if changed {
            let live: Vec<bool> = self.health.iter().map(|h| h.live).collect();
            self.w.route.store(Arc::new(RouteTable::shard(&cfg, &live)));
            for w in &self.w.wakers {
                let _ = w.wake();
            }
        }
    }
}

/// One PING on a kept connection (opened when missing). Any reply but an
/// error other than NOAUTH counts as alive: a server asking for a password
/// is up; one answering LOADING is not ready.
fn ping(
    conn: &mut Option<TcpStream>,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> std::io::Result<()> {
    let fail = |msg: &str| std::io::Error::other(msg.to_owned());
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        *conn = Some(s);
    }
    let Some(s) = conn.as_mut() else {
        return Err(fail("no connection"));
    };
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 256];
    let mut len = 0;
    while !buf[..len].ends_with(b"\r\n") {
        if len == buf.len() {
            return Err(fail("reply too long"));
        }
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Err(fail("connection closed"));
        }
        len += n;
    }
    let reply = &buf[..len];
    if reply.starts_with(b"+") || reply.starts_with(b"-NOAUTH") {
        Ok(())
    } else {
        Err(fail(&String::from_utf8_lossy(reply[..len - 2].as_ref())))
    }
}
