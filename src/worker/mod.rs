//! One worker thread: a mio poll loop over a slab of client and backend
//! connections. Nothing here is shared with other workers or locked; the
//! only shared state read is the route table pointer, once per loop turn.
//!
//! The worker owns four parts, each a type with its own state:
//! - `conns` (`Conns`): the slab of clients and backend connections, and the
//!   lists of those to write or serve again this turn;
//! - `upstream` (`Upstream`): the servers, their connections' deadlines, and
//!   everything that faces them;
//! - `view` (`View`): the configuration and route table it runs with;
//! - `counters` (`Counters`): its stats, published to the cluster's.
//!
//! A loop turn: poll; handle every event (reading a client dispatches its
//! requests onto backend connections; reading a backend fills client
//! slots); serve what was left for later; fail what is past its deadline;
//! then write every connection touched in the turn once, so one vectored
//! write carries many clients' requests.

mod admin;
mod backend;
mod client;
mod conns;
mod counters;
mod dispatch;
mod error;
mod scripts;
mod server;
mod timers;
mod tune;
mod upstream;
mod view;

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};

use crate::config::ClusterConfig;
use crate::net::sock::ReadStatus;
use crate::net::stream::Listener;
use crate::observe::stats::ClusterStats;
use crate::protocol::refusal::Refusal;
use crate::routing::refresh::Kick;
use crate::routing::table::RouteHandle;
use crate::worker::client::{Client, Next};
use crate::worker::conns::{Conn, Conns};
use crate::worker::counters::Counters;
use crate::worker::dispatch::{Dispatch, refusal_reply};
use crate::worker::scripts::Scripts;
use crate::worker::tune::tune;
use crate::worker::upstream::{Ctx, Upstream, needs_reopen};
use crate::worker::view::{Refresh, View};

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// How long a shutting-down worker waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct WorkerSetup {
    pub(crate) cfg: Arc<ClusterConfig>,
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) listener: Listener,
    pub(crate) route: RouteHandle,
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Asks the supervisor for a topology refresh (cluster mode).
    pub(crate) kick: Option<Kick>,
    pub(crate) stats: Arc<ClusterStats>,
}

pub(crate) struct Worker {
    poll: Poll,
    listener: Option<Listener>,
    conns: Conns,
    upstream: Upstream,
    view: View,
    counters: Counters,
    scripts: Scripts,
    /// Argument ranges of the request being dispatched (reused).
    args: Vec<Range<usize>>,
    /// The unused room of the last client read buffer that emptied, lent to
    /// the next client that reads: clients hold no buffer between requests
    /// (idle memory), yet a new buffer is allocated once per few KiB read,
    /// not once per request.
    rbuf_room: BytesMut,
    next_client_id: u64,
    now: Instant,
    shutdown: Arc<AtomicBool>,
    drain_deadline: Option<Instant>,
}

/// Lends the worker's parts to the backend side and dispatch. A macro
/// rather than a method, so the borrow is of the fields alone and
/// `self.upstream` stays free beside it.
macro_rules! ctx {
    ($w:ident) => {
        Ctx {
            conns: &mut $w.conns,
            view: &$w.view,
            counters: &mut $w.counters,
            registry: $w.poll.registry(),
            now: $w.now,
        }
    };
}

