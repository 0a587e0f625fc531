//! Where a request's keys are: Redis 7.x key specs (ranges, counted keys,
//! keys behind STREAMS or STORE options), walked without allocation.

use std::fmt;

use super::types::{Args, Keys};

/// Where the keys of one request are: the optional `also` position plus
/// the positions `first, first+step, ...` below `end`. Every position is
/// a valid argument index of the request it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPositions {
    pub also: Option<usize>,
    pub first: usize,
    /// Exclusive.
    pub end: usize,
    pub step: usize,
}

/// Iterator over [`KeyPositions`], in increasing argument order.
#[derive(Clone, Debug)]
pub struct KeyIter {
    also: Option<usize>,
    next: usize,
    end: usize,
    step: usize,
}

impl Iterator for KeyIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let ranged = (self.next < self.end).then_some(self.next);
        match (self.also, ranged) {
            // `also` goes first when it precedes the range (ZUNIONSTORE's
            // destination), last when it follows it (SORT ... STORE dst),
            // so positions come out in argument order.
            (Some(also), Some(r)) if also < r => self.also.take(),
            (Some(_), None) => self.also.take(),
            (_, Some(r)) => {
                self.next = r.saturating_add(self.step);
                Some(r)
            }
            (None, None) => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = range_len(self.next, self.end, self.step) + usize::from(self.also.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for KeyIter {}

fn range_len(first: usize, end: usize, step: usize) -> usize {
    if end > first {
        (end - first - 1) / step.max(1) + 1
    } else {
        0
    }
}

impl KeyPositions {
    /// No keys at all.
    pub const NONE: KeyPositions = KeyPositions {
        also: None,
        first: 0,
        end: 0,
        step: 1,
    };

    /// Key positions in increasing argument order.
    pub fn iter(&self) -> KeyIter {
        KeyIter {
            also: self.also,
            next: self.first,
            end: self.end,
            // A zero step would never advance; the fields are public, so
            // guard here rather than trust every constructor.
            step: self.step.max(1),
        }
    }

    /// Number of keys.
    pub fn count(&self) -> usize {
        range_len(self.first, self.end, self.step) + usize::from(self.also.is_some())
    }

    /// Position of the leftmost key, if any.
    pub fn first_key(&self) -> Option<usize> {
        self.iter().next()
    }
}

/// Why the keys of a request could not be located. The caller turns these
/// into Redis-style error replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The argument count does not fit the command's arity (or, for MSET
    /// and MSETNX, the key/value pairs are incomplete).
    WrongArity,
    /// numkeys not a number, negative, or more than the args present.
    BadCount,
    /// XREAD / XREADGROUP without a STREAMS token, or with nothing after it.
    NoStreams,
    /// XREAD / XREADGROUP with an odd number of arguments after STREAMS:
    /// every stream needs an ID. Redis reports this with its own message,
    /// hence a separate variant.
    Unbalanced,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::WrongArity => "wrong number of arguments",
            KeyError::BadCount => "invalid number of keys",
            KeyError::NoStreams => "syntax error, STREAMS and at least one stream expected",
            KeyError::Unbalanced => "unbalanced list of streams: each stream needs an ID",
        })
    }
}

impl std::error::Error for KeyError {}

/// Argument `i` if present. All argument access in this module goes through
/// here so that no request, however malformed, can index out of bounds.
pub(super) fn arg<A: Args + ?Sized>(args: &A, i: usize) -> Option<&[u8]> {
    (i < args.len()).then(|| args.get(i))
}

pub(super) fn arg_is<A: Args + ?Sized>(args: &A, i: usize, word: &str) -> bool {
    arg(args, i).is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
}

/// A SORT option whose pattern names other keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOption {
    By,
    Get,
}

impl SortOption {
    pub fn name(self) -> &'static str {
        match self {
            SortOption::By => "BY",
            SortOption::Get => "GET",
        }
    }
}

/// SORT's BY and GET patterns that read other keys, in order: those with a
/// '*', which SORT replaces with each element. (A BY without one only
/// turns sorting off; a GET without one, `#` included, reads no key.) The
/// options are walked as SORT walks them (`readonly`: SORT_RO, which has no
/// STORE), stopping where SORT stops with a syntax error, which the server
/// then reports itself.
pub(super) fn sort_patterns<A: Args + ?Sized>(
    args: &A,
    readonly: bool,
) -> Vec<(SortOption, &[u8])> {
    let mut found = Vec::new();
    let mut i = 2;
    while let Some(word) = arg(args, i) {
        let left = args.len() - i - 1;
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        if is("asc") || is("desc") || is("alpha") {
            i += 1;
        } else if is("limit") && left >= 2 {
            i += 3;
        } else if is("store") && !readonly && left >= 1 {
            i += 2;
        } else if (is("by") || is("get")) && left >= 1 {
            let option = if is("by") {
                SortOption::By
            } else {
                SortOption::Get
            };
            let pattern = args.get(i + 1);
            if pattern.contains(&b'*') {
                found.push((option, pattern));
            }
            i += 2;
        } else {
            break;
        }
    }
    found
}

/// Parses a key count the way Redis's `string2ll` does (no sign, spaces or
/// leading zeros; overflow rejected), so the proxy routes by the same
/// number the backend executes with. Negative values are rejected too:
/// they are never a valid key count.
fn parse_count(raw: &[u8]) -> Option<usize> {
    match raw {
        [b'0'] => Some(0),
        [b'1'..=b'9', ..] => raw.iter().try_fold(0usize, |n, &b| {
            if b.is_ascii_digit() {
                n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
            } else {
                None
            }
        }),
        _ => None,
    }
}

