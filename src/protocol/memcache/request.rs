//! memcached ASCII requests framed in place: a command line, and for the
//! storage commands (`set`, `add`, `replace`, `append`, `prepend`, `cas`,
//! meta `ms`) a data block of the length the line gives.
//!
//! A request the proxy must refuse but memcached would answer and go on
//! from (an unknown command, a bad number, a key too long, a data block of
//! the wrong length) is framed too, as `Framed::Bad`, so the connection
//! stays open as memcached keeps it open; only input memcached would close
//! on (a line past the limit, a data block past the size limit) is an error.

use std::ops::Range;

use super::{McError, McLimits};

/// A complete request at the front of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framed {
    /// `len` bytes: the line's tokens are the argument ranges; a storage
    /// command's data block (without its CRLF) is the last range.
    Request { len: usize, cmd: McCommand },
    /// `len` bytes to consume and answer with `err`; the connection stays.
    Bad { len: usize, err: McError },
}

/// What the proxy does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McCommand {
    /// set/add/replace/append/prepend/cas and meta `ms`: one key, a data block.
    Storage { noreply: bool },
    /// get/gets (keys from token 1) and gat/gats (keys from token 2).
    Retrieval { first_key: usize },
    /// delete, incr, decr, touch, and the meta mg/md/ma: one key (token 1).
    Keyed { noreply: bool },
    /// `mn`: answered in order by the proxy.
    MetaNoop,
    /// version, quit, verbosity, flush_all, stats.
    Admin(Admin),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    Version,
    Quit,
    Verbosity { noreply: bool },
    FlushAll { noreply: bool },
    Stats,
}

/// Frames requests, resuming where the last call stopped: a line is
/// searched for its end once, whatever the number of reads it arrives in.
#[derive(Debug, Default)]
pub struct McRequestParser {
    /// Bytes of the current line already searched for its `\n`.
    scanned: usize,
    /// The line, once complete: its length with the CRLF, and the data
    /// block's length still to come (a storage command).
    line: Option<(usize, Pending)>,
}

#[derive(Clone, Debug)]
struct Pending {
    cmd: McCommand,
    /// The data block's length without its CRLF, and whether the line was
    /// bad (the block is consumed and the error given after it).
    data: Option<usize>,
    err: Option<McError>,
}

impl McRequestParser {
    pub fn parse(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &McLimits,
    ) -> Result<Option<Framed>, McError> {
        let (line_len, pending) = match &self.line {
            Some((n, p)) => (*n, p.clone()),
            None => {
                let Some(nl) = buf[self.scanned.min(buf.len())..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|i| i + self.scanned)
                else {
                    self.scanned = buf.len();
                    if buf.len() > limits.max_line {
                        return Err(McError::LineTooLong);
                    }
                    return Ok(None);
                };
                if nl + 1 > limits.max_line {
                    return Err(McError::LineTooLong);
                }
                let p = classify(&buf[..nl + 1], args, limits)?;
                self.scanned = 0;
                (nl + 1, p)
            }
        };
        let Some(data) = pending.data else {
            self.line = None;
            return Ok(Some(match pending.err {
                Some(err) => Framed::Bad { len: line_len, err },
                None => Framed::Request {
                    len: line_len,
                    cmd: pending.cmd,
                },
            }));
        };
        let total = line_len + data + 2;
        if buf.len() < total {
            self.line = Some((line_len, pending));
            return Ok(None);
        }
        self.line = None;
        if &buf[total - 2..total] != b"\r\n" {
            return Ok(Some(Framed::Bad {
                len: total,
                err: McError::BadDataChunk,
            }));
        }
        if let Some(err) = pending.err {
            return Ok(Some(Framed::Bad { len: total, err }));
        }
        args.push(line_len..line_len + data);
        Ok(Some(Framed::Request {
            len: total,
            cmd: pending.cmd,
        }))
    }

    /// Nothing of a request is buffered.
    pub fn is_idle(&self) -> bool {
        self.scanned == 0 && self.line.is_none()
    }
}

