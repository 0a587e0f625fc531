//! The worker's backend side: its servers (by a stable `ServerId`) and the
//! map from route-table indices to them; queueing requests on connections
//! (opening them as needed); reading replies and handing them to clients;
//! following cluster redirects; deadlines; and failing a connection's
//! requests with exactly one error each when it breaks.
//!
//! Everything it does to clients, it does through `Ctx`: the worker's
//! connections, view and counters, lent for the call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use log::{debug, warn};
use mio::{Registry, Token};
use slab::Slab;

use crate::config::{CacheType, ClusterConfig};
use crate::hashing::slots;
use crate::net::sock::ReadStatus;
use crate::observe::stats::ServerStats;
use crate::protocol::command::Block;
use crate::protocol::pubsub;
use crate::protocol::resp;
use crate::worker::backend::{BackendConn, Lease, Pending, Release, ReplyTo, SubFrame};
use crate::worker::conns::{Conn, Conns, slot_index};
use crate::worker::counters::Counters;
use crate::worker::error::{BackendError, Fault};
use crate::worker::server::{Server, ServerId};
use crate::worker::timers::Timers;
use crate::worker::tune::tune;
use crate::worker::view::View;

/// Unsent messages past which a subscriber is closed: Redis's default
/// `client-output-buffer-limit pubsub` hard limit.
const PUBSUB_OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

/// Redirects one request may follow before the client gets the last one.
const MAX_REDIRECTS: u8 = 5;
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// What the worker lends the backend side for one call.
pub(crate) struct Ctx<'a> {
    pub(crate) conns: &'a mut Conns,
    pub(crate) view: &'a View,
    pub(crate) counters: &'a mut Counters,
    pub(crate) registry: &'a Registry,
    pub(crate) now: Instant,
}

pub(crate) struct Upstream {
    servers: Slab<Server>,
    /// Route table server index -> this worker's server.
    route_map: Vec<ServerId>,
    by_addr: HashMap<SocketAddr, ServerId>,
    /// Servers that left the route table, forgotten once their connections
    /// are idle (so cluster nodes that come and go do not pile up).
    retiring: Vec<ServerId>,
    timers: Timers,
    /// Replies read in one go, before they are handed out (reused).
    replies: Vec<(Pending, Bytes)>,
    /// Subscriber connection frames read in one go (reused).
    sub_frames: Vec<SubFrame>,
    /// Dedicated connections open in this worker, leased and pooled.
    dedicated: usize,
    /// Bumped by a reload that changes what connections are opened with:
    /// dedicated connections of an older generation are not pooled again.
    options: u64,
}

impl Upstream {
    pub(crate) fn new() -> Upstream {
        Upstream {
            servers: Slab::new(),
            route_map: Vec::new(),
            by_addr: HashMap::new(),
            retiring: Vec::new(),
            timers: Timers::default(),
            replies: Vec::new(),
            sub_frames: Vec::new(),
            dedicated: 0,
            options: 0,
        }
    }

    /// Maps the table's servers onto this worker's servers by address,
    /// keeping every open connection; servers the table no longer names are
    /// retired once idle.
    pub(crate) fn remap(&mut self, ctx: &mut Ctx<'_>) {
        let per_protocol = ctx.view.cfg().server_connections;
        self.route_map.clear();
        for node in &ctx.view.route().servers {
            let id = self.server_by_addr(per_protocol, node.addr, &node.name);
            self.route_map.push(id);
        }
        self.retiring = self
            .servers
            .iter()
            .map(|(k, _)| ServerId(k))
            .filter(|id| !self.route_map.contains(id))
            .collect();
        self.retire_unused(ctx);
    }

    pub(crate) fn has_retiring(&self) -> bool {
        !self.retiring.is_empty()
    }

