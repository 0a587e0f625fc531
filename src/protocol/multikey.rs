//! Commands split across backends (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH):
//! the split into one sub-request per backend, and the merge of their replies.
//! The same gather collects the replies of fan-out commands (`fanout`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::command::{Args, Split};
use crate::protocol::fanout;
use crate::protocol::refusal::BadMerge;
use crate::protocol::resp;

/// How a gather's parts become one reply.
enum Merge {
    Split(Split),
    FanOut(fanout::Merge),
}

/// Waits for every part of a split or fan-out command, then merges them
/// into the reply the client would have had from a single Redis.
pub struct Gather {
    merge: Merge,
    parts: Vec<Option<Bytes>>,
    remaining: usize,
    /// MGET only: for each key in the client's order, (part, index in that part's reply).
    order: Vec<(u32, u32)>,
}

impl Gather {
    /// The gather of a fan-out sent as `parts` sub-requests.
    pub fn fan_out(merge: fanout::Merge, parts: usize) -> Gather {
        Gather {
            merge: Merge::FanOut(merge),
            parts: vec![None; parts],
            remaining: parts,
            order: Vec::new(),
        }
    }

    /// Stores one part; returns the merged reply once the last part is in.
    pub fn fill(&mut self, part: u32, reply: Bytes) -> Option<Bytes> {
        let slot = self.parts.get_mut(part as usize)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(reply);
        self.remaining -= 1;
        (self.remaining == 0).then(|| self.merge())
    }

    fn merge(&self) -> Bytes {
        let parts: Vec<&Bytes> = self.parts.iter().flatten().collect();
        // A failed part fails the whole command, with that part's own error
        // (e.g. "-ERR Connection refused"), which says more than a generic
        // one; INFO and HELLO answer with what the others said.
        let tolerant = matches!(&self.merge, Merge::FanOut(m) if m.tolerates_errors());
        if !tolerant && let Some(err) = parts.iter().find(|p| resp::is_error(p)) {
            return (*err).clone();
        }
        let split = match &self.merge {
            Merge::Split(split) => *split,
            Merge::FanOut(m) => return fanout::merge(m, &parts),
        };
        match split {
            Split::Mset => {
                if parts.iter().all(|p| &p[..] == resp::OK) {
                    Bytes::from_static(resp::OK)
                } else {
                    BadMerge::Unexpected(Some("MSET")).reply()
                }
            }
            Split::SumInt => {
                let mut sum: i64 = 0;
                for p in &parts {
                    match resp::int_reply(p) {
                        Some(v) => sum = sum.saturating_add(v),
                        None => return BadMerge::Unexpected(None).reply(),
                    }
                }
                resp::int(sum)
            }
            Split::Mget => self.merge_mget(&parts),
        }
    }

    fn merge_mget(&self, parts: &[&Bytes]) -> Bytes {
        // Every part's element ranges in one vector; `starts[i]` is where
        // part i's begin.
        let mut all = Vec::with_capacity(self.order.len());
        let mut starts = Vec::with_capacity(parts.len() + 1);
        let mut ranges = Vec::new();
        for p in parts {
            if resp::array_elements(p, &mut ranges).is_none() {
                return BadMerge::Unexpected(Some("MGET")).reply();
            }
            starts.push(all.len());
            all.extend_from_slice(&ranges);
        }
        starts.push(all.len());
        let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 16);
        resp::put_int(&mut out, b'*', self.order.len() as i64);
        for &(part, idx) in &self.order {
            let (part, idx) = (part as usize, idx as usize);
            let in_part = starts
                .get(part + 1)
                .is_some_and(|&end| starts[part] + idx < end);
            let Some(r) = all.get(starts[part] + idx).filter(|_| in_part) else {
                return BadMerge::Unexpected(Some("MGET")).reply();
            };
            out.put_slice(&parts[part][r.clone()]);
        }
        out.freeze()
    }
}

/// One sub-request of a split command.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    /// The placement group its keys share (server, or slot in cluster mode).
    pub group: u64,
    pub server: usize,
    pub req: Bytes,
}

/// How to send a split command.
pub enum Plan {
    /// Every key maps to one group: forward the request unchanged.
    Whole { group: u64, server: usize },
    /// One sub-request per group, and the gather its replies fill.
    Parts(Vec<Part>, Gather),
}

/// Why a key could not be placed.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    NoServer,
}

