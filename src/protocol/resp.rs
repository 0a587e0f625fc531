//! RESP2 scanning in place, and the reply builders the proxy needs.
//!
//! Scanners look at a byte slice and say where the first complete frame ends;
//! they never copy and never allocate by a length a peer sent, so the caller
//! can cut the frame off its read buffer as a `Bytes` and forward it whole.

use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

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

/// The longest header line (`*123\r\n`, `$45\r\n`) worth waiting for.
const MAX_HEADER_LINE: usize = 32;

/// A frame's argument vector bigger than this is not kept by an idle
/// parser: one huge request must not pin its memory on a connection.
const KEEP_ARGS: usize = 4096;

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

/// Scans one request at the start of `buf`.
///
/// On success returns the frame's length and leaves the arguments' ranges in
/// `args` (argument 0 is the command name). An empty `args` means a frame to
/// skip (`*0`, `*-1`, or a blank inline line), as Redis skips them.
/// `Ok(None)`: the frame is not complete yet.
///
/// Starts from byte 0 each time; a connection's read loop uses a
/// [`RequestParser`], which resumes.
pub fn parse_request(
    buf: &[u8],
    args: &mut Vec<Range<usize>>,
    limits: &Limits,
) -> Result<Option<usize>, ProtoError> {
    args.clear();
    ReqState::default().parse(buf, args, limits)
}

