//! Operations: the commands each client sends, and the check of their
//! replies; the client's writer and reader threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::model::{K, Keys, Model, holds, plain_only};
use super::shared::Shared;
use super::{PACE, WINDOW};
use crate::harness::{Client, Reply, Rng, encode_str};

/// Reads carry `marker`: every write below it was sent before them.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Set(u64),
    Get(u64),
    Incr,
    Push(u64),
    Last(u64),
    Mset(u64),
    Mget(u64),
    Tx(u64),
    TxGet(u64),
    Pop(u64),
}

impl Op {
    /// `last` is the client's last seq so far. A `plain` client sends no
    /// transaction and no blocking command: nothing holds its later requests
    /// back but the ordering rules.
    pub(super) fn pick(rng: &mut Rng, last: &mut u64, plain: bool) -> Op {
        let marker = *last + 1;
        let mut seq = || {
            *last += 1;
            *last
        };
        match rng.below(if plain { 14 } else { 18 }) {
            0..=2 => Op::Set(seq()),
            3..=5 => Op::Get(marker),
            6 | 7 => Op::Incr,
            8 | 9 => Op::Push(seq()),
            10 | 11 => Op::Last(marker),
            12 => Op::Mset(seq()),
            13 => Op::Mget(marker),
            14 | 15 => Op::Tx(seq()),
            16 => Op::TxGet(marker),
            _ => Op::Pop(seq()),
        }
    }

    /// Notes what the op writes, so reads know the values it may leave.
    pub(super) fn note_sent(self, m: &mut Model) {
        match self {
            Op::Set(s) => {
                m.reg(K::S).sent.insert(s);
            }
            Op::Incr => m.count(K::N).sent += 1,
            Op::Push(s) => m.list(K::L).sent(s),
            Op::Mset(s) => {
                m.reg(K::M0).sent.insert(s);
                m.reg(K::M1).sent.insert(s);
            }
            Op::Tx(s) => {
                m.reg(K::Ta).sent.insert(s);
                m.count(K::Tn).sent += 1;
                m.list(K::Tl).sent(s);
            }
            Op::Pop(s) => {
                m.queue.sent.insert(s);
            }
            Op::Get(_) | Op::Last(_) | Op::Mget(_) | Op::TxGet(_) => {}
        }
    }

    pub(super) fn commands(self, id: usize, keys: &Keys) -> Vec<Vec<String>> {
        let v = |s: u64| format!("{id}:{s}");
        let k = |k: K| keys.get(k).to_string();
        let c = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        match self {
            Op::Set(s) => vec![c(&["SET", &k(K::S), &v(s)])],
            Op::Get(_) => vec![c(&["GET", &k(K::S)])],
            Op::Incr => vec![c(&["INCR", &k(K::N)])],
            Op::Push(s) => vec![c(&["RPUSH", &k(K::L), &v(s)])],
            Op::Last(_) => vec![c(&["LINDEX", &k(K::L), "-1"])],
            Op::Mset(s) => vec![c(&["MSET", &k(K::M0), &v(s), &k(K::M1), &v(s)])],
            Op::Mget(_) => vec![c(&["MGET", &k(K::M0), &k(K::M1)])],
            Op::Tx(s) => vec![
                c(&["MULTI"]),
                c(&["SET", &k(K::Ta), &v(s)]),
                c(&["INCR", &k(K::Tn)]),
                c(&["RPUSH", &k(K::Tl), &v(s)]),
                c(&["EXEC"]),
            ],
            Op::TxGet(_) => vec![c(&["GET", &k(K::Ta)])],
            Op::Pop(s) => vec![
                c(&["RPUSH", &k(K::Q), &v(s)]),
                c(&["BLPOP", &k(K::Q), "0.2"]),
            ],
        }
    }
}

/// What a run of one client saw.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) pipelines: u64,
    pub(super) commands: u64,
    /// (phase, error kind) -> count.
    pub(super) errors: BTreeMap<(usize, String), u64>,
    pub(super) slowest: Duration,
}

/// Where an error may come from, for `allowed`.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Conn {
    /// A plain command on the shared connections.
    Plain,
    /// A leased connection (transaction, blocking command): redirects reach
    /// the client.
    Leased,
    /// EXEC: also `EXECABORT`.
    Exec,
}

