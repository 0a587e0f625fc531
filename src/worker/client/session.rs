//! A client's transaction as a state machine: WATCH on a connection of its
//! own, then MULTI with the commands queued until a keyed one picks the
//! server. Its methods are the transitions: each moves the state and says
//! what to do (`TxStep`, `WatchStep`, `QueueStep`); `Dispatch` does it
//! (sockets, leases, replies), so the rules are tested without sockets.

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::Tx;
use crate::protocol::refusal::Refusal;

/// A transaction's server: the route server its keys live on, and the
/// client's own connection to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) server: usize,
    pub(crate) conn: Token,
}

/// A client's transaction state.
#[derive(Debug, Default)]
pub(crate) struct Session {
    state: State,
}

#[derive(Debug, Default)]
enum State {
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
struct Multi {
    pin: Option<Pin>,
    queued: Vec<(Bytes, Bytes)>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    aborted: bool,
}

/// What `Dispatch` does for MULTI, EXEC, DISCARD, WATCH or UNWATCH
/// (`Session::on`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxStep {
    /// Answer +OK.
    Ok,
    Refuse(Refusal),
    /// Send the command on the transaction's connection (MULTI after WATCH).
    Send(Token),
    /// Send the command on the transaction's connection, the last there
    /// (EXEC, DISCARD, UNWATCH): its reply ends the transaction, the
    /// client's later requests wait for it, and the connection goes back
    /// to the pool once it is read.
    Last(Token),
    /// EXEC with nothing sent to a server: the proxy's queued answers, in
    /// order, make its reply.
    RunQueued(Vec<Bytes>),
    /// EXEC of a doomed transaction: EXECABORT, after DISCARD on its
    /// connection when it has one (which then goes back once idle).
    Abort(Option<Token>),
    /// WATCH outside MULTI: its keys are placed, then `Session::watch`
    /// says where it goes.
    Place,
}

/// Where a placed WATCH goes (`Session::watch`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WatchStep {
    /// On the connection of an earlier WATCH, to the same server.
    Send(Token),
    /// The first WATCH: a connection of the client's own to the server is
    /// leased, recorded with `Session::watching`, and it goes there.
    Lease,
    Refuse(Refusal),
}

/// What `Dispatch` does with a command queued inside MULTI.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueStep {
    /// Send it on the transaction's connection.
    Send(Token),
    /// Kept with its answer for EXEC: answer +QUEUED.
    Queued,
    /// The first keyed command: a connection to its server is leased and
    /// given to `Session::pin` (or `Session::unpinned` when there is none),
    /// MULTI and what was queued go there, then the command.
    Lease,
    /// Refused, and the transaction is doomed (EXEC answers EXECABORT).
    Refuse(Refusal),
    /// Not inside MULTI: nothing to do.
    Outside,
}

impl Session {
    /// The transition for a transaction command (`name`, as Redis prints
    /// it). UNWATCH inside MULTI is queued like any command, not given here.
    pub(crate) fn on(&mut self, tx: Tx, name: &'static str) -> TxStep {
        use State::{Multi as InMulti, Normal, Watching};
        let (state, step) = match (tx, std::mem::take(&mut self.state)) {
            (Tx::Multi, InMulti(m)) => (InMulti(m), TxStep::Refuse(Refusal::NestedMulti)),
            (Tx::Multi, Watching(pin)) => {
                let m = Multi {
                    pin: Some(pin),
                    ..Multi::default()
                };
                (InMulti(m), TxStep::Send(pin.conn))
            }
            (Tx::Multi, Normal) => (InMulti(Multi::default()), TxStep::Ok),
            (Tx::Exec, InMulti(m)) => match (m.aborted, m.pin) {
                (true, pin) => (Normal, TxStep::Abort(pin.map(|p| p.conn))),
                (false, Some(pin)) => (Normal, TxStep::Last(pin.conn)),
                (false, None) => {
                    let answers = m.queued.into_iter().map(|(_, a)| a).collect();
                    (Normal, TxStep::RunQueued(answers))
                }
            },
            (Tx::Discard, InMulti(m)) => match m.pin {
                Some(pin) => (Normal, TxStep::Last(pin.conn)),
                None => (Normal, TxStep::Ok),
            },
            (Tx::Exec | Tx::Discard, other) => (other, TxStep::Refuse(Refusal::WithoutMulti(name))),
            (Tx::Watch, InMulti(m)) => (InMulti(m), TxStep::Refuse(Refusal::WatchInMulti)),
            (Tx::Watch, other) => (other, TxStep::Place),
            (Tx::Unwatch, Watching(pin)) => (Normal, TxStep::Last(pin.conn)),
            (Tx::Unwatch, other) => (other, TxStep::Ok),
        };
        self.state = state;
        step
    }

