//! A backend connection: its life (`Phase`: connecting, initializing,
//! ready), whom it serves (`Role`: shared, or dedicated and leased), the
//! requests it carries paired with their replies (`InFlight`), and the
//! scanner that cuts replies out of what it reads. It pairs each reply with
//! its request itself (`take_reply`), as pelikan's client session does.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Interest, Registry, Token};

use crate::config::Addr;
use crate::net::sock::{READ_BUDGET, ReadBuf, ReadStatus};
use crate::net::stream::Stream;
use crate::protocol::command::Block;
use crate::protocol::wire::{ReplyFramer, Wire};
use crate::worker::error::BackendError;
use crate::worker::server::ServerId;

mod inflight;
mod role;

use inflight::InFlight;
pub(crate) use inflight::{Pending, Queues, ReplyTo, SubFrame};
use role::Role;
pub(crate) use role::{Lease, Release};

/// A connection's life, from the connect to its close. Closing is not a
/// phase: the owner drops the connection and answers what it carried
/// (`into_inflight`), so nothing can be queued on a closed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The non-blocking connect is under way since `since`; the write
    /// timeout bounds it. Requests queue up meanwhile, unwritten.
    Connecting { since: Instant },
    /// Connected; the replies to the commands sent on connect are not all
    /// read yet. Requests queued behind them are written all the same
    /// (pipelined): a refusal fails the connection, and them with it.
    Initializing,
    /// Connected, and every command sent on connect accepted.
    Ready,
}

impl Phase {
    /// The connect finished: initializing while replies to commands sent
    /// on connect are still to come.
    fn connected(self, initializing: bool) -> Phase {
        match self {
            Phase::Connecting { .. } if initializing => Phase::Initializing,
            Phase::Connecting { .. } => Phase::Ready,
            other => other,
        }
    }

    /// A reply to a command sent on connect was consumed: ready once none
    /// is still to come.
    fn init_reply(self, initializing: bool) -> Phase {
        match self {
            Phase::Initializing if !initializing => Phase::Ready,
            other => other,
        }
    }

    fn is_connected(self) -> bool {
        !matches!(self, Phase::Connecting { .. })
    }
}

pub(crate) struct BackendConn {
    sock: Stream,
    addr: Addr,
    server: ServerId,
    /// Whether it sent HELLO 3 on connect: it serves RESP3 clients only.
    resp3: bool,
    /// Which of the server's slots (of its protocol) it was opened for.
    slot: usize,
    phase: Phase,
    inflight: InFlight,
    rbuf: ReadBuf,
    /// How far the reply at the front of `rbuf` has been scanned.
    scanner: ReplyFramer,
    /// When the write queue last made progress (or became non-empty).
    write_since: Instant,
    /// On the worker's list of connections to write this turn.
    dirty: bool,
    /// The deadline its timer entry is armed for.
    armed: Option<Instant>,
    role: Role,
}

impl BackendConn {
    /// Starts a non-blocking connect.
    pub(crate) fn connect(
        addr: &Addr,
        server: ServerId,
        resp3: bool,
        slot: usize,
        now: Instant,
        wire: Wire,
    ) -> io::Result<BackendConn> {
        Ok(BackendConn {
            sock: Stream::connect(addr)?,
            addr: addr.clone(),
            server,
            resp3,
            slot,
            phase: Phase::Connecting { since: now },
            inflight: InFlight::new(wire),
            rbuf: ReadBuf::default(),
            scanner: wire.replies(),
            write_since: now,
            dirty: false,
            armed: None,
            role: Role::Shared,
        })
    }

    /// Makes it a dedicated connection, opened under options generation `options`.
    pub(crate) fn dedicate(&mut self, options: u64) {
        self.role.dedicate(options);
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        self.role != Role::Shared
    }

    pub(crate) fn options(&self) -> u64 {
        self.role.options()
    }

    pub(crate) fn lease(&self) -> Option<Lease> {
        self.role.lease()
    }

    pub(crate) fn set_lease(&mut self, lease: Option<Lease>) {
        self.role.set_lease(lease);
    }

