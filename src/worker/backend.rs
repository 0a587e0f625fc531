//! A backend connection: requests queued for writing, and the requests
//! awaiting replies, in the order the server will answer them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::Token;
use mio::net::TcpStream;

use crate::protocol::resp::ReplyScanner;

/// Where a reply goes.
#[derive(Clone, Copy, Debug)]
pub enum ReplyTo {
    /// Slot `seq` (part `part` of a split command) of the client at `token`.
    Client { token: Token, seq: u64, part: u32 },
    /// A command the proxy sent for itself on connect (AUTH, SELECT,
    /// READONLY): an error reply means the connection is unusable.
    Init,
    /// ASKING before a redirected request: its reply is dropped.
    Discard,
}

pub struct Pending {
    pub to: ReplyTo,
    /// When the request was queued: the read timeout counts from here.
    pub at: Instant,
    /// The request itself (a shared slice, not a copy), kept to resend it
    /// after a cluster redirect.
    pub req: Bytes,
    /// How many redirects this request has followed.
    pub redirects: u8,
    /// A read sent to a replica: the master's server entry, where it is
    /// retried if this connection fails.
    pub fallback: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    Ready,
}

pub struct Backend {
    pub sock: TcpStream,
    pub addr: SocketAddr,
    /// Index of the worker's server entry this connection belongs to.
    pub server: usize,
    /// Whether it sent HELLO 3 on connect: it serves RESP3 clients only.
    pub resp3: bool,
    /// Which of the server's `server_connections` (of its protocol) this is.
    pub conn_idx: usize,
    pub state: State,
    pub started: Instant,
    pub wq: VecDeque<Bytes>,
    pub inflight: VecDeque<Pending>,
    pub rbuf: BytesMut,
    /// How far the reply at the front of `rbuf` has been scanned.
    pub scanner: ReplyScanner,
    /// When the write queue last made progress (or became non-empty).
    pub write_since: Instant,
    pub dirty: bool,
}

impl Backend {
    pub fn new(
        sock: TcpStream,
        addr: SocketAddr,
        server: usize,
        resp3: bool,
        conn_idx: usize,
        now: Instant,
    ) -> Backend {
        Backend {
            sock,
            addr,
            server,
            resp3,
            conn_idx,
            state: State::Connecting,
            started: now,
            wq: VecDeque::new(),
            inflight: VecDeque::new(),
            rbuf: BytesMut::new(),
            scanner: ReplyScanner::new(),
            write_since: now,
            dirty: false,
        }
    }

    /// Nothing queued and nothing awaiting a reply.
    pub fn idle(&self) -> bool {
        self.inflight.is_empty() && self.wq.is_empty()
    }

    /// Server `si` is being forgotten: reads here no longer fall back to it.
    pub fn forget_fallback(&mut self, si: usize) {
        for p in &mut self.inflight {
            if p.fallback == Some(si) {
                p.fallback = None;
            }
        }
    }

    pub fn enqueue(
        &mut self,
        req: Bytes,
        to: ReplyTo,
        redirects: u8,
        fallback: Option<usize>,
        now: Instant,
    ) {
        if self.wq.is_empty() {
            self.write_since = now;
        }
        self.wq.push_back(req.clone());
        self.inflight.push_back(Pending {
            to,
            at: now,
            req,
            redirects,
            fallback,
        });
    }
}
