//! One redis-benchmark run against one target, with the CPU time and RSS of
//! the process(es) under test sampled from /proc around it, and the raw
//! results file the report generator reads.
//!
//! `results.tsv` columns (no header; `calib` rows are the calibration runs,
//! which the report skips):
//! kind, round, test, clients/pipeline, target, req/s, p50 ms, p99 ms,
//! CPU µs per request, RSS kB, redis-benchmark's own CPU µs per request.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{output_text, spawn_captured};

/// The commands measured, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Test {
    Get,
    Set,
    /// MGET of 10 random keys: one request for redis-benchmark.
    Mget,
}

impl Test {
    pub const ALL: [Test; 3] = [Test::Get, Test::Set, Test::Mget];

    pub fn name(self) -> &'static str {
        match self {
            Test::Get => "GET",
            Test::Set => "SET",
            Test::Mget => "MGET",
        }
    }

    /// redis-benchmark's arguments for this test.
    pub fn args(self) -> Vec<&'static str> {
        match self {
            Test::Get => vec!["-t", "get"],
            Test::Set => vec!["-t", "set"],
            Test::Mget => {
                let mut v = vec!["MGET"];
                v.extend(["key:__rand_int__"; 10]);
                v
            }
        }
    }
}

/// redis-benchmark's `-c` and `-P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cfg {
    pub clients: u32,
    pub pipeline: u32,
}

/// The load shapes, in table order.
pub const CFGS: [Cfg; 3] = [
    Cfg {
        clients: 50,
        pipeline: 1,
    },
    Cfg {
        clients: 50,
        pipeline: 16,
    },
    Cfg {
        clients: 1000,
        pipeline: 1,
    },
];

impl fmt::Display for Cfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.clients, self.pipeline)
    }
}

/// What redis-benchmark talks to, and whose CPU and RSS count for it.
pub struct Target {
    /// The name in results.tsv (the report maps it to a display name).
    pub name: &'static str,
    pub port: u16,
    /// The process under test: the proxy, or the redis-server(s) themselves.
    pub pids: Vec<u32>,
    /// Extra redis-benchmark arguments (`--cluster`).
    pub extra: Vec<&'static str>,
}

/// A run that produced no usable result.
#[derive(Debug)]
pub enum RunError {
    /// redis-benchmark did not exit within the limit (it retries a refused
    /// connection forever).
    Hung { limit: Duration },
    /// It exited non-zero or reported an error; the first lines of its output.
    Failed(String),
    /// Its output held no CSV result line.
    NoResult(String),
    /// results.tsv could not be written.
    Write { path: PathBuf, err: std::io::Error },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Hung { limit } => write!(f, "did not finish within {limit:?}"),
            RunError::Failed(head) => write!(f, "failed: {head}"),
            RunError::NoResult(out) => write!(f, "no CSV result in its output: {out}"),
            RunError::Write { path, err } => write!(f, "write {}: {err}", path.display()),
        }
    }
}

/// One measured run: a row of results.tsv.
#[derive(Clone, Debug)]
pub struct Row {
    pub kind: &'static str,
    pub round: u32,
    pub test: Test,
    pub cfg: Cfg,
    pub target: &'static str,
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_us: f64,
    pub rss_kb: u64,
    /// redis-benchmark's own CPU (user + system) per request: near 1 core's
    /// worth of it means the load generator, not the target, is the limit.
    pub client_us: f64,
}

impl Row {
    pub fn tsv(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{:.0}\t{:.3}\t{:.3}\t{:.2}\t{}\t{:.2}\n",
            self.kind,
            self.round,
            self.test.name(),
            self.cfg,
            self.target,
            self.rps,
            self.p50,
            self.p99,
            self.cpu_us,
            self.rss_kb,
            self.client_us
        )
    }

    /// The progress line printed for a measured run: the recorded fields,
    /// aligned.
    pub fn console(&self) -> String {
        let tsv = self.tsv();
        let f: Vec<&str> = tsv.trim_end().split('\t').collect();
        let [
            kind,
            round,
            test,
            cfg,
            target,
            rps,
            p50,
            p99,
            cpu,
            rss,
            client,
        ] = f[..]
        else {
            return tsv;
        };
        format!(
            "   {kind:<3} {:<8} {test:<5} {cfg:<7} {target:<11} {rps:>9} req/s  p50 {p50:>6}  p99 {p99:>6} ms  cpu {cpu:>6} us/req  rss {rss:>6} kB  client cpu {client:>5} us/req",
            format!("r{round}")
        )
    }
}

/// req/s, p50 and p99 (ms) from redis-benchmark's `--csv` output: the last
/// quoted line that is not the header.
pub fn parse_csv(out: &str) -> Option<(f64, f64, f64)> {
    let line = out
        .lines()
        .rfind(|l| l.starts_with('"') && !l.starts_with("\"test\""))?;
    // Every field is quoted and none holds a quote or a comma.
    let fields: Vec<&str> = line.trim().trim_matches('"').split("\",\"").collect();
    let num = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((num(1)?, num(4)?, num(6)?))
}

/// Requests per run so that one lasts about `duration` seconds at `rps`:
/// rounded up to a thousand, at least 10,000.
pub fn requests_for(rps: f64, duration: f64) -> u64 {
    let thousands = (rps * duration / 1000.0 + 1.0).floor();
    ((thousands as u64) * 1000).max(10_000)
}

