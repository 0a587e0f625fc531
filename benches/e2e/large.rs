//! Large replies: `LRANGE` of a 1,000,000-element list (a ~22 MB reply) and
//! `GET` of a 10 MiB string, timed one at a time by a client here that reads
//! the whole reply into one reusable buffer.
//!
//! The same list and string are stored on every redis-server under the same
//! keys, so "direct" can use any server and each proxy finds them whatever
//! server its hash picks. The exact reply is known in advance (the values are
//! generated here), so the client only counts bytes until that many have
//! arrived, stops the clock, and then compares them with the expected reply:
//! it never parses element by element, so it is not the bottleneck.
//!
//! `large.tsv` columns (no header): round, op (LRANGE / GET), target, rep,
//! status (`ok`, `timeout`, `error`), milliseconds (to the last byte, or to
//! the failure), bytes read, CPU ms of the process under test over the op
//! (clock ticks, so in steps of 1/CLK_TCK s: only their mean over many ops
//! means anything), and this client's own CPU ms over the op (its thread's
//! CPU clock), which shows whether the client was the limit.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::encode;
use crate::load::{Target, clk_tck, cpu_ticks};

pub const LIST_KEY: &str = "bench:large:list";
pub const STR_KEY: &str = "bench:large:str";
pub const LIST_LEN: usize = 1_000_000;
pub const STR_LEN: usize = 10 * 1024 * 1024;
/// Timed ops per target, op and round: a GET of 10 MiB takes ~10 ms, so a
/// few more than 5 for a median that does not move with one slow op.
pub const REPS: u32 = 10;
/// A whole op, request to last byte: twemproxy's mbuf chain may be slow, but
/// a reply that has not arrived after this is recorded as a timeout.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Elements per RPUSH, and RPUSHes per write when loading.
const PUSH_BATCH: usize = 1000;
const PUSHES_PER_WRITE: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lrange,
    Get,
}

impl Op {
    pub const ALL: [Op; 2] = [Op::Lrange, Op::Get];

    pub fn name(self) -> &'static str {
        match self {
            Op::Lrange => "LRANGE",
            Op::Get => "GET",
        }
    }

    fn request(self) -> Vec<u8> {
        match self {
            Op::Lrange => encode(&[b"LRANGE", LIST_KEY.as_bytes(), b"0", b"-1"]),
            Op::Get => encode(&[b"GET", STR_KEY.as_bytes()]),
        }
    }
}

/// Why an op or the loading failed.
#[derive(Debug)]
pub enum LargeError {
    Io(io::Error),
    /// No complete reply within the limit; bytes read by then.
    Timeout {
        read: usize,
    },
    /// The peer closed the connection; bytes read by then.
    Closed {
        read: usize,
    },
    /// An error reply, or one that differs from the expected reply.
    Reply(String),
    /// large.tsv could not be written.
    Write {
        path: PathBuf,
        err: io::Error,
    },
}

impl fmt::Display for LargeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LargeError::Io(e) => write!(f, "{e}"),
            LargeError::Timeout { read } => write!(f, "timed out after {read} bytes"),
            LargeError::Closed { read } => write!(f, "connection closed after {read} bytes"),
            LargeError::Reply(r) => write!(f, "unexpected reply: {r}"),
            LargeError::Write { path, err } => write!(f, "write {}: {err}", path.display()),
        }
    }
}

impl From<io::Error> for LargeError {
    fn from(e: io::Error) -> LargeError {
        LargeError::Io(e)
    }
}

/// The list's element `i`: short, as redis-benchmark's keys and values are.
fn element(i: usize) -> String {
    format!("elem:{i:010}")
}

/// The data stored and the exact replies expected for it.
pub struct Payloads {
    list_len: usize,
    value: Vec<u8>,
    lrange_reply: Vec<u8>,
    get_reply: Vec<u8>,
}

impl Payloads {
    pub fn new(list_len: usize, str_len: usize) -> Payloads {
        let mut lrange_reply = format!("*{list_len}\r\n").into_bytes();
        for i in 0..list_len {
            let e = element(i);
            lrange_reply.extend_from_slice(format!("${}\r\n{e}\r\n", e.len()).as_bytes());
        }
        // Not one repeated byte, so a chunk delivered twice or out of order
        // shows in the comparison.
        let value: Vec<u8> = (0..str_len).map(|i| b'a' + (i % 23) as u8).collect();
        let mut get_reply = format!("${str_len}\r\n").into_bytes();
        get_reply.extend_from_slice(&value);
        get_reply.extend_from_slice(b"\r\n");
        Payloads {
            list_len,
            value,
            lrange_reply,
            get_reply,
        }
    }

