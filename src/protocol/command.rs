//! The command table: how the proxy treats every Redis command.
//!
//! For each command name the table says whether it is routed by its keys
//! ([`Kind::Keyed`]), split over backends and merged ([`Kind::Split`]),
//! answered by the proxy itself ([`Kind::Local`]) or refused
//! ([`Kind::Unsupported`]), together with Redis's arity and `readonly` flag.
//! Key positions follow Redis 7.x key specs (plus the 7.4/8.x hash field
//! expiration commands and the 8.2 stream deletion commands), including
//! keys hidden in options (SORT ... STORE, GEORADIUS ... STORE, XREAD
//! STREAMS), so every key a request names is checked by the router. Keys
//! a request does not name (SORT BY/GET patterns, keys a script builds)
//! stay the user's responsibility, as with any sharding proxy.
//!
//! Everything here is allocation-free: the lookup runs for every request.

use std::fmt;

/// Argument access without allocation: the proxy parses a request into
/// offsets in its read buffer and exposes them through this trait.
///
/// Argument 0 is the command name. `get` is only called with `i < len()`.
/// Note that with this trait in scope, `array.get(i)` on a `[&[u8]; N]`
/// resolves to [`Args::get`] (returning the argument, not an `Option`).
pub trait Args {
    /// Number of arguments, command name included.
    fn len(&self) -> usize;
    /// Argument `i`; callers guarantee `i < self.len()`.
    fn get(&self, i: usize) -> &[u8];
    /// True when there is not even a command name.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Args for [&[u8]] {
    fn len(&self) -> usize {
        // Explicit path: the inherent slice methods, not this trait's.
        <[&[u8]]>::len(self)
    }
    fn get(&self, i: usize) -> &[u8] {
        self[i]
    }
}

impl Args for Vec<&[u8]> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> &[u8] {
        self[i]
    }
}

impl<const N: usize> Args for [&[u8]; N] {
    fn len(&self) -> usize {
        N
    }
    fn get(&self, i: usize) -> &[u8] {
        self[i]
    }
}

/// How a multi-key command is split per backend and its replies merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// MGET: every argument from 1 is a key; replies are reassembled in order.
    Mget,
    /// MSET: key/value pairs from 1; every backend must reply OK.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: every argument from 1 is a key; the
    /// integer replies are summed.
    SumInt,
}

/// Commands the proxy answers itself, never forwarding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    /// Only database 0 exists behind a sharding proxy; the handler accepts
    /// `SELECT 0` and refuses the rest.
    Select,
    /// COMMAND and its subcommands describe this table, not a backend.
    Command,
    /// Client state (name, tracking...) belongs to the proxy connection.
    Client,
    Hello,
    Auth,
    /// INFO describes the proxy; backends are inspected directly.
    Info,
    /// Answered from the proxy's clock: it has no key to route by and every
    /// backend's clock is as good (or bad) as the proxy's.
    Time,
    /// SLOWLOG GET/LEN/RESET over the proxy's own slow log.
    Slowlog,
}

/// Where the keys of a [`Kind::Keyed`] command are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Keys at first, first+step, ... up to last inclusive; last < 0 counts
    /// from the end (-1 = last argument), as in Redis's key specs.
    Range { first: u8, last: i8, step: u8 },
    /// Argument `count` holds the number of keys, which follow it; `also` is
    /// an extra fixed key position (ZUNIONSTORE's destination at 1, numkeys
    /// at 2).
    Counted { count: u8, also: Option<u8> },
    /// XREAD / XREADGROUP: keys are the first half of the arguments after
    /// the STREAMS token.
    Streams,
    /// SORT: key at 1, plus the destination after a `STORE` option. Options
    /// are walked as SORT parses them so that a `BY`/`GET` pattern or a
    /// `LIMIT` value spelled "store" is not mistaken for the option. Without
    /// this, `SORT src STORE dst` would write `dst` on `src`'s backend.
    Sort,
    /// GEORADIUS / GEORADIUSBYMEMBER: key at 1, plus the destination after
    /// a `STORE` or `STOREDIST` option (the last one wins, as in Redis).
    /// `options` is the index of the first optional argument.
    GeoStore { options: u8 },
}

/// What the proxy does with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sent whole to the backend owning its keys; with several keys they
    /// must all map to one backend (the caller checks).
    Keyed(Keys),
    /// Split per backend and merged by the proxy. Key layout implied
    /// (MGET/DEL...: every arg from 1; MSET: pairs from 1).
    Split(Split),
    /// Answered by the proxy itself.
    Local(Local),
    /// Cannot work through a sharding proxy. The str is the reason shown to
    /// the user.
    Unsupported(&'static str),
}

/// One entry of the command table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// Lowercase, as Redis prints it in errors. Subcommands use Redis's
    /// `container|sub` spelling (e.g. "memory|usage").
    pub name: &'static str,
    /// Redis's convention: > 0 exact argc (name included), < 0 at least
    /// -arity.
    pub arity: i16,
    pub kind: Kind,
    /// True for commands safe to send to a replica (Redis's "readonly"
    /// flag).
    pub readonly: bool,
    /// Subcommands whose handling differs from the container's, looked up
    /// by [`Command::resolve`]. Empty for ordinary commands. The container
    /// entry stays a safe fallback: an unknown subcommand keeps the
    /// container's kind.
    pub subcommands: &'static [Command],
}

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
fn arg<A: Args + ?Sized>(args: &A, i: usize) -> Option<&[u8]> {
    (i < args.len()).then(|| args.get(i))
}

