//! What the worker does with one parsed request: answer it locally, refuse
//! it, or route it (whole, or split per backend) to the servers owning its keys.

use std::ops::Range;

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::{self, Args, Command, FanOut, KeyError, Kind, Local};
use crate::protocol::fanout;
use crate::protocol::local;
use crate::protocol::multikey::{self, Gather, Plan};
use crate::protocol::resp;
use crate::worker::admin;
use crate::worker::backend::ReplyTo;
use crate::worker::client::Slot;
use crate::worker::upstream::{Ctx, Upstream};

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

/// One request's handling: it borrows the worker's connections, view and
/// counters (`ctx`) and its backend side (`up`) for the time it takes.
pub(crate) struct Dispatch<'c, 'a> {
    pub(crate) ctx: &'c mut Ctx<'a>,
    pub(crate) up: &'c mut Upstream,
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
            return self.reply(t, wrong_arity(cmd));
        }
        match cmd.kind {
            Kind::Local(Local::Info) => {
                let resp3 = self.ctx.conns.client(t).is_some_and(|c| c.resp3());
                let (up, now) = (&*self.up, self.ctx.now);
                let usable = |i| up.usable(now, i);
                let reply = admin::info(
                    self.ctx.view,
                    self.ctx.counters.shared(),
                    usable,
                    &args,
                    resp3,
                );
                self.reply(t, reply);
            }
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
            Kind::Keyed(_) => {
                if let Some((form, why)) = cmd.refused_form(&args) {
                    let msg = format!(
                        "ERR {} {form} is not supported by aster: {why}",
                        cmd.name.to_ascii_uppercase()
                    );
                    return self.reply(t, resp::error(&msg));
                }
                self.keyed(t, cmd, &frame, &args)
            }
            Kind::FanOut(fan) => self.fan_out(t, fan, &frame, &args),
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
                            self.up
                                .send(self.ctx, part.server, fallback, t, part.req, to);
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
        let Some(place) = self.ctx.view.route().place(args.get(first), random) else {
            return self.no_server(t);
        };
        for k in positions.iter().skip(1) {
            let other = self.ctx.view.route().place(args.get(k), random);
            if other.map(|p| p.group) != Some(place.group) {
                let msg = if self.ctx.view.route().is_cluster() {
                    "CROSSSLOT Keys in request don't hash to the same slot".to_owned()
                } else {
                    format!(
                        "ERR keys of {} map to different servers; put them on one server with a hash tag",
                        cmd.name.to_ascii_uppercase()
                    )
                };
                return self.reply(t, resp::error(&msg));
            }
        }
        let mut server = place.server;
        if cmd.readonly && self.ctx.view.cfg().read_from_slave {
            server = self.pick_replica(place, random).unwrap_or(server);
        }
        let req = as_multibulk(frame, args);
        let fallback = self.fallback(place.group, server);
        self.forward(t, server, fallback, req);
    }

    /// A command about the whole keyspace, the script cache or the function
    /// libraries: one sub-request per server (cluster mode: per master, and
    /// per replica too for the script cache, which Redis 7 does not
    /// replicate while EVALSHA_RO may be read from a replica), SCAN's to the
    /// one its cursor names, merged by a `Gather`.
    fn fan_out(&mut self, t: Token, fan: FanOut, frame: &Bytes, args: &FrameArgs<'_>) {
        let route = self.ctx.view.route();
        let servers = if fan.every_node() {
            (0..route.servers.len()).collect()
        } else {
            route.keyspace_servers()
        };
        if servers.is_empty() {
            return self.no_server(t);
        }
        let req = as_multibulk(frame, args);
        let random = self.ctx.view.random();
        let plan = match fanout::plan(fan, args, &req, servers.len(), random) {
            Ok(p) => p,
            Err(reply) => return self.reply(t, reply),
        };
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
            self.up.send(self.ctx, server, None, t, req, to);
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
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let seq = c.push(Slot::Waiting);
        let to = ReplyTo::Client {
            token: t,
            seq,
            part: 0,
        };
        self.up.send(self.ctx, server, fallback, t, req, to);
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
