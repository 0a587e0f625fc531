//! One worker thread: a mio poll loop over a slab of client and backend
//! connections. Nothing here is shared with other workers or locked; the
//! only shared state read is the route table pointer, once per loop turn.
//!
//! A loop turn: poll, handle every event (reading clients queues requests on
//! backends; reading backends fills client slots), then flush every backend
//! and client touched in the turn once, so one vectored write carries many
//! clients' requests. Then expire timeouts.

mod admin;
pub(crate) mod backend;
pub(crate) mod client;
mod dispatch;
pub(crate) mod upstream;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::config::ClusterConfig;
use crate::control::supervisor::Kick;
use crate::net::sock::{self, ReadStatus};
use crate::observe::stats::{ClusterStats, PoolStats, ServerStats, WorkerSnapshot};
use crate::protocol::command::Args;
use crate::protocol::resp::{self, Limits};
use crate::routing::table::{RouteHandle, RouteTable};
use crate::worker::backend::{Backend, Pending, ReplyTo, State};
use crate::worker::client::Client;
use crate::worker::upstream::init_commands;

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

/// Bytes read from one socket per wake-up before others get a turn.
pub(crate) const READ_BUDGET: usize = 256 * 1024;
/// Requests of one client in flight at the backends past which the proxy
/// holds back its further requests (they stay in its read buffer).
const MAX_PENDING: usize = 1024;
/// Unsent reply bytes past which the proxy holds back a client's further
/// requests. Its socket is still read, so a client that writes a whole
/// pipeline before reading any reply never blocks on its write;
/// `client_output_limit` bounds what is held for it.
const OUT_SOFT_LIMIT: usize = 16 * 1024 * 1024;
/// Reconnect backoff for a failed backend: doubles from the first to the last.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// How long a shutting-down worker waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) enum Conn {
    Client(Client),
    Backend(Backend),
}

pub(crate) struct Entry {
    generation: u32,
    pub(crate) conn: Conn,
}

/// Tokens carry the slab index and a generation, so an event or a reply for
/// a closed and reused slot is dropped rather than given to its new owner.
fn token_of(idx: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | idx)
}

pub(crate) fn split_token(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

pub(crate) fn client_of(conns: &mut Slab<Entry>, t: Token) -> Option<&mut Client> {
    let (idx, generation) = split_token(t);
    match conns.get_mut(idx) {
        Some(Entry {
            generation: g,
            conn: Conn::Client(c),
        }) if *g == generation => Some(c),
        _ => None,
    }
}

pub(crate) fn backend_of(conns: &mut Slab<Entry>, t: Token) -> Option<&mut Backend> {
    let (idx, generation) = split_token(t);
    match conns.get_mut(idx) {
        Some(Entry {
            generation: g,
            conn: Conn::Backend(b),
        }) if *g == generation => Some(b),
        _ => None,
    }
}

/// One backend server as this worker sees it: its connections and health.
pub(crate) struct ServerConns {
    pub(crate) addr: SocketAddr,
    pub(crate) name: String,
    /// `server_connections` slots for each protocol: `[RESP2, RESP3]`. A
    /// client always uses the same slot, so its requests stay in order.
    pub(crate) conns: [Vec<Option<Token>>; 2],
    /// Connections opened with options a reload changed: they take no new
    /// requests and close once their last reply is read. Until then this
    /// server's new connections queue requests but do not write them, so a
    /// client's requests still reach the server in the order it sent them.
    pub(crate) draining: Vec<Token>,
    /// After a failure, requests are answered with `last_error` until then.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff: Duration,
    pub(crate) last_error: Bytes,
    pub(crate) stats: ServerStats,
}

impl ServerConns {
    /// Every open connection to this server, draining ones included.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.conns
            .iter()
            .flatten()
            .flatten()
            .chain(&self.draining)
            .copied()
    }

    /// Whether connection `t` must hold its writes until older connections
    /// to this server drain.
    pub(crate) fn holds(&self, t: Token) -> bool {
        !self.draining.is_empty() && !self.draining.contains(&t)
    }
}

/// How a backend connection failed, for the stats.
#[derive(Clone, Copy)]
pub(crate) enum Fault {
    Eof,
    Timeout,
    Error,
}

