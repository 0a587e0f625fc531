//! One cluster: its listeners, its worker threads and its route table handle.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use log::{info, warn};
use mio::{Poll, Waker};
use socket2::{Domain, Socket, Type};

use crate::config::{CacheType, ClusterConfig, Listen};
use crate::control::topology::{self, TopologyError};
use crate::hashing::slots;
use crate::net::stream::Listener;
use crate::observe::stats::ClusterStats;
use crate::routing::refresh::Kick;
use crate::routing::table::{RouteHandle, RouteTable};
use std::time::Duration;

/// How long each seed may take to answer CLUSTER SLOTS at start-up.
const SEED_TIMEOUT: Duration = Duration::from_secs(2);
use crate::worker::{WAKER, Worker, WorkerSetup};

/// Why a cluster could not start.
#[derive(Debug)]
pub enum StartError {
    Bind {
        cluster: String,
        addr: Listen,
        err: io::Error,
    },
    Io {
        cluster: String,
        what: &'static str,
        err: io::Error,
    },
    Topology {
        cluster: String,
        err: TopologyError,
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
            StartError::Topology { cluster, err } => {
                write!(
                    f,
                    "cluster '{cluster}': cannot learn the cluster's slots: {err}"
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

pub struct Proxy {
    /// Names this cluster to the supervisor across reloads.
    pub id: u64,
    pub cfg: Arc<ClusterConfig>,
    pub route: RouteHandle,
    pub wakers: Vec<Arc<Waker>>,
    pub kicked: Arc<AtomicBool>,
    pub stats: Arc<ClusterStats>,
    /// This cluster's own stop flag: a reload can stop one cluster.
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Removed once the workers are gone (`join`).
    unix: Option<UnixSocket>,
}

/// Fails if anything already listens on `addr`. The workers' sockets use
/// SO_REUSEPORT, which would otherwise let a second aster (or any program
/// using it) share the port silently; a plain bind sees the conflict.
fn check_port_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// A listening socket with SO_REUSEPORT, so each worker has its own and the
/// kernel spreads new connections across them.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog_arg(backlog))?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

fn backlog_arg(backlog: u32) -> i32 {
    backlog.min(i32::MAX as u32) as i32
}

/// The cluster's listening sockets, one per worker. A unix socket is bound
/// once and shared: the kernel has no SO_REUSEPORT for it.
fn listeners(cfg: &ClusterConfig) -> io::Result<(Vec<Listener>, Option<UnixSocket>)> {
    match &cfg.listen_addr {
        Listen::Tcp(addr) => {
            check_port_free(*addr)?;
            let ls = (0..cfg.thread)
                .map(|_| listen(*addr, cfg.backlog).map(Listener::Tcp))
                .collect::<io::Result<_>>()?;
            Ok((ls, None))
        }
        Listen::Unix { path, mode } => {
            let (sock, owned) = UnixSocket::bind(path, *mode, cfg.backlog)?;
            let shared: Arc<Path> = Arc::from(path.as_path());
            let ls = (0..cfg.thread)
                .map(|_| {
                    let l = sock.try_clone()?;
                    Ok(Listener::Unix {
                        sock: mio::net::UnixListener::from_std(l),
                        path: Arc::clone(&shared),
                    })
                })
                .collect::<io::Result<_>>()?;
            Ok((ls, Some(owned)))
        }
    }
}

/// A unix socket file this cluster made, removed when it stops unless
/// something else has replaced it meanwhile.
pub struct UnixSocket {
    path: PathBuf,
    /// Device and inode of the file made, to know it is still ours.
    id: (u64, u64),
}

impl UnixSocket {
    /// Binds `path`, replacing a socket file left by a process that is gone;
    /// refuses a path where a live process listens, or that is not a socket.
    fn bind(
        path: &Path,
        mode: Option<u32>,
        backlog: u32,
    ) -> io::Result<(std::os::unix::net::UnixListener, UnixSocket)> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            "another process listens there",
                        ));
                    }
                    // Nobody listens: a socket file left by a process that
                    // died without removing it.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        fs::remove_file(path)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        sock.set_nonblocking(true)?;
        sock.bind(&socket2::SockAddr::unix(path)?)?;
        let made = fs::symlink_metadata(path)?;
        let owned = UnixSocket {
            path: path.to_owned(),
            id: (made.dev(), made.ino()),
        };
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        sock.listen(backlog_arg(backlog))?;
        Ok((sock.into(), owned))
    }