/// The common case in one pass: a multibulk frame wholly in `buf`, every
/// count and length plain digits within the limits. Anything else (a frame
/// not all in yet, an inline command, an error to report) is left to the
/// resuming parser: `Err` carries how far this pass looked, and `args` is
/// then to be ignored.
fn whole_multibulk(
    buf: &[u8],
    args: &mut Vec<Range<usize>>,
    limits: &Limits,
) -> Result<usize, usize> {
    if buf.first() != Some(&b'*') {
        return Err(0);
    }
    let (count, mut pos) = digits_line(buf, 1).ok_or(0usize)?;
    if count == 0 || count > limits.max_args {
        return Err(pos);
    }
    args.clear();
    for _ in 0..count {
        if buf.get(pos) != Some(&b'$') {
            return Err(pos);
        }
        let (len, start) = digits_line(buf, pos + 1).ok_or(pos)?;
        if len > limits.max_bulk {
            return Err(start);
        }
        let end = start + len;
        if buf.get(end..end + 2) != Some(b"\r\n") {
            return Err(start);
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(pos)
}

/// The value of a line of 1 to 18 digits starting at `from`, and where the
/// next line starts; `None` for anything else.
fn digits_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut v = 0usize;
    let mut i = from;
    loop {
        let b = *buf.get(i)?;
        if b.is_ascii_digit() {
            if i - from == 18 {
                return None;
            }
            v = v * 10 + usize::from(b - b'0');
            i += 1;
        } else if b == b'\r' && i > from && buf.get(i + 1) == Some(&b'\n') {
            return Some((v, i + 2));
        } else {
            return None;
        }
    }
}

/// A request parser that resumes where the last call stopped, so a frame
/// arriving in many reads is scanned once, not once per read.
///
/// Each call is given the same buffer, grown at the end; the caller cuts it
/// at the front only by a frame `parse` returned (which resets the parser),
/// so the offsets kept here stay valid. Anything else done to the buffer
/// (clearing it after an error) needs `reset`.
#[derive(Debug, Default)]
pub struct RequestParser {
    st: ReqState,
    /// The ranges of the arguments found so far in the frame under way.
    args: Vec<Range<usize>>,
}

impl RequestParser {
    /// Like [`parse_request`], resuming. On a complete frame its arguments
    /// are in `args` (swapped in, so neither side copies them).
    pub fn parse(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        if self.st.is_idle() {
            match whole_multibulk(buf, args, limits) {
                Ok(n) => return Ok(Some(n)),
                Err(looked) => self.st.examined += looked as u64,
            }
        }
        let r = self.st.parse(buf, &mut self.args, limits);
        match r {
            Ok(None) => {}
            Ok(Some(_)) => {
                args.clear();
                std::mem::swap(args, &mut self.args);
                self.next_frame();
            }
            Err(_) => {
                args.clear();
                self.next_frame();
            }
        }
        r
    }

    /// Forgets the frame under way (its buffer was cleared).
    pub fn reset(&mut self) {
        self.next_frame();
    }

    /// True between frames: nothing of a frame has been scanned.
    pub fn is_idle(&self) -> bool {
        self.st.is_idle()
    }

    /// The bytes looked at so far, over every frame: with resumption, about
    /// the size of the stream's headers, however it was cut into reads.
    pub fn examined(&self) -> u64 {
        self.st.examined
    }

    fn next_frame(&mut self) {
        let examined = self.st.examined;
        self.st = ReqState {
            examined,
            ..ReqState::default()
        };
        self.args.clear();
        if self.args.capacity() > KEEP_ARGS {
            self.args = Vec::new();
        }
    }
}

/// The progress of a request frame. All zero: nothing scanned yet.
#[derive(Clone, Copy, Debug, Default)]
struct ReqState {
    /// Multibulk: where the next argument's `$` header starts, once the
    /// count is read (0 before).
    pos: usize,
    /// Multibulk: arguments still expected after the ones in `args`.
    left: u64,
    /// Multibulk: the data of the argument whose header is read and whose
    /// data is not all in (start, end).
    bulk: Option<(usize, usize)>,
    /// Where the search for the current line's end resumes.
    line_from: usize,
    examined: u64,
}

impl ReqState {
    fn is_idle(&self) -> bool {
        self.pos == 0 && self.line_from == 0
    }

    fn parse(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        match buf.first() {
            None => Ok(None),
            Some(b'*') => self.multibulk(buf, args, limits),
            Some(_) => self.inline(buf, args, limits),
        }
    }

    fn multibulk(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        if self.pos == 0 {
            let Some(cr) = self.header_line(buf, 1)? else {
                return Ok(None);
            };
            let count = parse_int(&buf[1..cr]).ok_or(ProtoError::MultibulkLength)?;
            if count > i64::try_from(limits.max_args).unwrap_or(i64::MAX) {
                return Err(ProtoError::MultibulkLength);
            }
            if count <= 0 {
                return Ok(Some(cr + 2));
            }
            self.pos = cr + 2;
            self.left = count as u64;
        }
        while self.left > 0 {
            let (start, end) = match self.bulk {
                Some(b) => b,
                None => {
                    let pos = self.pos;
                    match buf.get(pos) {
                        None => return Ok(None),
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtoError::ExpectedDollar(other)),
                    }
                    let Some(cr) = self.header_line(buf, pos + 1)? else {
                        return Ok(None);
                    };
                    let len = parse_int(&buf[pos + 1..cr]).ok_or(ProtoError::BulkLength)?;
                    if len < 0 || len as u64 > u64::try_from(limits.max_bulk).unwrap_or(u64::MAX) {
                        return Err(ProtoError::BulkLength);
                    }
                    let start = cr + 2;
                    (start, start + len as usize)
                }
            };
            if buf.len() < end + 2 {
                self.bulk = Some((start, end));
                return Ok(None);
            }
            self.bulk = None;
            self.examined += 2;
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtoError::MissingCrlf);
            }
            args.push(start..end);
            self.pos = end + 2;
            self.left -= 1;
        }
        Ok(Some(self.pos))
    }

    /// The end (`\r`) of a count or length line whose text starts at
    /// `from`, or `None` while it is incomplete: the search resumes where
    /// it stopped on the next call.
    fn header_line(&mut self, buf: &[u8], from: usize) -> Result<Option<usize>, ProtoError> {
        let line = find_line(
            buf,
            from,
            self.line_from,
            MAX_HEADER_LINE,
            &mut self.examined,
        )
        .map_err(|_| ProtoError::BigCount)?;
        match line {
            Line::End(cr) => {
                self.line_from = 0;
                Ok(Some(cr))
            }
            Line::Partial(at) => {
                self.line_from = at;
                Ok(None)
            }
        }
    }

    /// Inline commands, as telnet sends them: words split on blanks, with
    /// Redis's double and single quotes. Quoted words with escapes are not
    /// representable as ranges of the input, so they are refused rather
    /// than misread.
    fn inline(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        // Only the search for the newline resumes: the words are split once,
        // when the whole line is in.
        let window = buf.len().min(limits.max_inline.saturating_add(1));
        let from = self.line_from.min(window);
        let Some(i) = buf[from..window].iter().position(|&b| b == b'\n') else {
            self.examined += (window - from) as u64;
            self.line_from = window;
            if buf.len() > limits.max_inline {
                return Err(ProtoError::BigInline);
            }
            return Ok(None);
        };
        self.examined += i as u64 + 1;
        let nl = from + i;
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        self.examined += line_end as u64;
        split_inline(&buf[..line_end], args)?;
        Ok(Some(nl + 1))
    }
}

