//! A client connection: its read buffer, and the replies it is owed, in order.
//!
//! Every request takes a slot at the back of `slots`, numbered by `seq`.
//! Backends fill slots in whatever order they answer; finished slots at the
//! front move to `out` and are written in one vectored write. So each client
//! gets its replies in request order whatever the backends do.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use crate::protocol::multikey::Gather;
use crate::protocol::resp::RequestParser;

pub enum Slot {
    Waiting,
    Ready(Bytes),
    Gather(Box<Gather>),
}

pub struct Client {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    /// Unique per worker, for logs and CLIENT ID.
    pub id: u64,
    pub rbuf: BytesMut,
    /// How far the request at the front of `rbuf` has been parsed.
    pub parser: RequestParser,
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]`.
    first_seq: u64,
    pub out: VecDeque<Bytes>,
    pub out_bytes: usize,
    pub name: Option<Bytes>,
    /// AUTH succeeded, or the cluster has no password.
    pub authed: bool,
    /// HELLO 3: this client's requests go to backend connections that speak
    /// RESP3, whose replies are forwarded as they are.
    pub resp3: bool,
    /// Set by QUIT or a protocol error: read and parse nothing more, write
    /// what is owed, then close.
    pub closing: bool,
    /// The peer closed its side: answer what it sent, then close.
    pub eof: bool,
    /// Already on the worker's list of clients to flush this turn.
    pub dirty: bool,
    /// Its requests are held back in `rbuf` (too many in flight, or too many
    /// replies unsent); the worker resumes them when it drains. Reading goes on.
    pub held: bool,
}

impl Client {
    pub fn new(sock: TcpStream, peer: SocketAddr, id: u64) -> Client {
        Client {
            sock,
            peer,
            id,
            rbuf: BytesMut::new(),
            parser: RequestParser::default(),
            slots: VecDeque::new(),
            first_seq: 0,
            out: VecDeque::new(),
            out_bytes: 0,
            name: None,
            authed: false,
            resp3: false,
            closing: false,
            eof: false,
            dirty: false,
            held: false,
        }
    }

    /// Requests still waiting for a backend.
    pub fn pending(&self) -> usize {
        self.slots.len()
    }

    /// Takes the next slot; returns its sequence number.
    pub fn push(&mut self, slot: Slot) -> u64 {
        let seq = self.first_seq + self.slots.len() as u64;
        self.slots.push_back(slot);
        self.promote();
        seq
    }

    /// Puts a reply (or one part of a split command's reply) in its slot.
    /// A slot that is gone or already full is left alone: a reply is never
    /// delivered twice.
    pub fn fill(&mut self, seq: u64, part: u32, reply: Bytes) {
        let Some(idx) = seq.checked_sub(self.first_seq) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match slot {
            Slot::Waiting => *slot = Slot::Ready(reply),
            Slot::Gather(g) => {
                if let Some(merged) = g.fill(part, reply) {
                    *slot = Slot::Ready(merged);
                }
            }
            Slot::Ready(_) => return,
        }
        if idx == 0 {
            self.promote();
        }
    }

    /// Moves finished slots at the front to the output queue.
    fn promote(&mut self) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(b)) = self.slots.pop_front() {
                self.out_bytes += b.len();
                self.out.push_back(b);
                self.first_seq += 1;
            }
        }
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Nothing owed and nothing unsent.
    pub fn idle(&self) -> bool {
        self.slots.is_empty() && self.out.is_empty()
    }

    /// Closing, or past its EOF with no request left to answer, and
    /// everything it is owed written: the connection can go.
    pub fn finished(&self) -> bool {
        (self.closing || (self.eof && !self.held)) && self.idle()
    }
}