fn arg_is<A: Args + ?Sized>(args: &A, i: usize, word: &str) -> bool {
    arg(args, i).is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
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
fn streams_block<A: Args + ?Sized>(args: &A) -> bool {
    let mut i = 1;
    while i < args.len() {
        if arg_is(args, i, "streams") {
            return false;
        } else if arg_is(args, i, "block") {
            return true;
        } else if arg_is(args, i, "group") {
            i += 3;
        } else if arg_is(args, i, "count") || arg_is(args, i, "claim") {
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Key layout implied by a [`Split`] kind.
const fn split_keys(split: Split) -> Keys {
    match split {
        Split::Mset => PAIRS,
        Split::Mget | Split::SumInt => ALL,
    }
}

impl Command {
    /// True when `argc` arguments (name included) fit the arity.
    pub fn check_arity(&self, argc: usize) -> bool {
        let n = usize::from(self.arity.unsigned_abs());
        if self.arity >= 0 {
            argc == n
        } else {
            argc >= n
        }
    }

    /// Where the keys are in this request (for Keyed and Split kinds).
    /// Never panics whatever the args are; zero keys is a valid answer
    /// (EVAL with numkeys 0: the caller reports the error). Local and
    /// Unsupported commands have no keys.
    pub fn key_positions(&self, args: &(impl Args + ?Sized)) -> Result<KeyPositions, KeyError> {
        if !self.check_arity(args.len()) {
            return Err(KeyError::WrongArity);
        }
        match self.kind {
            Kind::Keyed(keys) => keys.positions(args),
            Kind::Split(split) => split_keys(split).positions(args),
            Kind::Local(_) | Kind::Unsupported(_) => Ok(KeyPositions::NONE),
        }
    }

    /// The subcommand entry for this request (`MEMORY USAGE` ->
    /// "memory|usage"), or `self` when the command has no subcommand table
    /// or the subcommand is not in it.
    pub fn resolve(&'static self, args: &(impl Args + ?Sized)) -> &'static Command {
        let Some(sub) = arg(args, 1).filter(|_| !self.subcommands.is_empty()) else {
            return self;
        };
        self.subcommands
            .iter()
            .find(|c| c.subcommand_name().as_bytes().eq_ignore_ascii_case(sub))
            .unwrap_or(self)
    }

    /// A refused form of an otherwise supported command, as (form, reason):
    /// XREAD and XREADGROUP with BLOCK would hold the backend connection
    /// that other clients share until data arrives, and past `read_timeout`
    /// every one of them would get a timeout.
    pub fn refused_form(
        &self,
        args: &(impl Args + ?Sized),
    ) -> Option<(&'static str, &'static str)> {
        match self.kind {
            Kind::Keyed(Keys::Streams) if streams_block(args) => Some(("with BLOCK", BLOCKING)),
            _ => None,
        }
    }

    /// EVAL, EVALSHA, FCALL and their read-only variants: with no key they
    /// would still run code, on whichever backend got them.
    pub fn runs_code(&self) -> bool {
        self.kind == Kind::Keyed(NUMKEYS_AT_2)
    }

    /// The part after '|' for subcommands, the whole name otherwise.
    pub fn subcommand_name(&self) -> &'static str {
        match self.name.split_once('|') {
            Some((_, sub)) => sub,
            None => self.name,
        }
    }
}

/// Longest name in the table; longer input cannot match and is rejected
/// before any comparison.
const MAX_NAME_LEN: usize = 20;

/// Case-insensitive lookup without allocation. The name is hashed
/// case-insensitively into an open-addressing index built at compile time,
/// so a lookup is one pass over the name plus (nearly always) one
/// comparison (measured faster than a binary search over the sorted
/// table).
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut slot = hash(name) & (SLOTS - 1);
    loop {
        // An empty slot (u16::MAX) is past the end of the table: not found.
        let cmd = COMMANDS.get(usize::from(INDEX[slot]))?;
        if cmd.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(cmd);
        }
        slot = (slot + 1) & (SLOTS - 1);
    }
}

/// Index size: a power of two about four times the table, which keeps
/// probe runs short. The index always has empty slots, so probing ends.
const SLOTS: usize = 1024;
const EMPTY: u16 = u16::MAX;
static INDEX: [u16; SLOTS] = build_index(TABLE);

/// FNV-1a over the lowercased bytes.
const fn hash(name: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        h ^= name[i].to_ascii_lowercase() as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h as usize
}

const fn build_index(table: &[Command]) -> [u16; SLOTS] {
    // Compile-time checks: a full index would make lookups loop forever,
    // and positions must fit below EMPTY.
    assert!(table.len() * 2 < SLOTS);
    let mut index = [EMPTY; SLOTS];
    let mut c = 0;
    while c < table.len() {
        let mut slot = hash(table[c].name.as_bytes()) & (SLOTS - 1);
        while index[slot] != EMPTY {
            slot = (slot + 1) & (SLOTS - 1);
        }
        index[slot] = c as u16;
        c += 1;
    }
    index
}

/// [`lookup`] on the command name, then [`Command::resolve`] on the
/// subcommand.
pub fn lookup_request(args: &(impl Args + ?Sized)) -> Option<&'static Command> {
    if args.is_empty() {
        return None;
    }
    lookup(args.get(0)).map(|c| c.resolve(args))
}

// Table construction helpers: one line per command keeps the table
// reviewable against Redis's command docs.

/// Redis flags the command "readonly": it may be served by a replica.
const READ: bool = true;
/// Not flagged "readonly" (writes, but also admin and pub/sub commands).
const WRITE: bool = false;

/// The usual single key at 1.
const K1: Keys = Keys::Range {
    first: 1,
    last: 1,
    step: 1,
};
/// Source and destination at 1 and 2 (RENAME, LMOVE, ZRANGESTORE...).
const K1_2: Keys = Keys::Range {
    first: 1,
    last: 2,
    step: 1,
};
/// Key after a subcommand (OBJECT ENCODING key, XINFO STREAM key...).
const K2: Keys = Keys::Range {
    first: 2,
    last: 2,
    step: 1,
};
/// Every argument from 1 (SINTER, PFCOUNT, MGET...).
const ALL: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 1,
};
/// Every argument from 2 (BITOP op dest src...).
const FROM2: Keys = Keys::Range {
    first: 2,
    last: -1,
    step: 1,
};
/// Key/value pairs from 1 (MSET, MSETNX).
const PAIRS: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 2,
};
/// numkeys at 1 (LMPOP, ZMPOP, SINTERCARD, ZUNION...).
const NUMKEYS_AT_1: Keys = Keys::Counted {
    count: 1,
    also: None,
};
/// numkeys at 2 (EVAL, FCALL and variants).
const NUMKEYS_AT_2: Keys = Keys::Counted {
    count: 2,
    also: None,
};
/// Destination at 1, numkeys at 2 (ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE).
const DEST_NUMKEYS_AT_2: Keys = Keys::Counted {
    count: 2,
    also: Some(1),
};

