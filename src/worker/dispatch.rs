//! What the worker does with one parsed request: answer it locally, refuse
//! it, or route it (whole, or split per backend) to the servers owning its keys.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use mio::Token;

use crate::hashing::hash::hash_tag_slice;
use crate::hashing::ketama::Distribution;
use crate::protocol::command::{
    self, Args, Block, Command, FanOut, KeyError, KeyPositions, Kind, Local, Sub, Tx,
};
use crate::protocol::fanout::{self, InfoMerge, Merge, VersionCell};
use crate::protocol::local;
use crate::protocol::multikey::{self, Gather, Plan};
use crate::protocol::pubsub;
use crate::protocol::resp;
use crate::routing::table::Place;
use crate::worker::admin;
use crate::worker::backend::{Release, ReplyTo};
use crate::worker::client::{Leaving, Multi, Pin, Session, Slot, SubKind, Subs};
use crate::worker::scripts::{self, Scripts};
use crate::worker::upstream::{Ctx, Upstream};
use bytes::{BufMut, BytesMut};

/// A request's arguments as ranges of its frame: no copy, no allocation.
struct FrameArgs<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
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

/// Redis's reply to an unknown command, byte for byte: the name and then each
/// argument quoted and followed by a space, printed as C strings (a NUL ends
/// one) and capped at 128 bytes in all, as Redis's `%.128s` / `%.*s` do.
fn unknown_command(args: &FrameArgs<'_>) -> Bytes {
    fn c_str(arg: &[u8], cap: usize) -> &[u8] {
        let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
        &arg[..end.min(cap)]
    }
    let mut quoted = Vec::new();
    let mut i = 1;
    while i < args.len() && quoted.len() < 128 {
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_str(args.get(i), room));
        quoted.extend_from_slice(b"' ");
        i += 1;
    }
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(c_str(args.get(0), 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    msg.extend_from_slice(&quoted);
    resp::error_bytes(&msg)
}

fn wrong_arity(cmd: &Command) -> Bytes {
    resp::error(&format!(
        "ERR wrong number of arguments for '{}' command",
        cmd.name
    ))
}

const QUEUED: &[u8] = b"+QUEUED\r\n";
const OTHER_SERVER: &str = "ERR a transaction through aster runs on one server, and these keys are on another: put the transaction's keys on one server with a hash tag";

/// One request's handling: it borrows the worker's connections, view and
/// counters (`ctx`) and its backend side (`up`) for the time it takes.
pub(crate) struct Dispatch<'c, 'a> {
    pub(crate) ctx: &'c mut Ctx<'a>,
    pub(crate) up: &'c mut Upstream,
    pub(crate) scripts: &'c mut Scripts,
}

impl Dispatch<'_, '_> {
    /// Answers the request locally, refuses it, or routes it (whole, or
    /// split per backend) to the servers owning its keys.
    pub(crate) fn request(&mut self, t: Token, frame: Bytes, ranges: &[Range<usize>]) {
        let args = FrameArgs {
            buf: &frame,
            ranges,
        };
        let Some(cmd) = command::lookup_request(&args) else {
            self.flag_transaction(t);
            return self.reply(t, unknown_command(&args));
        };
        if self.ctx.view.needs_auth()
            && !matches!(
                cmd.kind,
                Kind::Local(Local::Auth | Local::Hello | Local::Quit)
            )
            && self.ctx.conns.client(t).is_some_and(|c| !c.authed())
        {
            return self.reply(t, resp::error(local::NOAUTH));
        }
        if !cmd.check_arity(args.len()) {
            self.flag_transaction(t);
            return self.reply(t, wrong_arity(cmd));
        }
        // The client's state, read once for the checks below.
        let generation = self.ctx.view.generation();
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let seen = Seen {
            route_changed: !c.may_route(generation),
            resp3: c.resp3(),
            subscribed: !c.subs().is_empty(),
            confirming: c.confirming(),
            awaiting: c.awaiting(),
            session: match c.tx() {
                Session::Normal => SessionKind::Normal,
                Session::Watching(_) => SessionKind::Watching,
                Session::Multi(m) => SessionKind::Multi {
                    pinned: m.pin.is_some(),
                },
            },
        };
        // A RESP2 client with subscriptions may only manage them, as in Redis.
        if seen.subscribed && !seen.resp3 {
            match cmd.kind {
                Kind::PubSub(_) | Kind::Local(Local::Quit) => {}
                Kind::Local(Local::Ping) => {
                    let arg = if args.len() > 1 { args.get(1) } else { b"" };
                    let mut out = BytesMut::with_capacity(24 + arg.len());
                    out.put_slice(b"*2\r\n$4\r\npong\r\n");
                    resp::put_bulk(&mut out, arg);
                    return self.reply(t, out.freeze());
                }
                _ => {
                    let msg = format!(
                        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                        cmd.name
                    );
                    return self.reply(t, resp::error(&msg));
                }
            }
        }
        // A request that moves the client onto a connection of its own
        // (a blocking command, the first WATCH, the first keyed command of
        // a transaction) waits until its earlier requests, on shared
        // connections, are answered: they must run first.
        // So does any request while requests routed under an older route
        // table are unanswered: one of them may be for the same key.
        // And a request for a server after a subscription change not yet
        // confirmed (a RESP3 client's SUBSCRIBE then PUBLISH runs in that
        // order, as on one Redis).
        let after_confirmation = seen.confirming
            && !matches!(
                cmd.kind,
                Kind::PubSub(_) | Kind::Local(_) | Kind::Unsupported(_)
            );
        if (seen.route_changed
            || after_confirmation
            || (seen.awaiting && switches_connection(seen.session, cmd, &args)))
            && let Some(c) = self.ctx.conns.client(t)
        {
            c.defer(frame, ranges);
            return;
        }
        let queued = !matches!(
            cmd.kind,
            Kind::Transaction(Tx::Multi | Tx::Exec | Tx::Discard | Tx::Watch)
                | Kind::Local(Local::Quit)
        );
        if queued && matches!(seen.session, SessionKind::Multi { .. }) {
            return self.queue(t, cmd, &frame, &args);
        }
        match cmd.kind {
            Kind::Local(Local::Info) => self.info(t, &args),
            Kind::Local(Local::Hello) => self.hello(t, &args),
            Kind::Local(Local::Slowlog) => {
                let reply = admin::slowlog(self.ctx.counters.shared(), &args);
                self.reply(t, reply);
            }
            Kind::Local(l) => {
                let Some(c) = self.ctx.conns.client(t) else {
                    return;
                };
                let cfg = self.ctx.view.cfg();
                let ans = local::answer(l, &args, c.session(cfg.password.as_deref(), &cfg.users));
                c.push(Slot::Ready(ans.reply));
                if ans.close {
                    c.close_after_reply();
                }
                self.ctx.conns.mark_client(t);
            }
            Kind::Unsupported(why) => {
                let msg = format!(
                    "ERR {} is not supported by aster: {why}",
                    cmd.name.to_ascii_uppercase()
                );
                self.reply(t, resp::error(&msg));
            }
            Kind::Keyed(_) | Kind::Blocking(..) => self.keyed(t, cmd, &frame, &args),
            Kind::Transaction(tx) => self.transaction(t, tx, cmd, &frame, &args),
            Kind::PubSub(sub) => self.pubsub(t, sub, &args),
            Kind::FanOut(fan) => {
                self.script_cache_command(cmd, &args);
                self.fan_out(t, fan, &frame, &args)
            }
            Kind::Split(split) => {
                let positions = match cmd.key_positions(&args) {
                    Ok(p) => p,
                    Err(_) => return self.reply(t, wrong_arity(cmd)),
                };
                if positions.count() == 0 {
                    return self.reply(t, wrong_arity(cmd));
                }
                let random = self.ctx.view.random();
                let to_replica = cmd.readonly && self.ctx.view.cfg().read_from_slave;
                let plan = multikey::plan(split, &args, |k| {
                    let p = self.ctx.view.route().place(k, random)?;
                    let replica = to_replica.then(|| self.pick_replica(p, random)).flatten();
                    Some((p.group, replica.unwrap_or(p.server)))
                });
                match plan {
                    Err(_) => self.no_server(t),
                    Ok(Plan::Whole { group, server }) => {
                        let req = as_multibulk(&frame, &args);
                        let fallback = self.fallback(group, server);
                        self.forward(t, server, fallback, req);
                    }
                    Ok(Plan::Parts(parts, gather)) => {
                        let Some(c) = self.ctx.conns.client(t) else {
                            return;
                        };
                        let seq = c.push(Slot::Gather(Box::new(gather)));
                        self.ctx.counters.pool.fragments += parts.len() as u64;
                        for (i, part) in parts.into_iter().enumerate() {
                            let to = ReplyTo::Client {
                                token: t,
                                seq,
                                part: i as u32,
                            };
                            let fallback = self.fallback(part.group, part.server);
                            self.send(t, part.server, fallback, part.req, to);
                        }
                    }
                }
            }
        }
    }

    /// A command sent whole to the one server that owns all of its keys.
    fn keyed(&mut self, t: Token, cmd: &Command, frame: &Bytes, args: &FrameArgs<'_>) {
        let positions = match cmd.key_positions(args) {
            Ok(p) => p,
            Err(KeyError::WrongArity) => return self.reply(t, wrong_arity(cmd)),
            // A bad key count or stream list: Redis rejects the request
            // before touching any key, so a backend answers it with its own
            // error (the texts differ per command and per Redis version).
            Err(_) => return self.forward_invalid(t, frame, args),
        };
        let Some(first) = positions.first_key() else {
            if !cmd.runs_code() {
                // SINTERCARD 0 ..., ZUNION 0 ..., OBJECT HELP: Redis answers
                // these with an error or a help text, never reading a key.
                return self.forward_invalid(t, frame, args);
            }
            let msg = format!(
                "ERR {} with no keys cannot be routed by aster: name at least one key",
                cmd.name.to_ascii_uppercase()
            );
            return self.reply(t, resp::error(&msg));
        };
        let random = self.ctx.view.random();
        let place = match self.place_keys(cmd, args, positions, first, random) {
            Ok(p) => p,
            Err(reply) => return self.reply(t, reply),
        };
        if let Some(block) = cmd.block(args) {
            return self.blocking(t, place.server, as_multibulk(frame, args), block);
        }
        let mut server = place.server;
        if cmd.readonly && self.ctx.view.cfg().read_from_slave {
            server = self.pick_replica(place, random).unwrap_or(server);
        }
        let req = self.script_request(cmd, args, server, as_multibulk(frame, args));
        let fallback = self.fallback(place.group, server);
        self.forward(t, server, fallback, req);
    }

    /// EVAL tells the worker's script cache the body and the server that
    /// now holds it; an EVALSHA of a script the cache knows goes as EVAL to
    /// a server not known to hold it (`scripts.rs`). A body that does not
    /// compile is cached too: its EVALSHA elsewhere then gets the compile
    /// error, where Redis says NOSCRIPT and the client's EVAL would get it.
    fn script_request(
        &mut self,
        cmd: &Command,
        args: &FrameArgs<'_>,
        server: usize,
        req: Bytes,
    ) -> Bytes {
        if !cmd.runs_code() {
            return req;
        }
        let Some(at) = self.ctx.view.route().servers.get(server).map(|n| n.addr) else {
            return req;
        };
        let flushes = &self.ctx.counters.shared().script_flushes;
        self.scripts.sync(flushes.load(Ordering::Acquire));
        match cmd.name {
            "eval" | "eval_ro" => {
                self.scripts.ran(args.get(1), at);
                req
            }
            "evalsha" | "evalsha_ro" => match self.scripts.body_for(args.get(1), at) {
                Some(body) => scripts::as_eval(args, &body),
                None => req,
            },
            _ => req,
        }
    }

    /// SCRIPT LOAD teaches the script cache a body; SCRIPT FLUSH empties
    /// every worker's (each before its next use), so an EVALSHA after it
    /// gets NOSCRIPT, as from Redis.
    fn script_cache_command(&mut self, cmd: &Command, args: &FrameArgs<'_>) {
        let flushes = &self.ctx.counters.shared().script_flushes;
        match cmd.name {
            "script|load" => {
                self.scripts.sync(flushes.load(Ordering::Acquire));
                self.scripts.loaded(args.get(2));
            }
            "script|flush" => self
                .scripts
                .sync(flushes.fetch_add(1, Ordering::AcqRel) + 1),
            _ => {}
        }
    }

    /// Where keys `first` and the rest of `positions` go: one place, or the
    /// error reply when they span groups (servers; slots in cluster mode).
    fn place_keys(
        &self,
        cmd: &Command,
        args: &FrameArgs<'_>,
        positions: KeyPositions,
        first: usize,
        random: u32,
    ) -> Result<Place, Bytes> {
        let route = self.ctx.view.route();
        let Some(place) = route.place(args.get(first), random) else {
            return Err(resp::error(if route.is_cluster() {
                "CLUSTERDOWN Hash slot not served"
            } else {
                "ERR no server is available for this key"
            }));
        };
        for k in positions.iter().skip(1) {
            let other = route.place(args.get(k), random);
            if other.map(|p| p.group) != Some(place.group) {
                return Err(resp::error(&if route.is_cluster() {
                    "CROSSSLOT Keys in request don't hash to the same slot".to_owned()
                } else {
                    format!(
                        "ERR keys of {} map to different servers; put them on one server with a hash tag",
                        cmd.name.to_ascii_uppercase()
                    )
                }));
            }
        }
        self.sort_patterns_here(cmd, args, place)?;
        Ok(place)
    }

    /// SORT's BY and GET patterns, sharding mode: every key a pattern forms
    /// must live on the sorted key's server, or SORT would find none of
    /// those kept elsewhere and answer wrongly. They do when the pattern has
    /// a hash tag before its '*' that maps there (the element replaces the
    /// '*', so the tag stays the same), as Redis Cluster requires a slot's
    /// tag. In cluster mode the node checks its patterns itself.
    fn sort_patterns_here(
        &self,
        cmd: &Command,
        args: &FrameArgs<'_>,
        place: Place,
    ) -> Result<(), Bytes> {
        let route = self.ctx.view.route();
        if route.is_cluster() || route.servers.len() < 2 {
            return Ok(());
        }
        let cfg = self.ctx.view.cfg();
        for (option, pattern) in cmd.sort_patterns(args) {
            let star = pattern
                .iter()
                .position(|&b| b == b'*')
                .unwrap_or(pattern.len());
            let prefix = &pattern[..star];
            let tagged = hash_tag_slice(prefix, cfg.hash_tag).len() < prefix.len();
            let here = tagged
                && cfg.distribution != Distribution::Random
                && route
                    .place(prefix, 0)
                    .is_some_and(|p| p.group == place.group);
            if !here {
                return Err(resp::error(&format!(
                    "ERR {} option of SORT denied by aster when keys formed by the pattern may be on another server: put the sorted key's hash tag in the pattern, before its '*'",
                    option.name()
                )));
            }
        }
        Ok(())
    }

    /// A blocking command: on a backend connection of the client's own, so
    /// no other client waits behind it; the client's later requests wait
    /// until it is answered, as Redis does not read a blocked client's.
    fn blocking(&mut self, t: Token, server: usize, req: Bytes, block: Block) {
        let Some((seq, to)) = self.waiting_slot(t) else {
            return;
        };
        match self.up.lease(self.ctx, server, t, Release::WhenIdle) {
            Ok(conn) => {
                if let Some(c) = self.ctx.conns.client(t) {
                    c.block_on(seq, conn);
                }
                self.up.send_leased(self.ctx, conn, req, to, Some(block));
            }
            Err(reply) => self.ctx.conns.deliver(to, reply),
        }
    }

    /// MULTI, EXEC, DISCARD, WATCH and UNWATCH (UNWATCH inside MULTI is
    /// queued like any command). A transaction runs on one server, on a
    /// connection of the client's own: the first key (of WATCH or of a
    /// queued command) picks it.
    fn transaction(
        &mut self,
        t: Token,
        tx: Tx,
        cmd: &Command,
        frame: &Bytes,
        args: &FrameArgs<'_>,
    ) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let session = c.take_session();
        let req = as_multibulk(frame, args);
        match (tx, session) {
            (Tx::Multi, Session::Multi(m)) => {
                c.set_session(Session::Multi(m));
                self.reply(t, resp::error("ERR MULTI calls can not be nested"));
            }
            (Tx::Multi, Session::Watching(pin)) => {
                c.set_session(Session::Multi(Multi {
                    pin: Some(pin),
                    ..Multi::default()
                }));
                self.pinned(t, pin.conn, req);
            }
            (Tx::Multi, Session::Normal) => {
                c.set_session(Session::Multi(Multi::default()));
                self.reply(t, Bytes::from_static(resp::OK));
            }
            (Tx::Exec, Session::Multi(m)) => match (m.aborted, m.pin) {
                (true, pin) => {
                    if let Some(pin) = pin {
                        let discard = resp::command(&[b"DISCARD"]);
                        self.up
                            .send_leased(self.ctx, pin.conn, discard, ReplyTo::Discard, None);
                        self.up.release_when_idle(self.ctx, pin.conn);
                    }
                    self.reply(
                        t,
                        resp::error("EXECABORT Transaction discarded because of previous errors."),
                    );
                }
                (false, Some(pin)) => self.last_on_pin(t, pin, req),
                (false, None) => {
                    // Nothing reached a server: the proxy runs what it queued.
                    let mut out = format!("*{}\r\n", m.queued.len()).into_bytes();
                    for (_, answer) in &m.queued {
                        out.extend_from_slice(answer);
                    }
                    self.reply(t, Bytes::from(out));
                }
            },
            (Tx::Discard, Session::Multi(m)) => match m.pin {
                Some(pin) => self.last_on_pin(t, pin, req),
                None => self.reply(t, Bytes::from_static(resp::OK)),
            },
            (Tx::Exec | Tx::Discard, other) => {
                c.set_session(other);
                let name = cmd.name.to_ascii_uppercase();
                self.reply(t, resp::error(&format!("ERR {name} without MULTI")));
            }
            (Tx::Watch, Session::Multi(m)) => {
                c.set_session(Session::Multi(m));
                self.reply(t, resp::error("ERR WATCH inside MULTI is not allowed"));
            }
            (Tx::Watch, other) => self.watch(t, cmd, args, req, other),
            (Tx::Unwatch, Session::Watching(pin)) => self.last_on_pin(t, pin, req),
            (Tx::Unwatch, other) => {
                c.set_session(other);
                self.reply(t, Bytes::from_static(resp::OK));
            }
        }
    }

    /// EXEC, DISCARD or UNWATCH on the transaction's connection: its reply
    /// ends the transaction state. The client's later requests wait for it
    /// (they must see what EXEC wrote), and the connection goes back to the
    /// pool once it is read.
    fn last_on_pin(&mut self, t: Token, pin: Pin, req: Bytes) {
        let seq = self.pinned(t, pin.conn, req);
        if let (Some(c), Some(seq)) = (self.ctx.conns.client(t), seq) {
            c.await_on(seq, pin.conn);
        }
        self.up.release_when_idle(self.ctx, pin.conn);
    }

    /// WATCH outside MULTI: its keys pick the transaction's server (the
    /// first WATCH), or must be on it (later ones).
    fn watch(
        &mut self,
        t: Token,
        cmd: &Command,
        args: &FrameArgs<'_>,
        req: Bytes,
        session: Session,
    ) {
        let random = self.ctx.view.random();
        let place = cmd
            .key_positions(args)
            .map_err(|_| wrong_arity(cmd))
            .and_then(|p| self.place_keys(cmd, args, p, 1, random));
        let restore = |d: &mut Self, s: Session| {
            if let Some(c) = d.ctx.conns.client(t) {
                c.set_session(s);
            }
        };
        let place = match place {
            Ok(p) => p,
            Err(reply) => {
                restore(self, session);
                return self.reply(t, reply);
            }
        };
        match session {
            Session::Watching(pin) if pin.server == place.server => {
                restore(self, Session::Watching(pin));
                self.pinned(t, pin.conn, req);
            }
            Session::Watching(pin) => {
                restore(self, Session::Watching(pin));
                self.reply(t, resp::error(OTHER_SERVER));
            }
            _ => match self.up.lease(self.ctx, place.server, t, Release::Held) {
                Ok(conn) => {
                    let pin = Pin {
                        server: place.server,
                        conn,
                    };
                    restore(self, Session::Watching(pin));
                    self.pinned(t, conn, req);
                }
                Err(reply) => {
                    restore(self, Session::Normal);
                    self.reply(t, reply);
                }
            },
        }
    }

    /// A command inside MULTI. Keyed ones go to the transaction's server
    /// (picking it, for the first); PING, ECHO, TIME and UNWATCH are queued
    /// by the proxy until then. Anything else is refused, and EXEC will
    /// answer EXECABORT, as Redis does for a command it cannot queue.
    fn queue(&mut self, t: Token, cmd: &Command, frame: &Bytes, args: &FrameArgs<'_>) {
        let req = as_multibulk(frame, args);
        match cmd.kind {
            Kind::Local(l @ (Local::Ping | Local::Echo | Local::Time)) => {
                let Some(c) = self.ctx.conns.client(t) else {
                    return;
                };
                let cfg = self.ctx.view.cfg();
                let answer = local::answer(l, args, c.session(cfg.password.as_deref(), &cfg.users));
                self.queue_local(t, req, answer.reply);
            }
            Kind::Transaction(Tx::Unwatch) => {
                self.queue_local(t, req, Bytes::from_static(resp::OK))
            }
            Kind::Keyed(_) | Kind::Blocking(..) | Kind::Split(_) => {
                let random = self.ctx.view.random();
                let place = match cmd.key_positions(args) {
                    Ok(p) => match p.first_key() {
                        Some(first) => self.place_keys(cmd, args, p, first, random),
                        None => Err(resp::error(&format!(
                            "ERR {} without a key cannot be queued by aster: a transaction runs on the server of its keys",
                            cmd.name.to_ascii_uppercase()
                        ))),
                    },
                    Err(_) => Err(wrong_arity(cmd)),
                };
                match place {
                    Ok(place) => {
                        let req = self.script_request(cmd, args, place.server, req);
                        self.queue_keyed(t, place.server, req)
                    }
                    Err(reply) => self.refuse_queued(t, reply),
                }
            }
            Kind::Unsupported(why) => {
                let msg = format!(
                    "ERR {} is not supported by aster: {why}",
                    cmd.name.to_ascii_uppercase()
                );
                self.refuse_queued(t, resp::error(&msg));
            }
            _ => {
                let msg = format!(
                    "ERR {} cannot be queued in a transaction by aster",
                    cmd.name.to_ascii_uppercase()
                );
                self.refuse_queued(t, resp::error(&msg));
            }
        }
    }

    /// A command the proxy can answer, queued: sent to the server with the
    /// rest once one is picked, else answered by EXEC itself.
    fn queue_local(&mut self, t: Token, req: Bytes, answer: Bytes) {
        let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) else {
            return;
        };
        match m.pin {
            Some(pin) => {
                self.pinned(t, pin.conn, req);
            }
            None => {
                m.queued.push((req, answer));
                self.reply(t, Bytes::from_static(QUEUED));
            }
        }
    }

    fn queue_keyed(&mut self, t: Token, server: usize, req: Bytes) {
        let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) else {
            return;
        };
        match m.pin {
            Some(pin) if pin.server == server => {
                self.pinned(t, pin.conn, req);
            }
            Some(_) => self.refuse_queued(t, resp::error(OTHER_SERVER)),
            None => {
                let queued = std::mem::take(&mut m.queued);
                let conn = match self.up.lease(self.ctx, server, t, Release::Held) {
                    Ok(conn) => conn,
                    Err(reply) => return self.refuse_queued(t, reply),
                };
                // The client saw +OK and +QUEUED already: these replies are
                // the server's own, dropped.
                let multi = resp::command(&[b"MULTI"]);
                self.up
                    .send_leased(self.ctx, conn, multi, ReplyTo::Discard, None);
                for (frame, _) in queued {
                    self.up
                        .send_leased(self.ctx, conn, frame, ReplyTo::Discard, None);
                }
                if let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) {
                    m.pin = Some(Pin { server, conn });
                }
                self.pinned(t, conn, req);
            }
        }
    }

    /// A command refused inside MULTI: answered with its error, and the
    /// transaction is doomed (EXEC answers EXECABORT).
    fn refuse_queued(&mut self, t: Token, reply: Bytes) {
        self.flag_transaction(t);
        self.reply(t, reply);
    }

    /// Inside MULTI, an unknown command or a wrong arity dooms the
    /// transaction, as in Redis.
    fn flag_transaction(&mut self, t: Token) {
        if let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) {
            m.aborted = true;
        }
    }

    /// Sends a request on the client's own connection; returns its slot.
    fn pinned(&mut self, t: Token, conn: mio::Token, req: Bytes) -> Option<u64> {
        let (seq, to) = self.waiting_slot(t)?;
        self.up.send_leased(self.ctx, conn, req, to, None);
        Some(seq)
    }

    /// The client's next reply slot, waiting for a backend: its number, and
    /// where its reply goes.
    fn waiting_slot(&mut self, t: Token) -> Option<(u64, ReplyTo)> {
        let seq = self.ctx.conns.client(t)?.push(Slot::Waiting);
        Some((
            seq,
            ReplyTo::Client {
                token: t,
                seq,
                part: 0,
            },
        ))
    }

    /// SUBSCRIBE and friends. Subscriptions are made on connections of the
    /// client's own, on the servers `sub_targets` names. The proxy confirms
    /// each itself, counting all the client's subscriptions as one server
    /// would, once every server involved has confirmed it: then the
    /// subscription is active (or gone) everywhere.
    fn pubsub(&mut self, t: Token, sub: Sub, args: &FrameArgs<'_>) {
        let subscribe = matches!(sub, Sub::Subscribe | Sub::Psubscribe | Sub::Ssubscribe);
        if subscribe {
            return self.subscribe(t, sub, args);
        }
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let resp3 = c.resp3();
        let names: Vec<Bytes> = if args.len() > 1 {
            (1..args.len())
                .map(|i| Bytes::copy_from_slice(args.get(i)))
                .collect()
        } else {
            subs_of(c.subs_mut(), sub).keys().cloned().collect()
        };
        if names.is_empty() {
            let count = counted(c.subs(), sub);
            return self.reply(t, confirmation(resp3, sub.name(), None, count));
        }
        for name in names {
            let Some(c) = self.ctx.conns.client(t) else {
                return;
            };
            let tokens = subs_of(c.subs_mut(), sub).remove(&name).unwrap_or_default();
            let count = counted(c.subs(), sub);
            let own = confirmation(resp3, sub.name(), Some(&name), count);
            let seq = self.confirm_after(t, sub, &name, &tokens, own);
            if let (Some(seq), Some(c)) = (seq, self.ctx.conns.client(t)) {
                let kind = match sub {
                    Sub::Unsubscribe => SubKind::Channel,
                    Sub::Punsubscribe => SubKind::Pattern,
                    _ => SubKind::Shard,
                };
                c.subs_mut().leaving.push(Leaving {
                    seq,
                    kind,
                    name,
                    conns: tokens,
                });
            }
        }
        // Connections no subscription needs any more close once their
        // servers have confirmed.
        self.up.close_unused_sub_conns(self.ctx, t);
    }

    /// SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE: every connection is found (or
    /// opened) first, so one is applied whole or refused whole, as Redis
    /// never half-applies one.
    fn subscribe(&mut self, t: Token, sub: Sub, args: &FrameArgs<'_>) {
        let Some(resp3) = self.ctx.conns.client(t).map(|c| c.resp3()) else {
            return;
        };
        if sub == Sub::Ssubscribe && self.ctx.view.route().is_cluster() {
            let slot = |a: &[u8]| crate::hashing::slots::slot_of(a);
            let first = slot(args.get(1));
            if (2..args.len()).any(|i| slot(args.get(i)) != first) {
                let msg = "CROSSSLOT Keys in request don't hash to the same slot";
                return self.reply(t, resp::error(msg));
            }
        }
        let mut planned = Vec::with_capacity(args.len() - 1);
        let mut opened = Vec::new();
        for i in 1..args.len() {
            let name = Bytes::copy_from_slice(args.get(i));
            let mut tokens = Vec::new();
            for server in self.sub_targets(sub, &name) {
                match self.sub_conn(t, server) {
                    Ok((tok, new)) => {
                        tokens.push(tok);
                        if new {
                            opened.push(tok);
                        }
                    }
                    Err(reply) => {
                        self.drop_sub_conns(t, &opened);
                        return self.reply(t, reply);
                    }
                }
            }
            if tokens.is_empty() {
                self.drop_sub_conns(t, &opened);
                return self.no_server(t);
            }
            planned.push((name, tokens));
        }
        for (name, tokens) in planned {
            let Some(c) = self.ctx.conns.client(t) else {
                return;
            };
            subs_of(c.subs_mut(), sub).insert(name.clone(), tokens.clone());
            let count = counted(c.subs(), sub);
            let own = confirmation(resp3, sub.name(), Some(&name), count);
            self.confirm_after(t, sub, &name, &tokens, own);
        }
    }

    /// Sends `sub name` on each of `tokens`; the client gets `own`, its
    /// confirmation, once every one of those servers has confirmed (at once
    /// when there is none: an unsubscribe from nothing).
    /// Returns the confirmation's slot, when it waits for servers.
    fn confirm_after(
        &mut self,
        t: Token,
        sub: Sub,
        name: &[u8],
        tokens: &[Token],
        own: Bytes,
    ) -> Option<u64> {
        if tokens.is_empty() {
            self.reply(t, own);
            return None;
        }
        let c = self.ctx.conns.client(t)?;
        let seq = c.push(Slot::Confirm {
            reply: own,
            awaiting: tokens.len(),
            before: Vec::new(),
        });
        let upper = sub.name().to_ascii_uppercase();
        for (part, &tok) in tokens.iter().enumerate() {
            let cmd = resp::command(&[upper.as_bytes(), name]);
            let to = ReplyTo::Client {
                token: t,
                seq,
                part: part as u32,
            };
            self.up.send_sub(self.ctx, tok, cmd, to);
        }
        Some(seq)
    }

    /// The route servers a subscription is made on. A classic channel lives
    /// where its name hashes (cluster mode: its slot's master), where
    /// PUBLISH sends it, so PUBLISH counts its subscribers; a shard channel
    /// on its slot's master. Every server (master) publishes its own
    /// keyspace notifications, so a keyspace channel is subscribed on each,
    /// and so is a pattern in redis mode, where nothing carries a message
    /// from one server to another. In cluster mode the bus brings every
    /// published message to every node: a pattern is on one node (the
    /// master of slot 0), unless it may match keyspace channels, and then on
    /// every master, that one first (its home: `Subs::wants`).
    fn sub_targets(&self, sub: Sub, name: &[u8]) -> Vec<usize> {
        let route = self.ctx.view.route();
        let random = self.ctx.view.random();
        let everywhere = match sub {
            Sub::Subscribe => pubsub::is_keyspace_channel(name),
            Sub::Psubscribe => !route.is_cluster() || pubsub::may_match_keyspace(name),
            _ => false,
        };
        let key: &[u8] = match sub {
            Sub::Psubscribe => b"",
            _ => name,
        };
        let home = route.place(key, random).map(|p| p.server);
        if !everywhere {
            return home.into_iter().collect();
        }
        let mut all = route.keyspace_servers();
        if let Some(h) = home
            && let Some(i) = all.iter().position(|&s| s == h)
        {
            all[..=i].rotate_right(1);
        }
        all
    }

    /// Closes subscriber connections just opened for a SUBSCRIBE that is
    /// refused after all.
    fn drop_sub_conns(&mut self, t: Token, opened: &[Token]) {
        if let Some(c) = self.ctx.conns.client(t) {
            c.subs_mut().conns.retain(|(_, tok)| !opened.contains(tok));
        }
        for &tok in opened {
            self.up.revoke(self.ctx, tok, t);
        }
    }

    /// The client's subscriber connection to route server `server`, and
    /// whether it was opened now.
    fn sub_conn(&mut self, t: Token, server: usize) -> Result<(Token, bool), Bytes> {
        let known = self.ctx.conns.client(t).and_then(|c| {
            c.subs()
                .conns
                .iter()
                .find(|(s, _)| *s == server)
                .map(|&(_, tok)| tok)
        });
        if let Some(tok) = known
            && self.ctx.conns.backend(tok).is_some()
        {
            return Ok((tok, false));
        }
        let tok = self.up.lease(self.ctx, server, t, Release::Subscriber)?;
        if let Some(c) = self.ctx.conns.client(t) {
            let conns = &mut c.subs_mut().conns;
            conns.retain(|(s, _)| *s != server);
            conns.push((server, tok));
        }
        Ok((tok, true))
    }

    /// A command about the whole keyspace, the script cache or the function
    /// libraries: one sub-request per server (cluster mode: per master, and
    /// per replica too for the script cache, which Redis 7 does not
    /// replicate while EVALSHA_RO may be read from a replica), SCAN's to the
    /// one its cursor names, COMMAND's to any live one, merged by a `Gather`.
    fn fan_out(&mut self, t: Token, fan: FanOut, frame: &Bytes, args: &FrameArgs<'_>) {
        let route = self.ctx.view.route();
        let mut servers = if fan.every_node() {
            (0..route.servers.len()).collect()
        } else {
            route.keyspace_servers()
        };
        if fan == FanOut::AnyOne {
            // Any server will do: one that is not backing off, if any is.
            let (up, now) = (&*self.up, self.ctx.now);
            if servers.iter().any(|&s| up.usable(now, s)) {
                servers.retain(|&s| up.usable(now, s));
            }
        }
        if servers.is_empty() {
            return self.no_server(t);
        }
        let req = as_multibulk(frame, args);
        let random = self.ctx.view.random();
        let plan = match fanout::plan(fan, args, &req, servers.len(), random) {
            Ok(p) => p,
            Err(reply) => return self.reply(t, reply),
        };
        self.send_plan(t, &servers, plan);
    }

    /// Sends each part of a fan-out to its server (`plan` names positions
    /// in `servers`), into one `Gather` slot.
    fn send_plan(&mut self, t: Token, servers: &[usize], plan: fanout::Plan) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let gather = Gather::fan_out(plan.merge, plan.parts.len());
        let seq = c.push(Slot::Gather(Box::new(gather)));
        self.ctx.counters.pool.fragments += plan.parts.len() as u64;
        for (i, (at, req)) in plan.parts.into_iter().enumerate() {
            let to = ReplyTo::Client {
                token: t,
                seq,
                part: i as u32,
            };
            // `at` < servers.len(): plan only names positions in the list.
            let server = servers.get(at).copied().unwrap_or(usize::MAX);
            self.send(t, server, None, req, to);
        }
    }

    /// INFO: aster's own sections, answered at once, unless the servers'
    /// version (Server section) or keyspace is wanted: then every server
    /// (every master) is asked, and their replies complete aster's.
    fn info(&mut self, t: Token, args: &FrameArgs<'_>) {
        let resp3 = self.ctx.conns.client(t).is_some_and(|c| c.resp3());
        let (up, conns) = (&*self.up, &mut *self.ctx.conns);
        self.ctx
            .counters
            .publish_now(self.ctx.now, self.ctx.view.index(), || up.snapshot(conns));
        let (up, now) = (&*self.up, self.ctx.now);
        let usable = |i| up.usable(now, i);
        let shared = self.ctx.counters.shared();
        let own = admin::info(self.ctx.view, shared, usable, args);
        let Some((req, keyspace)) = admin::backend_request(args) else {
            return self.reply(t, resp::verbatim(own.as_bytes(), resp3));
        };
        let merge = Merge::Info(Box::new(InfoMerge {
            own,
            keyspace,
            resp3,
            version: VersionCell(Arc::clone(&shared.backend_version)),
        }));
        self.ask_every_server(t, req, merge);
    }

    /// HELLO: the client's state changes at once; the reply names the
    /// servers' version, which they are asked for while it is not known.
    fn hello(&mut self, t: Token, args: &FrameArgs<'_>) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let cfg = self.ctx.view.cfg();
        let hello = match local::hello(args, c.session(cfg.password.as_deref(), &cfg.users)) {
            Ok(h) => h,
            Err(reply) => return self.reply(t, reply),
        };
        let version = VersionCell(Arc::clone(&self.ctx.counters.shared().backend_version));
        match version.get() {
            0 => {
                let req = resp::command(&[b"INFO", b"server"]);
                self.ask_every_server(t, req, Merge::Hello { hello, version });
            }
            v => self.reply(t, local::hello_reply(hello, &local::version_text(v))),
        }
    }

    /// Sends `req` to every server (every master), their replies merged.
    fn ask_every_server(&mut self, t: Token, req: Bytes, merge: Merge) {
        let servers = self.ctx.view.route().keyspace_servers();
        if servers.is_empty() {
            // No server to ask (a cluster serving no slot): what is known.
            return self.reply(t, fanout::merge(&merge, &[]));
        }
        let plan = fanout::Plan {
            parts: (0..servers.len()).map(|i| (i, req.clone())).collect(),
            merge,
        };
        self.send_plan(t, &servers, plan);
    }

    /// A request with no key to route by that Redis answers without touching
    /// a key: sent to the master of the empty key's shard, so the client gets
    /// Redis's own reply.
    fn forward_invalid(&mut self, t: Token, frame: &Bytes, args: &FrameArgs<'_>) {
        let random = self.ctx.view.random();
        let Some(place) = self.ctx.view.route().place(b"", random) else {
            return self.no_server(t);
        };
        let req = as_multibulk(frame, args);
        self.forward(t, place.server, None, req);
    }

    /// For a read sent to a replica: its master, to retry the read on if the
    /// replica's connection fails. Writes and master reads have none.
    fn fallback(&self, group: u64, server: usize) -> Option<usize> {
        self.ctx
            .view
            .route()
            .master_of(group)
            .filter(|&m| m != server)
    }

    /// A replica of the key's shard that is not backing off, spread by
    /// `random`; `None` sends the read to the master.
    fn pick_replica(&self, place: crate::routing::table::Place, random: u32) -> Option<usize> {
        let replicas = self.ctx.view.route().replicas(place);
        let n = replicas.len();
        (0..n)
            .map(|i| replicas[(random as usize + i) % n])
            .find(|&r| self.up.usable(self.ctx.now, r))
    }

    fn no_server(&mut self, t: Token) {
        let msg = if self.ctx.view.route().is_cluster() {
            "CLUSTERDOWN Hash slot not served"
        } else {
            "ERR no server is available for this key"
        };
        self.reply(t, resp::error(msg));
    }

    fn forward(&mut self, t: Token, server: usize, fallback: Option<usize>, req: Bytes) {
        let Some((_, to)) = self.waiting_slot(t) else {
            return;
        };
        self.send(t, server, fallback, req, to);
    }

    /// Sends (part of) a request to route server `server`, on the shared
    /// connection that serves this client, or on its WATCH connection when
    /// the client is watching keys there (or `server` is a replica of that
    /// master): between WATCH and EXEC everything a client sends to the
    /// watched server runs there in its order, so its own write to a watched
    /// key aborts the transaction as on one Redis.
    fn send(&mut self, t: Token, server: usize, fallback: Option<usize>, req: Bytes, to: ReplyTo) {
        let pin = match self.ctx.conns.client(t).map(|c| c.tx()) {
            Some(Session::Watching(pin)) => Some(*pin),
            _ => None,
        };
        match pin {
            Some(pin) if pin.server == server || fallback == Some(pin.server) => {
                self.up.send_leased(self.ctx, pin.conn, req, to, None)
            }
            _ => self.up.send(self.ctx, server, fallback, t, req, to),
        }
    }

    fn reply(&mut self, t: Token, reply: Bytes) {
        self.ctx.conns.reply(t, reply);
    }
}

