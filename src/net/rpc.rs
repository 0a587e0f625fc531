//! Request/reply on non-blocking connections, for the supervisor's pings
//! and topology queries: a `Conn` sends commands and decodes each reply as
//! it completes, however the reads cut it, so one poll loop waits on many
//! servers at once and no server's silence holds up another's answer. Not
//! on the request path: it allocates freely.

use std::io::{self, Read, Write};

use mio::{Interest, Registry, Token};

use crate::config::Addr;
use crate::net::stream::Stream;
use crate::protocol::resp::{self, ReplyScanner};

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(Some(b)) => resp::parse_int(b),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Replies larger than this are refused: topology replies are small.
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// One connection to a server: commands queue until the connect completes;
/// replies come back in order. Registered for both readiness kinds, edge
/// triggered, so an idle connection costs no wake-up.
pub struct Conn {
    sock: Stream,
    token: Token,
    connected: bool,
    /// Encoded commands not yet written.
    out: Vec<u8>,
    /// Bytes read and not yet decoded: at most part of one reply between
    /// calls.
    buf: Vec<u8>,
    scanner: ReplyScanner,
}

impl Conn {
    /// Starts connecting to `addr`; its events arrive under `token`.
    pub fn open(addr: &Addr, registry: &Registry, token: Token) -> io::Result<Conn> {
        let mut sock = Stream::connect(addr)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            sock,
            token,
            connected: false,
            out: Vec::new(),
            buf: Vec::new(),
            scanner: ReplyScanner::new(),
        })
    }

    pub fn token(&self) -> Token {
        self.token
    }

    /// Queues one command and writes what it can.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.extend_from_slice(&resp::command(args));
        if self.connected {
            self.flush()?;
        }
        Ok(())
    }

    /// On a readiness event: completes the connect, writes what waits, and
    /// appends each reply that is now whole to `replies`. An error, or the
    /// server closing, ends the connection (the replies decoded before it
    /// are appended all the same).
    pub fn pump(&mut self, replies: &mut Vec<Value>) -> io::Result<()> {
        if !self.connected && !self.finish_connect()? {
            return Ok(());
        }
        self.flush()?;
        self.read(replies)
    }

    /// Unregisters and closes the connection.
    pub fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    /// Whether the connect has completed.
    fn finish_connect(&mut self) -> io::Result<bool> {
        if !self.sock.connected()? {
            return Ok(false);
        }
        self.connected = true;
        if let Some(tcp) = self.sock.tcp() {
            tcp.set_nodelay(true)?;
        }
        Ok(true)
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&mut self, replies: &mut Vec<Value>) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ));
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.decode(replies)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes every whole reply off the front of the buffer; the scanner
    /// resumes, so a large reply arriving in many reads is scanned once.
    fn decode(&mut self, replies: &mut Vec<Value>) -> io::Result<()> {
        loop {
            match self.scanner.scan(&self.buf) {
                Ok(Some(n)) => {
                    let v = decode(&self.buf[..n]).ok_or_else(|| bad("undecodable reply"))?;
                    replies.push(v);
                    self.buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return Err(bad(&e.to_string())),
            }
        }
        if self.buf.len() > MAX_REPLY {
            return Err(bad("reply too large"));
        }
        Ok(())
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Decodes one complete reply (as found by `resp::scan_reply`).
pub fn decode(buf: &[u8]) -> Option<Value> {
    let mut pos = 0;
    let v = decode_at(buf, &mut pos, 0)?;
    Some(v)
}

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Option<Value> {
    if depth > 64 {
        return None;
    }
    let ty = *buf.get(*pos)?;
    let rest = buf.get(*pos + 1..)?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    let line = &rest[..cr];
    *pos += 1 + cr + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    Some(match ty {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(resp::parse_int(line)?),
        b'$' => {
            let len = resp::parse_int(line)?;
            if len < 0 {
                Value::Bulk(None)
            } else {
                let data = buf.get(*pos..*pos + len as usize)?.to_vec();
                *pos += len as usize + 2;
                Value::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = resp::parse_int(line)?;
            if n < 0 {
                Value::Array(None)
            } else {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(decode_at(buf, pos, depth + 1)?);
                }
                Value::Array(Some(items))
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use mio::{Events, Poll};

    /// Pumps `c` on each event until `want` replies or an error, 5 s at most.
    fn pump_until(poll: &mut Poll, c: &mut Conn, want: usize) -> io::Result<Vec<Value>> {
        let mut events = Events::with_capacity(8);
        let mut got = Vec::new();
        while got.len() < want {
            poll.poll(&mut events, Some(Duration::from_secs(5)))?;
            assert!(!events.is_empty(), "no event within 5 s");
            c.pump(&mut got)?;
        }
        Ok(got)
    }

    #[test]
    fn replies_cut_across_reads_are_decoded_in_order() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poll = Poll::new().unwrap();
        let mut c = Conn::open(
            &Addr::Tcp(l.local_addr().unwrap()),
            poll.registry(),
            Token(7),
        )
        .unwrap();
        assert_eq!(c.token(), Token(7));
        // Queued before the connect completes, written once it has.
        c.send(&[b"PING"]).unwrap();
        c.send(&[b"ECHO", b"abc"]).unwrap();
        let (mut server, _) = l.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The connect completes on the first event, which writes them.
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(c.pump(&mut Vec::new()).is_ok());
        let mut req = [0u8; 64];
        let mut n = 0;
        while n < 37 {
            n += server.read(&mut req[n..]).unwrap();
        }
        assert_eq!(
            &req[..n],
            b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n"
        );
        server.write_all(b"+PO").unwrap();
        server.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        server.write_all(b"NG\r\n$3\r\nab").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        server.write_all(b"c\r\n").unwrap();
        let got = pump_until(&mut poll, &mut c, 2).unwrap();
        assert_eq!(
            got,
            vec![
                Value::Simple("PONG".into()),
                Value::Bulk(Some(b"abc".to_vec()))
            ]
        );
        drop(server);
        let e = pump_until(&mut poll, &mut c, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        c.close(poll.registry());
    }

    #[test]
    fn a_refused_connect_is_an_error_of_that_name() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut poll = Poll::new().unwrap();
        let e = Conn::open(&Addr::Tcp(addr), poll.registry(), Token(1))
            .and_then(|mut c| pump_until(&mut poll, &mut c, 1))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn decodes_nested_replies() {
        let v = decode(b"*3\r\n:1\r\n$2\r\nab\r\n*2\r\n+OK\r\n$-1\r\n").unwrap();
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(Some(b"ab".to_vec())),
                Value::Array(Some(vec![Value::Simple("OK".into()), Value::Bulk(None)])),
            ]))
        );
        assert_eq!(decode(b"-ERR x\r\n"), Some(Value::Error("ERR x".into())));
        assert_eq!(decode(b"*2\r\n:1\r\n"), None);
    }
}