const fn keyed(name: &'static str, arity: i16, keys: Keys, readonly: bool) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Keyed(keys),
        readonly,
        subcommands: &[],
    }
}

const fn split(name: &'static str, arity: i16, split: Split, readonly: bool) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Split(split),
        readonly,
        subcommands: &[],
    }
}

const fn local(name: &'static str, arity: i16, local: Local) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Local(local),
        readonly: false,
        subcommands: &[],
    }
}

const fn unsupported(name: &'static str, arity: i16, why: &'static str, readonly: bool) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Unsupported(why),
        readonly,
        subcommands: &[],
    }
}

impl Command {
    const fn with_subcommands(self, subcommands: &'static [Command]) -> Command {
        Command {
            subcommands,
            ..self
        }
    }
}

// Reasons shown to users for unsupported commands.

const TRANSACTIONS: &str = "transactions cannot span a sharding proxy";
pub const BLOCKING: &str = "blocking commands would stall a shared backend connection";
const PUBSUB: &str =
    "pub/sub needs a dedicated backend connection, which a sharding proxy does not provide";
const KEYSPACE: &str =
    "the keyspace is spread over several backends, so no single backend can answer";
const FLUSH: &str = "flushing must reach every backend; run it on each backend directly";
const ADMIN: &str = "server administration must be done on each backend directly";
const REPLICATION: &str = "replication is configured per backend, not through the proxy";
const CLUSTER: &str = "the proxy hides the cluster topology from its clients";
const DATABASES: &str = "only database 0 is available through the proxy";
const MIGRATE: &str = "moving keys between servers behind the proxy would break its sharding";
const SCRIPTING: &str = "scripts and functions must be managed on each backend directly";
const MONITOR: &str = "MONITOR would need a dedicated connection to every backend";
const WAIT: &str =
    "WAIT and WAITAOF block and count the replicas of one backend, which the client cannot choose";
const RESET: &str = "RESET would reset a backend connection shared with other clients";
const INTERNAL: &str = "internal debugging command";

// Subcommand tables. Only subcommands that take a key are listed; the
// container entry covers HELP and anything unknown.

static OBJECT: &[Command] = &[
    keyed("object|encoding", 3, K2, READ),
    keyed("object|freq", 3, K2, READ),
    keyed("object|idletime", 3, K2, READ),
    keyed("object|refcount", 3, K2, READ),
];

/// MEMORY itself is refused (DOCTOR, STATS... concern one backend), but
/// MEMORY USAGE has a key and routes like any read.
static MEMORY: &[Command] = &[keyed("memory|usage", -3, K2, READ)];

static XINFO: &[Command] = &[
    keyed("xinfo|consumers", 4, K2, READ),
    keyed("xinfo|groups", 3, K2, READ),
    keyed("xinfo|stream", -3, K2, READ),
];

static XGROUP: &[Command] = &[
    keyed("xgroup|create", -5, K2, WRITE),
    keyed("xgroup|createconsumer", 5, K2, WRITE),
    keyed("xgroup|delconsumer", 5, K2, WRITE),
    keyed("xgroup|destroy", 4, K2, WRITE),
    keyed("xgroup|setid", -5, K2, WRITE),
];

static COMMANDS: &[Command] = TABLE;

