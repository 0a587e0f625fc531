//! Property tests of the RESP parsers and of the code that consumes their
//! output (command table, multi-key split and merge, rpc decoding).
//!
//! Inputs are drawn by proptest as a tape of bytes that every generator
//! reads its choices from (`Rng`, the one random source here): a failing
//! case is shrunk to a short tape of small bytes, i.e. few and simple
//! choices, and reported with it; its seed is kept in `regressions.txt`
//! in this folder (one file for all the properties, committed) and tried
//! first on every later run. The tapes come from a fixed seed, so every run checks
//! the same cases (`ASTER_PROPTEST_RANDOM=1` explores new ones).
//!
//! Properties:
//! - a stream of valid requests (multibulk with binary, empty and
//!   CRLF-laden arguments, skip frames, inline lines) parses to the same
//!   frames whatever way it is cut into reads, fed as a read loop does to
//!   one resuming `RequestParser`;
//! - the same for streams of replies of any type and nesting, with
//!   `array_elements` returning exactly the generated elements and
//!   `rpc::decode` the generated value;
//! - the split of MGET / MSET / DEL-like commands and the merge of the
//!   parts' replies give what a single Redis would have answered;
//! - random bytes and mutated frames never panic any parser nor the
//!   command table, reported frames lie within their input, and a parser
//!   says the same of a prefix as of the whole (an error or a frame seen in
//!   a prefix stays, a complete frame is incomplete in every shorter
//!   prefix);
//! - resuming parsers (`RequestParser`, `ReplyScanner`) fed any stream
//!   (valid, nested RESP3, mutated, over small limits) in any reads give
//!   exactly the frames, error or leftover of the whole stream;
//! - limits: an oversized count or bulk length is refused as soon as its
//!   header is in, an inline line longer than the limit as soon as the
//!   limit is passed.
//!
//! Defects found while writing these, since fixed, are pinned by the tests
//! at the end of the file.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use bytes::Bytes;

use proptest::arbitrary::any;
use proptest::prelude::Rng as _;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestRng, TestRunner};

use crate::net::rpc::{self, Value};
use crate::protocol::command::{self, Kind, Split};
use crate::protocol::multikey::{self, Plan};
use crate::protocol::resp::{self, Limits, ProtoError};

// ---------------------------------------------------------------------------
// PRNG and helpers

/// The seeds of past failures, one file for the properties of every file
/// here (proptest's `WithSource` would name one after each source file).
/// Absolute, as a test's working directory is cargo's choice.
const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/proptests/regressions.txt");

/// Cases per property: a u32 as proptest counts them.
fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures found are kept in one file for all the properties,
        // whichever file they sit in, and tried first on every later run
        // (committed).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        // Each case is cheap: shrinking may take many.
        max_shrink_iters: 100_000,
        ..Config::default()
    }
}

/// Runs `property` on `cases` random tapes; a failure is shrunk to a
/// shortest, smallest tape that still fails, and reported with it. The
/// tapes come from a fixed seed, so CI checks the same cases every run;
/// `ASTER_PROPTEST_RANDOM=1` draws new ones.
fn check(cases: u64, property: impl FnMut(&mut Rng)) {
    // The runner takes a `Fn`; the properties keep scratch buffers and
    // tallies across cases. A panic releases the borrow as it unwinds.
    let property = RefCell::new(property);
    let cfg = config(u32::try_from(cases).unwrap_or(u32::MAX));
    let mut runner = if std::env::var_os("ASTER_PROPTEST_RANDOM").is_some() {
        TestRunner::new(cfg)
    } else {
        let rng = TestRng::deterministic_rng(cfg.rng_algorithm);
        TestRunner::new_with_rng(cfg, rng)
    };
    let result = runner.run(&tape(), |tape| {
        (property.borrow_mut())(&mut Rng::from_tape(tape));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The tapes properties draw their choices from.
fn tape() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..TAPE_MAX)
}

const TAPE_MAX: usize = 4096;

/// The one random source of these properties: every choice a generator
/// makes is read from a tape of bytes that proptest draws, and shrinks
/// when a property fails. A shorter tape, or smaller bytes on it, means
/// fewer and smaller choices (past its end every choice is the first
/// one), so the input proptest reports is a small one, as Hypothesis does.
struct Rng {
    tape: Vec<u8>,
    at: usize,
}

impl Rng {
    fn from_tape(tape: Vec<u8>) -> Rng {
        Rng { tape, at: 0 }
    }

    /// A fixed tape of `len` bytes, for the few checks that draw from one
    /// long stream rather than from many cases.
    fn seeded(len: usize) -> Rng {
        let mut tape = vec![0; len];
        TestRng::deterministic_rng(Config::default().rng_algorithm).fill_bytes(&mut tape);
        Rng::from_tape(tape)
    }

    /// The next `n` bytes of the tape as a little-endian number (zeros
    /// past its end).
    fn take(&mut self, n: usize) -> u64 {
        let mut v = 0u64;
        for i in 0..n {
            let b = self.tape.get(self.at).copied().unwrap_or(0);
            self.at += 1;
            v |= u64::from(b) << (8 * i);
        }
        v
    }

    fn next(&mut self) -> u64 {
        self.take(8)
    }

    /// Uniform in `0..n` (0 when n is 0); as few bytes as `n` needs.
    fn below(&mut self, n: usize) -> usize {
        let bytes = match n {
            0 | 1 => return 0,
            2..=256 => 1,
            257..=65_536 => 2,
            _ => 8,
        };
        (self.take(bytes) % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn byte(&mut self) -> u8 {
        self.take(1) as u8
    }

    fn bytes_from(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

fn show(b: &[u8]) -> String {
    let s = b.escape_ascii().to_string();
    if s.len() > 300 {
        format!("{}... ({} bytes)", &s[..300], b.len())
    } else {
        s
    }
}

/// Bytes that matter to RESP framing, for generated and mutated inputs.
const SPECIAL: &[u8] = b"\r\n*$:+-_,#(!=~>%|0123456789 \t\"'\\";
const WORD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789_:{}.-";
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "7",
    "-1",
    "-2",
    "-0",
    "+1",
    "01",
    " 1",
    "1 ",
    "32",
    "33",
    "65535",
    "4294967296",
    "1099511627776",
    "536870912",
    "536870913",
    "1048576",
    "1048577",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "99999999999999999999",
    "",
    "x",
];

/// The command names of the table (`get`, `memory|usage`...), read from
/// the table's source so that the generated requests cover every entry
/// without reaching into the command module's private items.
fn table_names() -> Vec<&'static str> {
    let src = include_str!("../protocol/command/table.rs");
    let mut names = Vec::new();
    for (i, _) in src.match_indices("(\"") {
        let rest = &src[i + 2..];
        let Some(end) = rest.find('"') else { continue };
        let name = &rest[..end];
        let is_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'|' || b == b'-' || b == b'_');
        if is_name && rest[end..].starts_with("\",") {
            names.push(name);
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Words that steer key position lookups (options, counts, subcommands).
fn option_words() -> Vec<&'static [u8]> {
    [
        "streams",
        "STREAMS",
        "store",
        "StoreDist",
        "limit",
        "by",
        "get",
        "group",
        "count",
        "block",
        "noack",
        "claim",
        "usage",
        "encoding",
        "stream",
        "create",
        "help",
        "\u{ff}",
    ]
    .iter()
    .chain(NUMBERS)
    .map(|s| s.as_bytes())
    .collect()
}

/// Chunk sizes cutting a stream of `total` bytes into reads.
fn chunking(rng: &mut Rng, total: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = total;
    let mut mode = rng.below(6);
    if mode == 0 {
        return vec![total];
    }
    // Byte by byte costs a parser call per byte: kept to short streams.
    if mode == 1 && total > 2000 {
        mode = 2;
    }
    // Mode 5: a few cuts at random places.
    let cuts = rng.range(1, 3);
    while left > 0 {
        let n = match mode {
            1 => 1,
            2 => rng.range(1, 8),
            3 => rng.range(1, 100),
            4 => rng.range(1, 2000),
            _ => {
                if sizes.len() < cuts {
                    rng.range(0, left)
                } else {
                    left
                }
            }
        }
        .min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

// ---------------------------------------------------------------------------
// Request generation

/// A generated request: its bytes and the arguments it must parse to
/// (empty for a frame to skip).
struct Req {
    bytes: Vec<u8>,
    args: Vec<Vec<u8>>,
    inline: bool,
}

fn gen_arg(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => Vec::new(),
        1..=3 => {
            let n = rng.range(1, 12);
            rng.bytes_from(WORD, n)
        }
        4 | 5 => {
            let n = rng.range(0, 40);
            rng.random_bytes(n)
        }
        6 | 7 => {
            let n = rng.range(0, 30);
            rng.bytes_from(SPECIAL, n)
        }
        8 => rng.pick(NUMBERS).as_bytes().to_vec(),
        9 => rng
            .pick(&[
                &b"*1\r\n$3\r\nfoo\r\n"[..],
                b"\r\n",
                b"\r\n\r\n",
                b"$-1\r\n",
                b"\r",
                b"\n",
                b"*",
            ])
            .to_vec(),
        10 if rng.one_in(4) => {
            let n = rng.range(100, 300);
            rng.random_bytes(n)
        }
        _ => b"key".to_vec(),
    }
}

fn encode_multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn gen_multibulk(rng: &mut Rng, names: &[&str]) -> Req {
    let n = rng.range(1, 6);
    let mut args: Vec<Vec<u8>> = (0..n).map(|_| gen_arg(rng)).collect();
    if rng.one_in(2) {
        let name = pick_name(rng, names);
        args[0] = random_case(rng, command_word(name));
    }
    Req {
        bytes: encode_multibulk(&args),
        args,
        inline: false,
    }
}

/// The word a client sends for a table name: "memory|usage" is sent as
/// "memory" (the subcommand is the next argument).
fn command_word(name: &str) -> &[u8] {
    name.split('|').next().unwrap_or(name).as_bytes()
}

fn random_case(rng: &mut Rng, word: &[u8]) -> Vec<u8> {
    word.iter()
        .map(|&b| {
            if rng.one_in(2) {
                b.to_ascii_uppercase()
            } else {
                b
            }
        })
        .collect()
}

fn pick_name<'a>(rng: &mut Rng, names: &[&'a str]) -> &'a str {
    names[rng.below(names.len())]
}

fn pick_key<'a>(rng: &mut Rng, pool: &'a [Vec<u8>]) -> &'a [u8] {
    &pool[rng.below(pool.len())]
}