/// utime + stime in clock ticks, every thread, summed over `pids` (0 for a
/// process that is gone).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| stat_ticks(&format!("/proc/{pid}/stat")))
        .sum()
}

/// utime + stime in clock ticks from one `stat` file of /proc: a process's
/// (all its threads) or one thread's (`/proc/PID/task/TID/stat`).
pub fn stat_ticks(path: &str) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // Fields after "comm)": state is the first, utime the 12th.
    let rest = stat.rsplit_once(") ")?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in kB summed over `pids`.
pub fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Clock ticks per second of /proc's CPU times.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100)
}

/// Runs `cmd` to completion with stdin closed and both pipes captured (read
/// in threads, so a chatty child cannot block on a full pipe), reaping it
/// with wait4(2) to get the CPU time (user + system) of that child alone.
/// None if it did not exit within `limit`: it is killed then.
///
/// The harness's `run_captured` reaps through `std::process::Child`, which
/// gives no rusage; getrusage(RUSAGE_CHILDREN) would count every child this
/// process has reaped, not just this one.
// The child is reaped by wait4 below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn run_with_cpu(cmd: &mut Command, limit: Duration) -> Option<(Output, Duration)> {
    let (mut child, out_t, err_t) = spawn_captured(cmd);
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let exited = loop {
        // SAFETY: wait4 on our own unreaped child writes only `status` and
        // `usage`.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break true;
        }
        if r < 0 && io_errno() != libc::EINTR {
            // Not our child any more (cannot happen: nothing else reaps it).
            break false;
        }
        if Instant::now() >= deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(5));
    };
    if !exited {
        // Still unreaped, so the pid is still this child's.
        let _ = child.kill();
        // SAFETY: as above; blocks until the killed child is reaped.
        unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    }
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if !exited {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Some((
        Output {
            status: ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        cpu,
    ))
}

fn io_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs redis-benchmark to completion; its output when it exited 0 and
/// reported no error, and its own CPU time.
pub fn redis_benchmark(args: &[String], limit: Duration) -> Result<(String, Duration), RunError> {
    let (out, cpu) = run_with_cpu(Command::new("redis-benchmark").args(args), limit)
        .ok_or(RunError::Hung { limit })?;
    // Proxies refuse CONFIG GET, which redis-benchmark only warns about.
    let text: String = output_text(&out)
        .lines()
        .filter(|l| !l.contains("Could not fetch server CONFIG"))
        .map(|l| format!("{l}\n"))
        .collect();
    let lower = text.to_lowercase();
    if !out.status.success()
        || lower.contains("err")
        || lower.contains("could not")
        || lower.contains("refused")
    {
        let head: Vec<&str> = text.lines().take(3).collect();
        return Err(RunError::Failed(head.join(" / ")));
    }
    Ok((text, cpu))
}

/// Appends rows to results.tsv.
pub struct Results {
    path: PathBuf,
    file: File,
    hz: u64,
    keyspace: u64,
}

impl Results {
    pub fn create(path: &Path, keyspace: u64) -> Result<Results, RunError> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|err| RunError::Write {
                path: path.to_path_buf(),
                err,
            })?;
        Ok(Results {
            path: path.to_path_buf(),
            file,
            hz: clk_tck(),
            keyspace,
        })
    }

    /// One redis-benchmark run of `n` requests against `target`, recorded.
    pub fn run(
        &mut self,
        kind: &'static str,
        round: u32,
        test: Test,
        cfg: Cfg,
        target: &Target,
        n: u64,
    ) -> Result<Row, RunError> {
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &target.port.to_string()]
            .map(String::from)
            .to_vec();
        args.extend(target.extra.iter().map(|a| a.to_string()));
        args.extend(
            [
                "-c".to_string(),
                cfg.clients.to_string(),
                "-P".to_string(),
                cfg.pipeline.to_string(),
                "-n".to_string(),
                n.to_string(),
                "-r".to_string(),
                self.keyspace.to_string(),
                "--csv".to_string(),
            ]
            .into_iter()
            .chain(test.args().into_iter().map(String::from)),
        );
        // Generous: a run is meant to last seconds; a hung one must not stall
        // the whole benchmark.
        let limit = Duration::from_secs(300);
        let c0 = cpu_ticks(&target.pids);
        let (out, client_cpu) = redis_benchmark(&args, limit)?;
        let c1 = cpu_ticks(&target.pids);
        let (rps, p50, p99) = parse_csv(&out).ok_or_else(|| RunError::NoResult(out.clone()))?;
        let row = Row {
            kind,
            round,
            test,
            cfg,
            target: target.name,
            rps,
            p50,
            p99,
            cpu_us: c1.saturating_sub(c0) as f64 * 1e6 / self.hz as f64 / n as f64,
            rss_kb: rss_kb(&target.pids),
            client_us: client_cpu.as_secs_f64() * 1e6 / n as f64,
        };
        self.file
            .write_all(row.tsv().as_bytes())
            .map_err(|err| RunError::Write {
                path: self.path.clone(),
                err,
            })?;
        Ok(row)
    }
}
