//! Commands sent to every server: SCAN, KEYS, DBSIZE, RANDOMKEY, and the
//! script cache and function library commands (cluster mode: every master,
//! and for the script cache every replica too), and COMMAND, sent to any
//! one of them. What each server is sent, and how their replies become the
//! one reply a client connected straight to Redis would expect.
//!
//! SCAN walks the servers one after the other. The cursor a client sees is
//! `server << 48 | that server's own cursor`, `server` being the position in
//! the route table's list of keyspace servers. So a full iteration visits
//! each server once, cursors stay decimal integers that fit in u64, and
//! with one server they are Redis's own. A Redis cursor indexes buckets of
//! the server's hash table, so 48 bits (2^48 buckets) is far beyond any real
//! server; a larger one is refused rather than wrapped into another server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::command::{Args, FanOut};
use crate::protocol::local::{self, Hello};
use crate::protocol::pubsub;
use crate::protocol::refusal::{BadMerge, Refusal};
use crate::protocol::resp;

/// Bits of a client's SCAN cursor holding the backend's own cursor.
pub const CURSOR_BITS: u32 = 48;
const CURSOR_MASK: u64 = (1 << CURSOR_BITS) - 1;

/// How the replies of a fan-out are merged (the state a gather keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// INFO: aster's own sections with the servers' version and keyspace.
    Info(Box<InfoMerge>),
    /// HELLO, while no server had told its version: their INFO server
    /// replies give it.
    Hello {
        hello: Hello,
        version: VersionCell,
    },
}

impl Merge {
    /// Whether a part's error still leaves a reply to make (INFO and HELLO
    /// answer with what the servers that did answer said): else the first
    /// error is the reply.
    pub fn tolerates_errors(&self) -> bool {
        matches!(self, Merge::Info(_) | Merge::Hello { .. })
    }
}

/// Where a cluster keeps the lowest Redis version its servers reported
/// (`local::pack_version`; 0 while none did), shared by its workers: INFO
/// and HELLO learn it from the servers and report it.
#[derive(Clone, Debug)]
pub struct VersionCell(pub Arc<AtomicU64>);

impl PartialEq for VersionCell {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for VersionCell {}

impl VersionCell {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// The lowest `redis_version` of these INFO texts, kept as the
    /// cluster's; the one kept before when none has it.
    fn learn<'a>(&self, texts: impl Iterator<Item = &'a [u8]>) -> u64 {
        let lowest = texts
            .filter_map(|t| field(t, b"redis_version").and_then(local::pack_version))
            .min();
        match lowest {
            Some(v) => {
                self.0.store(v, Ordering::Release);
                v
            }
            None => self.get(),
        }
    }
}

/// The heading aster's INFO starts its Server section with; the merge puts
/// the servers' version right after it.
pub const SERVER_SECTION: &str = "# Server\r\n";