fn is_blank(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// An inline request: bare words (no blanks, no quotes), and whole words
/// in quotes without escapes, separated by runs of blanks.
fn gen_inline(rng: &mut Rng, names: &[&str]) -> Req {
    let mut bytes = Vec::new();
    let mut args = Vec::new();
    let blanks = |rng: &mut Rng, out: &mut Vec<u8>, min: usize| {
        let n = rng.range(min, 3);
        out.extend((0..n).map(|_| *rng.pick(b" \t")));
    };
    let lead = rng.one_in(5);
    if lead {
        blanks(rng, &mut bytes, 1);
    }
    let words = rng.range(0, 5);
    for w in 0..words {
        if w > 0 {
            blanks(rng, &mut bytes, 1);
        }
        let quote = rng.one_in(6).then(|| *rng.pick(b"\"'"));
        let word = match quote {
            Some(q) => {
                // Anything but the quote, a backslash (escapes are refused)
                // or a newline; blanks, CR and binary are fine.
                let n = rng.range(0, 12);
                let inner: Vec<u8> = (0..n)
                    .map(|_| {
                        loop {
                            let b = if rng.one_in(3) {
                                *rng.pick(b" \t\r")
                            } else {
                                rng.byte()
                            };
                            if b != q && b != b'\\' && b != b'\n' {
                                break b;
                            }
                        }
                    })
                    .collect();
                bytes.push(q);
                bytes.extend_from_slice(&inner);
                bytes.push(q);
                inner
            }
            None => {
                let word = if w == 0 && rng.one_in(2) {
                    let name = pick_name(rng, names);
                    random_case(rng, command_word(name))
                } else {
                    let n = rng.range(1, 10);
                    (0..n)
                        .map(|_| {
                            loop {
                                let b = if rng.one_in(2) {
                                    *rng.pick(WORD)
                                } else {
                                    rng.byte()
                                };
                                // Vertical tab: Redis skips it before a word.
                                if !is_blank(b) && b != 0x0b && b != b'"' && b != b'\'' {
                                    break b;
                                }
                            }
                        })
                        .collect()
                };
                // A line starting with '*' is a multibulk header.
                if w == 0 && !lead && word[0] == b'*' {
                    continue;
                }
                bytes.extend_from_slice(&word);
                word
            }
        };
        args.push(word);
    }
    if rng.one_in(4) {
        blanks(rng, &mut bytes, 1);
    }
    bytes.extend_from_slice(if rng.one_in(3) { b"\n" } else { b"\r\n" });
    Req {
        bytes,
        args,
        inline: true,
    }
}

fn gen_request(rng: &mut Rng, names: &[&str]) -> Req {
    match rng.below(12) {
        0 => Req {
            bytes: rng.pick(&[&b"*0\r\n"[..], b"*-1\r\n", b"*-7\r\n"]).to_vec(),
            args: Vec::new(),
            inline: false,
        },
        1..=3 => gen_inline(rng, names),
        _ => gen_multibulk(rng, names),
    }
}

type Frames = Vec<(usize, Vec<Vec<u8>>)>;
type Parsed = Result<Option<usize>, ProtoError>;

/// Feeds `stream` in reads of `chunks` bytes as the proxy's read loop
/// does: append, take every complete frame off the front, wait for more,
/// with one resuming parser. Returns the frames and what is left unparsed.
fn feed_requests(
    stream: &[u8],
    chunks: &[usize],
    limits: &Limits,
) -> Result<(Frames, usize), ProtoError> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut args = Vec::new();
    let mut parser = resp::RequestParser::default();
    let mut at = 0;
    for &c in chunks {
        buf.extend_from_slice(&stream[at..at + c]);
        at += c;
        while let Some(n) = parser.parse(&buf, &mut args, limits)? {
            assert!(
                n > 0 && n <= buf.len(),
                "frame of {n} in {} bytes",
                buf.len()
            );
            frames.push((n, args.iter().map(|r| buf[r.clone()].to_vec()).collect()));
            buf.drain(..n);
        }
    }
    Ok((frames, buf.len()))
}

