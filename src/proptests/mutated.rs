//! Random and mutated input: no panics, and consistent answers on prefixes.

use std::cell::Cell;
use std::ops::Range;

use crate::net::rpc;
use crate::protocol::command::{self, Kind};
use crate::protocol::resp::{self, Limits};

use super::gen_reply::gen_reply;
use super::gen_request::{command_word, gen_arg, gen_request, random_case};
use super::split_merge::check_split;
use super::{FUZZ_CASES, NUMBERS, Rng, SPECIAL, check, option_words, show, table_names};

/// Mutates `buf` in place: bit flips, framing bytes, insertions,
/// deletions, truncation, duplicated slices, and numbers swapped for
/// boundary values.
pub(super) fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, numbers: &[&str]) {
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
