//! A client connection: its read buffer and request parser, the replies it
//! is owed in order (`replies`), and the rules that hold its requests back
//! (`gate`). Its subscriptions (`subs`) and transaction (`session`) are
//! kept here too, and close with it.
//!
//! Its socket is always read, even while its requests are held back (too
//! many in flight, or too many replies unsent): a client that writes a whole
//! pipeline before reading would otherwise block on its write while the
//! proxy waits for it to read, for ever. `client_output_limit` bounds what
//! is held for it.

mod gate;
mod replies;
mod session;
mod subs;

use std::io;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use crate::net::sock::{READ_BUDGET, ReadBuf, ReadStatus};
use crate::net::stream::{Peer, Stream};
use crate::protocol::local::{ClientInfo, User};
use crate::protocol::resp::{Limits, ProtoError};
use crate::protocol::wire::RequestFramer;

use self::gate::{Admit, Gate, Life};
use self::replies::Replies;
pub(crate) use self::replies::Slot;
pub(crate) use self::session::{Pin, QueueStep, Session, TxStep, WatchStep};
pub(crate) use self::subs::{SubKind, Subs};

/// Requests of one client in flight at the backends past which its further
/// requests are held back (they stay in its read buffer).
const MAX_PENDING: usize = 1024;
/// Unsent reply bytes past which its further requests are held back.
const OUT_SOFT_LIMIT: usize = 16 * 1024 * 1024;

pub(crate) struct Client {
    sock: Stream,
    peer: Peer,
    /// Unique per worker, for logs and CLIENT ID.
    id: u64,
    rbuf: ReadBuf,
    /// How far the request at the front of `rbuf` has been parsed.
    parser: RequestFramer,
    replies: Replies,
    name: Option<Bytes>,
    /// AUTH succeeded, or the cluster has no password.
    authed: bool,
    /// HELLO 3: this client's requests go to backend connections that speak
    /// RESP3, whose replies are forwarded as they are.
    resp3: bool,
    life: Life,
    gate: Gate,
    /// On the worker's list of clients to write this turn.
    dirty: bool,
    session: Session,
    /// Made on the first subscription: most clients never subscribe, and
    /// every idle client would pay for it.
    subs: Option<Box<Subs>>,
    /// The route table generation its unanswered requests were routed
    /// under (see `may_route`).
    route_gen: u64,
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
    pub(crate) fn new(sock: Stream, peer: Peer, id: u64, parser: RequestFramer) -> Client {
        Client {
            sock,
            peer,
            id,
            rbuf: ReadBuf::default(),
            parser,
            replies: Replies::default(),
            name: None,
            authed: false,
            resp3: false,
            life: Life::Open,
            gate: Gate::Open,
            dirty: false,
            session: Session::default(),
            subs: None,
            route_gen: 0,
            rerouted: false,
        }
    }

    /// Whether requests of its own are still unanswered.
    pub(crate) fn awaiting(&self) -> bool {
        self.replies.unanswered() > 0
    }

    /// Keeps `frame` (with its argument ranges) back until every earlier
    /// request is answered; `next_request` gives it again then.
    pub(crate) fn defer(&mut self, frame: Bytes, args: &[Range<usize>]) {
        self.gate.defer(frame, args);
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
        if !self.awaiting() {
            self.route_gen = generation;
            self.rerouted = false;
        }
        self.route_gen == generation && !self.rerouted
    }

    /// One of its requests came back with MOVED and is re-sent elsewhere.
    pub(crate) fn rerouted(&mut self) {
        self.rerouted = true;
    }

    /// Whether (un)subscribe confirmations are still awaited: its requests
    /// to servers wait for them, so they run once its subscriptions have
    /// changed, as on one Redis.
    pub(crate) fn confirming(&self) -> bool {
        self.replies.confirming()
    }

    pub(crate) fn doom(&mut self) {
        self.life.advance(Life::Doomed);
    }

    pub(crate) fn is_doomed(&self) -> bool {
        self.life == Life::Doomed
    }

    /// Unsent reply bytes.
    pub(crate) fn unsent(&self) -> usize {
        self.replies.unsent()
    }

    pub(crate) fn subs(&self) -> &Subs {
        static NONE: Subs = Subs::new();
        self.subs.as_deref().unwrap_or(&NONE)
    }

    pub(crate) fn subs_mut(&mut self) -> &mut Subs {
        self.subs.get_or_insert_with(Box::default)
    }

    pub(crate) fn tx(&self) -> &Session {
        &self.session
    }

    pub(crate) fn tx_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Its request in slot `seq` blocks on connection `conn`.
    pub(crate) fn block_on(&mut self, seq: u64, conn: Token) {
        self.gate.await_reply(seq, conn, true);
    }

    /// Its request in slot `seq` (EXEC, DISCARD, UNWATCH) ends its use of
    /// connection `conn`: later requests wait for its reply.
    pub(crate) fn await_on(&mut self, seq: u64, conn: Token) {
        self.gate.await_reply(seq, conn, false);
    }

