//! Socket reads and writes reduced to a few outcomes, so connection code never
//! matches on `io::Error` kinds itself.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use bytes::{Buf, Bytes, BytesMut};

/// The most buffers handed to one `writev`; Linux accepts 1024.
pub const MAX_IOV: usize = 128;

#[derive(Debug)]
pub enum ReadStatus {
    /// The socket is drained for now; wait for the next readiness event.
    WouldBlock,
    /// The per-wake-up budget ran out with data possibly left: come back soon.
    Budget,
    /// The peer closed its side.
    Eof,
    Error(io::Error),
}

/// Reads into `buf` until the socket would block or `budget` bytes were read.
/// Read sizes adapt to the traffic: a read that fills its chunk doubles the
/// next one, so pipelined streams take few syscalls and idle ones zero little.
///
/// With `stop_short`, a read that returns less than asked ends the call: the
/// socket's buffer is empty, and data arriving later raises a new
/// edge-triggered event (Linux's epoll signals every arrival), so the read
/// that would only say WouldBlock is skipped, one syscall less per wake-up.
/// Without it (the event said the peer closed), reading goes on to the end so
/// the close is seen now: no later event would report it.
pub fn read_into(
    sock: &mut impl Read,
    buf: &mut BytesMut,
    budget: usize,
    stop_short: bool,
) -> ReadStatus {
    let mut chunk = 4096;
    let mut total = 0;
    loop {
        let len = buf.len();
        buf.resize(len + chunk, 0);
        match sock.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return ReadStatus::Eof;
            }
            Ok(n) => {
                buf.truncate(len + n);
                total += n;
                if total >= budget {
                    return ReadStatus::Budget;
                }
                if n < chunk && stop_short {
                    return ReadStatus::WouldBlock;
                }
                if chunk < 256 * 1024 {
                    chunk *= 2;
                }
            }
            Err(e) => {
                buf.truncate(len);
                match e.kind() {
                    io::ErrorKind::WouldBlock => return ReadStatus::WouldBlock,
                    io::ErrorKind::Interrupted => {}
                    _ => return ReadStatus::Error(e),
                }
            }
        }
    }
}

/// Writes the queue with vectored writes until it is empty or the socket would
/// block, and returns how many bytes went out. Partly written buffers are
/// advanced in place, so nothing is copied.
pub fn write_queue(sock: &mut impl Write, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
    let mut total = 0;
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, b) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        match sock.write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                total += written;
                consume(queue, written);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn consume(queue: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= written {
            written -= front.len();
            queue.pop_front();
        } else {
            front.advance(written);
            return;
        }
    }
}

/// The system's text for an error, without Rust's " (os error N)" suffix:
/// twemproxy sends `-ERR <strerror>` and alerting matches on that text.
pub fn error_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.cap == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.cap);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_in_place() {
        let mut q: VecDeque<Bytes> = ["abc", "de", "fghij"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        let mut w = Trickle {
            out: vec![],
            cap: 4,
        };
        assert_eq!(write_queue(&mut w, &mut q).unwrap(), 10);
        assert!(q.is_empty());
        assert_eq!(w.out, b"abcdefghij");
        let mut q: VecDeque<Bytes> = [Bytes::from("xyz")].into();
        let mut w = Trickle {
            out: vec![],
            cap: 0,
        };
        assert_eq!(write_queue(&mut w, &mut q).unwrap(), 0);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn error_text_drops_os_suffix() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(error_text(&e), "Connection refused");
    }

    #[test]
    fn reads_until_would_block_or_eof() {
        // 4096 + 8192 bytes fill their chunks exactly; the next read sees the end.
        let mut src: &[u8] = &[7u8; 12_288];
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_into(&mut src, &mut buf, usize::MAX, true),
            ReadStatus::Eof
        ));
        assert_eq!(buf.len(), 12_288);
        // Without stop_short the same input reads on to the end.
        let mut src: &[u8] = &[7u8; 10_000];
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_into(&mut src, &mut buf, usize::MAX, false),
            ReadStatus::Eof
        ));
        // A short read stops without another read: the socket is drained.
        let mut src: &[u8] = &[7u8; 10_000];
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_into(&mut src, &mut buf, usize::MAX, true),
            ReadStatus::WouldBlock
        ));
        assert_eq!(buf.len(), 10_000);
        let mut src: &[u8] = &[7u8; 10_000];
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_into(&mut src, &mut buf, 5000, true),
            ReadStatus::Budget
        ));
    }
}
