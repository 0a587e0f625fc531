//! Reply streams: scanned the same however they are cut into reads.

use std::cell::Cell;

use crate::net::rpc::{self, Value};
use crate::protocol::resp;

use super::gen_reply::{Reply, feed_replies, gen_int, gen_reply};
use super::{Rng, STREAM_CASES, check, chunking, show};

#[test]
fn reply_stream_scans_the_same_however_it_is_split() {
    let mut out = Vec::new();
    let arrays = Cell::new(0);
    check(STREAM_CASES, |rng| {
        let resp3 = rng.one_in(3);
        let replies: Vec<Reply> = (0..rng.range(1, 6))
            .map(|_| gen_reply(rng, 3, resp3))
            .collect();
        let stream: Vec<u8> = replies.iter().flat_map(|r| r.bytes.clone()).collect();
        let want: Vec<usize> = replies.iter().map(|r| r.bytes.len()).collect();
        for _ in 0..3 {
            let chunks = chunking(rng, stream.len());
            assert_eq!(
                feed_replies(&stream, &chunks),
                Ok((want.clone(), 0)),
                "chunks {chunks:?}, stream {}",
                show(&stream)
            );
        }
        for r in &replies {
            // Every proper prefix is incomplete.
            let k = rng.below(r.bytes.len());
            assert_eq!(resp::scan_reply(&r.bytes[..k]), Ok(None));
            match &r.elements {
                Some(elements) => {
                    arrays.set(arrays.get() + 1);
                    assert_eq!(
                        resp::array_elements(&r.bytes, &mut out),
                        Some(()),
                        "{}",
                        show(&r.bytes)
                    );
                    assert_eq!(&out, elements, "{}", show(&r.bytes));
                }
                // A nil array is an array of nothing to array_elements.
                None if r.bytes.starts_with(b"*") => {}
                None => assert_eq!(resp::array_elements(&r.bytes, &mut out), None),
            }
            if let Some(v) = &r.value {
                assert_eq!(
                    rpc::decode(&r.bytes).as_ref(),
                    Some(v),
                    "{}",
                    show(&r.bytes)
                );
            }
            if let Some(Value::Int(i)) = r.value {
                assert_eq!(resp::int_reply(&r.bytes), Some(i));
            } else {
                assert_eq!(resp::int_reply(&r.bytes), None);
            }
        }
    });
    assert!(
        arrays.get() > 1000,
        "only {} arrays generated",
        arrays.get()
    );
}

#[test]
fn deep_replies() {
    // A chain of single-element arrays: scan_reply and array_elements go
    // to any depth; rpc::decode stops at 64 levels below the top.
    for depth in [1, 2, 63, 64, 65, 1000] {
        let mut r = b"*1\r\n".repeat(depth);
        r.extend_from_slice(b":7\r\n");
        assert_eq!(resp::scan_reply(&r), Ok(Some(r.len())));
        let mut out = Vec::new();
        assert_eq!(resp::array_elements(&r, &mut out), Some(()));
        assert_eq!(out, vec![4..r.len()]);
        let decoded = rpc::decode(&r);
        assert_eq!(decoded.is_some(), depth <= 64, "depth {depth}");
    }
}

#[test]
fn int_replies_round_trip() {
    let mut rng = Rng::seeded(5000 * 8);
    for i in 0..5000 {
        let v = if i < 64 {
            (1i64 << i).wrapping_sub(1)
        } else {
            gen_int(&mut rng)
        };
        for v in [v, v.wrapping_neg(), !v] {
            assert_eq!(resp::int_reply(&resp::int(v)), Some(v));
            assert_eq!(rpc::decode(&resp::int(v)), Some(Value::Int(v)));
            assert_eq!(resp::parse_int(v.to_string().as_bytes()), Some(v));
        }
    }
}