    /// WATCH outside MULTI, its keys placed on route server `server`: the
    /// first picks the transaction's server, later ones must be on it.
    pub(crate) fn watch(&self, server: usize) -> WatchStep {
        match &self.state {
            State::Watching(pin) if pin.server == server => WatchStep::Send(pin.conn),
            State::Watching(_) => WatchStep::Refuse(Refusal::OtherServer),
            State::Normal => WatchStep::Lease,
            State::Multi(_) => WatchStep::Refuse(Refusal::WatchInMulti),
        }
    }

    /// The first WATCH's connection was leased (`WatchStep::Lease`).
    pub(crate) fn watching(&mut self, pin: Pin) {
        debug_assert!(matches!(self.state, State::Normal), "{:?}", self.state);
        self.state = State::Watching(pin);
    }

    /// Inside MULTI, a command the proxy can answer (PING, ECHO, TIME,
    /// UNWATCH): sent on the transaction's connection once there is one,
    /// else kept for EXEC with its answer (`render`ed now, when it is a
    /// refusal: EXEC gives it, so it is counted once, now).
    pub(crate) fn queue_local(
        &mut self,
        req: Bytes,
        answer: Result<Bytes, Refusal>,
        render: impl FnOnce(&Refusal) -> Bytes,
    ) -> QueueStep {
        let State::Multi(m) = &mut self.state else {
            return QueueStep::Outside;
        };
        if let Some(pin) = m.pin {
            return QueueStep::Send(pin.conn);
        }
        let answer = answer.unwrap_or_else(|r| render(&r));
        m.queued.push((req, answer));
        QueueStep::Queued
    }

    /// Inside MULTI, a keyed command whose keys are on route server
    /// `server`: the first picks the transaction's server, later ones must
    /// be on it.
    pub(crate) fn queue_keyed(&mut self, server: usize) -> QueueStep {
        let State::Multi(m) = &mut self.state else {
            return QueueStep::Outside;
        };
        match m.pin {
            Some(pin) if pin.server == server => QueueStep::Send(pin.conn),
            Some(_) => {
                m.aborted = true;
                QueueStep::Refuse(Refusal::OtherServer)
            }
            None => QueueStep::Lease,
        }
    }

    /// The first keyed command's connection was leased (`QueueStep::Lease`):
    /// the frames queued so far, to send after MULTI and before it. Their
    /// replies are the server's own, dropped: the client saw +QUEUED.
    pub(crate) fn pin(&mut self, pin: Pin) -> Vec<Bytes> {
        let State::Multi(m) = &mut self.state else {
            return Vec::new();
        };
        m.pin = Some(pin);
        std::mem::take(&mut m.queued)
            .into_iter()
            .map(|(frame, _)| frame)
            .collect()
    }

    /// No connection for the first keyed command (`QueueStep::Lease`): the
    /// transaction is doomed, and what was queued is dropped.
    pub(crate) fn unpinned(&mut self) {
        if let State::Multi(m) = &mut self.state {
            m.queued.clear();
            m.aborted = true;
        }
    }

    /// A command refused inside MULTI (unknown, wrong arity, not queueable):
    /// EXEC answers EXECABORT, as in Redis. Nothing outside MULTI.
    pub(crate) fn abort(&mut self) {
        if let State::Multi(m) = &mut self.state {
            m.aborted = true;
        }
    }

    /// The WATCH connection, when it is watching (no MULTI yet).
    pub(crate) fn watching_pin(&self) -> Option<Pin> {
        match self.state {
            State::Watching(pin) => Some(pin),
            _ => None,
        }
    }

