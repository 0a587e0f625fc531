//! Client side: the input is a byte stream from a client.
//!
//! Parses it request after request with `resp::parse_request` (under the
//! default limits and under small ones), checks every frame lies within the
//! input and is incomplete one byte short, and that the same stream fed in
//! three reads to a resuming `resp::RequestParser` gives the same frames and
//! the same final error. Each frame then goes through the command table
//! (`lookup_request`,
//! `key_positions`), and split commands (MGET, MSET, DEL...) through
//! `multikey::plan` and `Gather::fill`, with the merged reply checked
//! against what a single Redis would answer.

#![no_main]

use std::ops::Range;

use aster_proxy::protocol::command::{self, Kind, Split};
use aster_proxy::protocol::multikey::{self, Plan};
use aster_proxy::protocol::resp::{self, Limits, ProtoError};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const SMALL: Limits = Limits {
    max_bulk: 64,
    max_args: 16,
    max_inline: 256,
};

type Frames = Vec<(usize, Vec<Vec<u8>>)>;

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), SMALL] {
        let (frames, end) = whole(data, &limits);
        // The same stream in three reads.
        let h = data
            .iter()
            .fold(0usize, |h, &b| h.wrapping_mul(31) ^ usize::from(b));
        let a = if data.is_empty() { 0 } else { h % data.len() };
        let b = a + (data.len() - a) / 2;
        let chunked = in_reads(data, &[a, b - a, data.len() - b], &limits);
        assert_eq!(
            frames, chunked.0,
            "frames differ with reads cut at {a}, {b}"
        );
        assert_eq!(end, chunked.1, "end differs with reads cut at {a}, {b}");
    }
});

/// Frame after frame over the whole input, checking each.
fn whole(data: &[u8], limits: &Limits) -> (Frames, Result<usize, ProtoError>) {
    let mut args: Vec<Range<usize>> = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        match resp::parse_request(rest, &mut args, limits) {
            Ok(Some(n)) => {
                assert!(n > 0 && n <= rest.len(), "frame of {n} in {}", rest.len());
                let mut end = 0;
                for r in &args {
                    assert!(r.start >= end && r.end <= n, "arg {r:?} in frame of {n}");
                    end = r.end;
                }
                if rest[0] == b'*' {
                    assert!(args.len() <= limits.max_args);
                    assert!(args.iter().all(|r| r.len() <= limits.max_bulk));
                }
                let argv: Vec<&[u8]> = args.iter().map(|r| &rest[r.clone()]).collect();
                let owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
                let mut short = Vec::new();
                assert_eq!(
                    resp::parse_request(&rest[..n - 1], &mut short, limits),
                    Ok(None),
                    "complete one byte short"
                );
                command_checks(&argv);
                frames.push((n, owned));
                at += n;
            }
            Ok(None) => return (frames, Ok(data.len() - at)),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// The proxy's read loop: append a read, take complete frames off the
/// front with one resuming parser, wait for more.
fn in_reads(data: &[u8], reads: &[usize], limits: &Limits) -> (Frames, Result<usize, ProtoError>) {
    let mut args: Vec<Range<usize>> = Vec::new();
    let mut parser = resp::RequestParser::default();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0;
    for &r in reads {
        buf.extend_from_slice(&data[at..at + r]);
        at += r;
        loop {
            match parser.parse(&buf, &mut args, limits) {
                Ok(Some(n)) => {
                    frames.push((n, args.iter().map(|r| buf[r.clone()].to_vec()).collect()));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

fn command_checks(argv: &[&[u8]]) {
    let Some(cmd) = command::lookup_request(argv) else {
        return;
    };
    let container = cmd.name.split('|').next().unwrap_or(cmd.name);
    assert!(argv[0].eq_ignore_ascii_case(container.as_bytes()));
    let Ok(p) = cmd.key_positions(argv) else {
        return;
    };
    let keys: Vec<usize> = p.iter().collect();
    assert_eq!(keys.len(), p.count());
    assert!(keys.iter().all(|&i| i >= 1 && i < argv.len()), "{keys:?}");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    if let Kind::Split(split) = cmd.kind
        && !keys.is_empty()
    {
        split_checks(split, argv);
    }
}

fn group_of(key: &[u8]) -> u64 {
    key.iter()
        .fold(0u64, |h, &b| h.wrapping_mul(131) ^ u64::from(b))
        % 3
}

/// What the fake backends hold: every key whose length is even, with
/// itself as the value.
fn value_of(key: &[u8]) -> Option<&[u8]> {
    key.len().is_multiple_of(2).then_some(key)
}

fn split_checks(split: Split, argv: &[&[u8]]) {
    let plan = multikey::plan(split, argv, |k| Some((group_of(k), group_of(k) as usize)))
        .expect("every key has a place");
    let (parts, mut gather) = match plan {
        Plan::Whole { group, server } => {
            assert_eq!(group, group_of(argv[1]));
            assert_eq!(server as u64, group);
            return;
        }
        Plan::Parts(parts, gather) => (parts, gather),
    };
    let step = if split == Split::Mset { 2 } else { 1 };
    let keys: Vec<&[u8]> = argv[1..].iter().step_by(step).copied().collect();
    let mut args = Vec::new();
    let mut merged = None;
    let mut sum = 0i64;
    for (i, part) in parts.iter().enumerate() {
        let req = &part.req;
        assert_eq!(
            resp::parse_request(req, &mut args, &Limits::default()),
            Ok(Some(req.len()))
        );
        let sub: Vec<&[u8]> = args.iter().map(|r| &req[r.clone()]).collect();
        assert_eq!(sub[0], argv[0]);
        let sub_keys: Vec<&[u8]> = sub[1..].iter().step_by(step).copied().collect();
        assert!(sub_keys.iter().all(|k| group_of(k) == part.group));
        assert_eq!(part.server as u64, part.group);
        let reply = match split {
            Split::Mget => {
                let mut r = format!("*{}\r\n", sub_keys.len()).into_bytes();
                for k in &sub_keys {
                    match value_of(k) {
                        Some(v) => r.extend_from_slice(&resp::bulk(v)),
                        None => r.extend_from_slice(resp::NIL),
                    }
                }
                Bytes::from(r)
            }
            Split::Mset => Bytes::from_static(resp::OK),
            Split::SumInt => {
                let n = sub_keys.iter().filter(|k| value_of(k).is_some()).count() as i64;
                sum += n;
                resp::int(n)
            }
        };
        let r = gather.fill(i as u32, reply);
        if i + 1 < parts.len() {
            assert!(r.is_none());
        } else {
            merged = r;
        }
    }
    let merged = merged.expect("merged once every part is in");
    let want = match split {
        Split::Mget => {
            let mut r = format!("*{}\r\n", keys.len()).into_bytes();
            for k in &keys {
                match value_of(k) {
                    Some(v) => r.extend_from_slice(&resp::bulk(v)),
                    None => r.extend_from_slice(resp::NIL),
                }
            }
            r
        }
        Split::Mset => resp::OK.to_vec(),
        Split::SumInt => resp::int(sum).to_vec(),
    };
    assert_eq!(merged[..], want[..]);
}
