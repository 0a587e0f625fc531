//! A run: clients, pingers, the controller's helpers, the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ops::{Tally, run_client};
use super::shared::{Phase, Progress, Shared};
use super::{CLIENTS, PING_LIMIT};
use crate::harness::{Client, Reply, seed_from_env};

pub(super) struct Run {
    pub(super) shared: Arc<Shared>,
    pub(super) seed: u64,
    pub(super) clients: Vec<JoinHandle<Result<Tally, String>>>,
    pub(super) pingers: Vec<JoinHandle<Result<Duration, String>>>,
    pub(super) notes: Vec<String>,
}

impl Run {
    pub(super) fn start(port: u16, cluster: bool, late: bool) -> Run {
        let seed = seed();
        eprintln!("ASTER_CHAOS_SEED={seed}");
        let shared = Arc::new(Shared {
            t0: Instant::now(),
            loss: AtomicU64::new(0),
            phase: AtomicUsize::new(0),
            phases: Mutex::new(vec![Phase {
                name: "warm-up".into(),
                clean: true,
            }]),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            progress: (0..CLIENTS).map(|_| Progress::default()).collect(),
        });
        let clients = (0..CLIENTS)
            .map(|id| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let r = run_client(id, port, seed, Arc::clone(&shared), cluster, late);
                    if r.is_err() {
                        shared.abort();
                    }
                    r
                })
            })
            .collect();
        // Two, so each worker likely serves one.
        let pingers = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let r = pinger(port, &shared);
                    if r.is_err() {
                        shared.abort();
                    }
                    r
                })
            })
            .collect();
        Run {
            shared,
            seed,
            clients,
            pingers,
            notes: Vec::new(),
        }
    }

    pub(super) fn recovered(&mut self, end: Instant, fault: &str) -> Result<(), String> {
        let took = self.shared.await_recovery(end, fault)?;
        self.notes
            .push(format!("recovered from {fault} in {took:?}"));
        Ok(())
    }

    /// Stops everything, joins, runs the final checks; panics with every
    /// violation found (the controller's first).
    pub(super) fn finish(self, controller: Result<(), String>) {
        if controller.is_err() {
            self.shared.abort();
        }
        self.shared.stop.store(true, SeqCst);
        let mut failures = Vec::new();
        if let Err(e) = controller {
            failures.push(format!("controller: {e}"));
        }
        let mut tallies = Vec::new();
        for h in self.clients {
            match h.join() {
                Ok(Ok(t)) => tallies.push(t),
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("a client thread panicked".into()),
            }
        }
        let mut slowest_ping = Duration::ZERO;
        for h in self.pingers {
            match h.join() {
                Ok(Ok(d)) => slowest_ping = slowest_ping.max(d),
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("a pinger thread panicked".into()),
            }
        }
        let mut report = format!(
            "seed {}; {:?}; slowest PING {slowest_ping:?}; slowest pipeline {:?}; {} pipelines, {} commands\n",
            self.seed,
            self.shared.t0.elapsed(),
            tallies.iter().map(|t| t.slowest).max().unwrap_or_default(),
            tallies.iter().map(|t| t.pipelines).sum::<u64>(),
            tallies.iter().map(|t| t.commands).sum::<u64>(),
        );
        for n in &self.notes {
            let _ = writeln!(report, "  {n}");
        }
        let mut errors: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for t in &tallies {
            for (k, n) in &t.errors {
                *errors.entry(k.clone()).or_default() += n;
            }
        }
        for ((phase, kind), n) in errors {
            let _ = writeln!(
                report,
                "  {}: {n} x -{kind}",
                self.shared.phase_at(phase).name
            );
        }
        eprintln!("{report}");
        assert!(
            failures.is_empty(),
            "ASTER_CHAOS_SEED={}: {}\n{report}",
            self.seed,
            failures.join("\n")
        );
    }
}

/// PINGs the proxy on its own connection until the run stops; the slowest
/// answer, or Err past `PING_LIMIT`.
pub(super) fn pinger(port: u16, shared: &Shared) -> Result<Duration, String> {
    let mut c = Client::connect(port);
    c.set_timeout(PING_LIMIT);
    let mut slowest = Duration::ZERO;
    while !shared.stopped() {
        let start = Instant::now();
        c.send_cmd(&["PING"]);
        match c.read_reply() {
            Ok(r) if r == Reply::status("PONG") => {}
            Ok(r) => return Err(format!("PING answered {r:?}")),
            Err(e) => return Err(format!("PING not answered within {PING_LIMIT:?}: {e}")),
        }
        slowest = slowest.max(start.elapsed());
        thread::sleep(Duration::from_millis(20));
    }
    Ok(slowest)
}

pub(super) fn seed() -> u64 {
    seed_from_env("ASTER_CHAOS_SEED")
}
