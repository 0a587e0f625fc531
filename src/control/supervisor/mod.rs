//! The supervisor thread. For sharding clusters it pings every server and
//! ejects one after `ping_fail_limit` consecutive failures, bringing it back
//! when it answers again (`health.rs`). For Redis Clusters it refreshes the
//! slot table every `fetch` seconds, soon after a worker asks (a MOVED, a
//! failed node, CLUSTERDOWN), and often while a master does not answer
//! (`refresh.rs`). Each change publishes one new route table and wakes the
//! workers.
//!
//! One `mio::Poll` waits on every server at once: each question has its own
//! deadline on its own non-blocking connection (`probe.rs`), so a hung
//! server delays no other server's verdict and no other cluster's refresh.
//! It never touches worker state: the only thing it shares is the route
//! table pointer.
//!
//! The poll sleeps until the earliest deadline or round, or for good when
//! there is none (health pings off, no cluster to refresh), so an idle
//! supervisor costs nothing; messages wake it through its `Waker`, and
//! `Msg::Shutdown` ends it.

mod health;
mod probe;
mod refresh;

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use log::error;
use mio::{Events, Poll, Registry, Token, Waker};

use self::health::{Pinger, Verdict};
use self::probe::WAKER;
use self::refresh::Refresher;
use crate::config::{CacheType, ClusterConfig};
use crate::observe::stats::ClusterStats;
use crate::routing::refresh::RefreshSink;
use crate::routing::table::{RouteHandle, RouteTable};

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

/// Where messages to the supervisor go: its channel, and the waker that
/// interrupts its poll.
#[derive(Clone)]
pub struct Mailbox {
    tx: Sender<Msg>,
    waker: Arc<Waker>,
}

