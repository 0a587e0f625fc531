//! The supervisor thread. For sharding clusters it pings every server and
//! ejects one after `ping_fail_limit` consecutive failures, bringing it back
//! when it answers again. For Redis Clusters it refreshes the slot table every
//! `fetch` seconds, and soon after a worker asks (a MOVED, a failed node,
//! CLUSTERDOWN). Each change publishes one new route table and wakes the
//! workers.
//!
//! It uses its own blocking connections with timeouts and never touches
//! worker state: the only thing it shares is the route table pointer.
//!
//! With nothing due (health pings off, no cluster to refresh) it blocks on
//! its channel and costs nothing; `Msg::Shutdown` ends it.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Waker;

use crate::config::{CacheType, ClusterConfig};
use crate::net::rpc::{self, Value};
use crate::observe::stats::ClusterStats;
use crate::routing::slots;
use crate::routing::table::{RouteHandle, RouteTable};
use crate::routing::topology;

/// What the supervisor needs of one cluster.
pub struct Watched {
    pub cfg: Arc<ClusterConfig>,
    pub route: RouteHandle,
    pub wakers: Vec<Arc<Waker>>,
    /// Set while a refresh request is on its way, so a burst of redirects
    /// sends one message, not thousands.
    pub kicked: Arc<AtomicBool>,
    pub stats: Arc<ClusterStats>,
}

/// What the supervisor is told.
pub enum Msg {
    /// A worker of cluster `id` saw a redirect, a failed node or CLUSTERDOWN.
    Kick(u64),
    /// Start (or, for a known id, restart with a new config) watching a cluster.
    Watch(u64, Watched),
    /// The cluster was removed by a reload.
    Unwatch(u64),
    /// The proxy is stopping: return from the thread.
    Shutdown,
}

/// A worker's handle to ask for a topology refresh of its cluster.
#[derive(Clone)]
pub struct Kick {
    tx: Sender<Msg>,
    cluster: u64,
    kicked: Arc<AtomicBool>,
}

impl Kick {
    pub fn new(tx: Sender<Msg>, cluster: u64) -> Kick {
        Kick {
            tx,
            cluster,
            kicked: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    pub fn kicked(&self) -> &Arc<AtomicBool> {
        &self.kicked
    }

    pub fn send(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Msg::Kick(self.cluster));
        }
    }
}

/// The longest a single ping or topology query may take.
const MAX_RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// Refreshes asked for by workers are at least this far apart.
const REFRESH_GAP: Duration = Duration::from_millis(100);

struct Health {
    fails: u32,
    live: bool,
    conn: Option<TcpStream>,
}

enum Duty {
    Ping(Vec<Health>),
    Refresh {
        seeds: Vec<SocketAddr>,
        last: Instant,
    },
}

struct Job {
    w: Watched,
    duty: Duty,
    next: Instant,
    kicked: bool,
}

impl Job {
    fn new(w: Watched) -> Job {
        let now = Instant::now();
        let (duty, next) = match w.cfg.cache_type {
            CacheType::Redis => {
                let health = (0..w.cfg.servers.len())
                    .map(|_| Health {
                        fails: 0,
                        live: true,
                        conn: None,
                    })
                    .collect();
                (Duty::Ping(health), now)
            }
            CacheType::RedisCluster => {
                let seeds = w.cfg.servers.iter().map(|s| s.addr).collect();
                // The first table was fetched at start-up.
                (Duty::Refresh { seeds, last: now }, now + w.cfg.fetch)
            }
        };
        Job {
            w,
            duty,
            next,
            kicked: false,
        }
    }
}

/// Runs the supervisor until `Msg::Shutdown` (or until every sender is
/// gone); clusters arrive as `Msg::Watch`.
pub fn spawn(rx: Receiver<Msg>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("aster-supervisor".into())
        .spawn(move || run(&rx))
}

