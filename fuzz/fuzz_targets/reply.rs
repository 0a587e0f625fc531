//! Backend side: the input is a byte stream from a backend.
//!
//! Scans it reply after reply with `resp::scan_reply`, checks every frame
//! lies within the input and is incomplete one byte short, and that the
//! same stream fed in three reads to a resuming `resp::ReplyScanner` gives
//! the same frames and the same final error. Each frame goes through
//! `resp::array_elements` (an array of n
//! gives n contiguous complete replies that end with the frame),
//! `resp::int_reply` and `rpc::decode` (agreeing with the other two); the
//! raw input goes through all three as well.

#![no_main]

use std::ops::Range;

use aster_proxy::protocol::resp::{self, ProtoError};
use aster_proxy::net::rpc::{self, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (frames, end) = whole(data);
    let h = data
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31) ^ usize::from(b));
    let a = if data.is_empty() { 0 } else { h % data.len() };
    let b = a + (data.len() - a) / 2;
    let (chunked, chunked_end) = in_reads(data, &[a, b - a, data.len() - b]);
    assert_eq!(frames, chunked, "frames differ with reads cut at {a}, {b}");
    assert_eq!(end, chunked_end, "end differs with reads cut at {a}, {b}");

    let mut out = Vec::new();
    let _ = resp::array_elements(data, &mut out);
    let _ = resp::int_reply(data);
    let _ = rpc::decode(data);
});

fn whole(data: &[u8]) -> (Vec<usize>, Result<usize, ProtoError>) {
    let mut frames = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        match resp::scan_reply(rest) {
            Ok(Some(n)) => {
                assert!(n > 0 && n <= rest.len(), "reply of {n} in {}", rest.len());
                assert_eq!(
                    resp::scan_reply(&rest[..n - 1]),
                    Ok(None),
                    "complete one byte short"
                );
                check_frame(&rest[..n], &mut out);
                frames.push(n);
                at += n;
            }
            Ok(None) => return (frames, Ok(data.len() - at)),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// The proxy's read loop: append a read, take complete replies off the
/// front with one resuming scanner, wait for more.
fn in_reads(data: &[u8], reads: &[usize]) -> (Vec<usize>, Result<usize, ProtoError>) {
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut scanner = resp::ReplyScanner::new();
    let mut at = 0;
    for &r in reads {
        buf.extend_from_slice(&data[at..at + r]);
        at += r;
        loop {
            match scanner.scan(&buf) {
                Ok(Some(n)) => {
                    frames.push(n);
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

fn check_frame(frame: &[u8], out: &mut Vec<Range<usize>>) {
    let elements = resp::array_elements(frame, out);
    let decoded = rpc::decode(frame);
    let int = resp::int_reply(frame);
    if let Some(Value::Int(i)) = decoded {
        assert_eq!(int, Some(i));
    }
    if frame[0] != b'*' {
        assert_eq!(elements, None);
        return;
    }
    // An array scan_reply accepted: n elements, each a complete reply,
    // back to back up to the end of the frame.
    assert_eq!(elements, Some(()));
    let cr = frame.iter().position(|&b| b == b'\r').expect("header line");
    let n = resp::parse_int(&frame[1..cr]).expect("count scan_reply accepted");
    assert_eq!(out.len() as i64, n.max(0));
    let mut at = cr + 2;
    for r in out.iter() {
        assert_eq!(r.start, at);
        assert_eq!(resp::scan_reply(&frame[r.clone()]), Ok(Some(r.len())));
        at = r.end;
    }
    assert_eq!(at, frame.len());
    if let Some(Value::Array(Some(items))) = &decoded {
        assert_eq!(items.len(), out.len());
    }
}