/// Splits an inline line into words.
fn split_inline(line: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), ProtoError> {
    let line_end = line.len();
    // Redis's sdssplitargs: blanks (isspace, so vertical tab too) are skipped
    // before a word; a bare word ends at space, tab, CR or LF. Forms
    // whose words Redis would build differently from a slice of the line
    // (escapes, quotes opening inside a word) are refused, never misread.
    let skip = |b: u8| b.is_ascii_whitespace() || b == 0x0b;
    // (A NUL, where Redis's C strings would end the line, stays in the word:
    // every byte is either skipped or taken, so the loop always advances.)
    let ends_word = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut i = 0;
    while i < line_end {
        let b = line[i];
        if skip(b) {
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' {
            let close = line[i + 1..line_end]
                .iter()
                .position(|&c| c == b)
                .ok_or(ProtoError::UnbalancedQuotes)?;
            let inner = i + 1..i + 1 + close;
            if line[inner.clone()].contains(&b'\\') {
                return Err(ProtoError::UnbalancedQuotes);
            }
            let after = inner.end + 1;
            if after < line_end && !ends_word(line[after]) {
                return Err(ProtoError::UnbalancedQuotes);
            }
            args.push(inner);
            i = after;
            continue;
        }
        let start = i;
        while i < line_end && !ends_word(line[i]) {
            if line[i] == b'"' || line[i] == b'\'' {
                return Err(ProtoError::UnbalancedQuotes);
            }
            i += 1;
        }
        args.push(start..i);
    }
    Ok(())
}

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

pub const OK: &[u8] = b"+OK\r\n";
pub const PONG: &[u8] = b"+PONG\r\n";
pub const NIL: &[u8] = b"$-1\r\n";
/// RESP3's null.
pub const NULL3: &[u8] = b"_\r\n";

