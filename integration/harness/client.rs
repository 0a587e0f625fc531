//! The RESP side of every test: `Reply`, encoding commands, parsing replies,
//! and `Client`, a small blocking client over a plain `TcpStream`.
//!
//! Lifecycle: a `Client` is one TCP connection, opened by `connect` (or a
//! component's `client()`) and closed when dropped; `try_cmd` opens and closes
//! its own connection. Reads time out after `CLIENT_TIMEOUT`, so a test fails
//! instead of hanging.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Default read timeout of test clients: a test fails instead of hanging.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect and read timeout of `try_cmd`.
const ONE_SHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// A RESP reply (RESP3 maps and sets are flattened into `Array`).
#[derive(Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    Double(String),
    Bool(bool),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    pub fn status(s: &str) -> Reply {
        Reply::Status(s.into())
    }

    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The error text (without the leading '-'), or None.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Status, error or bulk text (lossy for non-UTF-8 bulks: "" then).
    pub fn text(&self) -> &str {
        match self {
            Reply::Status(s) | Reply::Error(s) | Reply::Double(s) => s,
            Reply::Bulk(b) => std::str::from_utf8(b).unwrap_or(""),
            _ => "",
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(b) if b.len() > 200 => write!(f, "${}<{} bytes>", b.len(), b.len()),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "nil"),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::Double(s) => write!(f, ",{s}"),
            Reply::Bool(b) => write!(f, "#{b}"),
        }
    }
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a command given as strings.
pub fn encode_str(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode(&v)
}

/// Parses one reply from the front of `buf`: Ok(None) if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if line_end == 0 {
        return Err("empty reply line".into());
    }
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let after = line_end + 2;
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("bad integer {s:?} in reply"))
    };
    let reply = match buf[0] {
        b'+' => Reply::Status(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Int(int(&line)?),
        b',' => Reply::Double(line),
        b'#' => Reply::Bool(line == "t"),
        b'_' => Reply::Nil,
        b'(' => Reply::Status(line),
        b'$' | b'=' | b'!' => {
            let n = int(&line)?;
            if n < 0 {
                Reply::Nil
            } else {
                let n = n as usize;
                if buf.len() < after + n + 2 {
                    return Ok(None);
                }
                let data = buf[after..after + n].to_vec();
                let consumed = after + n + 2;
                let r = if buf[0] == b'!' {
                    Reply::Error(String::from_utf8_lossy(&data).into_owned())
                } else {
                    Reply::Bulk(data)
                };
                return Ok(Some((r, consumed)));
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int(&line)?;
            if n < 0 {
                Reply::Nil
            } else {
                let count = if matches!(buf[0], b'%' | b'|') {
                    n * 2
                } else {
                    n
                } as usize;
                let mut items = Vec::with_capacity(count.min(1024));
                let mut pos = after;
                for _ in 0..count {
                    match parse_reply(&buf[pos..])? {
                        Some((r, used)) => {
                            items.push(r);
                            pos += used;
                        }
                        None => return Ok(None),
                    }
                }
                if buf[0] == b'|' {
                    // An attribute precedes the real reply: skip it.
                    return match parse_reply(&buf[pos..])? {
                        Some((r, used)) => Ok(Some((r, pos + used))),
                        None => Ok(None),
                    };
                }
                return Ok(Some((Reply::Array(items), pos)));
            }
        }
        other => return Err(format!("bad reply type byte {:?}", other as char)),
    };
    Ok(Some((reply, after)))
}

/// Parses every complete reply in `buf`.
pub fn parse_all(buf: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some((r, used)) = parse_reply(&buf[pos..])? {
        out.push(r);
        pos += used;
    }
    Ok(out)
}

/// A blocking RESP client over a plain `TcpStream`; reads time out after
/// `CLIENT_TIMEOUT` (a test fails instead of hanging).
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    port: u16,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("write timeout");
        Client {
            stream,
            buf: Vec::new(),
            port,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("read timeout");
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(&encode_str(args));
        self.read_reply()
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// Sends one command with binary arguments and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.send(&encode(args));
        self.read_reply()
            .unwrap_or_else(|e| panic!("command on port {}: {e}", self.port))
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to port {}: {e}", self.port));
    }

    /// Writes one encoded command without reading.
    pub fn send_cmd(&mut self, args: &[&str]) {
        self.send(&encode_str(args));
    }

    /// Reads one reply: Err on timeout, close or a malformed reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed (unparsed: {:?})",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads `n` replies, panicking on failure.
    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n)
            .map(|i| {
                self.read_reply()
                    .unwrap_or_else(|e| panic!("reply {i} of {n}: {e}"))
            })
            .collect()
    }

    /// Reads raw bytes until `replies` complete replies are buffered, the peer
    /// closes, or `timeout` passes; returns (and consumes) everything read.
    pub fn read_raw(&mut self, replies: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            if parse_all(&self.buf)
                .map(|r| r.len() >= replies)
                .unwrap_or(true)
            {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        std::mem::take(&mut self.buf)
    }

    /// True if the peer closes the connection (EOF or reset) within `timeout`;
    /// bytes that arrive meanwhile are kept for `read_reply`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        let _ = self.stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        result
    }

    /// True if any byte arrives within `timeout` (kept for `read_reply`).
    pub fn readable_within(&mut self, timeout: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        };
        self.stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("read timeout");
        got
    }

    /// Sends every command (from a writer thread, so neither side can block
    /// the other on full socket buffers) and reads one reply per command.
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) -> Vec<Reply> {
        let mut bytes = Vec::new();
        for c in cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            bytes.extend_from_slice(&encode_str(&args));
        }
        self.pipeline_raw(bytes, cmds.len())
    }

    /// Sends `bytes` in one `write_all` from a writer thread and reads `n` replies.
    pub fn pipeline_raw(&mut self, bytes: Vec<u8>, n: usize) -> Vec<Reply> {
        let mut writer = self.stream.try_clone().expect("clone stream");
        let port = self.port;
        let t = thread::spawn(move || {
            writer
                .write_all(&bytes)
                .unwrap_or_else(|e| panic!("pipeline write to {port}: {e}"));
        });
        let replies = self.read_replies(n);
        t.join().expect("writer thread");
        replies
    }

    /// Half-closes (no more writes from us).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A command as owned strings, for `Client::pipeline`.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// One command on a fresh connection to 127.0.0.1:`port`.
pub fn try_cmd(port: u16, args: &[&str]) -> io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), ONE_SHOT_TIMEOUT)?;
    s.set_read_timeout(Some(ONE_SHOT_TIMEOUT))?;
    s.set_write_timeout(Some(ONE_SHOT_TIMEOUT))?;
    s.write_all(&encode_str(args))?;
    let mut buf = Vec::new();
    loop {
        match parse_reply(&buf) {
            Ok(Some((r, _))) => return Ok(r),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Like `try_cmd`, panicking on I/O errors.
pub fn cmd(port: u16, args: &[&str]) -> Reply {
    try_cmd(port, args).unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"))
}
