//! The small TCP ports operators poll (the stats port, `/metrics`): every
//! connection is served on a thread of its own, so a connection that sends
//! nothing, or never reads its answer, delays no other; and within bounds, so
//! such connections cannot pile up: at most `MAX_CONNECTIONS` at once (more
//! are closed unanswered), each given `DEADLINE` in all.
//!
//! One connection at a time, as it used to be, let six idle connections hold
//! a Prometheus scrape for 10 s. An accept thread that sleeps in accept()
//! keeps idle CPU at zero, which a poll loop would too, at more code.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::{debug, warn};

/// Connections served at once per port; Prometheus and stats collectors use
/// one or two.
const MAX_CONNECTIONS: usize = 32;

/// How long one connection may take, reading its request and writing its
/// answer together (Prometheus's default scrape timeout is 10 s).
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

/// A connection's thread renders at most a document; its stack need not be
/// the default 2 MiB.
const STACK: usize = 256 * 1024;

/// One accepted connection and the moment it must be done by.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    deadline: Instant,
}

impl Conn {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }

    /// Reads until `done` holds for what was read, the peer stops sending,
    /// or `max` bytes: no more is ever buffered for one request.
    pub(crate) fn read_request(
        &mut self,
        max: usize,
        done: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        while !done(&buf) && buf.len() < max {
            self.stream.set_read_timeout(Some(self.remaining()?))?;
            let want = chunk.len().min(max - buf.len());
            let n = self.stream.read(&mut chunk[..want])?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(buf)
    }

    /// Writes all of `bytes` before the deadline: a reader that trickles
    /// cannot hold the thread past it.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.stream.set_write_timeout(Some(self.remaining()?))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Counts a connection's thread until it ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds `addr` and serves each connection with `answer` on a thread of its
/// own; `name` names the threads and the log lines.
pub(crate) fn serve<F>(addr: SocketAddr, name: &'static str, answer: F) -> io::Result<()>
where
    F: Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr)?;
    let answer = Arc::new(answer);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("aster-{name}"))
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => start(stream, name, &answer, &active),
                    Err(e) => {
                        warn!("{name}: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

fn start<F>(stream: TcpStream, name: &'static str, answer: &Arc<F>, active: &Arc<AtomicUsize>)
where
    F: Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static,
{
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(e) => {
            debug!("{name}: peer gone before it was served: {e}");
            return;
        }
    };
    if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::Relaxed);
        warn!("{name}: {MAX_CONNECTIONS} connections already being served; closing {peer}'s");
        return;
    }
    let slot = Slot(Arc::clone(active));
    let answer = Arc::clone(answer);
    let mut conn = Conn {
        stream,
        peer,
        deadline: Instant::now() + DEADLINE,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("aster-{name}-conn"))
        .stack_size(STACK)
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = answer(&mut conn) {
                debug!("{name}: {}: {e}", conn.peer);
            }
        });
    if let Err(e) = spawned {
        // The closure, and with it the slot and the stream, is dropped.
        warn!("{name}: cannot start a thread for {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addr() -> SocketAddr {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    }

    #[test]
    fn a_silent_connection_does_not_hold_the_next() {
        let addr = free_addr();
        serve(addr, "test", |c: &mut Conn| {
            let req = c.read_request(64, |b| b.contains(&b'\n'))?;
            c.write_all(&req)
        })
        .expect("serve");
        let _silent: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s.write_all(b"hello\n").expect("write");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        assert_eq!(got, "hello\n");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_request_is_cut_at_the_limit() {
        let addr = free_addr();
        serve(addr, "test", |c: &mut Conn| {
            let req = c.read_request(10, |_| false)?;
            c.write_all(format!("{}", req.len()).as_bytes())
        })
        .expect("serve");
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        // Exactly the limit, and the connection stays open: answered at
        // once, not when the deadline ends a wait for more.
        s.write_all(&[b'x'; 10]).expect("write");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        assert_eq!(got, "10");
    }
}
