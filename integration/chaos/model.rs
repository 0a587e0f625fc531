//! A client's keys and the model its replies are checked against.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum K {
    S,
    N,
    L,
    Q,
    M0,
    M1,
    Ta,
    Tn,
    Tl,
}

pub(super) struct Keys(BTreeMap<K, String>);

impl Keys {
    /// Cluster mode: the client's keys but the MSET pair share one slot (the
    /// one the controller migrates); redis mode: they spread over the
    /// servers but the transaction's, which share a hash tag. (Keys vary at
    /// the front: with twemproxy's 32-bit fnv1a_64, keys that differ only at
    /// the end land on one server.)
    pub(super) fn new(id: usize, cluster: bool) -> Keys {
        let plain = |k: &str| {
            if cluster {
                format!("{{c{id}}}:{k}")
            } else {
                format!("{k}{id}:chaos")
            }
        };
        let tx = |k: &str| {
            if cluster {
                format!("{{c{id}}}:t{k}")
            } else {
                format!("{{{id}c}}:t{k}")
            }
        };
        Keys(BTreeMap::from([
            (K::S, plain("s")),
            (K::N, plain("n")),
            (K::L, plain("l")),
            (K::Q, plain("q")),
            (K::M0, format!("m0{id}:chaos")),
            (K::M1, format!("m1{id}:chaos")),
            (K::Ta, tx("a")),
            (K::Tn, tx("n")),
            (K::Tl, tx("l")),
        ]))
    }

    pub(super) fn get(&self, k: K) -> &str {
        &self.0[&k]
    }
}

/// Odd clients send only plain commands (see `Op::pick`).
pub(super) fn plain_only(id: usize) -> bool {
    id % 2 == 1
}

/// True if a check may rely on a write sent under loss epoch `epoch`:
/// no data-losing fault was under way then or began since.
pub(super) fn holds(epoch: u64, now: u64) -> bool {
    epoch == now && epoch.is_multiple_of(2)
}

/// A key read back as a value: a string, or a list's last element.
#[derive(Default)]
pub(super) struct Reg {
    /// The last acknowledged write: its seq and the loss epoch when its
    /// pipeline was sent.
    pub(super) floor: Option<(u64, u64)>,
    pub(super) sent: BTreeSet<u64>,
    pub(super) failed: BTreeSet<u64>,
}

impl Reg {
    pub(super) fn acked(&mut self, seq: u64, epoch: u64) {
        self.floor = Some((seq, epoch));
    }

    /// `got` read by a request sent after every write below `marker`.
    pub(super) fn read(
        &self,
        got: Option<u64>,
        marker: u64,
        now: u64,
        late: bool,
    ) -> Result<(), String> {
        if let Some(v) = got
            && (!self.sent.contains(&v) || v >= marker)
        {
            return Err(format!("read {v}, never written before the read"));
        }
        let Some((floor, epoch)) = self.floor else {
            return Ok(());
        };
        if !holds(epoch, now) {
            return Ok(());
        }
        match got {
            None => Err(format!("read nil: acknowledged write {floor} lost")),
            Some(v) if v == floor => Ok(()),
            Some(v) if self.failed.contains(&v) && (late || v > floor) => Ok(()),
            Some(v) => Err(format!(
                "read {v}, but {floor} was acknowledged after it (failed: {:?})",
                self.failed
                    .range(floor.saturating_sub(5)..)
                    .collect::<Vec<_>>()
            )),
        }
    }
}

/// INCR replies, or a growing list's lengths.
#[derive(Default)]
pub(super) struct Count {
    /// The last reply and the loss epoch its pipeline was sent under.
    pub(super) last: Option<(i64, u64)>,
    /// Failed requests since (or ever, when `late`): each may have run.
    pub(super) unknown: i64,
    pub(super) sent: i64,
}

impl Count {
    pub(super) fn acked(&mut self, x: i64, epoch: u64, now: u64, late: bool) -> Result<(), String> {
        let r = match self.last {
            Some((last, g)) if holds(g, now) => {
                if x <= last {
                    Err(format!("{x} after {last}: went back"))
                } else if x > last + 1 + self.unknown {
                    Err(format!(
                        "{x} after {last}, with {} failed request(s) between: a later \
                         request ran before this one, or one ran twice",
                        self.unknown
                    ))
                } else {
                    Ok(())
                }
            }
            _ if x < 1 || x > self.sent => Err(format!("{x}: not between 1 and {}", self.sent)),
            _ => Ok(()),
        };
        self.last = Some((x, epoch));
        if !late {
            self.unknown = 0;
        }
        r
    }
}

