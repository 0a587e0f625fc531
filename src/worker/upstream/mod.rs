//! The worker's backend side: its servers (by a stable `ServerId`) and the
//! map from route-table indices to them; queueing requests on connections
//! (opening them as needed); reading replies and handing them to clients;
//! following cluster redirects; deadlines; and failing a connection's
//! requests with exactly one error each when it breaks.
//!
//! Everything it does to clients, it does through `Ctx`: the worker's
//! connections, view and counters, lent for the call.
//!
//! One `impl` block per concern: the server map here; `send.rs` (queueing,
//! opening, writing); `replies.rs` (reading, redirects, subscriber
//! connections); `failure.rs` (deadlines, closing, failing); `lease.rs`
//! (the dedicated connections).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use log::debug;
use mio::{Registry, Token};
use slab::Slab;

use crate::config::Addr;
use crate::observe::stats::ServerStats;
use crate::worker::backend::{Pending, SubFrame};
use crate::worker::conns::Conns;
use crate::worker::counters::Counters;
use crate::worker::server::{Server, ServerId};
use crate::worker::timers::Timers;
use crate::worker::view::View;

mod failure;
mod lease;
mod replies;
mod send;

pub(crate) use send::needs_reopen;

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
    by_addr: HashMap<Addr, ServerId>,
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
            let id = self.server_by_addr(per_protocol, &node.addr, &node.name);
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
            self.by_addr.remove(srv.addr());
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
    pub(super) fn server_by_addr(
        &mut self,
        per_protocol: usize,
        addr: &Addr,
        name: &str,
    ) -> ServerId {
        if let Some(&id) = self.by_addr.get(addr) {
            return id;
        }
        let id = ServerId(
            self.servers
                .insert(Server::new(addr.clone(), name, per_protocol)),
        );
        self.by_addr.insert(addr.clone(), id);
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
