//! Socket reads and writes reduced to a few outcomes, so connection code never
//! matches on `io::Error` kinds itself.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use bytes::{Buf, Bytes, BytesMut};

/// The most entries handed to one `writev`: Linux's IOV_MAX.
pub const MAX_IOV: usize = 1024;

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
    fn recv_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        recv_spare(self.as_raw_fd(), buf, max)
    }
}

impl RecvInto for mio::net::UnixStream {
    fn recv_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        recv_spare(self.as_raw_fd(), buf, max)
    }
}

/// recv(2) straight into the buffer's spare capacity: a proxy reads every
/// byte it forwards, and zeroing each read's room first cost as many stores
/// as the data itself.
fn recv_spare(fd: std::os::fd::RawFd, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: `spare` is `buf`'s unused capacity, at least `want` bytes
    // (reserved above); recv(2) writes at most `want` bytes there and
    // touches nothing else.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: recv returned n <= want: the first n spare bytes are now
    // initialized, and they are within the capacity.
    unsafe { buf.set_len(buf.len() + n.min(want)) };
    Ok(n)
}

/// A read buffer that held more than this at once is let go when it
/// empties, not kept for the next reads: the room left in it would keep the
/// whole large allocation alive for as long as the connection lives.
pub const KEEP_MAX: usize = 64 * 1024;

/// Bytes read from one socket per wake-up before others get a turn.
pub const READ_BUDGET: usize = 256 * 1024;

/// The least room worth a read into a buffer's tail before a new buffer is
/// allocated: small requests are carved from one allocation a few KiB at a
/// time instead of one allocation each.
const MIN_ROOM: usize = 512;

