//! A worker's connections: one slab of clients and backend connections,
//! addressed by tokens that carry a generation, and the lists of
//! connections to write or to serve again at the end of the loop turn.

use bytes::Bytes;
use mio::Token;
use slab::Slab;

use crate::worker::backend::{BackendConn, ReplyTo};
use crate::worker::client::Client;

pub(crate) enum Conn {
    Client(Client),
    Backend(BackendConn),
}

struct Entry {
    generation: u32,
    conn: Conn,
}

/// Tokens carry the slab index and a generation, so an event or a reply for
/// a closed and reused slot is dropped rather than given to its new owner.
fn token_of(idx: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | idx)
}

fn split_token(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

pub(crate) struct Conns {
    slab: Slab<Entry>,
    next_gen: u32,
    dirty_backends: Vec<Token>,
    dirty_clients: Vec<Token>,
    /// Connections with input left over from their read budget, clients
    /// whose held requests may go on, or the listener after a failed
    /// accept: served again at the end of the turn.
    resume: Vec<Token>,
}

impl Conns {
    pub(crate) fn new() -> Conns {
        Conns {
            slab: Slab::with_capacity(1024),
            next_gen: 1,
            dirty_backends: Vec::new(),
            dirty_clients: Vec::new(),
            resume: Vec::new(),
        }
    }

    /// Adds a connection: its token (to register the socket with) and it.
    pub(crate) fn insert(&mut self, conn: Conn) -> (Token, &mut Conn) {
        let generation = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0x7fff_ffff;
        if self.next_gen == 0 {
            self.next_gen = 1;
        }
        let entry = self.slab.vacant_entry();
        let t = token_of(entry.key(), generation);
        let e = entry.insert(Entry { generation, conn });
        (t, &mut e.conn)
    }

    fn get(&mut self, t: Token) -> Option<&mut Conn> {
        let (idx, generation) = split_token(t);
        match self.slab.get_mut(idx) {
            Some(e) if e.generation == generation => Some(&mut e.conn),
            _ => None,
        }
    }

    /// Whether `t` is a live client (`Some(true)`) or backend connection.
    pub(crate) fn is_client(&mut self, t: Token) -> Option<bool> {
        self.get(t).map(|c| matches!(c, Conn::Client(_)))
    }

    pub(crate) fn client(&mut self, t: Token) -> Option<&mut Client> {
        match self.get(t) {
            Some(Conn::Client(c)) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn backend(&mut self, t: Token) -> Option<&mut BackendConn> {
        match self.get(t) {
            Some(Conn::Backend(b)) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, t: Token) -> Option<Conn> {
        self.get(t)?;
        Some(self.slab.remove(split_token(t).0).conn)
    }

    pub(crate) fn backends_mut(&mut self) -> impl Iterator<Item = &mut BackendConn> {
        self.slab.iter_mut().filter_map(|(_, e)| match &mut e.conn {
            Conn::Backend(b) => Some(b),
            Conn::Client(_) => None,
        })
    }

    /// Every client's token.
    pub(crate) fn client_tokens(&self) -> Vec<Token> {
        self.slab
            .iter()
            .filter_map(|(idx, e)| match e.conn {
                Conn::Client(_) => Some(token_of(idx, e.generation)),
                Conn::Backend(_) => None,
            })
            .collect()
    }

    /// Some client still has requests or replies outstanding.
    pub(crate) fn any_client_busy(&self) -> bool {
        self.slab.iter().any(|(_, e)| match &e.conn {
            Conn::Client(c) => !c.idle(),
            Conn::Backend(_) => false,
        })
    }

    pub(crate) fn mark_client(&mut self, t: Token) {
        if let Some(c) = self.client(t)
            && c.mark()
        {
            self.dirty_clients.push(t);
        }
    }

    pub(crate) fn mark_backend(&mut self, t: Token) {
        if let Some(b) = self.backend(t)
            && b.mark()
        {
            self.dirty_backends.push(t);
        }
    }

    /// The `i`th backend marked this turn. The list is walked by index, not
    /// taken: a connection marked while it is being walked (a replica's
    /// write error re-sending its reads to the master) is still reached.
    pub(crate) fn dirty_backend(&self, i: usize) -> Option<Token> {
        self.dirty_backends.get(i).copied()
    }

    pub(crate) fn dirty_client(&self, i: usize) -> Option<Token> {
        self.dirty_clients.get(i).copied()
    }

    pub(crate) fn clear_dirty(&mut self) {
        self.dirty_backends.clear();
        self.dirty_clients.clear();
    }

    pub(crate) fn resume(&mut self, t: Token) {
        self.resume.push(t);
    }

    pub(crate) fn has_resumed(&self) -> bool {
        !self.resume.is_empty()
    }

    pub(crate) fn take_resumed(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.resume)
    }

    /// Hands a reply to the client slot it belongs to. Replies for a client
    /// that has gone (or a slot reused by another) are dropped here.
    pub(crate) fn deliver(&mut self, to: ReplyTo, reply: Bytes) {
        if let ReplyTo::Client { token, seq, part } = to
            && let Some(c) = self.client(token)
        {
            c.fill(seq, part, reply);
            if c.has_output() {
                self.mark_client(token);
            }
        }
    }

    /// A reply made by the proxy itself, in the client's next slot.
    pub(crate) fn reply(&mut self, t: Token, reply: Bytes) {
        if let Some(c) = self.client(t) {
            c.push(crate::worker::client::Slot::Ready(reply));
            self.mark_client(t);
        }
    }
}

/// A client's index in the slab: spreads clients over a server's
/// connection slots (the same client, the same slot).
pub(crate) fn slot_index(t: Token) -> usize {
    split_token(t).0
}