/// Inline requests are re-encoded before forwarding, so a backend sees one
/// framing; multibulk frames go through untouched (a shared slice, no copy).
fn as_multibulk(frame: &Bytes, args: &FrameArgs<'_>) -> Bytes {
    if frame.first() == Some(&b'*') {
        return frame.clone();
    }
    let parts: Vec<&[u8]> = (0..args.len()).map(|i| args.get(i)).collect();
    resp::command(&parts)
}

/// A (un)subscribe confirmation, as one server sends it: the kind, the
/// channel or pattern (nil when there was none to unsubscribe), and the
/// client's subscription count. A RESP3 client gets a push.
fn confirmation(resp3: bool, kind: &str, name: Option<&[u8]>, count: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + name.map_or(0, <[u8]>::len));
    out.put_slice(if resp3 { b">3\r\n" } else { b"*3\r\n" });
    resp::put_bulk(&mut out, kind.as_bytes());
    match name {
        Some(n) => resp::put_bulk(&mut out, n),
        None => out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
    }
    resp::put_int(&mut out, b':', count as i64);
    out.freeze()
}

/// The client's subscriptions of the kind `sub` makes or removes.
fn subs_of(subs: &mut Subs, sub: Sub) -> &mut BTreeMap<Bytes, Vec<Token>> {
    match sub {
        Sub::Subscribe | Sub::Unsubscribe => &mut subs.channels,
        Sub::Psubscribe | Sub::Punsubscribe => &mut subs.patterns,
        Sub::Ssubscribe | Sub::Sunsubscribe => &mut subs.shard,
    }
}

