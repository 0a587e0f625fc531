//! The command table: how the proxy treats every Redis command.
//!
//! For each command name the table says whether it is routed by its keys
//! ([`Kind::Keyed`]), split over backends and merged ([`Kind::Split`]),
//! sent to every backend and merged ([`Kind::FanOut`]), answered by the proxy itself ([`Kind::Local`]) or refused
//! ([`Kind::Unsupported`]), together with Redis's arity and `readonly` flag.
//! Key positions follow Redis 7.x key specs (plus the 7.4/8.x hash field
//! expiration commands and the 8.2 stream deletion commands), including
//! keys hidden in options (SORT ... STORE, GEORADIUS ... STORE, XREAD
//! STREAMS), so every key a request names is checked by the router, and
//! SORT's BY/GET patterns are found for it (`Command::sort_patterns`). Keys
//! a script builds stay the user's responsibility, as with any sharding
//! proxy.
//!
//! Everything here is allocation-free: the lookup runs for every request.

mod keys;
mod table;
mod types;

use std::time::Duration;

pub use keys::{KeyError, KeyIter, KeyPositions, SortOption};
use keys::{arg, sort_patterns, streams_block};
use table::*;
pub use types::{Args, Command, FanOut, Keys, Kind, Local, Split, Sub, Timeout, Tx};

