//! Commands sent to every server: SCAN, KEYS, DBSIZE, RANDOMKEY, and the
//! script cache and function library commands (cluster mode: every master,
//! and for the script cache every replica too). What each server is sent,
//! and how their replies become the one reply a client connected straight to
//! Redis would expect.
//!
//! SCAN walks the servers one after the other. The cursor a client sees is
//! `server << 48 | that server's own cursor`, `server` being the position in
//! the route table's list of keyspace servers. So a full iteration visits
//! each server once, cursors stay decimal integers that fit in u64, and
//! with one server they are Redis's own. A Redis cursor indexes buckets of
//! the server's hash table, so 48 bits (2^48 buckets) is far beyond any real
//! server; a larger one is refused rather than wrapped into another server.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::command::{Args, FanOut};
use crate::protocol::pubsub;
use crate::protocol::resp;

/// Bits of a client's SCAN cursor holding the backend's own cursor.
pub const CURSOR_BITS: u32 = 48;
const CURSOR_MASK: u64 = (1 << CURSOR_BITS) - 1;

/// Redis's reply to a cursor it cannot read.
pub const INVALID_CURSOR: &str = "ERR invalid cursor";

/// How the replies of a fan-out are merged (the state a gather keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// SCAN on server `index` of `servers`: its cursor is rewritten.
    Scan {
        index: usize,
        servers: usize,
    },
    Keys,
    Dbsize,
    /// The first key found looking from part `start` on, wrapping.
    RandomKey {
        start: usize,
    },
    Same,
    AllOnes,
    /// Bulk strings of every array, each once.
    Union,
    /// Flat (name, count) arrays in the same order: the counts summed.
    SumPairs,
    /// Integers: the largest.
    Max,
}

/// What to send where: (keyspace server position, request) per part, and
/// how to merge their replies.
pub struct Plan {
    pub parts: Vec<(usize, Bytes)>,
    pub merge: Merge,
}

/// Plans a fan-out over `servers` servers (positions in the caller's list). `req` is the request as
/// received (sent unchanged to every server, SCAN excepted). `Err` is the
/// reply to give the client at once.
pub fn plan(
    fan: FanOut,
    args: &(impl Args + ?Sized),
    req: &Bytes,
    servers: usize,
    random: u32,
) -> Result<Plan, Bytes> {
    let every = |merge| Plan {
        parts: (0..servers).map(|i| (i, req.clone())).collect(),
        merge,
    };
    Ok(match fan {
        FanOut::Scan => {
            let (index, inner) = parse_cursor(args.get(1))
                .and_then(|c| decode(c, servers))
                .ok_or_else(|| resp::error(INVALID_CURSOR))?;
            Plan {
                parts: vec![(index, scan_request(args, inner))],
                merge: Merge::Scan { index, servers },
            }
        }
        FanOut::Keys => every(Merge::Keys),
        FanOut::Dbsize => every(Merge::Dbsize),
        FanOut::RandomKey => every(Merge::RandomKey {
            start: random as usize % servers.max(1),
        }),
        FanOut::ScriptSame | FanOut::FunctionSame => every(Merge::Same),
        FanOut::ScriptExists => every(Merge::AllOnes),
        FanOut::PubsubChannels => every(Merge::Union),
        FanOut::PubsubNumsub => every(Merge::SumPairs),
        FanOut::PubsubNumpat => every(Merge::Max),
    })
}

