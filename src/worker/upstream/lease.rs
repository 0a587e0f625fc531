//! The dedicated connections: a client's own for blocking commands,
//! transactions and pub/sub, leased from its server's pool or opened within
//! `max_dedicated_connections`, and given back or closed.

use bytes::Bytes;
use mio::Token;

use super::{Ctx, Upstream};
use crate::protocol::command::Block;
use crate::protocol::refusal::Refusal;
use crate::worker::backend::{Lease, Release, ReplyTo};
use crate::worker::conns::Conns;
use crate::worker::error::BackendError;

impl Upstream {
    /// A backend connection of `client`'s own to route server `server`, for
    /// a blocking command or a transaction: an idle one from the pool, or a
    /// new one while the worker has fewer than `max_dedicated_connections`
    /// (an idle pooled one elsewhere is closed to make room). The error is
    /// the reply to give the client (a refusal is counted).
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
            return Err(ctx
                .counters
                .refuse(ctx.view.wire(), &Refusal::NoDedicated(max)));
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
            return own_connection_lost(ctx, to);
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
    pub(super) fn give_back(&mut self, ctx: &mut Ctx<'_>, t: Token) {
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
    pub(super) fn dedicated_counts(&self, conns: &mut Conns) -> [u64; 3] {
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
}

/// The client's own connection went away before `to`'s request was queued
/// on it: the client gets the refusal (counted) in its place.
pub(super) fn own_connection_lost(ctx: &mut Ctx<'_>, to: ReplyTo) {
    if let ReplyTo::Client { .. } = to {
        let reply = ctx
            .counters
            .refuse(ctx.view.wire(), &Refusal::OwnConnectionLost);
        ctx.conns.deliver(to, reply);
    }
}
