//! Resuming parsers against the whole stream.

use std::cell::Cell;

use crate::protocol::resp::{self, Limits, ProtoError};

use super::gen_reply::gen_reply;
use super::gen_request::{Frames, gen_request};
use super::mutated::mutate;
use super::{FUZZ_CASES, NUMBERS, check, chunking, show, table_names};

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
