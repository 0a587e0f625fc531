//! What the worker does with one parsed request: answer it locally, refuse
//! it, or route it (whole, or split per backend) to the servers owning its keys.

use std::ops::Range;

use bytes::Bytes;
use mio::Token;

use crate::backend::ReplyTo;
use crate::client::Slot;
use crate::command::{self, Args, Command, KeyError, Kind, Local};
use crate::local::{self, ClientInfo};
use crate::multikey::{self, Plan};
use crate::resp;
use crate::worker::{FrameArgs, Worker, client_of};

/// Shows a client argument in an error message the way Redis does: bounded,
/// and with no bytes that could break the reply line.
fn shown(arg: &[u8]) -> String {
    let cut = &arg[..arg.len().min(128)];
    String::from_utf8_lossy(cut).replace(['\r', '\n'], " ")
}

fn key_error(cmd: &Command, e: KeyError) -> Bytes {
    match e {
        KeyError::WrongArity => wrong_arity(cmd),
        KeyError::BadCount => {
            resp::error("ERR Number of keys can't be greater than number of args")
        }
        KeyError::NoStreams => resp::error("ERR syntax error"),
        KeyError::Unbalanced => resp::error(&format!(
            "ERR Unbalanced '{}' list of streams: for each stream key an ID or '$' must be specified.",
            cmd.name
        )),
    }
}

fn wrong_arity(cmd: &Command) -> Bytes {
    resp::error(&format!(
        "ERR wrong number of arguments for '{}' command",
        cmd.name
    ))
}

