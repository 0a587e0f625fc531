//! SLOWLOG through the proxy: requests whose reply took longer than
//! `slowlog_log_slower_than` µs, newest first, at most `slowlog_max_len`.
//!
//! One log per cluster, shared by its workers behind a mutex that is taken
//! only when a slow request is recorded or a SLOWLOG command runs.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::protocol::resp;

/// Frames up to this size are kept whole.
const COPY_WHOLE: usize = 4096;
/// Redis's caps on what an entry keeps of a command.
const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

/// One slow request, kept as it came: the request is a shared slice of the
/// read buffer and the name a shared `Bytes`, so recording costs no parsing
/// or formatting (that happens on SLOWLOG GET), which matters because
/// requests turn slow exactly when the proxy is busiest.
pub struct Entry {
    pub id: u64,
    pub unix_time: u64,
    pub micros: u64,
    pub req: Kept,
    /// The client as CLIENT LIST shows it (`ip:port`, or `path:0`).
    pub client: Option<String>,
    pub name: Option<Bytes>,
}

pub struct SlowLog {
    inner: Mutex<Inner>,
}

struct Inner {
    next_id: u64,
    max_len: usize,
    entries: VecDeque<Entry>,
}

impl SlowLog {
    pub fn new(max_len: usize) -> SlowLog {
        SlowLog {
            inner: Mutex::new(Inner {
                next_id: 0,
                max_len,
                entries: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request given as its RESP frame. The frame is copied (a
    /// slice would keep its whole read buffer alive); a large one is cut
    /// down to what SLOWLOG GET shows first.
    pub fn record(&self, micros: u64, req: &[u8], client: Option<String>, name: Option<Bytes>) {
        let req = if req.len() <= COPY_WHOLE {
            Kept::Frame(Bytes::copy_from_slice(req))
        } else {
            Kept::Args(args_of(req))
        };
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut g = self.lock();
        if g.max_len == 0 {
            return;
        }
        let id = g.next_id;
        g.next_id += 1;
        g.entries.push_front(Entry {
            id,
            unix_time,
            micros,
            req,
            client,
            name,
        });
        while g.entries.len() > g.max_len {
            g.entries.pop_back();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn reset(&self) {
        self.lock().entries.clear();
    }

    /// SLOWLOG GET [count] as Redis replies it (count < 0: all).
    pub fn get(&self, count: i64) -> Bytes {
        let g = self.lock();
        let n = if count < 0 {
            g.entries.len()
        } else {
            g.entries.len().min(count as usize)
        };
        let mut out = BytesMut::new();
        resp::put_int(&mut out, b'*', n as i64);
        for e in g.entries.iter().take(n) {
            let frame_args;
            let args = match &e.req {
                Kept::Frame(f) => {
                    frame_args = args_of(f);
                    &frame_args
                }
                Kept::Args(a) => a,
            };
            out.extend_from_slice(b"*6\r\n");
            resp::put_int(&mut out, b':', e.id as i64);
            resp::put_int(&mut out, b':', e.unix_time as i64);
            resp::put_int(&mut out, b':', e.micros as i64);
            resp::put_int(&mut out, b'*', args.len() as i64);
            for a in args {
                resp::put_bulk(&mut out, a);
            }
            let client = e.client.as_deref().unwrap_or_default();
            resp::put_bulk(&mut out, client.as_bytes());
            resp::put_bulk(&mut out, e.name.as_deref().unwrap_or_default());
        }
        out.freeze()
    }
}

/// What an entry keeps of its request.
pub enum Kept {
    /// A small frame, copied whole; parsed on SLOWLOG GET.
    Frame(Bytes),
    /// A large one, cut down to what SLOWLOG GET shows when recorded.
    Args(Vec<Vec<u8>>),
}

fn args_of(req: &[u8]) -> Vec<Vec<u8>> {
    let mut ranges = Vec::new();
    match resp::parse_request(req, &mut ranges, &resp::Limits::default()) {
        Ok(Some(_)) => shorten(req, &ranges),
        _ => vec![b"?".to_vec()],
    }
}

/// Redis keeps at most 32 arguments (the last says how many more) and 128
/// bytes of each (with how many more).
fn shorten(req: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        if i == MAX_ARGS - 1 && ranges.len() > MAX_ARGS {
            args.push(format!("... ({} more arguments)", ranges.len() - i).into_bytes());
            break;
        }
        let a = &req[r.clone()];
        if a.len() > MAX_ARG_LEN {
            let mut v = a[..MAX_ARG_LEN].to_vec();
            v.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_LEN).as_bytes());
            args.push(v);
        } else {
            args.push(a.to_vec());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_first_and_caps_length() {
        let log = SlowLog::new(2);
        for k in [b"a", b"b", b"c"] {
            log.record(
                15_000,
                &resp::command(&[b"GET", k]),
                "127.0.0.1:1".parse().ok(),
                None,
            );
        }
        assert_eq!(log.len(), 2);
        let r = log.get(-1);
        assert_eq!(resp::scan_reply(&r).unwrap(), Some(r.len()));
        let text = String::from_utf8_lossy(&r);
        assert!(text.starts_with("*2\r\n*6\r\n:2\r\n"), "{text}");
        assert!(
            text.contains("$1\r\nc\r\n") && !text.contains("$1\r\na\r\n"),
            "{text}"
        );
        assert_eq!(&log.get(1)[..4], b"*1\r\n");
        log.reset();
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn long_commands_are_shortened() {
        let big = vec![b'x'; 300];
        let many: Vec<&[u8]> = std::iter::once(&b"MGET"[..])
            .chain((0..40).map(|_| &big[..]))
            .collect();
        let log = SlowLog::new(10);
        let req = resp::command(&many);
        let mut ranges = Vec::new();
        resp::parse_request(&req, &mut ranges, &resp::Limits::default()).unwrap();
        let args = shorten(&req, &ranges);
        assert_eq!(args.len(), MAX_ARGS);
        assert!(args[1].ends_with(b"... (172 more bytes)"));
        assert_eq!(args[31], b"... (10 more arguments)");
        log.record(1, &req, None, None);
        let r = String::from_utf8_lossy(&log.get(-1)).into_owned();
        assert!(r.contains("... (10 more arguments)"), "{r}");
        assert!(
            r.contains("... (172 more bytes)") && !r.contains("(20 more bytes)"),
            "{r}"
        );
    }
}