/// How long a blocking request may block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Block {
    /// Timeout 0 (or one the server will refuse): until data comes.
    Forever,
    For(Duration),
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
            Kind::Keyed(keys) | Kind::Blocking(keys, _) => keys.positions(args),
            Kind::Split(split) => split_keys(split).positions(args),
            Kind::Transaction(Tx::Watch) => FROM1.positions(args),
            Kind::Local(_)
            | Kind::FanOut(_)
            | Kind::Unsupported(_)
            | Kind::Transaction(_)
            | Kind::PubSub(_) => Ok(KeyPositions::NONE),
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

    /// How long this request may block: `None` for a command that does not
    /// block (XREAD/XREADGROUP without BLOCK included). A timeout that does
    /// not parse blocks `Forever` as far as the proxy is concerned: the
    /// server refuses it at once anyway.
    pub fn block(&self, args: &(impl Args + ?Sized)) -> Option<Block> {
        let (raw, unit_ms) = match self.kind {
            Kind::Blocking(_, Timeout::LastSecs) => (arg(args, args.len().checked_sub(1)?), false),
            Kind::Blocking(_, Timeout::SecsAt(i)) => (arg(args, usize::from(i)), false),
            Kind::Keyed(Keys::Streams) => (streams_block(args)?, true),
            _ => return None,
        };
        let secs = std::str::from_utf8(raw?)
            .ok()
            .and_then(|t| t.parse::<f64>().ok());
        let secs = match secs {
            Some(v) if v.is_finite() && v > 0.0 => {
                if unit_ms {
                    v / 1000.0
                } else {
                    v
                }
            }
            _ => return Some(Block::Forever),
        };
        Some(Duration::try_from_secs_f64(secs).map_or(Block::Forever, Block::For))
    }

    /// EVAL, EVALSHA, FCALL and their read-only variants: with no key they
    /// would still run code, on whichever backend got them.
    pub fn runs_code(&self) -> bool {
        self.kind == Kind::Keyed(NUMKEYS_AT_2)
    }

    /// SORT and SORT_RO: the BY and GET patterns that read other keys (see
    /// `keys::sort_patterns`); none for any other command.
    pub fn sort_patterns<'a>(&self, args: &'a (impl Args + ?Sized)) -> Vec<(SortOption, &'a [u8])> {
        match self.name {
            "sort" => sort_patterns(args, false),
            "sort_ro" => sort_patterns(args, true),
            _ => Vec::new(),
        }
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
    fn sort_patterns_are_found_as_sort_walks_its_options() {
        let found = |line: &str| {
            let a = args(&line.split(' ').collect::<Vec<_>>());
            let cmd = lookup_request(&a).expect("known command");
            cmd.sort_patterns(&a)
                .into_iter()
                .map(|(o, p)| format!("{} {}", o.name(), String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            found("SORT l BY w_* GET o_* GET # GET nostar BY nosort"),
            ["BY w_*", "GET o_*"]
        );
        assert_eq!(
            found("sort l limit 0 10 get by alpha desc store get get h_*->f"),
            ["GET h_*->f"],
            "option values are not options"
        );
        assert_eq!(found("SORT_RO l ASC BY {t}w_*"), ["BY {t}w_*"]);
        // SORT_RO has no STORE, and SORT stops at a syntax error.
        assert!(found("SORT_RO l STORE d BY w_*").is_empty());
        assert!(found("SORT l NOSUCH BY w_*").is_empty());
        assert!(found("SORT l LIMIT 0 BY w_*").is_empty());
        assert!(found("SORT l BY").is_empty());
        assert!(found("GET w_*").is_empty());
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
        for (n, tx) in [
            ("multi", Tx::Multi),
            ("exec", Tx::Exec),
            ("discard", Tx::Discard),
            ("watch", Tx::Watch),
            ("unwatch", Tx::Unwatch),
        ] {
            assert_eq!(kind(n), Some(Kind::Transaction(tx)), "{n}");
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
            assert!(matches!(kind(n), Some(Kind::Blocking(..))), "{n}");
        }
        for n in [
            "move", "flushall", "pubsub", "cluster", "script", "function",
        ] {
            assert!(matches!(kind(n), Some(Kind::Unsupported(_))), "{n}");
        }
        assert_eq!(kind("scan"), Some(Kind::FanOut(FanOut::Scan)));
        assert_eq!(kind("keys"), Some(Kind::FanOut(FanOut::Keys)));
        assert_eq!(kind("dbsize"), Some(Kind::FanOut(FanOut::Dbsize)));
        assert_eq!(kind("randomkey"), Some(Kind::FanOut(FanOut::RandomKey)));
        let sub = |line: &str| {
            let a = args(&line.split(' ').collect::<Vec<_>>());
            lookup_request(&a).map(|c| (c.name, c.kind))
        };
        assert_eq!(
            sub("script load x"),
            Some(("script|load", Kind::FanOut(FanOut::ScriptSame)))
        );
        assert_eq!(
            sub("SCRIPT EXISTS a b"),
            Some(("script|exists", Kind::FanOut(FanOut::ScriptExists)))
        );
        assert_eq!(
            sub("SCRIPT FLUSH").map(|(_, k)| k),
            Some(Kind::FanOut(FanOut::ScriptSame))
        );
        for line in ["FUNCTION LOAD x", "FUNCTION DELETE x", "FUNCTION FLUSH"] {
            assert_eq!(
                sub(line).map(|(_, k)| k),
                Some(Kind::FanOut(FanOut::FunctionSame)),
                "{line}"
            );
        }
        assert!(FanOut::ScriptExists.every_node() && FanOut::ScriptSame.every_node());
        assert!(!FanOut::FunctionSame.every_node() && !FanOut::Keys.every_node());
        for line in [
            "SCRIPT KILL",
            "SCRIPT DEBUG YES",
            "FUNCTION LIST",
            "FUNCTION DUMP",
            "FUNCTION STATS",
        ] {
            assert_eq!(
                sub(line).map(|(_, k)| k),
                Some(Kind::Unsupported(SCRIPTING)),
                "{line}"
            );
        }
        assert_eq!(kind("subscribe"), Some(Kind::PubSub(Sub::Subscribe)));
        assert_eq!(kind("sunsubscribe"), Some(Kind::PubSub(Sub::Sunsubscribe)));
        assert_eq!(kind("publish"), Some(Kind::Keyed(K1)));
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
    fn blocking_forms_and_their_timeouts() {
        let form = |line: &str| {
            let a = args(&line.split(' ').collect::<Vec<_>>());
            lookup_request(&a).and_then(|c| c.block(&a))
        };
        let ms = |n| Some(Block::For(Duration::from_millis(n)));
        assert_eq!(form("XREAD BLOCK 0 STREAMS s $"), Some(Block::Forever));
        assert_eq!(form("xread count 2 block 10 streams s $"), ms(10));
        assert_eq!(
            form("XREADGROUP GROUP g c BLOCK 0 STREAMS s >"),
            Some(Block::Forever)
        );
        assert_eq!(
            form("XREADGROUP GROUP g c NOACK block 5 STREAMS s >"),
            ms(5)
        );
        // A group, consumer or key named "block" is not the option.
        assert_eq!(form("XREADGROUP GROUP block block STREAMS s >"), None);
        assert_eq!(form("XREAD STREAMS block 0"), None);
        assert_eq!(form("XREAD COUNT 1 STREAMS s 0"), None);
        assert_eq!(form("GET block"), None);
        assert_eq!(form("BLPOP a b 1.5"), ms(1500));
        assert_eq!(form("BRPOP a 0"), Some(Block::Forever));
        assert_eq!(form("BLMPOP 0.25 2 a b LEFT"), ms(250));
        assert_eq!(form("BZPOPMIN a notanumber"), Some(Block::Forever));
        assert_eq!(form("LPOP a"), None);
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
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
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