/// A request's arguments as ranges of its frame: no copy, no allocation.
pub(crate) struct FrameArgs<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) ranges: &'a [Range<usize>],
}

impl Args for FrameArgs<'_> {
    fn len(&self) -> usize {
        self.ranges.len()
    }
    fn get(&self, i: usize) -> &[u8] {
        self.ranges
            .get(i)
            .and_then(|r| self.buf.get(r.clone()))
            .unwrap_or(&[])
    }
}

pub struct WorkerSetup {
    pub cfg: Arc<ClusterConfig>,
    pub index: usize,
    pub poll: Poll,
    pub listener: TcpListener,
    pub route: RouteHandle,
    pub shutdown: Arc<AtomicBool>,
    /// Asks the supervisor for a topology refresh (cluster mode).
    pub kick: Option<Kick>,
    pub stats: Arc<ClusterStats>,
}

/// How often a worker publishes its counters for the stats port.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// Redirects one request may follow before the client gets the last one.
pub(crate) const MAX_REDIRECTS: u8 = 5;
pub(crate) const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

pub struct Worker {
    pub(crate) cfg: Arc<ClusterConfig>,
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) listener: Option<TcpListener>,
    pub(crate) conns: Slab<Entry>,
    pub(crate) next_gen: u32,
    pub(crate) next_client_id: u64,
    pub(crate) route_handle: RouteHandle,
    pub(crate) route: Arc<RouteTable>,
    /// Route table server index -> key in `servers`.
    pub(crate) route_map: Vec<usize>,
    /// Servers by a key that stays valid while the server is known: the
    /// current table's, and others a redirect named, until retired.
    pub(crate) servers: Slab<ServerConns>,
    /// Servers that left the route table, removed once their connections
    /// are idle (so cluster nodes that come and go do not pile up).
    pub(crate) retiring: Vec<usize>,
    pub(crate) by_addr: HashMap<SocketAddr, usize>,
    pub(crate) dirty_backends: Vec<Token>,
    pub(crate) dirty_clients: Vec<Token>,
    /// Connections with input left over from their read budget, or clients
    /// whose held-back requests may go on: served again at the end of the turn.
    pub(crate) resume: Vec<Token>,
    pub(crate) args: Vec<Range<usize>>,
    pub(crate) replies: Vec<(Pending, Bytes)>,
    pub(crate) kick: Option<Kick>,
    pub(crate) pool: PoolStats,
    pub(crate) stats: Arc<ClusterStats>,
    pub(crate) next_publish: Instant,
    /// Events were handled since the last publish.
    pub(crate) unpublished: bool,
    pub(crate) now: Instant,
    pub(crate) rng: u64,
    pub(crate) limits: Limits,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) drain_deadline: Option<Instant>,
}

