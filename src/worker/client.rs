//! A client connection: its read buffer and request parser, the replies it
//! is owed in order, and the rules that hold its requests back.
//!
//! Every request takes a slot at the back of `slots`, numbered by `seq`.
//! Backends fill slots in whatever order they answer; finished slots at the
//! front move to `out` and are written in one vectored write. So each client
//! gets its replies in request order whatever the backends do.
//!
//! Its socket is always read, even while its requests are held back (too
//! many in flight, or too many replies unsent): a client that writes a whole
//! pipeline before reading would otherwise block on its write while the
//! proxy waits for it to read, for ever. `client_output_limit` bounds what
//! is held for it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::net::sock::{self, READ_BUDGET, ReadBuf, ReadStatus};
use crate::protocol::local::{ClientInfo, User};
use crate::protocol::multikey::Gather;
use crate::protocol::pubsub::{self, Message};
use crate::protocol::resp::{self, Limits, ProtoError, RequestParser};

/// Requests of one client in flight at the backends past which its further
/// requests are held back (they stay in its read buffer).
const MAX_PENDING: usize = 1024;
/// Unsent reply bytes past which its further requests are held back.
const OUT_SOFT_LIMIT: usize = 16 * 1024 * 1024;

/// A transaction's server: the route server its keys live on, and the
/// client's own connection to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) server: usize,
    pub(crate) conn: Token,
}

/// A client's transaction state.
#[derive(Debug, Default)]
pub(crate) enum Session {
    #[default]
    Normal,
    /// WATCH went out on `Pin`'s connection; no MULTI yet.
    Watching(Pin),
    Multi(Multi),
}

/// Inside MULTI. Until a keyed command picks the server, nothing is sent:
/// commands the proxy can answer are queued here (frame and answer), and
/// go to the server first once it is picked.
#[derive(Debug, Default)]
pub(crate) struct Multi {
    pub(crate) pin: Option<Pin>,
    pub(crate) queued: Vec<(Bytes, Bytes)>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub(crate) aborted: bool,
}

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

