//! A client's subscriptions: which connections of its own each is held
//! on, and those being left whose servers have not confirmed yet.

use std::collections::BTreeMap;

use bytes::Bytes;
use mio::Token;

use crate::protocol::pubsub::{self, Message};

/// A client's subscriptions, each with the connections (of the client's
/// own) it was made on.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    /// Classic channels: one connection, or one per server (master) for a
    /// keyspace notification channel.
    pub(crate) channels: BTreeMap<Bytes, Vec<Token>>,
    /// Patterns: one per server in redis mode; in cluster mode one, or one
    /// per master for a pattern that may match keyspace notification
    /// channels (the first is its home, below).
    pub(crate) patterns: BTreeMap<Bytes, Vec<Token>>,
    pub(crate) shard: BTreeMap<Bytes, Vec<Token>>,
    /// Route server → the client's subscriber connection to it.
    pub(crate) conns: Vec<(usize, Token)>,
    /// Subscriptions the client has left whose servers have not all
    /// confirmed yet: what they send until then was published before the
    /// unsubscribe took effect, and goes to the client ahead of the
    /// confirmation (`Slot::Confirm::before`), as one Redis sends it.
    pub(crate) leaving: Vec<Leaving>,
}

/// A subscription being left: its kind, its name, the connections whose
/// servers have not confirmed yet, and the client's confirmation slot.
#[derive(Debug)]
pub(crate) struct Leaving {
    pub(crate) seq: u64,
    pub(crate) kind: SubKind,
    pub(crate) name: Bytes,
    pub(crate) conns: Vec<Token>,
}

/// Which of `Subs`' maps a subscription lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubKind {
    Channel,
    Pattern,
    Shard,
}

impl Subs {
    /// What (UN)SUBSCRIBE and P(UN)SUBSCRIBE confirmations count.
    pub(crate) fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count() == 0 && self.shard.is_empty()
    }

    /// Whether any subscription still needs connection `t`.
    pub(crate) fn uses(&self, t: Token) -> bool {
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
