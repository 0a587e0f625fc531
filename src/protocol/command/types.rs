//! The command table's types: how a request's arguments are read, and what
//! the table says of each command.

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

/// Commands about the whole keyspace, the script cache or the function
/// libraries, sent to every server (sharding mode) or every master or node
/// (cluster mode), their replies merged. O(servers) and not atomic: each
/// server answers at its own moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// SCAN: one server per call, in order; the cursor says which.
    Scan,
    /// KEYS: the arrays concatenated.
    Keys,
    /// DBSIZE: the counts summed.
    Dbsize,
    /// RANDOMKEY: a key from a random server that has one.
    RandomKey,
    /// SCRIPT LOAD/FLUSH: every server must give the same reply, which is
    /// the reply. Replicas too: Redis 7 does not replicate the script cache,
    /// and EVALSHA_RO may be read from a replica.
    ScriptSame,
    /// SCRIPT EXISTS: 1 for a sha only where every server (replicas too)
    /// has it.
    ScriptExists,
    /// FUNCTION LOAD/DELETE/FLUSH: the same reply from every master, which
    /// is the reply. Replicas get libraries by replication (and refuse
    /// these commands).
    FunctionSame,
    /// PUBSUB CHANNELS / SHARDCHANNELS: every server's channels, once each.
    PubsubChannels,
    /// PUBSUB NUMSUB / SHARDNUMSUB: each channel's subscribers summed.
    PubsubNumsub,
    /// PUBSUB NUMPAT: the largest count (a pattern is subscribed on every
    /// server in sharding mode, so a sum would count it once per server).
    PubsubNumpat,
    /// COMMAND and its subcommands: every server knows the same commands,
    /// so one live server's reply is the reply (aster's own table knows
    /// how to route, not Redis's flags, docs and key specs).
    AnyOne,
}

impl FanOut {
    /// Sent to replicas as well as masters (cluster mode; in sharding mode
    /// every server is a master).
    pub fn every_node(self) -> bool {
        matches!(self, FanOut::ScriptSame | FanOut::ScriptExists)
    }
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
    /// Client state (name, tracking...) belongs to the proxy connection.
    Client,
    Hello,
    Auth,
    /// INFO describes the proxy, with the servers' version and keyspace
    /// (which it asks them for).
    Info,
    /// Answered from the proxy's clock: it has no key to route by and every
    /// backend's clock is as good (or bad) as the proxy's.
    Time,
    /// SLOWLOG GET/LEN/RESET over the proxy's own slow log.
    Slowlog,
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
    /// Sent to every server (every master in cluster mode) and merged.
    FanOut(FanOut),
    /// Answered by the proxy itself.
    Local(Local),
    /// Cannot work through a sharding proxy. The str is the reason shown to
    /// the user.
    Unsupported(&'static str),
    /// May block until data arrives: sent whole, like `Keyed`, but on a
    /// backend connection of the client's own, for as long as the timeout
    /// the request names (`Timeout` says where).
    Blocking(Keys, Timeout),
    /// MULTI/EXEC/DISCARD/WATCH/UNWATCH: the client's transaction state.
    Transaction(Tx),
    /// (UN)SUBSCRIBE, P(UN)SUBSCRIBE, S(UN)SUBSCRIBE: the client's
    /// subscriptions, on backend connections of its own.
    PubSub(Sub),
}

/// The subscription commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
    Ssubscribe,
    Sunsubscribe,
}

impl Sub {
    /// The lowercase name Redis puts in its confirmations.
    pub fn name(self) -> &'static str {
        match self {
            Sub::Subscribe => "subscribe",
            Sub::Unsubscribe => "unsubscribe",
            Sub::Psubscribe => "psubscribe",
            Sub::Punsubscribe => "punsubscribe",
            Sub::Ssubscribe => "ssubscribe",
            Sub::Sunsubscribe => "sunsubscribe",
        }
    }
}

/// Where a blocking command names how long it may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The last argument, in seconds (BLPOP, BRPOP, BLMOVE, BZPOPMIN...).
    LastSecs,
    /// Argument `n`, in seconds (BLMPOP and BZMPOP: 1).
    SecsAt(u8),
}

/// The transaction commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tx {
    Multi,
    Exec,
    Discard,
    /// Its keys are every argument from 1.
    Watch,
    Unwatch,
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
