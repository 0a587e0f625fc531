//! nutcracker's key distributions (ketama, modula, random), bit for bit.
//!
//! A [`Ring`] is built once per pool (and again whenever the live set
//! changes) and then answers "which server owns this key hash" without
//! allocating. Indices are always into the slice given to [`Ring::build`]
//! (config order), although nutcracker itself numbers servers in name order.
//!
//! How nutcracker 0.5.0 places keys, as checked against the real binary with
//! the golden vectors at the bottom of this file:
//! - Servers are sorted by name, shorter names first, then bytewise; the name
//!   is the alias, else "host:port" (just "host" for port 11211). Modula slots
//!   follow that order; ketama points do not depend on it (except for ties).
//! - Ketama gives each live server `floor(weight/total * 40 * live + 1e-10) * 4`
//!   points, computed in `f32` exactly as nutcracker's C does (the epsilon is
//!   added in `f64` and rounded back to `f32`, so it rarely changes anything).
//!   Point group `i` is the MD5 of "<name>-<i>", read as four little-endian
//!   u32. A hash goes to the first point >= it, wrapping to the lowest point.
//! - Modula lists each live server `weight` times and takes `hash % len`.
//! - Random lists each live server once, whatever its weight.
//! - A pool of exactly one configured server skips hashing: every key goes to
//!   that server (or nowhere when it is ejected). Any hash would pick it from
//!   this ring anyway, so callers may pass 0 and not hash at all.
//!
//! Against /work/shared/TWEMPROXY-FACTS.md the binary agreed on every point
//! above (server order, 11211 names, f32 point counts, modula, random), and
//! showed one thing the facts file does not say: "<name>-<i>" is cut to 272
//! bytes before hashing, which matters for aliases of 270 bytes or more.
//! (twemproxy's source has an 86-byte buffer there; the binary does not
//! behave that way, verified with names of 84 to 600 bytes.)

use md5::{Digest, Md5};

/// A distribution as named in nutcracker's `distribution:` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Ketama,
    Modula,
    Random,
}

impl Distribution {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ketama" => Some(Distribution::Ketama),
            "modula" => Some(Distribution::Modula),
            "random" => Some(Distribution::Random),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        }
    }
}

/// One server as configured: `name` is the alias if given, else "host:port"
/// (just "host" when port is 11211, as nutcracker does), weight > 0.
#[derive(Clone, Copy, Debug)]
pub struct RingServer<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub live: bool,
}

/// An immutable placement table. Indices returned are indices into the slice
/// passed to `build` (config order), never the sorted order.
#[derive(Clone, Debug)]
pub struct Ring {
    table: Table,
}

#[derive(Clone, Debug)]
enum Table {
    /// No live server: every pick fails, as nutcracker's pool does.
    Empty,
    /// A pool of exactly one configured server, which is live.
    Single(usize),
    /// Ketama points ascending, each with its server's config index.
    Continuum(Vec<(u32, usize)>),
    /// Modula or random: pick `slots[hash % slots.len()]`.
    Slots(Vec<usize>),
}

/// nutcracker's KETAMA_POINTS_PER_SERVER: points for a server of average weight.
const POINTS_PER_SERVER: f32 = 160.0;
/// One MD5 digest yields four points.
const POINTS_PER_HASH: u32 = 4;
/// The most bytes of "<name>-<i>" nutcracker hashes (its buffer holds 273
/// with the NUL; the 86 in twemproxy's source is not what the binary does).
const MAX_LABEL_LEN: usize = 272;

