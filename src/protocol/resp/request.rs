//! Requests: Redis's multibulk and inline forms, parsed in place into
//! argument ranges, resuming across reads.

use std::ops::Range;

use super::{Limits, Line, ProtoError, find_line, parse_int};

/// The longest header line (`*123\r\n`, `$45\r\n`) worth waiting for.
const MAX_HEADER_LINE: usize = 32;

/// A frame's argument vector bigger than this is not kept by an idle
/// parser: one huge request must not pin its memory on a connection.
const KEEP_ARGS: usize = 4096;

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
}
