//! What the controller and the clients share: the phase, the loss epoch,
//! each client's progress, and the waits built on them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::{POLL, RECOVERY, WAIT_LIMIT};
use crate::harness::poll_until;

pub(super) struct Shared {
    pub(super) t0: Instant,
    /// Even while no data-losing fault is under way: bumped at its start and
    /// at its end.
    pub(super) loss: AtomicU64,
    /// Index into `phases`: what the controller is doing.
    pub(super) phase: AtomicUsize,
    pub(super) phases: Mutex<Vec<Phase>>,
    pub(super) stop: AtomicBool,
    /// A violation was found: the clients skip their final checks.
    pub(super) failed: AtomicBool,
    pub(super) progress: Vec<Progress>,
}

/// What the controller does, and whether it may fail a plain command.
#[derive(Clone, Debug)]
pub(super) struct Phase {
    pub(super) name: String,
    /// Plain commands get no error at all: the fault is one aster hides
    /// (a reload, a migration, a graceful failover).
    pub(super) clean: bool,
}

#[derive(Default)]
pub(super) struct Progress {
    /// Pipelines answered.
    pub(super) rounds: AtomicU64,
    /// When (µs after `t0`) the latest pipeline answered without any error
    /// was sent.
    pub(super) clean_sent: AtomicU64,
    /// Replies that were errors.
    pub(super) errors: AtomicU64,
    /// The phase the last answered pipeline was sent in.
    pub(super) phase_done: AtomicUsize,
}

impl Shared {
    pub(super) fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_micros() as u64
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }

    /// A violation: everything stops, and the clients skip their final
    /// checks (the faults may not be over).
    pub(super) fn abort(&self) {
        self.failed.store(true, SeqCst);
        self.stop.store(true, SeqCst);
    }

    pub(super) fn begin_loss(&self) {
        let was = self.loss.fetch_add(1, SeqCst);
        assert_eq!(was % 2, 0, "nested data-losing faults");
    }

    pub(super) fn end_loss(&self) {
        let was = self.loss.fetch_add(1, SeqCst);
        assert_eq!(was % 2, 1, "end of a data-losing fault that did not begin");
    }

    /// Starts a phase, then waits until every client answered a pipeline
    /// sent in it (so all sent before): what the phase does meets no
    /// pipeline of the one before.
    pub(super) fn phase(&self, name: &str, clean: bool) -> Result<(), String> {
        let index = {
            let mut phases = self.phases.lock().expect("phases");
            phases.push(Phase {
                name: name.to_string(),
                clean,
            });
            phases.len() - 1
        };
        self.phase.store(index, SeqCst);
        self.await_all(&format!("a pipeline sent in phase {name:?}"), |p| {
            p.phase_done.load(SeqCst) >= index
        })
    }

    pub(super) fn phase_at(&self, i: usize) -> Phase {
        let phases = self.phases.lock().expect("phases");
        phases[i].clone()
    }

    /// Waits until `f` holds for every client's progress (bounded).
    pub(super) fn await_all(
        &self,
        what: &str,
        f: impl Fn(&Progress) -> bool,
    ) -> Result<(), String> {
        let ok = poll_until(WAIT_LIMIT, POLL, || {
            (self.stopped() || self.progress.iter().all(&f)).then_some(())
        });
        match ok {
            Some(()) if !self.stopped() => Ok(()),
            Some(()) => Err(format!("a client stopped while waiting for {what}")),
            None => Err(format!("{what}: not within {WAIT_LIMIT:?}")),
        }
    }

    /// Waits until every client answered `n` more pipelines.
    pub(super) fn await_rounds(&self, n: u64) -> Result<(), String> {
        let base: Vec<u64> = self
            .progress
            .iter()
            .map(|p| p.rounds.load(SeqCst))
            .collect();
        let ok = poll_until(WAIT_LIMIT, POLL, || {
            (self.stopped()
                || self
                    .progress
                    .iter()
                    .zip(&base)
                    .all(|(p, b)| p.rounds.load(SeqCst) >= b + n))
            .then_some(())
        });
        match ok {
            Some(()) if !self.stopped() => Ok(()),
            Some(()) => Err("a client stopped".into()),
            None => Err(format!(
                "clients did not answer {n} pipelines in {WAIT_LIMIT:?}"
            )),
        }
    }

    /// Each client's error count, for `await_errors`.
    pub(super) fn errors(&self) -> Vec<u64> {
        self.progress
            .iter()
            .map(|p| p.errors.load(SeqCst))
            .collect()
    }

    /// Waits until at least `clients` clients got an error reply since
    /// `base` (from `errors`): the fault was felt.
    pub(super) fn await_errors(&self, base: &[u64], clients: usize) -> Result<(), String> {
        let ok = poll_until(WAIT_LIMIT, POLL, || {
            let hit = self
                .progress
                .iter()
                .zip(base)
                .filter(|(p, b)| p.errors.load(SeqCst) > **b)
                .count();
            (self.stopped() || hit >= clients).then_some(())
        });
        match ok {
            Some(()) if !self.stopped() => Ok(()),
            Some(()) => Err("a client stopped".into()),
            None => Err(format!(
                "{clients} clients did not meet the fault in {WAIT_LIMIT:?}"
            )),
        }
    }

    /// Every client completes an error-free pipeline sent after `end` (the
    /// fault's end) within `RECOVERY`; returns how long that took.
    pub(super) fn await_recovery(&self, end: Instant, fault: &str) -> Result<Duration, String> {
        let at = self.micros(end);
        self.await_all(&format!("recovery after {fault}"), |p| {
            p.clean_sent.load(SeqCst) > at
        })?;
        let took = end.elapsed();
        if took > RECOVERY {
            return Err(format!(
                "after {fault}, clients recovered in {took:?} (limit {RECOVERY:?})"
            ));
        }
        Ok(took)
    }
}

/// Stops the clients when the controller returns or panics.
pub(super) struct StopOnDrop(pub(super) Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, SeqCst);
    }
}
