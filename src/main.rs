//! aster-proxy: a Redis proxy (twemproxy-compatible sharding and Redis Cluster).

#![deny(rust_2018_idioms, unused_imports)]

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use log::{LevelFilter, error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook::iterator::Signals;
use simplelog::{ConfigBuilder, WriteLogger};

use aster_proxy::clusters::{self, Clusters};
use aster_proxy::config::{self, Config, StatsConfig};
use aster_proxy::{local, metrics, nutcracker, stats, supervisor};

/// Exit codes: 0 fine, 1 bad configuration, 2 bad usage, 3 failed at run time.
const EXIT_CONFIG: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_RUNTIME: u8 = 3;

const DEFAULT_CONFIG: &str = "conf/default.toml";

struct Flags {
    config: PathBuf,
    test_only: bool,
    level: LevelFilter,
    output: Option<PathBuf>,
    stats_port: Option<u16>,
    stats_addr: Option<IpAddr>,
    stats_interval: Option<Duration>,
    pid_file: Option<PathBuf>,
    daemonize: bool,
    metrics: Option<SocketAddr>,
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optflag("h", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
    o.optflag(
        "t",
        "test-conf",
        "check the configuration file and exit (0 valid, 1 not)",
    );
    o.optopt(
        "c",
        "config",
        &format!("configuration file (default {DEFAULT_CONFIG})"),
        "FILE",
    );
    o.optopt(
        "v",
        "verbose",
        "log level: error, warn, info, debug, trace, or twemproxy's 0-11 (default info)",
        "LEVEL",
    );
    o.optopt("o", "output", "log file (default stderr)", "FILE");
    o.optflag(
        "d",
        "daemonize",
        "run in the background (give -o to keep the log)",
    );
    o.optflag(
        "D",
        "describe-stats",
        "print what each stats counter means and exit",
    );
    o.optopt(
        "s",
        "stats-port",
        "stats port (default 22222 for a nutcracker file; off for TOML unless [stats] is set)",
        "PORT",
    );
    o.optopt(
        "a",
        "stats-addr",
        "stats address (default 0.0.0.0, as nutcracker)",
        "ADDR",
    );
    o.optopt(
        "i",
        "stats-interval",
        "stats refresh interval in ms (default 30000)",
        "MS",
    );
    o.optopt(
        "",
        "metrics",
        "serve Prometheus metrics at http://ADDR:PORT/metrics (PORT alone: 127.0.0.1)",
        "[ADDR:]PORT",
    );
    o.optopt("p", "pid-file", "write the process id to this file", "FILE");
    o.optopt(
        "m",
        "mbuf-size",
        "accepted for nutcracker compatibility and ignored: aster sizes its buffers to the traffic",
        "N",
    );
    o
}

/// Log levels by name, or by twemproxy's numbers (5, NOTICE, is its default).
fn parse_level(s: &str) -> Option<LevelFilter> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(match n {
            0 => LevelFilter::Off,
            1..=3 => LevelFilter::Error,
            4 => LevelFilter::Warn,
            5 | 6 => LevelFilter::Info,
            7 | 8 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        });
    }
    s.parse().ok()
}

enum Parsed {
    Run(Flags),
    Exit(ExitCode),
}

