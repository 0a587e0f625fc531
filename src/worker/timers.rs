//! Backend deadlines as a heap, so a loop turn looks at what is due rather
//! than scanning every connection.
//!
//! A connection is armed once, when it gets its first deadline (a connect
//! started, a request queued on an idle connection), and records the instant
//! it is armed for. When that entry comes due the worker recomputes the
//! connection's real deadline: past it, the connection times out; otherwise
//! it is armed again for the new one. Entries for closed connections, or
//! superseded by a re-arm, are dropped when they surface. So the heap holds
//! about one entry per busy connection, not one per request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Token)>>,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, t: Token) {
        self.heap.push(Reverse((at, t)));
    }

    /// The earliest armed instant.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, removed from the heap.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.arm(now + Duration::from_millis(30), Token(3));
        t.arm(now + Duration::from_millis(10), Token(1));
        t.arm(now + Duration::from_millis(20), Token(2));
        assert_eq!(t.next(), Some(now + Duration::from_millis(10)));
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(t.pop_due(later).map(|e| e.1), Some(Token(1)));
        assert_eq!(t.pop_due(later).map(|e| e.1), Some(Token(2)));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.next(), Some(now + Duration::from_millis(30)));
    }
}