impl Ring {
    /// Builds the table from the servers in config order; only live servers
    /// take part.
    pub fn build(dist: Distribution, servers: &[RingServer<'_>]) -> Ring {
        let live = live_in_name_order(servers);
        let table = if live.is_empty() {
            Table::Empty
        } else if servers.len() == 1 {
            Table::Single(0)
        } else {
            match dist {
                Distribution::Ketama => Table::Continuum(continuum(servers, &live)),
                Distribution::Modula => Table::Slots(modula_slots(servers, &live)),
                Distribution::Random => Table::Slots(live),
            }
        };
        Ring { table }
    }

    /// The server for a key hash (for Random, the caller passes a random
    /// u32). None when no server is live.
    pub fn pick(&self, hash: u32) -> Option<usize> {
        match &self.table {
            Table::Empty => None,
            Table::Single(index) => Some(*index),
            Table::Continuum(points) => {
                let at = points.partition_point(|&(point, _)| point < hash);
                points.get(at).or(points.first()).map(|&(_, index)| index)
            }
            Table::Slots(slots) => {
                let at = (hash as usize).checked_rem(slots.len())?;
                slots.get(at).copied()
            }
        }
    }
}

/// How many entries `Ring::build` would make for these weights, all live:
/// what the config check bounds, since a weight is otherwise free to ask for
/// gigabytes. None when the weights sum past u32, where nutcracker's total
/// wraps and ketama would ask for billions of points.
pub fn ring_size(dist: Distribution, weights: &[u32]) -> Option<u64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if weights.len() <= 1 {
        return Some(weights.len() as u64);
    }
    match dist {
        Distribution::Ketama => {
            let total = u32::try_from(total).ok()?;
            Some(
                weights
                    .iter()
                    .map(|&w| u64::from(ketama_points(w, total, weights.len())))
                    .sum(),
            )
        }
        Distribution::Modula => Some(total),
        Distribution::Random => Some(weights.len() as u64),
    }
}

