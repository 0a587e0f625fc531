//! Pub/sub: (un)subscribing on the client's subscriber connections, and
//! the proxy's own confirmations.

use bytes::{BufMut, Bytes, BytesMut};
use mio::Token;

use crate::protocol::command::{Args, Sub};
use crate::protocol::pubsub;
use crate::protocol::resp;
use crate::worker::backend::{Release, ReplyTo};
use crate::worker::client::{Slot, SubKind};

use super::{Dispatch, FrameArgs};

impl Dispatch<'_, '_> {
    /// SUBSCRIBE and friends. Subscriptions are made on connections of the
    /// client's own, on the servers `sub_targets` names. The proxy confirms
    /// each itself, counting all the client's subscriptions as one server
    /// would, once every server involved has confirmed it: then the
    /// subscription is active (or gone) everywhere.
    pub(super) fn pubsub(&mut self, t: Token, sub: Sub, args: &FrameArgs<'_>) {
        let subscribe = matches!(sub, Sub::Subscribe | Sub::Psubscribe | Sub::Ssubscribe);
        if subscribe {
            return self.subscribe(t, sub, args);
        }
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let resp3 = c.resp3();
        let kind = SubKind::of(sub);
        let names: Vec<Bytes> = if args.len() > 1 {
            (1..args.len())
                .map(|i| Bytes::copy_from_slice(args.get(i)))
                .collect()
        } else {
            c.subs().names(kind)
        };
        if names.is_empty() {
            let count = c.subs().counted(kind);
            return self.reply(t, confirmation(resp3, sub.name(), None, count));
        }
        for name in names {
            let Some(c) = self.ctx.conns.client(t) else {
                return;
            };
            let (tokens, count) = c.subs_mut().unsubscribe(kind, &name);
            let own = confirmation(resp3, sub.name(), Some(&name), count);
            let seq = self.confirm_after(t, sub, &name, &tokens, own);
            if let (Some(seq), Some(c)) = (seq, self.ctx.conns.client(t)) {
                c.subs_mut().leave(seq, kind, name, tokens);
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
            let count = c
                .subs_mut()
                .subscribe(SubKind::of(sub), name.clone(), tokens.clone());
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
            c.subs_mut().drop_conns(opened);
        }
        for &tok in opened {
            self.up.revoke(self.ctx, tok, t);
        }
    }

    /// The client's subscriber connection to route server `server`, and
    /// whether it was opened now.
    fn sub_conn(&mut self, t: Token, server: usize) -> Result<(Token, bool), Bytes> {
        let known = self
            .ctx
            .conns
            .client(t)
            .and_then(|c| c.subs().conn_to(server));
        if let Some(tok) = known
            && self.ctx.conns.backend(tok).is_some()
        {
            return Ok((tok, false));
        }
        let tok = self.up.lease(self.ctx, server, t, Release::Subscriber)?;
        if let Some(c) = self.ctx.conns.client(t) {
            c.subs_mut().add_conn(server, tok);
        }
        Ok((tok, true))
    }
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