fn parse_flags(args: &[String]) -> Parsed {
    let opts = options();
    let usage_error = |msg: String| {
        eprintln!("aster-proxy: {msg}\nTry 'aster-proxy --help'.");
        Parsed::Exit(ExitCode::from(EXIT_USAGE))
    };
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => return usage_error(e.to_string()),
    };
    if m.opt_present("h") {
        print!("{}", opts.usage("Usage: aster-proxy [options]"));
        return Parsed::Exit(ExitCode::SUCCESS);
    }
    if m.opt_present("V") {
        println!("aster-proxy {}", local::VERSION);
        return Parsed::Exit(ExitCode::SUCCESS);
    }
    if m.opt_present("D") {
        print!("{}", stats::DESCRIPTION);
        return Parsed::Exit(ExitCode::SUCCESS);
    }
    let stats_port = match m.opt_str("s").map(|v| v.parse::<u16>()) {
        None => None,
        Some(Ok(p)) if p > 0 => Some(p),
        Some(_) => return usage_error("bad stats port: expected 1-65535".into()),
    };
    let stats_addr = match m.opt_str("a").map(|v| v.parse::<IpAddr>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => return usage_error("bad stats address: expected an IP address".into()),
    };
    let stats_interval = match m.opt_str("i").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) if config::stats_interval(ms).is_ok() => Some(Duration::from_millis(ms)),
        Some(_) => {
            return usage_error(format!(
                "bad stats interval: expected milliseconds 1..={}",
                config::MAX_INT
            ));
        }
    };
    let metrics = match m.opt_str("metrics") {
        None => None,
        Some(v) => match parse_metrics_addr(&v) {
            Some(a) => Some(a),
            None => return usage_error(format!("bad --metrics '{v}': expected PORT or ADDR:PORT")),
        },
    };
    if let Some(Err(_)) = m.opt_str("m").map(|v| v.parse::<u64>()) {
        return usage_error("bad mbuf size: expected a number".into());
    }
    if let Some(extra) = m.free.first() {
        return usage_error(format!("unexpected argument '{extra}'"));
    }
    let level = match m.opt_str("v") {
        None => LevelFilter::Info,
        Some(v) => match parse_level(&v) {
            Some(l) => l,
            None => return usage_error(format!("bad log level '{v}'")),
        },
    };
    Parsed::Run(Flags {
        config: m
            .opt_str("c")
            .unwrap_or_else(|| DEFAULT_CONFIG.into())
            .into(),
        test_only: m.opt_present("t"),
        level,
        output: m.opt_str("o").map(PathBuf::from),
        stats_port,
        stats_addr,
        stats_interval,
        pid_file: m.opt_str("p").map(PathBuf::from),
        daemonize: m.opt_present("d"),
        metrics,
    })
}

/// The log file, shared with the signal loop so SIGHUP can reopen it after
/// logrotate moved it away.
#[derive(Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

