//! Command-line flags, as nutcracker's (two stages: getopts, then checked
//! values), and the process's exit codes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use log::LevelFilter;

use crate::config::nutcracker;
use crate::config::{self, Config, StatsConfig};
use crate::observe::stats;
use crate::protocol::local;

/// Exit codes: 0 fine, 1 bad configuration, 2 bad usage, 3 failed at run time.
pub(crate) const EXIT_CONFIG: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_RUNTIME: u8 = 3;

pub(crate) const DEFAULT_CONFIG: &str = "conf/default.toml";

pub(crate) struct Flags {
    pub(crate) config: PathBuf,
    pub(crate) test_only: bool,
    pub(crate) level: LevelFilter,
    pub(crate) output: Option<PathBuf>,
    pub(crate) stats_port: Option<u16>,
    pub(crate) stats_addr: Option<IpAddr>,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) daemonize: bool,
    pub(crate) metrics: Option<SocketAddr>,
}

pub(crate) fn options() -> getopts::Options {
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
pub(crate) fn parse_level(s: &str) -> Option<LevelFilter> {
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

pub(crate) enum Parsed {
    Run(Flags),
    Exit(ExitCode),
}

pub(crate) fn parse_flags(args: &[String]) -> Parsed {
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
        print!("{}", stats::describe());
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

pub(crate) fn parse_metrics_addr(v: &str) -> Option<SocketAddr> {
    if let Ok(port) = v.parse::<u16>() {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    v.parse().ok()
}

/// -s/-a/-i override the file: -s turns the stats port on for TOML too.
pub(crate) fn apply_stats_flags(config: &mut Config, flags: &Flags) {
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
