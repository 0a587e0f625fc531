//! The pairing of a connection's requests and replies: a server answers in
//! the order it was sent, so each reply read belongs to the oldest request
//! not answered yet. `InFlight` holds those requests and the bytes of the
//! ones not all written, and is the only place a reply is matched to one.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use bytes::Bytes;
use mio::Token;

use crate::net::sock;
use crate::protocol::command::Block;
use crate::protocol::pubsub;
use crate::protocol::wire::Wire;
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

impl ReplyTo {
    fn is_init(&self) -> bool {
        matches!(self, ReplyTo::Init)
    }
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

/// What a connection holds, for the stats: (unsent requests, their bytes,
/// requests sent and awaiting replies, their bytes).
pub(crate) struct Queues {
    pub(crate) unsent: u64,
    pub(crate) unsent_bytes: u64,
    pub(crate) outstanding: u64,
    pub(crate) outstanding_bytes: u64,
}

/// A connection's requests, oldest first, each awaiting its reply.
///
/// Invariants it keeps:
/// - every request queued has one record in `awaiting`, and its bytes in
///   `unsent` until they are all written: `unsent` holds the newest
///   records' bytes, so the stats can tell sent from unsent;
/// - the commands sent on connect (`ReplyTo::Init`) are queued before any
///   other request, so their replies are the first read and are consumed
///   here: a refusal fails the connection, a success is nobody's reply;
/// - a reply is paired only with the front record, and each record with
///   exactly one reply (or, when the connection closes, one error:
///   `into_pending` hands them all to the caller); a reply when none is
///   awaited is a protocol error;
/// - on a subscriber connection a pub/sub message pairs with nothing: it is
///   told apart from a reply before pairing.
#[derive(Default)]
pub(crate) struct InFlight {
    unsent: VecDeque<Bytes>,
    awaiting: VecDeque<Pending>,
    /// The protocol, which tells a refused command sent on connect.
    wire: Wire,
}

impl InFlight {
    pub(crate) fn new(wire: Wire) -> InFlight {
        InFlight {
            wire,
            ..InFlight::default()
        }
    }

    /// Queues a request for writing and for its reply. Returns true when
    /// nothing was left unsent before it (a write deadline starts now).
    pub(crate) fn push(&mut self, p: Pending) -> bool {
        debug_assert!(
            !p.to.is_init() || self.awaiting.iter().all(|q| q.to.is_init()),
            "a command sent on connect queued behind a request"
        );
        let was_empty = self.unsent.is_empty();
        self.unsent.push_back(p.req.clone());
        self.awaiting.push_back(p);
        was_empty
    }

    /// Nothing queued and nothing awaiting a reply.
    pub(crate) fn is_idle(&self) -> bool {
        self.awaiting.is_empty() && self.unsent.is_empty()
    }

    /// Nothing awaiting a reply (bytes may still be unsent).
    pub(crate) fn awaits_nothing(&self) -> bool {
        self.awaiting.is_empty()
    }

    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Replies to commands sent on connect are still to come.
    pub(crate) fn initializing(&self) -> bool {
        self.awaiting.front().is_some_and(|p| p.to.is_init())
    }

    /// The oldest request awaiting its reply: the read deadline's.
    pub(crate) fn oldest(&self) -> Option<&Pending> {
        self.awaiting.front()
    }

    /// Writes the unsent bytes until done or the socket is full; the bytes
    /// written.
    pub(crate) fn write(&mut self, sock: &mut impl AsRawFd) -> io::Result<usize> {
        sock::write_queue(sock, &mut self.unsent)
    }

    /// Pairs a reply read with the oldest request awaiting one; `None` when
    /// it answered a command sent on connect (consumed; an error fails the
    /// connection).
    pub(crate) fn pair(&mut self, reply: Bytes) -> Result<Option<(Pending, Bytes)>, BackendError> {
        let Some(p) = self.awaiting.pop_front() else {
            return Err(BackendError::Protocol(
                "Protocol error: unexpected reply from the server".into(),
            ));
        };
        match p.to {
            ReplyTo::Init if self.wire.is_error(&reply) => Err(init_rejected(&reply)),
            ReplyTo::Init => Ok(None),
            _ => Ok(Some((p, reply))),
        }
    }

    /// A frame read on a subscriber connection: a message, passed on
    /// unpaired, or a reply paired as `pair` does.
    pub(crate) fn pair_sub_frame(
        &mut self,
        frame: Bytes,
    ) -> Result<Option<SubFrame>, BackendError> {
        if pubsub::is_message(&frame) {
            return Ok(Some(SubFrame::Message(frame)));
        }
        Ok(self
            .pair(frame)?
            .map(|(p, reply)| SubFrame::Reply(p, reply)))
    }

    pub(crate) fn queues(&self) -> Queues {
        let unsent = self.unsent.len();
        Queues {
            unsent: unsent as u64,
            unsent_bytes: self.unsent.iter().map(|x| x.len() as u64).sum(),
            outstanding: self.awaiting.len().saturating_sub(unsent) as u64,
            outstanding_bytes: self
                .awaiting
                .iter()
                .skip(unsent)
                .map(|p| p.req.len() as u64)
                .sum(),
        }
    }

    /// Server `si` is being forgotten: reads here no longer fall back to it.
    pub(crate) fn forget_fallback(&mut self, si: ServerId) {
        for p in &mut self.awaiting {
            if p.fallback == Some(si) {
                p.fallback = None;
            }
        }
    }

