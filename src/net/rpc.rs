//! Blocking request/reply on a plain `TcpStream`, for the supervisor's pings
//! and topology queries. Not on the request path: it allocates freely.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::protocol::resp;

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

pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends one command and reads its whole reply.
pub fn call(s: &mut TcpStream, args: &[&[u8]]) -> io::Result<Value> {
    s.write_all(&resp::command(args)).map_err(timed_out)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match resp::scan_reply(&buf) {
            Ok(Some(n)) => return decode(&buf[..n]).ok_or_else(|| bad("undecodable reply")),
            Ok(None) => {}
            Err(e) => return Err(bad(&e.to_string())),
        }
        if buf.len() > MAX_REPLY {
            return Err(bad("reply too large"));
        }
        let n = s.read(&mut chunk).map_err(timed_out)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A socket timeout surfaces as EAGAIN ("Resource temporarily
/// unavailable"); logs should say what happened.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "timed out")
        }
        _ => e,
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

    #[test]
    fn a_server_that_does_not_answer_times_out_by_that_name() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = connect(l.local_addr().unwrap(), Duration::from_millis(100)).unwrap();
        let e = call(&mut s, &[b"PING"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "timed out");
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
