//! Many idle clients against a fresh proxy: its RSS before they connect,
//! with all of them held, and after each has sent one PING and read the
//! PONG (connections still open).
//!
//! `idle.tsv` columns: target, RSS kB before, connected, after one PING
//! each, connections the proxy held (from its fd count).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::harness::{fd_count, poll_until};
use crate::load::rss_kb;

/// One proxy's figures.
pub struct Idle {
    pub base_kb: u64,
    pub connected_kb: u64,
    pub after_ping_kb: u64,
    pub held: usize,
}

impl Idle {
    pub fn tsv(&self, target: &str) -> String {
        format!(
            "{target}\t{}\t{}\t{}\t{}\n",
            self.base_kb, self.connected_kb, self.after_ping_kb, self.held
        )
    }
}

/// Opens `n` connections to `port`, waits until the proxy (`pid`) holds them
/// all (30 s at most), then PINGs on every one. `stop` is polled so an
/// interrupt does not wait for 10,000 connects.
pub fn measure(port: u16, n: usize, pid: u32, stop: &dyn Fn() -> bool) -> Result<Idle, String> {
    // Let a fresh proxy settle (its workers allocate on first loop turns).
    thread::sleep(Duration::from_millis(500));
    let base_kb = rss_kb(&[pid]);
    let base_fds = fd_count(pid);
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        if i % 1000 == 0 && stop() {
            return Err("interrupted".into());
        }
        let s = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connect #{i} to {port}: {e}"))?;
        socks.push(s);
    }
    // Accepting lags behind the kernel's handshakes: wait for the fds.
    let _ = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (fd_count(pid) >= base_fds + n).then_some(())
    });
    thread::sleep(Duration::from_secs(1));
    let held = fd_count(pid).saturating_sub(base_fds);
    let connected_kb = rss_kb(&[pid]);
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(b"*1\r\n$4\r\nPING\r\n")
            .map_err(|e| format!("PING on connection #{i}: {e}"))?;
    }
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| format!("connection #{i}: {e}"))?;
        let mut got = Vec::new();
        let mut chunk = [0u8; 64];
        while !got.ends_with(b"\r\n") {
            let k = s
                .read(&mut chunk)
                .map_err(|e| format!("reading PONG on connection #{i}: {e}"))?;
            if k == 0 {
                return Err(format!(
                    "connection #{i} closed by the proxy after {n} connects"
                ));
            }
            got.extend_from_slice(&chunk[..k]);
        }
        if got != b"+PONG\r\n" {
            return Err(format!(
                "unexpected reply on connection #{i}: {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
    }
    thread::sleep(Duration::from_secs(1));
    let after_ping_kb = rss_kb(&[pid]);
    Ok(Idle {
        base_kb,
        connected_kb,
        after_ping_kb,
        held,
    })
}
