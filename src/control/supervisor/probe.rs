//! One server as the supervisor sees it: a kept, non-blocking connection,
//! the questions sent on it and not yet answered (each with its deadline),
//! and when the server last answered or failed.
//!
//! A question past its deadline fails, and with it the connection (a late
//! answer would be taken for the next question's), so the next question
//! reconnects. A connection the server closes while nothing is asked is
//! dropped quietly: servers close idle connections (`timeout`), and
//! restarts are found by the next question.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use crate::config::Addr;
use crate::control::topology::CLUSTER_SLOTS;
use crate::net::rpc::{Conn, Value};

/// The supervisor's poll token for its waker; connections take the others.
pub(super) const WAKER: Token = Token(0);

/// A token no connection had before: an event for a closed connection can
/// never be taken for a later one's.
fn fresh_token() -> Token {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    Token(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What the supervisor asks a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ask {
    Ping,
    Slots,
}

impl Ask {
    fn command(self) -> &'static [&'static [u8]] {
        match self {
            Ask::Ping => &[b"PING"],
            Ask::Slots => CLUSTER_SLOTS,
        }
    }
}

/// A question's outcome: the server's reply (which may be an error reply),
/// or why there is none.
pub(super) struct Answer {
    pub ask: Ask,
    pub reply: Result<Value, String>,
}

impl Answer {
    /// A ping's verdict. A server asking for a password is up; one
    /// answering LOADING or any other error is not ready.
    pub fn pong(self) -> Result<(), String> {
        match self.reply? {
            Value::Simple(_) => Ok(()),
            Value::Error(e) if e.starts_with("NOAUTH") => Ok(()),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }
}

pub(super) struct Probe {
    addr: Addr,
    conn: Option<Conn>,
    /// Sent and unanswered, oldest first, with their deadlines.
    asked: VecDeque<(Ask, Instant)>,
    last_answer: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Probe {
    pub fn new(addr: Addr) -> Probe {
        Probe {
            addr,
            conn: None,
            asked: VecDeque::new(),
            last_answer: None,
            last_failure: None,
        }
    }

    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    pub fn owns(&self, token: Token) -> bool {
        self.conn.as_ref().is_some_and(|c| c.token() == token)
    }

    pub fn is_asked(&self, ask: Ask) -> bool {
        self.asked.iter().any(|(a, _)| *a == ask)
    }

    /// The earliest deadline of an unanswered question.
    pub fn deadline(&self) -> Option<Instant> {
        self.asked.iter().map(|(_, at)| *at).min()
    }

    /// When it last answered, if it has not failed since.
    pub fn answered(&self) -> Option<Instant> {
        self.last_answer
            .filter(|&a| self.last_failure.is_none_or(|f| f < a))
    }

    /// When it last failed, if it has not answered since.
    pub fn failed(&self) -> Option<Instant> {
        self.last_failure
            .filter(|&f| self.last_answer.is_none_or(|a| a <= f))
    }

    /// Records a failure its owner found in an answer (an error reply, an
    /// unusable table), so it is asked after the others next time.
    pub fn note_failure(&mut self, now: Instant) {
        self.last_failure = Some(now);
    }

    /// Sends `ask`, connecting first when no connection is kept. A failure
    /// to even send is answered at once, in `out`.
    pub fn ask(
        &mut self,
        registry: &Registry,
        ask: Ask,
        now: Instant,
        timeout: Duration,
        out: &mut Vec<Answer>,
    ) {
        let conn = match self.conn.take() {
            Some(c) => Ok(c),
            None => Conn::open(&self.addr, registry, fresh_token()),
        };
        let sent = conn.and_then(|mut c| c.send(ask.command()).map(|()| c));
        match sent {
            Ok(c) => {
                self.conn = Some(c);
                self.asked.push_back((ask, now + timeout));
            }
            Err(e) => {
                self.asked.push_back((ask, now));
                self.fail(registry, now, &e.to_string(), out);
            }
        }
    }

    /// A readiness event on its connection: the answers that completed.
    pub fn on_event(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Answer>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut replies = Vec::new();
        let pumped = conn.pump(&mut replies);
        for reply in replies {
            let Some((ask, _)) = self.asked.pop_front() else {
                self.fail(registry, now, "a reply to nothing asked", out);
                return;
            };
            self.last_answer = Some(now);
            out.push(Answer {
                ask,
                reply: Ok(reply),
            });
        }
        if let Err(e) = pumped {
            self.fail(registry, now, &e.to_string(), out);
        }
    }

    /// Fails the questions past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Answer>) {
        if self.deadline().is_some_and(|at| at <= now) {
            self.fail(registry, now, "timed out", out);
        }
    }

    /// Closes the connection; every question on it fails with `why`. With
    /// none asked the server merely closed an idle connection: no failure.
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Answer>) {
        if let Some(c) = self.conn.take() {
            c.close(registry);
        }
        if self.asked.is_empty() {
            return;
        }
        self.last_failure = Some(now);
        out.extend(self.asked.drain(..).map(|(ask, _)| Answer {
            ask,
            reply: Err(why.to_owned()),
        }));
    }

    pub fn close(&mut self, registry: &Registry) {
        if let Some(c) = self.conn.take() {
            c.close(registry);
        }
        self.asked.clear();
    }
}
