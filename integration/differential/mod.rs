//! Replies aster builds itself must be Redis's, byte for byte: targeted
//! checks for the defects of issue 11, and a differential test that sends one
//! seeded random stream of commands to a plain `redis-server` and through
//! aster, comparing every reply as raw bytes.
//!
//! Environment: `ASTER_DIFF_SEED` replays a run (the seed is printed on every
//! run), `ASTER_DIFF_COUNT` sets the number of commands per mode.
//!
//! | file             | tests |
//! |------------------|-------|
//! | `blocking.rs`    | defect 4: blocking forms stall nobody |
//! | `own_replies.rs` | defects 6 and 7: replies aster builds itself, against a real redis-server |
//! | `stream.rs`      | the differential test: one seeded stream, through aster and to Redis |

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{
    ClusterConf, Proxy, RedisCluster, RedisServer, Rng, Shards, encode, parse_reply, seed_from_env,
};

mod blocking;
mod own_replies;
mod stream;

// ---------------------------------------------------------------------------
// Raw connections and a seeded generator
// ---------------------------------------------------------------------------

/// A connection that hands back each reply as the exact bytes received.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    port: u16,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Raw {
            stream,
            buf: Vec::new(),
            port,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.port));
    }

    /// Writes `bytes` in small random pieces, so frames reach the peer split.
    fn send_split(&mut self, bytes: &[u8], rng: &mut Rng) {
        let mut at = 0;
        while at < bytes.len() {
            let n = (1 + rng.below(24)).min(bytes.len() - at);
            self.send(&bytes[at..at + n]);
            at += n;
        }
    }

    /// The raw bytes of the next reply.
    fn read_one(&mut self) -> Vec<u8> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((_, used))) => return self.buf.drain(..used).collect(),
                Ok(None) => {}
                Err(e) => panic!("bad reply from {}: {e}: {:?}", self.port, show(&self.buf)),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("{} closed the connection", self.port),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "reading from {}: {e} (buffered {:?})",
                    self.port,
                    show(&self.buf)
                ),
            }
        }
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_one()
    }

    fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&v)
    }
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

fn show_cmd(args: &[Vec<u8>]) -> String {
    let v: Vec<String> = args.iter().map(|a| show(a)).collect();
    v.join(" ")
}

/// HELLO's reply with the connection id and server version masked.
fn mask_hello(reply: &[u8]) -> Vec<u8> {
    let s = show(reply);
    let mut out = String::new();
    let mut parts = s.split("\\r\\n").peekable();
    let mut prev = String::new();
    while let Some(p) = parts.next() {
        let masked = if prev == "id" && p.starts_with(':') {
            ":ID".to_owned()
        } else if prev == "version" && p.starts_with('$') {
            // The length line of the version: mask it and the value.
            let _ = parts.next();
            "$V\\r\\nVERSION".to_owned()
        } else {
            p.to_owned()
        };
        prev = p.to_owned();
        out.push_str(&masked);
        out.push_str("\\r\\n");
    }
    out.into_bytes()
}
