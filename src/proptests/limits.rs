//! Limits: refused as soon as the header (or the inline line past the
//! limit) is in.

use std::cell::Cell;

use crate::protocol::resp::{self, Limits, ProtoError};

use super::gen_request::{Parsed, gen_inline, gen_multibulk};
use super::{STREAM_CASES, check, show, table_names};

#[test]
fn limits_are_enforced_before_the_data_arrives() {
    let names = table_names();
    let mut args = Vec::new();
    let refused = [Cell::new(0usize), Cell::new(0), Cell::new(0)];
    check(STREAM_CASES, |rng| {
        let limits = Limits {
            max_bulk: rng.range(0, 64),
            max_args: rng.range(1, 8),
            max_inline: rng.range(1, 80),
        };
        let req = if rng.one_in(3) {
            gen_inline(rng, &names)
        } else {
            gen_multibulk(rng, &names)
        };
        let b = &req.bytes;
        let ctx = || format!("{limits:?}: {}", show(b));
        // Where the frame must be refused, and why.
        let refusal: Option<(usize, ProtoError)> = if req.inline {
            let nl = b.len() - 1;
            (nl > limits.max_inline).then_some((limits.max_inline + 1, ProtoError::BigInline))
        } else {
            let header = b.iter().position(|&c| c == b'\n').unwrap() + 1;
            if req.args.len() > limits.max_args {
                Some((header, ProtoError::MultibulkLength))
            } else {
                let mut at = header;
                let mut refusal = None;
                for a in &req.args {
                    let hdr = format!("${}\r\n", a.len()).len();
                    if a.len() > limits.max_bulk {
                        refusal = Some((at + hdr, ProtoError::BulkLength));
                        break;
                    }
                    at += hdr + a.len() + 2;
                }
                refusal
            }
        };
        match refusal {
            Some((at, err)) => {
                let n = &refused[match err {
                    ProtoError::BigInline => 0,
                    ProtoError::MultibulkLength => 1,
                    _ => 2,
                }];
                n.set(n.get() + 1);
                // Refused as soon as the offending header is in...
                assert_eq!(
                    resp::parse_request(&b[..at], &mut args, &limits),
                    Err(err),
                    "{}",
                    ctx()
                );
                // ...and not a byte earlier.
                assert_eq!(
                    resp::parse_request(&b[..at - 1], &mut args, &limits),
                    Ok(None),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    resp::parse_request(b, &mut args, &limits),
                    Err(err),
                    "{}",
                    ctx()
                );
            }
            None => {
                assert_eq!(
                    resp::parse_request(b, &mut args, &limits),
                    Ok(Some(b.len())),
                    "{}",
                    ctx()
                );
                assert_eq!(args.len(), req.args.len(), "{}", ctx());
            }
        }

        // Bare headers against the limits.
        let count = rng.range(1, 10);
        let hdr = format!("*{count}\r\n");
        let want = if count > limits.max_args {
            Err(ProtoError::MultibulkLength)
        } else {
            Ok(None)
        };
        assert_eq!(
            resp::parse_request(hdr.as_bytes(), &mut args, &limits),
            want
        );
        let len = rng.range(0, 100);
        let hdr = format!("*1\r\n${len}\r\n");
        let want = if len > limits.max_bulk {
            Err(ProtoError::BulkLength)
        } else {
            Ok(None)
        };
        assert_eq!(
            resp::parse_request(hdr.as_bytes(), &mut args, &limits),
            want
        );
    });
    assert!(refused.iter().all(|n| n.get() > 50), "{refused:?}");

    // The defaults are Redis's.
    let d = Limits::default();
    let cases: &[(&[u8], Parsed)] = &[
        (b"*1\r\n$536870912\r\n", Ok(None)),
        (b"*1\r\n$536870913\r\n", Err(ProtoError::BulkLength)),
        (b"*1048576\r\n", Ok(None)),
        (b"*1048577\r\n", Err(ProtoError::MultibulkLength)),
        (
            b"*9223372036854775807\r\n",
            Err(ProtoError::MultibulkLength),
        ),
        (
            b"*1\r\n$9223372036854775807\r\n",
            Err(ProtoError::BulkLength),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(resp::parse_request(input, &mut args, &d), *want);
    }
    let long = vec![b'a'; d.max_inline];
    assert_eq!(resp::parse_request(&long, &mut args, &d), Ok(None));
    let longer = vec![b'a'; d.max_inline + 1];
    assert_eq!(
        resp::parse_request(&longer, &mut args, &d),
        Err(ProtoError::BigInline)
    );
}