/// An error reply: `-<msg>\r\n`, with any CR or LF in `msg` made a space so a
/// message can never break the framing.
pub fn error(msg: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    b.put_u8(b'-');
    b.extend(
        msg.bytes()
            .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    b.put_slice(b"\r\n");
    b.freeze()
}

/// [`error`] for a message holding client bytes, which Redis echoes as they
/// are (only CR and LF become spaces, as Redis maps them).
pub fn error_bytes(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    b.put_u8(b'-');
    b.extend(
        msg.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    b.put_slice(b"\r\n");
    b.freeze()
}

/// The null reply of the client's protocol: RESP3 has its own type.
pub fn null(resp3: bool) -> Bytes {
    Bytes::from_static(if resp3 { NULL3 } else { NIL })
}

/// A text reply as Redis sends INFO: a verbatim string (`=`, format `txt`)
/// in RESP3, a bulk string in RESP2.
pub fn verbatim(text: &[u8], resp3: bool) -> Bytes {
    if !resp3 {
        return bulk(text);
    }
    let mut b = BytesMut::with_capacity(text.len() + 24);
    put_int(&mut b, b'=', text.len() as i64 + 4);
    b.put_slice(b"txt:");
    b.put_slice(text);
    b.put_slice(b"\r\n");
    b.freeze()
}

pub fn put_int(out: &mut BytesMut, prefix: u8, v: i64) {
    out.put_u8(prefix);
    let mut buf = [0u8; 20];
    out.put_slice(fmt_int(v, &mut buf));
    out.put_slice(b"\r\n");
}

fn fmt_int(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

pub fn int(v: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    put_int(&mut b, b':', v);
    b.freeze()
}

pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_int(out, b'$', data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

pub fn bulk(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut b, data);
    b.freeze()
}

/// Encodes a command as a multibulk request.
pub fn put_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    put_int(out, b'*', args.len() as i64);
    for a in args {
        put_bulk(out, a);
    }
}

pub fn command(args: &[&[u8]]) -> Bytes {
    // Sized up front (a bulk header is at most 24 bytes with its CRLFs), so
    // building a sub-request never regrows the buffer.
    let len = 16 + args.iter().map(|a| a.len() + 24).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    put_command(&mut b, args.iter().copied());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(usize, Vec<Vec<u8>>)>;

    fn req(buf: &[u8]) -> Result<Parsed, ProtoError> {
        let mut args = Vec::new();
        let r = parse_request(buf, &mut args, &Limits::default())?;
        Ok(r.map(|n| (n, args.iter().map(|r| buf[r.clone()].to_vec()).collect())))
    }

    #[test]
    fn multibulk_request() {
        let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n*1\r\n";
        let (n, args) = req(buf).unwrap().unwrap();
        assert_eq!(n, 22);
        assert_eq!(args, vec![b"GET".to_vec(), b"foo".to_vec()]);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for i in 0..buf.len() {
            assert_eq!(req(&buf[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(req(buf).unwrap().unwrap().0, buf.len());
    }

    #[test]
    fn binary_bulk_with_crlf_inside() {
        let buf = b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n";
        let (_, args) = req(buf).unwrap().unwrap();
        assert_eq!(args[1], b"a\r\nb");
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(req(b"*0\r\n").unwrap().unwrap(), (4, vec![]));
        assert_eq!(req(b"*-1\r\n").unwrap().unwrap(), (5, vec![]));
    }

    #[test]
    fn malformed_requests() {
        let cases: &[(&[u8], ProtoError)] = &[
            (b"*abc\r\n", ProtoError::MultibulkLength),
            (b"*-5x\r\n", ProtoError::MultibulkLength),
            (b"*99999999999999999999\r\n", ProtoError::MultibulkLength),
            (b"*2000000\r\n", ProtoError::MultibulkLength),
            (b"*1\r\n$abc\r\n", ProtoError::BulkLength),
            (b"*1\r\n$-1\r\n", ProtoError::BulkLength),
            (b"*1\r\n$600000000\r\n", ProtoError::BulkLength),
            (b"*1\r\n+foo\r\n", ProtoError::ExpectedDollar(b'+')),
            (b"*1\r\n$3\r\nfooXY", ProtoError::MissingCrlf),
            (b"*1\r\n$2\r\nfoo\r\n", ProtoError::MissingCrlf),
            (b"*1111111111111111111111111111111111", ProtoError::BigCount),
            (b"SET \"a b\r\n", ProtoError::UnbalancedQuotes),
        ];
        for (input, want) in cases {
            assert_eq!(
                req(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = vec![b'a'; 70 * 1024];
        assert_eq!(req(&long), Err(ProtoError::BigInline));
    }

    #[test]
    fn inline_requests() {
        let (n, args) = req(b"SET  a  b\r\nGET a\r\n").unwrap().unwrap();
        assert_eq!(n, 11);
        assert_eq!(args, vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        // Where Redis would build a word differently from a slice of the
        // line, the request is refused rather than misread.
        for line in [
            &b"SET 'a\\' b'\r\n"[..],
            b"SET ab\"c d\"\r\n",
            b"GET a'b\r\n",
        ] {
            assert_eq!(req(line), Err(ProtoError::UnbalancedQuotes), "{line:?}");
        }
        // Vertical tab and form feed are skipped before a word, kept inside one.
        let (_, args) = req(b"\x0bGET\x0c a\x0bb\r\n").unwrap().unwrap();
        assert_eq!(args, vec![b"GET\x0c".to_vec(), b"a\x0bb".to_vec()]);
        let (_, args) = req(b"ECHO \"hello world\" 'x'\n").unwrap().unwrap();
        assert_eq!(
            args,
            vec![b"ECHO".to_vec(), b"hello world".to_vec(), b"x".to_vec()]
        );
        assert_eq!(req(b"\r\n").unwrap().unwrap(), (2, vec![]));
        assert_eq!(req(b"PING").unwrap(), None);
    }

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

    #[test]
    fn builders() {
        assert_eq!(&error("ERR a\r\nb")[..], b"-ERR a  b\r\n");
        assert_eq!(&error_bytes(b"ERR \xff\r\n")[..], b"-ERR \xff  \r\n");
        assert_eq!(&null(false)[..], b"$-1\r\n");
        assert_eq!(&null(true)[..], b"_\r\n");
        assert_eq!(&verbatim(b"a", false)[..], b"$1\r\na\r\n");
        assert_eq!(&verbatim(b"a\r\n", true)[..], b"=7\r\ntxt:a\r\n\r\n");
        assert_eq!(&int(-7)[..], b":-7\r\n");
        assert_eq!(&int(i64::MIN)[..], b":-9223372036854775808\r\n");
        assert_eq!(&bulk(b"hi")[..], b"$2\r\nhi\r\n");
        assert_eq!(
            &command(&[b"GET", b"k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

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
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut args = Vec::new();
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"*$:+-\r\n0123-abc";
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = parse_request(&buf, &mut args, &Limits::default());
            let _ = scan_reply(&buf);
            let _ = array_elements(&buf, &mut args);
        }
    }
}