    pub(crate) fn register(&mut self, registry: &Registry, t: Token) -> io::Result<()> {
        registry.register(&mut self.sock, t, Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    pub(crate) fn sock(&self) -> &Stream {
        &self.sock
    }

    pub(crate) fn addr(&self) -> &Addr {
        &self.addr
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

    /// Connected: it may be written (replies to the commands sent on
    /// connect may still be awaited).
    pub(crate) fn is_ready(&self) -> bool {
        self.phase.is_connected()
    }

    /// Whether a non-blocking connect finished: `Ok(false)` while in progress.
    pub(crate) fn finish_connect(&mut self) -> Result<bool, BackendError> {
        if self.phase.is_connected() {
            return Ok(true);
        }
        let done = self
            .sock
            .connected()
            .map_err(|e| BackendError::connect(&e))?;
        if done {
            self.phase = self.phase.connected(self.inflight.initializing());
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
        self.inflight.has_unsent()
    }

    /// Nothing queued and nothing awaiting a reply.
    pub(crate) fn idle(&self) -> bool {
        self.inflight.is_idle()
    }

    /// Queues a request. Returns true when nothing was queued before it: a
    /// write deadline starts now (and a read deadline too, if it was idle),
    /// which may be earlier than the one its timer is armed for. Commands
    /// sent on connect (`ReplyTo::Init`) are queued before any other.
    pub(crate) fn enqueue(
        &mut self,
        req: Bytes,
        to: ReplyTo,
        redirects: u8,
        fallback: Option<ServerId>,
        block: Option<Block>,
        now: Instant,
    ) -> bool {
        let was_empty = self.inflight.push(Pending {
            to,
            at: now,
            req,
            redirects,
            fallback,
            block,
        });
        if was_empty {
            self.write_since = now;
        }
        was_empty
    }

    pub(crate) fn read(&mut self, closed: bool) -> ReadStatus {
        self.rbuf.read(&mut self.sock, READ_BUDGET, !closed)
    }

    /// The next complete frame cut off the read buffer; when there is none,
    /// an emptied large buffer is let go (`ReadBuf`).
    fn next_frame(&mut self) -> Result<Option<Bytes>, BackendError> {
        match self.scanner.frame(self.rbuf.data()) {
            Ok(Some(n)) => Ok(Some(self.rbuf.split_frame(n))),
            Ok(None) => {
                // Once nothing more is owed: a stream of large replies
                // keeps reading into the room it has.
                if self.inflight.awaits_nothing() {
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
            match self.inflight.pair(reply)? {
                Some(paired) => return Ok(Some(paired)),
                None => self.phase = self.phase.init_reply(self.inflight.initializing()),
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
            match self.inflight.pair_sub_frame(frame)? {
                Some(f) => return Ok(Some(f)),
                None => self.phase = self.phase.init_reply(self.inflight.initializing()),
            }
        }
    }

    /// Writes what is queued, until done or the socket is full.
    pub(crate) fn write(&mut self, now: Instant) -> Result<(), BackendError> {
        match self.inflight.write(&mut self.sock) {
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
        if let Phase::Connecting { since } = self.phase {
            return write_timeout.map(|w| since + w);
        }
        // A blocking command may take its own timeout on top; timeout 0
        // blocks until data comes or the client leaves.
        let read = read_timeout.and_then(|r| {
            self.inflight.oldest().and_then(|p| match p.block {
                None => Some(p.at + r),
                Some(Block::For(d)) => Some(p.at + r + d),
                Some(Block::Forever) => None,
            })
        });
        let write = write_timeout
            .and_then(|w| (self.inflight.has_unsent() && !held).then(|| self.write_since + w));
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
        self.inflight.into_pending()
    }

    pub(crate) fn queues(&self) -> Queues {
        self.inflight.queues()
    }

    /// Server `si` is being forgotten: reads here no longer fall back to it.
    pub(crate) fn forget_fallback(&mut self, si: ServerId) {
        self.inflight.forget_fallback(si);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::resp;
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

    fn connected(addr: std::net::SocketAddr, poll: &mut Poll) -> BackendConn {
        let mut b = BackendConn::connect(
            &Addr::Tcp(addr),
            ServerId(0),
            false,
            0,
            Instant::now(),
            Wire::Redis,
        )
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
    fn the_phase_moves_from_connecting_through_initializing_to_ready() {
        let c = Phase::Connecting {
            since: Instant::now(),
        };
        assert!(!c.is_connected());
        assert_eq!(c.init_reply(false), c, "nothing is read before the connect");
        assert_eq!(c.connected(false), Phase::Ready, "nothing sent on connect");
        let i = c.connected(true);
        assert_eq!(i, Phase::Initializing);
        assert!(i.is_connected(), "written while initializing");
        assert_eq!(i.init_reply(true), Phase::Initializing, "more to come");
        assert_eq!(i.init_reply(false), Phase::Ready);
        assert_eq!(Phase::Ready.connected(true), Phase::Ready);
    }

    /// As `Upstream::open` does it: the commands sent on connect are queued
    /// while connecting, the connection initializes once connected, and is
    /// ready when their replies are consumed, the request behind them
    /// answered.
    #[test]
    fn a_connection_is_ready_once_its_init_replies_are_read() {
        let redis = RedisProc::start(&[]);
        let mut poll = Poll::new().expect("poll");
        let now = Instant::now();
        let mut b = BackendConn::connect(
            &Addr::Tcp(redis.addr()),
            ServerId(0),
            false,
            0,
            now,
            Wire::Redis,
        )
        .expect("connect starts");
        b.enqueue(
            resp::command(&[b"SELECT", b"0"]),
            ReplyTo::Init,
            0,
            None,
            None,
            now,
        );
        b.enqueue(resp::command(&[b"PING"]), to(0), 0, None, None, now);
        assert!(matches!(b.phase, Phase::Connecting { .. }));
        b.register(poll.registry(), Token(1)).expect("register");
        assert!(drive(&mut poll, &mut b, |b| b
            .finish_connect()
            .unwrap_or(false)));
        assert_eq!(b.phase, Phase::Initializing);
        b.write(now).expect("write");
        let mut reply = None;
        assert!(drive(&mut poll, &mut b, |b| {
            let _ = b.read(false);
            if let Ok(Some((_, r))) = b.take_reply() {
                reply = Some(r);
            }
            reply.is_some()
        }));
        assert_eq!(reply, Some(Bytes::from_static(b"+PONG\r\n")));
        assert_eq!(b.phase, Phase::Ready);
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