/// A list only ever pushed to.
#[derive(Default)]
pub(super) struct List {
    pub(super) tail: Reg,
    pub(super) len: Count,
    /// Acknowledged pushes: seq and loss epoch.
    pub(super) acked: Vec<(u64, u64)>,
}

impl List {
    pub(super) fn sent(&mut self, seq: u64) {
        self.tail.sent.insert(seq);
        self.len.sent += 1;
    }

    pub(super) fn acked(
        &mut self,
        seq: u64,
        len: i64,
        epoch: u64,
        now: u64,
        late: bool,
    ) -> Result<(), String> {
        self.tail.acked(seq, epoch);
        self.acked.push((seq, epoch));
        self.len.acked(len, epoch, now, late)
    }

    pub(super) fn failed(&mut self, seq: u64) {
        self.tail.failed.insert(seq);
        self.len.unknown += 1;
    }

    /// The whole list read at the end.
    pub(super) fn check_all(&self, items: &[u64], now: u64, late: bool) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for v in items {
            if !self.tail.sent.contains(v) {
                return Err(format!("holds {v}, never pushed"));
            }
            if !seen.insert(*v) {
                return Err(format!("holds {v} twice"));
            }
        }
        let pos: BTreeMap<u64, usize> = items.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let mut prev: Option<(u64, usize)> = None;
        for &(seq, _) in self.acked.iter().filter(|(_, g)| holds(*g, now)) {
            let Some(&at) = pos.get(&seq) else {
                return Err(format!("acknowledged push {seq} lost"));
            };
            if let Some((p, pat)) = prev
                && pat > at
            {
                return Err(format!("acknowledged {seq} stands before {p}"));
            }
            prev = Some((seq, at));
        }
        if !late && let Some(w) = items.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!("{} stands before {}", w[0], w[1]));
        }
        Ok(())
    }
}

/// The RPUSH-then-BLPOP queue.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) sent: BTreeSet<u64>,
    pub(super) failed: BTreeSet<u64>,
    /// Acknowledged pushes not popped yet: seq, loss epoch.
    pub(super) pending: VecDeque<(u64, u64)>,
    /// Popped values and the loss epoch of the pop's pipeline.
    pub(super) popped: BTreeMap<u64, u64>,
    /// Failed pops: each may have taken the head.
    pub(super) unknown_pops: usize,
}

impl Queue {
    pub(super) fn popped(
        &mut self,
        got: Option<u64>,
        marker: u64,
        epoch: u64,
        now: u64,
        late: bool,
    ) -> Result<(), String> {
        if let Some(v) = got {
            if !self.sent.contains(&v) || v >= marker {
                return Err(format!("popped {v}, never pushed before the pop"));
            }
            if let Some(&g) = self.popped.get(&v)
                && holds(g, now)
            {
                return Err(format!("popped {v} twice"));
            }
            self.popped.insert(v, epoch);
        }
        if !self.pending.iter().all(|&(_, e)| holds(e, now)) {
            // A data-losing fault since those pushes: each may be lost.
            self.failed.extend(self.pending.drain(..).map(|(s, _)| s));
            self.unknown_pops = 0;
            return Ok(());
        }
        let Some(v) = got else {
            if self.pending.len() > self.unknown_pops {
                return Err(format!(
                    "BLPOP timed out with acknowledged {:?} in the queue",
                    self.pending
                ));
            }
            self.unknown_pops -= self.pending.len();
            self.pending.clear();
            return Ok(());
        };
        let acked = self.pending.iter().any(|&(s, _)| s == v);
        let skipped = if late && !acked {
            0
        } else {
            self.pending.iter().take_while(|&&(s, _)| s < v).count()
        };
        if skipped > self.unknown_pops {
            return Err(format!(
                "popped {v} before acknowledged {:?} ({} failed pop(s) before)",
                self.pending.front(),
                self.unknown_pops
            ));
        }
        self.unknown_pops -= skipped;
        self.pending.drain(..skipped);
        if acked {
            if self.pending.front().map(|p| p.0) != Some(v) {
                return Err(format!("popped {v} out of order: {:?}", self.pending));
            }
            self.pending.pop_front();
        } else if !self.failed.contains(&v) {
            return Err(format!("popped {v}: neither pending nor a failed push"));
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Model {
    pub(super) regs: BTreeMap<K, Reg>,
    pub(super) counts: BTreeMap<K, Count>,
    pub(super) lists: BTreeMap<K, List>,
    pub(super) queue: Queue,
}

impl Model {
    pub(super) fn reg(&mut self, k: K) -> &mut Reg {
        self.regs.entry(k).or_default()
    }

    pub(super) fn count(&mut self, k: K) -> &mut Count {
        self.counts.entry(k).or_default()
    }

    pub(super) fn list(&mut self, k: K) -> &mut List {
        self.lists.entry(k).or_default()
    }
}
