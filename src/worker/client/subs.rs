//! A client's subscriptions: which connections of its own each is held
//! on, and those being left whose servers have not confirmed yet.

use std::collections::BTreeMap;

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::Sub;
use crate::protocol::pubsub::{self, Message};

/// A client's subscriptions, each with the connections (of the client's
/// own) it was made on.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    /// Classic channels: one connection, or one per server (master) for a
    /// keyspace notification channel.
    channels: BTreeMap<Bytes, Vec<Token>>,
    /// Patterns: one per server in redis mode; in cluster mode one, or one
    /// per master for a pattern that may match keyspace notification
    /// channels (the first is its home, below).
    patterns: BTreeMap<Bytes, Vec<Token>>,
    shard: BTreeMap<Bytes, Vec<Token>>,
    /// Route server → the client's subscriber connection to it.
    conns: Vec<(usize, Token)>,
    /// Subscriptions the client has left whose servers have not all
    /// confirmed yet: what they send until then was published before the
    /// unsubscribe took effect, and goes to the client ahead of the
    /// confirmation (`Slot::Confirm::before`), as one Redis sends it.
    leaving: Vec<Leaving>,
}

/// A subscription being left: its kind, its name, the connections whose
/// servers have not confirmed yet, and the client's confirmation slot.
#[derive(Debug)]
struct Leaving {
    seq: u64,
    kind: SubKind,
    name: Bytes,
    conns: Vec<Token>,
}

/// Which of `Subs`' maps a subscription lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubKind {
    Channel,
    Pattern,
    Shard,
}

impl SubKind {
    /// The kind a (un)subscribe command makes or removes.
    pub(crate) fn of(sub: Sub) -> SubKind {
        match sub {
            Sub::Subscribe | Sub::Unsubscribe => SubKind::Channel,
            Sub::Psubscribe | Sub::Punsubscribe => SubKind::Pattern,
            Sub::Ssubscribe | Sub::Sunsubscribe => SubKind::Shard,
        }
    }
}

impl Subs {
    /// None: what a client that never subscribed reads.
    pub(crate) const fn new() -> Subs {
        Subs {
            channels: BTreeMap::new(),
            patterns: BTreeMap::new(),
            shard: BTreeMap::new(),
            conns: Vec::new(),
            leaving: Vec::new(),
        }
    }

    fn of(&self, kind: SubKind) -> &BTreeMap<Bytes, Vec<Token>> {
        match kind {
            SubKind::Channel => &self.channels,
            SubKind::Pattern => &self.patterns,
            SubKind::Shard => &self.shard,
        }
    }

    fn of_mut(&mut self, kind: SubKind) -> &mut BTreeMap<Bytes, Vec<Token>> {
        match kind {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shard,
        }
    }

    /// Subscribes to `name`, held on connections `conns`; returns the
    /// count its confirmation carries.
    pub(crate) fn subscribe(&mut self, kind: SubKind, name: Bytes, conns: Vec<Token>) -> usize {
        self.of_mut(kind).insert(name, conns);
        self.counted(kind)
    }

    /// Unsubscribes from `name`: the connections it was held on (none when
    /// it was not), and the count its confirmation carries. Until those
    /// servers confirm, it is being left (`leave`).
    pub(crate) fn unsubscribe(&mut self, kind: SubKind, name: &[u8]) -> (Vec<Token>, usize) {
        let conns = self.of_mut(kind).remove(name).unwrap_or_default();
        (conns, self.counted(kind))
    }

    /// The unsubscribe from `name` went out on `conns`, its confirmation in
    /// the client's slot `seq`: what those servers send for it until they
    /// confirm goes ahead of it (`leaving_slot`, `left`).
    pub(crate) fn leave(&mut self, seq: u64, kind: SubKind, name: Bytes, conns: Vec<Token>) {
        self.leaving.push(Leaving {
            seq,
            kind,
            name,
            conns,
        });
    }

    /// Its subscriptions of a kind, by name.
    pub(crate) fn names(&self, kind: SubKind) -> Vec<Bytes> {
        self.of(kind).keys().cloned().collect()
    }

