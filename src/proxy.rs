//! One cluster: its listeners, its worker threads and its route table handle.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use log::warn;
use mio::{Poll, Waker};
use socket2::{Domain, Socket, Type};

use crate::config::{CacheType, ClusterConfig};
use crate::route::{RouteHandle, RouteTable};
use crate::worker::{WAKER, Worker, WorkerSetup};

/// Why a cluster could not start.
#[derive(Debug)]
pub enum StartError {
    Bind {
        cluster: String,
        addr: SocketAddr,
        err: io::Error,
    },
    Io {
        cluster: String,
        what: &'static str,
        err: io::Error,
    },
    Unsupported {
        cluster: String,
        what: &'static str,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { cluster, addr, err } => {
                write!(f, "cluster '{cluster}': cannot listen on {addr}: {err}")
            }
            StartError::Io { cluster, what, err } => {
                write!(f, "cluster '{cluster}': {what}: {err}")
            }
            StartError::Unsupported { cluster, what } => write!(f, "cluster '{cluster}': {what}"),
        }
    }
}

impl std::error::Error for StartError {}

pub struct Proxy {
    pub cfg: Arc<ClusterConfig>,
    pub route: RouteHandle,
    pub wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
}

/// A listening socket with SO_REUSEPORT, so each worker has its own and the
/// kernel spreads new connections across them.
fn listen(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

impl Proxy {
    pub fn start(cfg: ClusterConfig, shutdown: Arc<AtomicBool>) -> Result<Proxy, StartError> {
        let cfg = Arc::new(cfg);
        let name = cfg.name.clone();
        if cfg.cache_type == CacheType::RedisCluster {
            return Err(StartError::Unsupported {
                cluster: name,
                what: "cache_type = \"redis_cluster\" is not available yet",
            });
        }
        let live = vec![true; cfg.servers.len()];
        let route: RouteHandle = Arc::new(ArcSwap::from_pointee(RouteTable::shard(&cfg, &live)));
        let io_err = |what, err| StartError::Io {
            cluster: name.clone(),
            what,
            err,
        };
        let mut setups = Vec::with_capacity(cfg.thread);
        let mut wakers = Vec::with_capacity(cfg.thread);
        for index in 0..cfg.thread {
            let listener = listen(cfg.listen_addr).map_err(|err| StartError::Bind {
                cluster: name.clone(),
                addr: cfg.listen_addr,
                err,
            })?;
            let poll = Poll::new().map_err(|e| io_err("cannot create a poll", e))?;
            let waker = Waker::new(poll.registry(), WAKER)
                .map_err(|e| io_err("cannot create a waker", e))?;
            wakers.push(Arc::new(waker));
            setups.push(WorkerSetup {
                cfg: Arc::clone(&cfg),
                index,
                poll,
                listener,
                route: Arc::clone(&route),
                shutdown: Arc::clone(&shutdown),
            });
        }
        let mut threads = Vec::with_capacity(setups.len());
        for setup in setups {
            let index = setup.index;
            let worker = Worker::new(setup).map_err(|e| io_err("cannot start a worker", e))?;
            let handle = std::thread::Builder::new()
                .name(format!("aster-{name}-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| io_err("cannot spawn a worker thread", e))?;
            threads.push(handle);
        }
        Ok(Proxy {
            cfg,
            route,
            wakers,
            threads,
        })
    }

    pub fn wake(&self) {
        for w in &self.wakers {
            if let Err(e) = w.wake() {
                warn!("cluster {}: cannot wake a worker: {e}", self.cfg.name);
            }
        }
    }

    /// Waits for the workers to drain and exit.
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                warn!("cluster {}: a worker thread panicked", self.cfg.name);
            }
        }
    }
}