// ---------------------------------------------------------------------------
// Reply generation

/// A generated reply: its bytes, the value `rpc::decode` must return
/// (`None` when it holds RESP3 types, which `decode` does not handle), and
/// for arrays the ranges of the elements.
struct Reply {
    bytes: Vec<u8>,
    value: Option<Value>,
    elements: Option<Vec<Range<usize>>>,
}

fn gen_int(rng: &mut Rng) -> i64 {
    match rng.below(4) {
        0 => rng.range(0, 10) as i64,
        1 => *rng.pick(&[i64::MAX, i64::MIN, i64::MIN + 1, -1, 1 << 53, -(1 << 40)]),
        2 => rng.next() as i64 >> rng.below(63),
        _ => -(rng.range(0, 1000) as i64),
    }
}

fn gen_text(rng: &mut Rng) -> Vec<u8> {
    // A simple string or error line: printable ASCII, no CR or LF.
    let n = rng.range(0, 20);
    (0..n).map(|_| rng.range(0x20, 0x7e) as u8).collect()
}

fn gen_bulk_data(rng: &mut Rng) -> Vec<u8> {
    let n = if rng.one_in(30) {
        rng.range(100, 400)
    } else {
        rng.range(0, 24)
    };
    if rng.one_in(2) {
        rng.bytes_from(SPECIAL, n)
    } else {
        rng.random_bytes(n)
    }
}

fn gen_reply(rng: &mut Rng, depth: usize, resp3: bool) -> Reply {
    let leaf = |bytes: Vec<u8>, value: Option<Value>| Reply {
        bytes,
        value,
        elements: None,
    };
    let aggregate = depth > 0 && rng.below(3) == 0;
    if aggregate {
        return gen_aggregate(rng, depth, resp3);
    }
    let kinds = if resp3 { 13 } else { 7 };
    match rng.below(kinds) {
        0 => {
            let t = gen_text(rng);
            let v = Value::Simple(String::from_utf8(t.clone()).unwrap());
            leaf([&b"+"[..], &t, b"\r\n"].concat(), Some(v))
        }
        1 => {
            let t = [&b"ERR "[..], &gen_text(rng)].concat();
            let v = Value::Error(String::from_utf8(t.clone()).unwrap());
            leaf([&b"-"[..], &t, b"\r\n"].concat(), Some(v))
        }
        2 => {
            let i = gen_int(rng);
            leaf(format!(":{i}\r\n").into_bytes(), Some(Value::Int(i)))
        }
        3 | 4 => {
            let d = gen_bulk_data(rng);
            let mut b = format!("${}\r\n", d.len()).into_bytes();
            b.extend_from_slice(&d);
            b.extend_from_slice(b"\r\n");
            leaf(b, Some(Value::Bulk(Some(d))))
        }
        5 => leaf(b"$-1\r\n".to_vec(), Some(Value::Bulk(None))),
        6 => leaf(b"*-1\r\n".to_vec(), Some(Value::Array(None))),
        // RESP3 scalars.
        7 => leaf(b"_\r\n".to_vec(), None),
        8 => leaf(
            rng.pick(&[&b",3.14\r\n"[..], b",-inf\r\n", b"#t\r\n", b"#f\r\n"])
                .to_vec(),
            None,
        ),
        9 => leaf(
            b"(3492890328409238509324850943850943825024385\r\n".to_vec(),
            None,
        ),
        10 => {
            let d = [&b"txt:"[..], &gen_bulk_data(rng)].concat();
            let mut b = format!("={}\r\n", d.len()).into_bytes();
            b.extend_from_slice(&d);
            b.extend_from_slice(b"\r\n");
            leaf(b, None)
        }
        11 => {
            let d = gen_bulk_data(rng);
            let mut b = format!("!{}\r\n", d.len()).into_bytes();
            b.extend_from_slice(&d);
            b.extend_from_slice(b"\r\n");
            leaf(b, None)
        }
        _ => leaf(b"$0\r\n\r\n".to_vec(), None),
    }
}

/// An array (or RESP3 set, push, map, attribute) of generated replies.
fn gen_aggregate(rng: &mut Rng, depth: usize, resp3: bool) -> Reply {
    let ty = if resp3 && rng.one_in(2) {
        *rng.pick(b"~>%|")
    } else {
        b'*'
    };
    let n = if rng.one_in(8) { 0 } else { rng.range(1, 4) };
    let children = match ty {
        b'%' => 2 * n,
        // n attribute pairs, then the value they annotate.
        b'|' => 2 * n + 1,
        _ => n,
    };
    let mut bytes = format!("{}{n}\r\n", ty as char).into_bytes();
    let mut elements = Vec::new();
    let mut values = Some(Vec::new());
    for _ in 0..children {
        let child = gen_reply(rng, depth - 1, resp3);
        let at = bytes.len();
        bytes.extend_from_slice(&child.bytes);
        elements.push(at..bytes.len());
        values = values.zip(child.value).map(|(mut vs, v)| {
            vs.push(v);
            vs
        });
    }
    let is_array = ty == b'*';
    Reply {
        bytes,
        value: values.filter(|_| is_array).map(|vs| Value::Array(Some(vs))),
        elements: is_array.then_some(elements),
    }
}

/// Feeds a stream of replies in reads of `chunks` bytes through one
/// resuming `ReplyScanner`; returns the frame lengths and what is left.
fn feed_replies(stream: &[u8], chunks: &[usize]) -> Result<(Vec<usize>, usize), ProtoError> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut scanner = resp::ReplyScanner::new();
    let mut at = 0;
    for &c in chunks {
        buf.extend_from_slice(&stream[at..at + c]);
        at += c;
        while let Some(n) = scanner.scan(&buf)? {
            assert!(
                n > 0 && n <= buf.len(),
                "reply of {n} in {} bytes",
                buf.len()
            );
            frames.push(n);
            buf.drain(..n);
        }
    }
    Ok((frames, buf.len()))
}