/// A cursor as Redis 7 reads it (`strtoul`, base 10): an optional sign,
/// then digits; no leading space, nothing after, no overflow. An empty
/// string is 0, and a minus sign negates modulo 2^64, as in Redis.
pub fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let (neg, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, arg),
    };
    if digits.is_empty() {
        // strtoul read nothing: valid only if there was nothing to read.
        return arg.is_empty().then_some(0);
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// A client's cursor as (server position, that server's cursor); `None` for
/// a server position past the list.
pub fn decode(cursor: u64, servers: usize) -> Option<(usize, u64)> {
    let index = usize::try_from(cursor >> CURSOR_BITS).ok()?;
    (index < servers).then_some((index, cursor & CURSOR_MASK))
}

/// The client's cursor for `inner` on server `index`; `None` when either
/// does not fit its bits.
pub fn encode(index: usize, inner: u64) -> Option<u64> {
    let index = u64::try_from(index).ok()?;
    if inner > CURSOR_MASK || index >> (64 - CURSOR_BITS) != 0 {
        return None;
    }
    Some(index << CURSOR_BITS | inner)
}

/// The client's SCAN with the server's own cursor in place of its own;
/// MATCH, COUNT and TYPE go through as they are.
fn scan_request(args: &(impl Args + ?Sized), inner: u64) -> Bytes {
    let cursor = inner.to_string();
    let mut words: Vec<&[u8]> = Vec::with_capacity(args.len());
    words.push(args.get(0));
    words.push(cursor.as_bytes());
    for i in 2..args.len() {
        words.push(args.get(i));
    }
    resp::command(&words)
}

/// Merges the replies of every part (none of them an error: the caller
/// answers with the first error).
pub fn merge(m: Merge, parts: &[&Bytes]) -> Bytes {
    match m {
        Merge::Scan { index, servers } => match parts.first() {
            Some(p) => merge_scan(p, index, servers),
            None => unexpected("SCAN"),
        },
        Merge::Keys => merge_keys(parts),
        Merge::Dbsize => {
            let mut sum: i64 = 0;
            for p in parts {
                match resp::int_reply(p) {
                    Some(v) => sum = sum.saturating_add(v),
                    None => return unexpected("DBSIZE"),
                }
            }
            resp::int(sum)
        }
        Merge::RandomKey { start } => {
            let n = parts.len();
            (0..n)
                .map(|i| parts[(start + i) % n])
                .find(|p| !is_null(p))
                .or(parts.first().copied())
                .cloned()
                .unwrap_or_else(|| unexpected("RANDOMKEY"))
        }
        Merge::Same => match parts.split_first() {
            Some((first, rest)) if rest.iter().all(|p| p == first) => (*first).clone(),
            Some(_) => resp::error("ERR the backends answered differently; check each backend"),
            None => unexpected("the command"),
        },
        Merge::AllOnes => merge_all_ones(parts),
        Merge::Union => merge_union(parts),
        Merge::SumPairs => merge_sum_pairs(parts),
        Merge::Max => {
            let mut max: i64 = 0;
            for p in parts {
                match resp::int_reply(p) {
                    Some(v) => max = max.max(v),
                    None => return unexpected("PUBSUB NUMPAT"),
                }
            }
            resp::int(max)
        }
    }
}

/// PUBSUB CHANNELS: every element once, in the order first seen.
fn merge_union(parts: &[&Bytes]) -> Bytes {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut elems = Vec::new();
    for p in parts {
        if resp::array_elements(p, &mut elems).is_none() {
            return unexpected("PUBSUB CHANNELS");
        }
        for r in &elems {
            let e = &p[r.clone()];
            if !seen.contains(&e) {
                seen.push(e);
            }
        }
    }
    let mut out = BytesMut::with_capacity(16 + seen.iter().map(|e| e.len()).sum::<usize>());
    resp::put_int(&mut out, b'*', seen.len() as i64);
    for e in seen {
        out.put_slice(e);
    }
    out.freeze()
}

/// PUBSUB NUMSUB: every server lists the same channels in the request's
/// order, each followed by its count there; the counts are summed, but for
/// a keyspace notification channel, which a client subscribes through the
/// proxy on every server, the largest is taken.
fn merge_sum_pairs(parts: &[&Bytes]) -> Bytes {
    let mut names: Vec<&[u8]> = Vec::new();
    let mut sums: Vec<i64> = Vec::new();
    let mut elems = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        if resp::array_elements(p, &mut elems).is_none() || elems.len() % 2 != 0 {
            return unexpected("PUBSUB NUMSUB");
        }
        for (i, pair) in elems.chunks(2).enumerate() {
            let name = &p[pair[0].clone()];
            let Some(count) = resp::int_reply(&p[pair[1].clone()]) else {
                return unexpected("PUBSUB NUMSUB");
            };
            if n == 0 {
                names.push(name);
                sums.push(count);
            } else if i < names.len() && names[i] == name {
                let keyspace =
                    pubsub::bulk_string(name).is_some_and(|(n, _)| pubsub::is_keyspace_channel(n));
                sums[i] = if keyspace {
                    sums[i].max(count)
                } else {
                    sums[i].saturating_add(count)
                };
            } else {
                return unexpected("PUBSUB NUMSUB");
            }
        }
    }
    let mut out = BytesMut::with_capacity(16 + names.iter().map(|e| e.len() + 16).sum::<usize>());
    resp::put_int(&mut out, b'*', 2 * names.len() as i64);
    for (name, sum) in names.iter().zip(sums) {
        out.put_slice(name);
        resp::put_int(&mut out, b':', sum);
    }
    out.freeze()
}

fn unexpected(what: &str) -> Bytes {
    resp::error(&format!("ERR unexpected reply from a backend to {what}"))
}

/// A nil reply of either protocol (RANDOMKEY on an empty server).
fn is_null(reply: &[u8]) -> bool {
    reply == resp::NIL || reply == resp::NULL3
}

