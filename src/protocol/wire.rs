//! The seam between the worker and a wire protocol.
//!
//! The worker reaches a cluster's protocol only through `Wire`, picked
//! from the configuration (`cache_type`): it frames requests and replies
//! with the framers `Wire` makes, looks commands up with `Wire::lookup`
//! (a protocol's command table gives each command its kind and where its
//! keys are), renders a `Refusal` with `Wire::refusal`, and asks
//! `Wire::is_error` of a server's reply. A second protocol is a sibling
//! folder under `protocol/` and a variant of each enum here; docs/design.md
//! ("Protocols") lists what it must provide.
//!
//! Enums rather than a trait: the worker stays one type whatever the
//! protocol, and a match on a variant that never changes for a connection
//! is predicted for free.

use std::ops::Range;

use bytes::Bytes;

use crate::protocol::command::{self, Args, Command};
use crate::protocol::refusal::Refusal;
use crate::protocol::resp::{self, Limits, ProtoError, ReplyScanner, RequestParser};

/// A protocol a cluster speaks to its clients and its servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    /// RESP2/RESP3.
    #[default]
    Redis,
}

impl Wire {
    /// A resumable request framer, one per client connection.
    pub fn requests(self) -> RequestFramer {
        match self {
            Wire::Redis => RequestFramer::Redis(RequestParser::default()),
        }
    }

    /// A resumable reply framer, one per backend connection.
    pub fn replies(self) -> ReplyFramer {
        match self {
            Wire::Redis => ReplyFramer::Redis(ReplyScanner::default()),
        }
    }

    /// The command a framed request names, from the protocol's table.
    pub fn lookup(self, args: &(impl Args + ?Sized)) -> Option<&'static Command> {
        match self {
            Wire::Redis => command::lookup_request(args),
        }
    }

    /// A refusal as the protocol answers it.
    pub fn refusal(self, r: &Refusal) -> Bytes {
        match self {
            Wire::Redis => r.reply(),
        }
    }

    /// Whether a server's reply is an error (a command sent on connect
    /// that failed fails the connection).
    pub fn is_error(self, reply: &[u8]) -> bool {
        match self {
            Wire::Redis => resp::is_error(reply),
        }
    }
}

/// Cuts complete requests off the front of a client's read buffer, in
/// place, resuming where the last call stopped.
#[derive(Debug)]
pub enum RequestFramer {
    Redis(RequestParser),
}

impl RequestFramer {
    /// The length of the complete request at the front of `buf`, with its
    /// argument ranges in `args`; `None` until it is complete.
    pub fn frame(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        match self {
            RequestFramer::Redis(p) => p.parse(buf, args, limits),
        }
    }
}

/// Cuts complete replies off the front of a backend's read buffer, in
/// place, resuming where the last call stopped.
#[derive(Debug)]
pub enum ReplyFramer {
    Redis(ReplyScanner),
}

impl ReplyFramer {
    /// The length of the complete reply at the front of `buf`; `None`
    /// until it is complete.
    pub fn frame(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        match self {
            ReplyFramer::Redis(s) => s.scan(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_wire_frames_requests_and_replies_in_pieces() {
        let wire = Wire::Redis;
        let mut req = wire.requests();
        let mut args = Vec::new();
        let frame = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let limits = Limits::default();
        assert_eq!(req.frame(&frame[..9], &mut args, &limits), Ok(None));
        assert_eq!(req.frame(frame, &mut args, &limits), Ok(Some(frame.len())));
        assert_eq!(args.len(), 2);
        let mut rep = wire.replies();
        assert_eq!(rep.frame(b"$5\r\nhel"), Ok(None));
        assert_eq!(rep.frame(b"$5\r\nhello\r\n"), Ok(Some(11)));
        assert!(wire.is_error(b"-ERR x\r\n") && !wire.is_error(b"+OK\r\n"));
        let cmd = wire.lookup(&[&b"get"[..], b"k"][..]).expect("GET is known");
        assert_eq!(cmd.name, "get");
        assert_eq!(
            wire.refusal(&Refusal::NestedMulti),
            Refusal::NestedMulti.reply()
        );
    }
}
