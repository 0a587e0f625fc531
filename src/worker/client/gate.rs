//! When a client's next request may be dispatched (`Gate`), and how its
//! connection ends (`Life`). docs/design.md, "Lifecycle", lists the states
//! and the ordering rules they carry.

use std::ops::Range;

use bytes::Bytes;
use mio::Token;

/// Whether the client's next request may be dispatched now. One state at a
/// time: every state but `Open` is entered from `Open` (or `Reopened`,
/// which is `Open` not yet noticed by the worker), while a request is
/// parsed or dispatched, and leads back to it.
#[derive(Debug, Default)]
pub(super) enum Gate {
    /// Requests are parsed and dispatched as they arrive.
    #[default]
    Open,
    /// Too many requests in flight or too many replies unsent: further
    /// requests stay unparsed in the read buffer until the client drains.
    Held,
    /// A request kept back until every earlier request of the client is
    /// answered (it moves the client onto a connection of its own, or the
    /// route table changed under its earlier requests).
    Deferred(Box<Deferred>),
    /// Its request in slot `seq` uses the client's own connection `conn`
    /// (a blocking command, or EXEC/DISCARD/UNWATCH ending a transaction's
    /// use of it): later requests wait for its reply, as Redis does not
    /// read a blocked client's.
    Awaiting {
        seq: u64,
        conn: Token,
        blocking: bool,
    },
    /// What it awaited was answered: requests left unparsed in the read
    /// buffer go on at the worker's next turn (`release`).
    Reopened,
}

/// A request kept back: its frame and its argument ranges in it.
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) frame: Bytes,
    pub(super) args: Vec<Range<usize>>,
}

/// What the gate lets `next_request` do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// Parse the next request from the read buffer.
    Parse,
    /// Dispatch the deferred request (taken with `take_deferred`).
    Deferred,
    Wait,
}

impl Gate {
    /// `idle`: no request of the client is unanswered.
    pub(super) fn admit(&mut self, idle: bool) -> Admit {
        match self {
            Gate::Open => Admit::Parse,
            Gate::Reopened => {
                *self = Gate::Open;
                Admit::Parse
            }
            Gate::Deferred(_) if idle => Admit::Deferred,
            Gate::Held | Gate::Awaiting { .. } | Gate::Deferred(_) => Admit::Wait,
        }
    }

    /// Deferred → Open: the request kept back, to dispatch now.
    pub(super) fn take_deferred(&mut self) -> Option<Deferred> {
        match std::mem::take(self) {
            Gate::Deferred(d) => Some(*d),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Open → Held.
    pub(super) fn hold(&mut self) {
        debug_assert!(matches!(self, Gate::Open), "hold from {self:?}");
        *self = Gate::Held;
    }

    /// Open → Deferred.
    pub(super) fn defer(&mut self, frame: Bytes, args: &[Range<usize>]) {
        debug_assert!(matches!(self, Gate::Open), "defer from {self:?}");
        *self = Gate::Deferred(Box::new(Deferred {
            frame,
            args: args.to_vec(),
        }));
    }

    /// Open → Awaiting.
    pub(super) fn await_reply(&mut self, seq: u64, conn: Token, blocking: bool) {
        debug_assert!(matches!(self, Gate::Open), "await from {self:?}");
        *self = Gate::Awaiting {
            seq,
            conn,
            blocking,
        };
    }

    /// Slot `seq` was answered: Awaiting it → Reopened.
    pub(super) fn answered(&mut self, seq: u64) {
        if matches!(self, Gate::Awaiting { seq: s, .. } if *s == seq) {
            *self = Gate::Reopened;
        }
    }

    /// At the end of a turn: whether the worker must parse the client's
    /// buffer again. Held → Open once `drained`; Reopened → Open; a
    /// deferred request once `idle` (it stays deferred: `next_request`
    /// takes it).
    pub(super) fn release(&mut self, drained: bool, idle: bool) -> bool {
        match self {
            Gate::Held if drained => {
                *self = Gate::Open;
                true
            }
            Gate::Reopened => {
                *self = Gate::Open;
                true
            }
            Gate::Deferred(_) => idle,
            _ => false,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self, Gate::Open)
    }

    pub(super) fn is_held(&self) -> bool {
        matches!(self, Gate::Held)
    }

    /// Waiting in a blocking command.
    pub(super) fn is_blocked(&self) -> bool {
        matches!(self, Gate::Awaiting { blocking: true, .. })
    }

    /// The connection of its own an awaited request is on.
    pub(super) fn awaited_conn(&self) -> Option<Token> {
        match self {
            Gate::Awaiting { conn, .. } => Some(*conn),
            _ => None,
        }
    }
}

/// How far the connection is in its life. It only moves forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Life {
    /// Reading and dispatching requests.
    #[default]
    Open,
    /// The peer closed its side: what it sent is still run and answered,
    /// then the connection closes.
    Eof,
    /// QUIT, a protocol error or a draining worker: nothing more is read or
    /// dispatched; what is owed is written, then it closes.
    Closing,
    /// Closed at once, whatever it is owed (a subscriber that does not
    /// read its messages).
    Doomed,
}

impl Life {
    /// Moves forward to `to`; never back.
    pub(super) fn advance(&mut self, to: Life) {
        *self = (*self).max(to);
    }