impl Worker {
    pub(crate) fn new(s: WorkerSetup) -> io::Result<Worker> {
        let mut listener = s.listener;
        s.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let preconnect = s.cfg.preconnect;
        let mut w = Worker {
            poll: s.poll,
            listener: Some(listener),
            conns: Conns::new(),
            upstream: Upstream::new(),
            view: View::new(s.index, s.cfg, s.route, s.kick),
            counters: Counters::new(s.stats),
            scripts: Scripts::default(),
            args: Vec::with_capacity(16),
            rbuf_room: BytesMut::new(),
            next_client_id: 1,
            now: Instant::now(),
            shutdown: s.shutdown,
            drain_deadline: None,
        };
        let mut ctx = ctx!(w);
        w.upstream.remap(&mut ctx);
        if preconnect {
            w.upstream.preconnect(&mut ctx);
        }
        Ok(w)
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!(
                    "cluster {}: worker {}: poll failed: {e}",
                    self.view.cfg().name,
                    self.view.index()
                );
                return;
            }
            self.now = Instant::now();
            if !events.is_empty() {
                self.counters.touch();
            }
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
            let mut ctx = ctx!(self);
            self.upstream.expire(&mut ctx);
            self.flush();
            if self.upstream.has_retiring() {
                let mut ctx = ctx!(self);
                self.upstream.retire_unused(&mut ctx);
            }
            let (upstream, conns) = (&self.upstream, &mut self.conns);
            self.counters
                .publish_if_due(self.now, self.view.index(), || upstream.snapshot(conns));
            if self.shutting_down() {
                return;
            }
        }
    }

    /// How long the next poll may sleep: until the nearest thing due, or for
    /// ever when nothing is (an idle worker does not wake up).
    fn poll_timeout(&self) -> Option<Duration> {
        if self.conns.has_resumed() {
            return Some(Duration::ZERO);
        }
        let due = [
            self.counters.due(),
            self.upstream.next_deadline(),
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        due.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Adopts a new route table (and a reloaded configuration with it).
    fn refresh_route(&mut self) {
        let refresh = self.view.refresh();
        let mut ctx = ctx!(self);
        match refresh {
            Refresh::Same => {}
            Refresh::Table => self.upstream.remap(&mut ctx),
            Refresh::Config(old) => {
                if needs_reopen(&old, ctx.view.cfg()) {
                    info!(
                        "cluster {}: worker {}: backend options changed: connections are replaced",
                        ctx.view.cfg().name,
                        ctx.view.index()
                    );
                    self.upstream.reopen_all(&mut ctx);
                }
                self.upstream.trim_pool(&mut ctx);
                self.upstream.remap(&mut ctx);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let name = &self.view.cfg().name;
            match listener.accept() {
                Ok((mut sock, peer)) => {
                    let max = self.view.cfg().max_clients;
                    let clients = &self.counters.shared().clients;
                    let now_clients = clients.fetch_add(1, Ordering::Relaxed);
                    if max > 0 && now_clients >= max {
                        clients.fetch_sub(1, Ordering::Relaxed);
                        // Best effort: a fresh socket has room for one line.
                        let reply = refusal_reply(
                            self.view.wire(),
                            &mut self.counters,
                            &Refusal::MaxClients,
                        );
                        let _ = std::io::Write::write(&mut sock, &reply);
                        debug!("cluster {name}: client {peer} refused: {max} clients already");
                        continue;
                    }
                    self.counters.pool.client_connections += 1;
                    self.counters.pool.total_connections += 1;
                    if let Some(tcp) = sock.tcp() {
                        tune(self.view.cfg(), tcp);
                    }
                    let id = self.next_client_id;
                    self.next_client_id += 1;
                    let (t, conn) = self.conns.insert(Conn::Client(Client::new(
                        sock,
                        peer.clone(),
                        id,
                        self.view.wire().requests(),
                    )));
                    let res = match conn {
                        Conn::Client(c) => c.register(self.poll.registry(), t),
                        Conn::Backend(_) => Ok(()),
                    };
                    if let Err(e) = res {
                        warn!("cluster {name}: client {peer}: register: {e}");
                        self.close_client(t);
                    } else {
                        debug!("cluster {name}: client {peer} connected (id {id})");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the connection stays in the backlog
                    // and is retried on the next turn.
                    warn!("cluster {name}: accept failed: {e}");
                    self.conns.resume(LISTENER);
                    return;
                }
            }
        }
    }

    /// `closed`: the peer closed or the socket failed; reads must then go on
    /// to the end rather than stop at a short read.
    fn on_event(&mut self, t: Token, readable: bool, writable: bool, closed: bool) {
        match self.conns.is_client(t) {
            Some(true) => {
                if writable {
                    self.conns.mark_client(t);
                }
                if readable {
                    self.client_pump(t, closed);
                }
            }
            Some(false) => {
                let mut ctx = ctx!(self);
                self.upstream
                    .on_event(&mut ctx, t, readable, writable, closed);
            }
            None => {}
        }
    }

    fn run_resumed(&mut self) {
        for t in self.conns.take_resumed() {
            if t == LISTENER {
                self.accept();
                continue;
            }
            // Read to WouldBlock here: events that came while the connection
            // waited (a close among them) were not acted on.
            match self.conns.is_client(t) {
                Some(true) => self.client_pump(t, true),
                Some(false) => {
                    let mut ctx = ctx!(self);
                    self.upstream.read(&mut ctx, t, true);
                }
                None => {}
            }
        }
    }

    /// Dispatches what the client has buffered, reads more, dispatches again.
    fn client_pump(&mut self, t: Token, closed: bool) {
        if !self.client_parse(t) {
            return;
        }
        let Some(c) = self.conns.client(t) else {
            return;
        };
        let status = c.read(closed, &mut self.rbuf_room);
        if !self.client_parse(t) {
            return;
        }
        let name = &self.view.cfg().name;
        let limit = self.view.cfg().client_output_limit;
        let Some(c) = self.conns.client(t) else {
            return;
        };
        c.release_read_buffer(&mut self.rbuf_room);
        if let Some((unsent, held)) = c.over_limit(limit) {
            warn!(
                "cluster {name}: client {}: {unsent} bytes of replies unread and {held} bytes \
                 of requests held, over client_output_limit: closing",
                c.peer()
            );
            self.close_client(t);
            return;
        }
        match status {
            ReadStatus::WouldBlock => {
                // After its EOF: the client goes once answered.
                if c.finished() {
                    self.close_client(t);
                }
            }
            ReadStatus::Budget => self.conns.resume(t),
            ReadStatus::Eof => {
                self.counters.pool.client_eof += 1;
                // Requests still held and replies still owed are answered
                // and written before the close; but a client that leaves
                // while blocked is gone now, as Redis frees it.
                if c.finished() || c.is_blocked() {
                    self.close_client(t);
                }
            }
            ReadStatus::Error(e) => {
                self.counters.pool.client_err += 1;
                debug!("cluster {name}: client {}: read: {e}", c.peer());
                self.close_client(t);
            }
        }
    }

    /// Dispatches every complete request in the client's buffer, unless it
    /// is held back. Returns false when the client is no longer read (it is
    /// closing, or gone).
    fn client_parse(&mut self, t: Token) -> bool {
        loop {
            let Some(c) = self.conns.client(t) else {
                return false;
            };
            match c.next_request(&mut self.args, self.view.limits()) {
                Ok(Next::Request(frame)) => {
                    if self.args.is_empty() {
                        continue;
                    }
                    let args = std::mem::take(&mut self.args);
                    self.counters.pool.commands += 1;
                    let mut ctx = ctx!(self);
                    Dispatch {
                        ctx: &mut ctx,
                        up: &mut self.upstream,
                        scripts: &mut self.scripts,
                    }
                    .request(t, frame, &args);
                    self.args = args;
                }
                Ok(Next::Wait) => return true,
                Ok(Next::Stop) => return false,
                Err(e) => {
                    debug!("cluster {}: client {}: {e}", self.view.cfg().name, c.peer());
                    c.refuse(refusal_reply(
                        self.view.wire(),
                        &mut self.counters,
                        &Refusal::Protocol(e),
                    ));
                    self.conns.mark_client(t);
                    return false;
                }
            }
        }
    }

    fn close_client(&mut self, t: Token) {
        if let Some(Conn::Client(mut c)) = self.conns.remove(t) {
            c.deregister(self.poll.registry());
            // Its own backend connections close with it: a blocked command
            // or a transaction must never answer into another client.
            let mut ctx = ctx!(self);
            for conn in c.leases() {
                self.upstream.revoke(&mut ctx, conn, t);
            }
            self.counters
                .shared()
                .clients
                .fetch_sub(1, Ordering::Relaxed);
            let pool = &mut self.counters.pool;
            pool.client_connections = pool.client_connections.saturating_sub(1);
            debug!(
                "cluster {}: client {} closed (id {})",
                self.view.cfg().name,
                c.peer(),
                c.id()
            );
        }
    }

    /// Writes every connection touched this turn once: backends first (they
    /// carry many clients' requests), then clients. The lists are walked by
    /// index: a failure handled here (a replica's write error re-sending its
    /// reads to the master) may mark more, and they are written in this
    /// same pass rather than lost.
    fn flush(&mut self) {
        let mut i = 0;
        while let Some(t) = self.conns.dirty_backend(i) {
            i += 1;
            let mut ctx = ctx!(self);
            self.upstream.flush(&mut ctx, t);
        }
        let limit = self.view.cfg().client_output_limit;
        let mut i = 0;
        while let Some(t) = self.conns.dirty_client(i) {
            i += 1;
            let name = &self.view.cfg().name;
            let Some(c) = self.conns.client(t) else {
                continue;
            };
            c.unmark();
            if c.is_doomed() {
                warn!(
                    "cluster {name}: client {}: {} bytes of pub/sub messages unread, over the \
                     32 MiB pub/sub limit: closing",
                    c.peer(),
                    c.unsent()
                );
                self.close_client(t);
                continue;
            }
            if let Some((unsent, _)) = c.over_limit(limit) {
                warn!(
                    "cluster {name}: client {}: {unsent} bytes of replies unread, \
                     over client_output_limit: closing",
                    c.peer()
                );
                self.close_client(t);
                continue;
            }
            if let Err(e) = c.write() {
                debug!("cluster {name}: client {}: write: {e}", c.peer());
                self.close_client(t);
                continue;
            }
            if c.finished() {
                self.close_client(t);
                continue;
            }
            if c.release() {
                self.conns.resume(t);
            }
        }
        self.conns.clear_dirty();
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
                info!(
                    "cluster {}: worker {} draining",
                    self.view.cfg().name,
                    self.view.index()
                );
                // Idle clients go now; busy ones take no new request, get
                // what they are owed, and go (`Client::finished`).
                for t in self.conns.client_tokens() {
                    match self.conns.client(t) {
                        // A blocked command is not a request about to
                        // finish: its client goes too, as Redis does.
                        Some(c) if c.idle() || c.is_blocked() => self.close_client(t),
                        Some(c) => c.close_after_reply(),
                        None => {}
                    }
                }
                let d = self.now + DRAIN_TIMEOUT;
                self.drain_deadline = Some(d);
                d
            }
        };
        !self.conns.any_client_busy() || self.now >= deadline
    }
}
