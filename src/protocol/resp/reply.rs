//! Replies: the scanner that cuts each complete reply (RESP2 or RESP3,
//! nested to any depth) off a backend's read buffer, resuming across
//! reads, and helpers that look inside a complete reply.

use std::ops::Range;

use super::{Line, ProtoError, find_line, parse_int};

/// Scans one complete reply (any type, nested to any depth) at the start of
/// `buf` and returns its length. Iterative, so a deep nesting cannot overflow
/// the stack. Understands RESP3 types too, in case a backend sends them.
///
/// Starts from byte 0 each time; a connection's read loop uses a
/// [`ReplyScanner`], which resumes.
pub fn scan_reply(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    ReplyScanner::new().scan(buf)
}

/// A reply scanner that resumes where the last call stopped, so a reply
/// arriving in many reads is scanned once, not once per read. Nesting is
/// one counter (the elements still expected at any depth), so the state is
/// a few words whatever the reply.
///
/// Each call is given the same buffer, grown at the end; the caller cuts it
/// at the front only by a reply `scan` returned (which resets the scanner).
/// Anything else done to the buffer needs `reset`.
#[derive(Clone, Copy, Debug)]
pub struct ReplyScanner {
    /// Where the next element's type byte is (or, with `bulk`, where the
    /// data of the current one starts).
    pos: usize,
    /// Elements still to scan, the one at `pos` included.
    pending: u64,
    /// The end of the data of the bulk whose header is read, when the data
    /// and its CRLF are not all in yet.
    bulk: Option<usize>,
    /// Where the search for the current line's end resumes.
    line_from: usize,
    examined: u64,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        ReplyScanner::new()
    }
}

impl ReplyScanner {
    pub const fn new() -> ReplyScanner {
        ReplyScanner {
            pos: 0,
            pending: 1,
            bulk: None,
            line_from: 0,
            examined: 0,
        }
    }

    /// Like [`scan_reply`], resuming.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        let r = self.resume(buf);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    /// Forgets the reply under way (its buffer was cleared).
    pub fn reset(&mut self) {
        *self = ReplyScanner {
            examined: self.examined,
            ..ReplyScanner::new()
        };
    }

    /// True between replies: nothing of a reply has been scanned.
    pub fn is_idle(&self) -> bool {
        self.pos == 0 && self.line_from == 0
    }

    /// The bytes looked at so far, over every reply: with resumption, about
    /// the size of the stream's lines (bulk data is skipped, not read),
    /// however it was cut into reads.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    fn resume(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        loop {
            if let Some(end) = self.bulk {
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                self.bulk = None;
                self.examined += 2;
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtoError::MissingCrlf);
                }
                self.pos = end + 2;
            }
            if self.pending == 0 {
                return Ok(Some(self.pos));
            }
            let pos = self.pos;
            let Some(&ty) = buf.get(pos) else {
                return Ok(None);
            };
            let cr = match find_line(buf, pos + 1, self.line_from, usize::MAX, &mut self.examined)?
            {
                Line::End(cr) => cr,
                Line::Partial(at) => {
                    self.line_from = at;
                    return Ok(None);
                }
            };
            self.line_from = 0;
            let line = &buf[pos + 1..cr];
            self.pos = cr + 2;
            self.pending -= 1;
            match ty {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    let len = parse_int(line).ok_or(ProtoError::BadReplyLine)?;
                    if len >= 0 {
                        self.bulk = Some(self.pos + len as usize);
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(line).ok_or(ProtoError::BadReplyLine)?;
                    // A declared count no stream could hold is an error, not an
                    // overflowing counter that would end a frame in the wrong place.
                    let more = match (ty, u64::try_from(n)) {
                        (b'%', Ok(n)) => n.checked_mul(2),
                        // An attribute map, even an empty one, precedes the value
                        // it annotates.
                        (b'|', Ok(n)) => n.checked_mul(2).and_then(|x| x.checked_add(1)),
                        (b'|', Err(_)) => None,
                        (_, Ok(n)) => Some(n),
                        // -1: a null aggregate.
                        (_, Err(_)) => Some(0),
                    };
                    self.pending = more
                        .and_then(|m| self.pending.checked_add(m))
                        .ok_or(ProtoError::BadReplyLine)?;
                }
                other => return Err(ProtoError::BadReplyType(other)),
            }
        }
    }
}

/// The elements of a complete array reply, as ranges of `reply`.
/// `None` if `reply` is not an array (an error, or a nil).
pub fn array_elements(reply: &[u8], out: &mut Vec<Range<usize>>) -> Option<()> {
    out.clear();
    if reply.first() != Some(&b'*') {
        return None;
    }
    let cr = reply.iter().position(|&b| b == b'\r')?;
    let n = parse_int(&reply[1..cr])?;
    let mut pos = cr + 2;
    for _ in 0..n.max(0) {
        let len = scan_reply(reply.get(pos..)?).ok()??;
        out.push(pos..pos + len);
        pos += len;
    }
    Some(())
}

/// The value of an integer reply (`:12\r\n`).
pub fn int_reply(reply: &[u8]) -> Option<i64> {
    match reply.split_first() {
        Some((b':', rest)) => parse_int(rest.strip_suffix(b"\r\n")?),
        _ => None,
    }
}

pub fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_every_type() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR bad\r\n",
            b":42\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
            b"%1\r\n+a\r\n:1\r\n",
            b"_\r\n",
        ];
        for f in frames {
            let mut stream = f.to_vec();
            stream.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(scan_reply(&stream).unwrap(), Some(f.len()), "{f:?}");
            for i in 0..f.len() {
                assert_eq!(scan_reply(&f[..i]).unwrap(), None, "{f:?} prefix {i}");
            }
        }
        assert!(scan_reply(b"?what\r\n").is_err());
        assert!(scan_reply(b"$3\r\nfooXX").is_err());
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut deep = b"*1\r\n".repeat(200_000);
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(scan_reply(&deep).unwrap(), Some(deep.len()));
    }

    #[test]
    fn array_elements_and_ints() {
        let r = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:5\r\n";
        let mut out = Vec::new();
        array_elements(r, &mut out).unwrap();
        let parts: Vec<&[u8]> = out.iter().map(|x| &r[x.clone()]).collect();
        assert_eq!(
            parts,
            vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:5\r\n"]
        );
        assert!(array_elements(b"-ERR x\r\n", &mut out).is_none());
        assert_eq!(int_reply(b":-12\r\n"), Some(-12));
        assert_eq!(int_reply(b"+OK\r\n"), None);
    }
}
