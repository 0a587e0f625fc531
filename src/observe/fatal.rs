//! Fatal signals (SEGV, BUS, ILL, FPE, ABRT) leave a line in the log naming
//! the signal, as twemproxy's do, and the process then dies of the signal
//! as it would have (same exit status, same core dump).
//!
//! The handler may run with the heap or a lock in any state, so it only
//! formats into a stack buffer and write(2)s to a descriptor opened
//! beforehand: no allocation, no lock, no `log` call.

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