    /// Waiting in a blocking command.
    pub(crate) fn is_blocked(&self) -> bool {
        self.gate.is_blocked()
    }

    /// The connections it holds of its own, to close when it leaves.
    pub(crate) fn leases(&self) -> Vec<Token> {
        self.session
            .conn()
            .into_iter()
            .chain(self.gate.awaited_conn())
            .chain(self.subs().conns())
            .collect()
    }

    pub(crate) fn register(&mut self, registry: &Registry, t: Token) -> io::Result<()> {
        registry.register(&mut self.sock, t, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
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
    /// EOF, or once closing, there is nothing more to read.
    /// `room` is the worker's spare buffer, borrowed when this client holds
    /// none.
    pub(crate) fn read(&mut self, closed: bool, room: &mut BytesMut) -> ReadStatus {
        if !self.life.reads() {
            return ReadStatus::WouldBlock;
        }
        self.rbuf.adopt(room);
        let status = self.rbuf.read(&mut self.sock, READ_BUDGET, !closed);
        if matches!(status, ReadStatus::Eof) {
            self.life.advance(Life::Eof);
        }
        status
    }

    /// The next request to dispatch, unless its requests are held back.
    pub(crate) fn next_request(
        &mut self,
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Next, ProtoError> {
        if !self.life.dispatches() {
            return Ok(Next::Stop);
        }
        match self.gate.admit(!self.awaiting()) {
            Admit::Wait => return Ok(Next::Wait),
            Admit::Deferred => {
                if let Some(d) = self.gate.take_deferred() {
                    args.clear();
                    args.extend(d.args);
                    return Ok(Next::Request(d.frame));
                }
            }
            Admit::Parse => {}
        }
        if self.replies.unanswered() >= MAX_PENDING || self.replies.unsent() >= OUT_SOFT_LIMIT {
            self.gate.hold();
            return Ok(Next::Wait);
        }
        match self.parser.frame(self.rbuf.data(), args, limits)? {
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
        let held = if self.gate.is_held() {
            self.rbuf.len()
        } else {
            0
        };
        let unsent = self.replies.unsent();
        (limit > 0 && unsent + held > limit).then_some((unsent, held))
    }

    /// Answers a protocol error and closes after it.
    pub(crate) fn refuse(&mut self, reply: Bytes) {
        self.rbuf.clear();
        self.push(Slot::Ready(reply));
        self.life.advance(Life::Closing);
    }

    /// QUIT, or a draining worker: take no new request, close once what
    /// is owed is written.
    pub(crate) fn close_after_reply(&mut self) {
        self.life.advance(Life::Closing);
    }

    /// Takes the next slot; returns its sequence number.
    pub(crate) fn push(&mut self, slot: Slot) -> u64 {
        self.replies.push(slot)
    }

    /// Puts a reply (or one part of a split command's reply) in its slot.
    /// A slot that is gone or already full is left alone: a reply is never
    /// delivered twice.
    pub(crate) fn fill(&mut self, seq: u64, part: u32, reply: Bytes) {
        self.gate.answered(seq);
        self.replies.fill(seq, part, reply);
    }

    /// A message to give ahead of the (un)subscribe confirmation in slot
    /// `seq`, not yet given; false when that slot is not one.
    pub(crate) fn hold_before(&mut self, seq: u64, msg: Bytes) -> bool {
        self.replies.hold_before(seq, msg)
    }

    pub(crate) fn has_output(&self) -> bool {
        self.replies.has_output()
    }

    /// Writes what it is owed, until done or the socket is full.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        self.replies.write(&mut self.sock)
    }

    /// At the end of the turn: whether its buffer must be parsed again (its
    /// held requests may go on once it drained below half of both limits,
    /// an awaited reply came, a deferred request's turn came).
    pub(crate) fn release(&mut self) -> bool {
        let drained = self.replies.unanswered() < MAX_PENDING / 2
            && self.replies.unsent() < OUT_SOFT_LIMIT / 2;
        let idle = !self.awaiting();
        self.gate.release(drained, idle)
    }

    /// Nothing owed and nothing unsent.
    pub(crate) fn idle(&self) -> bool {
        self.replies.idle()
    }

    /// Closing, or past its EOF with every request it sent run (none held,
    /// awaiting or kept back), and everything it is owed written: the
    /// connection can go.
    pub(crate) fn finished(&self) -> bool {
        self.life.may_end(self.gate.is_open()) && self.idle()
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
        (
            Client::new(
                Stream::Tcp(mio::net::TcpStream::from_std(sock)),
                Peer::Tcp(addr),
                1,
                crate::protocol::wire::Wire::Redis.requests(),
            ),
            peer,
        )
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
            c.replies.output().collect::<Vec<_>>(),
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
        assert_eq!(
            c.replies.output().last(),
            Some(&err),
            "a server's refusal is given"
        );
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
