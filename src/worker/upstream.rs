//! The worker's side that faces the backends: queueing requests on
//! connections (opening them as needed), reading replies and handing them to
//! clients, following cluster redirects, and failing a connection's requests
//! with exactly one error each when it breaks.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::config::{CacheType, ClusterConfig};
use crate::net::sock::{self, ReadStatus};
use crate::protocol::resp;
use crate::routing::slots;
use crate::worker::backend::{Backend, Pending, ReplyTo, State};
use crate::worker::{
    ASKING, BACKOFF_MAX, BACKOFF_MIN, Conn, Fault, MAX_REDIRECTS, READ_BUDGET, Worker, backend_of,
    client_of, connect_outcome, split_token,
};

impl Worker {
    /// A backend's reply to one request: delivered, or in cluster mode
    /// followed when it is a redirect.
    pub(crate) fn on_reply(&mut self, p: Pending, reply: Bytes) {
        if self.route.is_cluster() && resp::is_error(&reply) {
            if let Some((ask, target)) = slots::redirect_target(&reply) {
                if p.redirects < MAX_REDIRECTS
                    && let ReplyTo::Client { token, .. } = p.to
                    && let Ok(addr) = target.parse::<SocketAddr>()
                {
                    if !ask {
                        // The table is stale: follow now, refresh soon.
                        self.kick_refresh();
                    }
                    let si = self.server_by_addr(addr, target);
                    if ask {
                        self.send_to(
                            si,
                            token,
                            Bytes::from_static(ASKING),
                            ReplyTo::Discard,
                            0,
                            None,
                        );
                    }
                    self.send_to(si, token, p.req, p.to, p.redirects + 1, None);
                    return;
                }
            } else if reply.starts_with(b"-CLUSTERDOWN") || reply.starts_with(b"-TRYAGAIN") {
                self.kick_refresh();
            }
        }
        self.deliver(p.to, reply);
    }

    // ---- backends ----

    /// Queues a request for route server `server`; `fallback` (a route
    /// server) takes it if `server` cannot (a read sent to a replica).
    pub(crate) fn send(
        &mut self,
        server: usize,
        fallback: Option<usize>,
        client: Token,
        req: Bytes,
        to: ReplyTo,
    ) {
        let Some(&si) = self.route_map.get(server) else {
            self.deliver(to, resp::error("ERR no server for this key"));
            return;
        };
        let fallback = fallback.and_then(|f| self.route_map.get(f).copied());
        self.send_to(si, client, req, to, 0, fallback);
    }

    /// Queues a request on the connection to server entry `si` that serves
    /// this client, connecting first if needed. A client always uses the same
    /// connection to a server, so its requests stay in order.
    pub(crate) fn send_to(
        &mut self,
        si: usize,
        client: Token,
        req: Bytes,
        to: ReplyTo,
        redirects: u8,
        fallback: Option<usize>,
    ) {
        let resp3 = client_of(&mut self.conns, client).is_some_and(|c| c.resp3);
        let ci = split_token(client).0 % self.cfg.server_connections;
        let Some(srv) = self.servers.get(si) else {
            self.deliver(to, resp::error("ERR no server for this key"));
            return;
        };
        let tok = match srv.conns[usize::from(resp3)].get(ci).copied().flatten() {
            Some(tok) => tok,
            None => {
                if let Some(at) = srv.retry_at
                    && self.now < at
                {
                    if let Some(f) = fallback {
                        return self.send_to(f, client, req, to, redirects, None);
                    }
                    let err = srv.last_error.clone();
                    self.pool.forward_error += 1;
                    self.deliver(to, err);
                    return;
                }
                match self.connect(si, resp3, ci) {
                    Ok(tok) => tok,
                    Err(e) => {
                        let err = resp::error(&format!("ERR {}", sock::error_text(&e)));
                        self.server_failed(si, err.clone());
                        if let Some(f) = fallback {
                            return self.send_to(f, client, req, to, redirects, None);
                        }
                        self.deliver(to, err);
                        return;
                    }
                }
            }
        };
        let now = self.now;
        if let ReplyTo::Client { .. } = to {
            let st = &mut self.servers[si].stats;
            st.requests += 1;
            st.request_bytes += req.len() as u64;
        }
        if let Some(b) = backend_of(&mut self.conns, tok) {
            b.enqueue(req, to, redirects, fallback, now);
            if !b.dirty {
                b.dirty = true;
                self.dirty_backends.push(tok);
            }
        }
    }

