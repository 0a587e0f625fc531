//! Deadlines, and what a broken or finished connection leaves: closing it,
//! answering each request it carried with exactly one error, backing off.

use std::time::Instant;

use log::warn;
use mio::Token;

use super::{Ctx, Upstream};
use crate::worker::backend::{BackendConn, Release, ReplyTo};
use crate::worker::conns::Conn;
use crate::worker::error::{BackendError, Fault};
use crate::worker::server::ServerId;

impl Upstream {
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

    /// Closes connection `t` and returns it: the caller answers its requests.
    pub(super) fn drop_conn(&mut self, ctx: &mut Ctx<'_>, t: Token) -> Option<BackendConn> {
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
        let addr = b.addr().clone();
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

    pub(super) fn server_failed(&mut self, now: Instant, si: ServerId) {
        if let Some(srv) = self.servers.get_mut(si.0) {
            srv.failed(now);
        }
    }
}