/// The messages held ahead of a confirmation, then `last`: one buffer
/// (rare: only messages racing an unsubscribe are held).
fn joined(before: &[Bytes], last: &Bytes) -> Bytes {
    if before.is_empty() {
        return last.clone();
    }
    let mut out =
        BytesMut::with_capacity(before.iter().map(Bytes::len).sum::<usize>() + last.len());
    for b in before {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(last);
    out.freeze()
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

pub(crate) enum Slot {
    Waiting,
    Ready(Bytes),
    Gather(Box<Gather>),
    /// An (un)subscribe confirmation, the proxy's own (`reply`), given once
    /// `awaiting` servers have confirmed: the subscription is active (or
    /// gone) on each of them. A server's error is given instead.
    /// `before`: messages of a subscription being left that its servers
    /// sent before confirming, given ahead of the confirmation.
    Confirm {
        reply: Bytes,
        awaiting: usize,
        before: Vec<Bytes>,
    },
}

pub(crate) struct Client {
    sock: TcpStream,
    peer: SocketAddr,
    /// Unique per worker, for logs and CLIENT ID.
    id: u64,
    rbuf: ReadBuf,
    /// How far the request at the front of `rbuf` has been parsed.
    parser: RequestParser,
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]`.
    first_seq: u64,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    name: Option<Bytes>,
    /// AUTH succeeded, or the cluster has no password.
    authed: bool,
    /// HELLO 3: this client's requests go to backend connections that speak
    /// RESP3, whose replies are forwarded as they are.
    resp3: bool,
    /// Set by QUIT or a protocol error: read and parse nothing more, write
    /// what is owed, then close.
    closing: bool,
    /// The peer closed its side: answer what it sent, then close.
    eof: bool,
    /// On the worker's list of clients to write this turn.
    dirty: bool,
    /// Its requests are held back in `rbuf`; released when it drains.
    held: bool,
    /// Waiting in a blocking command: its slot, and its own connection.
    /// Its later requests wait, as Redis does not read a blocked client's.
    blocked: Option<(u64, Token)>,
    /// `blocked` is a blocking command (not EXEC, DISCARD or UNWATCH
    /// awaiting its reply, which also holds later requests).
    blocking: bool,
    /// The blocking command was answered: its held requests may go on.
    unblocked: bool,
    session: Session,
    /// Made on the first subscription: most clients never subscribe, and
    /// every idle client would pay for it.
    subs: Option<Box<Subs>>,
    /// A request that moves the client onto a connection of its own, kept
    /// back until every earlier request of the client is answered: they ran
    /// on shared connections, and must run first, as one Redis runs them.
    deferred: Option<Box<(Bytes, Vec<Range<usize>>)>>,
    /// To be closed at once, whatever it is owed (a subscriber that does
    /// not read its messages).
    doomed: bool,
    /// The route table generation its unanswered requests were routed
    /// under (see `may_route`).
    route_gen: u64,
    /// `Slot::Confirm`s not given yet: its requests to servers wait for
    /// them, so they run once its subscriptions have changed, as on one
    /// Redis.
    confirming: usize,
    /// One of its unanswered requests came back with MOVED and went to the
    /// node named (see `may_route`).
    rerouted: bool,
}

/// What `Client::next_request` found.
pub(crate) enum Next {
    /// A complete request: its frame (a slice of the read buffer, no copy);
    /// its argument ranges are in the caller's vector. An empty request
    /// (a blank inline line) has no ranges.
    Request(Bytes),
    /// Nothing to dispatch now: incomplete, or held back.
    Wait,
    /// Closing: nothing more is read or dispatched.
    Stop,
}

impl Client {
    pub(crate) fn new(sock: TcpStream, peer: SocketAddr, id: u64) -> Client {
        Client {
            sock,
            peer,
            id,
            rbuf: ReadBuf::default(),
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
            blocked: None,
            blocking: false,
            unblocked: false,
            session: Session::Normal,
            subs: None,
            deferred: None,
            doomed: false,
            route_gen: 0,
            confirming: 0,
            rerouted: false,
        }
    }

    /// Whether requests of its own are still unanswered.
    pub(crate) fn awaiting(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Keeps `frame` (with its argument ranges) back until every earlier
    /// request is answered; `next_request` gives it again then.
    pub(crate) fn defer(&mut self, frame: Bytes, args: &[Range<usize>]) {
        self.deferred = Some(Box::new((frame, args.to_vec())));
    }

    /// Whether a request may be routed now under table `generation`. Not
    /// while requests routed under another table are unanswered: where a
    /// key lives changed (a slot moved, a reload, an ejection), and an
    /// earlier request for it may still be on its way to the old place, or
    /// come back from it with MOVED and be re-sent to the new one. Sent now,
    /// a later request for the same key could run before it.
    /// Nor while one of them is on its way to the node a MOVED named: the
    /// table may still name the node that sent it back, which may own the
    /// slot again by now (it moved back, or took it over), and would run a
    /// later request before the redirected one arrives.
    pub(crate) fn may_route(&mut self, generation: u64) -> bool {
        if self.slots.is_empty() {
            self.route_gen = generation;
            self.rerouted = false;
        }
        self.route_gen == generation && !self.rerouted
    }

    /// One of its requests came back with MOVED and is re-sent elsewhere.
    pub(crate) fn rerouted(&mut self) {
        self.rerouted = true;
    }

    /// Whether (un)subscribe confirmations are still awaited.
    pub(crate) fn confirming(&self) -> bool {
        self.confirming > 0
    }

    pub(crate) fn doom(&mut self) {
        self.doomed = true;
    }

    pub(crate) fn is_doomed(&self) -> bool {
        self.doomed
    }

    /// Unsent reply bytes.
    pub(crate) fn unsent(&self) -> usize {
        self.out_bytes
    }

    pub(crate) fn subs(&self) -> &Subs {
        static NONE: Subs = Subs {
            channels: BTreeMap::new(),
            patterns: BTreeMap::new(),
            shard: BTreeMap::new(),
            conns: Vec::new(),
            leaving: Vec::new(),
        };
        self.subs.as_deref().unwrap_or(&NONE)
    }

    pub(crate) fn subs_mut(&mut self) -> &mut Subs {
        self.subs.get_or_insert_with(Box::default)
    }

    pub(crate) fn tx(&self) -> &Session {
        &self.session
    }

    pub(crate) fn take_session(&mut self) -> Session {
        std::mem::take(&mut self.session)
    }

    pub(crate) fn set_session(&mut self, s: Session) {
        self.session = s;
    }

    pub(crate) fn multi_mut(&mut self) -> Option<&mut Multi> {
        match &mut self.session {
            Session::Multi(m) => Some(m),
            _ => None,
        }
    }

    /// Its request in slot `seq` blocks on connection `conn`.
    pub(crate) fn block_on(&mut self, seq: u64, conn: Token) {
        self.blocked = Some((seq, conn));
        self.blocking = true;
    }

    /// Its request in slot `seq` (EXEC, DISCARD, UNWATCH) ends its use of
    /// connection `conn`: later requests wait for its reply.
    pub(crate) fn await_on(&mut self, seq: u64, conn: Token) {
        self.blocked = Some((seq, conn));
        self.blocking = false;
    }

    /// Waiting in a blocking command.
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.is_some() && self.blocking
    }

    /// The connections it holds of its own, to close when it leaves.
    pub(crate) fn leases(&self) -> Vec<Token> {
        let pin = match &self.session {
            Session::Normal => None,
            Session::Watching(p) => Some(p.conn),
            Session::Multi(m) => m.pin.map(|p| p.conn),
        };
        pin.into_iter()
            .chain(self.blocked.map(|(_, c)| c))
            .chain(self.subs().conns.iter().map(|&(_, c)| c))
            .collect()
    }

    pub(crate) fn register(&mut self, registry: &Registry, t: Token) -> io::Result<()> {
        registry.register(&mut self.sock, t, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn resp3(&self) -> bool {
        self.resp3
    }

    pub(crate) fn authed(&self) -> bool {
        self.authed
    }

    pub(crate) fn name(&self) -> Option<&Bytes> {
        self.name.as_ref()
    }

    /// Its connection state as the locally answered commands see it.
    pub(crate) fn session<'a>(
        &'a mut self,
        password: Option<&'a str>,
        users: &'a [User],
    ) -> ClientInfo<'a> {
        ClientInfo {
            id: self.id,
            name: &mut self.name,
            authed: &mut self.authed,
            resp3: &mut self.resp3,
            password,
            users,
        }
    }

    /// Reads what the socket has (up to the per-wake-up budget). After its
    /// EOF there is nothing more to read.
    /// `room` is the worker's spare buffer, borrowed when this client holds
    /// none.
    pub(crate) fn read(&mut self, closed: bool, room: &mut BytesMut) -> ReadStatus {
        if self.eof {
            return ReadStatus::WouldBlock;
        }
        self.rbuf.adopt(room);
        let status = self.rbuf.read(&mut self.sock, READ_BUDGET, !closed);
        if matches!(status, ReadStatus::Eof) {
            self.eof = true;
        }
        status
    }

    /// The next request to dispatch, unless its requests are held back.
    pub(crate) fn next_request(
        &mut self,
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Next, ProtoError> {
        if self.closing {
            return Ok(Next::Stop);
        }
        if self.held || self.blocked.is_some() {
            return Ok(Next::Wait);
        }
        if self.deferred.is_some() {
            if !self.slots.is_empty() {
                return Ok(Next::Wait);
            }
            if let Some(d) = self.deferred.take() {
                let (frame, ranges) = *d;
                args.clear();
                args.extend(ranges);
                return Ok(Next::Request(frame));
            }
        }
        if self.slots.len() >= MAX_PENDING || self.out_bytes >= OUT_SOFT_LIMIT {
            self.held = true;
            return Ok(Next::Wait);
        }
        match self.parser.parse(self.rbuf.data(), args, limits)? {
            Some(n) => Ok(Next::Request(self.rbuf.split_frame(n))),
            None => Ok(Next::Wait),
        }
    }

    /// Everything read was parsed: let the buffer go (requests in flight
    /// keep what they need), so an idle client holds no read buffer. Its
    /// unused room goes back to the worker's `room` when larger than what
    /// is there (the room past the requests just split off is never shared
    /// with them), unless the buffer grew large (`sock::KEEP_MAX`).
    pub(crate) fn release_read_buffer(&mut self, room: &mut BytesMut) {
        if let Some(buf) = self.rbuf.release()
            && buf.capacity() > room.capacity()
        {
            *room = buf;
        }
    }

    /// While held: its unsent replies plus held requests, when over `limit`.
    pub(crate) fn over_limit(&self, limit: usize) -> Option<(usize, usize)> {
        let held = if self.held { self.rbuf.len() } else { 0 };
        (limit > 0 && self.out_bytes + held > limit).then_some((self.out_bytes, held))
    }

    /// Answers a protocol error and closes after it.
    pub(crate) fn refuse(&mut self, reply: Bytes) {
        self.rbuf.clear();
        self.push(Slot::Ready(reply));
        self.closing = true;
    }

    /// QUIT, or a draining worker: take no new request, close once what
    /// is owed is written.
    pub(crate) fn close_after_reply(&mut self) {
        self.closing = true;
    }

    /// Takes the next slot; returns its sequence number.
    pub(crate) fn push(&mut self, slot: Slot) -> u64 {
        if matches!(slot, Slot::Confirm { .. }) {
            self.confirming += 1;
        }
        let seq = self.first_seq + self.slots.len() as u64;
        self.slots.push_back(slot);
        self.promote();
        seq
    }

    /// Puts a reply (or one part of a split command's reply) in its slot.
    /// A slot that is gone or already full is left alone: a reply is never
    /// delivered twice.
    pub(crate) fn fill(&mut self, seq: u64, part: u32, reply: Bytes) {
        let Some(idx) = seq.checked_sub(self.first_seq) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if self.blocked.is_some_and(|(s, _)| s == seq) {
            self.blocked = None;
            self.unblocked = true;
        }
        match slot {
            Slot::Waiting => *slot = Slot::Ready(reply),
            Slot::Gather(g) => {
                if let Some(merged) = g.fill(part, reply) {
                    *slot = Slot::Ready(merged);
                }
            }
            Slot::Confirm {
                reply: own,
                awaiting,
                before,
            } => {
                *awaiting = awaiting.saturating_sub(1);
                if resp::is_error(&reply) {
                    *slot = Slot::Ready(joined(before, &reply));
                } else if *awaiting == 0 {
                    *slot = Slot::Ready(joined(before, own));
                }
                if matches!(slot, Slot::Ready(_)) {
                    self.confirming = self.confirming.saturating_sub(1);
                }
            }
            Slot::Ready(_) => return,
        }
        if idx == 0 {
            self.promote();
        }
    }

    /// A message to give ahead of the (un)subscribe confirmation in slot
    /// `seq`, not yet given; false when that slot is not one.
    pub(crate) fn hold_before(&mut self, seq: u64, msg: Bytes) -> bool {
        let slot = seq
            .checked_sub(self.first_seq)
            .and_then(|i| self.slots.get_mut(i as usize));
        match slot {
            Some(Slot::Confirm { before, .. }) => {
                before.push(msg);
                true
            }
            _ => false,
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

    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes what it is owed, until done or the socket is full.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        let n = sock::write_queue(&mut self.sock, &mut self.out)?;
        self.out_bytes -= n.min(self.out_bytes);
        if self.out.is_empty() {
            self.out_bytes = 0;
        }
        Ok(())
    }

    /// Held requests may go on once it has drained below half of both
    /// limits. Returns true when it was released.
    pub(crate) fn release(&mut self) -> bool {
        let unblocked = std::mem::take(&mut self.unblocked)
            || (self.deferred.is_some() && self.slots.is_empty());
        if self.held && self.slots.len() < MAX_PENDING / 2 && self.out_bytes < OUT_SOFT_LIMIT / 2 {
            self.held = false;
            return true;
        }
        unblocked
    }

    /// Nothing owed and nothing unsent.
    pub(crate) fn idle(&self) -> bool {
        self.slots.is_empty() && self.out.is_empty()
    }

    /// Closing, or past its EOF with no request left to answer, and
    /// everything it is owed written: the connection can go.
    pub(crate) fn finished(&self) -> bool {
        (self.closing || (self.eof && !self.held)) && self.idle()
    }

    /// Marks it for writing this turn; false if it already was.
    pub(crate) fn mark(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    pub(crate) fn unmark(&mut self) {
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A client over a real loopback connection, and its peer's end.
    fn pair() -> (Client, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (sock, addr) = l.accept().expect("accept");
        sock.set_nonblocking(true).expect("nonblocking");
        (Client::new(TcpStream::from_std(sock), addr, 1), peer)
    }

    fn read_all(c: &mut Client) {
        for _ in 0..200 {
            if matches!(c.read(true, &mut BytesMut::new()), ReadStatus::WouldBlock)
                && !c.rbuf.is_empty()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn requests_past_the_in_flight_bound_are_held_then_released() {
        let (mut c, mut peer) = pair();
        let n = MAX_PENDING + 10;
        peer.write_all(&b"*1\r\n$4\r\nPING\r\n".repeat(n))
            .expect("write");
        read_all(&mut c);
        let limits = Limits::default();
        let mut args = Vec::new();
        let mut seqs = Vec::new();
        loop {
            match c.next_request(&mut args, &limits) {
                Ok(Next::Request(_)) => seqs.push(c.push(Slot::Waiting)),
                Ok(Next::Wait) => break,
                _ => panic!("unexpected"),
            }
        }
        assert_eq!(seqs.len(), MAX_PENDING, "held at the bound");
        assert!(!c.release(), "nothing answered yet");
        for &s in &seqs[..MAX_PENDING / 2] {
            c.fill(s, 0, Bytes::from_static(b"+PONG\r\n"));
        }
        assert!(!c.release(), "half answered is not below half");
        c.fill(seqs[MAX_PENDING / 2], 0, Bytes::from_static(b"+PONG\r\n"));
        assert!(c.release(), "below half of the bound");
        let mut more = 0;
        while let Ok(Next::Request(_)) = c.next_request(&mut args, &limits) {
            c.push(Slot::Waiting);
            more += 1;
        }
        assert_eq!(more, 10, "the held requests go on, none lost");
    }

    #[test]
    fn eof_with_requests_held_waits_until_they_are_answered() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
        peer.shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut eof = false;
        for _ in 0..200 {
            if matches!(c.read(true, &mut BytesMut::new()), ReadStatus::Eof) {
                eof = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(eof);
        assert!(
            !c.rbuf.is_empty(),
            "the request sent before the EOF is buffered"
        );
        let mut args = Vec::new();
        let Ok(Next::Request(_)) = c.next_request(&mut args, &Limits::default()) else {
            panic!("the request sent before the EOF is dispatched");
        };
        let seq = c.push(Slot::Waiting);
        assert!(!c.finished(), "owed a reply");
        c.fill(seq, 0, Bytes::from_static(b"+PONG\r\n"));
        c.write().expect("write");
        assert!(c.finished());
    }

    #[test]
    fn a_confirmation_waits_for_every_server_and_holds_what_follows() {
        let (mut c, _peer) = pair();
        let own = Bytes::from_static(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
        let server = Bytes::from_static(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:7\r\n");
        let seq = c.push(Slot::Confirm {
            reply: own.clone(),
            awaiting: 2,
            before: Vec::new(),
        });
        assert!(c.confirming());
        // A message read meanwhile comes after the confirmation.
        c.push(Slot::Ready(Bytes::from_static(b"+msg\r\n")));
        c.fill(seq, 0, server.clone());
        assert!(!c.has_output(), "one server of two confirmed");
        c.fill(seq, 1, server);
        assert!(!c.confirming());
        assert_eq!(
            c.out.iter().collect::<Vec<_>>(),
            [&own, &Bytes::from_static(b"+msg\r\n")],
            "the proxy's own confirmation, then the message"
        );
        let seq = c.push(Slot::Confirm {
            reply: own,
            awaiting: 2,
            before: Vec::new(),
        });
        let err = Bytes::from_static(b"-NOPERM no\r\n");
        c.fill(seq, 1, err.clone());
        assert!(!c.confirming());
        assert_eq!(c.out.back(), Some(&err), "a server's refusal is given");
    }

    /// Reads one request from `c` with the worker's `room` and splits it off.
    fn one_request(c: &mut Client, peer: &mut std::net::TcpStream, room: &mut BytesMut) -> Bytes {
        peer.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .expect("write");
        let mut args = Vec::new();
        for _ in 0..200 {
            let _ = c.read(false, room);
            if let Ok(Next::Request(frame)) = c.next_request(&mut args, &Limits::default()) {
                c.release_read_buffer(room);
                return frame;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("no request read");
    }

    #[test]
    fn clients_carve_small_requests_from_one_buffer() {
        let (mut a, mut pa) = pair();
        let (mut b, mut pb) = pair();
        let mut room = BytesMut::new();
        let first = one_request(&mut a, &mut pa, &mut room);
        assert!(a.rbuf.capacity() == 0, "an idle client holds no buffer");
        // The next request, another client's, lands right after the first
        // in the same allocation: no allocation per request.
        let second = one_request(&mut b, &mut pb, &mut room);
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(first.len()));
        let third = one_request(&mut a, &mut pa, &mut room);
        assert_eq!(third.as_ptr(), second.as_ptr().wrapping_add(second.len()));
        assert_eq!(&third[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    /// A client that sent a large request does not hand its buffer to the
    /// worker: the room left after it would keep the large allocation alive.
    #[test]
    fn a_large_request_does_not_become_the_workers_buffer() {
        let (mut c, mut peer) = pair();
        let big = vec![b'v'; 1 << 20];
        let req = crate::protocol::resp::command(&[&b"SET"[..], b"k", &big]);
        let writer = std::thread::spawn(move || peer.write_all(&req).map(|_| peer));
        let mut room = BytesMut::new();
        let mut args = Vec::new();
        let mut frame = None;
        for _ in 0..400 {
            let _ = c.read(false, &mut room);
            if let Ok(Next::Request(f)) = c.next_request(&mut args, &Limits::default()) {
                frame = Some(f);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _peer = writer.join().expect("writer").expect("write");
        assert!(frame.is_some_and(|f| f.len() > big.len()));
        c.release_read_buffer(&mut room);
        assert_eq!(c.rbuf.capacity(), 0, "the client holds no buffer");
        assert_eq!(room.capacity(), 0, "nor does the worker keep its room");
    }
}