fn run(rx: &Receiver<Msg>) {
    let mut jobs: Vec<(u64, Job)> = Vec::new();
    loop {
        // Sleep until the earliest duty, or for good when there is none:
        // only a message can give work then.
        let first = match jobs.iter().filter_map(|(_, j)| j.due()).min() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match first {
            Ok(m) => {
                if !handle(&mut jobs, m) {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    if !handle(&mut jobs, m) {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        for (_, job) in &mut jobs {
            if job.due().is_some_and(|at| at <= now) {
                job.step();
            }
        }
    }
}

/// Applies one message; false on `Shutdown`.
fn handle(jobs: &mut Vec<(u64, Job)>, m: Msg) -> bool {
    match m {
        Msg::Shutdown => return false,
        Msg::Kick(id) => {
            if let Some((_, j)) = jobs.iter_mut().find(|(i, _)| *i == id) {
                j.kicked = true;
            }
        }
        Msg::Watch(id, w) => {
            let job = Job::new(w);
            match jobs.iter_mut().find(|(i, _)| *i == id) {
                Some(slot) => slot.1 = job,
                None => jobs.push((id, job)),
            }
        }
        Msg::Unwatch(id) => jobs.retain(|(i, _)| *i != id),
    }
    true
}

impl Job {
    /// When this job next has something to do; None when it never will
    /// (health pings off), so an idle supervisor does not wake for it.
    fn due(&self) -> Option<Instant> {
        match &self.duty {
            Duty::Ping(_) if self.w.cfg.ping_fail_limit == 0 => None,
            Duty::Ping(_) => Some(self.next),
            Duty::Refresh { last, .. } if self.kicked => Some(self.next.min(*last + REFRESH_GAP)),
            Duty::Refresh { .. } => Some(self.next),
        }
    }

    fn step(&mut self) {
        let now = Instant::now();
        let cfg = Arc::clone(&self.w.cfg);
        match &mut self.duty {
            Duty::Ping(health) => {
                if cfg.ping_fail_limit == 0 || now < self.next {
                    return;
                }
                if ping_round(&cfg, health, &self.w.stats) {
                    let live: Vec<bool> = health.iter().map(|h| h.live).collect();
                    self.w.route.store(Arc::new(RouteTable::shard(&cfg, &live)));
                    self.wake();
                }
                self.next = Instant::now() + cfg.ping_interval;
            }
            Duty::Refresh { seeds, last } => {
                let asked = self.kicked && now >= *last + REFRESH_GAP;
                if !asked && now < self.next {
                    return;
                }
                self.kicked = false;
                self.w.kicked.store(false, Ordering::Release);
                *last = now;
                self.next = now + cfg.fetch;
                let seeds = seeds.clone();
                if self.refresh(&seeds) {
                    self.wake();
                }
            }
        }
    }

    fn wake(&self) {
        for w in &self.w.wakers {
            let _ = w.wake();
        }
    }

    /// Asks the known nodes, then the seeds, for the slot table; publishes
    /// it if it changed.
    fn refresh(&self, seeds: &[SocketAddr]) -> bool {
        let cfg = &self.w.cfg;
        let current = self.w.route.load();
        let mut nodes: Vec<SocketAddr> = current.servers.iter().map(|b| b.addr).collect();
        for s in seeds {
            if !nodes.contains(s) {
                nodes.push(*s);
            }
        }
        match topology::fetch(&nodes, MAX_RPC_TIMEOUT) {
            Ok((servers, map)) => {
                if current.same_cluster_layout(&servers, &map) {
                    return false;
                }
                info!(
                    "cluster {}: slot table updated: {} shard(s), {} node(s), {} of {} slots served",
                    cfg.name,
                    map.shards.len(),
                    servers.len(),
                    map.covered(),
                    slots::SLOT_COUNT
                );
                self.w
                    .route
                    .store(Arc::new(RouteTable::cluster(Arc::clone(cfg), servers, map)));
                true
            }
            Err(e) => {
                warn!("cluster {}: topology refresh failed: {e}", cfg.name);
                false
            }
        }
    }
}

/// Pings every server once; returns whether the live set changed.
fn ping_round(cfg: &ClusterConfig, health: &mut [Health], stats: &ClusterStats) -> bool {
    let timeout = cfg.ping_interval.min(MAX_RPC_TIMEOUT);
    let mut changed = false;
    for (i, (h, server)) in health.iter_mut().zip(&cfg.servers).enumerate() {
        match ping(&mut h.conn, server.addr, timeout) {
            Ok(()) => {
                h.fails = 0;
                if !h.live {
                    h.live = true;
                    changed = true;
                    stats.readmitted(i);
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
                    stats.ejected(i);
                    warn!(
                        "cluster {}: backend {} ({}) failed {} ping(s) in a row ({e}): ejected",
                        cfg.name, server.name, server.addr, h.fails
                    );
                }
            }
        }
    }
    changed
}

/// One PING on a kept connection (opened when missing). A server asking for
/// a password is up; one answering LOADING or any other error is not ready.
fn ping(conn: &mut Option<TcpStream>, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let s = match conn {
        Some(s) => s,
        None => conn.insert(rpc::connect(addr, timeout)?),
    };
    match rpc::call(s, &[b"PING"])? {
        Value::Simple(_) => Ok(()),
        Value::Error(e) if e.starts_with("NOAUTH") => Ok(()),
        other => Err(std::io::Error::other(format!("unexpected reply {other:?}"))),
    }
}