    /// Closes the idle connections of servers that left the route table, and
    /// forgets a server once it has none: its stats series go with it.
    pub(crate) fn retire_unused(&mut self, ctx: &mut Ctx<'_>) {
        let mut list = std::mem::take(&mut self.retiring);
        list.retain(|&si| {
            let Some(srv) = self.servers.get(si.0) else {
                return false;
            };
            let idle: Vec<Token> = srv
                .tokens()
                .filter(|&t| ctx.conns.backend(t).is_none_or(|b| b.idle()))
                .collect();
            for t in idle {
                self.drop_conn(ctx, t);
            }
            if self
                .servers
                .get(si.0)
                .is_some_and(|s| s.tokens().next().is_some())
            {
                return true;
            }
            let srv = self.servers.remove(si.0);
            self.by_addr.remove(&srv.addr());
            // A read on a replica may name this server as its fallback:
            // the key is about to be reused, so the fallback goes.
            for b in ctx.conns.backends_mut() {
                b.forget_fallback(si);
            }
            debug!(
                "cluster {}: worker {}: backend {} left the route table: forgotten",
                ctx.view.cfg().name,
                ctx.view.index(),
                srv.name()
            );
            false
        });
        self.retiring = list;
    }

    /// A reload changed what connections are opened with (or how many per
    /// server): every open one is detached; idle ones close now, busy ones
    /// drain, and new requests open new ones.
    pub(crate) fn reopen_all(&mut self, ctx: &mut Ctx<'_>) {
        let per_protocol = ctx.view.cfg().server_connections;
        self.options += 1;
        let keys: Vec<usize> = self.servers.iter().map(|(k, _)| k).collect();
        for k in keys {
            // Idle dedicated connections go; leased ones when released.
            for t in self.servers[k].drain_pool() {
                self.drop_conn(ctx, t);
            }
            for t in self.servers[k].detach_all(per_protocol) {
                match ctx.conns.backend(t) {
                    Some(b) if !b.idle() => self.servers[k].drain(t),
                    _ => {
                        self.drop_conn(ctx, t);
                    }
                }
            }
        }
    }

    /// This worker's entry for a server, made on first sight (a new table,
    /// or a redirect to a node the table does not know yet).
    fn server_by_addr(&mut self, per_protocol: usize, addr: SocketAddr, name: &str) -> ServerId {
        if let Some(&id) = self.by_addr.get(&addr) {
            return id;
        }
        let id = ServerId(self.servers.insert(Server::new(addr, name, per_protocol)));
        self.by_addr.insert(addr, id);
        id
    }

    /// Whether route server `server` is worth sending a replica read to now
    /// (it has not failed lately).
    pub(crate) fn usable(&self, now: Instant, server: usize) -> bool {
        self.route_map
            .get(server)
            .and_then(|id| self.servers.get(id.0))
            .is_some_and(|s| !s.backing_off(now))
    }

    /// Queues a request for route server `server`; `fallback` (a route
    /// server) takes it if `server` cannot (a read sent to a replica).
    pub(crate) fn send(
        &mut self,
        ctx: &mut Ctx<'_>,
        server: usize,
        fallback: Option<usize>,
        client: Token,
        req: Bytes,
        to: ReplyTo,
    ) {
        let Some(&si) = self.route_map.get(server) else {
            ctx.conns.deliver(to, BackendError::NoServer.reply());
            return;
        };
        let fallback = fallback.and_then(|f| self.route_map.get(f).copied());
        self.send_to(ctx, si, client, req, to, 0, fallback);
    }

    /// Queues a request on the connection to server `si` that serves this
    /// client, connecting first if needed. A client always uses the same
    /// connection to a server, so its requests stay in order.
    #[allow(clippy::too_many_arguments)]
    fn send_to(
        &mut self,
        ctx: &mut Ctx<'_>,
        si: ServerId,
        client: Token,
        req: Bytes,
        to: ReplyTo,
        redirects: u8,
        fallback: Option<ServerId>,
    ) {
        let resp3 = ctx.conns.client(client).is_some_and(|c| c.resp3());
        let slot = slot_index(client) % ctx.view.cfg().server_connections;
        let Some(srv) = self.servers.get(si.0) else {
            ctx.conns.deliver(to, BackendError::NoServer.reply());
            return;
        };
        let tok = match srv.slot(resp3, slot) {
            Some(tok) => tok,
            None => {
                // A read that has its master to go to avoids a replica that
                // failed lately. Anything else connects now, as twemproxy
                // does: a server that came back serves its first request,
                // and one still down answers it with its own error.
                if srv.backing_off(ctx.now)
                    && let Some(f) = fallback
                {
                    return self.send_to(ctx, f, client, req, to, redirects, None);
                }
                match self.open(ctx, si, resp3, slot) {
                    Ok(tok) => tok,
                    Err(e) => {
                        let reply = e.reply();
                        self.server_failed(ctx.now, si);
                        if let Some(f) = fallback {
                            return self.send_to(ctx, f, client, req, to, redirects, None);
                        }
                        ctx.conns.deliver(to, reply);
                        return;
                    }
                }
            }
        };
        if let ReplyTo::Client { .. } = to {
            let st = &mut self.servers[si.0].stats;
            st.requests += 1;
            st.request_bytes += req.len() as u64;
        }
        if let Some(b) = ctx.conns.backend(tok) {
            if b.enqueue(req, to, redirects, fallback, None, ctx.now) {
                self.arm(ctx, tok);
            }
            ctx.conns.mark_backend(tok);
        }
    }