/// `*2`, the cursor as a bulk string, then the keys array untouched, with
/// the cursor made the client's. The same in RESP2 and RESP3.
fn merge_scan(reply: &Bytes, index: usize, servers: usize) -> Bytes {
    let mut elems = Vec::with_capacity(2);
    if resp::array_elements(reply, &mut elems).is_none() || elems.len() != 2 {
        return unexpected("SCAN");
    }
    let cursor = bulk_text(&reply[elems[0].clone()]).and_then(parse_plain_u64);
    let Some(inner) = cursor else {
        return unexpected("SCAN");
    };
    let next = if inner != 0 {
        encode(index, inner)
    } else if index + 1 < servers {
        // This server is done: the next starts at its own 0, so the client
        // never sees 0 before the last server is done.
        encode(index + 1, 0)
    } else {
        Some(0)
    };
    let Some(next) = next else {
        return resp::error(&format!(
            "ERR SCAN cursor {inner} of a backend does not fit aster's cursor encoding (at most 2^{CURSOR_BITS} - 1)"
        ));
    };
    let keys = &reply[elems[1].clone()];
    let mut out = BytesMut::with_capacity(keys.len() + 40);
    out.put_slice(b"*2\r\n");
    resp::put_bulk(&mut out, next.to_string().as_bytes());
    out.put_slice(keys);
    out.freeze()
}

/// The data of a `$n\r\n...\r\n` bulk string.
fn bulk_text(b: &[u8]) -> Option<&[u8]> {
    let rest = b.strip_prefix(b"$")?;
    let cr = rest.iter().position(|&c| c == b'\r')?;
    let len = usize::try_from(resp::parse_int(&rest[..cr])?).ok()?;
    rest.get(cr + 2..cr + 2 + len)
}

fn parse_plain_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The length of an array header `*n\r\n` and n, for an array reply.
fn array_header(reply: &[u8]) -> Option<(usize, i64)> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let cr = reply.iter().position(|&b| b == b'\r')?;
    let n = resp::parse_int(&reply[1..cr])?;
    Some((cr + 2, n.max(0)))
}

/// Every server's keys in one array: the headers summed, the elements
/// copied as they are (no need to look inside them).
fn merge_keys(parts: &[&Bytes]) -> Bytes {
    let mut total: i64 = 0;
    let mut bodies = Vec::with_capacity(parts.len());
    for p in parts {
        let Some((head, n)) = array_header(p) else {
            return unexpected("KEYS");
        };
        total = total.saturating_add(n);
        bodies.push(&p[head..]);
    }
    let mut out = BytesMut::with_capacity(bodies.iter().map(|b| b.len()).sum::<usize>() + 16);
    resp::put_int(&mut out, b'*', total);
    for b in bodies {
        out.put_slice(b);
    }
    out.freeze()
}

