//! Reply generation: RESP2 and RESP3 replies, nested, with the value and
//! elements they must decode to.

use std::ops::Range;

use crate::net::rpc::Value;
use crate::protocol::resp::{self, ProtoError};

use super::{Rng, SPECIAL};

/// A generated reply: its bytes, the value `rpc::decode` must return
/// (`None` when it holds RESP3 types, which `decode` does not handle), and
/// for arrays the ranges of the elements.
pub(super) struct Reply {
    pub(super) bytes: Vec<u8>,
    pub(super) value: Option<Value>,
    pub(super) elements: Option<Vec<Range<usize>>>,
}

pub(super) fn gen_int(rng: &mut Rng) -> i64 {
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

pub(super) fn gen_reply(rng: &mut Rng, depth: usize, resp3: bool) -> Reply {
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
pub(super) fn feed_replies(
    stream: &[u8],
    chunks: &[usize],
) -> Result<(Vec<usize>, usize), ProtoError> {
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