// ---------------------------------------------------------------------------
// Request streams

const STREAM_CASES: u64 = 3000;

#[test]
fn request_stream_parses_the_same_however_it_is_split() {
    let names = table_names();
    let limits = Limits::default();
    let frames_seen = Cell::new(0);
    check(STREAM_CASES, |rng| {
        let reqs: Vec<Req> = (0..rng.range(1, 8))
            .map(|_| gen_request(rng, &names))
            .collect();
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
        let want: Frames = reqs
            .iter()
            .map(|r| (r.bytes.len(), r.args.clone()))
            .collect();
        for _ in 0..3 {
            let chunks = chunking(rng, stream.len());
            let got = feed_requests(&stream, &chunks, &limits);
            assert_eq!(
                got,
                Ok((want.clone(), 0)),
                "chunks {chunks:?}, stream {}",
                show(&stream)
            );
        }
        frames_seen.set(frames_seen.get() + reqs.len());
    });
    assert!(frames_seen.get() > STREAM_CASES as usize * 3);
}

#[test]
fn every_proper_prefix_of_a_request_is_incomplete() {
    let names = table_names();
    let limits = Limits::default();
    let mut args = Vec::new();
    check(STREAM_CASES, |rng| {
        let req = gen_request(rng, &names);
        for k in 0..req.bytes.len() {
            assert_eq!(
                resp::parse_request(&req.bytes[..k], &mut args, &limits),
                Ok(None),
                "prefix {k} of {}",
                show(&req.bytes)
            );
        }
        // And whatever follows the frame does not change it.
        let mut more = req.bytes.clone();
        more.extend(rng.random_bytes(8));
        let n = resp::parse_request(&more, &mut args, &limits);
        assert_eq!(n, Ok(Some(req.bytes.len())));
        let got: Vec<&[u8]> = args.iter().map(|r| &more[r.clone()]).collect();
        assert_eq!(got, req.args, "inline {}", req.inline);
    });
}

// ---------------------------------------------------------------------------
// Reply streams

#[test]
fn reply_stream_scans_the_same_however_it_is_split() {
    let mut out = Vec::new();
    let arrays = Cell::new(0);
    check(STREAM_CASES, |rng| {
        let resp3 = rng.one_in(3);
        let replies: Vec<Reply> = (0..rng.range(1, 6))
            .map(|_| gen_reply(rng, 3, resp3))
            .collect();
        let stream: Vec<u8> = replies.iter().flat_map(|r| r.bytes.clone()).collect();
        let want: Vec<usize> = replies.iter().map(|r| r.bytes.len()).collect();
        for _ in 0..3 {
            let chunks = chunking(rng, stream.len());
            assert_eq!(
                feed_replies(&stream, &chunks),
                Ok((want.clone(), 0)),
                "chunks {chunks:?}, stream {}",
                show(&stream)
            );
        }
        for r in &replies {
            // Every proper prefix is incomplete.
            let k = rng.below(r.bytes.len());
            assert_eq!(resp::scan_reply(&r.bytes[..k]), Ok(None));
            match &r.elements {
                Some(elements) => {
                    arrays.set(arrays.get() + 1);
                    assert_eq!(
                        resp::array_elements(&r.bytes, &mut out),
                        Some(()),
                        "{}",
                        show(&r.bytes)
                    );
                    assert_eq!(&out, elements, "{}", show(&r.bytes));
                }
                // A nil array is an array of nothing to array_elements.
                None if r.bytes.starts_with(b"*") => {}
                None => assert_eq!(resp::array_elements(&r.bytes, &mut out), None),
            }
            if let Some(v) = &r.value {
                assert_eq!(
                    rpc::decode(&r.bytes).as_ref(),
                    Some(v),
                    "{}",
                    show(&r.bytes)
                );
            }
            if let Some(Value::Int(i)) = r.value {
                assert_eq!(resp::int_reply(&r.bytes), Some(i));
            } else {
                assert_eq!(resp::int_reply(&r.bytes), None);
            }
        }
    });
    assert!(
        arrays.get() > 1000,
        "only {} arrays generated",
        arrays.get()
    );
}

#[test]
fn deep_replies() {
    // A chain of single-element arrays: scan_reply and array_elements go
    // to any depth; rpc::decode stops at 64 levels below the top.
    for depth in [1, 2, 63, 64, 65, 1000] {
        let mut r = b"*1\r\n".repeat(depth);
        r.extend_from_slice(b":7\r\n");
        assert_eq!(resp::scan_reply(&r), Ok(Some(r.len())));
        let mut out = Vec::new();
        assert_eq!(resp::array_elements(&r, &mut out), Some(()));
        assert_eq!(out, vec![4..r.len()]);
        let decoded = rpc::decode(&r);
        assert_eq!(decoded.is_some(), depth <= 64, "depth {depth}");
    }
}

#[test]
fn int_replies_round_trip() {
    let mut rng = Rng::seeded(5000 * 8);
    for i in 0..5000 {
        let v = if i < 64 {
            (1i64 << i).wrapping_sub(1)
        } else {
            gen_int(&mut rng)
        };
        for v in [v, v.wrapping_neg(), !v] {
            assert_eq!(resp::int_reply(&resp::int(v)), Some(v));
            assert_eq!(rpc::decode(&resp::int(v)), Some(Value::Int(v)));
            assert_eq!(resp::parse_int(v.to_string().as_bytes()), Some(v));
        }
    }
}

// ---------------------------------------------------------------------------
// Random and mutated input: no panics, and consistent answers on prefixes

/// Mutates `buf` in place: bit flips, framing bytes, insertions,
/// deletions, truncation, duplicated slices, and numbers swapped for
/// boundary values.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, numbers: &[&str]) {
    for _ in 0..rng.range(1, 4) {
        let len = buf.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => buf[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => buf[at.min(len - 1)] = *rng.pick(SPECIAL),
            2 => buf.insert(at, *rng.pick(SPECIAL)),
            3 if at < len => {
                buf.remove(at);
            }
            4 => buf.truncate(at),
            5 => {
                let end = rng.range(at, len.min(at + 40));
                let copy = buf[at..end].to_vec();
                let to = rng.below(buf.len() + 1);
                buf.splice(to..to, copy);
            }
            6 => {
                // Replace the run of digits at or after `at`.
                if let Some(start) = buf[at..].iter().position(u8::is_ascii_digit) {
                    let start = at + start;
                    let end = start
                        + buf[start..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                    let start = if start > 0 && buf[start - 1] == b'-' {
                        start - 1
                    } else {
                        start
                    };
                    buf.splice(start..end, rng.pick(numbers).bytes());
                }
            }
            7 if len > 1 => {
                let other = rng.below(len);
                buf.swap(at.min(len - 1), other);
            }
            _ => {
                let header = [*rng.pick(b"*$:+-%|~_"), b'\r', b'\n'];
                buf.splice(at..at, header);
            }
        }
    }
}

