//! Keyed requests: placement of their keys, scripts, blocking commands,
//! and sending on the connection that serves the client.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::{Args, Block, Command, KeyError, KeyPositions};
use crate::protocol::refusal::Refusal;
use crate::routing::table::Place;
use crate::worker::backend::{Release, ReplyTo};
use crate::worker::scripts;

use super::{Dispatch, FrameArgs, as_multibulk, decide};

impl Dispatch<'_, '_> {
    /// A command sent whole to the one server that owns all of its keys.
    pub(super) fn keyed(&mut self, t: Token, cmd: &Command, frame: &Bytes, args: &FrameArgs<'_>) {
        let positions = match cmd.key_positions(args) {
            Ok(p) => p,
            Err(KeyError::WrongArity) => return self.refuse(t, Refusal::WrongArity(cmd.name)),
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
            return self.refuse(t, Refusal::NoKeys(cmd.name));
        };
        let random = self.ctx.view.random();
        let place = match self.place_keys(cmd, args, positions, first, random) {
            Ok(p) => p,
            Err(r) => return self.refuse(t, r),
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
    pub(super) fn script_request(
        &mut self,
        cmd: &Command,
        args: &FrameArgs<'_>,
        server: usize,
        req: Bytes,
    ) -> Bytes {
        if !cmd.runs_code() {
            return req;
        }
        let Some(at) = self
            .ctx
            .view
            .route()
            .servers
            .get(server)
            .map(|n| n.addr.clone())
        else {
            return req;
        };
        let flushes = &self.ctx.counters.shared().script_flushes;
        self.scripts.sync(flushes.load(Ordering::Acquire));
        match cmd.name {
            "eval" | "eval_ro" => {
                self.scripts.ran(args.get(1), &at);
                req
            }
            "evalsha" | "evalsha_ro" => match self.scripts.body_for(args.get(1), &at) {
                Some(body) => scripts::as_eval(args, &body),
                None => req,
            },
            _ => req,
        }
    }

    /// SCRIPT LOAD teaches the script cache a body; SCRIPT FLUSH empties
    /// every worker's (each before its next use), so an EVALSHA after it
    /// gets NOSCRIPT, as from Redis.
    pub(super) fn script_cache_command(&mut self, cmd: &Command, args: &FrameArgs<'_>) {
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

    /// Where keys `first` and the rest of `positions` go, under the
    /// worker's route and configuration (`decide::place_keys`).
    pub(super) fn place_keys(
        &self,
        cmd: &Command,
        args: &FrameArgs<'_>,
        positions: KeyPositions,
        first: usize,
        random: u32,
    ) -> Result<Place, Refusal> {
        let (route, cfg) = (self.ctx.view.route(), self.ctx.view.cfg());
        decide::place_keys(route, cfg, cmd, args, positions, first, random)
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
    pub(super) fn fallback(&self, group: u64, server: usize) -> Option<usize> {
        self.ctx
            .view
            .route()
            .master_of(group)
            .filter(|&m| m != server)
    }

    /// A replica of the key's shard that is not backing off, spread by
    /// `random`; `None` sends the read to the master.
    pub(super) fn pick_replica(
        &self,
        place: crate::routing::table::Place,
        random: u32,
    ) -> Option<usize> {
        let replicas = self.ctx.view.route().replicas(place);
        let n = replicas.len();
        (0..n)
            .map(|i| replicas[(random as usize + i) % n])
            .find(|&r| self.up.usable(self.ctx.now, r))
    }

    pub(super) fn no_server(&mut self, t: Token) {
        let cluster = self.ctx.view.route().is_cluster();
        self.refuse(t, Refusal::no_server(cluster));
    }

    pub(super) fn forward(&mut self, t: Token, server: usize, fallback: Option<usize>, req: Bytes) {
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
    pub(super) fn send(
        &mut self,
        t: Token,
        server: usize,
        fallback: Option<usize>,
        req: Bytes,
        to: ReplyTo,
    ) {
        let pin = self.ctx.conns.client(t).and_then(|c| c.tx().watching_pin());
        match pin {
            Some(pin) if pin.server == server || fallback == Some(pin.server) => {
                self.up.send_leased(self.ctx, pin.conn, req, to, None)
            }
            _ => self.up.send(self.ctx, server, fallback, t, req, to),
        }
    }
}
