//! A backend connection: the requests queued for writing, the requests
//! awaiting replies in the order the server will answer them, and the
//! scanner that cuts replies out of what it reads. It pairs each reply with
//! its request itself (`take_reply`), as pelikan's client session does.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::net::sock::{self, READ_BUDGET, ReadBuf, ReadStatus};
use crate::protocol::command::Block;
use crate::protocol::pubsub;
use crate::protocol::resp::{self, ReplyScanner};
use crate::worker::error::BackendError;
use crate::worker::server::ServerId;

/// Where a reply goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReplyTo {
    /// Slot `seq` (part `part` of a split command) of the client at `token`.
    Client { token: Token, seq: u64, part: u32 },
    /// A command the proxy sent for itself on connect (AUTH, SELECT,
    /// READONLY): an error reply means the connection is unusable.
    Init,
    /// ASKING before a redirected request: its reply is dropped.
    Discard,
}

pub(crate) struct Pending {
    pub(crate) to: ReplyTo,
    /// When the request was queued: the read timeout counts from here.
    pub(crate) at: Instant,
    /// The request itself (a shared slice, not a copy), kept to resend it
    /// after a cluster redirect or on the master.
    pub(crate) req: Bytes,
    /// How many redirects this request has followed.
    pub(crate) redirects: u8,
    /// A read sent to a replica: the master, where it is retried if this
    /// connection fails.
    pub(crate) fallback: Option<ServerId>,
    /// A blocking command: how long it may block beyond `read_timeout`.
    pub(crate) block: Option<Block>,
}

/// What a subscriber connection reads: messages for its client, and the
/// server's replies to the (un)subscribe commands sent on it.
pub(crate) enum SubFrame {
    Message(Bytes),
    Reply(Pending, Bytes),
}

/// A dedicated connection's holder: the client it serves alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) client: Token,
    pub(crate) release: Release,
}

/// When a leased connection goes back to the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Once its last reply is read (a blocking command; EXEC, DISCARD or
    /// UNWATCH sent).
    WhenIdle,
    /// When the client's transaction state says so (WATCH, MULTI).
    Held,
    /// A subscriber connection: its messages go to the client, and the
    /// server's confirmations are paired with the (un)subscribe commands
    /// sent on it; closed when the client's last subscription on it goes.
    Subscriber,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Ready,
}

pub(crate) struct BackendConn {
    sock: TcpStream,
    addr: SocketAddr,
    server: ServerId,
    /// Whether it sent HELLO 3 on connect: it serves RESP3 clients only.
    resp3: bool,
    /// Which of the server's slots (of its protocol) it was opened for.
    slot: usize,
    state: State,
    started: Instant,
    wq: VecDeque<Bytes>,
    inflight: VecDeque<Pending>,
    rbuf: ReadBuf,
    /// How far the reply at the front of `rbuf` has been scanned.
    scanner: ReplyScanner,
    /// When the write queue last made progress (or became non-empty).
    write_since: Instant,
    /// On the worker's list of connections to write this turn.
    dirty: bool,
    /// The deadline its timer entry is armed for.
    armed: Option<Instant>,
    /// Opened for clients of their own (never in a server's shared slots),
    /// and the one it serves now, if any.
    dedicated: bool,
    lease: Option<Lease>,
    /// The backend options generation it was opened under: a reload that
    /// changes them retires older dedicated connections when released.
    options: u64,
}

/// What a connection holds, for the stats: (unsent requests, their bytes,
/// requests sent and awaiting replies, their bytes).
pub(crate) struct Queues {
    pub(crate) unsent: u64,
    pub(crate) unsent_bytes: u64,
    pub(crate) outstanding: u64,
    pub(crate) outstanding_bytes: u64,
}

impl BackendConn {
    /// Starts a non-blocking connect.
    pub(crate) fn connect(
        addr: SocketAddr,
        server: ServerId,
        resp3: bool,
        slot: usize,
        now: Instant,
    ) -> io::Result<BackendConn> {
        Ok(BackendConn {
            sock: TcpStream::connect(addr)?,
            addr,
            server,
            resp3,
            slot,
            state: State::Connecting,
            started: now,
            wq: VecDeque::new(),
            inflight: VecDeque::new(),
            rbuf: ReadBuf::default(),
            scanner: ReplyScanner::default(),
            write_since: now,
            dirty: false,
            armed: None,
            dedicated: false,
            lease: None,
            options: 0,
        })
    }

    /// Makes it a dedicated connection, opened under options generation `options`.
    pub(crate) fn dedicate(&mut self, options: u64) {
        self.dedicated = true;
        self.options = options;
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        self.dedicated
    }

    pub(crate) fn options(&self) -> u64 {
        self.options
    }

    pub(crate) fn lease(&self) -> Option<Lease> {
        self.lease
    }

