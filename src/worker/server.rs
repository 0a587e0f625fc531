//! One backend server as a worker sees it: its connection slots, the
//! connections a reload is draining, its health after failures, and its
//! counters.

use std::time::{Duration, Instant};

use mio::Token;

use crate::config::Addr;
use crate::observe::stats::ServerStats;

/// How long a failed server counts as failing lately (replica reads go to
/// the master meanwhile): doubles from the first to the last while its
/// connects keep failing, and ends at its next connect.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// A key in the worker's server list: stable while the server is known, so
/// connections and in-flight records can name their server. Route-table
/// indices are another space (plain `usize`, mapped through `route_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ServerId(pub(crate) usize);

pub(crate) struct Server {
    addr: Addr,
    name: String,
    /// `server_connections` slots for each protocol: `[RESP2, RESP3]`. A
    /// client always uses the same slot, so its requests stay in order.
    conns: [Vec<Option<Token>>; 2],
    /// Connections opened with options a reload changed: they take no new
    /// requests and close once their last reply is read. Until then this
    /// server's new connections queue requests but do not write them, so a
    /// client's requests still reach the server in the order it sent them.
    draining: Vec<Token>,
    /// Dedicated connections (blocking commands, transactions): leased to a
    /// client now, and idle ones kept for the next, per protocol.
    leased: Vec<Token>,
    pool: [Vec<Token>; 2],
    /// After a failure, it counts as failing lately until then.
    retry_at: Option<Instant>,
    backoff: Duration,
    pub(crate) stats: ServerStats,
}

impl Server {
    pub(crate) fn new(addr: Addr, name: &str, per_protocol: usize) -> Server {
        Server {
            addr,
            name: name.to_owned(),
            conns: [vec![None; per_protocol], vec![None; per_protocol]],
            draining: Vec::new(),
            leased: Vec::new(),
            pool: [Vec::new(), Vec::new()],
            retry_at: None,
            backoff: BACKOFF_MIN,
            stats: ServerStats::default(),
        }
    }

    pub(crate) fn addr(&self) -> &Addr {
        &self.addr
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The connection in slot `i` of a protocol, if open.
    pub(crate) fn slot(&self, resp3: bool, i: usize) -> Option<Token> {
        self.conns[usize::from(resp3)].get(i).copied().flatten()
    }

    pub(crate) fn set_slot(&mut self, resp3: bool, i: usize, t: Option<Token>) {
        if let Some(s) = self.conns[usize::from(resp3)].get_mut(i) {
            *s = t;
        }
    }

    /// Forgets connection `t` (opened for `slot` of its protocol, or since
    /// moved to the draining list). Returns true when it was the
    /// last draining one: the connections that held their writes for it may
    /// write now.
    pub(crate) fn forget(&mut self, t: Token, resp3: bool, slot: usize) -> bool {
        if let Some(s) = self.conns[usize::from(resp3)].get_mut(slot)
            && *s == Some(t)
        {
            *s = None;
            return false;
        }
        let [pool2, pool3] = &mut self.pool;
        for list in [&mut self.leased, pool2, pool3] {
            if let Some(i) = list.iter().position(|&d| d == t) {
                list.swap_remove(i);
                return false;
            }
        }
        match self.draining.iter().position(|&d| d == t) {
            Some(i) => {
                self.draining.swap_remove(i);
                self.draining.is_empty()
            }
            None => false,
        }
    }

    /// An idle dedicated connection of this protocol from the pool, now
    /// counted as leased.
    pub(crate) fn take_pooled(&mut self, resp3: bool) -> Option<Token> {
        let t = self.pool[usize::from(resp3)].pop()?;
        self.leased.push(t);
        Some(t)
    }

    pub(crate) fn add_leased(&mut self, t: Token) {
        self.leased.push(t);
    }

    /// A leased connection goes back to the pool.
    pub(crate) fn pool(&mut self, t: Token, resp3: bool) {
        if let Some(i) = self.leased.iter().position(|&d| d == t) {
            self.leased.swap_remove(i);
        }
        self.pool[usize::from(resp3)].push(t);
    }

    pub(crate) fn leased(&self) -> &[Token] {
        &self.leased
    }

    /// Every pooled dedicated connection, taken out (to be closed).
    pub(crate) fn drain_pool(&mut self) -> Vec<Token> {
        let mut out = std::mem::take(&mut self.pool[0]);
        out.append(&mut self.pool[1]);
        out
    }

    /// One pooled dedicated connection of either protocol, taken out.
    pub(crate) fn pop_pooled(&mut self) -> Option<Token> {
        self.pool[0].pop().or_else(|| self.pool[1].pop())
    }

    pub(crate) fn pooled(&self) -> usize {
        self.pool[0].len() + self.pool[1].len()
    }

    /// Every open connection to this server, draining ones included.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.conns
            .iter()
            .flatten()
            .flatten()
            .chain(&self.draining)
            .chain(&self.leased)
            .chain(self.pool.iter().flatten())
            .copied()
    }