/// The error kinds a fault may legitimately produce (see the file's doc).
pub(super) fn allowed(e: &str, cluster: bool, from: Conn) -> bool {
    let word = e.split(' ').next().unwrap_or("");
    match word {
        "ERR" => [
            "Connection refused",
            "Connection timed out",
            "Connection reset by peer",
            "Broken pipe",
            "backend connection was lost",
        ]
        .iter()
        .any(|t| e.contains(t)),
        "CLUSTERDOWN" | "TRYAGAIN" => cluster,
        "MOVED" | "ASK" => cluster && from != Conn::Plain,
        "EXECABORT" => from == Conn::Exec,
        _ => false,
    }
}

/// An error's kind for the tally: its first word, with the text for ERR.
pub(super) fn kind(e: &str) -> String {
    match e.split_once(' ') {
        Some(("ERR", rest)) => format!("ERR {rest}"),
        Some((w, _)) => w.to_string(),
        None => e.to_string(),
    }
}

/// One client: sends pipelines until told to stop, checking every reply;
/// Err names the first violation.
pub(super) struct Runner {
    pub(super) id: usize,
    pub(super) cluster: bool,
    pub(super) late: bool,
    pub(super) keys: Keys,
    pub(super) model: Model,
    pub(super) tally: Tally,
    pub(super) phase: usize,
    /// The phase allows no error on plain commands.
    pub(super) clean: bool,
    /// Errors in the current pipeline.
    pub(super) errors: u64,
}

impl Runner {
    pub(super) fn value(&self, r: &Reply) -> Result<Option<u64>, String> {
        match r {
            Reply::Nil => Ok(None),
            Reply::Bulk(b) => {
                let text = String::from_utf8_lossy(b);
                let seq = text
                    .split_once(':')
                    .filter(|(c, _)| *c == self.id.to_string())
                    .and_then(|(_, s)| s.parse().ok());
                match seq {
                    Some(s) => Ok(Some(s)),
                    None => Err(format!("read {text:?}: not a value of client {}", self.id)),
                }
            }
            other => Err(format!("expected a value, got {other:?}")),
        }
    }

    /// Ok(true) for an allowed error (tallied), Ok(false) for a non-error.
    pub(super) fn error(&mut self, r: &Reply, from: Conn) -> Result<bool, String> {
        let Some(e) = r.error() else {
            return Ok(false);
        };
        if !allowed(e, self.cluster, from) {
            return Err(format!("unexpected error -{e}"));
        }
        // What reaches the client in any case: redirects from a leased
        // connection, and Redis Cluster's own CLUSTERDOWN, which a node
        // answers for a moment while a failover's new epoch spreads.
        let passed_on = ["MOVED ", "ASK ", "EXECABORT ", "CLUSTERDOWN "]
            .iter()
            .any(|p| e.starts_with(p));
        if self.clean && !passed_on {
            return Err(format!("-{e} during a fault aster hides"));
        }
        let via = match from {
            Conn::Plain => "",
            Conn::Leased => " (transaction or BLPOP)",
            Conn::Exec => " (EXEC)",
        };
        *self
            .tally
            .errors
            .entry((self.phase, format!("{}{via}", kind(e))))
            .or_default() += 1;
        self.errors += 1;
        Ok(true)
    }