impl Worker {
    pub(crate) fn dispatch(&mut self, t: Token, frame: Bytes, ranges: &[Range<usize>]) {
        let args = FrameArgs {
            buf: &frame,
            ranges,
        };
        let name = args.get(0);
        let Some(cmd) = command::lookup_request(&args) else {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with:",
                shown(name)
            );
            for i in 1..args.len().min(8) {
                msg.push_str(&format!(" '{}'", shown(args.get(i))));
            }
            return self.reply(t, resp::error(&msg));
        };
        if self.needs_auth()
            && !matches!(
                cmd.kind,
                Kind::Local(Local::Auth | Local::Hello | Local::Quit)
            )
            && client_of(&mut self.conns, t).is_some_and(|c| !c.authed)
        {
            return self.reply(t, resp::error(local::NOAUTH));
        }
        if !cmd.check_arity(args.len()) {
            return self.reply(t, wrong_arity(cmd));
        }
        match cmd.kind {
            Kind::Local(Local::Info) => {
                let reply = self.info(&args);
                self.reply(t, reply);
            }
            Kind::Local(Local::Slowlog) => {
                let reply = self.slowlog(&args);
                self.reply(t, reply);
            }
            Kind::Local(l) => {
                let needs_auth = self.needs_auth();
                let Some(c) = client_of(&mut self.conns, t) else {
                    return;
                };
                if l == Local::Hello && !c.authed && needs_auth && !hello_has_auth(&args) {
                    return self.reply(t, resp::error(local::NOAUTH));
                }
                let info = ClientInfo {
                    id: c.id,
                    name: &mut c.name,
                    authed: &mut c.authed,
                    resp3: &mut c.resp3,
                    password: self.cfg.password.as_deref(),
                    users: &self.cfg.users,
                };
                let ans = local::answer(l, &args, info);
                c.push(Slot::Ready(ans.reply));
                c.closing |= ans.close;
                self.mark_client(t);
            }
            Kind::Unsupported(why) => {
                let msg = format!(
                    "ERR {} is not supported by aster: {why}",
                    cmd.name.to_ascii_uppercase()
                );
                self.reply(t, resp::error(&msg));
            }
            Kind::Keyed(_) => self.dispatch_keyed(t, cmd, &frame, &args),
            Kind::Split(split) => {
                let positions = match cmd.key_positions(&args) {
                    Ok(p) => p,
                    Err(e) => return self.reply(t, key_error(cmd, e)),
                };
                if positions.count() == 0 {
                    return self.reply(t, wrong_arity(cmd));
                }
                let random = self.random();
                let to_replica = cmd.readonly && self.cfg.read_from_slave;
                let plan = multikey::plan(split, &args, |k| {
                    let p = self.route.place(k, random)?;
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
                        let Some(c) = client_of(&mut self.conns, t) else {
                            return;
                        };
                        let seq = c.push(Slot::Gather(Box::new(gather)));
                        self.count_fragments(parts.len());
                        for (i, part) in parts.into_iter().enumerate() {
                            let to = ReplyTo::Client {
                                token: t,
                                seq,
                                part: i as u32,
                            };
                            let fallback = self.fallback(part.group, part.server);
                            self.send(part.server, fallback, t, part.req, to);
                        }
                    }
                }
            }
        }
    }

    /// A command sent whole to the one server that owns all of its keys.
    fn dispatch_keyed(&mut self, t: Token, cmd: &Command, frame: &Bytes, args: &FrameArgs<'_>) {
        let positions = match cmd.key_positions(args) {
            Ok(p) => p,
            Err(e) => return self.reply(t, key_error(cmd, e)),
        };
        let Some(first) = positions.first_key() else {
            let msg = format!(
                "ERR {} with no keys cannot be routed by aster: name at least one key",
                cmd.name.to_ascii_uppercase()
            );
            return self.reply(t, resp::error(&msg));
        };
        let random = self.random();
        let Some(place) = self.route.place(args.get(first), random) else {
            return self.no_server(t);
        };
        for k in positions.iter().skip(1) {
            let other = self.route.place(args.get(k), random);
            if other.map(|p| p.group) != Some(place.group) {
                let msg = if self.route.is_cluster() {
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
        if cmd.readonly && self.cfg.read_from_slave {
            server = self.pick_replica(place, random).unwrap_or(server);
        }
        let req = as_multibulk(frame, args);
        let fallback = self.fallback(place.group, server);
        self.forward(t, server, fallback, req);
    }

    /// For a read sent to a replica: its master, to retry the read on if the
    /// replica's connection fails. Writes and master reads have none.
    fn fallback(&self, group: u64, server: usize) -> Option<usize> {
        self.route.master_of(group).filter(|&m| m != server)
    }

    /// A replica of the key's shard that is not backing off, spread by
    /// `random`; `None` sends the read to the master.
    fn pick_replica(&self, place: crate::route::Place, random: u32) -> Option<usize> {
        let replicas = self.route.replicas(place);
        let n = replicas.len();
        (0..n)
            .map(|i| replicas[(random as usize + i) % n])
            .find(|&r| self.usable(r))
    }

    fn no_server(&mut self, t: Token) {
        let msg = if self.route.is_cluster() {
            "CLUSTERDOWN Hash slot not served"
        } else {
            "ERR no server is available for this key"
        };
        self.reply(t, resp::error(msg));
    }

    fn needs_auth(&self) -> bool {
        self.cfg.password.is_some() || !self.cfg.users.is_empty()
    }

    fn forward(&mut self, t: Token, server: usize, fallback: Option<usize>, req: Bytes) {
        let Some(c) = client_of(&mut self.conns, t) else {
            return;
        };
        let seq = c.push(Slot::Waiting);
        let to = ReplyTo::Client {
            token: t,
            seq,
            part: 0,
        };
        self.send(server, fallback, t, req, to);
    }

    pub(crate) fn reply(&mut self, t: Token, reply: Bytes) {
        if let Some(c) = client_of(&mut self.conns, t) {
            c.push(Slot::Ready(reply));
            self.mark_client(t);
        }
    }
}

/// HELLO with an AUTH option may authenticate; without one it needs AUTH first.
fn hello_has_auth(args: &FrameArgs<'_>) -> bool {
    (2..args.len()).any(|i| args.get(i).eq_ignore_ascii_case(b"AUTH"))
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