impl Mailbox {
    /// Delivers `m`; a supervisor that is gone (the process is stopping)
    /// has nothing left to do with it.
    pub fn send(&self, m: Msg) {
        if self.tx.send(m).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl RefreshSink for Mailbox {
    fn refresh(&self, cluster: u64) {
        self.send(Msg::Kick(cluster));
    }
}

impl Watched {
    /// Stores a new route table and wakes the workers to adopt it.
    fn publish(&self, table: RouteTable) {
        self.route.store(Arc::new(table));
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// Starts the supervisor thread; it runs until `Msg::Shutdown` (or until
/// every mailbox is gone). Clusters arrive as `Msg::Watch`.
pub fn spawn() -> io::Result<(Mailbox, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("aster-supervisor".into())
        .spawn(move || run(poll, &rx))?;
    Ok((Mailbox { tx, waker }, thread))
}

fn run(mut poll: Poll, rx: &Receiver<Msg>) {
    let mut jobs = Jobs(Vec::new());
    let mut events = Events::with_capacity(256);
    loop {
        // Until the earliest deadline or round; with none, until a message.
        let timeout = jobs
            .due()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            error!("supervisor: cannot poll, health checks and slot refreshes stop: {e}");
            return;
        }
        let registry = poll.registry();
        let now = Instant::now();
        for ev in &events {
            if ev.token() != WAKER {
                jobs.on_event(registry, ev.token(), now);
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => {
                    jobs.close(registry);
                    return;
                }
                Ok(m) => jobs.handle(registry, m),
                Err(TryRecvError::Empty) => break,
            }
        }
        jobs.tick(registry, Instant::now());
    }
}

/// The watched clusters, by id.
struct Jobs(Vec<(u64, Job)>);

impl Jobs {
    fn handle(&mut self, registry: &Registry, m: Msg) {
        let now = Instant::now();
        match m {
            Msg::Shutdown => {}
            Msg::Kick(id) => {
                if let Some((
                    _,
                    Job {
                        duty: Duty::Refresh(r),
                        ..
                    },
                )) = self.0.iter_mut().find(|(i, _)| *i == id)
                {
                    r.kick();
                }
            }
            Msg::Watch(id, w) => match self.0.iter().position(|(i, _)| *i == id) {
                Some(at) => {
                    let (_, old) = self.0.swap_remove(at);
                    self.0.push((id, Job::reloaded(w, old, registry, now)));
                }
                None => self.0.push((id, Job::new(w, registry, now))),
            },
            Msg::Unwatch(id) => {
                if let Some(at) = self.0.iter().position(|(i, _)| *i == id) {
                    self.0.swap_remove(at).1.close(registry);
                }
            }
        }
    }

    fn due(&self) -> Option<Instant> {
        self.0.iter().filter_map(|(_, j)| j.due()).min()
    }

    fn on_event(&mut self, registry: &Registry, token: Token, now: Instant) {
        for (_, j) in &mut self.0 {
            if j.on_event(registry, token, now) {
                return;
            }
        }
    }

    fn tick(&mut self, registry: &Registry, now: Instant) {
        for (_, j) in &mut self.0 {
            j.tick(registry, now);
        }
    }

    fn close(&mut self, registry: &Registry) {
        for (_, j) in &mut self.0 {
            j.close(registry);
        }
    }
}

struct Job {
    w: Watched,
    duty: Duty,
}

enum Duty {
    Ping(Pinger),
    Refresh(Refresher),
}

impl Job {
    /// A cluster just started: its first table is published already.
    fn new(w: Watched, registry: &Registry, now: Instant) -> Job {
        let duty = match w.cfg.cache_type {
            CacheType::Redis => Duty::Ping(Pinger::new(&w.cfg, None, registry, now)),
            CacheType::RedisCluster => {
                Duty::Refresh(Refresher::new(&w.cfg, &w.route.load(), None, now))
            }
        };
        Job { w, duty }
    }

    /// A cluster reloaded in place: what the old duty learned carries over
    /// (servers the reload left unchanged keep their health). A sharding
    /// cluster's table is published here, with that health, so a reload
    /// never puts an ejected server back in the ring.
    fn reloaded(w: Watched, old: Job, registry: &Registry, now: Instant) -> Job {
        let duty = match (w.cfg.cache_type, old.duty) {
            (CacheType::Redis, old) => {
                let old = match old {
                    Duty::Ping(p) => Some(p),
                    Duty::Refresh(mut r) => {
                        r.close(registry);
                        None
                    }
                };
                Duty::Ping(Pinger::new(&w.cfg, old, registry, now))
            }
            (CacheType::RedisCluster, Duty::Refresh(r)) => {
                Duty::Refresh(Refresher::new(&w.cfg, &w.route.load(), Some(r), now))
            }
            (CacheType::RedisCluster, Duty::Ping(mut p)) => {
                p.close(registry);
                Duty::Refresh(Refresher::new(&w.cfg, &w.route.load(), None, now))
            }
        };
        let job = Job { w, duty };
        job.publish_shard();
        job
    }

    fn due(&self) -> Option<Instant> {
        match &self.duty {
            Duty::Ping(p) => p.due(&self.w.cfg),
            Duty::Refresh(r) => r.due(),
        }
    }

    fn on_event(&mut self, registry: &Registry, token: Token, now: Instant) -> bool {
        match &mut self.duty {
            Duty::Ping(p) => {
                match p.on_event(registry, token, now, &self.w.cfg, &self.w.stats) {
                    None => return false,
                    Some(Verdict::Changed) => self.publish_shard(),
                    Some(Verdict::Same) => {}
                }
                true
            }
            Duty::Refresh(r) => r.on_event(registry, token, now, &self.w),
        }
    }

    fn tick(&mut self, registry: &Registry, now: Instant) {
        match &mut self.duty {
            Duty::Ping(p) => {
                if p.tick(registry, now, &self.w.cfg, &self.w.stats) == Verdict::Changed {
                    self.publish_shard();
                }
            }
            Duty::Refresh(r) => r.tick(registry, now, &self.w),
        }
    }

    fn close(&mut self, registry: &Registry) {
        match &mut self.duty {
            Duty::Ping(p) => p.close(registry),
            Duty::Refresh(r) => r.close(registry),
        }
    }

    /// A sharding cluster's table for its configuration and health, with
    /// the health in the stats too (a cluster in cluster mode has none).
    fn publish_shard(&self) {
        let Duty::Ping(p) = &self.duty else {
            return;
        };
        let live = p.live();
        let names: Vec<String> = self.w.cfg.servers.iter().map(|s| s.name.clone()).collect();
        self.w.stats.set_servers(&names, &live);
        self.w.publish(RouteTable::shard(&self.w.cfg, &live));
    }
}