    pub fn reply(&self, op: Op) -> &[u8] {
        match op {
            Op::Lrange => &self.lrange_reply,
            Op::Get => &self.get_reply,
        }
    }
}

fn connect(port: u16) -> Result<TcpStream, LargeError> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(OP_TIMEOUT))?;
    Ok(s)
}

/// Reads `n` single-line replies (`+OK`, `:N`), returned without "\r\n";
/// an error reply fails.
fn line_replies(s: &mut TcpStream, n: usize, limit: Duration) -> Result<Vec<String>, LargeError> {
    s.set_read_timeout(Some(limit))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while buf.windows(2).filter(|w| w == b"\r\n").count() < n {
        match s.read(&mut chunk) {
            Ok(0) => return Err(LargeError::Closed { read: buf.len() }),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(LargeError::Timeout { read: buf.len() }),
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text.split_terminator("\r\n").map(String::from).collect();
    match lines.iter().find(|l| l.starts_with('-')) {
        Some(err) => Err(LargeError::Reply(err.clone())),
        None => Ok(lines),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Stores the list and the string on the server at `port` (replacing them),
/// with pipelined RPUSH batches, and checks their lengths.
pub fn load(port: u16, p: &Payloads) -> Result<(), LargeError> {
    let limit = Duration::from_secs(120);
    let mut s = connect(port)?;
    s.write_all(&encode(&[b"DEL", LIST_KEY.as_bytes(), STR_KEY.as_bytes()]))?;
    line_replies(&mut s, 1, limit)?;
    let elements: Vec<String> = (0..p.list_len).map(element).collect();
    let pushes: Vec<&[String]> = elements.chunks(PUSH_BATCH).collect();
    for group in pushes.chunks(PUSHES_PER_WRITE) {
        let mut bytes = Vec::new();
        for batch in group {
            let mut args: Vec<&[u8]> = vec![b"RPUSH", LIST_KEY.as_bytes()];
            args.extend(batch.iter().map(|e| e.as_bytes()));
            bytes.extend_from_slice(&encode(&args));
        }
        // The replies are a few bytes each, so writing the whole group
        // before reading cannot fill both socket buffers.
        s.write_all(&bytes)?;
        line_replies(&mut s, group.len(), limit)?;
    }
    s.write_all(&encode(&[b"SET", STR_KEY.as_bytes(), &p.value]))?;
    line_replies(&mut s, 1, limit)?;
    s.write_all(&encode(&[b"LLEN", LIST_KEY.as_bytes()]))?;
    s.write_all(&encode(&[b"STRLEN", STR_KEY.as_bytes()]))?;
    let lens = line_replies(&mut s, 2, limit)?;
    let want = [format!(":{}", p.list_len), format!(":{}", p.value.len())];
    if lens != want {
        return Err(LargeError::Reply(format!(
            "LLEN, STRLEN gave {lens:?}, not {want:?}"
        )));
    }
    Ok(())
}

/// Reads until `want` bytes are in `buf` (which has room for more, so a
/// longer reply shows), or the deadline passes. Returns the bytes read. An
/// error reply (a first line starting with '-') ends it at once.
pub fn read_exact_reply(
    s: &mut TcpStream,
    buf: &mut [u8],
    want: usize,
    deadline: Instant,
) -> Result<usize, LargeError> {
    let mut filled = 0;
    // Set once, not per read (a syscall each inside the timed path): a read
    // that stalls still returns by the deadline, and a reply that trickles
    // is caught by the check below, at most one stall later.
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    while filled < want {
        if Instant::now() >= deadline {
            return Err(LargeError::Timeout { read: filled });
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Err(LargeError::Closed { read: filled }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(LargeError::Timeout { read: filled }),
            Err(e) => return Err(e.into()),
        }
        if buf[0] == b'-'
            && let Some(end) = buf[..filled].windows(2).position(|w| w == b"\r\n")
        {
            return Err(LargeError::Reply(
                String::from_utf8_lossy(&buf[..end]).into_owned(),
            ));
        }
    }
    Ok(filled)
}

/// One timed op on `s`: the wall time from the request's write to the
/// reply's last byte. The reply is compared after the clock stops.
pub fn timed_op(
    s: &mut TcpStream,
    op: Op,
    p: &Payloads,
    buf: &mut [u8],
    limit: Duration,
) -> (Duration, usize, Result<(), LargeError>) {
    let want = p.reply(op);
    let t0 = Instant::now();
    let got = s
        .write_all(&op.request())
        .map_err(LargeError::from)
        .and_then(|()| read_exact_reply(s, buf, want.len(), t0 + limit));
    let took = t0.elapsed();
    // Bytes beyond the reply that came in a later segment are still in the
    // socket: one non-blocking read, after the clock, finds them.
    let got = got.map(|n| n + leftover(s, &mut buf[n..]));
    match got {
        Ok(n) if n > want.len() => (
            took,
            n,
            Err(LargeError::Reply(format!(
                "{n} bytes, {} more than expected",
                n - want.len()
            ))),
        ),
        Ok(n) if buf[..n] != *want => {
            let at = buf[..n]
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let e = format!("differs from the expected reply at byte {at} of {n}");
            (took, n, Err(LargeError::Reply(e)))
        }
        Ok(n) => (took, n, Ok(())),
        Err(e @ (LargeError::Timeout { read } | LargeError::Closed { read })) => {
            (took, read, Err(e))
        }
        Err(e) => (took, 0, Err(e)),
    }
}

/// Bytes already waiting on `s` (0 if none, or on any error).
fn leftover(s: &mut TcpStream, room: &mut [u8]) -> usize {
    if room.is_empty() || s.set_nonblocking(true).is_err() {
        return 0;
    }
    let n = s.read(room).unwrap_or(0);
    let _ = s.set_nonblocking(false);
    n
}

/// Appends large.tsv rows and holds the reusable reply buffer.
pub struct Large {
    path: PathBuf,
    file: File,
    payloads: Payloads,
    buf: Vec<u8>,
    hz: u64,
}

impl Large {
    pub fn create(path: &Path, payloads: Payloads) -> Result<Large, LargeError> {
        let file = File::create(path).map_err(|err| LargeError::Write {
            path: path.to_path_buf(),
            err,
        })?;
        let room = payloads.lrange_reply.len().max(payloads.get_reply.len()) + 64 * 1024;
        Ok(Large {
            path: path.to_path_buf(),
            file,
            payloads,
            // Zeroed once here, so no op pays for its pages.
            buf: vec![0; room],
            hz: clk_tck(),
        })
    }

    pub fn payloads(&self) -> &Payloads {
        &self.payloads
    }

    /// REPS ops of `op` against `target` on one connection (a new one after
    /// a failure); after a timeout the target's remaining reps are skipped.
    pub fn measure(
        &mut self,
        round: u32,
        op: Op,
        target: &Target,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), LargeError> {
        let mut conn: Option<TcpStream> = None;
        for rep in 1..=REPS {
            if stop() {
                return Ok(());
            }
            let mut s = match conn.take() {
                Some(s) => s,
                None => match connect(target.port) {
                    Ok(s) => s,
                    Err(e) => {
                        let row = row_tsv(round, op, target.name, rep, "error", 0.0, 0, 0.0, 0.0);
                        self.record(&row)?;
                        eprintln!("   large {} {}: connect: {e}", op.name(), target.name);
                        continue;
                    }
                },
            };
            let c0 = cpu_ticks(&target.pids);
            let me0 = thread_cpu();
            let (took, read, outcome) =
                timed_op(&mut s, op, &self.payloads, &mut self.buf, OP_TIMEOUT);
            let client_ms = thread_cpu().saturating_sub(me0).as_secs_f64() * 1e3;
            let cpu_ms = cpu_ticks(&target.pids).saturating_sub(c0) as f64 * 1e3 / self.hz as f64;
            let ms = took.as_secs_f64() * 1e3;
            let status = match &outcome {
                Ok(()) => "ok",
                Err(LargeError::Timeout { .. }) => "timeout",
                Err(_) => "error",
            };
            let row = row_tsv(
                round,
                op,
                target.name,
                rep,
                status,
                ms,
                read,
                cpu_ms,
                client_ms,
            );
            self.record(&row)?;
            println!(
                "   large r{round} {:<6} {:<11} rep {rep:>2}  {ms:>8.1} ms  {read:>9} B  cpu {cpu_ms:>4.0} ms  client cpu {client_ms:>5.1} ms  {status}",
                op.name(),
                target.name
            );
            match outcome {
                Ok(()) => conn = Some(s),
                Err(e @ LargeError::Timeout { .. }) => {
                    eprintln!(
                        "   large {} {}: {e}; its other reps skipped",
                        op.name(),
                        target.name
                    );
                    return Ok(());
                }
                Err(e) => eprintln!("   large {} {}: {e}", op.name(), target.name),
            }
        }
        Ok(())
    }

    fn record(&mut self, row: &str) -> Result<(), LargeError> {
        self.file
            .write_all(row.as_bytes())
            .map_err(|err| LargeError::Write {
                path: self.path.clone(),
                err,
            })
    }
}

#[allow(clippy::too_many_arguments)]
pub fn row_tsv(
    round: u32,
    op: Op,
    target: &str,
    rep: u32,
    status: &str,
    ms: f64,
    read: usize,
    cpu_ms: f64,
    client_ms: f64,
) -> String {
    format!(
        "{round}\t{}\t{target}\t{rep}\t{status}\t{ms:.3}\t{read}\t{cpu_ms:.0}\t{client_ms:.3}\n",
        op.name()
    )
}

/// User + system CPU of the calling thread (the one that reads the replies),
/// from CLOCK_THREAD_CPUTIME_ID: nanoseconds, unlike rusage's lagging µs.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The reader and the reply check against a listener in this process: a
/// reply in small pieces, an error reply, a short reply then close, a reply
/// too long, a wrong byte, and a timeout. Real sockets, a few ms.
pub fn self_check() {
    use std::net::TcpListener;
    use std::thread;

    let p = Payloads::new(1000, 5000);
    assert_eq!(&p.lrange_reply[..21], b"*1000\r\n$15\r\nelem:0000");
    assert_eq!(p.lrange_reply.len(), 7 + 1000 * 22);
    assert_eq!(p.get_reply.len(), 7 + 5000 + 2);
    assert_eq!(
        row_tsv(2, Op::Get, "aster1", 3, "ok", 12.3456, 5008, 10.0, 1.5),
        "2\tGET\taster1\t3\tok\t12.346\t5008\t10\t1.500\n"
    );
    let t = thread_cpu();
    let wall = Instant::now();
    let mut x = 0u64;
    while thread_cpu() <= t && wall.elapsed() < Duration::from_millis(200) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
    }
    assert!(thread_cpu() > t, "no thread CPU counted ({x})");

    // Each case: what the fake server answers to one request.
    let lrange = p.lrange_reply.clone();
    let mut wrong = p.get_reply.clone();
    wrong[4000] ^= 1;
    let mut long = p.get_reply.clone();
    long.extend_from_slice(b"+extra\r\n");
    let cases: Vec<(Op, Vec<u8>, bool)> = vec![
        (Op::Lrange, lrange.clone(), false),
        (Op::Get, b"-ERR wrong kind\r\n".to_vec(), false),
        (Op::Lrange, lrange[..500].to_vec(), true),
        (Op::Get, long, false),
        (Op::Get, wrong, false),
        (Op::Lrange, lrange[..100].to_vec(), false),
    ];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port();
    let answers: Vec<(Vec<u8>, bool)> = cases.iter().map(|(_, a, c)| (a.clone(), *c)).collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let mut held = Vec::new();
        for (answer, close) in answers {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut req = [0u8; 256];
            let _ = s.read(&mut req);
            // In pieces, so the reader must loop.
            for piece in answer.chunks(777) {
                if s.write_all(piece).is_err() {
                    break;
                }
            }
            if !close {
                // Keep it open: the reader must stop on its own.
                held.push(s);
            }
        }
        // Held open until the reader is done with every case.
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
    });
    let mut large_buf = vec![0u8; p.lrange_reply.len() + 1024];
    let mut outcomes = Vec::new();
    for (op, _, _) in &cases {
        let mut s = connect(port).unwrap_or_else(|e| panic!("connect: {e}"));
        let (_, read, r) = timed_op(&mut s, *op, &p, &mut large_buf, Duration::from_millis(100));
        outcomes.push((read, r));
    }
    let _ = done_tx.send(());
    let _ = server.join();
    let [ok, err, closed, long, wrong, slow] = &outcomes[..] else {
        panic!("{outcomes:?}");
    };
    assert!(
        matches!(ok, (n, Ok(())) if *n == p.lrange_reply.len()),
        "{ok:?}"
    );
    assert!(
        matches!(err, (_, Err(LargeError::Reply(e))) if e == "-ERR wrong kind"),
        "{err:?}"
    );
    assert!(
        matches!(closed, (500, Err(LargeError::Closed { read: 500 }))),
        "{closed:?}"
    );
    assert!(
        matches!(long, (_, Err(LargeError::Reply(e))) if e.contains("more than expected")),
        "{long:?}"
    );
    assert!(
        matches!(wrong, (_, Err(LargeError::Reply(e))) if e.contains("at byte 4000 of")),
        "{wrong:?}"
    );
    assert!(
        matches!(slow, (100, Err(LargeError::Timeout { read: 100 }))),
        "{slow:?}"
    );
}
