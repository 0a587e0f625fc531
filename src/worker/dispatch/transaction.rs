//! Transactions: WATCH, MULTI, the commands queued inside it, EXEC,
//! DISCARD and UNWATCH, on a connection of the client's own.

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::{Command, Kind, Local, Tx};
use crate::protocol::local;
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use crate::worker::backend::{Release, ReplyTo};
use crate::worker::client::{Pin, QueueStep, Session, TxStep, WatchStep};

use super::decide::SessionKind;
use super::{Dispatch, FrameArgs, as_multibulk, refusal_reply};

const QUEUED: &[u8] = b"+QUEUED\r\n";

impl Dispatch<'_, '_> {
    /// MULTI, EXEC, DISCARD, WATCH and UNWATCH (UNWATCH inside MULTI is
    /// queued like any command). A transaction runs on one server, on a
    /// connection of the client's own: the first key (of WATCH or of a
    /// queued command) picks it. `Session::on` moves the state and says
    /// what to do; this does it.
    pub(super) fn transaction(
        &mut self,
        t: Token,
        tx: Tx,
        cmd: &Command,
        frame: &Bytes,
        args: &FrameArgs<'_>,
    ) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let step = c.tx_mut().on(tx, cmd.name);
        let req = as_multibulk(frame, args);
        match step {
            TxStep::Ok => self.reply(t, Bytes::from_static(resp::OK)),
            TxStep::Refuse(r) => self.refuse(t, r),
            TxStep::Send(conn) => {
                self.pinned(t, conn, req);
            }
            TxStep::Last(conn) => self.last_on_pin(t, conn, req),
            TxStep::RunQueued(answers) => {
                // Nothing reached a server: the proxy runs what it queued.
                let mut out = format!("*{}\r\n", answers.len()).into_bytes();
                for answer in &answers {
                    out.extend_from_slice(answer);
                }
                self.reply(t, Bytes::from(out));
            }
            TxStep::Abort(conn) => self.abort(t, conn, Refusal::ExecAbort(None)),
            TxStep::Place => self.watch(t, cmd, args, req),
        }
    }

    /// EXEC refused for its arity inside MULTI: the transaction is
    /// discarded, and the refusal says why.
    pub(super) fn abort_exec(&mut self, t: Token, name: &'static str) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        c.tx_mut().abort();
        if let TxStep::Abort(conn) = c.tx_mut().on(Tx::Exec, name) {
            self.abort(t, conn, Refusal::ExecAbort(Some(name)));
        }
    }

    /// Ends an aborted transaction: DISCARD on its connection, if it has
    /// one, and the refusal.
    fn abort(&mut self, t: Token, conn: Option<Token>, r: Refusal) {
        if let Some(conn) = conn {
            let discard = resp::command(&[b"DISCARD"]);
            self.up
                .send_leased(self.ctx, conn, discard, ReplyTo::Discard, None);
            self.up.release_when_idle(self.ctx, conn);
        }
        self.refuse(t, r);
    }

    /// EXEC, DISCARD or UNWATCH on the transaction's connection: its reply
    /// ends the transaction state. The client's later requests wait for it
    /// (they must see what EXEC wrote), and the connection goes back to the
    /// pool once it is read.
    fn last_on_pin(&mut self, t: Token, conn: Token, req: Bytes) {
        let seq = self.pinned(t, conn, req);
        if let (Some(c), Some(seq)) = (self.ctx.conns.client(t), seq) {
            c.await_on(seq, conn);
        }
        self.up.release_when_idle(self.ctx, conn);
    }

    /// WATCH outside MULTI: its keys pick the transaction's server (the
    /// first WATCH), or must be on it (later ones).
    fn watch(&mut self, t: Token, cmd: &Command, args: &FrameArgs<'_>, req: Bytes) {
        let random = self.ctx.view.random();
        let place = cmd
            .key_positions(args)
            .map_err(|_| Refusal::WrongArity(cmd.name))
            .and_then(|p| self.place_keys(cmd, args, p, 1, random));
        let server = match place {
            Ok(p) => p.server,
            Err(r) => return self.refuse(t, r),
        };
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        match c.tx().watch(server) {
            WatchStep::Send(conn) => {
                self.pinned(t, conn, req);
            }
            WatchStep::Refuse(r) => self.refuse(t, r),
            WatchStep::Lease => match self.up.lease(self.ctx, server, t, Release::Held) {
                Ok(conn) => {
                    if let Some(c) = self.ctx.conns.client(t) {
                        c.tx_mut().watching(Pin { server, conn });
                    }
                    self.pinned(t, conn, req);
                }
                Err(reply) => self.reply(t, reply),
            },
        }
    }

    /// A command inside MULTI. Keyed ones go to the transaction's server
    /// (picking it, for the first); PING, ECHO, TIME and UNWATCH are queued
    /// by the proxy until then. Anything else is refused, and EXEC will
    /// answer EXECABORT, as Redis does for a command it cannot queue.
    pub(super) fn queue(&mut self, t: Token, cmd: &Command, frame: &Bytes, args: &FrameArgs<'_>) {
        let req = as_multibulk(frame, args);
        match cmd.kind {
            Kind::Local(l @ (Local::Ping | Local::Echo | Local::Time)) => {
                let Some(c) = self.ctx.conns.client(t) else {
                    return;
                };
                let cfg = self.ctx.view.cfg();
                let answer = local::answer(l, args, c.session(cfg.password.as_deref(), &cfg.users));
                self.queue_local(t, req, answer.reply);
            }
            Kind::Transaction(Tx::Unwatch) => {
                self.queue_local(t, req, Ok(Bytes::from_static(resp::OK)))
            }
            Kind::Keyed(_) | Kind::Blocking(..) | Kind::Split(_) => {
                let random = self.ctx.view.random();
                let place = match cmd.key_positions(args) {
                    Ok(p) => match p.first_key() {
                        Some(first) => self.place_keys(cmd, args, p, first, random),
                        None => Err(Refusal::QueuedWithoutKey(cmd.name)),
                    },
                    Err(_) => Err(Refusal::WrongArity(cmd.name)),
                };
                match place {
                    Ok(place) => {
                        let req = self.script_request(cmd, args, place.server, req);
                        self.queue_keyed(t, place.server, req)
                    }
                    Err(r) => self.refuse_queued(t, r),
                }
            }
            Kind::Unsupported(why) => {
                let r = Refusal::Unsupported {
                    name: cmd.name,
                    why,
                };
                self.refuse_queued(t, r);
            }
            _ => self.refuse_queued(t, Refusal::NotQueueable(cmd.name)),
        }
    }

    /// A command the proxy can answer, queued: sent to the server with the
    /// rest once one is picked, else answered by EXEC itself.
    fn queue_local(&mut self, t: Token, req: Bytes, answer: Result<Bytes, Refusal>) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let wire = self.ctx.view.wire();
        let counters = &mut *self.ctx.counters;
        let step = c
            .tx_mut()
            .queue_local(req.clone(), answer, |r| refusal_reply(wire, counters, r));
        self.queued(t, step, req);
    }

    fn queue_keyed(&mut self, t: Token, server: usize, req: Bytes) {
        let Some(c) = self.ctx.conns.client(t) else {
            return;
        };
        let step = c.tx_mut().queue_keyed(server);
        if step != QueueStep::Lease {
            return self.queued(t, step, req);
        }
        let conn = match self.up.lease(self.ctx, server, t, Release::Held) {
            Ok(conn) => conn,
            Err(reply) => {
                // No connection for the transaction (upstream's own error):
                // refused as well.
                if let Some(c) = self.ctx.conns.client(t) {
                    c.tx_mut().unpinned();
                }
                return self.reply(t, reply);
            }
        };
        let queued = match self.ctx.conns.client(t) {
            Some(c) => c.tx_mut().pin(Pin { server, conn }),
            None => Vec::new(),
        };
        // The client saw +OK and +QUEUED already: these replies are the
        // server's own, dropped.
        let multi = resp::command(&[b"MULTI"]);
        self.up
            .send_leased(self.ctx, conn, multi, ReplyTo::Discard, None);
        for frame in queued {
            self.up
                .send_leased(self.ctx, conn, frame, ReplyTo::Discard, None);
        }
        self.pinned(t, conn, req);
    }

    /// Carries out what the session said of a queued command.
    fn queued(&mut self, t: Token, step: QueueStep, req: Bytes) {
        match step {
            QueueStep::Send(conn) => {
                self.pinned(t, conn, req);
            }
            QueueStep::Queued => self.reply(t, Bytes::from_static(QUEUED)),
            QueueStep::Refuse(r) => self.refuse(t, r),
            QueueStep::Lease | QueueStep::Outside => {}
        }
    }

    /// A command refused inside MULTI: answered with its error, and the
    /// transaction is doomed (EXEC answers EXECABORT).
    fn refuse_queued(&mut self, t: Token, r: Refusal) {
        self.flag_transaction(t);
        self.refuse(t, r);
    }

    /// Inside MULTI, an unknown command or a wrong arity dooms the
    /// transaction, as in Redis.
    pub(super) fn flag_transaction(&mut self, t: Token) {
        if let Some(c) = self.ctx.conns.client(t) {
            c.tx_mut().abort();
        }
    }

    /// Sends a request on the client's own connection; returns its slot.
    fn pinned(&mut self, t: Token, conn: mio::Token, req: Bytes) -> Option<u64> {
        let (seq, to) = self.waiting_slot(t)?;
        self.up.send_leased(self.ctx, conn, req, to, None);
        Some(seq)
    }
}

impl SessionKind {
    /// The client's transaction state, as the decision needs it.
    pub(super) fn of(s: &Session) -> SessionKind {
        match (s.watching_pin(), s.multi_pinned()) {
            (_, Some(pinned)) => SessionKind::Multi { pinned },
            (Some(_), None) => SessionKind::Watching,
            (None, None) => SessionKind::Normal,
        }
    }
}
