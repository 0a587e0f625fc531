//! Transactions: WATCH, MULTI, the commands queued inside it, EXEC,
//! DISCARD and UNWATCH, on a connection of the client's own.

use bytes::Bytes;
use mio::Token;

use crate::protocol::command::{Command, Kind, Local, Tx};
use crate::protocol::local;
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use crate::worker::backend::{Release, ReplyTo};
use crate::worker::client::{Multi, Pin, Session};

use super::{Dispatch, FrameArgs, as_multibulk, refusal_reply};

const QUEUED: &[u8] = b"+QUEUED\r\n";

impl Dispatch<'_, '_> {
    /// MULTI, EXEC, DISCARD, WATCH and UNWATCH (UNWATCH inside MULTI is
    /// queued like any command). A transaction runs on one server, on a
    /// connection of the client's own: the first key (of WATCH or of a
    /// queued command) picks it.
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
        let session = c.take_session();
        let req = as_multibulk(frame, args);
        match (tx, session) {
            (Tx::Multi, Session::Multi(m)) => {
                c.set_session(Session::Multi(m));
                self.refuse(t, Refusal::NestedMulti);
            }
            (Tx::Multi, Session::Watching(pin)) => {
                c.set_session(Session::Multi(Multi {
                    pin: Some(pin),
                    ..Multi::default()
                }));
                self.pinned(t, pin.conn, req);
            }
            (Tx::Multi, Session::Normal) => {
                c.set_session(Session::Multi(Multi::default()));
                self.reply(t, Bytes::from_static(resp::OK));
            }
            (Tx::Exec, Session::Multi(m)) => match (m.aborted, m.pin) {
                (true, pin) => {
                    if let Some(pin) = pin {
                        let discard = resp::command(&[b"DISCARD"]);
                        self.up
                            .send_leased(self.ctx, pin.conn, discard, ReplyTo::Discard, None);
                        self.up.release_when_idle(self.ctx, pin.conn);
                    }
                    self.refuse(t, Refusal::ExecAbort);
                }
                (false, Some(pin)) => self.last_on_pin(t, pin, req),
                (false, None) => {
                    // Nothing reached a server: the proxy runs what it queued.
                    let mut out = format!("*{}\r\n", m.queued.len()).into_bytes();
                    for (_, answer) in &m.queued {
                        out.extend_from_slice(answer);
                    }
                    self.reply(t, Bytes::from(out));
                }
            },
            (Tx::Discard, Session::Multi(m)) => match m.pin {
                Some(pin) => self.last_on_pin(t, pin, req),
                None => self.reply(t, Bytes::from_static(resp::OK)),
            },
            (Tx::Exec | Tx::Discard, other) => {
                c.set_session(other);
                self.refuse(t, Refusal::WithoutMulti(cmd.name));
            }
            (Tx::Watch, Session::Multi(m)) => {
                c.set_session(Session::Multi(m));
                self.refuse(t, Refusal::WatchInMulti);
            }
            (Tx::Watch, other) => self.watch(t, cmd, args, req, other),
            (Tx::Unwatch, Session::Watching(pin)) => self.last_on_pin(t, pin, req),
            (Tx::Unwatch, other) => {
                c.set_session(other);
                self.reply(t, Bytes::from_static(resp::OK));
            }
        }
    }

    /// EXEC, DISCARD or UNWATCH on the transaction's connection: its reply
    /// ends the transaction state. The client's later requests wait for it
    /// (they must see what EXEC wrote), and the connection goes back to the
    /// pool once it is read.
    fn last_on_pin(&mut self, t: Token, pin: Pin, req: Bytes) {
        let seq = self.pinned(t, pin.conn, req);
        if let (Some(c), Some(seq)) = (self.ctx.conns.client(t), seq) {
            c.await_on(seq, pin.conn);
        }
        self.up.release_when_idle(self.ctx, pin.conn);
    }

    /// WATCH outside MULTI: its keys pick the transaction's server (the
    /// first WATCH), or must be on it (later ones).
    fn watch(
        &mut self,
        t: Token,
        cmd: &Command,
        args: &FrameArgs<'_>,
        req: Bytes,
        session: Session,
    ) {
        let random = self.ctx.view.random();
        let place = cmd
            .key_positions(args)
            .map_err(|_| Refusal::WrongArity(cmd.name))
            .and_then(|p| self.place_keys(cmd, args, p, 1, random));
        let restore = |d: &mut Self, s: Session| {
            if let Some(c) = d.ctx.conns.client(t) {
                c.set_session(s);
            }
        };
        let place = match place {
            Ok(p) => p,
            Err(r) => {
                restore(self, session);
                return self.refuse(t, r);
            }
        };
        match session {
            Session::Watching(pin) if pin.server == place.server => {
                restore(self, Session::Watching(pin));
                self.pinned(t, pin.conn, req);
            }
            Session::Watching(pin) => {
                restore(self, Session::Watching(pin));
                self.refuse(t, Refusal::OtherServer);
            }
            _ => match self.up.lease(self.ctx, place.server, t, Release::Held) {
                Ok(conn) => {
                    let pin = Pin {
                        server: place.server,
                        conn,
                    };
                    restore(self, Session::Watching(pin));
                    self.pinned(t, conn, req);
                }
                Err(reply) => {
                    restore(self, Session::Normal);
                    self.reply(t, reply);
                }
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
        let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) else {
            return;
        };
        match m.pin {
            Some(pin) => {
                self.pinned(t, pin.conn, req);
            }
            None => {
                // EXEC gives it: counted now, as it is rendered once.
                let answer = answer
                    .unwrap_or_else(|r| refusal_reply(self.ctx.view.wire(), self.ctx.counters, &r));
                m.queued.push((req, answer));
                self.reply(t, Bytes::from_static(QUEUED));
            }
        }
    }

    fn queue_keyed(&mut self, t: Token, server: usize, req: Bytes) {
        let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) else {
            return;
        };
        match m.pin {
            Some(pin) if pin.server == server => {
                self.pinned(t, pin.conn, req);
            }
            Some(_) => self.refuse_queued(t, Refusal::OtherServer),
            None => {
                let queued = std::mem::take(&mut m.queued);
                let conn = match self.up.lease(self.ctx, server, t, Release::Held) {
                    Ok(conn) => conn,
                    Err(reply) => {
                        // No connection for the transaction (upstream's
                        // own error): refused as well.
                        self.flag_transaction(t);
                        return self.reply(t, reply);
                    }
                };
                // The client saw +OK and +QUEUED already: these replies are
                // the server's own, dropped.
                let multi = resp::command(&[b"MULTI"]);
                self.up
                    .send_leased(self.ctx, conn, multi, ReplyTo::Discard, None);
                for (frame, _) in queued {
                    self.up
                        .send_leased(self.ctx, conn, frame, ReplyTo::Discard, None);
                }
                if let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) {
                    m.pin = Some(Pin { server, conn });
                }
                self.pinned(t, conn, req);
            }
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
        if let Some(m) = self.ctx.conns.client(t).and_then(|c| c.multi_mut()) {
            m.aborted = true;
        }
    }

    /// Sends a request on the client's own connection; returns its slot.
    fn pinned(&mut self, t: Token, conn: mio::Token, req: Bytes) -> Option<u64> {
        let (seq, to) = self.waiting_slot(t)?;
        self.up.send_leased(self.ctx, conn, req, to, None);
        Some(seq)
    }
}