/// Splits a complete line into tokens (memcached splits on spaces) and
/// checks them.
fn classify(
    line: &[u8],
    args: &mut Vec<Range<usize>>,
    limits: &McLimits,
) -> Result<Pending, McError> {
    args.clear();
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut i = 0;
    while i < body.len() {
        if body[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < body.len() && body[i] != b' ' {
            i += 1;
        }
        if args.len() == limits.max_tokens {
            return Ok(bad(McError::TooManyKeys));
        }
        args.push(start..i);
    }
    let tok = |k: usize| args.get(k).map_or(&b""[..], |r| &body[r.clone()]);
    let n = args.len();
    let name = tok(0);
    let noreply_at = |k: usize| n > k && tok(k) == b"noreply";
    let keys_ok = |from: usize, to: usize| (from..to).all(|k| valid_key(tok(k)));
    let p = match name {
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let cas = name == b"cas";
            let base = if cas { 6 } else { 5 };
            if n != base && n != base + 1 {
                return Ok(bad(McError::UnknownCommand));
            }
            let noreply = n == base + 1 && tok(base) == b"noreply";
            let bytes = number(tok(4)).filter(|&b| b <= i64::from(u32::MAX));
            let Some(bytes) = bytes.and_then(|b| usize::try_from(b).ok()) else {
                return Ok(bad(McError::BadFormat));
            };
            if bytes > limits.max_value {
                return Err(McError::TooLarge);
            }
            let numbers_ok = unsigned(tok(2)).is_some_and(|f| f <= u64::from(u32::MAX))
                && number(tok(3)).is_some()
                && (!cas || unsigned(tok(5)).is_some())
                && (n == base || noreply);
            let err = if !valid_key(tok(1)) {
                Some(key_error(tok(1)))
            } else if !numbers_ok {
                Some(McError::BadFormat)
            } else {
                None
            };
            Pending {
                cmd: McCommand::Storage { noreply },
                data: Some(bytes),
                err,
            }
        }
        b"ms" => {
            if n < 3 {
                return Ok(bad(McError::UnknownCommand));
            }
            let Some(bytes) = unsigned(tok(2)).and_then(|b| usize::try_from(b).ok()) else {
                return Ok(bad(McError::BadFormat));
            };
            if bytes > limits.max_value {
                return Err(McError::TooLarge);
            }
            let noreply = (3..n).any(|k| tok(k) == b"q");
            Pending {
                cmd: McCommand::Storage { noreply },
                data: Some(bytes),
                err: (!valid_key(tok(1))).then(|| key_error(tok(1))),
            }
        }
        b"get" | b"gets" if n >= 2 => checked(
            McCommand::Retrieval { first_key: 1 },
            keys_ok(1, n),
            args,
            body,
        ),
        b"gat" | b"gats" if n >= 3 => {
            if number(tok(1)).is_none() {
                bad(McError::BadFormat)
            } else {
                checked(
                    McCommand::Retrieval { first_key: 2 },
                    keys_ok(2, n),
                    args,
                    body,
                )
            }
        }
        b"delete" if (2..=4).contains(&n) => {
            // `delete key [0] [noreply]`: memcached takes a time of 0 only.
            let noreply = noreply_at(n - 1) && n > 2;
            let rest_ok = match (n, noreply) {
                (2, _) | (3, true) => true,
                (3, false) | (4, true) => tok(2) == b"0",
                _ => false,
            };
            if !rest_ok {
                bad(McError::BadFormat)
            } else {
                checked(McCommand::Keyed { noreply }, keys_ok(1, 2), args, body)
            }
        }
        b"incr" | b"decr" if n == 3 || n == 4 => {
            let noreply = noreply_at(3);
            if unsigned(tok(2)).is_none() || (n == 4 && !noreply) {
                bad(McError::BadDelta)
            } else {
                checked(McCommand::Keyed { noreply }, keys_ok(1, 2), args, body)
            }
        }
        b"touch" if n == 3 || n == 4 => {
            let noreply = noreply_at(3);
            if number(tok(2)).is_none() || (n == 4 && !noreply) {
                bad(McError::BadFormat)
            } else {
                checked(McCommand::Keyed { noreply }, keys_ok(1, 2), args, body)
            }
        }
        b"mg" | b"md" | b"ma" if n >= 2 => {
            let noreply = (2..n).any(|k| tok(k) == b"q");
            checked(McCommand::Keyed { noreply }, keys_ok(1, 2), args, body)
        }
        b"mn" if n == 1 => ok(McCommand::MetaNoop),
        b"version" if n == 1 => ok(McCommand::Admin(Admin::Version)),
        b"quit" if n == 1 => ok(McCommand::Admin(Admin::Quit)),
        b"verbosity" if n == 2 || n == 3 => {
            let noreply = noreply_at(2);
            if unsigned(tok(1)).is_none() || (n == 3 && !noreply) {
                bad(McError::BadFormat)
            } else {
                ok(McCommand::Admin(Admin::Verbosity { noreply }))
            }
        }
        b"flush_all" if n <= 3 => {
            let noreply = noreply_at(n - 1) && n > 1;
            let delay = if noreply { n - 1 } else { n };
            if delay == 2 && number(tok(1)).is_none() || (n == 3 && !noreply) {
                bad(McError::BadFormat)
            } else {
                ok(McCommand::Admin(Admin::FlushAll { noreply }))
            }
        }
        b"stats" => ok(McCommand::Admin(Admin::Stats)),
        _ => bad(McError::UnknownCommand),
    };
    Ok(p)
}

fn ok(cmd: McCommand) -> Pending {
    Pending {
        cmd,
        data: None,
        err: None,
    }
}

fn bad(err: McError) -> Pending {
    Pending {
        cmd: McCommand::Admin(Admin::Version),
        data: None,
        err: Some(err),
    }
}

/// `cmd` when its keys are valid, else the error of the first bad one.
fn checked(cmd: McCommand, keys_ok: bool, args: &[Range<usize>], body: &[u8]) -> Pending {
    if keys_ok {
        return ok(cmd);
    }
    let first_bad = args
        .iter()
        .skip(1)
        .map(|r| &body[r.clone()])
        .find(|k| !valid_key(k))
        .unwrap_or_default();
    bad(key_error(first_bad))
}

/// memcached's key rule: 1 to 250 bytes, no control characters (spaces
/// cannot occur: they split tokens).
pub fn valid_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= super::MAX_KEY && k.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn key_error(k: &[u8]) -> McError {
    if k.len() > super::MAX_KEY {
        McError::KeyTooLong
    } else {
        McError::BadKey
    }
}

/// A decimal number as memcached reads flags and lengths (`strtol`-like,
/// but whole-token): optional sign, digits only.
fn number(t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?;
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.parse().ok()
}

fn unsigned(t: &[u8]) -> Option<u64> {
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}