    pub(super) fn check(
        &mut self,
        op: Op,
        r: &[Reply],
        epoch: u64,
        now: u64,
    ) -> Result<(), String> {
        let late = self.late;
        match op {
            Op::Set(s) => {
                if self.error(&r[0], Conn::Plain)? {
                    self.model.reg(K::S).failed.insert(s);
                } else if r[0] == Reply::ok() {
                    self.model.reg(K::S).acked(s, epoch);
                } else {
                    return Err(format!("SET answered {:?}", r[0]));
                }
            }
            Op::Get(marker) | Op::TxGet(marker) => {
                let k = if matches!(op, Op::Get(_)) {
                    K::S
                } else {
                    K::Ta
                };
                if !self.error(&r[0], Conn::Plain)? {
                    let v = self.value(&r[0])?;
                    self.model.reg(k).read(v, marker, now, late)?;
                }
            }
            Op::Incr => {
                if self.error(&r[0], Conn::Plain)? {
                    self.model.count(K::N).unknown += 1;
                } else if let Reply::Int(x) = r[0] {
                    self.model.count(K::N).acked(x, epoch, now, late)?;
                } else {
                    return Err(format!("INCR answered {:?}", r[0]));
                }
            }
            Op::Push(s) => {
                if self.error(&r[0], Conn::Plain)? {
                    self.model.list(K::L).failed(s);
                } else if let Reply::Int(len) = r[0] {
                    self.model.list(K::L).acked(s, len, epoch, now, late)?;
                } else {
                    return Err(format!("RPUSH answered {:?}", r[0]));
                }
            }
            Op::Last(marker) => {
                if !self.error(&r[0], Conn::Plain)? {
                    let v = self.value(&r[0])?;
                    self.model.list(K::L).tail.read(v, marker, now, late)?;
                }
            }
            Op::Mset(s) => {
                if self.error(&r[0], Conn::Plain)? {
                    self.model.reg(K::M0).failed.insert(s);
                    self.model.reg(K::M1).failed.insert(s);
                } else if r[0] == Reply::ok() {
                    self.model.reg(K::M0).acked(s, epoch);
                    self.model.reg(K::M1).acked(s, epoch);
                } else {
                    return Err(format!("MSET answered {:?}", r[0]));
                }
            }
            Op::Mget(marker) => {
                if !self.error(&r[0], Conn::Plain)? {
                    let Reply::Array(items) = &r[0] else {
                        return Err(format!("MGET answered {:?}", r[0]));
                    };
                    if items.len() != 2 {
                        return Err(format!("MGET answered {items:?}"));
                    }
                    for (k, item) in [K::M0, K::M1].into_iter().zip(items) {
                        let v = self.value(item)?;
                        self.model
                            .reg(k)
                            .read(v, marker, now, late)
                            .map_err(|e| format!("{k:?}: {e}"))?;
                    }
                }
            }
            Op::Tx(s) => self.check_tx(s, r, epoch, now)?,
            Op::Pop(s) => {
                if self.error(&r[0], Conn::Plain)? {
                    self.model.queue.failed.insert(s);
                } else if let Reply::Int(len) = r[0]
                    && len >= 1
                {
                    self.model.queue.pending.push_back((s, epoch));
                } else {
                    return Err(format!("RPUSH answered {:?}", r[0]));
                }
                if self.error(&r[1], Conn::Leased)? {
                    self.model.queue.unknown_pops += 1;
                    return Ok(());
                }
                let got = match &r[1] {
                    Reply::Nil => None,
                    Reply::Array(kv) if kv.len() == 2 && kv[0].text() == self.keys.get(K::Q) => {
                        self.value(&kv[1])?
                    }
                    other => return Err(format!("BLPOP answered {other:?}")),
                };
                let marker = s + 1;
                self.model.queue.popped(got, marker, epoch, now, late)?;
            }
        }
        Ok(())
    }

    pub(super) fn check_tx(
        &mut self,
        s: u64,
        r: &[Reply],
        epoch: u64,
        now: u64,
    ) -> Result<(), String> {
        let late = self.late;
        if r[0] != Reply::ok() {
            return Err(format!("MULTI answered {:?}", r[0]));
        }
        let mut queued = true;
        for q in &r[1..4] {
            if self.error(q, Conn::Leased)? {
                queued = false;
            } else if *q != Reply::status("QUEUED") {
                return Err(format!("a command in MULTI answered {q:?}"));
            }
        }
        if let Some(e) = r[4].error()
            && e.starts_with("EXECABORT")
        {
            // Redis ran none of it.
            self.error(&r[4], Conn::Exec)?;
            return Ok(());
        }
        if self.error(&r[4], Conn::Leased)? {
            self.model.reg(K::Ta).failed.insert(s);
            self.model.count(K::Tn).unknown += 1;
            self.model.list(K::Tl).failed(s);
            return Ok(());
        }
        if !queued {
            return Err(format!(
                "EXEC ran after a queued command failed: {:?}",
                r[4]
            ));
        }
        match &r[4] {
            Reply::Array(items) if items.len() == 3 && items[0] == Reply::ok() => {
                let (Reply::Int(n), Reply::Int(len)) = (&items[1], &items[2]) else {
                    return Err(format!("EXEC answered {items:?}"));
                };
                self.model.reg(K::Ta).acked(s, epoch);
                self.model
                    .count(K::Tn)
                    .acked(*n, epoch, now, late)
                    .map_err(|e| format!("INCR in EXEC: {e}"))?;
                self.model
                    .list(K::Tl)
                    .acked(s, *len, epoch, now, late)
                    .map_err(|e| format!("RPUSH in EXEC: {e}"))
            }
            other => Err(format!("EXEC answered {other:?}")),
        }
    }
}

