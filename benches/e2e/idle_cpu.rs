//! CPU a proxy burns while nothing talks to it. It must be about zero: a
//! thread that spins or wakes on a short timer when idle (as the supervisor
//! once did with health pings off) also takes a core from the load, and it
//! depends on the config, so every config is measured this way before any
//! load.
//!
//! `idle_cpu.tsv` columns: target, pid, threads, seconds measured, ticks
//! (utime + stime, all threads) over them, the busiest thread (`TID/comm`),
//! and that thread's ticks.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::load::stat_ticks;

/// One process's CPU times at one instant: the whole process and each thread.
struct Snapshot {
    total: u64,
    /// tid -> (comm, ticks)
    threads: BTreeMap<u32, (String, u64)>,
}

fn snapshot(pid: u32) -> Option<Snapshot> {
    let total = stat_ticks(&format!("/proc/{pid}/stat"))?;
    let mut threads = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Some(ticks) = stat_ticks(&format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        // A TSV field: no tab, no newline, never empty.
        let comm: String = comm
            .trim()
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        threads.insert(
            tid,
            (if comm.is_empty() { "?".into() } else { comm }, ticks),
        );
    }
    Some(Snapshot { total, threads })
}

/// One process's idle CPU over the window.
#[derive(Debug, PartialEq)]
pub struct IdleCpu {
    pub threads: usize,
    pub seconds: f64,
    pub ticks: u64,
    /// `TID/comm` of the thread that used the most, and its ticks.
    pub busiest: String,
    pub busiest_ticks: u64,
}

impl IdleCpu {
    pub fn tsv(&self, target: &str, pid: u32) -> String {
        format!(
            "{target}\t{pid}\t{}\t{:.2}\t{}\t{}\t{}\n",
            self.threads, self.seconds, self.ticks, self.busiest, self.busiest_ticks
        )
    }
}

fn diff(before: &Snapshot, after: &Snapshot, seconds: f64) -> IdleCpu {
    let mut busiest = ("-".to_string(), 0);
    for (tid, (comm, ticks)) in &after.threads {
        // A thread born during the window counts from zero.
        let start = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let used = ticks.saturating_sub(start);
        if used > busiest.1 || busiest.0 == "-" {
            busiest = (format!("{tid}/{comm}"), used);
        }
    }
    IdleCpu {
        threads: after.threads.len(),
        seconds,
        ticks: after.total.saturating_sub(before.total),
        busiest: busiest.0,
        busiest_ticks: busiest.1,
    }
}

/// Samples every process of `procs` (target name, pid) before and after one
/// shared idle `window`, and returns idle_cpu.tsv's rows. A process whose
/// /proc entries cannot be read is reported and left out.
pub fn measure(procs: &[(&str, u32)], window: Duration) -> String {
    let before: Vec<Option<Snapshot>> = procs.iter().map(|&(_, pid)| snapshot(pid)).collect();
    let t0 = Instant::now();
    thread::sleep(window);
    let seconds = t0.elapsed().as_secs_f64();
    let mut tsv = String::new();
    for (&(name, pid), before) in procs.iter().zip(&before) {
        match (before, snapshot(pid)) {
            (Some(b), Some(a)) => {
                let m = diff(b, &a, seconds);
                println!(
                    "   {name:<11} pid {pid}: {} ticks in {seconds:.1} s over {} threads; busiest {} ({} ticks)",
                    m.ticks, m.threads, m.busiest, m.busiest_ticks
                );
                tsv += &m.tsv(name, pid);
            }
            _ => eprintln!("   {name} (pid {pid}): /proc/{pid} unreadable, idle CPU not measured"),
        }
    }
    tsv
}

/// The self-check's cases: the thread arithmetic on made-up snapshots, and
/// one real measurement of this (idle, sleeping) process.
pub fn self_check() {
    let snap = |total, threads: &[(u32, &str, u64)]| Snapshot {
        total,
        threads: threads
            .iter()
            .map(|&(tid, comm, t)| (tid, (comm.to_string(), t)))
            .collect(),
    };
    let before = snap(100, &[(10, "main", 40), (11, "w0", 60)]);
    let after = snap(180, &[(10, "main", 41), (11, "w0", 60), (12, "sup", 79)]);
    let m = diff(&before, &after, 2.0);
    assert_eq!(
        m,
        IdleCpu {
            threads: 3,
            seconds: 2.0,
            ticks: 80,
            busiest: "12/sup".into(),
            busiest_ticks: 79,
        }
    );
    assert_eq!(m.tsv("aster1", 7), "aster1\t7\t3\t2.00\t80\t12/sup\t79\n");
    let me = std::process::id();
    let tsv = measure(&[("self", me)], Duration::from_millis(50));
    let f: Vec<&str> = tsv.trim_end().split('\t').collect();
    assert_eq!(f.len(), 7, "idle_cpu row {tsv:?}");
    assert_eq!(
        f[..2],
        ["self", &me.to_string()[..]],
        "idle_cpu row {tsv:?}"
    );
    assert!(
        f[2].parse::<usize>().is_ok_and(|n| n >= 1),
        "threads in {tsv:?}"
    );
    // No pid: no row.
    assert_eq!(measure(&[("gone", u32::MAX)], Duration::ZERO), "");
}