    /// Whether the file at the path is still the one bound: another
    /// process (or a cluster started since) may have replaced it.
    fn is_ours(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Gives the bound file a new mode, in place: the clients stay.
    fn set_mode(&self, mode: u32) -> io::Result<()> {
        if !self.is_ours() {
            return Err(io::Error::other("the file is no longer the one bound"));
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode))
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if self.is_ours()
            && let Err(e) = fs::remove_file(&self.path)
        {
            warn!("cannot remove unix socket {}: {e}", self.path.display());
        }
    }
}

/// The same listening socket, the mode of a unix socket aside.
fn same_listener(a: &Listen, b: &Listen) -> bool {
    match (a, b) {
        (Listen::Unix { path: p, .. }, Listen::Unix { path: q, .. }) => p == q,
        _ => a == b,
    }
}

/// Builds one worker and runs it on its own thread.
fn spawn_worker(
    cluster: &str,
    setup: WorkerSetup,
) -> Result<JoinHandle<()>, (&'static str, io::Error)> {
    let index = setup.index;
    let worker = Worker::new(setup).map_err(|e| ("cannot start a worker", e))?;
    std::thread::Builder::new()
        .name(format!("aster-{cluster}-{index}"))
        .spawn(move || worker.run())
        .map_err(|e| ("cannot spawn a worker thread", e))
}

