//! RESP2 scanning in place, and the reply builders the proxy needs:
//! requests (`request.rs`: the resuming parser a client connection reads
//! with), replies (`reply.rs`: the resuming scanner a backend connection
//! reads with, and helpers that look inside a complete reply) and the
//! replies and commands the proxy writes itself (`build.rs`).
//!
//! Scanners look at a byte slice and say where the first complete frame ends;
//! they never copy and never allocate by a length a peer sent, so the caller
//! can cut the frame off its read buffer as a `Bytes` and forward it whole.

use std::fmt;

mod build;
mod reply;
mod request;

pub use build::{
    NIL, NULL3, OK, PONG, bulk, command, error, error_bytes, int, null, put_bulk, put_command,
    put_int, verbatim,
};
pub use reply::{ReplyScanner, array_elements, int_reply, is_error, scan_reply};
pub use request::{RequestParser, parse_request};

/// Redis's own limits (proto-max-bulk-len, the multibulk count cap, and the
/// inline buffer cap), checked before anything is buffered for the frame.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_args: usize,
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline: 64 * 1024,
        }
    }
}

/// A malformed frame. `Display` is the text after `-ERR ` that Redis uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    MultibulkLength,
    BulkLength,
    ExpectedDollar(u8),
    MissingCrlf,
    BigInline,
    BigCount,
    UnbalancedQuotes,
    BadReplyType(u8),
    BadReplyLine,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::MultibulkLength => f.write_str("Protocol error: invalid multibulk length"),
            ProtoError::BulkLength => f.write_str("Protocol error: invalid bulk length"),
            ProtoError::ExpectedDollar(b) => {
                write!(
                    f,
                    "Protocol error: expected '$', got '{}'",
                    char::from(*b).escape_default()
                )
            }
            ProtoError::MissingCrlf => f.write_str("Protocol error: expected CRLF after bulk data"),
            ProtoError::BigInline => f.write_str("Protocol error: too big inline request"),
            ProtoError::BigCount => f.write_str("Protocol error: too big count string"),
            ProtoError::UnbalancedQuotes => {
                f.write_str("Protocol error: unbalanced quotes in request")
            }
            ProtoError::BadReplyType(b) => {
                write!(f, "Protocol error: bad reply type byte {b:#04x}")
            }
            ProtoError::BadReplyLine => f.write_str("Protocol error: malformed reply line"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// The end of a line being looked for.
enum Line {
    /// The index of its `\r` (a `\n` follows).
    End(usize),
    /// Not in yet: no `\r` before this index, where the search resumes.
    Partial(usize),
}

/// Looks for the `\r\n` ending the line whose content starts at `start`,
/// resuming at `from` (anything before it is known to hold no `\r`). A line
/// longer than `max` is `BigCount`; a `\r` followed by anything but `\n`,
/// `BadReplyLine`. Adds the bytes it looked at to `examined`.
fn find_line(
    buf: &[u8],
    start: usize,
    from: usize,
    max: usize,
    examined: &mut u64,
) -> Result<Line, ProtoError> {
    let from = from.max(start).min(buf.len());
    // Nothing past max + 1 bytes of content can change the answer: a line
    // that long is refused whether its `\r` is in or not.
    let limit = start.saturating_add(max).saturating_add(1).min(buf.len());
    let hay = &buf[from..limit.max(from)];
    match hay.iter().position(|&b| b == b'\r') {
        Some(i) => {
            *examined += i as u64 + 1;
            let cr = from + i;
            match buf.get(cr + 1) {
                Some(b'\n') => Ok(Line::End(cr)),
                Some(_) => Err(ProtoError::BadReplyLine),
                None => Ok(Line::Partial(cr)),
            }
        }
        None => {
            *examined += hay.len() as u64;
            if buf.len() - start > max {
                Err(ProtoError::BigCount)
            } else {
                Ok(Line::Partial(from + hay.len()))
            }
        }
    }
}

/// Parses a signed decimal with no sign but '-', no spaces and no overflow.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // Negative numbers accumulate downwards, so i64::MIN fits.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Feeds `stream` to `step` in reads of `piece` bytes, as a read loop
    /// does; every read but the last must leave the frame incomplete.
    fn in_pieces<T: PartialEq + fmt::Debug>(
        stream: &[u8],
        piece: usize,
        mut step: impl FnMut(&[u8]) -> Result<Option<T>, ProtoError>,
    ) -> Result<Option<T>, ProtoError> {
        let mut end = 0;
        loop {
            end = (end + piece).min(stream.len());
            let got = step(&stream[..end]);
            if end == stream.len() {
                return got;
            }
            assert_eq!(got, Ok(None), "complete after {end} of {}", stream.len());
        }
    }

    /// aster issue 11, defect 14: each read restarted the scan at byte 0, so
    /// a frame in k reads cost O(k x bytes). Resuming, the bytes looked at
    /// stay within a small multiple of the frame, however it is cut.
    #[test]
    fn large_frames_in_many_reads_are_scanned_once() {
        const N: usize = 1_000_000;
        const PIECE: usize = 64 * 1024;
        let mut req = format!("*{}\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n", N + 2).into_bytes();
        for i in 0..N {
            req.extend_from_slice(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
        }
        let mut p = RequestParser::default();
        let mut args = Vec::new();
        let limits = Limits::default();
        let got = in_pieces(&req, PIECE, |b| p.parse(b, &mut args, &limits));
        assert_eq!(got, Ok(Some(req.len())));
        assert_eq!(args.len(), N + 2);
        assert_eq!(&req[args[1].clone()], b"list");
        assert_eq!(&req[args[N + 1].clone()], b"999999");
        assert!(p.is_idle());
        let looked = p.examined();
        assert!(
            looked < 3 * req.len() as u64,
            "RPUSH of {N} in {PIECE}-byte reads: looked at {looked} bytes of {}",
            req.len()
        );

        // A reply of every shape a large one takes: a long array of bulks,
        // nested aggregates, and a long line, each cut across many reads.
        let mut reply = format!("*{N}\r\n").into_bytes();
        for i in 0..N {
            match i % 4 {
                0 => reply
                    .extend_from_slice(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes()),
                1 => reply.extend_from_slice(format!(":{i}\r\n").as_bytes()),
                2 => reply.extend_from_slice(b"*2\r\n%1\r\n+k\r\n$-1\r\n~0\r\n"),
                _ => reply.extend_from_slice(b"$3\r\nabc\r\n"),
            }
        }
        let long_line = [&b"+"[..], &vec![b'x'; 16 * PIECE], b"\r\n"].concat();
        let mut s = ReplyScanner::new();
        for frame in [&reply[..], &long_line] {
            let before = s.examined();
            assert_eq!(
                in_pieces(frame, PIECE, |b| s.scan(b)),
                Ok(Some(frame.len()))
            );
            assert!(s.is_idle());
            let looked = s.examined() - before;
            assert!(
                looked < 3 * frame.len() as u64,
                "reply of {} in {PIECE}-byte reads: looked at {looked} bytes",
                frame.len()
            );
        }
    }

    /// What a resuming parser makes of a stream cut anywhere is what the
    /// whole stream gives, errors included.
    #[test]
    fn resuming_at_every_cut_agrees_with_the_whole() {
        let small = Limits {
            max_bulk: 8,
            max_args: 3,
            max_inline: 12,
        };
        let requests: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nh\r\nlo\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"SET  a  \"b c\"\r\n",
            b"\r\n",
            b"*1\r\n$3\r\nfooXY",
            b"*4\r\n$1\r\na\r\n",
            b"*1\r\n$9\r\n",
            b"*1\r\n+foo\r\n",
            b"*12345678901234567890123456789012345\r\n",
            b"*1\r\n$1\rX",
            b"a very long inline line\r\n",
            // At and past the limits, whole: the one-pass path must agree.
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\n12345678\r\n",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\n123456789\r\n",
            b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n",
            b"*01\r\n$004\r\nPING\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$1234567890123456789\r\n",
            b"*1\r\n$4\r\nPINGxx",
        ];
        for limits in [Limits::default(), small] {
            for r in requests {
                let mut whole_args = Vec::new();
                let whole = parse_request(r, &mut whole_args, &limits);
                for cut in 0..=r.len() {
                    let mut p = RequestParser::default();
                    let mut args = Vec::new();
                    let first = p.parse(&r[..cut], &mut args, &limits);
                    let got = match first {
                        Ok(None) => p.parse(r, &mut args, &limits),
                        done => done,
                    };
                    let ctx = format!("{:?} cut at {cut}, {limits:?}", String::from_utf8_lossy(r));
                    match (&first, &whole) {
                        // A prefix may already see the frame's error.
                        (Err(_), _) => assert_eq!(first, whole, "{ctx}"),
                        _ => {
                            assert_eq!(got, whole, "{ctx}");
                            if let Ok(Some(_)) = whole {
                                assert_eq!(args, whole_args, "{ctx}");
                            }
                        }
                    }
                }
            }
        }
        let replies: &[&[u8]] = &[
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
            b"|1\r\n+a\r\n:1\r\n%1\r\n=5\r\ntxt:x\r\n~1\r\n_\r\n",
            b"+a long status line\r\n",
            b"$3\r\nfooXX",
            b"*1\r\n?\r\n",
            b"+ab\rc\r\n",
        ];
        for r in replies {
            let whole = scan_reply(r);
            for cut in 0..=r.len() {
                let mut s = ReplyScanner::new();
                let got = match s.scan(&r[..cut]) {
                    Ok(None) => s.scan(r),
                    done => done,
                };
                assert_eq!(got, whole, "{:?} cut at {cut}", String::from_utf8_lossy(r));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"*$:+-\r\n0123-abc";
        let mut args = Vec::new();
        for _ in 0..20_000 {
            let len = rng.below(40);
            let buf: Vec<u8> = (0..len).map(|_| rng.pick(alphabet)).collect();
            let _ = parse_request(&buf, &mut args, &Limits::default());
            let _ = scan_reply(&buf);
            let _ = array_elements(&buf, &mut args);
        }
    }
}