/// The count a confirmation of `sub` carries: shard channels apart, as
/// Redis counts them.
fn counted(subs: &Subs, sub: Sub) -> usize {
    match sub {
        Sub::Ssubscribe | Sub::Sunsubscribe => subs.shard.len(),
        _ => subs.count(),
    }
}

/// What `Dispatch::request` reads of the client once, before routing.
struct Seen {
    /// The route table changed while requests of its own are unanswered.
    route_changed: bool,
    resp3: bool,
    subscribed: bool,
    /// (Un)subscribe confirmations still awaited from servers.
    confirming: bool,
    /// Requests of its own still unanswered.
    awaiting: bool,
    session: SessionKind,
}

#[derive(Clone, Copy)]
enum SessionKind {
    Normal,
    Watching,
    Multi { pinned: bool },
}

/// Whether this request would start using a connection of the client's
/// own, so the client's earlier requests on shared ones must be answered
/// first.
fn switches_connection(session: SessionKind, cmd: &Command, args: &FrameArgs<'_>) -> bool {
    match (cmd.kind, session) {
        (Kind::Transaction(Tx::Watch), SessionKind::Normal) => true,
        (Kind::Keyed(_) | Kind::Blocking(..) | Kind::Split(_), SessionKind::Multi { pinned }) => {
            !pinned
        }
        (Kind::Blocking(..), _) => true,
        // HELLO 3 moves the client to the RESP3 connections (HELLO 2 back).
        (Kind::Local(Local::Hello), _) => true,
        // Leaving a subscription on the subscriber connection: a PUBLISH
        // the client sent before, on a shared one, must count it and reach
        // it first, as on one Redis.
        (Kind::PubSub(Sub::Unsubscribe | Sub::Punsubscribe | Sub::Sunsubscribe), _) => true,
        (Kind::Keyed(_), _) => cmd.block(args).is_some(),
        _ => false,
    }
}