    /// Every request not answered, for the caller to answer: the
    /// connection is being closed.
    pub(crate) fn into_pending(self) -> VecDeque<Pending> {
        self.awaiting
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
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn pending(to: ReplyTo, req: &'static [u8]) -> Pending {
        Pending {
            to,
            at: Instant::now(),
            req: Bytes::from_static(req),
            redirects: 0,
            fallback: None,
            block: None,
        }
    }

    fn client(seq: u64) -> ReplyTo {
        ReplyTo::Client {
            token: Token(3),
            seq,
            part: 0,
        }
    }

    fn seq_of(paired: Option<(Pending, Bytes)>) -> Option<u64> {
        match paired.map(|(p, _)| p.to) {
            Some(ReplyTo::Client { seq, .. }) => Some(seq),
            _ => None,
        }
    }

    fn reply(r: &'static [u8]) -> Bytes {
        Bytes::from_static(r)
    }

    #[test]
    fn init_replies_are_consumed_first_then_each_reply_pairs_in_order() {
        let mut q = InFlight::default();
        assert!(q.is_idle() && !q.initializing());
        assert!(q.push(pending(ReplyTo::Init, b"AUTH")));
        assert!(!q.push(pending(ReplyTo::Init, b"SELECT")));
        assert!(!q.push(pending(client(0), b"GET a")));
        assert!(!q.push(pending(client(1), b"GET b")));
        assert!(q.initializing());
        assert!(matches!(q.pair(reply(b"+OK\r\n")), Ok(None)));
        assert!(q.initializing(), "one init reply still to come");
        assert!(matches!(q.pair(reply(b"+OK\r\n")), Ok(None)));
        assert!(!q.initializing());
        let first = q.pair(reply(b"$1\r\na\r\n")).expect("paired");
        assert_eq!(seq_of(first), Some(0));
        let second = q.pair(reply(b"$1\r\nb\r\n")).expect("paired");
        assert_eq!(seq_of(second), Some(1));
        assert!(q.awaits_nothing());
    }

    #[test]
    fn a_refused_init_command_fails_with_the_servers_words() {
        let mut q = InFlight::default();
        q.push(pending(ReplyTo::Init, b"AUTH"));
        q.push(pending(client(0), b"PING"));
        match q.pair(reply(b"-WRONGPASS invalid\r\n")) {
            Err(BackendError::InitRejected(t)) => assert_eq!(t, "WRONGPASS invalid"),
            other => panic!("expected the refusal, got {:?}", other.map(seq_of)),
        }
        // The request behind it is still owed its one error.
        assert_eq!(q.into_pending().len(), 1);
    }

    #[test]
    fn a_reply_nothing_awaits_is_a_protocol_error() {
        let mut q = InFlight::default();
        assert!(matches!(
            q.pair(reply(b"+OK\r\n")),
            Err(BackendError::Protocol(_))
        ));
        // An error reply to a client's request is the client's, not a failure.
        q.push(pending(client(4), b"NOSUCH"));
        assert_eq!(
            seq_of(q.pair(reply(b"-ERR x\r\n")).expect("paired")),
            Some(4)
        );
    }

    #[test]
    fn messages_pass_unpaired_between_confirmations() {
        let mut q = InFlight::default();
        q.push(pending(ReplyTo::Init, b"HELLO 3"));
        q.push(pending(client(0), b"SUBSCRIBE a"));
        let msg = reply(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n");
        assert!(matches!(q.pair_sub_frame(reply(b"%0\r\n")), Ok(None)));
        assert!(matches!(
            q.pair_sub_frame(msg.clone()),
            Ok(Some(SubFrame::Message(_)))
        ));
        let conf = reply(b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
        match q.pair_sub_frame(conf) {
            Ok(Some(SubFrame::Reply(p, _))) => {
                assert!(matches!(p.to, ReplyTo::Client { seq: 0, .. }))
            }
            _ => panic!("the confirmation pairs with the SUBSCRIBE"),
        }
        assert!(q.awaits_nothing());
        assert!(matches!(
            q.pair_sub_frame(msg),
            Ok(Some(SubFrame::Message(_)))
        ));
    }

    #[test]
    fn unsent_and_outstanding_follow_the_writes() {
        let (mut a, mut b) = UnixStream::pair().expect("socket pair");
        let mut q = InFlight::default();
        q.push(pending(client(0), b"PING\r\n"));
        q.push(pending(client(1), b"ECHO\r\n"));
        let before = q.queues();
        assert_eq!((before.unsent, before.unsent_bytes), (2, 12));
        assert_eq!((before.outstanding, before.outstanding_bytes), (0, 0));
        assert_eq!(q.write(&mut a).expect("write"), 12);
        let mut got = [0u8; 12];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"PING\r\nECHO\r\n");
        let after = q.queues();
        assert!(!q.has_unsent() && !q.is_idle());
        assert_eq!(
            (after.unsent, after.outstanding, after.outstanding_bytes),
            (0, 2, 12)
        );
        q.pair(reply(b"+PONG\r\n")).expect("paired");
        q.pair(reply(b"+x\r\n")).expect("paired");
        assert!(q.is_idle());
    }

    #[test]
    fn a_forgotten_server_is_no_longer_a_fallback() {
        let mut q = InFlight::default();
        let mut p = pending(client(0), b"GET a");
        p.fallback = Some(ServerId(2));
        q.push(p);
        q.forget_fallback(ServerId(1));
        assert_eq!(q.oldest().and_then(|p| p.fallback), Some(ServerId(2)));
        q.forget_fallback(ServerId(2));
        assert_eq!(q.oldest().and_then(|p| p.fallback), None);
    }
}