    pub(crate) fn set_lease(&mut self, lease: Option<Lease>) {
        self.lease = lease;
    }

    pub(crate) fn register(&mut self, registry: &Registry, t: Token) -> io::Result<()> {
        registry.register(&mut self.sock, t, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    pub(crate) fn sock(&self) -> &TcpStream {
        &self.sock
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn server(&self) -> ServerId {
        self.server
    }

    pub(crate) fn resp3(&self) -> bool {
        self.resp3
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether a non-blocking connect finished: `Ok(false)` while in progress.
    pub(crate) fn finish_connect(&mut self) -> Result<bool, BackendError> {
        if self.state == State::Ready {
            return Ok(true);
        }
        let done = connect_outcome(&self.sock).map_err(|e| BackendError::connect(&e))?;
        if done {
            self.state = State::Ready;
        }
        Ok(done)
    }

    /// Marks it for writing this turn; false if it already was.
    pub(crate) fn mark(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    pub(crate) fn unmark(&mut self) {
        self.dirty = false;
    }

    /// Its writes were held (older connections draining) and may go now:
    /// the write timeout counts from here, not from when they were queued.
    pub(crate) fn writes_resume(&mut self, now: Instant) {
        self.write_since = now;
    }

    pub(crate) fn has_unsent(&self) -> bool {
        !self.wq.is_empty()
    }

    /// Nothing queued and nothing awaiting a reply.
    pub(crate) fn idle(&self) -> bool {
        self.inflight.is_empty() && self.wq.is_empty()
    }

    /// Queues a request. Returns true when nothing was queued before it: a
    /// write deadline starts now (and a read deadline too, if it was idle),
    /// which may be earlier than the one its timer is armed for.
    pub(crate) fn enqueue(
        &mut self,
        req: Bytes,
        to: ReplyTo,
        redirects: u8,
        fallback: Option<ServerId>,
        block: Option<Block>,
        now: Instant,
    ) -> bool {
        let was_empty = self.wq.is_empty();
        if was_empty {
            self.write_since = now;
        }
        self.wq.push_back(req.clone());
        self.inflight.push_back(Pending {
            to,
            at: now,
            req,
            redirects,
            fallback,
            block,
        });
        was_empty
    }

    pub(crate) fn read(&mut self, closed: bool) -> ReadStatus {
        self.rbuf.read(&mut self.sock, READ_BUDGET, !closed)
    }

    /// The next complete frame cut off the read buffer; when there is none,
    /// an emptied large buffer is let go (`ReadBuf`).
    fn next_frame(&mut self) -> Result<Option<Bytes>, BackendError> {
        match self.scanner.scan(self.rbuf.data()) {
            Ok(Some(n)) => Ok(Some(self.rbuf.split_frame(n))),
            Ok(None) => {
                // Once nothing more is owed: a stream of large replies
                // keeps reading into the room it has.
                if self.inflight.is_empty() {
                    self.rbuf.shed_large();
                }
                Ok(None)
            }
            Err(e) => Err(BackendError::Protocol(e.to_string())),
        }
    }

    /// The next complete reply read, with the request it answers. A reply to
    /// a command sent on connect is checked here: an error fails the
    /// connection, and a success is consumed.
    pub(crate) fn take_reply(&mut self) -> Result<Option<(Pending, Bytes)>, BackendError> {
        loop {
            let Some(reply) = self.next_frame()? else {
                return Ok(None);
            };
            if let Some(paired) = self.pair(reply)? {
                return Ok(Some(paired));
            }
        }
    }

    /// The next complete frame read on a subscriber connection: a message,
    /// or a reply (a server's (un)subscribe confirmation) with the request
    /// it answers, as `take_reply` pairs them.
    pub(crate) fn take_sub_frame(&mut self) -> Result<Option<SubFrame>, BackendError> {
        loop {
            let Some(frame) = self.next_frame()? else {
                return Ok(None);
            };
            if pubsub::is_message(&frame) {
                return Ok(Some(SubFrame::Message(frame)));
            }
            if let Some((p, reply)) = self.pair(frame)? {
                return Ok(Some(SubFrame::Reply(p, reply)));
            }
        }
    }

    /// Pairs a reply with the oldest request awaiting one; `None` when it
    /// answered a command sent on connect (consumed; an error fails the
    /// connection).
    fn pair(&mut self, reply: Bytes) -> Result<Option<(Pending, Bytes)>, BackendError> {
        let Some(p) = self.inflight.pop_front() else {
            return Err(BackendError::Protocol(
                "Protocol error: unexpected reply from the server".into(),
            ));
        };
        match p.to {
            ReplyTo::Init if resp::is_error(&reply) => Err(init_rejected(&reply)),
            ReplyTo::Init => Ok(None),
            _ => Ok(Some((p, reply))),
        }
    }

    /// Writes what is queued, until done or the socket is full.
    pub(crate) fn write(&mut self, now: Instant) -> Result<(), BackendError> {
        match sock::write_queue(&mut self.sock, &mut self.wq) {
            Ok(n) => {
                if n > 0 {
                    self.write_since = now;
                }
                Ok(())
            }
            Err(e) => Err(BackendError::io(&e)),
        }
    }

    /// When it times out: the connect, the oldest request's reply, or write
    /// progress. `held`: its writes wait for older connections to drain, so
    /// their slowness is not its own (their deadlines bound the wait).
    pub(crate) fn deadline(
        &self,
        read_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
        held: bool,
    ) -> Option<Instant> {
        if self.state == State::Connecting {
            return write_timeout.map(|w| self.started + w);
        }
        // A blocking command may take its own timeout on top; timeout 0
        // blocks until data comes or the client leaves.
        let read = read_timeout.and_then(|r| {
            self.inflight.front().and_then(|p| match p.block {
                None => Some(p.at + r),
                Some(Block::For(d)) => Some(p.at + r + d),
                Some(Block::Forever) => None,
            })
        });
        let write = write_timeout
            .and_then(|w| (!self.wq.is_empty() && !held).then(|| self.write_since + w));
        match (read, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records the deadline its timer entry is armed for; false when an
    /// entry at or before `at` is armed already.
    pub(crate) fn arm(&mut self, at: Instant) -> bool {
        if self.armed.is_some_and(|a| a <= at) {
            return false;
        }
        self.armed = Some(at);
        true
    }

    /// A timer entry for `at` came due: whether it is this connection's
    /// current one (others were superseded). It is disarmed either way.
    pub(crate) fn fire(&mut self, at: Instant) -> bool {
        if self.armed != Some(at) {
            return false;
        }
        self.armed = None;
        true
    }

    /// The requests it carried, for the caller to answer: the connection is
    /// being closed.
    pub(crate) fn into_inflight(self) -> VecDeque<Pending> {
        self.inflight
    }

    pub(crate) fn queues(&self) -> Queues {
        let unsent = self.wq.len();
        Queues {
            unsent: unsent as u64,
            unsent_bytes: self.wq.iter().map(|x| x.len() as u64).sum(),
            outstanding: self.inflight.len().saturating_sub(unsent) as u64,
            outstanding_bytes: self
                .inflight
                .iter()
                .skip(unsent)
                .map(|p| p.req.len() as u64)
                .sum(),
        }
    }

    /// Server `si` is being forgotten: reads here no longer fall back to it.
    pub(crate) fn forget_fallback(&mut self, si: ServerId) {
        for p in &mut self.inflight {
            if p.fallback == Some(si) {
                p.fallback = None;
            }
        }
    }
}

/// Whether a non-blocking connect finished: `Ok(false)` while in progress.
fn connect_outcome(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// A server's refusal of a command sent on connect, in its own words.
fn init_rejected(reply: &[u8]) -> BackendError {
    let text = reply.get(1..reply.len().saturating_sub(2)).unwrap_or(&[]);
    BackendError::InitRejected(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisProc;
    use mio::{Events, Poll};

    /// Drives one connection until `done` says so (5 s at most).
    fn drive(
        poll: &mut Poll,
        b: &mut BackendConn,
        mut done: impl FnMut(&mut BackendConn) -> bool,
    ) -> bool {
        let mut events = Events::with_capacity(8);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if done(b) {
                return true;
            }
            let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        }
        false
    }

    fn connected(addr: SocketAddr, poll: &mut Poll) -> BackendConn {
        let mut b = BackendConn::connect(addr, ServerId(0), false, 0, Instant::now())
            .expect("connect starts");
        b.register(poll.registry(), Token(1)).expect("register");
        assert!(drive(poll, &mut b, |b| b.finish_connect().unwrap_or(false)));
        b
    }

    fn to(seq: u64) -> ReplyTo {
        ReplyTo::Client {
            token: Token(7),
            seq,
            part: 0,
        }
    }

    #[test]
    fn pairs_each_reply_with_its_request_and_consumes_init_replies() {
        let redis = RedisProc::start(&[]);
        let mut poll = Poll::new().expect("poll");
        let mut b = connected(redis.addr(), &mut poll);
        let now = Instant::now();
        assert!(b.enqueue(
            resp::command(&[b"SELECT", b"0"]),
            ReplyTo::Init,
            0,
            None,
            None,
            now
        ));
        for (seq, cmd) in [
            &[&b"SET"[..], b"k", b"v"][..],
            &[b"GET", b"k"],
            &[b"NOSUCH"],
            &[b"PING"],
        ]
        .into_iter()
        .enumerate()
        {
            assert!(!b.enqueue(resp::command(cmd), to(seq as u64), 0, None, None, now));
        }
        b.write(now).expect("write");
        let mut got = Vec::new();
        let done = drive(&mut poll, &mut b, |b| {
            let _ = b.read(false);
            while let Ok(Some((p, reply))) = b.take_reply() {
                let ReplyTo::Client { seq, .. } = p.to else {
                    panic!("a reply to an init command was handed out");
                };
                got.push((seq, reply));
            }
            got.len() == 4
        });
        assert!(done, "replies: {got:?}");
        assert_eq!(got[0], (0, Bytes::from_static(b"+OK\r\n")));
        assert_eq!(got[1], (1, Bytes::from_static(b"$1\r\nv\r\n")));
        assert!(got[2].1.starts_with(b"-ERR unknown command"), "{got:?}");
        assert_eq!(got[3], (3, Bytes::from_static(b"+PONG\r\n")));
        assert!(b.idle());
    }

    /// A large reply grows the read buffer; once it is cut off and the
    /// buffer is empty, the buffer goes, or its room would keep the whole
    /// large allocation alive for as long as the connection lives.
    #[test]
    fn a_large_reply_leaves_no_buffer_behind() {
        let redis = RedisProc::start(&[]);
        let mut poll = Poll::new().expect("poll");
        let mut b = connected(redis.addr(), &mut poll);
        let now = Instant::now();
        let big = vec![b'v'; 3 << 20];
        b.enqueue(
            resp::command(&[&b"SET"[..], b"big", &big]),
            to(0),
            0,
            None,
            None,
            now,
        );
        b.enqueue(resp::command(&[b"GET", b"big"]), to(1), 0, None, None, now);
        let mut got = Vec::new();
        assert!(drive(&mut poll, &mut b, |b| {
            b.write(now).expect("write");
            let _ = b.read(false);
            while let Ok(Some((_, reply))) = b.take_reply() {
                got.push(reply.len());
            }
            got.len() == 2
        }));
        assert_eq!(got[1], big.len() + 12);
        assert_eq!(b.rbuf.capacity(), 0, "the large buffer is let go");
        // A small reply afterwards reads into a small new buffer.
        b.enqueue(resp::command(&[b"PING"]), to(2), 0, None, None, now);
        b.write(now).expect("write");
        assert!(drive(&mut poll, &mut b, |b| {
            let _ = b.read(false);
            matches!(b.take_reply(), Ok(Some(_)))
        }));
        assert!(b.rbuf.capacity() < 64 * 1024);
    }

    #[test]
    fn an_init_command_the_server_refuses_fails_the_connection() {
        let redis = RedisProc::start(&["--requirepass", "right"]);
        let mut poll = Poll::new().expect("poll");
        let mut b = connected(redis.addr(), &mut poll);
        let now = Instant::now();
        b.enqueue(
            resp::command(&[b"AUTH", b"wrong"]),
            ReplyTo::Init,
            0,
            None,
            None,
            now,
        );
        b.enqueue(resp::command(&[b"PING"]), to(0), 0, None, None, now);
        b.write(now).expect("write");
        let mut outcome = None;
        assert!(drive(&mut poll, &mut b, |b| {
            let _ = b.read(false);
            match b.take_reply() {
                Ok(None) => false,
                other => {
                    outcome = Some(other.map(|r| r.map(|(_, reply)| reply)));
                    true
                }
            }
        }));
        match outcome {
            Some(Err(BackendError::InitRejected(text))) => {
                assert!(text.starts_with("WRONGPASS"), "{text}")
            }
            other => panic!("expected the AUTH refusal, got {other:?}"),
        }
    }

    #[test]
    fn deadlines_follow_the_oldest_request_and_skip_held_writes() {
        let redis = RedisProc::start(&[]);
        let mut poll = Poll::new().expect("poll");
        let mut b = connected(redis.addr(), &mut poll);
        let (rt, wt) = (Duration::from_millis(100), Duration::from_millis(300));
        assert_eq!(b.deadline(Some(rt), Some(wt), false), None, "idle: none");
        let t0 = Instant::now();
        assert!(b.enqueue(resp::command(&[b"PING"]), to(0), 0, None, None, t0));
        let t1 = t0 + Duration::from_millis(50);
        assert!(!b.enqueue(resp::command(&[b"PING"]), to(1), 0, None, None, t1));
        assert_eq!(b.deadline(Some(rt), Some(wt), false), Some(t0 + rt));
        assert_eq!(b.deadline(None, Some(wt), false), Some(t0 + wt));
        assert_eq!(b.deadline(None, Some(wt), true), None, "held writes");
        assert!(b.arm(t0 + rt));
        assert!(!b.arm(t0 + wt), "a later deadline does not re-arm");
        assert!(!b.fire(t0 + wt), "a superseded entry is stale");
        assert!(b.fire(t0 + rt));
    }
}
