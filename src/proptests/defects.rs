//! Defects found by these properties and the fuzzers, fixed; each test
//! failed before its fix.

use crate::net::rpc::{self, Value};
use crate::protocol::resp::{self, Limits};

use super::show;

/// scan_reply adds every aggregate's declared count to a u64 of pending
/// elements; three `*9223372036854775807` headers (or two `%` ones)
/// overflow it: a panic with overflow checks (tests, fuzzing), a wrapped
/// counter in release builds, which can end a frame in the wrong place.
#[test]
fn scan_reply_pending_overflow() {
    let inputs: &[&[u8]] = &[
        b"*9223372036854775807\r\n*9223372036854775807\r\n*9223372036854775807\r\n",
        b"*2\r\n%9223372036854775807\r\n%9223372036854775807\r\n",
        b"*2\r\n|9223372036854775807\r\n",
        // As found by `cargo fuzz run reply` (minimized).
        b"*3\r\n|9223372036854775807\r\n",
    ];
    // Counts no stream could ever hold are refused, not left to wrap.
    for input in inputs {
        assert!(resp::scan_reply(input).is_err(), "{}", show(input));
    }
    // One such header alone is merely incomplete.
    assert_eq!(resp::scan_reply(b"*9223372036854775807\r\n"), Ok(None));
}

/// `resp::int(i64::MIN)` writes a reply that `int_reply`, `parse_int` and
/// `rpc::decode` refuse: parse_int accumulates the magnitude as a positive
/// i64, which cannot hold 2^63.
#[test]
fn int_min_roundtrip() {
    let r = resp::int(i64::MIN);
    assert_eq!(resp::int_reply(&r), Some(i64::MIN));
    assert_eq!(rpc::decode(&r), Some(Value::Int(i64::MIN)));
}

/// Limits near usize::MAX (the config accepts any usize): max_args is cast
/// to i64 (usize::MAX becomes -1, refusing every multibulk request) and
/// max_inline + 1 overflows (a panic with overflow checks; in release,
/// `take(0)` never finds the newline, so inline requests never complete).
#[test]
fn extreme_limits() {
    let huge = Limits {
        max_bulk: usize::MAX,
        max_args: usize::MAX,
        max_inline: usize::MAX,
    };
    let mut args = Vec::new();
    let req = b"*1\r\n$4\r\nPING\r\n";
    assert_eq!(
        resp::parse_request(req, &mut args, &huge),
        Ok(Some(req.len()))
    );
    assert_eq!(
        resp::parse_request(b"PING\r\n", &mut args, &huge),
        Ok(Some(6))
    );
}

/// An attribute map annotates the value after it, even when the map is
/// empty: scan_reply only adds that value to its count for `|n` with n > 0,
/// so `|0\r\n:1\r\n` is cut after `|0\r\n`, and `:1\r\n` is left to be
/// taken for the reply to the next request.
#[test]
fn empty_attribute_precedes_a_value() {
    assert_eq!(resp::scan_reply(b"|0\r\n:1\r\n"), Ok(Some(8)));
    assert_eq!(resp::scan_reply(b"*1\r\n|0\r\n:1\r\n"), Ok(Some(12)));
}