    /// Opens connection slot `ci` of the given protocol to server `si`.
    pub(crate) fn connect(&mut self, si: usize, resp3: bool, ci: usize) -> io::Result<Token> {
        let addr = self.servers[si].addr;
        let sock = TcpStream::connect(addr)?;
        self.tune(&sock);
        let now = self.now;
        let registry = self.poll.registry().try_clone()?;
        let backend = Backend::new(sock, addr, si, resp3, ci, now);
        let (t, conn) = self.insert(Conn::Backend(backend));
        let Conn::Backend(b) = conn else {
            unreachable!()
        };
        if let Err(e) = registry.register(&mut b.sock, t, Interest::READABLE | Interest::WRITABLE) {
            self.conns.remove(split_token(t).0);
            return Err(e);
        }
        if let Some(slot) = self.servers[si].conns[usize::from(resp3)].get_mut(ci) {
            *slot = Some(t);
        }
        for cmd in init_commands(&self.cfg, resp3) {
            if let Some(b) = backend_of(&mut self.conns, t) {
                b.enqueue(cmd, ReplyTo::Init, 0, None, now);
            }
        }
        debug!(
            "cluster {}: backend {} ({}): connecting",
            self.cfg.name, self.servers[si].name, addr
        );
        Ok(t)
    }

    pub(crate) fn backend_event(&mut self, t: Token, readable: bool, writable: bool, closed: bool) {
        let Some(b) = backend_of(&mut self.conns, t) else {
            return;
        };
        if b.state == State::Connecting {
            match connect_outcome(&b.sock) {
                Ok(true) => {
                    b.state = State::Ready;
                    let si = b.server;
                    if !b.dirty {
                        b.dirty = true;
                        self.dirty_backends.push(t);
                    }
                    let srv = &mut self.servers[si];
                    srv.retry_at = None;
                    srv.backoff = BACKOFF_MIN;
                }
                Ok(false) => return,
                Err(e) => {
                    self.fail_backend(t, Fault::Error, &sock::error_text(&e));
                    return;
                }
            }
        }
        if writable
            && let Some(b) = backend_of(&mut self.conns, t)
            && !b.dirty
            && !b.wq.is_empty()
        {
            b.dirty = true;
            self.dirty_backends.push(t);
        }
        if readable {
            self.backend_read(t, closed);
        }
    }

