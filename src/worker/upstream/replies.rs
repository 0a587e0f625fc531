//! Reading connections: replies paired with their requests and handed to
//! clients, cluster redirects followed, subscriber connections' messages
//! and confirmations, and the replies' stats.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mio::Token;

use super::{Ctx, Upstream, lease};
use crate::config::Addr;
use crate::hashing::slots;
use crate::net::sock::ReadStatus;
use crate::protocol::pubsub;
use crate::protocol::resp;
use crate::worker::backend::{Pending, Release, ReplyTo, SubFrame};
use crate::worker::error::BackendError;
use crate::worker::server::ServerId;

/// Unsent messages past which a subscriber is closed: Redis's default
/// `client-output-buffer-limit pubsub` hard limit.
const PUBSUB_OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

/// Redirects one request may follow before the client gets the last one.
const MAX_REDIRECTS: u8 = 5;
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

impl Upstream {
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
        let unused = c.subs().unused_conns();
        let idle: Vec<Token> = unused
            .into_iter()
            .filter(|&tok| ctx.conns.backend(tok).is_none_or(|b| b.idle()))
            .collect();
        if idle.is_empty() {
            return;
        }
        if let Some(c) = ctx.conns.client(client) {
            c.subs_mut().drop_conns(&idle);
        }
        for tok in idle {
            self.revoke(ctx, tok, client);
        }
    }

    /// Queues an (un)subscribe command on a subscriber connection; the
    /// server's confirmation goes to `to`.
    pub(crate) fn send_sub(&mut self, ctx: &mut Ctx<'_>, t: Token, req: Bytes, to: ReplyTo) {
        let Some(b) = ctx.conns.backend(t) else {
            return lease::own_connection_lost(ctx, to);
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
                    let si = self.server_by_addr(per_protocol, &Addr::Tcp(addr), target);
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
}
