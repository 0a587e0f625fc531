//! Property tests of the RESP parsers and of the code that consumes their
//! output (command table, multi-key split and merge, rpc decoding).
//!
//! Inputs are drawn by proptest as a tape of bytes that every generator
//! reads its choices from (`Rng`, the one random source here): a failing
//! case is shrunk to a short tape of small bytes, i.e. few and simple
//! choices, and reported with it; its seed is kept in `regressions.txt`
//! in this folder (one file for all the properties, committed) and tried
//! first on every later run. The tapes come from a fixed seed, so every run
//! checks the same cases (`ASTER_PROPTEST_RANDOM=1` explores new ones).
//!
//! This file holds the tape, the runner and the helpers every property
//! shares; `gen_request` and `gen_reply` generate valid frames. Properties:
//! - `request_streams`: a stream of valid requests (multibulk with binary,
//!   empty and CRLF-laden arguments, skip frames, inline lines) parses to
//!   the same frames whatever way it is cut into reads, fed as a read loop
//!   does to one resuming `RequestParser`;
//! - `reply_streams`: the same for streams of replies of any type and
//!   nesting, with `array_elements` returning exactly the generated
//!   elements and `rpc::decode` the generated value;
//! - `split_merge`: the split of MGET / MSET / DEL-like commands and the
//!   merge of the parts' replies give what a single Redis would have
//!   answered;
//! - `mutated`: random bytes and mutated frames never panic any parser nor
//!   the command table, reported frames lie within their input, and a
//!   parser says the same of a prefix as of the whole (an error or a frame
//!   seen in a prefix stays, a complete frame is incomplete in every
//!   shorter prefix);
//! - `resuming`: resuming parsers (`RequestParser`, `ReplyScanner`) fed any
//!   stream (valid, nested RESP3, mutated, over small limits) in any reads
//!   give exactly the frames, error or leftover of the whole stream;
//! - `limits`: an oversized count or bulk length is refused as soon as its
//!   header is in, an inline line longer than the limit as soon as the
//!   limit is passed.
//!
//! Defects found while writing these, since fixed, are pinned by the tests
//! in `defects`.

use std::cell::RefCell;

use proptest::arbitrary::any;
use proptest::prelude::Rng as _;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestRng, TestRunner};

mod defects;
mod gen_reply;
mod gen_request;
mod limits;
mod mutated;
mod reply_streams;
mod request_streams;
mod resuming;
mod split_merge;

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

/// Cases of the properties over valid streams (and limits), and of those
/// over random and mutated bytes, which are cheaper.
const STREAM_CASES: u64 = 3000;
const FUZZ_CASES: u64 = 15_000;

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
