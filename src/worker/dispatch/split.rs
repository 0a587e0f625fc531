//! Requests sent to several servers: multi-key commands split per server,
//! fan-outs to every server, INFO and HELLO, their replies merged.

use std::sync::Arc;

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::{Command, FanOut, Split};
use crate::protocol::fanout::{self, InfoMerge, Merge, VersionCell};
use crate::protocol::local;
use crate::protocol::multikey::{self, Gather, Plan};
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use crate::worker::admin;
use crate::worker::backend::ReplyTo;
use crate::worker::client::Slot;

use super::{Dispatch, FrameArgs, as_multibulk};

impl Dispatch<'_, '_> {
    /// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: forwarded whole when every
    /// key is on one server, else one sub-request per server into a
    /// `Gather` slot that merges the parts.
    pub(super) fn split(
        &mut self,
        t: Token,
        split: Split,
        cmd: &Command,
        frame: &Bytes,
        args: &FrameArgs<'_>,
    ) {
        let positions = match cmd.key_positions(args) {
            Ok(p) => p,
            Err(_) => return self.refuse(t, Refusal::WrongArity(cmd.name)),
        };
        if positions.count() == 0 {
            return self.refuse(t, Refusal::WrongArity(cmd.name));
        }
        let random = self.ctx.view.random();
        let to_replica = cmd.readonly && self.ctx.view.cfg().read_from_slave;
        let plan = multikey::plan(split, args, |k| {
            let p = self.ctx.view.route().place(k, random)?;
            let replica = to_replica.then(|| self.pick_replica(p, random)).flatten();
            Some((p.group, replica.unwrap_or(p.server)))
        });
        match plan {
            Err(_) => self.no_server(t),
            Ok(Plan::Whole { group, server }) => {
                let req = as_multibulk(frame, args);
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

    /// A command about the whole keyspace, the script cache or the function
    /// libraries: one sub-request per server (cluster mode: per master, and
    /// per replica too for the script cache, which Redis 7 does not
    /// replicate while EVALSHA_RO may be read from a replica), SCAN's to the
    /// one its cursor names, COMMAND's to any live one, merged by a `Gather`.
    pub(super) fn fan_out(&mut self, t: Token, fan: FanOut, frame: &Bytes, args: &FrameArgs<'_>) {
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
            Err(r) => return self.refuse(t, r),
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
    pub(super) fn info(&mut self, t: Token, args: &FrameArgs<'_>) {
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
    pub(super) fn hello(&mut self, t: Token, args: &FrameArgs<'_>) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let cfg = self.ctx.view.cfg();
        let hello = match local::hello(args, c.session(cfg.password.as_deref(), &cfg.users)) {
            Ok(h) => h,
            Err(r) => return self.refuse(t, r),
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
}