    /// Inside MULTI: whether a keyed command (or WATCH) picked its server.
    pub(crate) fn multi_pinned(&self) -> Option<bool> {
        match &self.state {
            State::Multi(m) => Some(m.pin.is_some()),
            _ => None,
        }
    }

    /// The connection of its own it holds, to close when the client leaves.
    pub(crate) fn conn(&self) -> Option<Token> {
        match &self.state {
            State::Normal => None,
            State::Watching(p) => Some(p.conn),
            State::Multi(m) => m.pin.map(|p| p.conn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: Pin = Pin {
        server: 2,
        conn: Token(7),
    };

    fn ok(s: &'static str) -> Result<Bytes, Refusal> {
        Ok(Bytes::from_static(s.as_bytes()))
    }

    fn unused(_: &Refusal) -> Bytes {
        panic!("nothing to render")
    }

    fn watching() -> Session {
        let mut s = Session::default();
        assert_eq!(s.on(Tx::Watch, "watch"), TxStep::Place);
        assert_eq!(s.watch(PIN.server), WatchStep::Lease);
        s.watching(PIN);
        s
    }

    #[test]
    fn multi_then_exec_runs_what_the_proxy_queued() {
        let mut s = Session::default();
        assert_eq!(s.on(Tx::Multi, "multi"), TxStep::Ok);
        assert_eq!(s.multi_pinned(), Some(false));
        let step = s.queue_local(Bytes::from_static(b"PING"), ok("+PONG\r\n"), unused);
        assert_eq!(step, QueueStep::Queued);
        let step = s.queue_local(Bytes::from_static(b"X"), Err(Refusal::NoAuth), |_| {
            Bytes::from_static(b"-rendered\r\n")
        });
        assert_eq!(step, QueueStep::Queued);
        assert_eq!(
            s.on(Tx::Exec, "exec"),
            TxStep::RunQueued(vec![
                Bytes::from_static(b"+PONG\r\n"),
                Bytes::from_static(b"-rendered\r\n")
            ])
        );
        assert_eq!(s.multi_pinned(), None);
        assert_eq!(s.conn(), None);
    }

    #[test]
    fn multi_twice_is_refused_and_stays_in_multi() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        assert_eq!(
            s.on(Tx::Multi, "multi"),
            TxStep::Refuse(Refusal::NestedMulti)
        );
        assert_eq!(s.multi_pinned(), Some(false));
        assert_eq!(s.on(Tx::Exec, "exec"), TxStep::RunQueued(vec![]));
    }

    #[test]
    fn exec_or_discard_without_multi_is_refused() {
        for s in [&mut Session::default(), &mut watching()] {
            let before = s.conn();
            assert_eq!(
                s.on(Tx::Exec, "exec"),
                TxStep::Refuse(Refusal::WithoutMulti("exec"))
            );
            assert_eq!(
                s.on(Tx::Discard, "discard"),
                TxStep::Refuse(Refusal::WithoutMulti("discard"))
            );
            assert_eq!(s.conn(), before, "the state is kept");
        }
    }

    #[test]
    fn watch_inside_multi_is_refused() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        assert_eq!(
            s.on(Tx::Watch, "watch"),
            TxStep::Refuse(Refusal::WatchInMulti)
        );
        assert_eq!(s.watch(0), WatchStep::Refuse(Refusal::WatchInMulti));
        assert_eq!(s.multi_pinned(), Some(false));
    }

    #[test]
    fn later_watches_must_be_on_the_first_ones_server() {
        let mut s = watching();
        assert_eq!(s.watching_pin(), Some(PIN));
        assert_eq!(s.on(Tx::Watch, "watch"), TxStep::Place);
        assert_eq!(s.watch(PIN.server), WatchStep::Send(PIN.conn));
        assert_eq!(s.watch(0), WatchStep::Refuse(Refusal::OtherServer));
        assert_eq!(s.watching_pin(), Some(PIN), "still watching");
    }

    #[test]
    fn multi_after_watch_goes_on_the_watch_connection() {
        let mut s = watching();
        assert_eq!(s.on(Tx::Multi, "multi"), TxStep::Send(PIN.conn));
        assert_eq!(s.multi_pinned(), Some(true));
        assert_eq!(s.watching_pin(), None);
        let step = s.queue_local(Bytes::from_static(b"PING"), ok("+PONG\r\n"), unused);
        assert_eq!(step, QueueStep::Send(PIN.conn), "sent, not kept");
        assert_eq!(s.queue_keyed(PIN.server), QueueStep::Send(PIN.conn));
        assert_eq!(s.on(Tx::Exec, "exec"), TxStep::Last(PIN.conn));
        assert_eq!(s.conn(), None, "EXEC ends it");
    }

    #[test]
    fn unwatch_ends_watching_and_is_ok_otherwise() {
        let mut s = watching();
        assert_eq!(s.on(Tx::Unwatch, "unwatch"), TxStep::Last(PIN.conn));
        assert_eq!(s.conn(), None);
        assert_eq!(s.on(Tx::Unwatch, "unwatch"), TxStep::Ok);
        assert_eq!(s.conn(), None);
    }

    #[test]
    fn the_first_keyed_command_pins_and_takes_the_queue() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        s.queue_local(Bytes::from_static(b"PING"), ok("+PONG\r\n"), unused);
        assert_eq!(s.queue_keyed(PIN.server), QueueStep::Lease);
        assert_eq!(s.pin(PIN), vec![Bytes::from_static(b"PING")]);
        assert_eq!(s.conn(), Some(PIN.conn));
        assert_eq!(s.queue_keyed(PIN.server), QueueStep::Send(PIN.conn));
        assert_eq!(
            s.queue_keyed(0),
            QueueStep::Refuse(Refusal::OtherServer),
            "another server"
        );
        assert_eq!(
            s.on(Tx::Exec, "exec"),
            TxStep::Abort(Some(PIN.conn)),
            "the refusal doomed it"
        );
        assert_eq!(s.conn(), None);
    }

