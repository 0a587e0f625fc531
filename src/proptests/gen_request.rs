//! Request generation: multibulk and inline requests, with the arguments
//! they must parse to.

use crate::protocol::resp::{self, Limits, ProtoError};

use super::{NUMBERS, Rng, SPECIAL, WORD};

/// A generated request: its bytes and the arguments it must parse to
/// (empty for a frame to skip).
pub(super) struct Req {
    pub(super) bytes: Vec<u8>,
    pub(super) args: Vec<Vec<u8>>,
    pub(super) inline: bool,
}

pub(super) fn gen_arg(rng: &mut Rng) -> Vec<u8> {
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

pub(super) fn gen_multibulk(rng: &mut Rng, names: &[&str]) -> Req {
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
pub(super) fn command_word(name: &str) -> &[u8] {
    name.split('|').next().unwrap_or(name).as_bytes()
}

pub(super) fn random_case(rng: &mut Rng, word: &[u8]) -> Vec<u8> {
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

pub(super) fn pick_key<'a>(rng: &mut Rng, pool: &'a [Vec<u8>]) -> &'a [u8] {
    &pool[rng.below(pool.len())]
}

fn is_blank(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// An inline request: bare words (no blanks, no quotes), and whole words
/// in quotes without escapes, separated by runs of blanks.
pub(super) fn gen_inline(rng: &mut Rng, names: &[&str]) -> Req {
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

pub(super) fn gen_request(rng: &mut Rng, names: &[&str]) -> Req {
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

pub(super) type Frames = Vec<(usize, Vec<Vec<u8>>)>;
pub(super) type Parsed = Result<Option<usize>, ProtoError>;

/// Feeds `stream` in reads of `chunks` bytes as the proxy's read loop
/// does: append, take every complete frame off the front, wait for more,
/// with one resuming parser. Returns the frames and what is left unparsed.
pub(super) fn feed_requests(
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
