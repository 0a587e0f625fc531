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

/// A source that reads by appending to a `BytesMut`.
pub trait RecvInto: Read {
    /// Appends at most `max` bytes read from `self` to `buf`; how many.
    /// This default zeroes the room first, as `Read` needs initialized
    /// memory; sockets override it to read into the spare capacity as is.
    fn recv_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        let len = buf.len();
        buf.resize(len + max, 0);
        let got = self.read(&mut buf[len..]);
        buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }
}

impl RecvInto for &[u8] {}

impl RecvInto for mio::net::TcpStream {
    /// recv(2) straight into the buffer's spare capacity: a proxy reads
    /// every byte it forwards, and zeroing each read's room first cost
    /// as many stores as the data itself.
    fn recv_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        let want = spare.len().min(max);
        // SAFETY: `spare` is `buf`'s unused capacity, at least `want` bytes
        // (reserved above); recv(2) writes at most `want` bytes there and
        // touches nothing else.
        let n = unsafe { libc::recv(self.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: recv returned n <= want: the first n spare bytes are now
        // initialized, and they are within the capacity.
        unsafe { buf.set_len(buf.len() + n.min(want)) };
        Ok(n)
    }
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
    sock: &mut impl RecvInto,
    buf: &mut BytesMut,
    budget: usize,
    stop_short: bool,
) -> ReadStatus {
    let mut chunk = 4096;
    let mut total = 0;
    loop {
        match sock.recv_into(buf, chunk) {
            Ok(0) => return ReadStatus::Eof,
            Ok(n) => {
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
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return ReadStatus::WouldBlock,
                io::ErrorKind::Interrupted => {}
                _ => return ReadStatus::Error(e),
            },
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

    #[test]
    fn sockets_read_into_spare_capacity_byte_for_byte() {
        use std::io::Write as _;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut peer =
            std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (sock, _) = l.accept().expect("accept");
        sock.set_nonblocking(true).expect("nonblocking");
        let mut sock = mio::net::TcpStream::from_std(sock);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || {
            peer.write_all(&data).expect("write");
            data
        });
        let mut buf = BytesMut::from(&b"kept"[..]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while buf.len() < 4 + 300_000 && std::time::Instant::now() < deadline {
            match read_into(&mut sock, &mut buf, 64 * 1024, false) {
                ReadStatus::Error(e) => panic!("{e}"),
                ReadStatus::Eof => break,
                _ => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        let data = writer.join().expect("writer");
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &data[..]);
    }
}