    /// Opens slot `slot` of the given protocol to server `si` (`usize::MAX`:
    /// a dedicated connection, in no slot); the commands the configuration
    /// asks for on connect are queued first.
    fn open(
        &mut self,
        ctx: &mut Ctx<'_>,
        si: ServerId,
        resp3: bool,
        slot: usize,
    ) -> Result<Token, BackendError> {
        let addr = self.servers[si.0].addr();
        let b = BackendConn::connect(addr, si, resp3, slot, ctx.now)
            .map_err(|e| BackendError::connect(&e))?;
        tune(ctx.view.cfg(), b.sock());
        let (t, conn) = ctx.conns.insert(Conn::Backend(b));
        if let Conn::Backend(b) = conn
            && let Err(e) = b.register(ctx.registry, t)
        {
            ctx.conns.remove(t);
            return Err(BackendError::connect(&e));
        }
        self.servers[si.0].set_slot(resp3, slot, Some(t));
        if let Some(b) = ctx.conns.backend(t) {
            for cmd in init_commands(ctx.view.cfg(), resp3) {
                b.enqueue(cmd, ReplyTo::Init, 0, None, None, ctx.now);
            }
        }
        self.arm(ctx, t);
        debug!(
            "cluster {}: backend {} ({addr}): connecting",
            ctx.view.cfg().name,
            self.servers[si.0].name()
        );
        Ok(t)
    }

    /// Arms connection `t`'s timer for its deadline, if it has one.
    fn arm(&mut self, ctx: &mut Ctx<'_>, t: Token) {
        let (rt, wt) = (ctx.view.cfg().read_timeout, ctx.view.cfg().write_timeout);
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        let held = self.servers.get(b.server().0).is_some_and(|s| s.holds(t));
        if let Some(at) = b.deadline(rt, wt, held)
            && b.arm(at)
        {
            self.timers.arm(at, t);
        }
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fails the connections past their deadline; re-arms the others whose
    /// entries came due early (their deadline moved on).
    pub(crate) fn expire(&mut self, ctx: &mut Ctx<'_>) {
        let (rt, wt) = (ctx.view.cfg().read_timeout, ctx.view.cfg().write_timeout);
        while let Some((at, t)) = self.timers.pop_due(ctx.now) {
            let Some(b) = ctx.conns.backend(t) else {
                continue;
            };
            if !b.fire(at) {
                continue;
            }
            let held = self.servers.get(b.server().0).is_some_and(|s| s.holds(t));
            match b.deadline(rt, wt, held) {
                Some(d) if d <= ctx.now => {
                    // Counted on the timer path: no socket event will mark it.
                    ctx.counters.touch();
                    self.fail(ctx, t, BackendError::Timeout);
                }
                Some(d) if b.arm(d) => self.timers.arm(d, t),
                _ => {}
            }
        }
    }

    pub(crate) fn on_event(
        &mut self,
        ctx: &mut Ctx<'_>,
        t: Token,
        readable: bool,
        writable: bool,
        closed: bool,
    ) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        if !b.is_ready() {
            match b.finish_connect() {
                Ok(true) => {
                    let si = b.server();
                    ctx.conns.mark_backend(t);
                    if let Some(s) = self.servers.get_mut(si.0) {
                        s.connected();
                    }
                    // Armed for the connect timeout: the oldest request's
                    // read deadline may come sooner.
                    self.arm(ctx, t);
                }
                Ok(false) => return,
                Err(e) => {
                    self.fail(ctx, t, e);
                    return;
                }
            }
        }
        if writable && ctx.conns.backend(t).is_some_and(|b| b.has_unsent()) {
            ctx.conns.mark_backend(t);
        }
        if readable {
            self.read(ctx, t, closed);
        }
    }