/// A pipeline on its way: what the writer sent, for the reader to check.
pub(super) struct Sent {
    pub(super) ops: Vec<Op>,
    pub(super) cmds: Vec<Vec<String>>,
    /// The loss epoch and the phase when it was sent.
    pub(super) epoch: u64,
    pub(super) phase: usize,
    pub(super) at: Instant,
}

/// One client: a writer thread sends pipelines (at once while all are
/// answered, else every `PACE` up to `WINDOW` unanswered), while this
/// thread reads and checks the replies in order. Err names the first
/// violation.
pub(super) fn run_client(
    id: usize,
    port: u16,
    seed: u64,
    shared: Arc<Shared>,
    cluster: bool,
    late: bool,
) -> Result<Tally, String> {
    let mut me = Runner {
        id,
        cluster,
        late,
        keys: Keys::new(id, cluster),
        model: Model::default(),
        tally: Tally::default(),
        phase: 0,
        clean: false,
        errors: 0,
    };
    let mut c = Client::connect(port);
    let stream = c
        .stream()
        .try_clone()
        .map_err(|e| format!("client {id}: {e}"))?;
    let (tx, rx) = mpsc::channel::<Sent>();
    let unanswered = Arc::new(AtomicUsize::new(0));
    let writer = {
        let shared = Arc::clone(&shared);
        let keys = Keys::new(id, cluster);
        let unanswered = Arc::clone(&unanswered);
        thread::spawn(move || {
            let w = Writer {
                id,
                keys,
                shared,
                unanswered,
            };
            w.run(seed, stream, tx)
        })
    };
    let progress = &shared.progress[id];
    let mut result = Ok(());
    for sent in rx.iter() {
        if let Err(e) = read_pipeline(&mut me, &mut c, &sent, &shared) {
            shared.abort();
            result = Err(e);
            break;
        }
        progress.errors.fetch_add(me.errors, SeqCst);
        if me.errors == 0 {
            progress.clean_sent.store(shared.micros(sent.at), SeqCst);
        }
        progress.phase_done.store(sent.phase, SeqCst);
        progress.rounds.fetch_add(1, SeqCst);
        unanswered.fetch_sub(1, SeqCst);
    }
    // The writer ends once stopped, or when a send finds the reader gone.
    drop(rx);
    let written = writer
        .join()
        .map_err(|_| format!("client {id}: writer panicked"))?;
    result?;
    written?;
    if shared.failed.load(SeqCst) {
        return Ok(me.tally);
    }
    let now = shared.loss.load(SeqCst);
    final_check(&mut me, port, now).map_err(|e| format!("client {id}, at the end: {e}"))?;
    Ok(me.tally)
}

pub(super) struct Writer {
    pub(super) id: usize,
    pub(super) keys: Keys,
    pub(super) shared: Arc<Shared>,
    /// Pipelines sent and not yet checked by the reader.
    pub(super) unanswered: Arc<AtomicUsize>,
}

impl Writer {
    pub(super) fn run(
        &self,
        seed: u64,
        mut stream: TcpStream,
        tx: mpsc::Sender<Sent>,
    ) -> Result<(), String> {
        let id = self.id;
        let mut rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut last = 0;
        let mut last_sent = Instant::now();
        while self.may_send(last_sent) {
            let target = 10 + rng.below(41);
            let mut ops = Vec::new();
            let mut cmds: Vec<Vec<String>> = Vec::new();
            while cmds.len() < target {
                let op = Op::pick(&mut rng, &mut last, plain_only(id));
                cmds.extend(op.commands(id, &self.keys));
                ops.push(op);
            }
            let bytes: Vec<u8> = cmds
                .iter()
                .flat_map(|c| encode_str(&c.iter().map(String::as_str).collect::<Vec<_>>()))
                .collect();
            last_sent = Instant::now();
            let sent = Sent {
                ops,
                cmds,
                epoch: self.shared.loss.load(SeqCst),
                phase: self.shared.phase.load(SeqCst),
                at: last_sent,
            };
            self.unanswered.fetch_add(1, SeqCst);
            if tx.send(sent).is_err() {
                return Ok(());
            }
            stream
                .write_all(&bytes)
                .map_err(|e| format!("client {id}: write: {e}"))?;
        }
        Ok(())
    }