    pub(crate) fn is_draining(&self, t: Token) -> bool {
        self.draining.contains(&t)
    }

    /// Whether connection `t` must hold its writes until older connections
    /// to this server drain.
    /// (Dedicated connections never hold: their client's requests travel
    /// on them alone.)
    pub(crate) fn holds(&self, t: Token) -> bool {
        !self.draining.is_empty() && self.conns.iter().flatten().any(|s| *s == Some(t))
    }

    /// Empties every slot (`per_protocol` of each afterwards) and returns
    /// the connections that were in them.
    pub(crate) fn detach_all(&mut self, per_protocol: usize) -> Vec<Token> {
        self.conns
            .iter_mut()
            .flat_map(|v| std::mem::replace(v, vec![None; per_protocol]))
            .flatten()
            .collect()
    }

    pub(crate) fn drain(&mut self, t: Token) {
        self.draining.push(t);
    }

    /// Whether it failed lately: requests still connect to it, but a
    /// replica read goes to its master instead.
    pub(crate) fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    pub(crate) fn failed(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// A connection to it was made: no more backoff.
    pub(crate) fn connected(&mut self) {
        self.retry_at = None;
        self.backoff = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_hold_until_the_draining_ones_are_gone() {
        let mut s = Server::new(Addr::Tcp("127.0.0.1:1".parse().expect("addr")), "s", 1);
        s.set_slot(false, 0, Some(Token(1)));
        s.set_slot(true, 0, Some(Token(2)));
        let old = s.detach_all(2);
        assert_eq!(old, [Token(1), Token(2)]);
        for t in old {
            s.drain(t);
        }
        s.set_slot(false, 1, Some(Token(3)));
        assert!(s.holds(Token(3)));
        assert!(!s.holds(Token(1)), "a draining one writes on");
        assert!(!s.forget(Token(1), false, 0), "one still draining");
        assert!(s.holds(Token(3)));
        assert!(s.forget(Token(2), true, 0), "the last one drained");
        assert!(!s.holds(Token(3)));
        assert_eq!(s.tokens().collect::<Vec<_>>(), [Token(3)]);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_a_connect_resets_it() {
        let mut s = Server::new(Addr::Tcp("127.0.0.1:1".parse().expect("addr")), "s", 1);
        let now = Instant::now();
        assert!(!s.backing_off(now));
        s.failed(now);
        assert!(s.backing_off(now));
        assert!(!s.backing_off(now + BACKOFF_MIN));
        for _ in 0..10 {
            s.failed(now);
        }
        assert!(s.backing_off(now + BACKOFF_MAX - Duration::from_millis(1)));
        assert!(!s.backing_off(now + BACKOFF_MAX));
        s.connected();
        assert!(!s.backing_off(now));
    }
}