impl Proxy {
    /// Starts the cluster's workers. A Redis Cluster's slot table is learned
    /// first, from the seeds: if none answers, the cluster does not start.
    pub fn start(cfg: ClusterConfig, kick: Kick) -> Result<Proxy, StartError> {
        let cfg = Arc::new(cfg);
        let shutdown = Arc::new(AtomicBool::new(false));
        let name = cfg.name.clone();
        let table = match cfg.cache_type {
            CacheType::Redis => RouteTable::shard(&cfg, &vec![true; cfg.servers.len()]),
            CacheType::RedisCluster => {
                // Validation keeps a Redis Cluster's seeds on TCP.
                let seeds: Vec<SocketAddr> =
                    cfg.servers.iter().filter_map(|s| s.addr.tcp()).collect();
                let (servers, map) =
                    topology::fetch(&seeds, SEED_TIMEOUT).map_err(|err| StartError::Topology {
                        cluster: name.clone(),
                        err,
                    })?;
                info!(
                    "cluster {name}: {} shard(s), {} node(s), {} of {} slots served",
                    map.shards.len(),
                    servers.len(),
                    map.covered(),
                    slots::SLOT_COUNT
                );
                RouteTable::cluster(Arc::clone(&cfg), servers, map)
            }
        };
        let route: RouteHandle = Arc::new(ArcSwap::from_pointee(table));
        let kicked = Arc::clone(kick.kicked());
        let names = match cfg.cache_type {
            CacheType::Redis => cfg.servers.iter().map(|s| s.name.clone()).collect(),
            CacheType::RedisCluster => Vec::new(),
        };
        let stats = Arc::new(ClusterStats::new(
            &name,
            names,
            cfg.thread,
            cfg.slowlog_max_len,
        ));
        let io_err = |what, err| StartError::Io {
            cluster: name.clone(),
            what,
            err,
        };
        let (listeners, unix) = listeners(&cfg).map_err(|err| StartError::Bind {
            cluster: name.clone(),
            addr: cfg.listen_addr.clone(),
            err,
        })?;
        let mut setups = Vec::with_capacity(cfg.thread);
        let mut wakers = Vec::with_capacity(cfg.thread);
        for (index, listener) in listeners.into_iter().enumerate() {
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
                kick: (cfg.cache_type == CacheType::RedisCluster).then(|| kick.clone()),
                stats: Arc::clone(&stats),
            });
        }
        let mut threads = Vec::with_capacity(setups.len());
        for setup in setups {
            match spawn_worker(&name, setup) {
                Ok(handle) => threads.push(handle),
                Err((what, err)) => {
                    // The workers already running hold the listener: they
                    // must be gone before a reload can start the previous
                    // configuration on the same address again.
                    shutdown.store(true, Ordering::Relaxed);
                    wakers.iter().for_each(|w| drop(w.wake()));
                    threads.into_iter().for_each(|t| drop(t.join()));
                    return Err(io_err(what, err));
                }
            }
        }
        Ok(Proxy {
            id: kick.cluster(),
            shutdown,
            cfg,
            route,
            wakers,
            kicked,
            stats,
            threads,
            unix,
        })
    }

    pub fn wake(&self) {
        for w in &self.wakers {
            if let Err(e) = w.wake() {
                warn!("cluster {}: cannot wake a worker: {e}", self.cfg.name);
            }
        }
    }

    /// Takes a reloaded configuration whose listener and thread count are
    /// unchanged. A Redis Cluster's table is republished with it here; a
    /// sharding cluster's is the supervisor's to publish (on the `Watch`
    /// that follows), as only it knows which servers are ejected. Either
    /// way it reaches the workers with the route table, so clients stay
    /// connected.
    pub fn update(&mut self, cfg: ClusterConfig) {
        self.apply_mode(&cfg.listen_addr);
        let cfg = Arc::new(cfg);
        if let Some(t) = self.route.load().with_cfg(Arc::clone(&cfg)) {
            self.route.store(Arc::new(t));
            self.wake();
        }
        self.cfg = cfg;
    }

    /// A unix socket's new mode is set on the file in place; no mode
    /// configured any more leaves the file's mode as it is.
    fn apply_mode(&self, new: &Listen) {
        let (
            Listen::Unix {
                path,
                mode: Some(mode),
            },
            Some(sock),
        ) = (new, &self.unix)
        else {
            return;
        };
        if self.cfg.listen_addr == *new {
            return;
        }
        match sock.set_mode(*mode) {
            Ok(()) => info!(
                "cluster {}: mode of {} set to {mode:04o}",
                self.cfg.name,
                path.display()
            ),
            Err(e) => warn!(
                "cluster {}: cannot set the mode of {} to {mode:04o}: {e}",
                self.cfg.name,
                path.display()
            ),
        }
    }

    /// Whether a reload to `cfg` can be applied in place (a unix socket's
    /// mode can: `update` sets it).
    pub fn can_update(&self, cfg: &ClusterConfig) -> bool {
        same_listener(&self.cfg.listen_addr, &cfg.listen_addr)
            && self.cfg.thread == cfg.thread
            && self.cfg.cache_type == cfg.cache_type
            && self.cfg.backlog == cfg.backlog
    }

    /// Whether `cfg` listens where this cluster does, so that it can only
    /// bind once this cluster is gone: the same unix path, or the same TCP
    /// port (127.0.0.1:P and 0.0.0.0:P conflict too).
    pub fn holds_address_of(&self, cfg: &ClusterConfig) -> bool {
        match (&self.cfg.listen_addr, &cfg.listen_addr) {
            (Listen::Tcp(a), Listen::Tcp(b)) => a.port() == b.port(),
            (Listen::Unix { path: a, .. }, Listen::Unix { path: b, .. }) => a == b,
            _ => false,
        }
    }

    /// Stops accepting; the workers drain (at most 5 s) and exit.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.wake();
    }

    /// Waits for the workers to drain and exit.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                warn!("cluster {}: a worker thread panicked", self.cfg.name);
            }
        }
        // The file goes once nothing listens on it any more.
        drop(self.unix.take());
    }
}