    #[test]
    fn exec_after_a_refused_queued_command_aborts() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        s.abort();
        assert_eq!(s.on(Tx::Exec, "exec"), TxStep::Abort(None));
        assert_eq!(s.multi_pinned(), None);
        s.abort();
        assert_eq!(
            s.on(Tx::Multi, "multi"),
            TxStep::Ok,
            "abort outside MULTI does nothing"
        );
        assert_eq!(s.on(Tx::Exec, "exec"), TxStep::RunQueued(vec![]));
    }

    #[test]
    fn no_connection_for_the_first_keyed_command_dooms_it() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        s.queue_local(Bytes::from_static(b"PING"), ok("+PONG\r\n"), unused);
        assert_eq!(s.queue_keyed(1), QueueStep::Lease);
        s.unpinned();
        assert_eq!(s.queue_keyed(1), QueueStep::Lease, "the next may try again");
        assert_eq!(s.pin(PIN), Vec::<Bytes>::new(), "the queue was dropped");
        assert_eq!(s.on(Tx::Exec, "exec"), TxStep::Abort(Some(PIN.conn)));
    }

    #[test]
    fn discard_ends_multi_on_the_connection_or_at_once() {
        let mut s = Session::default();
        s.on(Tx::Multi, "multi");
        s.abort();
        assert_eq!(s.on(Tx::Discard, "discard"), TxStep::Ok, "even doomed");
        assert_eq!(s.multi_pinned(), None);
        let mut s = watching();
        s.on(Tx::Multi, "multi");
        s.abort();
        assert_eq!(s.on(Tx::Discard, "discard"), TxStep::Last(PIN.conn));
        assert_eq!(s.conn(), None);
    }

    #[test]
    fn queueing_outside_multi_does_nothing() {
        let mut s = watching();
        let step = s.queue_local(Bytes::from_static(b"PING"), ok("+PONG\r\n"), unused);
        assert_eq!(step, QueueStep::Outside);
        assert_eq!(s.queue_keyed(PIN.server), QueueStep::Outside);
        assert_eq!(s.pin(PIN), Vec::<Bytes>::new());
        assert_eq!(s.watching_pin(), Some(PIN), "unchanged");
    }
}
