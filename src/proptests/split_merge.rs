//! Multi-key split and merge: the parts' replies merged give what a single
//! Redis would have answered.

use bytes::Bytes;

use crate::protocol::command::{self, Kind, Split};
use crate::protocol::multikey::{self, Plan};
use crate::protocol::resp::{self, Limits};

use super::gen_request::pick_key;
use super::{Rng, SPECIAL, check, show};

fn fnv(b: &[u8], seed: u64) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Splits `argv` (a valid MGET / MSET / DEL-like request) over up to four
/// groups, answers every part as a Redis would, and checks the merged
/// reply against the one a single Redis would have sent.
pub(super) fn check_split(rng: &mut Rng, split: Split, argv: &[&[u8]]) {
    let ctx = || format!("{split:?} {argv:?}");
    let seed = rng.next();
    let groups = rng.range(1, 4) as u64;
    let group_of = |k: &[u8]| fnv(k, seed) % groups;
    // Servers are distinct from groups (cluster mode: slot -> server).
    let server_of = |g: u64| (g as usize * 7) % 5;
    let step = if split == Split::Mset { 2 } else { 1 };
    let keys: Vec<&[u8]> = argv[1..].iter().step_by(step).copied().collect();
    // A key "exists" with a value derived from it, or not.
    let value_of = |k: &[u8]| (!fnv(k, !seed).is_multiple_of(3)).then(|| [k, b"\r\n=v"].concat());

    let plan = multikey::plan(split, argv, |k| {
        let g = group_of(k);
        Some((g, server_of(g)))
    })
    .unwrap_or_else(|e| panic!("{e:?}: {}", ctx()));
    let mut distinct: Vec<u64> = keys.iter().map(|k| group_of(k)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let (parts, mut gather) = match plan {
        Plan::Whole { group, server } => {
            assert_eq!(distinct.len(), 1, "{}", ctx());
            assert_eq!(group, distinct[0], "{}", ctx());
            assert_eq!(server, server_of(distinct[0]), "{}", ctx());
            return;
        }
        Plan::Parts(parts, gather) => (parts, gather),
    };
    assert_eq!(parts.len(), distinct.len(), "{}", ctx());

    // Each part is a well-formed request for keys of one group, in the
    // client's order, and together they hold every key once.
    let mut seen: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut replies = Vec::new();
    let mut expect_sum: i64 = 0;
    let mut args = Vec::new();
    for part in &parts {
        let (server, req) = (&part.server, &part.req);
        let n = resp::parse_request(req, &mut args, &Limits::default());
        assert_eq!(n, Ok(Some(req.len())), "{}", ctx());
        let sub: Vec<&[u8]> = args.iter().map(|r| &req[r.clone()]).collect();
        assert_eq!(sub[0], argv[0], "{}", ctx());
        assert_eq!((sub.len() - 1) % step, 0, "{}", ctx());
        let sub_keys: Vec<&[u8]> = sub[1..].iter().step_by(step).copied().collect();
        let g = group_of(sub_keys[0]);
        assert!(sub_keys.iter().all(|k| group_of(k) == g), "{}", ctx());
        assert_eq!(*server, server_of(g), "{}", ctx());
        assert_eq!(part.group, g, "{}", ctx());
        let reply = match split {
            Split::Mget => {
                let mut r = format!("*{}\r\n", sub_keys.len()).into_bytes();
                for k in &sub_keys {
                    match value_of(k) {
                        Some(v) => r.extend(resp::bulk(&v)),
                        None => r.extend_from_slice(resp::NIL),
                    }
                }
                r
            }
            Split::Mset => resp::OK.to_vec(),
            Split::SumInt => {
                let c = rng.range(0, sub_keys.len()) as i64;
                expect_sum += c;
                format!(":{c}\r\n").into_bytes()
            }
        };
        replies.push(Bytes::from(reply));
        seen.push(sub[1..].iter().map(|a| a.to_vec()).collect());
    }
    // Reassemble the client's argument list from the parts' in key order.
    let mut cursors = vec![0; parts.len()];
    for (i, k) in keys.iter().enumerate() {
        let g = group_of(k);
        let p = seen
            .iter()
            .position(|s| group_of(&s[0]) == g)
            .unwrap_or_else(|| panic!("no part for key {i}: {}", ctx()));
        let c = cursors[p];
        assert_eq!(seen[p][c], *k, "key {i}: {}", ctx());
        if step == 2 {
            assert_eq!(seen[p][c + 1], argv[2 + 2 * i], "value {i}: {}", ctx());
        }
        cursors[p] += step;
    }
    assert!(
        cursors.iter().zip(&seen).all(|(&c, s)| c == s.len()),
        "{}",
        ctx()
    );

    // Faults: one part fails, or answers something unexpected.
    let fault = rng.below(6);
    let faulty = rng.below(parts.len());
    match fault {
        0 => replies[faulty] = resp::error(&format!("ERR boom {faulty}")),
        1 => {
            replies[faulty] = Bytes::from_static(match split {
                Split::Mget => b"*0\r\n",
                Split::Mset => b"+QUEUED\r\n",
                Split::SumInt => b"$1\r\n1\r\n",
            })
        }
        _ => {}
    }

    // Fill in a random order, with a duplicate and an out-of-range part.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut merged = None;
    for (i, &p) in order.iter().enumerate() {
        let r = gather.fill(p as u32, replies[p].clone());
        if i + 1 < order.len() {
            assert!(r.is_none(), "{}", ctx());
            assert!(gather.fill(p as u32, replies[p].clone()).is_none());
            assert!(gather.fill(parts.len() as u32, resp::OK.into()).is_none());
        } else {
            merged = r;
        }
    }
    let merged = merged.unwrap_or_else(|| panic!("no merged reply: {}", ctx()));
    assert_eq!(
        resp::scan_reply(&merged),
        Ok(Some(merged.len())),
        "{}",
        ctx()
    );
    let want: Vec<u8> = match (fault, split) {
        (0, _) => format!("-ERR boom {faulty}\r\n").into_bytes(),
        (1, _) => {
            assert!(resp::is_error(&merged), "{}", ctx());
            return;
        }
        (_, Split::Mget) => {
            let mut r = format!("*{}\r\n", keys.len()).into_bytes();
            for k in &keys {
                match value_of(k) {
                    Some(v) => r.extend(resp::bulk(&v)),
                    None => r.extend_from_slice(resp::NIL),
                }
            }
            r
        }
        (_, Split::Mset) => resp::OK.to_vec(),
        (_, Split::SumInt) => format!(":{expect_sum}\r\n").into_bytes(),
    };
    assert_eq!(show(&merged), show(&want), "{}", ctx());
}

#[test]
fn split_commands_merge_like_a_single_redis() {
    let mut rng = Rng::seeded(64);
    let pool: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            if i < 8 {
                format!("k{i}").into_bytes()
            } else {
                let n = rng.range(0, 6);
                rng.bytes_from(SPECIAL, n)
            }
        })
        .collect();
    let names: [(&[u8], Split); 6] = [
        (b"MGET", Split::Mget),
        (b"mset", Split::Mset),
        (b"DEL", Split::SumInt),
        (b"unlink", Split::SumInt),
        (b"Exists", Split::SumInt),
        (b"TOUCH", Split::SumInt),
    ];
    check(2000, |rng| {
        let (name, split) = *rng.pick(&names);
        let nkeys = rng.range(1, 10);
        let mut argv: Vec<&[u8]> = vec![name];
        for _ in 0..nkeys {
            argv.push(pick_key(rng, &pool));
            if split == Split::Mset {
                argv.push(pick_key(rng, &pool));
            }
        }
        let cmd = command::lookup_request(&argv).expect("split command in the table");
        assert_eq!(cmd.kind, Kind::Split(split));
        assert_eq!(cmd.key_positions(&argv).map(|p| p.count()), Ok(nkeys));
        check_split(rng, split, &argv);
    });
}