/// Splits a command by where its keys go. `place` maps a key to
/// `(group, server)`: keys of one group travel in one sub-request (the group
/// is the server in sharding mode, the hash slot in cluster mode).
pub fn plan(
    split: Split,
    args: &(impl Args + ?Sized),
    mut place: impl FnMut(&[u8]) -> Option<(u64, usize)>,
) -> Result<Plan, SplitError> {
    let step = if split == Split::Mset { 2 } else { 1 };
    let nkeys = (args.len() - 1) / step;
    // groups[i] = (group, server, key numbers in client order)
    let mut groups: Vec<(u64, usize, Vec<u32>)> = Vec::new();
    let mut order = Vec::with_capacity(if split == Split::Mget { nkeys } else { 0 });
    for k in 0..nkeys {
        let key = args.get(1 + k * step);
        let (group, server) = place(key).ok_or(SplitError::NoServer)?;
        let gi = match groups.iter().position(|g| g.0 == group) {
            Some(gi) => gi,
            None => {
                groups.push((group, server, Vec::new()));
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        if split == Split::Mget {
            order.push((gi as u32, g.2.len() as u32));
        }
        g.2.push(k as u32);
    }
    if groups.len() == 1 {
        return Ok(Plan::Whole {
            group: groups[0].0,
            server: groups[0].1,
        });
    }
    let name = args.get(0);
    let parts = groups
        .iter()
        .map(|(group, server, keys)| {
            let mut sub: Vec<&[u8]> = Vec::with_capacity(1 + keys.len() * step);
            sub.push(name);
            for &k in keys {
                let at = 1 + k as usize * step;
                sub.push(args.get(at));
                if step == 2 {
                    sub.push(args.get(at + 1));
                }
            }
            Part {
                group: *group,
                server: *server,
                req: resp::command(&sub),
            }
        })
        .collect::<Vec<_>>();
    let gather = Gather {
        merge: Merge::Split(split),
        remaining: parts.len(),
        parts: vec![None; parts.len()],
        order,
    };
    Ok(Plan::Parts(parts, gather))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys starting with 'a' go to server 0, others to server 1.
    fn by_letter(k: &[u8]) -> Option<(u64, usize)> {
        let s = usize::from(k.first() != Some(&b'a'));
        Some((s as u64, s))
    }

    fn parts(p: Plan) -> (Vec<(usize, Bytes)>, Gather) {
        match p {
            Plan::Parts(p, g) => (p.into_iter().map(|x| (x.server, x.req)).collect(), g),
            Plan::Whole { .. } => panic!("expected a split"),
        }
    }

    #[test]
    fn one_server_is_forwarded_whole() {
        let args: Vec<&[u8]> = vec![b"MGET", b"a1", b"a2"];
        assert!(matches!(
            plan(Split::Mget, &args, by_letter),
            Ok(Plan::Whole {
                group: 0,
                server: 0
            })
        ));
    }

    #[test]
    fn mget_merges_in_key_order() {
        let args: Vec<&[u8]> = vec![b"MGET", b"a1", b"b1", b"a2", b"b2"];
        let (p, mut g) = parts(plan(Split::Mget, &args, by_letter).unwrap());
        assert_eq!(p[0], (0, resp::command(&[b"MGET", b"a1", b"a2"])));
        assert_eq!(p[1], (1, resp::command(&[b"MGET", b"b1", b"b2"])));
        assert!(
            g.fill(1, Bytes::from_static(b"*2\r\n$2\r\nB1\r\n$-1\r\n"))
                .is_none()
        );
        let r = g
            .fill(0, Bytes::from_static(b"*2\r\n$2\r\nA1\r\n$2\r\nA2\r\n"))
            .unwrap();
        assert_eq!(&r[..], b"*4\r\n$2\r\nA1\r\n$2\r\nB1\r\n$2\r\nA2\r\n$-1\r\n");
    }

    #[test]
    fn mset_and_sums() {
        let args: Vec<&[u8]> = vec![b"MSET", b"a", b"1", b"b", b"2"];
        let (p, mut g) = parts(plan(Split::Mset, &args, by_letter).unwrap());
        assert_eq!(p[1].1, resp::command(&[b"MSET", b"b", b"2"]));
        g.fill(0, Bytes::from_static(resp::OK));
        assert_eq!(
            &g.fill(1, Bytes::from_static(resp::OK)).unwrap()[..],
            resp::OK
        );

        let args: Vec<&[u8]> = vec![b"DEL", b"a", b"b", b"a"];
        let (p, mut g) = parts(plan(Split::SumInt, &args, by_letter).unwrap());
        assert_eq!(p[0].1, resp::command(&[b"DEL", b"a", b"a"]));
        g.fill(0, resp::int(2));
        assert_eq!(&g.fill(1, resp::int(1)).unwrap()[..], b":3\r\n");
    }

    #[test]
    fn an_error_part_fails_the_whole_and_duplicates_are_ignored() {
        let args: Vec<&[u8]> = vec![b"EXISTS", b"a", b"b"];
        let (_, mut g) = parts(plan(Split::SumInt, &args, by_letter).unwrap());
        g.fill(0, resp::int(1));
        assert!(g.fill(0, resp::int(1)).is_none());
        let r = g.fill(1, resp::error("ERR Connection refused")).unwrap();
        assert_eq!(&r[..], b"-ERR Connection refused\r\n");
    }
}
