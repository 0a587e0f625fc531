//! aster-proxy: a Redis proxy (twemproxy-compatible sharding and Redis Cluster).

#![deny(rust_2018_idioms, unused_imports)]

mod backend;
mod client;
mod command;
mod config;
mod dispatch;
mod hash;
mod ketama;
mod local;
mod multikey;
mod netio;
mod proxy;
mod resp;
mod route;
mod rpc;
mod slots;
mod supervisor;
mod worker;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{LevelFilter, error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook::iterator::Signals;
use simplelog::{ConfigBuilder, WriteLogger};

use crate::config::Config;
use crate::proxy::Proxy;

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
    })
}

fn init_logging(flags: &Flags) -> Result<(), String> {
    let cfg = ConfigBuilder::new()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let writer: Box<dyn std::io::Write + Send> = match &flags.output {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?,
        ),
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
    let config = match Config::load(&flags.config) {
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
    if let Err(e) = init_logging(&flags) {
        eprintln!("aster-proxy: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("aster-proxy: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Arc::new(AtomicBool::new(false));
    // Signals are blocked-and-queued from here, before any thread starts.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGTTIN, SIGTTOU])?;
    info!(
        "aster-proxy {} starting with {} ({} cluster(s))",
        local::VERSION,
        config.path.display(),
        config.clusters.len()
    );
    let mut proxies = Vec::with_capacity(config.clusters.len());
    let (kick_tx, kick_rx) = std::sync::mpsc::channel();
    for (i, cluster) in config.clusters.iter().enumerate() {
        let kick = supervisor::Kick::new(kick_tx.clone(), i, Arc::new(AtomicBool::new(false)));
        let servers: Vec<&str> = cluster.servers.iter().map(|s| s.name.as_str()).collect();
        let proxy =
            Proxy::start(cluster.clone(), Arc::clone(&shutdown), kick).inspect_err(|_| {
                shutdown.store(true, Ordering::Relaxed);
            })?;
        info!(
            "cluster {}: listening on {} ({:?}, {} thread(s), {} {}), servers: {}",
            cluster.name,
            cluster.listen_addr,
            cluster.cache_type,
            cluster.thread,
            cluster.hash.name(),
            cluster.distribution.name(),
            servers.join(", ")
        );
        proxies.push(proxy);
    }
    let watched = proxies
        .iter()
        .map(|p| supervisor::Watched {
            cfg: Arc::clone(&p.cfg),
            route: Arc::clone(&p.route),
            wakers: p.wakers.clone(),
            kicked: Arc::clone(&p.kicked),
        })
        .collect();
    let supervisor = supervisor::spawn(watched, kick_rx, Arc::clone(&shutdown))?;

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
            SIGHUP => info!("got SIGHUP: nothing to reload yet"),
            _ => {}
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    for p in &proxies {
        p.wake();
    }
    for p in proxies {
        p.join();
    }
    let _ = supervisor.join();
    info!("aster-proxy stopped");
    Ok(())
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