/// Every parser on `buf`, with the invariants that hold for any input.
fn exercise(rng: &mut Rng, buf: &[u8], words: &[&[u8]]) {
    let ctx = || show(buf);
    let small = Limits {
        max_bulk: rng.range(0, 40),
        max_args: rng.range(1, 6),
        max_inline: rng.range(1, 60),
    };
    let mut args = Vec::new();
    for limits in [Limits::default(), small] {
        // The stream of requests, frame after frame.
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            let got = resp::parse_request(rest, &mut args, &limits);
            let Ok(Some(n)) = got else { break };
            assert!(n > 0 && n <= rest.len(), "{}", ctx());
            let mut end = 0;
            for r in &args {
                assert!(r.start >= end && r.end <= n, "{}", ctx());
                end = r.end;
            }
            if rest[0] == b'*' {
                assert!(args.len() <= limits.max_args, "{}", ctx());
                assert!(args.iter().all(|r| r.len() <= limits.max_bulk), "{}", ctx());
            }
            let argv: Vec<&[u8]> = args.iter().map(|r| &rest[r.clone()]).collect();
            exercise_command(rng, &argv);
            at += n;
        }
        // What a prefix says, the whole says.
        let k = rng.below(buf.len() + 1);
        prefix_consistent_request(buf, k, &limits);
    }

    // The stream of replies.
    let mut at = 0;
    let mut out = Vec::new();
    while at < buf.len() {
        let rest = &buf[at..];
        let Ok(Some(n)) = resp::scan_reply(rest) else {
            break;
        };
        assert!(n > 0 && n <= rest.len(), "{}", ctx());
        let frame = &rest[..n];
        check_array_elements(frame, &mut out);
        let _ = rpc::decode(frame);
        let _ = resp::int_reply(frame);
        at += n;
    }
    let k = rng.below(buf.len() + 1);
    prefix_consistent_reply(buf, k);

    // And the whole buffer as if it were one reply.
    let _ = resp::array_elements(buf, &mut out);
    let _ = resp::int_reply(buf);
    let _ = rpc::decode(buf);

    // Random words as a command.
    if !buf.is_empty() {
        let argv: Vec<&[u8]> = buf
            .split(|&b| b == b' ')
            .chain((0..rng.below(4)).map(|_| *rng.pick(words)))
            .collect();
        exercise_command(rng, &argv);
    }
}

/// `array_elements` on a frame `scan_reply` accepted: an array of n gives n
/// contiguous elements, each a complete reply, ending with the frame.
fn check_array_elements(frame: &[u8], out: &mut Vec<Range<usize>>) {
    let got = resp::array_elements(frame, out);
    if frame[0] != b'*' {
        assert_eq!(got, None, "{}", show(frame));
        return;
    }
    assert_eq!(got, Some(()), "{}", show(frame));
    let header = frame.iter().position(|&b| b == b'\r').unwrap() + 2;
    let n = resp::parse_int(&frame[1..header - 2]).unwrap();
    assert_eq!(out.len() as i64, n.max(0), "{}", show(frame));
    let mut at = header;
    for r in out.iter() {
        assert_eq!(r.start, at, "{}", show(frame));
        assert_eq!(
            resp::scan_reply(&frame[r.clone()]),
            Ok(Some(r.len())),
            "{}",
            show(frame)
        );
        at = r.end;
    }
    assert_eq!(at, frame.len(), "{}", show(frame));
}

fn prefix_consistent_request(buf: &[u8], k: usize, limits: &Limits) {
    let mut args = Vec::new();
    let mut prefix_args = Vec::new();
    let whole = resp::parse_request(buf, &mut args, limits);
    let part = resp::parse_request(&buf[..k], &mut prefix_args, limits);
    let ctx = || format!("prefix {k} of {}", show(buf));
    match (part, whole) {
        (Ok(None), Ok(Some(n))) => assert!(k < n, "{}", ctx()),
        (Ok(None), _) => {}
        (Ok(Some(n)), Ok(Some(m))) => {
            assert_eq!(n, m, "{}", ctx());
            assert_eq!(prefix_args, args, "{}", ctx());
        }
        (p, w) => assert_eq!(p, w, "{}", ctx()),
    }
}

fn prefix_consistent_reply(buf: &[u8], k: usize) {
    let whole = resp::scan_reply(buf);
    let part = resp::scan_reply(&buf[..k]);
    let ctx = || format!("prefix {k} of {}", show(buf));
    match (part, whole) {
        (Ok(None), Ok(Some(n))) => assert!(k < n, "{}", ctx()),
        (Ok(None), _) => {}
        (p, w) => assert_eq!(p, w, "{}", ctx()),
    }
}

/// Command lookup and key positions on any arguments; for split commands,
/// the split and merge as the dispatcher runs them.
fn exercise_command(rng: &mut Rng, argv: &[&[u8]]) {
    let Some(cmd) = command::lookup_request(argv) else {
        return;
    };
    let ctx = || format!("{} {argv:?}", cmd.name);
    let (container, sub) = cmd.name.split_once('|').unwrap_or((cmd.name, ""));
    assert!(
        argv[0].eq_ignore_ascii_case(container.as_bytes()),
        "{}",
        ctx()
    );
    if !sub.is_empty() {
        assert!(argv[1].eq_ignore_ascii_case(sub.as_bytes()), "{}", ctx());
    }
    let Ok(p) = cmd.key_positions(argv) else {
        return;
    };
    let keys: Vec<usize> = p.iter().collect();
    assert_eq!(keys.len(), p.count(), "{}", ctx());
    assert!(keys.iter().all(|&i| i >= 1 && i < argv.len()), "{}", ctx());
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{}", ctx());
    if let Kind::Split(split) = cmd.kind
        && !keys.is_empty()
    {
        check_split(rng, split, argv);
    }
}

// ---------------------------------------------------------------------------
// Multi-key split and merge

