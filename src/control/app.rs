//! The process: flags, configuration, logging, then the supervisor, the
//! clusters, the stats and metrics threads, and the signal loop until
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::control::cli::{self, EXIT_CONFIG, EXIT_RUNTIME, EXIT_USAGE, Flags, Parsed};
use crate::control::clusters::{self, Clusters};
use crate::control::memory;
use crate::control::supervisor;
use crate::observe::fatal;
use crate::observe::log as logging;
use crate::observe::{metrics, stats};
use crate::protocol::local;

/// The whole program; `main.rs` only calls this.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match cli::parse_flags(&args) {
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
    cli::apply_stats_flags(&mut config, &flags);
    if let Err(e) = config.check_stats_port() {
        eprintln!("aster-proxy: configuration error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if flags.test_only {
        println!(
            "aster-proxy: configuration file {} is valid",
            flags.config.display()
        );
        return ExitCode::SUCCESS;
    }
    if flags.daemonize && std::env::var_os(DAEMON_CHILD).is_none() {
        return daemonize(&args);
    }
    if let Err(e) = logging::init_logging(flags.output.as_deref(), flags.level) {
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
    if let Err(e) = memory::start_trimmer() {
        warn!(
            "cannot start the memory trimming thread (memory freed after bursts stays with the process): {e}"
        );
    }
    info!(
        "aster-proxy {} starting with {} ({} cluster(s))",
        local::VERSION,
        config.path.display(),
        config.clusters.len()
    );
    let (mailbox, supervisor) = supervisor::spawn()?;
    let stop_supervisor = mailbox.clone();
    let registry: stats::Registry = Arc::new(Mutex::new(Vec::new()));
    let mut clusters = Clusters::new(mailbox, Arc::clone(&registry));
    let started = clusters.start_all(&config);
    if let Err(e) = started {
        stop_supervisor.send(supervisor::Msg::Shutdown);
        let _ = supervisor.join();
        return Err(e.into());
    }
    if let Some(st) = &config.stats {
        stats::serve(st.listen_addr, Arc::clone(&registry))
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
                let level = logging::raise(log::max_level());
                log::set_max_level(level);
                info!("got SIGTTIN: log level now {level}");
            }
            SIGTTOU => {
                let level = logging::lower(log::max_level());
                log::set_max_level(level);
                info!("got SIGTTOU: log level now {level}");
            }
            SIGHUP => {
                match logging::LOG_FILE.get() {
                    Some(f) => match f.reopen() {
                        Ok(()) => info!("got SIGHUP: log file {} reopened", f.path().display()),
                        Err(e) => error!("got SIGHUP: {e}"),
                    },
                    None => info!("got SIGHUP: reloading {}", config.path.display()),
                }
                match Config::load(&config.path) {
                    Ok(mut fresh) => {
                        cli::apply_stats_flags(&mut fresh, flags);
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
    // A second SIGTERM or SIGINT during the drain ends the process at once,
    // as an operator who sends it twice means.
    let spawned = std::thread::Builder::new()
        .name("aster-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGTERM || sig == SIGINT {
                    warn!("got a second SIGTERM or SIGINT while draining: exiting now");
                    std::process::exit(0);
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot watch for a second SIGTERM while draining: {e}");
    }
    clusters.stop_all();
    stop_supervisor.send(supervisor::Msg::Shutdown);
    let _ = supervisor.join();
    info!("aster-proxy stopped");
    Ok(())
}

/// Set in the environment of the copy `-d` starts: it is the daemon and
/// must not start another. The arguments cannot say so: `-d` may hide in a
/// group of short flags (`-dc FILE`), so the copy gets them unchanged.
const DAEMON_CHILD: &str = "ASTER_PROXY_DAEMON_CHILD";

/// -d: starts a copy of this process, marked by `DAEMON_CHILD`, in a
/// session of its own, detached from the terminal, and returns at once.
fn daemonize(args: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aster-proxy: cannot find own executable: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(DAEMON_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // A session of its own, as nutcracker's daemonize gives: no controlling
    // terminal, so a closing terminal's SIGHUP never reaches it.
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of this
    // process; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aster-proxy: cannot daemonize: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