    /// Whether its socket is still read.
    pub(super) fn reads(self) -> bool {
        self == Life::Open
    }

    /// Whether requests it sent are still dispatched.
    pub(super) fn dispatches(self) -> bool {
        self <= Life::Eof
    }

    /// Whether it may go once nothing is owed: `gate_open` says no request
    /// of it is waiting, held or kept back.
    pub(super) fn may_end(self, gate_open: bool) -> bool {
        match self {
            Life::Open => false,
            Life::Eof => gate_open,
            Life::Closing | Life::Doomed => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_request_waits_until_the_client_is_idle() {
        let mut g = Gate::Open;
        g.defer(Bytes::from_static(b"x y"), &[0..1, 2..3]);
        assert_eq!(g.admit(false), Admit::Wait);
        assert!(!g.release(true, false), "earlier requests unanswered");
        assert!(g.release(true, true), "idle: the worker parses again");
        assert_eq!(g.admit(true), Admit::Deferred);
        let d = g.take_deferred().expect("the deferred request");
        assert_eq!(d.args, [0..1, 2..3]);
        assert!(g.is_open());
    }

    #[test]
    fn an_awaited_reply_reopens_the_gate_once() {
        let mut g = Gate::Open;
        g.await_reply(7, Token(3), true);
        assert!(g.is_blocked());
        assert_eq!(g.awaited_conn(), Some(Token(3)));
        assert_eq!(g.admit(false), Admit::Wait);
        g.answered(6);
        assert!(g.is_blocked(), "another slot's reply changes nothing");
        g.answered(7);
        assert!(!g.is_blocked());
        assert!(!g.is_open(), "reopened, not yet noticed");
        assert!(g.release(false, true));
        assert!(g.is_open());
        assert!(!g.release(false, true), "released once");
    }

    #[test]
    fn a_reopened_gate_parsed_before_the_turn_ends_needs_no_release() {
        let mut g = Gate::Open;
        g.await_reply(1, Token(0), false);
        g.answered(1);
        assert_eq!(g.admit(true), Admit::Parse);
        assert!(!g.release(true, true));
    }

    #[test]
    fn held_requests_go_on_once_drained() {
        let mut g = Gate::Open;
        g.hold();
        assert_eq!(g.admit(true), Admit::Wait);
        assert!(!g.release(false, true));
        assert!(g.is_held());
        assert!(g.release(true, true));
        assert_eq!(g.admit(true), Admit::Parse);
    }

    #[test]
    fn life_only_moves_forward() {
        let mut l = Life::Open;
        l.advance(Life::Eof);
        assert!(!l.reads() && l.dispatches());
        l.advance(Life::Closing);
        l.advance(Life::Eof);
        assert_eq!(l, Life::Closing);
        assert!(!l.dispatches());
        l.advance(Life::Doomed);
        assert_eq!(l, Life::Doomed);
    }

    #[test]
    fn past_eof_it_ends_only_with_nothing_waiting() {
        assert!(!Life::Open.may_end(true));
        assert!(!Life::Eof.may_end(false), "a request still waits");
        assert!(Life::Eof.may_end(true));
        assert!(Life::Closing.may_end(false), "QUIT: nothing more runs");
    }
}
