//! Queueing requests on connections, opening them on demand with the
//! commands the configuration asks for on connect, and writing them.

use bytes::Bytes;
use log::{debug, warn};
use mio::Token;

use super::{Ctx, Upstream};
use crate::config::{CacheType, ClusterConfig};
use crate::protocol::resp;
use crate::worker::backend::{BackendConn, ReplyTo};
use crate::worker::conns::{Conn, slot_index};
use crate::worker::error::BackendError;
use crate::worker::server::ServerId;
use crate::worker::tune::tune;

impl Upstream {
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
    pub(super) fn send_to(
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
    pub(super) fn open(
        &mut self,
        ctx: &mut Ctx<'_>,
        si: ServerId,
        resp3: bool,
        slot: usize,
    ) -> Result<Token, BackendError> {
        let addr = self.servers[si.0].addr().clone();
        let b = BackendConn::connect(&addr, si, resp3, slot, ctx.now, ctx.view.wire())
            .map_err(|e| BackendError::connect(&e))?;
        if let Some(tcp) = b.sock().tcp() {
            tune(ctx.view.cfg(), tcp);
        }
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
    pub(super) fn arm(&mut self, ctx: &mut Ctx<'_>, t: Token) {
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