/// Config indices of the live servers in nutcracker's order: by name length,
/// then bytewise. The sort is stable, so equal names (which nutcracker's
/// config check rejects) keep config order.
fn live_in_name_order(servers: &[RingServer<'_>]) -> Vec<usize> {
    let mut live: Vec<usize> = (0..servers.len()).filter(|&i| servers[i].live).collect();
    live.sort_by(|&a, &b| {
        let (a, b) = (servers[a].name.as_bytes(), servers[b].name.as_bytes());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    });
    live
}

/// One slot per unit of weight, as in nutcracker: a weight of a million is a
/// million slots, so the config layer should bound weights.
fn modula_slots(servers: &[RingServer<'_>], live: &[usize]) -> Vec<usize> {
    live.iter()
        .flat_map(|&i| std::iter::repeat_n(i, servers[i].weight as usize))
        .collect()
}

fn continuum(servers: &[RingServer<'_>], live: &[usize]) -> Vec<(u32, usize)> {
    // nutcracker sums weights in a uint32_t.
    let total = live
        .iter()
        .fold(0u32, |sum, &i| sum.wrapping_add(servers[i].weight));
    let mut points = Vec::with_capacity(live.len() * POINTS_PER_SERVER as usize);
    for &i in live {
        let server = &servers[i];
        let groups = ketama_points(server.weight, total, live.len()) / POINTS_PER_HASH;
        for group in 0..groups {
            let digest = Md5::digest(point_label(server.name, group));
            points.extend(
                digest
                    .chunks_exact(4)
                    .map(|w| (u32::from_le_bytes([w[0], w[1], w[2], w[3]]), i)),
            );
        }
    }
    // nutcracker's qsort leaves equal points in unspecified order; a stable
    // sort keeps them in name order, the order they were generated in.
    points.sort_by_key(|&(point, _)| point);
    points
}

/// Points for one server, with nutcracker's float arithmetic:
/// `floorf((float)(pct * 160 / 4 * (float)live + 0.0000000001)) * 4`.
fn ketama_points(weight: u32, total_weight: u32, live: usize) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let groups = pct * POINTS_PER_SERVER / POINTS_PER_HASH as f32 * live as f32;
    let groups = (f64::from(groups) + 0.000_000_000_1) as f32;
    (groups.floor() as u32).saturating_mul(POINTS_PER_HASH)
}

/// The bytes nutcracker feeds to MD5 for point group `group` of `name`:
/// "<name>-<group>" as `snprintf` leaves it in a 273-byte buffer, so cut to
/// 272 bytes for very long names.
fn point_label(name: &str, group: u32) -> Vec<u8> {
    let mut label = format!("{name}-{group}").into_bytes();
    label.truncate(MAX_LABEL_LEN);
    label
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::hash::{HashKind, hash_tag_slice};

    fn ring(dist: Distribution, servers: &[(&str, u32, bool)]) -> Ring {
        let servers: Vec<RingServer<'_>> = servers
            .iter()
            .map(|&(name, weight, live)| RingServer { name, weight, live })
            .collect();
        Ring::build(dist, &servers)
    }

    fn continuum_of(ring: &Ring) -> &[(u32, usize)] {
        match &ring.table {
            Table::Continuum(points) => points,
            other => panic!("not a continuum: {other:?}"),
        }
    }

    fn points_of(ring: &Ring, index: usize) -> usize {
        continuum_of(ring).iter().filter(|p| p.1 == index).count()
    }

    #[test]
    fn ring_size_matches_the_built_ring() {
        let weights = [1, 2, 3, 1000];
        let servers: Vec<RingServer<'_>> = ["a", "b", "c", "d"]
            .iter()
            .zip(weights)
            .map(|(&name, weight)| RingServer {
                name,
                weight,
                live: true,
            })
            .collect();
        let r = Ring::build(Distribution::Ketama, &servers);
        assert_eq!(
            ring_size(Distribution::Ketama, &weights),
            Some(continuum_of(&r).len() as u64)
        );
        assert_eq!(ring_size(Distribution::Modula, &weights), Some(1006));
        assert_eq!(ring_size(Distribution::Random, &weights), Some(4));
        assert_eq!(ring_size(Distribution::Ketama, &[u32::MAX, 1]), None);
        assert_eq!(ring_size(Distribution::Ketama, &[u32::MAX]), Some(1));
    }

    #[test]
    fn names_round_trip() {
        for dist in [
            Distribution::Ketama,
            Distribution::Modula,
            Distribution::Random,
        ] {
            assert_eq!(Distribution::from_name(dist.name()), Some(dist));
        }
        assert_eq!(Distribution::from_name("Ketama"), None);
        assert_eq!(Distribution::from_name("consistent"), None);
    }

    #[test]
    fn ketama_points_for_equal_weights() {
        let r = ring(
            Distribution::Ketama,
            &[
                ("a", 1, true),
                ("b", 1, true),
                ("c", 1, true),
                ("d", 1, true),
            ],
        );
        assert_eq!(continuum_of(&r).len(), 640);
        for i in 0..4 {
            assert_eq!(points_of(&r, i), 160);
        }
    }

    #[test]
    fn ketama_points_for_weights_1_2_3() {
        let r = ring(
            Distribution::Ketama,
            &[("a", 1, true), ("b", 2, true), ("c", 3, true)],
        );
        assert_eq!(
            [points_of(&r, 0), points_of(&r, 1), points_of(&r, 2)],
            [80, 160, 240]
        );
    }

    #[test]
    fn ketama_points_use_f32_rounding() {
        // 29/60 of 3 servers' 40 groups is 57.999996 in f32: 57 groups, not 58.
        assert_eq!(ketama_points(29, 60, 3), 228);
        assert_eq!(ketama_points(1, 60, 3), 8);
        assert_eq!(ketama_points(30, 60, 3), 240);
        // A tiny weight can get no point at all.
        assert_eq!(ketama_points(1, 10_001, 2), 0);
        assert_eq!(ketama_points(7, 7, 1), 160);
    }

    #[test]
    fn ketama_ignores_dead_servers_in_counts() {
        let r = ring(
            Distribution::Ketama,
            &[("a", 1, true), ("b", 2, false), ("c", 3, true)],
        );
        // Live total weight 4 over 2 live servers: 1/4 * 80 and 3/4 * 80 groups*4.
        assert_eq!(
            [points_of(&r, 0), points_of(&r, 1), points_of(&r, 2)],
            [80, 0, 240]
        );
    }

    #[test]
    fn ketama_picks_first_point_at_or_above_and_wraps() {
        let r = ring(Distribution::Ketama, &[("a", 1, true), ("b", 1, true)]);
        let points = continuum_of(&r);
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0));
        let first = points[0];
        assert_eq!(r.pick(0), Some(first.1));
        for (at, &(point, owner)) in points.iter().enumerate() {
            // A hash equal to a point belongs to that point's server...
            assert_eq!(r.pick(point), Some(owner));
            // ...and one just above it to the next point's, wrapping round.
            let next = points.get(at + 1).copied().unwrap_or(first);
            if point < u32::MAX && next.0 != point {
                assert_eq!(r.pick(point + 1), Some(next.1));
            }
        }
    }

    #[test]
    fn point_labels_are_cut_at_272_bytes() {
        let long = "n".repeat(300);
        assert_eq!(point_label(&long, 7).len(), 272);
        assert_eq!(point_label("srv", 12), b"srv-12");
        let edge = "e".repeat(269);
        assert_eq!(point_label(&edge, 9).len(), 271);
        assert_eq!(point_label(&edge, 10).len(), 272);
        assert_eq!(point_label(&edge, 100).len(), 272);
    }

    #[test]
    fn name_order_is_length_then_bytes() {
        let names = [
            "127.0.0.1:31000",
            "127.0.0.1:9000",
            "127.0.0.1",
            "127.0.0.1:21000",
        ];
        let servers: Vec<RingServer<'_>> = names
            .iter()
            .map(|&name| RingServer {
                name,
                weight: 1,
                live: true,
            })
            .collect();
        assert_eq!(live_in_name_order(&servers), [2, 1, 3, 0]);
    }

    #[test]
    fn modula_repeats_servers_by_weight_in_name_order() {
        let r = ring(
            Distribution::Modula,
            &[("bb", 1, true), ("a", 2, true), ("ccc", 1, true)],
        );
        let picks: Vec<Option<usize>> = (0..6).map(|h| r.pick(h)).collect();
        assert_eq!(
            picks,
            [Some(1), Some(1), Some(0), Some(2), Some(1), Some(1)]
        );
        assert_eq!(r.pick(u32::MAX), Some(2)); // u32::MAX % 4 == 3
    }

    #[test]
    fn modula_skips_dead_servers() {
        let r = ring(
            Distribution::Modula,
            &[("bb", 1, true), ("a", 2, false), ("ccc", 1, true)],
        );
        let picks: Vec<Option<usize>> = (0..4).map(|h| r.pick(h)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
    }

    #[test]
    fn random_lists_each_live_server_once_whatever_its_weight() {
        // nutcracker sends about as many keys to a weight-1 server as to a
        // weight-100 one under `random` (checked: 1982 vs 2018 of 4000).
        let r = ring(
            Distribution::Random,
            &[("bb", 100, true), ("a", 1, true), ("c", 5, false)],
        );
        let picks: Vec<Option<usize>> = (0..4).map(|h| r.pick(h)).collect();
        assert_eq!(picks, [Some(1), Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn no_live_server_picks_nothing() {
        for dist in [
            Distribution::Ketama,
            Distribution::Modula,
            Distribution::Random,
        ] {
            assert_eq!(Ring::build(dist, &[]).pick(1), None);
            let r = ring(dist, &[("a", 1, false), ("b", 2, false)]);
            assert_eq!(r.pick(0), None);
            assert_eq!(r.pick(u32::MAX), None);
        }
    }

    #[test]
    fn single_server_pool_ignores_the_hash() {
        for dist in [
            Distribution::Ketama,
            Distribution::Modula,
            Distribution::Random,
        ] {
            let r = ring(dist, &[("only", 3, true)]);
            for hash in [0, 1, 0x8000_0000, u32::MAX] {
                assert_eq!(r.pick(hash), Some(0));
            }
            assert_eq!(ring(dist, &[("only", 3, false)]).pick(0), None);
        }
    }

    #[test]
    fn indices_are_config_order_for_every_distribution() {
        let servers = [("zzz", 1, true), ("a", 1, true)];
        for dist in [
            Distribution::Ketama,
            Distribution::Modula,
            Distribution::Random,
        ] {
            let r = ring(dist, &servers);
            let mut seen: Vec<usize> = (0..256).filter_map(|h| r.pick(h * 0x0100_0001)).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen, [0, 1], "{dist:?}");
        }
    }

    // Golden vectors recorded from the real nutcracker 0.5.0 (Debian package,
    // x86-64) by a throwaway script: 4 redis-servers on 127.0.0.1, ports
    // 31000, 9000, 11211 and 21000; for each pool below nutcracker ran with
    // `redis: true`, every key was SET through it, and `KEYS *` on each
    // redis-server told where it went. 3014 keys were recorded per pool
    // (328526 placements, all reproduced by this module); the keys here are a
    // sample: the edge cases, and for the float, long-name pools keys that
    // only the exact nutcracker behaviour places right.
    //
    // Unnamed servers are "127.0.0.1:PORT" ("127.0.0.1" for 11211), so their
    // names have three lengths (9, 14, 15) and the config order (31000, 9000,
    // 11211, 21000) differs from nutcracker's name order (11211, 9000, 21000,
    // 31000) and from plain bytewise order. The aliases "srv-b7", "zz", "abc",
    // "b" sort to "b", "zz", "abc", "srv-b7" by length, unlike bytewise.
    // Expectations are config-order indices, one digit per key of
    // `golden_keys()`. A server name "C*N" stands for C repeated N times.

    type Servers = &'static [(&'static str, u32)];

    struct Golden<'a> {
        id: &'a str,
        hash: HashKind,
        dist: Distribution,
        tag: Option<[u8; 2]>,
        servers: Servers,
        expect: &'static str,
    }

    const HOSTPORT_W1: Servers = &[
        ("127.0.0.1:31000", 1),
        ("127.0.0.1:9000", 1),
        ("127.0.0.1", 1),
        ("127.0.0.1:21000", 1),
    ];
    const NAMED_W1: Servers = &[("srv-b7", 1), ("zz", 1), ("abc", 1), ("b", 1)];
    const HOSTPORT_W123: Servers = &[
        ("127.0.0.1:31000", 1),
        ("127.0.0.1:9000", 2),
        ("127.0.0.1", 3),
    ];
    const NAMED_W123: Servers = &[("srv-b7", 1), ("zz", 2), ("abc", 3)];

    /// The pools of MATRIX's columns; all have `hash_tag: "{}"`.
    const MATRIX_POOLS: [(&str, Distribution, Servers); 8] = [
        ("ketama-w1-hostport", Distribution::Ketama, HOSTPORT_W1),
        ("ketama-w1-named", Distribution::Ketama, NAMED_W1),
        ("ketama-w123-hostport", Distribution::Ketama, HOSTPORT_W123),
        ("ketama-w123-named", Distribution::Ketama, NAMED_W123),
        ("modula-w1-hostport", Distribution::Modula, HOSTPORT_W1),
        ("modula-w1-named", Distribution::Modula, NAMED_W1),
        ("modula-w123-hostport", Distribution::Modula, HOSTPORT_W123),
        ("modula-w123-named", Distribution::Modula, NAMED_W123),
    ];

    fn golden_keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = SHORT_KEYS.iter().map(|k| k.to_vec()).collect();
        keys.push(vec![b'x'; 200]);
        keys.push((0..=255).collect());
        keys.push(vec![0xff; 37]);
        keys
    }

    fn expand(spec: &str) -> String {
        match spec.split_once('*') {
            Some((c, n)) => c.repeat(n.parse().expect("repeat count")),
            None => spec.to_string(),
        }
    }

    /// Asserts every recorded key of one pool; returns how many.
    fn check_golden(g: &Golden<'_>) -> usize {
        let names: Vec<String> = g.servers.iter().map(|(n, _)| expand(n)).collect();
        let servers: Vec<RingServer<'_>> = names
            .iter()
            .zip(g.servers)
            .map(|(name, &(_, weight))| RingServer {
                name,
                weight,
                live: true,
            })
            .collect();
        let r = Ring::build(g.dist, &servers);
        let keys = golden_keys();
        assert_eq!(g.expect.len(), keys.len(), "{}: one digit per key", g.id);
        for (key, want) in keys.iter().zip(g.expect.bytes()) {
            let got = r.pick(g.hash.hash(hash_tag_slice(key, g.tag)));
            let want = usize::from(want - b'0');
            assert_eq!(got, Some(want), "{}: key {key:02x?}", g.id);
        }
        keys.len()
    }

    #[test]
    fn golden_every_hash_under_ketama_and_modula() {
        let mut checked = 0;
        for &(hash, expects) in MATRIX {
            for (&(pool, dist, servers), expect) in MATRIX_POOLS.iter().zip(expects) {
                let id = format!("{}-{pool}", hash.name());
                let tag = Some(*b"{}");
                checked += check_golden(&Golden {
                    id: &id,
                    hash,
                    dist,
                    tag,
                    servers,
                    expect,
                });
            }
        }
        assert_eq!(checked, 12 * 8 * golden_keys().len());
    }

    #[test]
    fn golden_extra_pools() {
        let checked: usize = EXTRA.iter().map(check_golden).sum();
        assert_eq!(checked, EXTRA.len() * golden_keys().len());
    }

    const SHORT_KEYS: &[&[u8]] = &[
        b"foo",
        b"bar",
        b"",
        b"a",
        b"\x80",
        b"\xff",
        b"\xfe\xfd\xfc",
        b"\xc3\xa9t\xc3\xa9",
        b"{user1000}.following",
        b"{user1000}.followers",
        b"{}",
        b"{",
        b"}",
        b"a{b}c",
        b"a{}b",
        b"{a}{b}",
        b"}{a}",
        b"{}abc",
        b"x{y",
        b"foo{bar}",
        b"{\x80\x81}tail",
        b"{}{x}",
        b"$tag$rest",
        b"a$$b",
        b"key with spaces",
        b"crlf\r\nkey",
        b"nul\0byte",
        b"ab",
        b"\x80\x87",
        b"abc",
        b"\x80\x87\x8e",
        b"abcd",
        b"\x80\x87\x8e\x95",
        b"abcde",
        b"\x80\x87\x8e\x95\x9c",
        b"abcdef",
        b"\x80\x87\x8e\x95\x9c\xa3",
        b"abcdefg",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa",
        b"abcdefgh",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1",
        b"abcdefghi",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1\xb8",
        b"abcdefghij",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1\xb8\xbf",
        b"abcdefghijk",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1\xb8\xbf\xc6",
        b"abcdefghijkl",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1\xb8\xbf\xc6\xcd",
        b"abcdefghijklm",
        b"\x80\x87\x8e\x95\x9c\xa3\xaa\xb1\xb8\xbf\xc6\xcd\xd4",
        b"\xfeb$Y",
        b"0iyy5",
        b"\xc1\x8d",
        b"user:{}x:",
        b"cZ}\x80Zc$X$$\xfe",
        b"user:{}:yyyy:x",
        b"\xc8[#\x05\x1d",
        b"njxzmpzjjo6",
        b"p6m10",
        b"2t9c02",
        b"Z",
    ];

    const MATRIX: &[(HashKind, [&str; 8])] = &[
        (
            HashKind::OneAtATime,
            [
                "01001001001002000111013223110013033000231032010221010131030303210",
                "32221112331010122232313030233233303021302212232023222133323200223",
                "21201201221022000221012222210212220121221122010222011121122222212",
                "22221112221210122212212020211222221021222212202222222120222200222",
                "11230201223030033231112010323023022032310121133212222013011332100",
                "11320301332020022321113010232032033023210131122313333012011223100",
                "12220210222210222212102112222111121111212022212212212012100222222",
                "21110220111120111221201221211222222222121011121222121021200111111",
            ],
        ),
        (
            HashKind::Md5,
            [
                "10030132000011333030121202331131310100020220230332011102230111111",
                "22201021222313000222210231130321311302002033323013100313133223312",
                "12220122220212222122121222121221210221222220220122011122202111111",
                "22221022222111222222211221111021211122002222122012112212122221212",
                "20221223111103122130121022121213201203020311133023012112112011212",
                "30331332111102133120131033131312301302030211122032013113113011313",
                "10220222002121022220222012021211210122021120112222112211112200222",
                "20110212001212011120111021022222120212012210221111222122221100112",
            ],
        ),
        (
            HashKind::Crc16,
            [
                "12000020002000200012232311322301200301220103322311233222231000101",
                "11222233330222222111022132000033311013103020200213003022311212121",
                "12222220002222222012222211022221222211222102222011222222211022121",
                "11222222220222222111022112200021111021102020202211000022211212121",
                "31202210001232300221111331100303111122002333020000031210131010203",
                "21303310001323200331111221100202111133003222030000021310121010302",
                "10222212001221222220122211211212111212002221220221221221120002102",
                "20112121002122211220211222122221222122001112110112112112220001201",
            ],
        ),
        (
            HashKind::Crc32,
            [
                "00000000000000000000000000000000000000000000000000000000000000000",
                "22222222222222222222222222222222222222222222222222222222222222222",
                "22222222222222222222222222222222222222222222222222222222222222222",
                "22222222222222222222222222222222222222222222222222222222222222222",
                "00203231333133000210100311103233303313003101103202210132213012013",
                "00302321222122000310100211102322202212002101102303310123312013012",
                "22202122222122200122212200002222202121112021111101220222122221001",
                "11101211111211100211121100002222101212222012222202210112212112002",
            ],
        ),
        (
            HashKind::Crc32a,
            [
                "11013113220201311131333322120200230002102033230200102032000302000",
                "20200130112002000210013032123031303121103302312022212123110121131",
                "11212112220221211121222222120220222012212022212210102202020122000",
                "20201122112002200210012022121021202121101112112022212122112121121",
                "13201202330121200303322223010311210033120033001223321131312300331",
                "12301303220131300202233332010211310022130022001332231121213200221",
                "02210222220020111202211111201222112112110122102212212210212100222",
                "02120111110010222202222222102111221221220222201122221120222200221",
            ],
        ),
        (
            HashKind::Fnv1_64,
            [
                "22033320222333233022201331222213101200323120110021032200310323030",
                "00213301223111111220301223033031302211322133131303332313103011313",
                "22221120222222222222221211222221101221222120210221022200120222020",
                "00211121222111111220201222222011222211022120121201122212112111111",
                "02230230001231233002211203223021130230211302302113020023301011102",
                "03320320001321322003311302332031120320311203203112030032201011103",
                "12210221000221211022211212221210121120220202221211020121122112021",
                "22120222000212222012122122212120222210210201112122020212211221012",
            ],
        ),
        (
            HashKind::Fnv1a_64,
            [
                "11033321332333333211233001122230201011021330023123011211233013032",
                "12213300002111111322233103332331110103022021320022330210232301013",
                "11221122002222222211212001222220202211221221222122011211222022122",
                "12211121112111111222222101122201112111122022221022210210212211012",
                "03220320001321322003311302332031120320311203203112030032201011103",
                "02330230001231233002211203223021130230211302302113020023301011102",
                "01211222112112211121110212211222011112102122221012120222212122121",
                "02122121221221122212220222122111022221201212112021210121221211212",
            ],
        ),
        (
            HashKind::Fnv1_32,
            [
                "32022221330222222022320230323122021322001232001210022302210332321",
                "11213323112111211121100032121332132221200113213103233312200221211",
                "22222221112222222222122222021122021222001212122211222012210122121",
                "12211122112111211122212202122122122221200121212102222222202221211",
                "02230230001231233002211203223021130230211302302113020023301011102",
                "03320320001321322003311302332031120320311203203112030032201011103",
                "01222222002212222221222102221111010211220212202102220222120010202",
                "02121111001121222112111202122222020222210221201202120121210020102",
            ],
        ),
        (
            HashKind::Fnv1a_32,
            [
                "11032201111121333331300130301203110130110132220303100200002130020",
                "03221331003321222013133311131221131131201332130003021313302121033",
                "11222221221222222201202112121211112120110222221220100202202120222",
                "00222121222121222010122111121222111111201122110002021112122121022",
                "03220320001321322003311302332031120320311203203112030032201011103",
                "02330230001231233002211203223021130230211302302113020023301011102",
                "12210221222222211122221101222012221221202102212001121012101101021",
                "22120222111221122212212202112021112222201202121002212021202202012",
            ],
        ),
        (
            HashKind::Hsieh,
            [
                "12001003002322200222302211000302311101323223233201221222332012003",
                "01222033223030222121101301032330131113310302121203222121332122212",
                "12201222222222200222222212020202111201222222211221221222212012102",
                "01222022222011222121121101022120121112212022122202222121122122212",
                "00203230223213000200123211100332230200233130221122110312313213332",
                "00302320332312000300132311100223320300322120331133110213212312223",
                "02202221222222200102122202101112221201221022220022221212112201221",
                "01101122221211100201222201202222222202122011110012112221221102212",
            ],
        ),
        (
            HashKind::Murmur,
            [
                "32033110110310033222012020201300123003010010022313003200310230010",
                "31233203113300333331012131100110223030332302310021311310000112212",
                "22210112112210011222222021201101122202220211022211201200220211222",
                "11201202112212200121212122100110222021212222112221211210022212212",
                "00221230113020222330103013100220133323302122323310220232011102203",
                "00331320112030333220102012100330122232203133232210330323011103302",
                "00221212002212222210002211121211111222212222212211210221222102212",
                "00112121002121111220002122212222222121121122222122120212111202222",
            ],
        ),
        (
            HashKind::Jenkins,
            [
                "31002313330021300331110032031123123330312022211313103112301311321",
                "20203221221301100210021303132111321110202330231103012030132212322",
                "21222211112221022121112022021120121110212022211120102112221211222",
                "21201221221211100211021201122111221110202221211112012210112212222",
                "10222220110010222200212230103213201322003301003000021102023111102",
                "10333330110010333300313320102312301233002201002000031103032111103",
                "12222222001021222202212222212202211221001211102110021021122001201",
                "21121211002012222101122221122102222122002122201220012012222002102",
            ],
        ),
    ];

    const EXTRA: &[Golden<'static>] = &[
        Golden {
            id: "notag-fnv1a_64-ketama",
            hash: HashKind::Fnv1a_64,
            dist: Distribution::Ketama,
            tag: None,
            servers: &[("one", 1), ("two", 1), ("three", 1), ("four", 1)],
            expect: "02302232312000221112130122222330012033321023311123230211311030022",
        },
        Golden {
            id: "notag-murmur-modula",
            hash: HashKind::Murmur,
            dist: Distribution::Modula,
            tag: None,
            servers: &[
                ("127.0.0.1:31000", 1),
                ("127.0.0.1:9000", 2),
                ("127.0.0.1", 3),
            ],
            expect: "00221212012212222211202211121211111222212222212211210221222102222",
        },
        Golden {
            id: "dollar-tag-md5-modula",
            hash: HashKind::Md5,
            dist: Distribution::Modula,
            tag: Some(*b"$$"),
            servers: &[
                ("127.0.0.1:31000", 2),
                ("127.0.0.1:9000", 1),
                ("127.0.0.1", 1),
                ("127.0.0.1:21000", 3),
            ],
            expect: "01200033021033131323011330303033323333333231321321332201002233200",
        },
        Golden {
            id: "oddweights-ketama",
            hash: HashKind::Fnv1a_64,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("w3", 3), ("w7", 7), ("w11", 11), ("w13", 13)],
            expect: "31332210003333333221311212023330333312223131203133112222121303132",
        },
        Golden {
            id: "oddweights-modula",
            hash: HashKind::Crc32a,
            dist: Distribution::Modula,
            tag: Some(*b"{}"),
            servers: &[("w5", 5), ("w7", 7), ("w11", 11), ("w13", 13)],
            expect: "12032233113223233212222302312302213221121303233320302032323331322",
        },
        Golden {
            id: "heavy-ketama",
            hash: HashKind::Md5,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("light", 1), ("heavy", 100), ("mid", 2)],
            expect: "11111111111111111111111111111111111111111111111111111111111111111",
        },
        Golden {
            id: "long-names-ketama",
            hash: HashKind::Fnv1a_64,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("L*84", 1), ("M*90", 1), ("s", 1), ("L*80", 1)],
            expect: "20323330111222322030101002211221110011233000202012111302211302223",
        },
        Golden {
            id: "very-long-names-ketama",
            hash: HashKind::Murmur,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("A*120", 1), ("B*250", 2), ("C*300", 1), ("D*600", 1)],
            expect: "11111111111121111011011010100111101011001000101111011111013111011",
        },
        Golden {
            id: "boundary-names-ketama",
            hash: HashKind::Md5,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("E*269", 1), ("F*270", 1), ("G*271", 1), ("H*272", 1)],
            expect: "01000010000010100101000100000000210001000010000000000011000112001",
        },
        Golden {
            id: "boundary2-names-ketama",
            hash: HashKind::Jenkins,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("I*268", 1), ("J*273", 1), ("K*267", 1), ("x", 1)],
            expect: "22232232002032233002020323232200233222022002332223202032023332222",
        },
        Golden {
            id: "float-ketama",
            hash: HashKind::Fnv1a_64,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[
                ("127.0.0.1:31000", 1),
                ("127.0.0.1:9000", 29),
                ("127.0.0.1", 30),
            ],
            expect: "11111122222111211211212101222222222211121221122121111111222121112",
        },
        Golden {
            id: "float2-ketama",
            hash: HashKind::Md5,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("p", 29), ("q", 2), ("r", 29)],
            expect: "02002000000200200222222020020202202020222200002200100000022220200",
        },
        Golden {
            id: "single-server",
            hash: HashKind::Fnv1a_64,
            dist: Distribution::Ketama,
            tag: Some(*b"{}"),
            servers: &[("127.0.0.1:9000", 1)],
            expect: "00000000000000000000000000000000000000000000000000000000000000000",
        },
    ];
}