    /// The count a confirmation of `kind` carries: shard channels apart,
    /// as Redis counts them.
    pub(crate) fn counted(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::Shard => self.shard.len(),
            _ => self.count(),
        }
    }

    /// Its subscriber connection to route server `server`, if it has one.
    pub(crate) fn conn_to(&self, server: usize) -> Option<Token> {
        self.conns
            .iter()
            .find(|(s, _)| *s == server)
            .map(|&(_, t)| t)
    }

    /// `t` is now its subscriber connection to route server `server` (in
    /// place of one lost).
    pub(crate) fn add_conn(&mut self, server: usize, t: Token) {
        self.conns.retain(|(s, _)| *s != server);
        self.conns.push((server, t));
    }

    /// Forgets subscriber connections (closed by the caller): ones opened
    /// for a subscribe refused after all, or no longer needed.
    pub(crate) fn drop_conns(&mut self, gone: &[Token]) {
        self.conns.retain(|(_, t)| !gone.contains(t));
    }

    /// Its subscriber connections no subscription needs any more.
    pub(crate) fn unused_conns(&self) -> Vec<Token> {
        self.conns
            .iter()
            .map(|&(_, t)| t)
            .filter(|&t| !self.uses(t))
            .collect()
    }

    /// Every subscriber connection of its own.
    pub(crate) fn conns(&self) -> impl Iterator<Item = Token> + '_ {
        self.conns.iter().map(|&(_, t)| t)
    }

    /// What (UN)SUBSCRIBE and P(UN)SUBSCRIBE confirmations count.
    pub(crate) fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count() == 0 && self.shard.is_empty()
    }

    /// Whether any subscription still needs connection `t`.
    fn uses(&self, t: Token) -> bool {
        [&self.channels, &self.patterns, &self.shard]
            .iter()
            .any(|m| m.values().flatten().any(|&c| c == t))
    }

    /// Whether a message read on connection `t` is the client's: it holds
    /// that subscription on `t` (one it has unsubscribed from is not passed
    /// on after the confirmation). In cluster mode every node delivers every
    /// published message, so a pattern on several masters takes them from
    /// its home only, and keyspace notifications (each node's own) from all.
    pub(crate) fn wants(&self, msg: Message<'_>, t: Token, cluster: bool) -> bool {
        match msg {
            Message::Channel(ch) => takes(self.channels.get(ch), msg, t, cluster),
            Message::Shard(ch) => takes(self.shard.get(ch), msg, t, cluster),
            Message::Pattern { pattern, .. } => takes(self.patterns.get(pattern), msg, t, cluster),
        }
    }

    /// For a message the client no longer `wants`: the confirmation slot
    /// of the subscription it is leaving, when connection `t`'s server has
    /// not confirmed that yet (the message was published before).
    pub(crate) fn leaving_slot(&self, msg: Message<'_>, t: Token, cluster: bool) -> Option<u64> {
        let (kind, name) = match msg {
            Message::Channel(ch) => (SubKind::Channel, ch),
            Message::Shard(ch) => (SubKind::Shard, ch),
            Message::Pattern { pattern, .. } => (SubKind::Pattern, pattern),
        };
        self.leaving
            .iter()
            .find(|l| l.kind == kind && l.name == name && takes(Some(&l.conns), msg, t, cluster))
            .map(|l| l.seq)
    }

    /// Connection `t`'s server confirmed the unsubscribe of slot `seq`:
    /// nothing more comes from it for that subscription.
    pub(crate) fn left(&mut self, seq: u64, t: Token) {
        for l in self.leaving.iter_mut().filter(|l| l.seq == seq) {
            l.conns.retain(|&c| c != t);
        }
        self.leaving.retain(|l| !l.conns.is_empty());
    }
}

