//! Pub/sub frames as the proxy needs them: telling a message from a
//! confirmation, reading a message's pattern and channel, and which names
//! concern keyspace notifications (every server publishes its own).

/// What kind of message a frame carries, with the names it was matched by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// `message <channel> <payload>`.
    Channel(&'a [u8]),
    /// `pmessage <pattern> <channel> <payload>`.
    Pattern {
        pattern: &'a [u8],
        channel: &'a [u8],
    },
    /// `smessage <channel> <payload>`.
    Shard(&'a [u8]),
}

/// A pub/sub message frame (RESP2 array or RESP3 push): `message`,
/// `pmessage` or `smessage` first. Only the header and the first element
/// are looked at, not the payload.
pub fn is_message(frame: &[u8]) -> bool {
    let Some(first) = after_header(frame) else {
        return false;
    };
    [
        &b"$7\r\nmessage\r\n"[..],
        b"$8\r\npmessage\r\n",
        b"$8\r\nsmessage\r\n",
    ]
    .iter()
    .any(|kind| first.starts_with(kind))
}

/// A message frame's kind and names; `None` for anything else (a
/// confirmation, a reply). The payload is not read.
pub fn message(frame: &[u8]) -> Option<Message<'_>> {
    let rest = after_header(frame)?;
    let (kind, rest) = bulk_string(rest)?;
    let (first, rest) = bulk_string(rest)?;
    match kind {
        b"message" => Some(Message::Channel(first)),
        b"smessage" => Some(Message::Shard(first)),
        b"pmessage" => Some(Message::Pattern {
            pattern: first,
            channel: bulk_string(rest)?.0,
        }),
        _ => None,
    }
}

/// What follows an array's or a push's header line.
fn after_header(frame: &[u8]) -> Option<&[u8]> {
    if !matches!(frame.first(), Some(b'*' | b'>')) {
        return None;
    }
    let cr = frame.iter().position(|&b| b == b'\r')?;
    frame.get(cr + 2..)
}

/// The bulk string at the front of `buf`, and what follows it.
pub fn bulk_string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = buf.strip_prefix(b"$")?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    let len = usize::try_from(crate::protocol::resp::parse_int(&rest[..cr])?).ok()?;
    let start = cr + 2;
    let data = rest.get(start..start.checked_add(len)?)?;
    Some((data, rest.get(start + len + 2..)?))
}

/// Where Redis publishes keyspace notifications: each server its own, for
/// the keys it holds, never over the cluster bus.
const KEYSPACE_PREFIXES: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// A channel keyspace notifications are published on.
pub fn is_keyspace_channel(channel: &[u8]) -> bool {
    KEYSPACE_PREFIXES.iter().any(|p| channel.starts_with(p))
}

/// Whether glob `pattern` (Redis's syntax: `*`, `?`, `[...]`, `\`) could
/// match a keyspace notification channel. In doubt (a pattern it does not
/// parse), yes: such a pattern is subscribed on every server, which only
/// costs connections.
pub fn may_match_keyspace(pattern: &[u8]) -> bool {
    KEYSPACE_PREFIXES
        .iter()
        .any(|p| matches_some_with_prefix(pattern, p))
}

/// Whether `pattern` matches some string that starts with `prefix`.
fn matches_some_with_prefix(mut pattern: &[u8], mut prefix: &[u8]) -> bool {
    loop {
        let Some((&c, rest)) = pattern.split_first() else {
            return prefix.is_empty();
        };
        let Some((&b, tail)) = prefix.split_first() else {
            // What is left of the pattern matches some suffix.
            return true;
        };
        // `*` matches the rest of the prefix, and the pattern after it
        // some suffix.
        let after = match (c, rest) {
            (b'*', _) => return true,
            (b'?', _) => rest,
            (b'[', _) => match class(rest, b) {
                Some((true, after)) => after,
                Some((false, _)) => return false,
                None => return true,
            },
            (b'\\', [esc, after @ ..]) if *esc == b => after,
            (b'\\', [_, ..]) => return false,
            _ if c == b => rest,
            _ => return false,
        };
        pattern = after;
        prefix = tail;
    }
}

/// A `[...]` class (after its `[`) tested on byte `b`, as Redis's
/// `stringmatchlen` reads one: whether it matches, and the pattern after
/// its `]`; `None` when it is not closed.
fn class(mut p: &[u8], b: u8) -> Option<(bool, &[u8])> {
    let negated = p.first() == Some(&b'^');
    if negated {
        p = &p[1..];
    }
    let mut hit = false;
    loop {
        p = match p {
            [] => return None,
            [b']', rest @ ..] => return Some((hit != negated, rest)),
            [b'\\', c, rest @ ..] => {
                hit |= *c == b;
                rest
            }
            [lo, b'-', hi, rest @ ..] => {
                hit |= (*lo.min(hi)..=*lo.max(hi)).contains(&b);
                rest
            }
            [c, rest @ ..] => {
                hit |= *c == b;
                rest
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_told_from_confirmations_in_both_protocols() {
        assert!(is_message(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"));
        assert!(is_message(
            b">4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$1\r\nc\r\n$1\r\nx\r\n"
        ));
        assert!(is_message(
            b">3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"
        ));
        assert!(!is_message(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"));
        assert!(!is_message(
            b">3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
        ));
        assert!(!is_message(b"+PONG\r\n"));
        assert!(!is_message(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"));
    }

    #[test]
    fn a_message_names_its_channel_and_pattern() {
        assert_eq!(
            message(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Some(Message::Channel(b"ch"))
        );
        assert_eq!(
            message(b">4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$3\r\np\r1\r\n$0\r\n\r\n"),
            Some(Message::Pattern {
                pattern: b"p*",
                channel: b"p\r1"
            })
        );
        assert_eq!(
            message(b">3\r\n$8\r\nsmessage\r\n$3\r\n{s}\r\n$1\r\nx\r\n"),
            Some(Message::Shard(b"{s}"))
        );
        assert_eq!(message(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"), None);
        // Cut short: not a message.
        assert_eq!(message(b"*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n"), None);
        assert_eq!(message(b"*3\r\n$7\r\nmessage\r\n$9\r\nch\r\n"), None);
    }

    #[test]
    fn keyspace_channels_and_the_patterns_that_may_match_them() {
        assert!(is_keyspace_channel(b"__keyevent@0__:set"));
        assert!(is_keyspace_channel(b"__keyspace@3__:user:1"));
        assert!(!is_keyspace_channel(b"__keyspace"));
        assert!(!is_keyspace_channel(b"news"));
        for p in [
            &b"*"[..],
            b"__key*",
            b"__keyspace@0__:*",
            b"__keyevent@*__:expired",
            b"__key???ce@*",
            b"__key[a-z]vent@*",
            b"__key[^x]pace@0__:k",
            b"_?key*",
            b"\\_\\_keyspace@*",
            b"__key[e",
            b"__keyevent@",
            b"__keyspace@",
        ] {
            assert!(may_match_keyspace(p), "{}", String::from_utf8_lossy(p));
        }
        for p in [
            &b"news*"[..],
            b"__key",
            b"__keys",
            b"__keyspace_*",
            b"__key[^e]vent@*",
            b"__key[f-z]vent@*",
            b"?_kev*",
            b"\\*__keyspace@*",
            b"",
        ] {
            assert!(!may_match_keyspace(p), "{}", String::from_utf8_lossy(p));
        }
    }
}
