//! The table itself: one line per command (arity, keys, readonly), and the
//! reasons shown for refused ones.

use super::types::{Command, FanOut, Keys, Kind, Local, Split, Sub, Timeout, Tx};

// Table construction helpers: one line per command keeps the table
// reviewable against Redis's command docs.

/// Redis flags the command "readonly": it may be served by a replica.
pub(super) const READ: bool = true;
/// Not flagged "readonly" (writes, but also admin and pub/sub commands).
pub(super) const WRITE: bool = false;

/// The usual single key at 1.
pub(super) const K1: Keys = Keys::Range {
    first: 1,
    last: 1,
    step: 1,
};
/// Source and destination at 1 and 2 (RENAME, LMOVE, ZRANGESTORE...).
pub(super) const K1_2: Keys = Keys::Range {
    first: 1,
    last: 2,
    step: 1,
};
/// Key after a subcommand (OBJECT ENCODING key, XINFO STREAM key...).
pub(super) const K2: Keys = Keys::Range {
    first: 2,
    last: 2,
    step: 1,
};
/// Every argument from 1 (SINTER, PFCOUNT, MGET...).
pub(super) const ALL: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 1,
};
/// Every argument from 2 (BITOP op dest src...).
pub(super) const FROM2: Keys = Keys::Range {
    first: 2,
    last: -1,
    step: 1,
};
/// Key/value pairs from 1 (MSET, MSETNX).
pub(super) const PAIRS: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 2,
};
/// numkeys at 1 (LMPOP, ZMPOP, SINTERCARD, ZUNION...).
/// Keys from 1 up to the one before last (BLPOP's timeout is last).
pub(super) const ALL_BUT_LAST: Keys = Keys::Range {
    first: 1,
    last: -2,
    step: 1,
};
/// Every argument from 1 (WATCH).
pub(super) const FROM1: Keys = Keys::Range {
    first: 1,
    last: -1,
    step: 1,
};
pub(super) const NUMKEYS_AT_1: Keys = Keys::Counted {
    count: 1,
    also: None,
};
/// numkeys at 2 (EVAL, FCALL and variants).
pub(super) const NUMKEYS_AT_2: Keys = Keys::Counted {
    count: 2,
    also: None,
};
/// Destination at 1, numkeys at 2 (ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE).
pub(super) const DEST_NUMKEYS_AT_2: Keys = Keys::Counted {
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

const fn fan_out(name: &'static str, arity: i16, fan: FanOut, readonly: bool) -> Command {
    Command {
        name,
        arity,
        kind: Kind::FanOut(fan),
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

const fn blocking(name: &'static str, arity: i16, keys: Keys, timeout: Timeout) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Blocking(keys, timeout),
        readonly: false,
        subcommands: &[],
    }
}

const fn pubsub(name: &'static str, arity: i16, sub: Sub) -> Command {
    Command {
        name,
        arity,
        kind: Kind::PubSub(sub),
        readonly: false,
        subcommands: &[],
    }
}

const fn transaction(name: &'static str, arity: i16, tx: Tx) -> Command {
    Command {
        name,
        arity,
        kind: Kind::Transaction(tx),
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

pub(super) const PUBSUB: &str = "only PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS and SHARDNUMSUB are answered (from every server)";
pub(super) const FLUSH: &str = "flushing must reach every backend; run it on each backend directly";
pub(super) const ADMIN: &str = "server administration must be done on each backend directly";
pub(super) const REPLICATION: &str = "replication is configured per backend, not through the proxy";
pub(super) const CLUSTER: &str = "the proxy hides the cluster topology from its clients";
pub(super) const DATABASES: &str = "only database 0 is available through the proxy";
pub(super) const MIGRATE: &str =
    "moving keys between servers behind the proxy would break its sharding";
pub(super) const SCRIPTING: &str = "this subcommand concerns one backend's scripts or functions; run it on each backend directly (LOAD, EXISTS, FLUSH and DELETE are sent to every backend)";
pub(super) const MONITOR: &str = "MONITOR would need a dedicated connection to every backend";
pub(super) const WAIT: &str = "WAIT and WAITAOF count the replicas acknowledging this connection's writes, but a client's writes travel on the proxy's shared connections";
pub(super) const RESET: &str = "RESET would reset a backend connection shared with other clients";
pub(super) const INTERNAL: &str = "internal debugging command";

// Subcommand tables. Only subcommands that take a key are listed; the
// container entry covers HELP and anything unknown.

pub(super) static OBJECT: &[Command] = &[
    keyed("object|encoding", 3, K2, READ),
    keyed("object|freq", 3, K2, READ),
    keyed("object|idletime", 3, K2, READ),
    keyed("object|refcount", 3, K2, READ),
];

/// MEMORY itself is refused (DOCTOR, STATS... concern one backend), but
/// MEMORY USAGE has a key and routes like any read.
pub(super) static MEMORY: &[Command] = &[keyed("memory|usage", -3, K2, READ)];

pub(super) static XINFO: &[Command] = &[
    keyed("xinfo|consumers", 4, K2, READ),
    keyed("xinfo|groups", 3, K2, READ),
    keyed("xinfo|stream", -3, K2, READ),
];

pub(super) static XGROUP: &[Command] = &[
    keyed("xgroup|create", -5, K2, WRITE),
    keyed("xgroup|createconsumer", 5, K2, WRITE),
    keyed("xgroup|delconsumer", 5, K2, WRITE),
    keyed("xgroup|destroy", 4, K2, WRITE),
    keyed("xgroup|setid", -5, K2, WRITE),
];

/// Managing the script cache everywhere lets EVALSHA run wherever its keys
/// live; the rest (KILL, DEBUG...) concerns one backend.
pub(super) static SCRIPT: &[Command] = &[
    fan_out("script|exists", -3, FanOut::ScriptExists, WRITE),
    fan_out("script|flush", -2, FanOut::ScriptSame, WRITE),
    fan_out("script|load", 3, FanOut::ScriptSame, WRITE),
];

/// As SCRIPT: loading and deleting libraries everywhere lets FCALL run
/// wherever its keys live; LIST, DUMP, RESTORE, STATS, KILL stay refused.
pub(super) static FUNCTION: &[Command] = &[
    fan_out("function|delete", 3, FanOut::FunctionSame, WRITE),
    fan_out("function|flush", -2, FanOut::FunctionSame, WRITE),
    fan_out("function|load", -3, FanOut::FunctionSame, WRITE),
];

/// PUBSUB introspection asks every master and merges the answers.
pub(super) static PUBSUB_SUBS: &[Command] = &[
    fan_out("pubsub|channels", -2, FanOut::PubsubChannels, READ),
    fan_out("pubsub|numpat", 2, FanOut::PubsubNumpat, READ),
    fan_out("pubsub|numsub", -2, FanOut::PubsubNumsub, READ),
    fan_out("pubsub|shardchannels", -2, FanOut::PubsubChannels, READ),
    fan_out("pubsub|shardnumsub", -2, FanOut::PubsubNumsub, READ),
];

pub(super) static COMMANDS: &[Command] = TABLE;

/// Sorted by name (byte order) so that it is easy to review and COMMAND
/// output is stable; a test checks it. [`INDEX`] is built from it.
pub(super) const TABLE: &[Command] = &[
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
    blocking("blmove", 6, K1_2, Timeout::LastSecs),
    blocking("blmpop", -5, NUMKEYS_AT_2, Timeout::SecsAt(1)),
    blocking("blpop", -3, ALL_BUT_LAST, Timeout::LastSecs),
    blocking("brpop", -3, ALL_BUT_LAST, Timeout::LastSecs),
    blocking("brpoplpush", 4, K1_2, Timeout::LastSecs),
    blocking("bzmpop", -5, NUMKEYS_AT_2, Timeout::SecsAt(1)),
    blocking("bzpopmax", -3, ALL_BUT_LAST, Timeout::LastSecs),
    blocking("bzpopmin", -3, ALL_BUT_LAST, Timeout::LastSecs),
    local("client", -2, Local::Client),
    unsupported("cluster", -2, CLUSTER, WRITE),
    fan_out("command", -1, FanOut::AnyOne, WRITE),
    unsupported("config", -2, ADMIN, WRITE),
    keyed("copy", -3, K1_2, WRITE),
    fan_out("dbsize", 1, FanOut::Dbsize, READ),
    unsupported("debug", -2, ADMIN, WRITE),
    keyed("decr", 2, K1, WRITE),
    keyed("decrby", 3, K1, WRITE),
    split("del", -2, Split::SumInt, WRITE),
    transaction("discard", 1, Tx::Discard),
    keyed("dump", 2, K1, READ),
    local("echo", 2, Local::Echo),
    keyed("eval", -3, NUMKEYS_AT_2, WRITE),
    keyed("eval_ro", -3, NUMKEYS_AT_2, READ),
    keyed("evalsha", -3, NUMKEYS_AT_2, WRITE),
    keyed("evalsha_ro", -3, NUMKEYS_AT_2, READ),
    transaction("exec", 1, Tx::Exec),
    split("exists", -2, Split::SumInt, READ),
    keyed("expire", -3, K1, WRITE),
    keyed("expireat", -3, K1, WRITE),
    keyed("expiretime", 2, K1, READ),
    unsupported("failover", -1, REPLICATION, WRITE),
    keyed("fcall", -3, NUMKEYS_AT_2, WRITE),
    keyed("fcall_ro", -3, NUMKEYS_AT_2, READ),
    unsupported("flushall", -1, FLUSH, WRITE),
    unsupported("flushdb", -1, FLUSH, WRITE),
    unsupported("function", -2, SCRIPTING, WRITE).with_subcommands(FUNCTION),
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
    fan_out("keys", 2, FanOut::Keys, READ),
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
    transaction("multi", 1, Tx::Multi),
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
    pubsub("psubscribe", -2, Sub::Psubscribe),
    unsupported("psync", -3, REPLICATION, WRITE),
    keyed("pttl", 2, K1, READ),
    keyed("publish", 3, K1, WRITE),
    unsupported("pubsub", -2, PUBSUB, WRITE).with_subcommands(PUBSUB_SUBS),
    pubsub("punsubscribe", -1, Sub::Punsubscribe),
    local("quit", -1, Local::Quit),
    fan_out("randomkey", 1, FanOut::RandomKey, READ),
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
    fan_out("scan", -2, FanOut::Scan, READ),
    keyed("scard", 2, K1, READ),
    unsupported("script", -2, SCRIPTING, WRITE).with_subcommands(SCRIPT),
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
    keyed("spublish", 3, K1, WRITE),
    keyed("srandmember", -2, K1, READ),
    keyed("srem", -3, K1, WRITE),
    keyed("sscan", -3, K1, READ),
    pubsub("ssubscribe", -2, Sub::Ssubscribe),
    keyed("strlen", 2, K1, READ),
    pubsub("subscribe", -2, Sub::Subscribe),
    keyed("substr", 4, K1, READ),
    keyed("sunion", -2, ALL, READ),
    keyed("sunionstore", -3, ALL, WRITE),
    pubsub("sunsubscribe", -1, Sub::Sunsubscribe),
    unsupported("swapdb", 3, DATABASES, WRITE),
    unsupported("sync", 1, REPLICATION, WRITE),
    local("time", 1, Local::Time),
    split("touch", -2, Split::SumInt, READ),
    keyed("ttl", 2, K1, READ),
    keyed("type", 2, K1, READ),
    split("unlink", -2, Split::SumInt, WRITE),
    pubsub("unsubscribe", -1, Sub::Unsubscribe),
    transaction("unwatch", 1, Tx::Unwatch),
    unsupported("wait", 3, WAIT, WRITE),
    unsupported("waitaof", 4, WAIT, WRITE),
    transaction("watch", -2, Tx::Watch),
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

/// Key layout implied by a [`Split`] kind.
pub(super) const fn split_keys(split: Split) -> Keys {
    match split {
        Split::Mset => PAIRS,
        Split::Mget | Split::SumInt => ALL,
    }
}