/// Sorted by name (byte order) so that it is easy to review and COMMAND
/// output is stable; a test checks it. [`INDEX`] is built from it.
const TABLE: &[Command] = &[
    unsupported("acl", -2, ADMIN, WRITE),
    keyed("append", 3, K1, WRITE),
    unsupported("asking", 1, CLUSTER, WRITE),
    local("auth", -2, Local::Auth),
    unsupported("bgrewriteaof", 1, ADMIN, WRITE),
    unsupported("bgsave", -1, ADMIN, WRITE),
    keyed("bitcount", -2, K1, READ),
    keyed("bitfield", -2, K1, WRITE),
    keyed("bitfield_ro", -2, K1, READ),
    keyed("bitop", -4, FROM2, WRITE),
    keyed("bitpos", -3, K1, READ),
    unsupported("blmove", 6, BLOCKING, WRITE),
    unsupported("blmpop", -5, BLOCKING, WRITE),
    unsupported("blpop", -3, BLOCKING, WRITE),
    unsupported("brpop", -3, BLOCKING, WRITE),
    unsupported("brpoplpush", 4, BLOCKING, WRITE),
    unsupported("bzmpop", -5, BLOCKING, WRITE),
    unsupported("bzpopmax", -3, BLOCKING, WRITE),
    unsupported("bzpopmin", -3, BLOCKING, WRITE),
    local("client", -2, Local::Client),
    unsupported("cluster", -2, CLUSTER, WRITE),
    local("command", -1, Local::Command),
    unsupported("config", -2, ADMIN, WRITE),
    keyed("copy", -3, K1_2, WRITE),
    unsupported("dbsize", 1, KEYSPACE, READ),
    unsupported("debug", -2, ADMIN, WRITE),
    keyed("decr", 2, K1, WRITE),
    keyed("decrby", 3, K1, WRITE),
    split("del", -2, Split::SumInt, WRITE),
    unsupported("discard", 1, TRANSACTIONS, WRITE),
    keyed("dump", 2, K1, READ),
    local("echo", 2, Local::Echo),
    keyed("eval", -3, NUMKEYS_AT_2, WRITE),
    keyed("eval_ro", -3, NUMKEYS_AT_2, READ),
    keyed("evalsha", -3, NUMKEYS_AT_2, WRITE),
    keyed("evalsha_ro", -3, NUMKEYS_AT_2, READ),
    unsupported("exec", 1, TRANSACTIONS, WRITE),
    split("exists", -2, Split::SumInt, READ),
    keyed("expire", -3, K1, WRITE),
    keyed("expireat", -3, K1, WRITE),
    keyed("expiretime", 2, K1, READ),
    unsupported("failover", -1, REPLICATION, WRITE),
    keyed("fcall", -3, NUMKEYS_AT_2, WRITE),
    keyed("fcall_ro", -3, NUMKEYS_AT_2, READ),
    unsupported("flushall", -1, FLUSH, WRITE),
    unsupported("flushdb", -1, FLUSH, WRITE),
    unsupported("function", -2, SCRIPTING, WRITE),
    keyed("geoadd", -5, K1, WRITE),
    keyed("geodist", -4, K1, READ),
    keyed("geohash", -2, K1, READ),
    keyed("geopos", -2, K1, READ),
    keyed("georadius", -6, Keys::GeoStore { options: 6 }, WRITE),
    keyed("georadius_ro", -6, K1, READ),
    keyed(
        "georadiusbymember",
        -5,
        Keys::GeoStore { options: 5 },
        WRITE,
    ),
    keyed("georadiusbymember_ro", -5, K1, READ),
    keyed("geosearch", -7, K1, READ),
    keyed("geosearchstore", -8, K1_2, WRITE),
    keyed("get", 2, K1, READ),
    keyed("getbit", 3, K1, READ),
    keyed("getdel", 2, K1, WRITE),
    keyed("getex", -2, K1, WRITE),
    keyed("getrange", 4, K1, READ),
    keyed("getset", 3, K1, WRITE),
    keyed("hdel", -3, K1, WRITE),
    local("hello", -1, Local::Hello),
    keyed("hexists", 3, K1, READ),
    keyed("hexpire", -6, K1, WRITE),
    keyed("hexpireat", -6, K1, WRITE),
    keyed("hexpiretime", -5, K1, READ),
    keyed("hget", 3, K1, READ),
    keyed("hgetall", 2, K1, READ),
    keyed("hgetdel", -5, K1, WRITE),
    keyed("hgetex", -5, K1, WRITE),
    keyed("hincrby", 4, K1, WRITE),
    keyed("hincrbyfloat", 4, K1, WRITE),
    keyed("hkeys", 2, K1, READ),
    keyed("hlen", 2, K1, READ),
    keyed("hmget", -3, K1, READ),
    keyed("hmset", -4, K1, WRITE),
    keyed("hpersist", -5, K1, WRITE),
    keyed("hpexpire", -6, K1, WRITE),
    keyed("hpexpireat", -6, K1, WRITE),
    keyed("hpexpiretime", -5, K1, READ),
    keyed("hpttl", -5, K1, READ),
    keyed("hrandfield", -2, K1, READ),
    keyed("hscan", -3, K1, READ),
    keyed("hset", -4, K1, WRITE),
    keyed("hsetex", -6, K1, WRITE),
    keyed("hsetnx", 4, K1, WRITE),
    keyed("hstrlen", 3, K1, READ),
    keyed("httl", -5, K1, READ),
    keyed("hvals", 2, K1, READ),
    keyed("incr", 2, K1, WRITE),
    keyed("incrby", 3, K1, WRITE),
    keyed("incrbyfloat", 3, K1, WRITE),
    local("info", -1, Local::Info),
    unsupported("keys", 2, KEYSPACE, READ),
    unsupported("lastsave", 1, ADMIN, WRITE),
    unsupported("latency", -2, ADMIN, WRITE),
    keyed("lcs", -3, K1_2, READ),
    keyed("lindex", 3, K1, READ),
    keyed("linsert", 5, K1, WRITE),
    keyed("llen", 2, K1, READ),
    keyed("lmove", 5, K1_2, WRITE),
    keyed("lmpop", -4, NUMKEYS_AT_1, WRITE),
    unsupported("lolwut", -1, ADMIN, READ),
    keyed("lpop", -2, K1, WRITE),
    keyed("lpos", -3, K1, READ),
    keyed("lpush", -3, K1, WRITE),
    keyed("lpushx", -3, K1, WRITE),
    keyed("lrange", 4, K1, READ),
    keyed("lrem", 4, K1, WRITE),
    keyed("lset", 4, K1, WRITE),
    keyed("ltrim", 4, K1, WRITE),
    unsupported("memory", -2, ADMIN, WRITE).with_subcommands(MEMORY),
    split("mget", -2, Split::Mget, READ),
    unsupported("migrate", -6, MIGRATE, WRITE),
    unsupported("module", -2, ADMIN, WRITE),
    unsupported("monitor", 1, MONITOR, WRITE),
    unsupported("move", 3, DATABASES, WRITE),
    split("mset", -3, Split::Mset, WRITE),
    keyed("msetnx", -3, PAIRS, WRITE),
    unsupported("multi", 1, TRANSACTIONS, WRITE),
    keyed("object", -2, K2, READ).with_subcommands(OBJECT),
    keyed("persist", 2, K1, WRITE),
    keyed("pexpire", -3, K1, WRITE),
    keyed("pexpireat", -3, K1, WRITE),
    keyed("pexpiretime", 2, K1, READ),
    keyed("pfadd", -2, K1, WRITE),
    keyed("pfcount", -2, ALL, READ),
    unsupported("pfdebug", -3, INTERNAL, WRITE),
    keyed("pfmerge", -2, ALL, WRITE),
    unsupported("pfselftest", 1, INTERNAL, WRITE),
    local("ping", -1, Local::Ping),
    keyed("psetex", 4, K1, WRITE),
    unsupported("psubscribe", -2, PUBSUB, WRITE),
    unsupported("psync", -3, REPLICATION, WRITE),
    keyed("pttl", 2, K1, READ),
    unsupported("publish", 3, PUBSUB, WRITE),
    unsupported("pubsub", -2, PUBSUB, WRITE),
    unsupported("punsubscribe", -1, PUBSUB, WRITE),
    local("quit", -1, Local::Quit),
    unsupported("randomkey", 1, KEYSPACE, READ),
    unsupported("readonly", 1, CLUSTER, WRITE),
    unsupported("readwrite", 1, CLUSTER, WRITE),
    keyed("rename", 3, K1_2, WRITE),
    keyed("renamenx", 3, K1_2, WRITE),
    unsupported("replconf", -1, REPLICATION, WRITE),
    unsupported("replicaof", 3, REPLICATION, WRITE),
    unsupported("reset", 1, RESET, WRITE),
    keyed("restore", -4, K1, WRITE),
    unsupported("restore-asking", -4, CLUSTER, WRITE),
    unsupported("role", 1, REPLICATION, WRITE),
    keyed("rpop", -2, K1, WRITE),
    keyed("rpoplpush", 3, K1_2, WRITE),
    keyed("rpush", -3, K1, WRITE),
    keyed("rpushx", -3, K1, WRITE),
    keyed("sadd", -3, K1, WRITE),
    unsupported("save", 1, ADMIN, WRITE),
    unsupported("scan", -2, KEYSPACE, READ),
    keyed("scard", 2, K1, READ),
    unsupported("script", -2, SCRIPTING, WRITE),
    keyed("sdiff", -2, ALL, READ),
    keyed("sdiffstore", -3, ALL, WRITE),
    local("select", 2, Local::Select),
    keyed("set", -3, K1, WRITE),
    keyed("setbit", 4, K1, WRITE),
    keyed("setex", 4, K1, WRITE),
    keyed("setnx", 3, K1, WRITE),
    keyed("setrange", 4, K1, WRITE),
    unsupported("shutdown", -1, ADMIN, WRITE),
    keyed("sinter", -2, ALL, READ),
    keyed("sintercard", -3, NUMKEYS_AT_1, READ),
    keyed("sinterstore", -3, ALL, WRITE),
    keyed("sismember", 3, K1, READ),
    unsupported("slaveof", 3, REPLICATION, WRITE),
    local("slowlog", -2, Local::Slowlog),
    keyed("smembers", 2, K1, READ),
    keyed("smismember", -3, K1, READ),
    keyed("smove", 4, K1_2, WRITE),
    keyed("sort", -2, Keys::Sort, WRITE),
    keyed("sort_ro", -2, K1, READ),
    keyed("spop", -2, K1, WRITE),
    unsupported("spublish", 3, PUBSUB, WRITE),
    keyed("srandmember", -2, K1, READ),
    keyed("srem", -3, K1, WRITE),
    keyed("sscan", -3, K1, READ),
    unsupported("ssubscribe", -2, PUBSUB, WRITE),
    keyed("strlen", 2, K1, READ),
    unsupported("subscribe", -2, PUBSUB, WRITE),
    keyed("substr", 4, K1, READ),
    keyed("sunion", -2, ALL, READ),
    keyed("sunionstore", -3, ALL, WRITE),
    unsupported("sunsubscribe", -1, PUBSUB, WRITE),
    unsupported("swapdb", 3, DATABASES, WRITE),
    unsupported("sync", 1, REPLICATION, WRITE),
    local("time", 1, Local::Time),
    split("touch", -2, Split::SumInt, READ),
    keyed("ttl", 2, K1, READ),
    keyed("type", 2, K1, READ),
    split("unlink", -2, Split::SumInt, WRITE),
    unsupported("unsubscribe", -1, PUBSUB, WRITE),
    unsupported("unwatch", 1, TRANSACTIONS, WRITE),
    unsupported("wait", 3, WAIT, WRITE),
    unsupported("waitaof", 4, WAIT, WRITE),
    unsupported("watch", -2, TRANSACTIONS, WRITE),
    keyed("xack", -4, K1, WRITE),
    keyed("xackdel", -6, K1, WRITE),
    keyed("xadd", -5, K1, WRITE),
    keyed("xautoclaim", -6, K1, WRITE),
    keyed("xclaim", -6, K1, WRITE),
    keyed("xdel", -3, K1, WRITE),
    keyed("xdelex", -5, K1, WRITE),
    keyed("xgroup", -2, K2, WRITE).with_subcommands(XGROUP),
    keyed("xinfo", -2, K2, READ).with_subcommands(XINFO),
    keyed("xlen", 2, K1, READ),
    keyed("xpending", -3, K1, READ),
    keyed("xrange", -4, K1, READ),
    keyed("xread", -4, Keys::Streams, READ),
    keyed("xreadgroup", -7, Keys::Streams, WRITE),
    keyed("xrevrange", -4, K1, READ),
    keyed("xsetid", -3, K1, WRITE),
    keyed("xtrim", -4, K1, WRITE),
    keyed("zadd", -4, K1, WRITE),
    keyed("zcard", 2, K1, READ),
    keyed("zcount", 4, K1, READ),
    keyed("zdiff", -3, NUMKEYS_AT_1, READ),
    keyed("zdiffstore", -4, DEST_NUMKEYS_AT_2, WRITE),
    keyed("zincrby", 4, K1, WRITE),
    keyed("zinter", -3, NUMKEYS_AT_1, READ),
    keyed("zintercard", -3, NUMKEYS_AT_1, READ),
    keyed("zinterstore", -4, DEST_NUMKEYS_AT_2, WRITE),
    keyed("zlexcount", 4, K1, READ),
    keyed("zmpop", -4, NUMKEYS_AT_1, WRITE),
    keyed("zmscore", -3, K1, READ),
    keyed("zpopmax", -2, K1, WRITE),
    keyed("zpopmin", -2, K1, WRITE),
    keyed("zrandmember", -2, K1, READ),
    keyed("zrange", -4, K1, READ),
    keyed("zrangebylex", -4, K1, READ),
    keyed("zrangebyscore", -4, K1, READ),
    keyed("zrangestore", -5, K1_2, WRITE),
    keyed("zrank", -3, K1, READ),
    keyed("zrem", -3, K1, WRITE),
    keyed("zremrangebylex", 4, K1, WRITE),
    keyed("zremrangebyrank", 4, K1, WRITE),
    keyed("zremrangebyscore", 4, K1, WRITE),
    keyed("zrevrange", -4, K1, READ),
    keyed("zrevrangebylex", -4, K1, READ),
    keyed("zrevrangebyscore", -4, K1, READ),
    keyed("zrevrank", -3, K1, READ),
    keyed("zscan", -3, K1, READ),
    keyed("zscore", 3, K1, READ),
    keyed("zunion", -3, NUMKEYS_AT_1, READ),
    keyed("zunionstore", -4, DEST_NUMKEYS_AT_2, WRITE),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(words: &[&'a str]) -> Vec<&'a [u8]> {
        words.iter().map(|w| w.as_bytes()).collect()
    }

    fn keys(line: &str) -> Result<Vec<usize>, KeyError> {
        let a = args(&line.split(' ').collect::<Vec<_>>());
        let cmd = lookup_request(&a).expect("known command");
        let pos = cmd.key_positions(&a)?;
        let v: Vec<usize> = pos.iter().collect();
        assert_eq!(v.len(), pos.count(), "{line}");
        assert_eq!(pos.iter().len(), pos.count(), "{line}");
        assert_eq!(v.first().copied(), pos.first_key(), "{line}");
        Ok(v)
    }

    fn every_command() -> impl Iterator<Item = &'static Command> {
        COMMANDS
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
    }

    #[test]
    fn lookup_ignores_case() {
        for name in ["get", "GET", "Get", "gEt"] {
            assert_eq!(lookup(name.as_bytes()).map(|c| c.name), Some("get"));
        }
        assert_eq!(
            lookup(b"GeoRadiusByMember_RO").map(|c| c.name),
            Some("georadiusbymember_ro")
        );
        assert_eq!(
            lookup(b"RESTORE-ASKING").map(|c| c.name),
            Some("restore-asking")
        );
        for c in COMMANDS {
            let upper = c.name.to_ascii_uppercase();
            assert_eq!(lookup(upper.as_bytes()).map(|f| f.name), Some(c.name));
        }
    }

    #[test]
    fn index_probes_are_short() {
        for (pos, c) in COMMANDS.iter().enumerate() {
            let mut slot = hash(c.name.as_bytes()) & (SLOTS - 1);
            let mut probes = 1;
            while usize::from(INDEX[slot]) != pos {
                assert_ne!(INDEX[slot], EMPTY, "{} not indexed", c.name);
                slot = (slot + 1) & (SLOTS - 1);
                probes += 1;
            }
            assert!(probes <= 4, "{}: {probes} probes", c.name);
        }
        let used = INDEX.iter().filter(|&&i| i != EMPTY).count();
        assert_eq!(used, COMMANDS.len());
    }

    #[test]
    fn unknown_names() {
        for name in [
            &b""[..],
            b"g",
            b"ge",
            b"gett",
            b"foo",
            b"object|encoding",
            b"memory usage",
            b"get\0",
            b"\xffget",
            b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            b"GEORADIUSBYMEMBER_RO_",
        ] {
            assert!(lookup(name).is_none(), "{name:?}");
        }
        assert!(lookup_request(&args(&[])).is_none());
    }

    #[test]
    fn table_sorted_unique_and_well_formed() {
        for w in COMMANDS.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
        for c in every_command() {
            assert_eq!(c.name, c.name.to_ascii_lowercase(), "{}", c.name);
            assert_ne!(c.arity, 0, "{}", c.name);
            if let Kind::Keyed(Keys::Range { step, .. }) = c.kind {
                assert!(step >= 1, "{}", c.name);
            }
            if let Kind::Unsupported(why) = c.kind {
                assert!(!why.is_empty(), "{}", c.name);
            }
        }
        for c in COMMANDS {
            assert!(c.name.len() <= MAX_NAME_LEN, "{}", c.name);
            assert!(!c.name.contains('|'), "{}", c.name);
            let prefix = format!("{}|", c.name);
            for s in c.subcommands {
                assert!(s.name.starts_with(&prefix), "{}", s.name);
                assert!(s.subcommands.is_empty(), "{}", s.name);
            }
        }
        assert!(COMMANDS.len() > 250, "{}", COMMANDS.len());
    }

    #[test]
    fn kinds_and_flags() {
        let kind = |n: &str| lookup(n.as_bytes()).map(|c| c.kind);
        assert_eq!(kind("mget"), Some(Kind::Split(Split::Mget)));
        assert_eq!(kind("mset"), Some(Kind::Split(Split::Mset)));
        for n in ["del", "unlink", "exists", "touch"] {
            assert_eq!(kind(n), Some(Kind::Split(Split::SumInt)), "{n}");
        }
        assert_eq!(kind("msetnx"), Some(Kind::Keyed(PAIRS)));
        assert_eq!(kind("ping"), Some(Kind::Local(Local::Ping)));
        assert_eq!(kind("client"), Some(Kind::Local(Local::Client)));
        for n in ["multi", "exec", "discard", "watch", "unwatch"] {
            assert_eq!(kind(n), Some(Kind::Unsupported(TRANSACTIONS)), "{n}");
        }
        for n in [
            "blpop",
            "brpop",
            "blmove",
            "brpoplpush",
            "bzpopmin",
            "bzpopmax",
            "blmpop",
            "bzmpop",
        ] {
            assert_eq!(kind(n), Some(Kind::Unsupported(BLOCKING)), "{n}");
        }
        for n in ["move", "keys", "scan", "flushall", "subscribe", "cluster"] {
            assert!(matches!(kind(n), Some(Kind::Unsupported(_))), "{n}");
        }
        let ro = |n: &str| lookup(n.as_bytes()).map(|c| c.readonly);
        for n in [
            "get",
            "mget",
            "exists",
            "touch",
            "pfcount",
            "xread",
            "eval_ro",
            "fcall_ro",
            "sort_ro",
            "georadius_ro",
            "bitfield_ro",
            "httl",
            "object",
            "xinfo",
        ] {
            assert_eq!(ro(n), Some(true), "{n}");
        }
        for n in [
            "set",
            "del",
            "xreadgroup",
            "eval",
            "fcall",
            "sort",
            "georadius",
            "bitfield",
            "hgetdel",
            "hgetex",
            "getex",
            "pfmerge",
        ] {
            assert_eq!(ro(n), Some(false), "{n}");
        }
    }

    #[test]
    fn arity() {
        let get = lookup(b"get").expect("get");
        assert!(!get.check_arity(0));
        assert!(!get.check_arity(1));
        assert!(get.check_arity(2));
        assert!(!get.check_arity(3));
        let set = lookup(b"set").expect("set");
        assert!(!set.check_arity(2));
        assert!(set.check_arity(3));
        assert!(set.check_arity(9));
        assert_eq!(keys("GET"), Err(KeyError::WrongArity));
        assert_eq!(keys("GET a b"), Err(KeyError::WrongArity));
        assert_eq!(keys("EVAL script"), Err(KeyError::WrongArity));
        assert_eq!(keys("MSET a"), Err(KeyError::WrongArity));
        // Unpaired key: Redis answers with an arity error, never split it.
        assert_eq!(keys("MSET a 1 b"), Err(KeyError::WrongArity));
        assert_eq!(keys("MSETNX a 1 b"), Err(KeyError::WrongArity));
        assert_eq!(keys("OBJECT ENCODING"), Err(KeyError::WrongArity));
        assert_eq!(keys("OBJECT ENCODING a b"), Err(KeyError::WrongArity));
        assert_eq!(keys("MEMORY USAGE"), Err(KeyError::WrongArity));
    }

    #[test]
    fn ranges() {
        assert_eq!(keys("GET k"), Ok(vec![1]));
        assert_eq!(keys("set k v EX 10"), Ok(vec![1]));
        assert_eq!(keys("MGET a b c"), Ok(vec![1, 2, 3]));
        assert_eq!(keys("DEL a b"), Ok(vec![1, 2]));
        assert_eq!(keys("MSET a 1 b 2"), Ok(vec![1, 3]));
        assert_eq!(keys("MSETNX a 1 b 2 c 3"), Ok(vec![1, 3, 5]));
        assert_eq!(keys("BITOP AND dst a b"), Ok(vec![2, 3, 4]));
        assert_eq!(keys("RENAME a b"), Ok(vec![1, 2]));
        assert_eq!(keys("LCS a b LEN"), Ok(vec![1, 2]));
        assert_eq!(keys("PFMERGE d a b"), Ok(vec![1, 2, 3]));
        assert_eq!(keys("PFMERGE d"), Ok(vec![1]));
        assert_eq!(
            keys("GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"),
            Ok(vec![1, 2])
        );
        assert_eq!(keys("HGETDEL h FIELDS 2 a b"), Ok(vec![1]));
    }

    #[test]
    fn subcommands() {
        assert_eq!(keys("OBJECT ENCODING k"), Ok(vec![2]));
        assert_eq!(keys("object freq k"), Ok(vec![2]));
        let a = args(&["OBJECT", "ENCODING", "k"]);
        // The container alone already locates the key.
        let object = lookup(b"object").expect("object");
        assert_eq!(object.key_positions(&a).map(|p| p.first_key()), Ok(Some(2)));
        assert_eq!(object.resolve(&a).name, "object|encoding");
        // HELP has no key; unknown subcommands fall back to the container.
        assert_eq!(keys("OBJECT HELP"), Ok(vec![]));
        assert_eq!(
            lookup_request(&args(&["object", "nope", "k"])).map(|c| c.name),
            Some("object")
        );

        let usage = lookup_request(&args(&["MEMORY", "usage", "k"])).expect("memory");
        assert_eq!(usage.name, "memory|usage");
        assert_eq!(usage.kind, Kind::Keyed(K2));
        assert!(usage.readonly);
        assert_eq!(keys("MEMORY USAGE k SAMPLES 5"), Ok(vec![2]));
        let stats = lookup_request(&args(&["MEMORY", "STATS"])).expect("memory");
        assert_eq!(stats.kind, Kind::Unsupported(ADMIN));

        assert_eq!(keys("XINFO STREAM s FULL"), Ok(vec![2]));
        assert_eq!(keys("XINFO CONSUMERS s g"), Ok(vec![2]));
        assert_eq!(keys("XGROUP CREATE s g $ MKSTREAM"), Ok(vec![2]));
        assert_eq!(keys("XGROUP DESTROY s g"), Ok(vec![2]));
        let destroy = lookup_request(&args(&["xgroup", "destroy", "s", "g"])).expect("xgroup");
        assert!(!destroy.readonly);
        // Commands without a subcommand table resolve to themselves.
        let get = lookup(b"get").expect("get");
        assert_eq!(get.resolve(&args(&["get", "encoding"])).name, "get");
    }

    #[test]
    fn counted() {
        assert_eq!(keys("ZUNIONSTORE dst 2 a b WEIGHTS 1 2"), Ok(vec![1, 3, 4]));
        assert_eq!(keys("ZDIFFSTORE dst 1 a"), Ok(vec![1, 3]));
        assert_eq!(keys("EVAL script 0"), Ok(vec![]));
        assert_eq!(keys("EVAL script 2 a b x"), Ok(vec![3, 4]));
        assert_eq!(keys("FCALL_RO f 1 a"), Ok(vec![3]));
        assert_eq!(keys("LMPOP 2 a b LEFT"), Ok(vec![2, 3]));
        assert_eq!(keys("SINTERCARD 2 a b LIMIT 1"), Ok(vec![2, 3]));
        assert_eq!(keys("ZINTER 2 a b WITHSCORES"), Ok(vec![2, 3]));
        let p = lookup(b"zunionstore")
            .expect("zunionstore")
            .key_positions(&args(&["zunionstore", "d", "2", "a", "b"]));
        assert_eq!(
            p,
            Ok(KeyPositions {
                also: Some(1),
                first: 3,
                end: 5,
                step: 1
            })
        );
    }

    #[test]
    fn bad_counts() {
        for line in [
            "EVAL s -1",
            "EVAL s -1 a",
            "EVAL s abc a",
            "EVAL s 3 a b",
            "EVAL s 1",
            "EVAL s +1 a",
            "EVAL s 01 a",
            "EVAL s -0",
            "EVAL s 1a a",
            "EVAL s  a",
            "EVAL s 18446744073709551616 a",
            "EVAL s 99999999999999999999999999999 a",
            "ZUNIONSTORE d x a",
            "ZUNIONSTORE d 2 a",
            "ZUNIONSTORE d -2 a b",
            "LMPOP 4 a b LEFT",
            "LMPOP -1 a LEFT",
        ] {
            assert_eq!(keys(line), Err(KeyError::BadCount), "{line}");
        }
        let max = format!("EVAL s {} a", usize::MAX);
        assert_eq!(keys(&max), Err(KeyError::BadCount));
    }

    #[test]
    fn streams() {
        assert_eq!(keys("XREAD COUNT 2 STREAMS s1 s2 0 0"), Ok(vec![4, 5]));
        assert_eq!(keys("XREAD STREAMS s 0"), Ok(vec![2]));
        assert_eq!(keys("xread block 0 streams s $"), Ok(vec![4]));
        assert_eq!(keys("XREADGROUP GROUP g c STREAMS s 0"), Ok(vec![5]));
        assert_eq!(
            keys("XREADGROUP GROUP g c COUNT 1 NOACK STREAMS a b > >"),
            Ok(vec![8, 9])
        );
        // A group or consumer named "streams" is not the token.
        assert_eq!(
            keys("XREADGROUP GROUP streams streams STREAMS s >"),
            Ok(vec![5])
        );
        // ...nor is a key named "streams".
        assert_eq!(keys("XREAD STREAMS streams 0"), Ok(vec![2]));
        assert_eq!(keys("XREAD COUNT 2 s 0"), Err(KeyError::NoStreams));
        assert_eq!(keys("XREAD COUNT 2 STREAMS"), Err(KeyError::NoStreams));
        assert_eq!(keys("XREAD COUNT 2 BLOCK"), Err(KeyError::NoStreams));
        assert_eq!(keys("XREAD STREAMS a b 0"), Err(KeyError::Unbalanced));
        assert_eq!(
            keys("XREADGROUP GROUP g c STREAMS s"),
            Err(KeyError::WrongArity)
        );
        assert_eq!(
            keys("XREADGROUP GROUP g c STREAMS a b 0"),
            Err(KeyError::Unbalanced)
        );
    }

    #[test]
    fn blocking_forms_are_refused() {
        let form = |line: &str| {
            let a = args(&line.split(' ').collect::<Vec<_>>());
            lookup_request(&a).and_then(|c| c.refused_form(&a))
        };
        let block = Some(("with BLOCK", BLOCKING));
        assert_eq!(form("XREAD BLOCK 0 STREAMS s $"), block);
        assert_eq!(form("xread count 2 block 10 streams s $"), block);
        assert_eq!(form("XREADGROUP GROUP g c BLOCK 0 STREAMS s >"), block);
        assert_eq!(
            form("XREADGROUP GROUP g c NOACK block 5 STREAMS s >"),
            block
        );
        // A group, consumer or key named "block" is not the option.
        assert_eq!(form("XREADGROUP GROUP block block STREAMS s >"), None);
        assert_eq!(form("XREAD STREAMS block 0"), None);
        assert_eq!(form("XREAD COUNT 1 STREAMS s 0"), None);
        assert_eq!(form("GET block"), None);
        assert!(lookup(b"eval").is_some_and(|c| c.runs_code()));
        assert!(lookup(b"fcall_ro").is_some_and(|c| c.runs_code()));
        assert!(!lookup(b"sintercard").is_some_and(|c| c.runs_code()));
    }

    #[test]
    fn store_options() {
        assert_eq!(keys("SORT src"), Ok(vec![1]));
        assert_eq!(keys("SORT src LIMIT 0 10 ALPHA STORE dst"), Ok(vec![1, 7]));
        assert_eq!(keys("SORT src STORE a STORE b"), Ok(vec![1, 5]));
        // Pattern and LIMIT values named "store" are not the option.
        assert_eq!(keys("SORT src GET store BY store"), Ok(vec![1]));
        assert_eq!(keys("SORT src LIMIT store store"), Ok(vec![1]));
        assert_eq!(keys("SORT src STORE"), Ok(vec![1]));
        assert_eq!(keys("SORT_RO src BY w_*"), Ok(vec![1]));
        assert_eq!(keys("GEORADIUS k 1 2 3 km"), Ok(vec![1]));
        assert_eq!(keys("GEORADIUS k 1 2 3 km COUNT 5 STORE d"), Ok(vec![1, 9]));
        assert_eq!(
            keys("GEORADIUS k 1 2 3 km STORE d STOREDIST e"),
            Ok(vec![1, 9])
        );
        assert_eq!(
            keys("GEORADIUSBYMEMBER k m 3 km storedist d"),
            Ok(vec![1, 6])
        );
        assert_eq!(keys("GEORADIUS_RO k 1 2 3 km WITHDIST"), Ok(vec![1]));
    }

    #[test]
    fn non_keyed_kinds_have_no_keys() {
        assert_eq!(keys("PING"), Ok(vec![]));
        assert_eq!(keys("ECHO hi"), Ok(vec![]));
        assert_eq!(keys("MULTI"), Ok(vec![]));
        assert_eq!(keys("ECHO"), Err(KeyError::WrongArity));
    }

    #[test]
    fn key_positions_struct() {
        let p = KeyPositions {
            also: Some(7),
            first: 1,
            end: 6,
            step: 2,
        };
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![1, 3, 5, 7]);
        assert_eq!(p.count(), 4);
        assert_eq!(p.first_key(), Some(1));
        // A hand-built zero step must not loop forever.
        let z = KeyPositions { step: 0, ..p };
        assert_eq!(z.iter().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 7]);
        assert_eq!(z.count(), 6);
        assert_eq!(KeyPositions::NONE.first_key(), None);
        assert_eq!(KeyPositions::NONE.count(), 0);
    }

    #[test]
    fn args_impls() {
        let a: [&[u8]; 2] = [b"GET", b"k"];
        let get = lookup(Args::get(&a, 0)).expect("get");
        assert_eq!(get.key_positions(&a).map(|p| p.first_key()), Ok(Some(1)));
        assert_eq!(
            get.key_positions(&a[..]).map(|p| p.first_key()),
            Ok(Some(1))
        );
    }

    /// Small xorshift generator: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_arguments_never_panic() {
        const WORDS: &[&str] = &[
            "0",
            "1",
            "2",
            "3",
            "7",
            "-1",
            "-5",
            "99999999999999999999",
            "x",
            "",
            "streams",
            "STREAMS",
            "store",
            "STOREDIST",
            "limit",
            "by",
            "get",
            "group",
            "count",
            "block",
            "noack",
            "claim",
            "encoding",
            "usage",
            "stream",
            "create",
            "\u{ff}",
            "0 ",
            "+1",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let commands: Vec<&Command> = every_command().collect();
        for _ in 0..200_000 {
            let cmd = commands[rng.below(commands.len())];
            let argc = rng.below(12);
            let mut words: Vec<&[u8]> = Vec::with_capacity(argc);
            if argc > 0 {
                words.push(cmd.name.as_bytes());
            }
            while words.len() < argc {
                words.push(WORDS[rng.below(WORDS.len())].as_bytes());
            }
            let resolved = lookup_request(&words).unwrap_or(cmd);
            for c in [cmd, resolved] {
                if let Ok(p) = c.key_positions(&words) {
                    let v: Vec<usize> = p.iter().collect();
                    assert_eq!(v.len(), p.count(), "{} {words:?}", c.name);
                    assert!(
                        v.iter().all(|&i| i >= 1 && i < argc),
                        "{} {words:?}",
                        c.name
                    );
                    assert!(v.windows(2).all(|w| w[0] < w[1]), "{} {words:?}", c.name);
                }
            }
        }
    }
}
