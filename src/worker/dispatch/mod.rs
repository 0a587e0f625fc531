//! What the worker does with one parsed request: answer it locally, refuse
//! it, or route it (whole, or split per backend) to the servers owning its keys.

mod keyed;
mod split;
mod subs;
mod transaction;

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use mio::Token;

use crate::protocol::command::{self, Args, Command, Kind, Local, Sub, Tx};
use crate::protocol::local;
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use crate::worker::admin;
use crate::worker::backend::ReplyTo;
use crate::worker::client::{Session, Slot};
use crate::worker::counters::Counters;
use crate::worker::scripts::Scripts;
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
            return self.refuse(t, Refusal::unknown_command(&args));
        };
        if self.ctx.view.needs_auth()
            && !matches!(
                cmd.kind,
                Kind::Local(Local::Auth | Local::Hello | Local::Quit)
            )
            && self.ctx.conns.client(t).is_some_and(|c| !c.authed())
        {
            return self.refuse(t, Refusal::NoAuth);
        }
        if !cmd.check_arity(args.len()) {
            self.flag_transaction(t);
            return self.refuse(t, Refusal::WrongArity(cmd.name));
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
                _ => return self.refuse(t, Refusal::Subscribed(cmd.name)),
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
                let reply = ans
                    .reply
                    .unwrap_or_else(|r| refusal_reply(self.ctx.counters, &r));
                c.push(Slot::Ready(reply));
                if ans.close {
                    c.close_after_reply();
                }
                self.ctx.conns.mark_client(t);
            }
            Kind::Unsupported(why) => {
                let r = Refusal::Unsupported {
                    name: cmd.name,
                    why,
                };
                self.refuse(t, r);
            }
            Kind::Keyed(_) | Kind::Blocking(..) => self.keyed(t, cmd, &frame, &args),
            Kind::Transaction(tx) => self.transaction(t, tx, cmd, &frame, &args),
            Kind::PubSub(sub) => self.pubsub(t, sub, &args),
            Kind::FanOut(fan) => {
                self.script_cache_command(cmd, &args);
                self.fan_out(t, fan, &frame, &args)
            }
            Kind::Split(split) => self.split(t, split, cmd, &frame, &args),
        }
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

    fn reply(&mut self, t: Token, reply: Bytes) {
        self.ctx.conns.reply(t, reply);
    }

    /// Answers with a refusal, counted by its kind.
    fn refuse(&mut self, t: Token, r: Refusal) {
        let reply = refusal_reply(self.ctx.counters, &r);
        self.reply(t, reply);
    }
}

/// A refusal's reply, counted by its kind: every refusal the worker gives
/// goes through here.
pub(crate) fn refusal_reply(counters: &mut Counters, r: &Refusal) -> Bytes {
    if let Some(n) = counters.refused.get_mut(r.kind()) {
        *n += 1;
    }
    r.reply()
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