impl Worker {
    pub fn new(s: WorkerSetup) -> io::Result<Worker> {
        let mut listener = s.listener;
        s.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let route = s.route.load_full();
        let limits = s.cfg.limits;
        let mut w = Worker {
            cfg: s.cfg,
            index: s.index,
            poll: s.poll,
            listener: Some(listener),
            conns: Slab::with_capacity(1024),
            next_gen: 1,
            next_client_id: 1,
            route_handle: s.route,
            route,
            route_map: Vec::new(),
            servers: Slab::new(),
            retiring: Vec::new(),
            by_addr: HashMap::new(),
            dirty_backends: Vec::new(),
            dirty_clients: Vec::new(),
            resume: Vec::new(),
            args: Vec::with_capacity(16),
            replies: Vec::new(),
            now: Instant::now(),
            rng: 0x2545_f491_4f6c_dd1d ^ (s.index as u64 + 1),
            limits,
            shutdown: s.shutdown,
            kick: s.kick,
            pool: PoolStats::default(),
            stats: s.stats,
            next_publish: Instant::now(),
            unpublished: true,
            drain_deadline: None,
        };
        w.rebuild_route_map();
        if w.cfg.preconnect {
            w.preconnect();
        }
        Ok(w)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!(
                    "cluster {}: worker {}: poll failed: {e}",
                    self.cfg.name, self.index
                );
                return;
            }
            self.now = Instant::now();
            self.unpublished |= !events.is_empty();
            self.refresh_route();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    t => {
                        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        let closed = ev.is_read_closed() || ev.is_error();
                        self.on_event(t, readable, ev.is_writable(), closed);
                    }
                }
            }
            self.run_resumed();
            // Expiry answers requests: before the flush, so the errors leave
            // in this turn rather than with whatever wakes the next one.
            self.expire();
            self.flush();
            if !self.retiring.is_empty() {
                self.retire_unused();
            }
            if self.unpublished && self.now >= self.next_publish {
                self.unpublished = false;
                self.publish();
                self.next_publish = self.now + PUBLISH_EVERY;
            }
            if self.shutting_down() {
                return;
            }
        }
    }

    /// How long the next poll may sleep: until the nearest thing due, or for
    /// ever when nothing is (an idle worker does not wake up).
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.resume.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut due: Option<Instant> = None;
        let mut at = |d: Instant| due = Some(due.map_or(d, |x| x.min(d)));
        if self.unpublished {
            // Counters changed: publish them soon even if nothing else happens.
            at(self.next_publish);
        }
        if let Some(next) = self.next_deadline() {
            at(next + Duration::from_millis(1));
        }
        if let Some(d) = self.drain_deadline {
            at(d);
        }
        due.map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn refresh_route(&mut self) {
        let cur = self.route_handle.load();
        if !Arc::ptr_eq(&cur, &self.route) {
            self.route = Arc::clone(&cur);
            drop(cur);
            if !Arc::ptr_eq(&self.cfg, &self.route.cfg) {
                self.adopt_config();
            }
            self.rebuild_route_map();
        }
    }

    /// Maps the table's servers onto this worker's connections by address,
    /// keeping every existing connection; servers the table no longer has
    /// are retired once idle.
    fn rebuild_route_map(&mut self) {
        let route = Arc::clone(&self.route);
        self.route_map.clear();
        for b in &route.servers {
            let idx = self.server_by_addr(b.addr, &b.name);
            self.route_map.push(idx);
        }
        self.retiring = self
            .servers
            .iter()
            .map(|(si, _)| si)
            .filter(|si| !self.route_map.contains(si))
            .collect();
        if !self.retiring.is_empty() {
            self.retire_unused();
        }
    }

    /// Closes the idle connections of servers that left the route table, and
    /// forgets a server once it has none: its stats series go with it.
    fn retire_unused(&mut self) {
        let mut list = std::mem::take(&mut self.retiring);
        list.retain(|&si| {
            let Some(srv) = self.servers.get(si) else {
                return false;
            };
            let idle: Vec<Token> = srv
                .tokens()
                .filter(|&t| backend_of(&mut self.conns, t).is_none_or(|b| b.idle()))
                .collect();
            for t in idle {
                self.drop_backend(t);
            }
            let Some(srv) = self.servers.get(si) else {
                return false;
            };
            if srv.tokens().next().is_some() {
                return true;
            }
            let srv = self.servers.remove(si);
            self.by_addr.remove(&srv.addr);
            // A read on a replica may name this server as its fallback:
            // the key is about to be reused, so the fallback goes.
            for (_, e) in self.conns.iter_mut() {
                if let Conn::Backend(b) = &mut e.conn {
                    b.forget_fallback(si);
                }
            }
            debug!(
                "cluster {}: worker {}: backend {} left the route table: forgotten",
                self.cfg.name, self.index, srv.name
            );
            false
        });
        self.retiring = list;
    }

    /// A reload changed the cluster's options: later requests follow them.
    /// Connections opened with other backend options (or another number of
    /// them per server) drain and are replaced, so no client is served by a
    /// connection with the wrong database, credentials or protocol.
    fn adopt_config(&mut self) {
        let old = std::mem::replace(&mut self.cfg, Arc::clone(&self.route.cfg));
        self.limits = self.cfg.limits;
        let reopen = old.server_connections != self.cfg.server_connections
            || [false, true]
                .iter()
                .any(|&resp3| init_commands(&old, resp3) != init_commands(&self.cfg, resp3));
        if reopen {
            let keys: Vec<usize> = self.servers.iter().map(|(si, _)| si).collect();
            for si in keys {
                self.replace_connections(si);
            }
        }
        info!(
            "cluster {}: worker {} runs the reloaded configuration{}",
            self.cfg.name,
            self.index,
            if reopen {
                "; backend connections are replaced"
            } else {
                ""
            }
        );
    }

    /// Detaches every connection of server `si`: idle ones close now, busy
    /// ones drain. New requests open new connections.
    fn replace_connections(&mut self, si: usize) {
        let n = self.cfg.server_connections;
        let Some(srv) = self.servers.get_mut(si) else {
            return;
        };
        let old: Vec<Token> = srv
            .conns
            .iter_mut()
            .flat_map(|v| std::mem::replace(v, vec![None; n]))
            .flatten()
            .collect();
        for t in old {
            match backend_of(&mut self.conns, t) {
                Some(b) if !b.idle() => {
                    if let Some(srv) = self.servers.get_mut(si) {
                        srv.draining.push(t);
                    }
                }
                _ => {
                    self.drop_backend(t);
                }
            }
        }
    }

    /// This worker's entry for a server, created on first sight (a new table,
    /// or a redirect to a node the table does not know yet).
    pub(crate) fn server_by_addr(&mut self, addr: SocketAddr, name: &str) -> usize {
        if let Some(&i) = self.by_addr.get(&addr) {
            return i;
        }
        let n = self.cfg.server_connections;
        let si = self.servers.insert(ServerConns {
            addr,
            name: name.to_owned(),
            conns: [vec![None; n], vec![None; n]],
            draining: Vec::new(),
            retry_at: None,
            backoff: BACKOFF_MIN,
            last_error: resp::error("ERR Connection refused"),
            stats: ServerStats::default(),
        });
        self.by_addr.insert(addr, si);
        si
    }

    /// Whether route server `server` is worth sending to now (not backing
    /// off after a failure).
    pub(crate) fn usable(&self, server: usize) -> bool {
        match self
            .route_map
            .get(server)
            .and_then(|&si| self.servers.get(si))
        {
            Some(srv) => srv.retry_at.is_none_or(|at| self.now >= at),
            None => false,
        }
    }

    pub(crate) fn kick_refresh(&self) {
        if let Some(k) = &self.kick {
            k.send();
        }
    }

    pub(crate) fn random(&mut self) -> u32 {
        // xorshift64*: placement for the random distribution, not security.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    pub(crate) fn insert(&mut self, conn: Conn) -> (Token, &mut Conn) {
        let generation = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0x7fff_ffff;
        if self.next_gen == 0 {
            self.next_gen = 1;
        }
        let entry = self.conns.vacant_entry();
        let t = token_of(entry.key(), generation);
        let e = entry.insert(Entry { generation, conn });
        (t, &mut e.conn)
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut sock, peer)) => {
                    let max = self.cfg.max_clients;
                    let now_clients = self.stats.clients.fetch_add(1, Ordering::Relaxed);
                    if max > 0 && now_clients >= max {
                        self.stats.clients.fetch_sub(1, Ordering::Relaxed);
                        // Best effort: a fresh socket has room for one line.
                        let _ = std::io::Write::write(&mut sock, MAX_CLIENTS_REPLY);
                        debug!(
                            "cluster {}: client {peer} refused: {max} clients already",
                            self.cfg.name
                        );
                        continue;
                    }
                    self.pool.client_connections += 1;
                    self.pool.total_connections += 1;
                    self.tune(&sock);
                    let id = self.next_client_id;
                    self.next_client_id += 1;
                    let registry = self.poll.registry().try_clone();
                    let (t, conn) = self.insert(Conn::Client(Client::new(sock, peer, id)));
                    let Conn::Client(c) = conn else {
                        unreachable!()
                    };
                    let res = registry.and_then(|r| {
                        r.register(&mut c.sock, t, Interest::READABLE | Interest::WRITABLE)
                    });
                    if let Err(e) = res {
                        warn!("cluster {}: client {peer}: register: {e}", self.cfg.name);
                        self.close_client(t);
                    } else {
                        debug!(
                            "cluster {}: client {peer} connected (id {id})",
                            self.cfg.name
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the connection stays in the backlog
                    // and is retried on the next turn.
                    warn!("cluster {}: accept failed: {e}", self.cfg.name);
                    self.resume.push(LISTENER);
                    return;
                }
            }
        }
    }

    /// `closed`: the peer closed or the socket failed; reads must then go on
    /// to the end rather than stop at a short read.
    fn on_event(&mut self, t: Token, readable: bool, writable: bool, closed: bool) {
        let (idx, generation) = split_token(t);
        let is_client = match self.conns.get(idx) {
            Some(e) if e.generation == generation => matches!(e.conn, Conn::Client(_)),
            _ => return,
        };
        if is_client {
            if writable {
                self.mark_client(t);
            }
            if readable {
                self.client_pump(t, closed);
            }
        } else {
            self.backend_event(t, readable, writable, closed);
        }
    }

    fn run_resumed(&mut self) {
        let list = std::mem::take(&mut self.resume);
        for t in list {
            if t == LISTENER {
                self.accept();
                continue;
            }
            let (idx, generation) = split_token(t);
            let is_client = match self.conns.get(idx) {
                Some(e) if e.generation == generation => matches!(e.conn, Conn::Client(_)),
                _ => continue,
            };
            // Read to WouldBlock here: events that came while the connection
            // waited (a close among them) were not acted on.
            if is_client {
                self.client_pump(t, true);
            } else {
                self.backend_read(t, true);
            }
        }
    }

    // ---- clients ----

    /// Parses what the client has buffered, reads more, parses again.
    ///
    /// A client's socket is read even while its requests are held back
    /// (too many in flight, or too many replies unsent): a client that
    /// writes a whole pipeline before reading would otherwise block on its
    /// write while the proxy waits for it to read, for ever. What is held
    /// for it is bounded by `client_output_limit`.
    fn client_pump(&mut self, t: Token, closed: bool) {
        if !self.client_parse(t) {
            return;
        }
        let status = match client_of(&mut self.conns, t) {
            Some(c) if c.eof => {
                // Nothing more to read: the client goes once answered.
                if c.finished() {
                    self.close_client(t);
                }
                return;
            }
            Some(c) => sock::read_into(&mut c.sock, &mut c.rbuf, READ_BUDGET, !closed),
            None => return,
        };
        let running = self.client_parse(t);
        let Some(c) = client_of(&mut self.conns, t) else {
            return;
        };
        if c.rbuf.is_empty() {
            // Everything read was parsed: let the buffer go (its requests in
            // flight keep what they need), so an idle client holds no read
            // buffer. The next read takes a fresh one.
            c.rbuf = BytesMut::new();
        }
        let limit = self.cfg.client_output_limit;
        if c.held && limit > 0 && c.rbuf.len() + c.out_bytes > limit {
            warn!(
                "cluster {}: client {}: {} bytes of replies unread and {} bytes of requests held, \
                 over client_output_limit: closing",
                self.cfg.name,
                c.peer,
                c.out_bytes,
                c.rbuf.len()
            );
            self.close_client(t);
            return;
        }
        match status {
            ReadStatus::WouldBlock => {}
            ReadStatus::Budget => {
                if running {
                    self.resume.push(t);
                }
            }
            ReadStatus::Eof => {
                self.pool.client_eof += 1;
                // Requests still held and replies still owed are answered
                // and written before the close.
                c.eof = true;
                if c.finished() {
                    self.close_client(t);
                }
            }
            ReadStatus::Error(e) => {
                self.pool.client_err += 1;
                debug!("cluster {}: client {}: read: {e}", self.cfg.name, c.peer);
                self.close_client(t);
            }
        }
    }

    /// Dispatches every complete request in the client's buffer, unless it
    /// is held back. Returns false when the client is no longer read (it is
    /// closing, or gone).
    fn client_parse(&mut self, t: Token) -> bool {
        loop {
            let Some(c) = client_of(&mut self.conns, t) else {
                return false;
            };
            if c.closing {
                return false;
            }
            if c.held {
                return true;
            }
            if c.pending() >= MAX_PENDING || c.out_bytes >= OUT_SOFT_LIMIT {
                c.held = true;
                return true;
            }
            match c.parser.parse(&c.rbuf, &mut self.args, &self.limits) {
                Ok(None) => return true,
                Ok(Some(n)) => {
                    let frame = c.rbuf.split_to(n).freeze();
                    if self.args.is_empty() {
                        continue;
                    }
                    let args = std::mem::take(&mut self.args);
                    self.pool.commands += 1;
                    self.dispatch(t, frame, &args);
                    self.args = args;
                }
                Err(e) => {
                    debug!("cluster {}: client {}: {e}", self.cfg.name, c.peer);
                    c.rbuf.clear();
                    c.push(crate::worker::client::Slot::Ready(resp::error(&format!(
                        "ERR {e}"
                    ))));
                    c.closing = true;
                    self.mark_client(t);
                    return false;
                }
            }
        }
    }

    pub(crate) fn mark_client(&mut self, t: Token) {
        if let Some(c) = client_of(&mut self.conns, t)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty_clients.push(t);
        }
    }

    pub(crate) fn close_client(&mut self, t: Token) {
        let (idx, _) = split_token(t);
        if client_of(&mut self.conns, t).is_none() {
            return;
        }
        if let Conn::Client(mut c) = self.conns.remove(idx).conn {
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.stats.clients.fetch_sub(1, Ordering::Relaxed);
            self.pool.client_connections = self.pool.client_connections.saturating_sub(1);
            debug!(
                "cluster {}: client {} closed (id {})",
                self.cfg.name, c.peer, c.id
            );
        }
    }

    /// Hands a reply to the client slot it belongs to. Replies for a client
    /// that has gone (or a slot reused by another) are dropped here.
    pub(crate) fn deliver(&mut self, to: ReplyTo, reply: Bytes) {
        match to {
            ReplyTo::Client { token, seq, part } => {
                if let Some(c) = client_of(&mut self.conns, token) {
                    c.fill(seq, part, reply);
                    if c.has_output() {
                        self.mark_client(token);
                    }
                }
            }
            ReplyTo::Init | ReplyTo::Discard => {}
        }
    }

    pub(crate) fn count_fragments(&mut self, n: usize) {
        self.pool.fragments += n as u64;
    }

    /// Socket options every connection gets. Nagle's algorithm is off: a
    /// proxy's small replies would otherwise wait for the peer's delayed ACK.
    pub(crate) fn tune(&self, sock: &TcpStream) {
        if let Err(e) = sock.set_nodelay(true) {
            debug!("cluster {}: set nodelay: {e}", self.cfg.name);
        }
        if self.cfg.tcpkeepalive
            && let Err(e) = socket2::SockRef::from(sock).set_keepalive(true)
        {
            debug!("cluster {}: set keepalive: {e}", self.cfg.name);
        }
    }

    /// Hands a copy of this worker's counters to the stats port.
    fn publish(&mut self) {
        let mut snap = WorkerSnapshot {
            pool: self.pool.clone(),
            servers: Vec::with_capacity(self.servers.len()),
        };
        for (_, srv) in &self.servers {
            let mut st = srv.stats.clone();
            for t in srv.tokens() {
                let (idx, _) = split_token(t);
                if let Some(Entry {
                    conn: Conn::Backend(b),
                    ..
                }) = self.conns.get(idx)
                {
                    st.server_connections += 1;
                    let unsent = b.wq.len() as u64;
                    st.in_queue += unsent;
                    st.in_queue_bytes += b.wq.iter().map(|x| x.len() as u64).sum::<u64>();
                    st.out_queue += (b.inflight.len() as u64).saturating_sub(unsent);
                    st.out_queue_bytes += b
                        .inflight
                        .iter()
                        .skip(b.wq.len())
                        .map(|p| p.req.len() as u64)
                        .sum::<u64>();
                }
            }
            snap.servers.push((srv.name.clone(), st));
        }
        self.stats.publish(self.index, snap);
    }

    // ---- end of turn ----

    /// Writes every connection touched this turn once. The lists are walked
    /// by index, not taken: a failure handled here (a replica's write error
    /// re-sending its reads to the master) may mark more connections, and
    /// they are written in this same pass rather than lost.
    fn flush(&mut self) {
        let mut i = 0;
        while let Some(&t) = self.dirty_backends.get(i) {
            i += 1;
            let Some(b) = backend_of(&mut self.conns, t) else {
                continue;
            };
            b.dirty = false;
            // One that waits for older connections to drain is marked
            // again when they have.
            if b.state != State::Ready || self.servers.get(b.server).is_some_and(|s| s.holds(t)) {
                continue;
            }
            match sock::write_queue(&mut b.sock, &mut b.wq) {
                Ok(n) => {
                    if n > 0 {
                        b.write_since = self.now;
                    }
                }
                Err(e) => self.fail_backend(t, Fault::Error, &sock::error_text(&e)),
            }
        }
        self.dirty_backends.clear();

        let mut i = 0;
        while let Some(&t) = self.dirty_clients.get(i) {
            i += 1;
            let Some(c) = client_of(&mut self.conns, t) else {
                continue;
            };
            c.dirty = false;
            let limit = self.cfg.client_output_limit;
            if limit > 0 && c.out_bytes > limit {
                warn!(
                    "cluster {}: client {}: {} bytes of replies unread, over client_output_limit: closing",
                    self.cfg.name, c.peer, c.out_bytes
                );
                self.close_client(t);
                continue;
            }
            match sock::write_queue(&mut c.sock, &mut c.out) {
                Ok(n) => c.out_bytes -= n.min(c.out_bytes),
                Err(e) => {
                    debug!("cluster {}: client {}: write: {e}", self.cfg.name, c.peer);
                    self.close_client(t);
                    continue;
                }
            }
            if c.out.is_empty() {
                c.out_bytes = 0;
            }
            if c.finished() {
                self.close_client(t);
                continue;
            }
            if c.held && c.pending() < MAX_PENDING / 2 && c.out_bytes < OUT_SOFT_LIMIT / 2 {
                c.held = false;
                self.resume.push(t);
            }
        }
        self.dirty_clients.clear();
    }

    /// The earliest backend deadline (connect, read or write timeout).
    fn next_deadline(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (_, srv) in &self.servers {
            for t in srv.tokens() {
                if let Some(d) = self.deadline_of(t) {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        next
    }

    fn deadline_of(&self, t: Token) -> Option<Instant> {
        let (idx, _) = split_token(t);
        let Some(Entry {
            conn: Conn::Backend(b),
            ..
        }) = self.conns.get(idx)
        else {
            return None;
        };
        let (rt, wt) = (self.cfg.read_timeout, self.cfg.write_timeout);
        if b.state == State::Connecting {
            return wt.map(|w| b.started + w);
        }
        let read = rt.and_then(|r| b.inflight.front().map(|p| p.at + r));
        // Writes held while older connections drain are not late: the
        // draining ones' own deadlines bound the wait.
        let held = self.servers.get(b.server).is_some_and(|s| s.holds(t));
        let write = wt.and_then(|w| (!b.wq.is_empty() && !held).then(|| b.write_since + w));
        match (read, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn expire(&mut self) {
        let now = self.now;
        let expired: Vec<Token> = self
            .servers
            .iter()
            .flat_map(|(_, s)| s.tokens())
            .filter(|t| self.deadline_of(*t).is_some_and(|d| d <= now))
            .collect();
        for t in expired {
            // Counted on the timer path: no socket event will mark it.
            self.unpublished = true;
            self.fail_backend(t, Fault::Timeout, "Connection timed out");
        }
    }

    fn shutting_down(&mut self) -> bool {
        if !self.shutdown.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = match self.drain_deadline {
            Some(d) => d,
            None => {
                if let Some(mut l) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                info!("cluster {}: worker {} draining", self.cfg.name, self.index);
                let d = self.now + DRAIN_TIMEOUT;
                self.drain_deadline = Some(d);
                d
            }
        };
        let busy = self.conns.iter().any(|(_, e)| match &e.conn {
            Conn::Client(c) => !c.idle(),
            Conn::Backend(_) => false,
        });
        !busy || self.now >= deadline
    }
}

/// Whether a non-blocking connect finished: `Ok(false)` while in progress.
pub(crate) fn connect_outcome(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