impl Keys {
    /// Key positions of `args` under this layout. Arity is not checked
    /// here (see [`Command::key_positions`]); positions beyond the
    /// arguments present are never returned.
    pub fn positions<A: Args + ?Sized>(self, args: &A) -> Result<KeyPositions, KeyError> {
        let argc = args.len();
        match self {
            Keys::Range { first, last, step } => range(argc, first, last, step),
            Keys::Counted { count, also } => {
                let count = usize::from(count);
                let raw = arg(args, count).ok_or(KeyError::WrongArity)?;
                let n = parse_count(raw).ok_or(KeyError::BadCount)?;
                // argc > count here since arg() succeeded.
                if n > argc - count - 1 {
                    return Err(KeyError::BadCount);
                }
                let also = match also.map(usize::from) {
                    Some(a) if a >= argc => return Err(KeyError::WrongArity),
                    other => other,
                };
                Ok(KeyPositions {
                    also,
                    first: count + 1,
                    end: count + 1 + n,
                    step: 1,
                })
            }
            Keys::Streams => streams(args),
            Keys::Sort => {
                let mut store = None;
                let mut i = 2;
                while i < argc {
                    // Same option walk as SORT itself: option values are
                    // skipped so they cannot be read as option names.
                    i += if arg_is(args, i, "limit") {
                        3
                    } else if arg_is(args, i, "by") || arg_is(args, i, "get") {
                        2
                    } else if arg_is(args, i, "store") && i + 1 < argc {
                        store = Some(i + 1);
                        2
                    } else {
                        1
                    };
                }
                with_store(argc, store)
            }
            Keys::GeoStore { options } => {
                let mut store = None;
                let mut i = usize::from(options);
                while i < argc {
                    let is_store = arg_is(args, i, "store") || arg_is(args, i, "storedist");
                    if is_store && i + 1 < argc {
                        store = Some(i + 1);
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                with_store(argc, store)
            }
        }
    }
}

/// Key at 1 plus an optional destination key.
fn with_store(argc: usize, store: Option<usize>) -> Result<KeyPositions, KeyError> {
    Ok(KeyPositions {
        also: store,
        ..range(argc, 1, 1, 1)?
    })
}

fn range(argc: usize, first: u8, last: i8, step: u8) -> Result<KeyPositions, KeyError> {
    let first = usize::from(first);
    let step = usize::from(step.max(1));
    let end = if last >= 0 {
        // Fixed positions past the end (OBJECT HELP has no key at 2) simply
        // yield fewer keys.
        (usize::from(last.unsigned_abs()) + 1).min(argc)
    } else {
        argc.saturating_sub(usize::from(last.unsigned_abs()) - 1)
    };
    if end <= first {
        return Ok(KeyPositions {
            first,
            end: first,
            ..KeyPositions::NONE
        });
    }
    // With a step (MSET, MSETNX) the open-ended tail must hold whole
    // groups; Redis itself rejects an unpaired key with an arity error.
    if last < 0 && step > 1 && (end - first) % step != 0 {
        return Err(KeyError::WrongArity);
    }
    Ok(KeyPositions {
        also: None,
        first,
        end,
        step,
    })
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS k1 k2 id1 id2` and `XREADGROUP
/// GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS ...`: walks the options
/// like Redis does, skipping their values, so a group or consumer named
/// "streams" is not taken for the token.
fn streams<A: Args + ?Sized>(args: &A) -> Result<KeyPositions, KeyError> {
    let argc = args.len();
    let mut i = 1;
    let token = loop {
        if i >= argc {
            return Err(KeyError::NoStreams);
        }
        if arg_is(args, i, "streams") {
            break i;
        } else if arg_is(args, i, "group") {
            i += 3;
        } else if arg_is(args, i, "count")
            || arg_is(args, i, "block")
            // XREADGROUP's CLAIM min-idle-time (Redis 8.4) takes one value.
            || arg_is(args, i, "claim")
        {
            i += 2;
        } else if arg_is(args, i, "noack") {
            i += 1;
        } else {
            // Unknown option: Redis answers with a syntax error.
            return Err(KeyError::NoStreams);
        }
    };
    let rest = argc - token - 1;
    if rest == 0 {
        return Err(KeyError::NoStreams);
    }
    if !rest.is_multiple_of(2) {
        return Err(KeyError::Unbalanced);
    }
    Ok(KeyPositions {
        also: None,
        first: token + 1,
        end: token + 1 + rest / 2,
        step: 1,
    })
}

/// True when the options before STREAMS (walked as [`streams`] walks them)
/// hold a BLOCK.
/// XREAD / XREADGROUP: the argument after a BLOCK option (before STREAMS),
/// if there is one.
pub(super) fn streams_block<A: Args + ?Sized>(args: &A) -> Option<Option<&[u8]>> {
    let mut i = 1;
    while i < args.len() {
        if arg_is(args, i, "streams") {
            return None;
        } else if arg_is(args, i, "block") {
            return Some(arg(args, i + 1));
        } else if arg_is(args, i, "group") {
            i += 3;
        } else if arg_is(args, i, "count") || arg_is(args, i, "claim") {
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}