/// Reads into `buf` until the socket would block or `budget` bytes were read.
/// Read sizes adapt to the traffic: a read that fills its chunk doubles the
/// next one, so pipelined streams take few syscalls and idle ones zero little.
/// A read uses the room left at the buffer's end when there is at least
/// `MIN_ROOM` of it, and grows the buffer only otherwise.
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
        let room = buf.capacity() - buf.len();
        let want = if room >= MIN_ROOM {
            room.min(chunk)
        } else {
            chunk
        };
        match sock.recv_into(buf, want) {
            Ok(0) => return ReadStatus::Eof,
            Ok(n) => {
                total += n;
                if total >= budget {
                    return ReadStatus::Budget;
                }
                if n < want && stop_short {
                    return ReadStatus::WouldBlock;
                }
                if n == chunk && chunk < 256 * 1024 {
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

/// A connection's read buffer: `read_into` plus the rule that keeps memory
/// bounded, in one place for clients and backends. A buffer that held more
/// than `KEEP_MAX` at once is let go when it empties rather than kept for
/// the next reads: the room left in it would keep the whole large
/// allocation alive for as long as the connection lives.
#[derive(Debug, Default)]
pub struct ReadBuf {
    buf: BytesMut,
    /// `buf` held more than `KEEP_MAX` since it was last let go.
    large: bool,
}

impl ReadBuf {
    /// Reads from `sock` as `read_into` does.
    pub fn read(
        &mut self,
        sock: &mut impl RecvInto,
        budget: usize,
        stop_short: bool,
    ) -> ReadStatus {
        let status = read_into(sock, &mut self.buf, budget, stop_short);
        self.large |= self.buf.len() > KEEP_MAX;
        status
    }

    /// What was read and not yet cut off.
    pub fn data(&self) -> &[u8] {
        &self.buf
    }

    /// Cuts off the first `n` bytes, a complete frame, without copying.
    pub fn split_frame(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n).freeze()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Room for reads (0 once let go).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Takes `room` as the buffer when it holds none.
    pub fn adopt(&mut self, room: &mut BytesMut) {
        if self.buf.capacity() == 0 {
            self.buf = std::mem::take(room);
        }
    }

    /// When empty, the buffer leaves: returned for reuse, or `None` if it
    /// grew large (it is dropped). A buffer with data stays.
    pub fn release(&mut self) -> Option<BytesMut> {
        if !self.buf.is_empty() {
            return None;
        }
        let buf = std::mem::take(&mut self.buf);
        (!std::mem::take(&mut self.large)).then_some(buf)
    }

    /// When empty and grown large, lets the buffer go; a small one stays.
    pub fn shed_large(&mut self) {
        if self.buf.is_empty() && std::mem::take(&mut self.large) {
            self.buf = BytesMut::new();
        }
    }
}

/// Writes the queue with vectored writes until it is empty or the socket would
/// block, and returns how many bytes went out. Partly written buffers are
/// advanced in place, so nothing is copied.
pub fn write_queue(sock: &mut impl AsRawFd, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
    let mut total = 0;
    let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_IOV];
    while !queue.is_empty() {
        let n = gather(queue, &mut iov);
        if n == 0 {
            // Only empty buffers were left.
            queue.clear();
            break;
        }
        // SAFETY: `gather` initialized the first `n` entries; each points
        // into buffers `queue` holds alive and unchanged for the call.
        let written = unsafe { libc::writev(sock.as_raw_fd(), iov.as_ptr().cast(), n as i32) };
        match usize::try_from(written) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                total += written;
                consume(queue, written);
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(total),
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(total)
}

/// Fills `iov` from the front of `queue` and returns how many entries it
/// used. Buffers that lie end to end in memory (requests split off one read
/// buffer, replies off one backend read) share an entry: fewer entries for
/// the kernel to walk, and more of the queue per call. An entry may span two
/// adjacent allocations; that is sound here because the pointers only reach
/// the kernel, never a Rust slice, and the queue keeps both alive.
fn gather(queue: &VecDeque<Bytes>, iov: &mut [MaybeUninit<libc::iovec>]) -> usize {
    let mut n = 0;
    let mut end: *const u8 = std::ptr::null();
    for b in queue.iter().filter(|b| !b.is_empty()) {
        if n > 0 && b.as_ptr() == end {
            // SAFETY: entry n - 1 was written on an earlier iteration.
            let last = unsafe { iov[n - 1].assume_init_mut() };
            last.iov_len += b.len();
        } else {
            if n == iov.len() {
                break;
            }
            iov[n].write(libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            });
            n += 1;
        }
        end = b.as_ptr().wrapping_add(b.len());
    }
    n
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

    /// Bytes that lie end to end in one buffer, as requests split off a
    /// client's read buffer do.
    fn pieces(data: &[u8], sizes: &[usize]) -> VecDeque<Bytes> {
        let mut all = Bytes::copy_from_slice(data);
        sizes.iter().map(|&n| all.split_to(n)).collect()
    }

    #[test]
    fn adjacent_buffers_share_an_entry() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut q = pieces(&data, &[10, 0, 20, 30]);
        // A buffer from elsewhere breaks the run; the run resumes after it.
        q.insert(2, Bytes::from_static(b"elsewhere"));
        let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; 4];
        let n = gather(&q, &mut iov);
        let lens: Vec<usize> = iov[..n]
            .iter()
            .map(|e| unsafe { e.assume_init_ref() }.iov_len)
            .collect();
        assert_eq!(lens, [10, 9, 50]);
        // With one entry only the first run fits.
        let mut one = [const { MaybeUninit::<libc::iovec>::uninit() }; 1];
        assert_eq!(gather(&q, &mut one), 1);
        assert_eq!(unsafe { one[0].assume_init_ref() }.iov_len, 10);
    }

    #[test]
    fn partial_writes_resume_in_place() {
        use std::io::Read as _;
        use std::os::unix::net::UnixStream;
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        // Far more than a socket buffer, in runs of adjacent pieces and
        // lone ones, so writes stop part way through a piece.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut q = pieces(&data[..2_000_000], &[7; 2_000_000 / 7]);
        let rest = 2_000_000 - 2_000_000 / 7 * 7;
        q.push_back(Bytes::copy_from_slice(&data[2_000_000 - rest..2_000_000]));
        for c in data[2_000_000..].chunks(999) {
            q.push_back(Bytes::copy_from_slice(c));
        }
        // Nobody reads yet: the first call stops when the socket is full,
        // part way through.
        let mut sent = write_queue(&mut a, &mut q).expect("write");
        assert!(sent > 0 && !q.is_empty());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).expect("read");
            got
        });
        while !q.is_empty() {
            let n = write_queue(&mut a, &mut q).expect("write");
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            sent += n;
        }
        drop(a);
        assert_eq!(sent, data.len());
        assert_eq!(reader.join().expect("reader"), data);
    }

    /// Random queues (runs split off shared buffers, interleaved with lone
    /// buffers, empty pieces among them) written through a socket arrive
    /// byte for byte in queue order, partial writes included.
    #[test]
    fn any_queue_arrives_in_order() {
        use std::io::Read as _;
        use std::os::unix::net::UnixStream;
        let mut rng = crate::rng::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: usize| rng.below(n);
        for case in 0..100 {
            let mut q = VecDeque::new();
            let mut expect = Vec::new();
            let mut sources: Vec<Bytes> = (0..1 + next(3))
                .map(|s| {
                    let len = next(if case % 10 == 0 { 400_000 } else { 5_000 });
                    Bytes::from(
                        (0..len)
                            .map(|i| (i * 7 + s * 31 + case) as u8)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            while sources.iter().any(|b| !b.is_empty()) {
                let s = next(sources.len());
                let take = next(3_000).min(sources[s].len());
                let piece = if next(8) == 0 {
                    // A lone copy: never adjacent to its neighbours.
                    Bytes::copy_from_slice(&sources[s].split_to(take))
                } else {
                    sources[s].split_to(take)
                };
                expect.extend_from_slice(&piece);
                q.push_back(piece);
            }
            let (mut a, mut b) = UnixStream::pair().expect("socketpair");
            a.set_nonblocking(true).expect("nonblocking");
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).expect("read");
                got
            });
            while !q.is_empty() {
                if write_queue(&mut a, &mut q).expect("write") == 0 {
                    std::thread::yield_now();
                }
            }
            drop(a);
            assert!(reader.join().expect("reader") == expect, "case {case}");
        }
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