/// SCRIPT EXISTS: for each sha, 1 only if every server answered 1.
fn merge_all_ones(parts: &[&Bytes]) -> Bytes {
    let mut all: Option<Vec<bool>> = None;
    let mut elems = Vec::new();
    for p in parts {
        if resp::array_elements(p, &mut elems).is_none() {
            return unexpected("SCRIPT EXISTS");
        }
        let mut here = Vec::with_capacity(elems.len());
        for r in &elems {
            match resp::int_reply(&p[r.clone()]) {
                Some(v) => here.push(v == 1),
                None => return unexpected("SCRIPT EXISTS"),
            }
        }
        all = Some(match all {
            None => here,
            Some(prev) if prev.len() == here.len() => {
                prev.iter().zip(&here).map(|(a, b)| *a && *b).collect()
            }
            Some(_) => return unexpected("SCRIPT EXISTS"),
        });
    }
    let all = all.unwrap_or_default();
    let mut out = BytesMut::with_capacity(8 + all.len() * 4);
    resp::put_int(&mut out, b'*', all.len() as i64);
    for one in all {
        out.put_slice(if one { b":1\r\n" } else { b":0\r\n" });
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn cursors_are_read_as_redis_reads_them() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"007"), Some(7));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"18446744073709551616"[..],
            b" 1",
            b"1 ",
            b"abc",
            b"+",
            b"-",
            b"0x1",
            b"1.5",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursor_encoding_round_trips_and_bounds() {
        assert_eq!(encode(0, 17), Some(17));
        assert_eq!(decode(17, 3), Some((0, 17)));
        let c = encode(2, 12345).expect("fits");
        assert_eq!(decode(c, 3), Some((2, 12345)));
        assert_eq!(decode(c, 2), None, "server past the list");
        assert_eq!(decode(u64::MAX, 3), None);
        assert_eq!(encode(1, CURSOR_MASK + 1), None);
        assert_eq!(encode(1 << 16, 0), None);
        assert_eq!(encode((1 << 16) - 1, CURSOR_MASK), Some(u64::MAX));
    }

    #[test]
    fn scan_is_sent_to_the_cursor_server_with_its_own_cursor() {
        let args: Vec<&[u8]> = vec![b"SCAN", b"281474976710661", b"MATCH", b"k*"];
        let req = resp::command(&args);
        let p = plan(FanOut::Scan, &args, &req, 3, 0).expect("valid");
        assert_eq!(
            p.parts,
            vec![(1, resp::command(&[b"SCAN", b"5", b"MATCH", b"k*"]))]
        );
        assert_eq!(
            p.merge,
            Merge::Scan {
                index: 1,
                servers: 3
            }
        );
        let args: Vec<&[u8]> = vec![b"SCAN", b"x"];
        let err = plan(FanOut::Scan, &args, &req, 3, 0).err();
        assert_eq!(err.as_deref(), Some(&b"-ERR invalid cursor\r\n"[..]));
    }

    #[test]
    fn scan_replies_move_on_to_the_next_server() {
        let m = |index| Merge::Scan { index, servers: 2 };
        let mid = b(b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\na\r\n");
        let done = b(b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(&merge(m(0), &[&mid])[..], &mid[..]);
        assert_eq!(
            &merge(m(1), &[&mid])[..],
            b"*2\r\n$15\r\n281474976710668\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            &merge(m(0), &[&done])[..],
            b"*2\r\n$15\r\n281474976710656\r\n*0\r\n"
        );
        assert_eq!(&merge(m(1), &[&done])[..], &done[..]);
        let huge = b(b"*2\r\n$15\r\n281474976710656\r\n*0\r\n");
        assert!(resp::is_error(&merge(m(0), &[&huge])));
        assert!(resp::is_error(&merge(m(0), &[&b(b":1\r\n")])));
    }

    #[test]
    fn keys_dbsize_randomkey_same_and_exists() {
        let k1 = b(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        let k0 = b(b"*0\r\n");
        let k2 = b(b"*1\r\n$1\r\nc\r\n");
        assert_eq!(
            &merge(Merge::Keys, &[&k1, &k0, &k2])[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            &merge(Merge::Dbsize, &[&resp::int(2), &resp::int(5)])[..],
            b":7\r\n"
        );
        let nil = b(resp::NIL);
        let key = b(b"$1\r\nz\r\n");
        for start in 0..3 {
            let r = merge(Merge::RandomKey { start }, &[&nil, &key, &nil]);
            assert_eq!(&r[..], &key[..]);
        }
        let null3 = b(resp::NULL3);
        assert_eq!(
            &merge(Merge::RandomKey { start: 1 }, &[&null3, &null3])[..],
            resp::NULL3
        );
        let ok = b(resp::OK);
        assert_eq!(&merge(Merge::Same, &[&ok, &ok])[..], resp::OK);
        assert!(resp::is_error(&merge(Merge::Same, &[&ok, &key])));
        let e1 = b(b"*3\r\n:1\r\n:1\r\n:0\r\n");
        let e2 = b(b"*3\r\n:1\r\n:0\r\n:0\r\n");
        assert_eq!(
            &merge(Merge::AllOnes, &[&e1, &e2])[..],
            b"*3\r\n:1\r\n:0\r\n:0\r\n"
        );
        assert!(resp::is_error(&merge(Merge::AllOnes, &[&e1, &k0])));
    }

    #[test]
    fn pubsub_merges() {
        let a = b(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
        let c = b(b"*2\r\n$1\r\ny\r\n$1\r\nz\r\n");
        assert_eq!(
            &merge(Merge::Union, &[&a, &c])[..],
            b"*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n"
        );
        let n1 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n");
        let n2 = b(b"*4\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:5\r\n");
        assert_eq!(
            &merge(Merge::SumPairs, &[&n1, &n2])[..],
            b"*4\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:5\r\n"
        );
        let k1 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$18\r\n__keyevent@0__:set\r\n:1\r\n");
        let k2 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$18\r\n__keyevent@0__:set\r\n:2\r\n");
        assert_eq!(
            &merge(Merge::SumPairs, &[&k1, &k2])[..],
            b"*4\r\n$1\r\nx\r\n:2\r\n$18\r\n__keyevent@0__:set\r\n:2\r\n",
            "a keyspace channel's subscribers through the proxy are on every server"
        );
        let other_order = b(b"*4\r\n$1\r\ny\r\n:1\r\n$1\r\nx\r\n:0\r\n");
        assert!(resp::is_error(&merge(
            Merge::SumPairs,
            &[&n1, &other_order]
        )));
        assert_eq!(
            &merge(Merge::Max, &[&resp::int(2), &resp::int(7), &resp::int(1)])[..],
            b":7\r\n"
        );
    }
}
