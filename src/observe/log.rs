//! Logging: simplelog writing to stderr or a log file, the level in `log`'s
//! global filter (SIGTTIN/SIGTTOU move it), and the file behind a mutex so
//! SIGHUP can reopen it after logrotate.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

use crate::observe::fatal;

/// The log file, shared with the signal loop so SIGHUP can reopen it after
/// logrotate moved it away.
#[derive(Clone)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

pub(crate) static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

impl LogFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

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

    pub(crate) fn reopen(&self) -> Result<(), String> {
        let fresh = open_append(&self.path)?;
        fatal::log_to(&fresh);
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

pub(crate) fn open_append(path: &Path) -> Result<File, String> {
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

pub(crate) fn init_logging(output: Option<&Path>, level: LevelFilter) -> Result<(), String> {
    let cfg = ConfigBuilder::new()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let writer: Box<dyn std::io::Write + Send> = match output {
        Some(path) => Box::new(LogFile::open(path)?),
        None => Box::new(std::io::stderr()),
    };
    // The logger itself passes everything; the level lives in log's global
    // filter, which SIGTTIN/SIGTTOU move at run time.
    WriteLogger::init(LevelFilter::Trace, cfg, writer).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}

pub(crate) fn raise(l: LevelFilter) -> LevelFilter {
    match l {
        LevelFilter::Off => LevelFilter::Error,
        LevelFilter::Error => LevelFilter::Warn,
        LevelFilter::Warn => LevelFilter::Info,
        LevelFilter::Info => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

pub(crate) fn lower(l: LevelFilter) -> LevelFilter {
    match l {
        LevelFilter::Trace => LevelFilter::Debug,
        LevelFilter::Debug => LevelFilter::Info,
        LevelFilter::Info => LevelFilter::Warn,
        LevelFilter::Warn => LevelFilter::Error,
        _ => LevelFilter::Off,
    }
}
