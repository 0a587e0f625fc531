//! Request streams: parsed the same however they are cut into reads.

use std::cell::Cell;

use crate::protocol::resp::{self, Limits};

use super::gen_request::{Frames, Req, feed_requests, gen_request};
use super::{STREAM_CASES, check, chunking, show, table_names};

#[test]
fn request_stream_parses_the_same_however_it_is_split() {
    let names = table_names();
    let limits = Limits::default();
    let frames_seen = Cell::new(0);
    check(STREAM_CASES, |rng| {
        let reqs: Vec<Req> = (0..rng.range(1, 8))
            .map(|_| gen_request(rng, &names))
            .collect();
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
        let want: Frames = reqs
            .iter()
            .map(|r| (r.bytes.len(), r.args.clone()))
            .collect();
        for _ in 0..3 {
            let chunks = chunking(rng, stream.len());
            let got = feed_requests(&stream, &chunks, &limits);
            assert_eq!(
                got,
                Ok((want.clone(), 0)),
                "chunks {chunks:?}, stream {}",
                show(&stream)
            );
        }
        frames_seen.set(frames_seen.get() + reqs.len());
    });
    assert!(frames_seen.get() > STREAM_CASES as usize * 3);
}

#[test]
fn every_proper_prefix_of_a_request_is_incomplete() {
    let names = table_names();
    let limits = Limits::default();
    let mut args = Vec::new();
    check(STREAM_CASES, |rng| {
        let req = gen_request(rng, &names);
        for k in 0..req.bytes.len() {
            assert_eq!(
                resp::parse_request(&req.bytes[..k], &mut args, &limits),
                Ok(None),
                "prefix {k} of {}",
                show(&req.bytes)
            );
        }
        // And whatever follows the frame does not change it.
        let mut more = req.bytes.clone();
        more.extend(rng.random_bytes(8));
        let n = resp::parse_request(&more, &mut args, &limits);
        assert_eq!(n, Ok(Some(req.bytes.len())));
        let got: Vec<&[u8]> = args.iter().map(|r| &more[r.clone()]).collect();
        assert_eq!(got, req.args, "inline {}", req.inline);
    });
}