/// INFO through the proxy: aster's own sections, completed from every
/// server's INFO reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoMerge {
    /// aster's own sections. When the Server section is there it comes
    /// first, without its `redis_version` line: the servers' lowest
    /// version goes in as its first line.
    pub own: String,
    /// The Keyspace section is wanted: the servers' summed, after aster's.
    pub keyspace: bool,
    pub resp3: bool,
    pub version: VersionCell,
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
) -> Result<Plan, Refusal> {
    let every = |merge| Plan {
        parts: (0..servers).map(|i| (i, req.clone())).collect(),
        merge,
    };
    Ok(match fan {
        FanOut::Scan => {
            let (index, inner) = parse_cursor(args.get(1))
                .and_then(|c| decode(c, servers))
                .ok_or(Refusal::InvalidCursor)?;
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
        FanOut::AnyOne => Plan {
            parts: vec![(random as usize % servers.max(1), req.clone())],
            merge: Merge::Same,
        },
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

/// Merges the replies of every part (none of them an error, unless the
/// merge `tolerates_errors`: else the caller answers with the first error).
pub fn merge(m: &Merge, parts: &[&Bytes]) -> Bytes {
    match *m {
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
            Some(_) => BadMerge::Differ.reply(),
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
        Merge::Info(ref info) => merge_info(info, parts),
        Merge::Hello { hello, ref version } => {
            let v = version.learn(parts.iter().filter_map(|p| info_text(p)));
            local::hello_reply(hello, &local::version_text(v))
        }
    }
}

/// aster's own INFO sections with the servers' version in the Server
/// section and their keyspace summed in a Keyspace section. A server that
/// did not answer is left out, and the Keyspace section says how many did
/// not: INFO must answer while a server is down (client libraries send it
/// when they connect).
fn merge_info(m: &InfoMerge, parts: &[&Bytes]) -> Bytes {
    let texts: Vec<Option<&[u8]>> = parts.iter().map(|p| info_text(p)).collect();
    let version = m.version.learn(texts.iter().flatten().copied());
    let mut out = String::with_capacity(m.own.len() + 256);
    match m.own.strip_prefix(SERVER_SECTION) {
        Some(rest) => {
            out.push_str(SERVER_SECTION);
            let _ = write!(out, "redis_version:{}\r\n", local::version_text(version));
            out.push_str(rest);
        }
        None => out.push_str(&m.own),
    }
    if m.keyspace {
        if !out.is_empty() && !out.ends_with("\r\n\r\n") {
            out.push_str("\r\n");
        }
        out.push_str("# Keyspace\r\n");
        keyspace(&mut out, texts.iter().flatten().copied());
        let missing = texts.iter().filter(|t| t.is_none()).count();
        if missing > 0 {
            let _ = write!(out, "keyspace_servers_missing:{missing}\r\n");
        }
    }
    resp::verbatim(out.as_bytes(), m.resp3)
}

/// The text of an INFO reply: a bulk string, or a RESP3 verbatim string
/// (`=len\r\ntxt:...`); `None` for an error or anything else.
fn info_text(reply: &[u8]) -> Option<&[u8]> {
    let (&kind, rest) = reply.split_first()?;
    let cr = rest.iter().position(|&c| c == b'\r')?;
    let len = usize::try_from(resp::parse_int(&rest[..cr])?).ok()?;
    let data = rest.get(cr + 2..cr + 2 + len)?;
    match kind {
        b'$' => Some(data),
        // The format ("txt:") comes first.
        b'=' => data.get(4..),
        _ => None,
    }
}

/// The value of `name:value` in an INFO text.
fn field<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    info_lines(text).find_map(|line| line.strip_prefix(name)?.strip_prefix(b":"))
}

fn info_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// One database's `dbN:` line summed over the servers: each count added
/// (in the order the fields came), `avg_ttl` averaged over the keys with a
/// TTL (each server's weighted by its `expires`).
#[derive(Default)]
struct Db {
    fields: Vec<(String, u64)>,
    ttl_weighted: u128,
}

/// Appends the servers' `dbN:keys=..,expires=..,avg_ttl=..` lines, summed
/// per database, in database order.
fn keyspace<'a>(out: &mut String, texts: impl Iterator<Item = &'a [u8]>) {
    let mut dbs: BTreeMap<u64, Db> = BTreeMap::new();
    for text in texts {
        for line in info_lines(text) {
            let Some((name, values)) = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let Some(n) = name.strip_prefix("db").and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            let db = dbs.entry(n).or_default();
            let pairs: Vec<(&str, u64)> = values
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k, v.trim().parse().ok()?))
                })
                .collect();
            let expires = pairs
                .iter()
                .find(|(k, _)| *k == "expires")
                .map_or(0, |p| p.1);
            for (k, v) in pairs {
                if k == "avg_ttl" {
                    db.ttl_weighted += u128::from(v) * u128::from(expires);
                }
                match db.fields.iter_mut().find(|(name, _)| name == k) {
                    Some((_, sum)) => *sum = sum.saturating_add(v),
                    None => db.fields.push((k.to_owned(), v)),
                }
            }
        }
    }
    for (n, db) in dbs {
        let expires = db
            .fields
            .iter()
            .find(|(k, _)| k == "expires")
            .map_or(0, |p| p.1);
        let _ = write!(out, "db{n}:");
        for (i, (k, v)) in db.fields.iter().enumerate() {
            let v = if k == "avg_ttl" {
                u64::try_from(db.ttl_weighted / u128::from(expires.max(1))).unwrap_or(u64::MAX)
            } else {
                *v
            };
            let _ = write!(out, "{}{k}={v}", if i == 0 { "" } else { "," });
        }
        out.push_str("\r\n");
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

fn unexpected(what: &'static str) -> Bytes {
    BadMerge::Unexpected(Some(what)).reply()
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
        let bits = CURSOR_BITS;
        return BadMerge::CursorTooWide {
            cursor: inner,
            bits,
        }
        .reply();
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
        let err = plan(FanOut::Scan, &args, &req, 3, 0)
            .err()
            .map(|r| r.reply());
        assert_eq!(err.as_deref(), Some(&b"-ERR invalid cursor\r\n"[..]));
    }

    #[test]
    fn scan_replies_move_on_to_the_next_server() {
        let m = |index| Merge::Scan { index, servers: 2 };
        let mid = b(b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\na\r\n");
        let done = b(b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(&merge(&m(0), &[&mid])[..], &mid[..]);
        assert_eq!(
            &merge(&m(1), &[&mid])[..],
            b"*2\r\n$15\r\n281474976710668\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            &merge(&m(0), &[&done])[..],
            b"*2\r\n$15\r\n281474976710656\r\n*0\r\n"
        );
        assert_eq!(&merge(&m(1), &[&done])[..], &done[..]);
        let huge = b(b"*2\r\n$15\r\n281474976710656\r\n*0\r\n");
        assert!(resp::is_error(&merge(&m(0), &[&huge])));
        assert!(resp::is_error(&merge(&m(0), &[&b(b":1\r\n")])));
    }

    #[test]
    fn keys_dbsize_randomkey_same_and_exists() {
        let k1 = b(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        let k0 = b(b"*0\r\n");
        let k2 = b(b"*1\r\n$1\r\nc\r\n");
        assert_eq!(
            &merge(&Merge::Keys, &[&k1, &k0, &k2])[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            &merge(&Merge::Dbsize, &[&resp::int(2), &resp::int(5)])[..],
            b":7\r\n"
        );
        let nil = b(resp::NIL);
        let key = b(b"$1\r\nz\r\n");
        for start in 0..3 {
            let r = merge(&Merge::RandomKey { start }, &[&nil, &key, &nil]);
            assert_eq!(&r[..], &key[..]);
        }
        let null3 = b(resp::NULL3);
        assert_eq!(
            &merge(&Merge::RandomKey { start: 1 }, &[&null3, &null3])[..],
            resp::NULL3
        );
        let ok = b(resp::OK);
        assert_eq!(&merge(&Merge::Same, &[&ok, &ok])[..], resp::OK);
        assert!(resp::is_error(&merge(&Merge::Same, &[&ok, &key])));
        let e1 = b(b"*3\r\n:1\r\n:1\r\n:0\r\n");
        let e2 = b(b"*3\r\n:1\r\n:0\r\n:0\r\n");
        assert_eq!(
            &merge(&Merge::AllOnes, &[&e1, &e2])[..],
            b"*3\r\n:1\r\n:0\r\n:0\r\n"
        );
        assert!(resp::is_error(&merge(&Merge::AllOnes, &[&e1, &k0])));
    }

    #[test]
    fn pubsub_merges() {
        let a = b(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
        let c = b(b"*2\r\n$1\r\ny\r\n$1\r\nz\r\n");
        assert_eq!(
            &merge(&Merge::Union, &[&a, &c])[..],
            b"*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n"
        );
        let n1 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n");
        let n2 = b(b"*4\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:5\r\n");
        assert_eq!(
            &merge(&Merge::SumPairs, &[&n1, &n2])[..],
            b"*4\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:5\r\n"
        );
        let k1 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$18\r\n__keyevent@0__:set\r\n:1\r\n");
        let k2 = b(b"*4\r\n$1\r\nx\r\n:1\r\n$18\r\n__keyevent@0__:set\r\n:2\r\n");
        assert_eq!(
            &merge(&Merge::SumPairs, &[&k1, &k2])[..],
            b"*4\r\n$1\r\nx\r\n:2\r\n$18\r\n__keyevent@0__:set\r\n:2\r\n",
            "a keyspace channel's subscribers through the proxy are on every server"
        );
        let other_order = b(b"*4\r\n$1\r\ny\r\n:1\r\n$1\r\nx\r\n:0\r\n");
        assert!(resp::is_error(&merge(
            &Merge::SumPairs,
            &[&n1, &other_order]
        )));
        assert_eq!(
            &merge(&Merge::Max, &[&resp::int(2), &resp::int(7), &resp::int(1)])[..],
            b":7\r\n"
        );
    }

    fn version_cell() -> VersionCell {
        VersionCell(Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn info_takes_the_lowest_version_and_sums_the_keyspace() {
        let version = version_cell();
        let m = Merge::Info(Box::new(InfoMerge {
            own: format!("{SERVER_SECTION}aster_version:1\r\n\r\n# Backends\r\nbackend0:x\r\n"),
            keyspace: true,
            resp3: false,
            version: version.clone(),
        }));
        assert!(m.tolerates_errors());
        let a = resp::bulk(b"# Server\r\nredis_version:7.2.4\r\n\r\n# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n");
        let b = resp::bulk(b"# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000,subexpiry=1\r\n");
        let down = resp::error("ERR Connection refused");
        let want = "# Server\r\nredis_version:7.0.15\r\naster_version:1\r\n\r\n# Backends\r\nbackend0:x\r\n\r\n# Keyspace\r\ndb0:keys=15,expires=8,avg_ttl=2500,subexpiry=1\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        assert_eq!(merge(&m, &[&a, &b]), resp::bulk(want.as_bytes()));
        assert_eq!(local::version_text(version.get()), "7.0.15");
        // A server down: left out, and said so; the version kept.
        let text = merge(&m, &[&down, &a]);
        let text = std::str::from_utf8(&text).expect("text");
        assert!(text.contains("redis_version:7.2.4\r\n"), "{text}");
        assert!(
            text.contains("db0:keys=10,expires=2,avg_ttl=1000\r\n")
                && text.ends_with("keyspace_servers_missing:1\r\n\r\n"),
            "{text}"
        );
        let text = merge(&m, &[&down]);
        assert!(
            std::str::from_utf8(&text)
                .expect("text")
                .contains("redis_version:7.2.4")
        );
        // RESP3 servers answer with verbatim strings, as the client gets.
        let m3 = Merge::Info(Box::new(InfoMerge {
            own: String::new(),
            keyspace: true,
            resp3: true,
            version: version_cell(),
        }));
        let v = resp::verbatim(b"# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n", true);
        assert_eq!(
            &merge(&m3, &[&v, &v])[..],
            &resp::verbatim(b"# Keyspace\r\ndb0:keys=6,expires=0,avg_ttl=0\r\n", true)[..]
        );
    }

    #[test]
    fn hello_learns_the_version_once_asked() {
        let version = version_cell();
        let hello = Hello { proto: 2, id: 9 };
        let m = Merge::Hello {
            hello,
            version: version.clone(),
        };
        let down = resp::error("ERR Connection refused");
        assert_eq!(
            merge(&m, &[&down]),
            local::hello_reply(hello, local::FALLBACK_VERSION)
        );
        let a = resp::bulk(b"# Server\r\nredis_version:6.2.14\r\n");
        assert_eq!(merge(&m, &[&down, &a]), local::hello_reply(hello, "6.2.14"));
        assert_eq!(merge(&m, &[&down]), local::hello_reply(hello, "6.2.14"));
    }

    #[test]
    fn command_goes_to_one_server() {
        let args: Vec<&[u8]> = vec![b"COMMAND", b"COUNT"];
        let req = resp::command(&args);
        let p = plan(FanOut::AnyOne, &args, &req, 3, 7).expect("plan");
        assert_eq!(p.parts, vec![(1, req.clone())]);
        assert_eq!(merge(&p.merge, &[&resp::int(240)]), resp::int(240));
    }
}