    pub(crate) fn backend_read(&mut self, t: Token, closed: bool) {
        let Some(b) = backend_of(&mut self.conns, t) else {
            return;
        };
        let status = sock::read_into(&mut b.sock, &mut b.rbuf, READ_BUDGET, !closed);
        let mut broken = None;
        loop {
            match b.scanner.scan(&b.rbuf) {
                Ok(Some(n)) => {
                    let reply = b.rbuf.split_to(n).freeze();
                    match b.inflight.pop_front() {
                        Some(p) => {
                            if let ReplyTo::Init = p.to
                                && resp::is_error(&reply)
                            {
                                broken = Some(
                                    String::from_utf8_lossy(&reply[1..reply.len() - 2])
                                        .into_owned(),
                                );
                                break;
                            }
                            self.replies.push((p, reply));
                        }
                        None => {
                            broken =
                                Some("Protocol error: unexpected reply from the server".into());
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        let idle = b.inflight.is_empty();
        let si = b.server;
        self.account_replies(si);
        let mut replies = std::mem::take(&mut self.replies);
        for (p, reply) in replies.drain(..) {
            self.on_reply(p, reply);
        }
        self.replies = replies;
        if let Some(msg) = broken {
            self.fail_backend(t, Fault::Error, &msg);
            return;
        }
        match status {
            ReadStatus::WouldBlock | ReadStatus::Budget
                if idle
                    && self
                        .servers
                        .get(si)
                        .is_some_and(|s| s.draining.contains(&t)) =>
            {
                // Replaced by a reload and now drained.
                self.drop_backend(t);
            }
            ReadStatus::WouldBlock => {}
            ReadStatus::Budget => self.resume.push(t),
            ReadStatus::Eof if idle => {
                // The server closed an idle connection (its timeout, a
                // restart): reconnect on the next request, no backoff.
                self.drop_backend(t);
            }
            ReadStatus::Eof => self.fail_backend(t, Fault::Eof, "Connection reset by peer"),
            ReadStatus::Error(e) => self.fail_backend(t, Fault::Error, &sock::error_text(&e)),
        }
    }

    /// Closes a backend connection and returns it: the caller answers its requests.
    pub(crate) fn drop_backend(&mut self, t: Token) -> Option<Backend> {
        backend_of(&mut self.conns, t)?;
        let Conn::Backend(mut b) = self.conns.remove(split_token(t).0).conn else {
            return None;
        };
        let _ = self.poll.registry().deregister(&mut b.sock);
        let Some(srv) = self.servers.get_mut(b.server) else {
            return Some(b);
        };
        if let Some(slot) = srv.conns[usize::from(b.resp3)].get_mut(b.conn_idx)
            && *slot == Some(t)
        {
            *slot = None;
        } else if let Some(i) = srv.draining.iter().position(|&d| d == t) {
            srv.draining.swap_remove(i);
            if srv.draining.is_empty() {
                // The newer connections held their writes for this one.
                let waiting: Vec<Token> = srv.tokens().collect();
                for w in waiting {
                    if let Some(nb) = backend_of(&mut self.conns, w)
                        && !nb.dirty
                        && !nb.wq.is_empty()
                    {
                        nb.dirty = true;
                        self.dirty_backends.push(w);
                    }
                }
            }
        }
        Some(b)
    }

    /// A backend connection broke: close it, answer each request it carried
    /// with exactly one error reply, and back off before reconnecting.
    pub(crate) fn fail_backend(&mut self, t: Token, fault: Fault, why: &str) {
        let Some(b) = self.drop_backend(t) else {
            return;
        };
        if let Some(srv) = self.servers.get_mut(b.server) {
            match fault {
                Fault::Eof => srv.stats.server_eof += 1,
                Fault::Timeout => srv.stats.server_timedout += 1,
                Fault::Error => srv.stats.server_err += 1,
            }
        }
        let err = resp::error(&format!("ERR {why}"));
        let srv_name = self
            .servers
            .get(b.server)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        warn!(
            "cluster {}: backend {} ({}): {why}; {} request(s) failed",
            self.cfg.name,
            srv_name,
            b.addr,
            b.inflight.len()
        );
        self.server_failed(b.server, err.clone());
        // As twemproxy counts them: every client request the failure answers.
        self.pool.forward_error += b
            .inflight
            .iter()
            .filter(|p| matches!(p.to, ReplyTo::Client { .. }) && p.fallback.is_none())
            .count() as u64;
        if self.route.is_cluster() {
            self.kick_refresh();
        }
        for p in b.inflight {
            match (p.fallback, p.to) {
                // A read on a failed replica is retried once on its master.
                (Some(f), ReplyTo::Client { token, .. }) => {
                    self.send_to(f, token, p.req, p.to, p.redirects, None);
                }
                _ => self.deliver(p.to, err.clone()),
            }
        }
    }

    pub(crate) fn server_failed(&mut self, si: usize, err: Bytes) {
        let now = self.now;
        if let Some(srv) = self.servers.get_mut(si) {
            srv.retry_at = Some(now + srv.backoff);
            srv.backoff = (srv.backoff * 2).min(BACKOFF_MAX);
            srv.last_error = err;
        }
    }

    /// Counts the replies just read from server `si`: responses, bytes,
    /// latency, and the slow log.
    pub(crate) fn account_replies(&mut self, si: usize) {
        if self.replies.is_empty() {
            return;
        }
        let now = Instant::now();
        let slower_than = self.cfg.slowlog_log_slower_than;
        let Some(srv) = self.servers.get_mut(si) else {
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
            self.pool.latency.observe(us);
            if slower_than.is_some_and(|t| us >= t) {
                let (peer, name) = match client_of(&mut self.conns, token) {
                    Some(c) => (Some(c.peer), c.name.clone()),
                    None => (None, None),
                };
                self.stats.slowlog.record(us, &p.req, peer, name);
            }
        }
    }

    /// Opens every connection to every server now rather than on first use.
    pub(crate) fn preconnect(&mut self) {
        let keys: Vec<usize> = self.servers.iter().map(|(si, _)| si).collect();
        for si in keys {
            for ci in 0..self.cfg.server_connections {
                if self.servers[si].conns[0][ci].is_none()
                    && let Err(e) = self.connect(si, false, ci)
                {
                    warn!(
                        "cluster {}: backend {}: preconnect: {e}",
                        self.cfg.name, self.servers[si].name
                    );
                }
            }
        }
    }
}

/// What a new backend connection is sent before any client request:
/// AUTH, HELLO 3 (RESP3 connections), SELECT and READONLY, as configured.
/// Their error replies fail the connection. A reload that changes them
/// replaces the open connections.
pub(crate) fn init_commands(cfg: &ClusterConfig, resp3: bool) -> Vec<Bytes> {
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
