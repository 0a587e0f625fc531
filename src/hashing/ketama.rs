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
//! `docs/twemproxy.md` records these behaviours. One of them no twemproxy
//! document says: "<name>-<i>" is cut to 272 bytes before hashing, which
//! matters for aliases of 270 bytes or more. (twemproxy's source has an
//! 86-byte buffer there; the binary does not behave that way, verified with
//! names of 84 to 600 bytes.)

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
    use crate::hashing::hash::{HashKind, hash_tag_slice};

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
    // 31000, 9000, 11211 and 21000; for each pool of
    // `testdata/nutcracker-placements.csv` nutcracker ran with
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

    /// `nutcracker-keys.hex`: one key per line, hex-encoded (keys are binary).
    fn golden_keys() -> Vec<Vec<u8>> {
        include_str!("testdata/nutcracker-keys.hex")
            .lines()
            .map(|line| {
                (0..line.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex key"))
                    .collect()
            })
            .collect()
    }

    fn expand(spec: &str) -> String {
        match spec.split_once('*') {
            Some((c, n)) => c.repeat(n.parse().expect("repeat count")),
            None => spec.to_string(),
        }
    }

    /// One row of `nutcracker-placements.csv`: a pool (hash, distribution,
    /// hash tag, `name=weight` servers in config order) and, per key of
    /// `golden_keys()`, the config-order index nutcracker placed it on.
    fn check_golden(row: &str) -> usize {
        let cols: Vec<&str> = row.split(',').collect();
        let [id, hash, dist, tag, servers, expect] = cols[..] else {
            panic!("bad row {row:?}");
        };
        let hash = HashKind::from_name(hash).expect("hash name");
        let dist = Distribution::from_name(dist).expect("distribution name");
        let tag: Option<[u8; 2]> = tag.as_bytes().try_into().ok();
        let servers: Vec<(String, u32)> = servers
            .split(' ')
            .map(|s| {
                let (name, weight) = s.rsplit_once('=').expect("name=weight");
                (expand(name), weight.parse().expect("weight"))
            })
            .collect();
        let ring_servers: Vec<RingServer<'_>> = servers
            .iter()
            .map(|(name, weight)| RingServer {
                name,
                weight: *weight,
                live: true,
            })
            .collect();
        let r = Ring::build(dist, &ring_servers);
        let keys = golden_keys();
        assert_eq!(expect.len(), keys.len(), "{id}: one digit per key");
        for (key, want) in keys.iter().zip(expect.bytes()) {
            let got = r.pick(hash.hash(hash_tag_slice(key, tag)));
            let want = usize::from(want - b'0');
            assert_eq!(got, Some(want), "{id}: key {key:02x?}");
        }
        keys.len()
    }

    #[test]
    fn golden_placements_match_nutcracker() {
        let rows: Vec<&str> = include_str!("testdata/nutcracker-placements.csv")
            .lines()
            .skip(1)
            .collect();
        let checked: usize = rows.iter().map(|r| check_golden(r)).sum();
        // 12 hashes x (ketama, modula) x 4 pools, and the extra pools.
        assert!(rows.len() >= 12 * 8, "{} pools", rows.len());
        assert_eq!(checked, rows.len() * golden_keys().len());
    }
}