/// Whether a message read on connection `t` belongs to a subscription held
/// on `conns`. In cluster mode every node delivers every published message,
/// so a pattern on several masters takes them from its home (the first)
/// only, and keyspace notifications (each node's own) from all.
fn takes(conns: Option<&Vec<Token>>, msg: Message<'_>, t: Token, cluster: bool) -> bool {
    let Some(conns) = conns.filter(|c| c.contains(&t)) else {
        return false;
    };
    match msg {
        Message::Pattern { channel, .. } => {
            !cluster || conns.first() == Some(&t) || pubsub::is_keyspace_channel(channel)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Token = Token(10);
    const B: Token = Token(11);

    fn name(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn kinds_follow_the_commands() {
        assert_eq!(SubKind::of(Sub::Subscribe), SubKind::Channel);
        assert_eq!(SubKind::of(Sub::Unsubscribe), SubKind::Channel);
        assert_eq!(SubKind::of(Sub::Psubscribe), SubKind::Pattern);
        assert_eq!(SubKind::of(Sub::Punsubscribe), SubKind::Pattern);
        assert_eq!(SubKind::of(Sub::Ssubscribe), SubKind::Shard);
        assert_eq!(SubKind::of(Sub::Sunsubscribe), SubKind::Shard);
    }

    #[test]
    fn counts_are_redis_s_shard_channels_apart() {
        let mut s = Subs::new();
        assert!(s.is_empty());
        assert_eq!(s.subscribe(SubKind::Channel, name("c"), vec![A]), 1);
        assert_eq!(s.subscribe(SubKind::Pattern, name("p*"), vec![A, B]), 2);
        assert_eq!(
            s.subscribe(SubKind::Channel, name("c"), vec![A]),
            2,
            "again: no new subscription"
        );
        assert_eq!(s.subscribe(SubKind::Shard, name("s"), vec![B]), 1);
        assert_eq!(s.counted(SubKind::Channel), 2);
        assert_eq!(s.counted(SubKind::Shard), 1);
        assert_eq!(s.names(SubKind::Pattern), [name("p*")]);
        assert_eq!(s.names(SubKind::Shard), [name("s")]);
        assert_eq!(s.unsubscribe(SubKind::Pattern, b"p*"), (vec![A, B], 1));
        assert_eq!(
            s.unsubscribe(SubKind::Pattern, b"p*"),
            (vec![], 1),
            "not subscribed: no connection"
        );
        assert_eq!(s.unsubscribe(SubKind::Channel, b"c"), (vec![A], 0));
        assert!(!s.is_empty(), "the shard channel is left");
        assert_eq!(s.unsubscribe(SubKind::Shard, b"s"), (vec![B], 0));
        assert!(s.is_empty());
    }

    #[test]
    fn a_message_of_a_subscription_being_left_goes_ahead_of_its_confirmation() {
        let mut s = Subs::new();
        s.subscribe(SubKind::Channel, name("c"), vec![A, B]);
        let msg = Message::Channel(b"c");
        assert!(s.wants(msg, A, false));
        let (conns, _) = s.unsubscribe(SubKind::Channel, b"c");
        assert!(!s.wants(msg, A, false), "unsubscribed");
        assert_eq!(s.leaving_slot(msg, A, false), None, "nothing sent yet");
        s.leave(5, SubKind::Channel, name("c"), conns);
        assert_eq!(s.leaving_slot(msg, A, false), Some(5));
        assert_eq!(
            s.leaving_slot(Message::Shard(b"c"), A, false),
            None,
            "another kind"
        );
        s.left(5, A);
        assert_eq!(s.leaving_slot(msg, A, false), None, "A confirmed");
        assert_eq!(s.leaving_slot(msg, B, false), Some(5), "B not yet");
        s.left(5, B);
        assert_eq!(s.leaving_slot(msg, B, false), None);
    }

    #[test]
    fn a_pattern_on_several_cluster_masters_takes_messages_from_its_home() {
        let mut s = Subs::new();
        s.subscribe(SubKind::Pattern, name("*"), vec![A, B]);
        let msg = Message::Pattern {
            pattern: b"*",
            channel: b"news",
        };
        assert!(s.wants(msg, A, true));
        assert!(!s.wants(msg, B, true), "every node delivers it: once");
        assert!(s.wants(msg, B, false), "redis mode: each server's own");
        let keyspace = Message::Pattern {
            pattern: b"*",
            channel: b"__keyspace@0__:k",
        };
        assert!(s.wants(keyspace, B, true), "each node's own notifications");
    }

    #[test]
    fn subscriber_connections_one_per_server() {
        let mut s = Subs::new();
        assert_eq!(s.conn_to(0), None);
        s.add_conn(0, A);
        s.add_conn(1, B);
        assert_eq!(s.conn_to(0), Some(A));
        s.add_conn(0, Token(12));
        assert_eq!(s.conn_to(0), Some(Token(12)), "a lost one replaced");
        assert_eq!(s.conns().collect::<Vec<_>>(), [B, Token(12)]);
        s.subscribe(SubKind::Channel, name("c"), vec![B]);
        assert_eq!(s.unused_conns(), [Token(12)]);
        s.drop_conns(&[Token(12)]);
        assert_eq!(s.conn_to(0), None);
        assert!(s.unused_conns().is_empty(), "B holds a subscription");
        s.unsubscribe(SubKind::Channel, b"c");
        assert_eq!(s.unused_conns(), [B]);
    }
}