    /// Reads what connection `t` has and hands out every complete reply.
    pub(crate) fn read(&mut self, ctx: &mut Ctx<'_>, t: Token, closed: bool) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        if let Some(l) = b.lease()
            && l.release == Release::Subscriber
        {
            return self.read_messages(ctx, t, l.client, closed);
        }
        let status = b.read(closed);
        let mut broken = None;
        loop {
            match b.take_reply() {
                Ok(Some(r)) => self.replies.push(r),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let idle = b.idle();
        let si = b.server();
        let lease = b.lease();
        self.account(ctx, si);
        let mut replies = std::mem::take(&mut self.replies);
        for (p, reply) in replies.drain(..) {
            self.on_reply(ctx, p, reply, lease.is_some());
        }
        self.replies = replies;
        if let Some(e) = broken {
            self.fail(ctx, t, e);
            return;
        }
        if idle && lease.is_some_and(|l| l.release == Release::WhenIdle) {
            self.give_back(ctx, t);
        }
        match status {
            ReadStatus::WouldBlock | ReadStatus::Budget
                if idle && self.servers.get(si.0).is_some_and(|s| s.is_draining(t)) =>
            {
                // Replaced by a reload and now drained.
                self.drop_conn(ctx, t);
            }
            ReadStatus::WouldBlock => {}
            ReadStatus::Budget => ctx.conns.resume(t),
            ReadStatus::Eof if idle => {
                // The server closed an idle connection (its timeout, a
                // restart): reconnect on the next request, no backoff.
                self.drop_conn(ctx, t);
            }
            ReadStatus::Eof => self.fail(ctx, t, BackendError::Eof),
            ReadStatus::Error(e) => self.fail(ctx, t, BackendError::io(&e)),
        }
    }

    /// A subscriber connection: the messages its client still holds the
    /// subscription for go to it; the servers' confirmations fill the
    /// client's confirmation slots (`Slot::Confirm`), which the proxy gives
    /// once every server involved has confirmed.
    fn read_messages(&mut self, ctx: &mut Ctx<'_>, t: Token, client: Token, closed: bool) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        let status = b.read(closed);
        let mut broken = None;
        let mut frames = std::mem::take(&mut self.sub_frames);
        loop {
            match b.take_sub_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let cluster = ctx.view.route().is_cluster();
        let mut confirmed = false;
        for f in frames.drain(..) {
            match f {
                SubFrame::Message(m) => {
                    let Some(c) = ctx.conns.client(client) else {
                        continue;
                    };
                    let Some(msg) = pubsub::message(&m) else {
                        continue;
                    };
                    if c.subs().wants(msg, t, cluster) {
                        ctx.conns.reply(client, m);
                    } else if let Some(seq) = c.subs().leaving_slot(msg, t, cluster) {
                        // Published before its server took the unsubscribe:
                        // given ahead of the confirmation, as Redis does.
                        c.hold_before(seq, m);
                    }
                }
                SubFrame::Reply(p, reply) => {
                    confirmed = true;
                    if let ReplyTo::Client { seq, .. } = p.to
                        && let Some(c) = ctx.conns.client(client)
                    {
                        c.subs_mut().left(seq, t);
                    }
                    ctx.conns.deliver(p.to, reply);
                }
            }
        }
        self.sub_frames = frames;
        // A subscriber that does not read its messages is closed past
        // Redis's own pub/sub hard limit, as Redis closes it: the proxy
        // reads the server for it, so the server's limit no longer would.
        if let Some(c) = ctx.conns.client(client)
            && c.unsent() > PUBSUB_OUTPUT_LIMIT
        {
            c.doom();
            ctx.conns.mark_client(client);
        }
        match (broken, status) {
            (Some(e), _) => return self.fail(ctx, t, e),
            (None, ReadStatus::WouldBlock) => {}
            (None, ReadStatus::Budget) => ctx.conns.resume(t),
            (None, ReadStatus::Eof) => return self.fail(ctx, t, BackendError::Eof),
            (None, ReadStatus::Error(e)) => return self.fail(ctx, t, BackendError::io(&e)),
        }
        if confirmed {
            self.close_unused_sub_conns(ctx, client);
        }
    }

    /// Closes the client's subscriber connections that no subscription
    /// needs and that await no confirmation (an unsubscribe's is awaited
    /// first: the client's confirmation waits for it).
    pub(crate) fn close_unused_sub_conns(&mut self, ctx: &mut Ctx<'_>, client: Token) {
        let Some(c) = ctx.conns.client(client) else {
            return;
        };
        let subs = c.subs();
        let unused: Vec<Token> = subs
            .conns
            .iter()
            .map(|&(_, tok)| tok)
            .filter(|&tok| !subs.uses(tok))
            .collect();
        let idle: Vec<Token> = unused
            .into_iter()
            .filter(|&tok| ctx.conns.backend(tok).is_none_or(|b| b.idle()))
            .collect();
        if idle.is_empty() {
            return;
        }
        if let Some(c) = ctx.conns.client(client) {
            c.subs_mut().conns.retain(|(_, tok)| !idle.contains(tok));
        }
        for tok in idle {
            self.revoke(ctx, tok, client);
        }
    }

    /// Queues an (un)subscribe command on a subscriber connection; the
    /// server's confirmation goes to `to`.
    pub(crate) fn send_sub(&mut self, ctx: &mut Ctx<'_>, t: Token, req: Bytes, to: ReplyTo) {
        let Some(b) = ctx.conns.backend(t) else {
            ctx.conns.deliver(
                to,
                resp::error("ERR the client's own backend connection was lost"),
            );
            return;
        };
        if b.enqueue(req, to, 0, None, None, ctx.now) {
            self.arm(ctx, t);
        }
        ctx.conns.mark_backend(t);
    }

    /// A backend's reply to one request: delivered, or in cluster mode
    /// followed when it is a redirect.
    /// `leased`: it came on a client's own connection (a transaction or a
    /// blocking command), which must not be moved: a redirect reaches the
    /// client as it is.
    fn on_reply(&mut self, ctx: &mut Ctx<'_>, p: Pending, reply: Bytes, leased: bool) {
        if leased && ctx.view.route().is_cluster() && reply.starts_with(b"-MOVED") {
            // The client gets the redirect (its connection cannot move), but
            // the table is stale all the same: its next blocking command or
            // WATCH must go to the new owner.
            ctx.view.kick_refresh();
        }
        if !leased && ctx.view.route().is_cluster() && resp::is_error(&reply) {
            if let Some((ask, target)) = slots::redirect_target(&reply) {
                if p.redirects < MAX_REDIRECTS
                    && let ReplyTo::Client { token, .. } = p.to
                    && let Ok(addr) = target.parse::<SocketAddr>()
                {
                    if !ask {
                        // The table is stale: follow now, refresh soon; the
                        // client's later requests wait for this one
                        // (`Client::may_route`).
                        ctx.view.kick_refresh();
                        if let Some(c) = ctx.conns.client(token) {
                            c.rerouted();
                        }
                    }
                    let per_protocol = ctx.view.cfg().server_connections;
                    let si = self.server_by_addr(per_protocol, addr, target);
                    if ask {
                        let asking = Bytes::from_static(ASKING);
                        self.send_to(ctx, si, token, asking, ReplyTo::Discard, 0, None);
                    }
                    self.send_to(ctx, si, token, p.req, p.to, p.redirects + 1, None);
                    return;
                }
            } else if reply.starts_with(b"-CLUSTERDOWN") || reply.starts_with(b"-TRYAGAIN") {
                ctx.view.kick_refresh();
            }
        }
        ctx.conns.deliver(p.to, reply);
    }

    /// Writes what connection `t` has queued (it was marked this turn).
    pub(crate) fn flush(&mut self, ctx: &mut Ctx<'_>, t: Token) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        b.unmark();
        // One that waits for older connections to drain is marked again
        // when they have.
        if !b.is_ready() || self.servers.get(b.server().0).is_some_and(|s| s.holds(t)) {
            return;
        }
        if let Err(e) = b.write(ctx.now) {
            self.fail(ctx, t, e);
        }
    }

    /// Closes connection `t` and returns it: the caller answers its requests.
    fn drop_conn(&mut self, ctx: &mut Ctx<'_>, t: Token) -> Option<BackendConn> {
        ctx.conns.backend(t)?;
        let Some(Conn::Backend(mut b)) = ctx.conns.remove(t) else {
            return None;
        };
        b.deregister(ctx.registry);
        if b.is_dedicated() {
            self.dedicated = self.dedicated.saturating_sub(1);
        }
        let si = b.server().0;
        let last_drained = self
            .servers
            .get_mut(si)
            .is_some_and(|s| s.forget(t, b.resp3(), b.slot()));
        if last_drained && let Some(srv) = self.servers.get(si) {
            // The newer connections held their writes for this one.
            let waiting: Vec<Token> = srv.tokens().collect();
            for w in waiting {
                if let Some(nb) = ctx.conns.backend(w)
                    && nb.has_unsent()
                {
                    nb.writes_resume(ctx.now);
                    ctx.conns.mark_backend(w);
                    // Its write deadline counts from now on.
                    self.arm(ctx, w);
                }
            }
        }
        Some(b)
    }

    /// A backend connection broke: close it, answer each request it carried
    /// with exactly one error reply, and back off before reconnecting.
    pub(crate) fn fail(&mut self, ctx: &mut Ctx<'_>, t: Token, err: BackendError) {
        let Some(b) = self.drop_conn(ctx, t) else {
            return;
        };
        // A subscriber connection lost its subscriptions: its client is
        // closed (once what it is owed is written), as a server closes its
        // subscribers, so that it reconnects and subscribes again.
        if let Some(l) = b.lease()
            && l.release == Release::Subscriber
            && let Some(c) = ctx.conns.client(l.client)
        {
            c.close_after_reply();
            ctx.conns.mark_client(l.client);
        }
        let si = b.server();
        let addr = b.addr();
        let inflight = b.into_inflight();
        let reply = err.reply();
        let name = match self.servers.get_mut(si.0) {
            Some(srv) => {
                match err.fault() {
                    Fault::Eof => srv.stats.server_eof += 1,
                    Fault::Timeout => srv.stats.server_timedout += 1,
                    Fault::Error => srv.stats.server_err += 1,
                }
                srv.name().to_owned()
            }
            None => String::new(),
        };
        warn!(
            "cluster {}: backend {name} ({addr}): {err}; {} request(s) failed",
            ctx.view.cfg().name,
            inflight.len()
        );
        self.server_failed(ctx.now, si);
        let retry = err.read_may_retry_on_master();
        // As twemproxy counts them: every client request the failure answers.
        ctx.counters.pool.forward_error += inflight
            .iter()
            .filter(|p| matches!(p.to, ReplyTo::Client { .. }) && !(retry && p.fallback.is_some()))
            .count() as u64;
        if ctx.view.route().is_cluster() {
            ctx.view.kick_refresh();
        }
        for p in inflight {
            match (p.fallback, p.to) {
                // A read on a failed replica is retried once on its master.
                (Some(f), ReplyTo::Client { token, .. }) if retry => {
                    self.send_to(ctx, f, token, p.req, p.to, p.redirects, None);
                }
                _ => ctx.conns.deliver(p.to, reply.clone()),
            }
        }
    }

    fn server_failed(&mut self, now: Instant, si: ServerId) {
        if let Some(srv) = self.servers.get_mut(si.0) {
            srv.failed(now);
        }
    }

    /// Counts the replies just read from server `si`: responses, bytes,
    /// latency, and the slow log.
    fn account(&mut self, ctx: &mut Ctx<'_>, si: ServerId) {
        if self.replies.is_empty() {
            return;
        }
        let now = Instant::now();
        let slower_than = ctx.view.cfg().slowlog_log_slower_than;
        let Some(srv) = self.servers.get_mut(si.0) else {
            return;
        };
        for (p, reply) in &self.replies {
            let ReplyTo::Client { token, .. } = p.to else {
                continue;
            };
            let us = now.saturating_duration_since(p.at).as_micros() as u64;
            srv.stats.responses += 1;
            srv.stats.response_bytes += reply.len() as u64;
            srv.stats.latency.observe(us);
            ctx.counters.pool.latency.observe(us);
            if slower_than.is_some_and(|t| us >= t) {
                let (peer, name) = match ctx.conns.client(token) {
                    Some(c) => (Some(c.peer().to_string()), c.name().cloned()),
                    None => (None, None),
                };
                ctx.counters.shared().slowlog.record(us, &p.req, peer, name);
            }
        }
    }

    /// A backend connection of `client`'s own to route server `server`, for
    /// a blocking command or a transaction: an idle one from the pool, or a
    /// new one while the worker has fewer than `max_dedicated_connections`
    /// (an idle pooled one elsewhere is closed to make room). The error is
    /// the reply to give the client.
    pub(crate) fn lease(
        &mut self,
        ctx: &mut Ctx<'_>,
        server: usize,
        client: Token,
        release: Release,
    ) -> Result<Token, Bytes> {
        let Some(&si) = self.route_map.get(server) else {
            return Err(BackendError::NoServer.reply());
        };
        let resp3 = ctx.conns.client(client).is_some_and(|c| c.resp3());
        let lease = Some(Lease { client, release });
        while let Some(t) = self
            .servers
            .get_mut(si.0)
            .and_then(|s| s.take_pooled(resp3))
        {
            match ctx.conns.backend(t) {
                Some(b) if b.options() == self.options => {
                    b.set_lease(lease);
                    return Ok(t);
                }
                _ => {
                    self.drop_conn(ctx, t);
                }
            }
        }
        let max = ctx.view.cfg().max_dedicated_connections;
        if self.dedicated >= max && !self.evict_pooled(ctx) {
            ctx.counters.pool.dedicated_refused += 1;
            return Err(resp::error(&format!(
                "ERR no dedicated backend connection left for blocking commands, \
                 transactions and pub/sub (max_dedicated_connections = {max} per worker)"
            )));
        }
        let t = self
            .open(ctx, si, resp3, usize::MAX)
            .map_err(|e| e.reply())?;
        self.dedicated += 1;
        self.servers[si.0].add_leased(t);
        if let Some(b) = ctx.conns.backend(t) {
            b.dedicate(self.options);
            b.set_lease(lease);
        }
        Ok(t)
    }

    /// A reload lowered `max_dedicated_connections`: idle pooled
    /// connections beyond it are closed (leased ones when given back).
    pub(crate) fn trim_pool(&mut self, ctx: &mut Ctx<'_>) {
        while self.dedicated > ctx.view.cfg().max_dedicated_connections && self.evict_pooled(ctx) {}
    }

    /// Closes one idle pooled dedicated connection; false if there is none.
    fn evict_pooled(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let victim = self.servers.iter_mut().find_map(|(_, s)| s.pop_pooled());
        match victim {
            Some(t) => {
                self.drop_conn(ctx, t);
                true
            }
            None => false,
        }
    }

    /// Queues a request on a leased connection.
    pub(crate) fn send_leased(
        &mut self,
        ctx: &mut Ctx<'_>,
        t: Token,
        req: Bytes,
        to: ReplyTo,
        block: Option<Block>,
    ) {
        let Some(b) = ctx.conns.backend(t) else {
            ctx.conns.deliver(
                to,
                resp::error("ERR the client's own backend connection was lost"),
            );
            return;
        };
        let si = b.server();
        if let ReplyTo::Client { .. } = to
            && let Some(srv) = self.servers.get_mut(si.0)
        {
            srv.stats.requests += 1;
            srv.stats.request_bytes += req.len() as u64;
        }
        if b.enqueue(req, to, 0, None, block, ctx.now) {
            self.arm(ctx, t);
        }
        ctx.conns.mark_backend(t);
    }

    /// The client is done with its connection once the replies it awaits
    /// are read (EXEC, DISCARD or UNWATCH was sent).
    pub(crate) fn release_when_idle(&mut self, ctx: &mut Ctx<'_>, t: Token) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        if let Some(l) = b.lease() {
            b.set_lease(Some(Lease {
                release: Release::WhenIdle,
                ..l
            }));
        }
        if b.idle() {
            self.give_back(ctx, t);
        }
    }

    /// A leased connection back to its server's pool, or closed if it is
    /// not clean (requests outstanding) or opened under older options.
    fn give_back(&mut self, ctx: &mut Ctx<'_>, t: Token) {
        let Some(b) = ctx.conns.backend(t) else {
            return;
        };
        if !b.idle()
            || b.options() != self.options
            || self.dedicated > ctx.view.cfg().max_dedicated_connections
        {
            self.drop_conn(ctx, t);
            return;
        }
        b.set_lease(None);
        let (si, resp3) = (b.server(), b.resp3());
        if let Some(srv) = self.servers.get_mut(si.0) {
            srv.pool(t, resp3);
        }
    }

    /// The client left (or gave up its state): its connection closes, so
    /// a blocked command or a transaction never answers into another client.
    pub(crate) fn revoke(&mut self, ctx: &mut Ctx<'_>, t: Token, client: Token) {
        if ctx
            .conns
            .backend(t)
            .and_then(|b| b.lease())
            .is_some_and(|l| l.client == client)
        {
            self.drop_conn(ctx, t);
        }
    }

    /// [dedicated connections leased, pooled; clients blocked].
    fn dedicated_counts(&self, conns: &mut Conns) -> [u64; 3] {
        let mut leased = 0;
        let mut pooled = 0;
        let mut blocked = 0;
        for (_, s) in &self.servers {
            pooled += s.pooled() as u64;
            for &t in s.leased() {
                leased += 1;
                if let Some(b) = conns.backend(t)
                    && !b.idle()
                    && b.lease().is_some_and(|l| l.release == Release::WhenIdle)
                {
                    blocked += 1;
                }
            }
        }
        [leased, pooled, blocked]
    }

    /// Opens every connection to every server now rather than on first use.
    pub(crate) fn preconnect(&mut self, ctx: &mut Ctx<'_>) {
        let keys: Vec<usize> = self.servers.iter().map(|(k, _)| k).collect();
        for k in keys {
            for slot in 0..ctx.view.cfg().server_connections {
                if self.servers[k].slot(false, slot).is_none()
                    && let Err(e) = self.open(ctx, ServerId(k), false, slot)
                {
                    warn!(
                        "cluster {}: backend {}: preconnect: {e}",
                        ctx.view.cfg().name,
                        self.servers[k].name()
                    );
                }
            }
        }
    }

    /// Each server's counters, with what its connections hold now, and the
    /// dedicated-connection gauges: [leased, pooled, clients blocked].
    pub(crate) fn snapshot(&self, conns: &mut Conns) -> (Vec<(String, ServerStats)>, [u64; 3]) {
        let mut out = Vec::with_capacity(self.servers.len());
        for (_, srv) in &self.servers {
            let mut st = srv.stats.clone();
            for t in srv.tokens() {
                if let Some(b) = conns.backend(t) {
                    let q = b.queues();
                    st.server_connections += 1;
                    st.in_queue += q.unsent;
                    st.in_queue_bytes += q.unsent_bytes;
                    st.out_queue += q.outstanding;
                    st.out_queue_bytes += q.outstanding_bytes;
                }
            }
            out.push((srv.name().to_owned(), st));
        }
        (out, self.dedicated_counts(conns))
    }
}

/// What a new backend connection is sent before any client request:
/// AUTH, HELLO 3 (RESP3 connections), SELECT and READONLY, as configured.
/// Their error replies fail the connection.
fn init_commands(cfg: &ClusterConfig, resp3: bool) -> Vec<Bytes> {
    let mut cmds = Vec::new();
    if let Some(pass) = &cfg.backend_password {
        cmds.push(match &cfg.backend_username {
            Some(user) => resp::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
            None => resp::command(&[b"AUTH", pass.as_bytes()]),
        });
    }
    if resp3 {
        cmds.push(resp::command(&[b"HELLO", b"3"]));
    }
    if cfg.backend_db != 0 {
        let db = cfg.backend_db.to_string();
        cmds.push(resp::command(&[b"SELECT", db.as_bytes()]));
    }
    if cfg.cache_type == CacheType::RedisCluster && cfg.read_from_slave {
        // Lets replicas serve reads; masters accept it and ignore it.
        cmds.push(resp::command(&[b"READONLY"]));
    }
    cmds
}

/// Whether connections opened under `old` must be replaced under `new`:
/// their commands on connect differ, or their number per server does.
pub(crate) fn needs_reopen(old: &ClusterConfig, new: &ClusterConfig) -> bool {
    old.server_connections != new.server_connections
        || [false, true]
            .iter()
            .any(|&resp3| init_commands(old, resp3) != init_commands(new, resp3))
}