fn fnv(b: &[u8], seed: u64) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Splits `argv` (a valid MGET / MSET / DEL-like request) over up to four
/// groups, answers every part as a Redis would, and checks the merged
/// reply against the one a single Redis would have sent.
fn check_split(rng: &mut Rng, split: Split, argv: &[&[u8]]) {
    let ctx = || format!("{split:?} {argv:?}");
    let seed = rng.next();
    let groups = rng.range(1, 4) as u64;
    let group_of = |k: &[u8]| fnv(k, seed) % groups;
    // Servers are distinct from groups (cluster mode: slot -> server).
    let server_of = |g: u64| (g as usize * 7) % 5;
    let step = if split == Split::Mset { 2 } else { 1 };
    let keys: Vec<&[u8]> = argv[1..].iter().step_by(step).copied().collect();
    // A key "exists" with a value derived from it, or not.
    let value_of = |k: &[u8]| (!fnv(k, !seed).is_multiple_of(3)).then(|| [k, b"\r\n=v"].concat());

    let plan = multikey::plan(split, argv, |k| {
        let g = group_of(k);
        Some((g, server_of(g)))
    })
    .unwrap_or_else(|e| panic!("{e:?}: {}", ctx()));
    let mut distinct: Vec<u64> = keys.iter().map(|k| group_of(k)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let (parts, mut gather) = match plan {
        Plan::Whole { group, server } => {
            assert_eq!(distinct.len(), 1, "{}", ctx());
            assert_eq!(group, distinct[0], "{}", ctx());
            assert_eq!(server, server_of(distinct[0]), "{}", ctx());
            return;
        }
        Plan::Parts(parts, gather) => (parts, gather),
    };
    assert_eq!(parts.len(), distinct.len(), "{}", ctx());

    // Each part is a well-formed request for keys of one group, in the
    // client's order, and together they hold every key once.
    let mut seen: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut replies = Vec::new();
    let mut expect_sum: i64 = 0;
    let mut args = Vec::new();
    for part in &parts {
        let (server, req) = (&part.server, &part.req);
        let n = resp::parse_request(req, &mut args, &Limits::default());
        assert_eq!(n, Ok(Some(req.len())), "{}", ctx());
        let sub: Vec<&[u8]> = args.iter().map(|r| &req[r.clone()]).collect();
        assert_eq!(sub[0], argv[0], "{}", ctx());
        assert_eq!((sub.len() - 1) % step, 0, "{}", ctx());
        let sub_keys: Vec<&[u8]> = sub[1..].iter().step_by(step).copied().collect();
        let g = group_of(sub_keys[0]);
        assert!(sub_keys.iter().all(|k| group_of(k) == g), "{}", ctx());
        assert_eq!(*server, server_of(g), "{}", ctx());
        assert_eq!(part.group, g, "{}", ctx());
        let reply = match split {
            Split::Mget => {
                let mut r = format!("*{}\r\n", sub_keys.len()).into_bytes();
                for k in &sub_keys {
                    match value_of(k) {
                        Some(v) => r.extend(resp::bulk(&v)),
                        None => r.extend_from_slice(resp::NIL),
                    }
                }
                r
            }
            Split::Mset => resp::OK.to_vec(),
            Split::SumInt => {
                let c = rng.range(0, sub_keys.len()) as i64;
                expect_sum += c;
                format!(":{c}\r\n").into_bytes()
            }
        };
        replies.push(Bytes::from(reply));
        seen.push(sub[1..].iter().map(|a| a.to_vec()).collect());
    }
    // Reassemble the client's argument list from the parts' in key order.
    let mut cursors = vec![0; parts.len()];
    for (i, k) in keys.iter().enumerate() {
        let g = group_of(k);
        let p = seen
            .iter()
            .position(|s| group_of(&s[0]) == g)
            .unwrap_or_else(|| panic!("no part for key {i}: {}", ctx()));
        let c = cursors[p];
        assert_eq!(seen[p][c], *k, "key {i}: {}", ctx());
        if step == 2 {
            assert_eq!(seen[p][c + 1], argv[2 + 2 * i], "value {i}: {}", ctx());
        }
        cursors[p] += step;
    }
    assert!(
        cursors.iter().zip(&seen).all(|(&c, s)| c == s.len()),
        "{}",
        ctx()
    );

    // Faults: one part fails, or answers something unexpected.
    let fault = rng.below(6);
    let faulty = rng.below(parts.len());
    match fault {
        0 => replies[faulty] = resp::error(&format!("ERR boom {faulty}")),
        1 => {
            replies[faulty] = Bytes::from_static(match split {
                Split::Mget => b"*0\r\n",
                Split::Mset => b"+QUEUED\r\n",
                Split::SumInt => b"$1\r\n1\r\n",
            })
        }
        _ => {}
    }

    // Fill in a random order, with a duplicate and an out-of-range part.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut merged = None;
    for (i, &p) in order.iter().enumerate() {
        let r = gather.fill(p as u32, replies[p].clone());
        if i + 1 < order.len() {
            assert!(r.is_none(), "{}", ctx());
            assert!(gather.fill(p as u32, replies[p].clone()).is_none());
            assert!(gather.fill(parts.len() as u32, resp::OK.into()).is_none());
        } else {
            merged = r;
        }
    }
    let merged = merged.unwrap_or_else(|| panic!("no merged reply: {}", ctx()));
    assert_eq!(
        resp::scan_reply(&merged),
        Ok(Some(merged.len())),
        "{}",
        ctx()
    );
    let want: Vec<u8> = match (fault, split) {
        (0, _) => format!("-ERR boom {faulty}\r\n").into_bytes(),
        (1, _) => {
            assert!(resp::is_error(&merged), "{}", ctx());
            return;
        }
        (_, Split::Mget) => {
            let mut r = format!("*{}\r\n", keys.len()).into_bytes();
            for k in &keys {
                match value_of(k) {
                    Some(v) => r.extend(resp::bulk(&v)),
                    None => r.extend_from_slice(resp::NIL),
                }
            }
            r
        }
        (_, Split::Mset) => resp::OK.to_vec(),
        (_, Split::SumInt) => format!(":{expect_sum}\r\n").into_bytes(),
    };
    assert_eq!(show(&merged), show(&want), "{}", ctx());
}

#[test]
fn split_commands_merge_like_a_single_redis() {
    let mut rng = Rng::seeded(64);
    let pool: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            if i < 8 {
                format!("k{i}").into_bytes()
            } else {
                let n = rng.range(0, 6);
                rng.bytes_from(SPECIAL, n)
            }
        })
        .collect();
    let names: [(&[u8], Split); 6] = [
        (b"MGET", Split::Mget),
        (b"mset", Split::Mset),
        (b"DEL", Split::SumInt),
        (b"unlink", Split::SumInt),
        (b"Exists", Split::SumInt),
        (b"TOUCH", Split::SumInt),
    ];
    check(2000, |rng| {
        let (name, split) = *rng.pick(&names);
        let nkeys = rng.range(1, 10);
        let mut argv: Vec<&[u8]> = vec![name];
        for _ in 0..nkeys {
            argv.push(pick_key(rng, &pool));
            if split == Split::Mset {
                argv.push(pick_key(rng, &pool));
            }
        }
        let cmd = command::lookup_request(&argv).expect("split command in the table");
        assert_eq!(cmd.kind, Kind::Split(split));
        assert_eq!(cmd.key_positions(&argv).map(|p| p.count()), Ok(nkeys));
        check_split(rng, split, &argv);
    });
}

const FUZZ_CASES: u64 = 15_000;

#[test]
fn random_bytes_never_panic_and_prefixes_agree() {
    let words = option_words();
    check(FUZZ_CASES, |rng| {
        let len = rng.range(0, 64);
        let buf = match rng.below(3) {
            0 => rng.random_bytes(len),
            _ => rng.bytes_from(SPECIAL, len),
        };
        exercise(rng, &buf, &words);
    });
}