    /// Waits until the next pipeline may go; false once the run stops.
    pub(super) fn may_send(&self, last_sent: Instant) -> bool {
        loop {
            if self.shared.stopped() {
                return false;
            }
            let n = self.unanswered.load(SeqCst);
            if n == 0 || (n < WINDOW && last_sent.elapsed() >= PACE) {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Reads one pipeline's replies and checks them against the model.
pub(super) fn read_pipeline(
    me: &mut Runner,
    c: &mut Client,
    sent: &Sent,
    shared: &Shared,
) -> Result<(), String> {
    let id = me.id;
    let cmds = &sent.cmds;
    let mut replies = Vec::with_capacity(cmds.len());
    for (i, cmd) in cmds.iter().enumerate() {
        let r = c.read_reply().map_err(|e| {
            format!(
                "client {id}: reply {i} of {} to {cmd:?}: {e} (after {:?})",
                cmds.len(),
                sent.at.elapsed()
            )
        })?;
        replies.push(r);
    }
    me.tally.slowest = me.tally.slowest.max(sent.at.elapsed());
    let now = shared.loss.load(SeqCst);
    let epoch = sent.epoch;
    me.phase = sent.phase;
    me.clean = shared.phase_at(sent.phase).clean;
    me.errors = 0;
    for op in &sent.ops {
        op.note_sent(&mut me.model);
    }
    let mut at = 0;
    for op in &sent.ops {
        let n = op.commands(id, &me.keys).len();
        let r = &replies[at..at + n];
        me.check(*op, r, epoch, now).map_err(|e| {
            format!(
                "client {id}, phase {:?}, loss epoch {epoch}..{now}: {op:?} {:?} -> {r:?}: {e}\n\
                 the pipeline: {}",
                shared.phase_at(sent.phase).name,
                &cmds[at..at + n],
                describe(cmds, &replies)
            )
        })?;
        at += n;
    }
    me.tally.pipelines += 1;
    me.tally.commands += cmds.len() as u64;
    Ok(())
}

pub(super) fn describe(cmds: &[Vec<String>], replies: &[Reply]) -> String {
    let mut s = String::new();
    for (c, r) in cmds.iter().zip(replies) {
        let _ = write!(s, "\n  {} -> {r:?}", c.join(" "));
    }
    s
}

/// After the faults: each key holds its last acknowledged value or a later
/// attempted one, each list every acknowledged element in order.
pub(super) fn final_check(me: &mut Runner, port: u16, now: u64) -> Result<(), String> {
    let mut c = Client::connect(port);
    let late = me.late;
    let end = u64::MAX;
    for k in [K::S, K::M0, K::M1, K::Ta] {
        let r = c.cmd(&["GET", me.keys.get(k)]);
        let v = me.value(&r)?;
        me.model
            .reg(k)
            .read(v, end, now, late)
            .map_err(|e| format!("{k:?}: {e}"))?;
    }
    for k in [K::N, K::Tn] {
        let r = c.cmd(&["GET", me.keys.get(k)]);
        let count = me.model.count(k);
        if let Some((last, g)) = count.last
            && holds(g, now)
        {
            let x: i64 = r.text().parse().map_err(|_| format!("{k:?}: GET {r:?}"))?;
            if x < last || x > last + count.unknown {
                return Err(format!(
                    "{k:?} is {x}; last INCR answered {last}, {} failed since",
                    count.unknown
                ));
            }
        }
    }
    for k in [K::L, K::Tl] {
        let r = c.cmd(&["LRANGE", me.keys.get(k), "0", "-1"]);
        let Reply::Array(items) = &r else {
            return Err(format!("{k:?}: LRANGE answered {r:?}"));
        };
        let mut seqs = Vec::with_capacity(items.len());
        for item in items {
            match me.value(item)? {
                Some(s) => seqs.push(s),
                None => return Err(format!("{k:?}: LRANGE holds nil")),
            }
        }
        me.model
            .list(k)
            .check_all(&seqs, now, late)
            .map_err(|e| format!("{k:?} ({} elements): {e}", seqs.len()))?;
    }
    Ok(())
}
