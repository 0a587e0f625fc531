//! What the worker does with one parsed request: answer it locally, refuse
//! it, or route it (whole, or split per backend) to the servers owning its keys.

mod decide;
mod keyed;
mod split;
mod subs;
mod transaction;

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use mio::Token;

use crate::protocol::command::{Args, Local};
use crate::protocol::local;
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use crate::protocol::wire::Wire;
use crate::worker::admin;
use crate::worker::backend::ReplyTo;
use crate::worker::client::Slot;
use crate::worker::counters::Counters;
use crate::worker::scripts::Scripts;
use crate::worker::upstream::{Ctx, Upstream};

use decide::{Decision, Facts, SessionKind, decide};

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
    /// split per backend) to the servers owning its keys: `decide` says
    /// which, from the request and the client's facts.
    pub(crate) fn request(&mut self, t: Token, frame: Bytes, ranges: &[Range<usize>]) {
        let args = FrameArgs {
            buf: &frame,
            ranges,
        };
        let Some(facts) = self.facts(t) else {
            return;
        };
        let cmd = self.ctx.view.wire().lookup(&args);
        match (decide(cmd, &args, &facts), cmd) {
            (Decision::Refuse(r), _) => self.refuse(t, r),
            (Decision::RefuseAndDoom(r), _) => {
                self.flag_transaction(t);
                self.refuse(t, r);
            }
            (Decision::AbortExec(name), _) => self.abort_exec(t, name),
            (Decision::SubscribedPing, _) => self.reply(t, subscribed_pong(&args)),
            (Decision::Defer, _) => {
                if let Some(c) = self.ctx.conns.client(t) {
                    c.defer(frame, ranges);
                }
            }
            (Decision::Local(l), _) => self.local(t, l, &args),
            (Decision::PubSub(sub), _) => self.pubsub(t, sub, &args),
            // `decide` refuses every unknown command: the rest have one.
            (_, None) => {}
            (Decision::Queue, Some(cmd)) => self.queue(t, cmd, &frame, &args),
            (Decision::Keyed, Some(cmd)) => self.keyed(t, cmd, &frame, &args),
            (Decision::Split(split), Some(cmd)) => self.split(t, split, cmd, &frame, &args),
            (Decision::FanOut(fan), Some(cmd)) => {
                self.script_cache_command(cmd, &args);
                self.fan_out(t, fan, &frame, &args)
            }
            (Decision::Transaction(tx), Some(cmd)) => self.transaction(t, tx, cmd, &frame, &args),
        }
    }

    /// What the decision needs to know of the client and the route; `None`
    /// when the client is gone.
    fn facts(&mut self, t: Token) -> Option<Facts> {
        let generation = self.ctx.view.generation();
        let needs_auth = self.ctx.view.needs_auth();
        let cluster = self.ctx.view.route().is_cluster();
        let c = self.ctx.conns.client(t)?;
        Some(Facts {
            unauthenticated: needs_auth && !c.authed(),
            route_changed: !c.may_route(generation),
            resp3: c.resp3(),
            subscribed: !c.subs().is_empty(),
            confirming: c.confirming(),
            awaiting: c.awaiting(),
            session: SessionKind::of(c.tx()),
            cluster,
        })
    }

    /// A command the proxy answers: INFO and HELLO may ask the servers
    /// first; SLOWLOG reads the cluster's log; the rest are answered at once.
    fn local(&mut self, t: Token, l: Local, args: &FrameArgs<'_>) {
        match l {
            Local::Info => self.info(t, args),
            Local::Hello => self.hello(t, args),
            Local::Slowlog => {
                let reply = admin::slowlog(self.ctx.counters.shared(), args);
                self.reply(t, reply);
            }
            _ => {
                let Some(c) = self.ctx.conns.client(t) else {
                    return;
                };
                let cfg = self.ctx.view.cfg();
                let ans = local::answer(l, args, c.session(cfg.password.as_deref(), &cfg.users));
                let reply = ans
                    .reply
                    .unwrap_or_else(|r| refusal_reply(self.ctx.view.wire(), self.ctx.counters, &r));
                c.push(Slot::Ready(reply));
                if ans.close {
                    c.close_after_reply();
                }
                self.ctx.conns.mark_client(t);
            }
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
        let reply = refusal_reply(self.ctx.view.wire(), self.ctx.counters, &r);
        self.reply(t, reply);
    }
}

/// A refusal's reply in the cluster's protocol, counted by its kind
/// (`Counters::refuse`).
pub(crate) fn refusal_reply(wire: Wire, counters: &mut Counters, r: &Refusal) -> Bytes {
    counters.refuse(wire, r)
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

/// PING from a RESP2 client with subscriptions: Redis's `pong` array.
fn subscribed_pong(args: &FrameArgs<'_>) -> Bytes {
    let arg = if args.len() > 1 { args.get(1) } else { b"" };
    let mut out = BytesMut::with_capacity(24 + arg.len());
    out.put_slice(b"*2\r\n$4\r\npong\r\n");
    resp::put_bulk(&mut out, arg);
    out.freeze()
}