#[test]
fn mutated_frames_never_panic_and_prefixes_agree() {
    let names = table_names();
    let words = option_words();
    check(FUZZ_CASES, |rng| {
        let mut buf: Vec<u8> = Vec::new();
        let requests = rng.one_in(2);
        for _ in 0..rng.range(1, 4) {
            if requests {
                buf.extend(gen_request(rng, &names).bytes);
            } else {
                let resp3 = rng.one_in(3);
                buf.extend(gen_reply(rng, 3, resp3).bytes);
            }
        }
        mutate(rng, &mut buf, NUMBERS);
        exercise(rng, &buf, &words);
    });
}

#[test]
fn random_commands_never_panic() {
    let names = table_names();
    assert!(names.len() > 200, "table names not found: {}", names.len());
    assert!(
        names
            .iter()
            .all(|n| command::lookup(n.as_bytes()).is_some() || n.contains('|'))
    );
    let words = option_words();
    let splits = Cell::new(0);
    check(20_000, |rng| {
        let name = *rng.pick(&names);
        let mut argv: Vec<Vec<u8>> = vec![random_case(rng, command_word(name))];
        if let Some((_, sub)) = name.split_once('|') {
            argv.push(random_case(rng, sub.as_bytes()));
        }
        for _ in 0..rng.below(10) {
            argv.push(match rng.below(4) {
                0 => gen_arg(rng),
                _ => rng.pick(&words).to_vec(),
            });
        }
        let argv: Vec<&[u8]> = argv.iter().map(|a| &a[..]).collect();
        let cmd = command::lookup_request(&argv).expect("a table name");
        if !name.contains('|') {
            // Case-insensitive, and the entry of that very name.
            let exact = command::lookup(name.as_bytes()).expect("a table name");
            assert_eq!(exact.name, name);
            assert_eq!(command::lookup(argv[0]), Some(exact));
        }
        if matches!(cmd.kind, Kind::Split(_)) {
            splits.set(splits.get() + 1);
        }
        exercise_command(rng, &argv);
        // Random bytes as a name.
        let n = rng.range(0, 24);
        let junk = rng.random_bytes(n);
        let _ = command::lookup(&junk);
    });
    assert!(splits.get() > 100);
}

// ---------------------------------------------------------------------------
// Resuming parsers against the whole stream