impl LogFile {
    fn open(path: &Path) -> Result<LogFile, String> {
        let file = open_append(path)?;
        fatal::log_to(&file);
        let f = LogFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        };
        let _ = LOG_FILE.set(f.clone());
        Ok(f)
    }

    fn reopen(&self) -> Result<(), String> {
        let fresh = open_append(&self.path)?;
        fatal::log_to(&fresh);
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

impl std::io::Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

fn init_logging(flags: &Flags) -> Result<(), String> {
    let cfg = ConfigBuilder::new()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let writer: Box<dyn std::io::Write + Send> = match &flags.output {
        Some(path) => Box::new(LogFile::open(path)?),
        None => Box::new(std::io::stderr()),
    };
    // The logger itself passes everything; the level lives in log's global
    // filter, which SIGTTIN/SIGTTOU move at run time.
    WriteLogger::init(LevelFilter::Trace, cfg, writer).map_err(|e| e.to_string())?;
    log::set_max_level(flags.level);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Parsed::Run(f) => f,
        Parsed::Exit(code) => return code,
    };
    let mut config = match Config::load(&flags.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aster-proxy: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if flags.test_only {
        println!(
            "aster-proxy: configuration file {} is valid",
            flags.config.display()
        );
        return ExitCode::SUCCESS;
    }
    if flags.daemonize {
        return daemonize(&args);
    }
    apply_stats_flags(&mut config, &flags);
    if let Err(e) = init_logging(&flags) {
        eprintln!("aster-proxy: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Err(e) = fatal::install() {
        eprintln!("aster-proxy: cannot install fatal signal handlers: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    if let Some(pid_file) = &flags.pid_file
        && let Err(e) = std::fs::write(pid_file, format!("{}\n", std::process::id()))
    {
        eprintln!(
            "aster-proxy: cannot write pid file {}: {e}",
            pid_file.display()
        );
        return ExitCode::from(EXIT_RUNTIME);
    }
    let result = run(config, flags.metrics, &flags);
    if let Some(pid_file) = &flags.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("aster-proxy: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn run(
    mut config: Config,
    metrics_addr: Option<SocketAddr>,
    flags: &Flags,
) -> Result<(), Box<dyn std::error::Error>> {
    // Uptimes count from here.
    stats::started();
    // Signals are blocked-and-queued from here, before any thread starts.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU])?;
    info!(
        "aster-proxy {} starting with {} ({} cluster(s))",
        local::VERSION,
        config.path.display(),
        config.clusters.len()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stop_supervisor = tx.clone();
    let supervisor = supervisor::spawn(rx)?;
    let registry: stats::Registry = Arc::new(Mutex::new(Vec::new()));
    let mut clusters = Clusters::new(tx, Arc::clone(&registry));
    let started = clusters.start_all(&config);
    if let Err(e) = started {
        let _ = stop_supervisor.send(supervisor::Msg::Shutdown);
        let _ = supervisor.join();
        return Err(e.into());
    }
    if let Some(st) = &config.stats {
        stats::serve(st.listen_addr, st.interval, Arc::clone(&registry))
            .map_err(|e| format!("cannot serve stats on {}: {e}", st.listen_addr))?;
        info!(
            "stats on {} every {} ms",
            st.listen_addr,
            st.interval.as_millis()
        );
    }
    if let Some(addr) = metrics_addr {
        metrics::serve(addr, Arc::clone(&registry))
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        info!("metrics on http://{addr}/metrics");
    }

    for sig in signals.forever() {
        match sig {
            SIGTERM | SIGINT => {
                info!(
                    "got {}: draining and exiting",
                    if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                );
                break;
            }
            SIGTTIN => {
                let level = raise(log::max_level());
                log::set_max_level(level);
                info!("got SIGTTIN: log level now {level}");
            }
            SIGTTOU => {
                let level = lower(log::max_level());
                log::set_max_level(level);
                info!("got SIGTTOU: log level now {level}");
            }
            SIGHUP => {
                match LOG_FILE.get() {
                    Some(f) => match f.reopen() {
                        Ok(()) => info!("got SIGHUP: log file {} reopened", f.path.display()),
                        Err(e) => error!("got SIGHUP: {e}"),
                    },
                    None => info!("got SIGHUP: reloading {}", config.path.display()),
                }
                match Config::load(&config.path) {
                    Ok(mut fresh) => {
                        apply_stats_flags(&mut fresh, flags);
                        clusters::warn_restart_only(&config, &fresh);
                        clusters.reload(&fresh);
                        config = fresh;
                    }
                    Err(e) => error!("reload refused, the running configuration stays: {e}"),
                }
            }
            _ => {}
        }
    }
    clusters.stop_all();
    let _ = stop_supervisor.send(supervisor::Msg::Shutdown);
    let _ = supervisor.join();
    info!("aster-proxy stopped");
    Ok(())
}

fn parse_metrics_addr(v: &str) -> Option<SocketAddr> {
    if let Ok(port) = v.parse::<u16>() {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    v.parse().ok()
}

/// -s/-a/-i override the file: -s turns the stats port on for TOML too.
fn apply_stats_flags(config: &mut Config, flags: &Flags) {
    let default_addr: IpAddr = nutcracker::STATS_ADDR
        .parse()
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let base = config.stats.clone().or_else(|| {
        flags.stats_port.map(|port| StatsConfig {
            listen_addr: SocketAddr::new(default_addr, port),
            interval: Duration::from_millis(nutcracker::STATS_INTERVAL_MS),
        })
    });
    config.stats = base.map(|mut st| {
        if let Some(p) = flags.stats_port {
            st.listen_addr.set_port(p);
        }
        if let Some(a) = flags.stats_addr {
            st.listen_addr.set_ip(a);
        }
        if let Some(i) = flags.stats_interval {
            st.interval = i;
        }
        st
    });
}

/// -d: starts a copy of this process without -d in its own process group,
/// detached from the terminal, and returns at once.
fn daemonize(args: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let rest: Vec<&String> = args
        .iter()
        .filter(|a| *a != "-d" && *a != "--daemonize")
        .collect();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aster-proxy: cannot find own executable: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match Command::new(exe)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aster-proxy: cannot daemonize: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn raise(l: LevelFilter) -> LevelFilter {
    match l {
        LevelFilter::Off => LevelFilter::Error,
        LevelFilter::Error => LevelFilter::Warn,
        LevelFilter::Warn => LevelFilter::Info,
        LevelFilter::Info => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn lower(l: LevelFilter) -> LevelFilter {
    match l {
        LevelFilter::Trace => LevelFilter::Debug,
        LevelFilter::Debug => LevelFilter::Info,
        LevelFilter::Info => LevelFilter::Warn,
        LevelFilter::Warn => LevelFilter::Error,
        _ => LevelFilter::Off,
    }
}

/// Fatal signals (SEGV, BUS, ILL, FPE, ABRT) leave a line in the log naming
/// the signal, as twemproxy's do, and the process then dies of the signal
/// as it would have (same exit status, same core dump).
///
/// The handler may run with the heap or a lock in any state, so it only
/// formats into a stack buffer and write(2)s to a descriptor opened
/// beforehand: no allocation, no lock, no `log` call.
mod fatal {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Mutex, PoisonError};

    const SIGNALS: [(libc::c_int, &str); 5] = [
        (libc::SIGSEGV, "SEGV"),
        (libc::SIGBUS, "BUS"),
        (libc::SIGILL, "ILL"),
        (libc::SIGFPE, "FPE"),
        (libc::SIGABRT, "ABRT"),
    ];

    /// Where the handler writes: stderr until a log file is opened.
    static FD: AtomicI32 = AtomicI32::new(2);
    /// Keeps that descriptor open (a dup of the log file, which SIGHUP may
    /// replace while the handler could be reading `FD`).
    static KEEP: Mutex<Option<File>> = Mutex::new(None);

    /// Sends fatal-signal lines to `file` (a dup of it) from now on.
    pub fn log_to(file: &File) {
        let Ok(dup) = file.try_clone() else {
            return;
        };
        FD.store(dup.as_raw_fd(), Ordering::SeqCst);
        let old = KEEP
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(dup);
        drop(old);
    }

    pub fn install() -> std::io::Result<()> {
        for (sig, _) in SIGNALS {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
            // value, and `handler` is async-signal-safe (see above).
            // SA_RESETHAND puts the default action back on entry;
            // SA_ONSTACK lets a stack overflow be reported on the alternate
            // stack the Rust runtime gives every thread.
            let rc = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESETHAND | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    extern "C" fn handler(sig: libc::c_int) {
        let mut buf = [0u8; 160];
        let n = line(&mut buf, sig, now_secs());
        // SAFETY: write(2) and raise(3) are async-signal-safe; `buf` lives
        // on this stack frame.
        unsafe {
            libc::write(FD.load(Ordering::SeqCst), buf.as_ptr().cast(), n);
            // The signal stays blocked until the handler returns, then the
            // default action (restored by SA_RESETHAND) ends the process. A
            // fault re-executes the faulting instruction and gets the same.
            libc::raise(sig);
        }
    }

    fn now_secs() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime is async-signal-safe and writes only `ts`.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        u64::try_from(ts.tv_sec).unwrap_or(0)
    }

    /// "HH:MM:SS [ERROR] signal 11 (SEGV) received, dying of it\n" (UTC, as
    /// the logger's own lines), into `buf`; returns its length.
    fn line(buf: &mut [u8], sig: libc::c_int, secs: u64) -> usize {
        let name = SIGNALS
            .iter()
            .find(|(s, _)| *s == sig)
            .map_or("?", |(_, n)| n);
        let mut w = Cursor { buf, at: 0 };
        let day = secs % 86_400;
        w.num2(day / 3600);
        w.put(b":");
        w.num2(day / 60 % 60);
        w.put(b":");
        w.num2(day % 60);
        w.put(b" [ERROR] signal ");
        w.num(u64::try_from(sig).unwrap_or(0));
        w.put(b" (");
        w.put(name.as_bytes());
        w.put(b") received, dying of it\n");
        w.at
    }

    /// Appends to a fixed buffer, dropping what does not fit.
    struct Cursor<'a> {
        buf: &'a mut [u8],
        at: usize,
    }

    impl Cursor<'_> {
        fn put(&mut self, b: &[u8]) {
            for &c in b {
                if let Some(slot) = self.buf.get_mut(self.at) {
                    *slot = c;
                    self.at += 1;
                }
            }
        }
        fn num2(&mut self, v: u64) {
            self.put(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
        }
        fn num(&mut self, mut v: u64) {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            self.put(&digits[i..]);
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn line_names_the_signal() {
            let mut buf = [0u8; 160];
            let n = super::line(&mut buf, libc::SIGSEGV, 86_400 + 3661);
            assert_eq!(
                &buf[..n],
                b"01:01:01 [ERROR] signal 11 (SEGV) received, dying of it\n"
            );
        }
    }
}