/// Frame after frame over the whole stream with the parsers that start
/// from scratch: the frames, then the error or what is left.
fn whole_requests(stream: &[u8], limits: &Limits) -> (Frames, Result<usize, ProtoError>) {
    let mut args = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        match resp::parse_request(rest, &mut args, limits) {
            Ok(Some(n)) => {
                frames.push((n, args.iter().map(|r| rest[r.clone()].to_vec()).collect()));
                at += n;
            }
            Ok(None) => return (frames, Ok(rest.len())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

fn whole_replies(stream: &[u8]) -> (Vec<usize>, Result<usize, ProtoError>) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        match resp::scan_reply(rest) {
            Ok(Some(n)) => {
                frames.push(n);
                at += n;
            }
            Ok(None) => return (frames, Ok(rest.len())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// The same stream, fed in reads to one resuming parser.
fn resumed_requests(
    stream: &[u8],
    chunks: &[usize],
    limits: &Limits,
) -> (Frames, Result<usize, ProtoError>) {
    let mut parser = resp::RequestParser::default();
    let mut args = Vec::new();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0;
    for &c in chunks {
        buf.extend_from_slice(&stream[at..at + c]);
        at += c;
        loop {
            match parser.parse(&buf, &mut args, limits) {
                Ok(Some(n)) => {
                    frames.push((n, args.iter().map(|r| buf[r.clone()].to_vec()).collect()));
                    buf.drain(..n);
                    assert!(parser.is_idle());
                }
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

fn resumed_replies(stream: &[u8], chunks: &[usize]) -> (Vec<usize>, Result<usize, ProtoError>) {
    let mut scanner = resp::ReplyScanner::new();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0;
    for &c in chunks {
        buf.extend_from_slice(&stream[at..at + c]);
        at += c;
        loop {
            match scanner.scan(&buf) {
                Ok(Some(n)) => {
                    frames.push(n);
                    buf.drain(..n);
                    assert!(scanner.is_idle());
                }
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

/// Whatever the stream (valid, with nested RESP3 replies, mutated, over
/// the limits) and however it is cut into reads, the resuming parser and
/// scanner give exactly what the whole stream gives: the same frames and
/// arguments, then the same error or the same bytes left over.
#[test]
fn resuming_parsers_agree_with_the_whole_stream() {
    let names = table_names();
    let errors = [Cell::new(0usize), Cell::new(0)];
    check(FUZZ_CASES, |rng| {
        let limits = if rng.one_in(2) {
            Limits::default()
        } else {
            Limits {
                max_bulk: rng.range(0, 64),
                max_args: rng.range(1, 8),
                max_inline: rng.range(1, 80),
            }
        };
        let requests = rng.one_in(2);
        let mut stream: Vec<u8> = Vec::new();
        for _ in 0..rng.range(1, 5) {
            if requests {
                stream.extend(gen_request(rng, &names).bytes);
            } else {
                let resp3 = rng.one_in(2);
                stream.extend(gen_reply(rng, 4, resp3).bytes);
            }
        }
        if rng.one_in(3) {
            mutate(rng, &mut stream, NUMBERS);
        }
        let ctx = |chunks: &[usize]| format!("{limits:?}, chunks {chunks:?}: {}", show(&stream));
        if requests {
            let whole = whole_requests(&stream, &limits);
            errors[0].set(errors[0].get() + usize::from(whole.1.is_err()));
            for _ in 0..3 {
                let chunks = chunking(rng, stream.len());
                assert_eq!(
                    resumed_requests(&stream, &chunks, &limits),
                    whole,
                    "{}",
                    ctx(&chunks)
                );
            }
        } else {
            let whole = whole_replies(&stream);
            errors[1].set(errors[1].get() + usize::from(whole.1.is_err()));
            for _ in 0..3 {
                let chunks = chunking(rng, stream.len());
                assert_eq!(resumed_replies(&stream, &chunks), whole, "{}", ctx(&chunks));
            }
        }
    });
    // Errors, limits among them, were exercised on both sides.
    assert!(errors.iter().all(|n| n.get() > 300), "{errors:?}");
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn limits_are_enforced_before_the_data_arrives() {
    let names = table_names();
    let mut args = Vec::new();
    let refused = [Cell::new(0usize), Cell::new(0), Cell::new(0)];
    check(STREAM_CASES, |rng| {
        let limits = Limits {
            max_bulk: rng.range(0, 64),
            max_args: rng.range(1, 8),
            max_inline: rng.range(1, 80),
        };
        let req = if rng.one_in(3) {
            gen_inline(rng, &names)
        } else {
            gen_multibulk(rng, &names)
        };
        let b = &req.bytes;
        let ctx = || format!("{limits:?}: {}", show(b));
        // Where the frame must be refused, and why.
        let refusal: Option<(usize, ProtoError)> = if req.inline {
            let nl = b.len() - 1;
            (nl > limits.max_inline).then_some((limits.max_inline + 1, ProtoError::BigInline))
        } else {
            let header = b.iter().position(|&c| c == b'\n').unwrap() + 1;
            if req.args.len() > limits.max_args {
                Some((header, ProtoError::MultibulkLength))
            } else {
                let mut at = header;
                let mut refusal = None;
                for a in &req.args {
                    let hdr = format!("${}\r\n", a.len()).len();
                    if a.len() > limits.max_bulk {
                        refusal = Some((at + hdr, ProtoError::BulkLength));
                        break;
                    }
                    at += hdr + a.len() + 2;
                }
                refusal
            }
        };
        match refusal {
            Some((at, err)) => {
                let n = &refused[match err {
                    ProtoError::BigInline => 0,
                    ProtoError::MultibulkLength => 1,
                    _ => 2,
                }];
                n.set(n.get() + 1);
                // Refused as soon as the offending header is in...
                assert_eq!(
                    resp::parse_request(&b[..at], &mut args, &limits),
                    Err(err),
                    "{}",
                    ctx()
                );
                // ...and not a byte earlier.
                assert_eq!(
                    resp::parse_request(&b[..at - 1], &mut args, &limits),
                    Ok(None),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    resp::parse_request(b, &mut args, &limits),
                    Err(err),
                    "{}",
                    ctx()
                );
            }
            None => {
                assert_eq!(
                    resp::parse_request(b, &mut args, &limits),
                    Ok(Some(b.len())),
                    "{}",
                    ctx()
                );
                assert_eq!(args.len(), req.args.len(), "{}", ctx());
            }
        }

        // Bare headers against the limits.
        let count = rng.range(1, 10);
        let hdr = format!("*{count}\r\n");
        let want = if count > limits.max_args {
            Err(ProtoError::MultibulkLength)
        } else {
            Ok(None)
        };
        assert_eq!(
            resp::parse_request(hdr.as_bytes(), &mut args, &limits),
            want
        );
        let len = rng.range(0, 100);
        let hdr = format!("*1\r\n${len}\r\n");
        let want = if len > limits.max_bulk {
            Err(ProtoError::BulkLength)
        } else {
            Ok(None)
        };
        assert_eq!(
            resp::parse_request(hdr.as_bytes(), &mut args, &limits),
            want
        );
    });
    assert!(refused.iter().all(|n| n.get() > 50), "{refused:?}");

    // The defaults are Redis's.
    let d = Limits::default();
    let cases: &[(&[u8], Parsed)] = &[
        (b"*1\r\n$536870912\r\n", Ok(None)),
        (b"*1\r\n$536870913\r\n", Err(ProtoError::BulkLength)),
        (b"*1048576\r\n", Ok(None)),
        (b"*1048577\r\n", Err(ProtoError::MultibulkLength)),
        (
            b"*9223372036854775807\r\n",
            Err(ProtoError::MultibulkLength),
        ),
        (
            b"*1\r\n$9223372036854775807\r\n",
            Err(ProtoError::BulkLength),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(resp::parse_request(input, &mut args, &d), *want);
    }
    let long = vec![b'a'; d.max_inline];
    assert_eq!(resp::parse_request(&long, &mut args, &d), Ok(None));
    let longer = vec![b'a'; d.max_inline + 1];
    assert_eq!(
        resp::parse_request(&longer, &mut args, &d),
        Err(ProtoError::BigInline)
    );
}

// ---------------------------------------------------------------------------
// Defects found by these properties and the fuzzers, fixed; each test
// failed before its fix.

/// scan_reply adds every aggregate's declared count to a u64 of pending
/// elements; three `*9223372036854775807` headers (or two `%` ones)
/// overflow it: a panic with overflow checks (tests, fuzzing), a wrapped
/// counter in release builds, which can end a frame in the wrong place.
#[test]
fn scan_reply_pending_overflow() {
    let inputs: &[&[u8]] = &[
        b"*9223372036854775807\r\n*9223372036854775807\r\n*9223372036854775807\r\n",
        b"*2\r\n%9223372036854775807\r\n%9223372036854775807\r\n",
        b"*2\r\n|9223372036854775807\r\n",
        // As found by `cargo fuzz run reply` (minimized).
        b"*3\r\n|9223372036854775807\r\n",
    ];
    // Counts no stream could ever hold are refused, not left to wrap.
    for input in inputs {
        assert!(resp::scan_reply(input).is_err(), "{}", show(input));
    }
    // One such header alone is merely incomplete.
    assert_eq!(resp::scan_reply(b"*9223372036854775807\r\n"), Ok(None));
}

/// `resp::int(i64::MIN)` writes a reply that `int_reply`, `parse_int` and
/// `rpc::decode` refuse: parse_int accumulates the magnitude as a positive
/// i64, which cannot hold 2^63.
#[test]
fn int_min_roundtrip() {
    let r = resp::int(i64::MIN);
    assert_eq!(resp::int_reply(&r), Some(i64::MIN));
    assert_eq!(rpc::decode(&r), Some(Value::Int(i64::MIN)));
}

/// Limits near usize::MAX (the config accepts any usize): max_args is cast
/// to i64 (usize::MAX becomes -1, refusing every multibulk request) and
/// max_inline + 1 overflows (a panic with overflow checks; in release,
/// `take(0)` never finds the newline, so inline requests never complete).
#[test]
fn extreme_limits() {
    let huge = Limits {
        max_bulk: usize::MAX,
        max_args: usize::MAX,
        max_inline: usize::MAX,
    };
    let mut args = Vec::new();
    let req = b"*1\r\n$4\r\nPING\r\n";
    assert_eq!(
        resp::parse_request(req, &mut args, &huge),
        Ok(Some(req.len()))
    );
    assert_eq!(
        resp::parse_request(b"PING\r\n", &mut args, &huge),
        Ok(Some(6))
    );
}

/// An attribute map annotates the value after it, even when the map is
/// empty: scan_reply only adds that value to its count for `|n` with n > 0,
/// so `|0\r\n:1\r\n` is cut after `|0\r\n`, and `:1\r\n` is left to be
/// taken for the reply to the next request.
#[test]
fn empty_attribute_precedes_a_value() {
    assert_eq!(resp::scan_reply(b"|0\r\n:1\r\n"), Ok(Some(8)));
    assert_eq!(resp::scan_reply(b"*1\r\n|0\r\n:1\r\n"), Ok(Some(12)));
}
