//! The differential test: one seeded stream, through aster and to Redis.

use super::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    seed_from_env("ASTER_DIFF_SEED")
}

fn refusal(name: &str) -> String {
    format!("-ERR {name} is not supported by aster: ")
}

/// How a generated command's reply is checked.
#[derive(Clone, Debug)]
enum Check {
    /// Byte for byte against the reference.
    Same,
    /// Refused by design (README's table): aster's reply starts with this
    /// text, and the command is not sent to the reference.
    Refused(String),
    /// HELLO: the version and connection id are aster's own; the rest must
    /// be Redis's.
    Hello,
    /// Set and hash contents: a hashtable's order depends on each server's
    /// random hash seed, so elements (or field/value pairs) are compared as
    /// multisets; the header and everything else byte for byte.
    Unordered { pairs: bool },
}

/// The reply with its top-level elements (grouped in pairs if `pairs`)
/// sorted; other replies unchanged.
fn sorted_elements(reply: &[u8], pairs: bool) -> Vec<u8> {
    if !matches!(reply.first(), Some(b'*' | b'~' | b'%')) {
        return reply.to_vec();
    }
    let Some(eol) = reply.windows(2).position(|w| w == b"\r\n") else {
        return reply.to_vec();
    };
    let mut items = Vec::new();
    let mut pos = eol + 2;
    while pos < reply.len() {
        match parse_reply(&reply[pos..]) {
            Ok(Some((_, used))) => {
                items.push(reply[pos..pos + used].to_vec());
                pos += used;
            }
            _ => return reply.to_vec(),
        }
    }
    let mut groups: Vec<Vec<u8>> = if pairs {
        items.chunks(2).map(|c| c.concat()).collect()
    } else {
        items
    };
    groups.sort();
    [reply[..eol + 2].to_vec(), groups.concat()].concat()
}

struct Gen {
    rng: Rng,
    /// The protocol of the connections the commands go to.
    resp3: bool,
    stream_id: u64,
}

const TAGS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h"];
const NAMES: &[&[u8]] = &[
    b"k1",
    b"k2",
    b"k3",
    b"list",
    b"set",
    b"zset",
    b"hash",
    b"bin\x00\xff\r\n",
    b"\xe2\x82\xac",
];
const VALUES: &[&[u8]] = &[
    b"0",
    b"1",
    b"-5",
    b"10",
    b"3.5",
    b"abc",
    b"",
    b"\x00\r\n\xff",
    b"hello world",
    b"9223372036854775807",
];

/// A script loaded only with SCRIPT LOAD, and its sha1.
const LOADED_SCRIPT: &str = "return 'aster-diff'";
const LOADED_SHA: &str = "e8f179179726762a15bb1c143ebcd0c40aba86a7";

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Gen {
    fn tag(&mut self) -> &'static str {
        self.rng.pick(TAGS)
    }

    /// A key with a hash tag: keys of one command share `tag` when the
    /// command is routed whole.
    fn key_in(&mut self, tag: &str) -> Vec<u8> {
        let mut k = format!("{{{tag}}}").into_bytes();
        k.extend_from_slice(self.rng.pick(NAMES));
        k
    }

    fn key(&mut self) -> Vec<u8> {
        let t = self.tag();
        self.key_in(t)
    }

    fn value(&mut self) -> Vec<u8> {
        if self.rng.one_in(20) {
            return vec![b'x'; 300 + self.rng.below(200)];
        }
        self.rng.pick(VALUES).to_vec()
    }

    fn int(&mut self) -> Vec<u8> {
        b(&(self.rng.below(12) as i64 - 4).to_string())
    }

    fn float(&mut self) -> Vec<u8> {
        b(self
            .rng
            .pick(&["0", "1.5", "-2", "3", "1e3", "inf", "-inf", "abc", "0.1"]))
    }

    fn field(&mut self) -> Vec<u8> {
        b(self.rng.pick(&["f1", "f2", "f3", "m1", "m2", "m3"]))
    }

    fn cmd(&mut self, words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| b(w)).collect()
    }

    /// One random command and how to check it.
    fn next(&mut self) -> (Vec<Vec<u8>>, Check) {
        let family = self.rng.below(100);
        let mut cmd = match family {
            0..=13 => self.string_cmd(),
            14..=23 => self.list_cmd(),
            24..=33 => self.hash_cmd(),
            34..=43 => self.set_cmd(),
            44..=53 => self.zset_cmd(),
            54..=59 => self.stream_cmd(),
            60..=63 => self.hll_geo_cmd(),
            64..=75 => self.generic_cmd(),
            76..=79 => self.script_cmd(),
            80..=85 => self.connection_cmd(),
            86..=89 => self.unknown_cmd(),
            90..=94 => return self.refused_cmd(),
            _ => {
                // Wrong arity: a command cut down to its name, or a
                // fixed-arity one padded (padding a variadic one would only
                // add keys).
                if self.rng.one_in(2) {
                    let mut c = self.string_cmd();
                    c.truncate(1);
                    c
                } else {
                    let name = self
                        .rng
                        .pick(&["GET", "INCR", "STRLEN", "LLEN", "TYPE", "HGET"]);
                    let mut c = vec![b(name), self.key()];
                    for _ in 0..3 {
                        c.push(b("extra"));
                    }
                    c
                }
            }
        };
        if self.rng.one_in(4) {
            // Redis reads command names case-insensitively; so must aster.
            cmd[0] = cmd[0].to_ascii_lowercase();
        }
        let name = cmd[0].to_ascii_uppercase();
        let check = match name.as_slice() {
            b"HELLO" => Check::Hello,
            // KEYS: each server's part in its own order, concatenated.
            b"SMEMBERS" | b"SUNION" | b"SINTER" | b"SDIFF" | b"HKEYS" | b"HVALS" | b"KEYS" => {
                Check::Unordered { pairs: false }
            }
            b"HGETALL" => Check::Unordered { pairs: true },
            _ => Check::Same,
        };
        (cmd, check)
    }

    fn string_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let v = self.value();
        let mut c = match self.rng.below(22) {
            0 => vec![b("SET"), k, v],
            1 => vec![b("GET"), k],
            2 => vec![b("APPEND"), k, v],
            3 => vec![b("INCR"), k],
            4 => vec![b("INCRBY"), k, self.int()],
            5 => vec![b("INCRBYFLOAT"), k, self.float()],
            6 => vec![b("DECR"), k],
            7 => vec![b("STRLEN"), k],
            8 => vec![b("GETRANGE"), k, self.int(), self.int()],
            9 => vec![b("SETRANGE"), k, self.int(), v],
            10 => vec![b("GETSET"), k, v],
            11 => vec![b("SETNX"), k, v],
            12 => vec![b("GETDEL"), k],
            13 => vec![
                b("SETBIT"),
                k,
                self.int(),
                b(self.rng.pick(&["0", "1", "2"])),
            ],
            14 => vec![b("GETBIT"), k, self.int()],
            15 => vec![b("BITCOUNT"), k],
            16 => vec![b("BITPOS"), k, b("1")],
            17 => {
                let t = self.tag();
                vec![
                    b("BITOP"),
                    b(self.rng.pick(&["AND", "OR", "XOR", "NOT"])),
                    self.key_in(t),
                    self.key_in(t),
                    self.key_in(t),
                ]
            }
            18 => {
                let t = self.tag();
                vec![b("LCS"), self.key_in(t), self.key_in(t)]
            }
            19 => {
                let t = self.tag();
                vec![b("MSETNX"), self.key_in(t), v, self.key_in(t), b("2")]
            }
            20 => vec![
                b("SET"),
                k,
                v,
                b(self.rng.pick(&["NX", "XX", "GET", "KEEPTTL", "PX", "EX"])),
            ],
            _ => vec![b("SUBSTR"), k, b("0"), self.int()],
        };
        if c[0] == b"SET" && c.len() == 4 && (c[3] == b"PX" || c[3] == b"EX") {
            // A missing expiry value: Redis's syntax error.
            c.truncate(4);
        }
        c
    }

    fn list_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let v = self.value();
        match self.rng.below(16) {
            0 | 1 => vec![b("LPUSH"), k, v, self.value()],
            2 => vec![b("RPUSH"), k, v],
            3 => vec![b("LPOP"), k],
            4 => vec![b("RPOP"), k, b("2")],
            5 => vec![b("LRANGE"), k, b("0"), b("-1")],
            6 => vec![b("LLEN"), k],
            7 => vec![b("LINDEX"), k, self.int()],
            8 => vec![b("LSET"), k, self.int(), v],
            9 => vec![b("LREM"), k, self.int(), v],
            10 => vec![b("LINSERT"), k, b("BEFORE"), v, self.value()],
            11 => vec![b("LTRIM"), k, self.int(), self.int()],
            12 => vec![b("LPOS"), k, v],
            13 => {
                let t = self.tag();
                vec![
                    b("LMOVE"),
                    self.key_in(t),
                    self.key_in(t),
                    b("LEFT"),
                    b("RIGHT"),
                ]
            }
            14 => {
                let t = self.tag();
                vec![b("RPOPLPUSH"), self.key_in(t), self.key_in(t)]
            }
            _ => {
                let t = self.tag();
                vec![
                    b("LMPOP"),
                    b("2"),
                    self.key_in(t),
                    self.key_in(t),
                    b("LEFT"),
                ]
            }
        }
    }

    fn hash_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let f = self.field();
        let v = self.value();
        match self.rng.below(14) {
            0 | 1 => vec![b("HSET"), k, f, v, self.field(), self.value()],
            2 => vec![b("HGET"), k, f],
            3 => vec![b("HMGET"), k, f, self.field()],
            4 => vec![b("HDEL"), k, f],
            5 => vec![b("HLEN"), k],
            6 => vec![b("HGETALL"), k],
            7 => vec![b("HINCRBY"), k, f, self.int()],
            8 => vec![b("HINCRBYFLOAT"), k, f, self.float()],
            9 => vec![b("HKEYS"), k],
            10 => vec![b("HVALS"), k],
            11 => vec![b("HEXISTS"), k, f],
            12 => vec![b("HSTRLEN"), k, f],
            _ => vec![b("HSETNX"), k, f, v],
        }
    }

    fn set_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let m = self.field();
        let t = self.tag();
        match self.rng.below(13) {
            0 | 1 => vec![b("SADD"), k, m, self.field()],
            2 => vec![b("SREM"), k, m],
            3 => vec![b("SMEMBERS"), k],
            4 => vec![b("SCARD"), k],
            5 => vec![b("SISMEMBER"), k, m],
            6 => vec![b("SMISMEMBER"), k, m, self.field()],
            7 => vec![b("SINTER"), self.key_in(t), self.key_in(t)],
            8 => vec![b("SUNION"), self.key_in(t), self.key_in(t)],
            9 => vec![b("SDIFF"), self.key_in(t), self.key_in(t)],
            10 => vec![
                b("SINTERSTORE"),
                self.key_in(t),
                self.key_in(t),
                self.key_in(t),
            ],
            11 => vec![
                b("SINTERCARD"),
                b(self.rng.pick(&["1", "2", "0", "x"])),
                self.key_in(t),
                self.key_in(t),
            ],
            _ => vec![b("SMOVE"), self.key_in(t), self.key_in(t), m],
        }
    }

    fn zset_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let m = self.field();
        let t = self.tag();
        match self.rng.below(16) {
            0 | 1 => vec![b("ZADD"), k, self.float(), m, self.int(), self.field()],
            2 => vec![b("ZRANGE"), k, b("0"), b("-1"), b("WITHSCORES")],
            3 => vec![b("ZSCORE"), k, m],
            4 => vec![b("ZINCRBY"), k, self.float(), m],
            5 => vec![b("ZCARD"), k],
            6 => vec![b("ZCOUNT"), k, b("-inf"), b("+inf")],
            7 => vec![b("ZRANK"), k, m],
            8 => vec![b("ZREM"), k, m],
            9 => vec![b("ZRANGEBYSCORE"), k, b("-inf"), self.int()],
            10 => vec![b("ZPOPMIN"), k],
            11 => vec![
                b(self.rng.pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"])),
                self.key_in(t),
                b(self.rng.pick(&["2", "3", "0", "-1", "x"])),
                self.key_in(t),
                self.key_in(t),
            ],
            12 => vec![
                b(self.rng.pick(&["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"])),
                b(self.rng.pick(&["2", "3", "0", "x"])),
                self.key_in(t),
                self.key_in(t),
            ],
            13 => vec![b("ZMSCORE"), k, m, self.field()],
            14 => vec![b("ZLEXCOUNT"), k, b("-"), b("+")],
            _ => vec![b("ZMPOP"), b("2"), self.key_in(t), self.key_in(t), b("MAX")],
        }
    }

    fn stream_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        match self.rng.below(8) {
            0..=2 => {
                // Explicit IDs: `*` would differ between servers.
                self.stream_id += 1 + self.rng.below(2) as u64;
                let id = if self.rng.one_in(6) {
                    "1-1".to_owned()
                } else {
                    format!("{}-0", self.stream_id)
                };
                vec![b("XADD"), k, b(&id), self.field(), self.value()]
            }
            3 => vec![b("XLEN"), k],
            4 => vec![b("XRANGE"), k, b("-"), b("+")],
            5 => vec![b("XREVRANGE"), k, b("+"), b("-"), b("COUNT"), b("2")],
            6 => {
                let t = self.tag();
                vec![
                    b("XREAD"),
                    b("COUNT"),
                    b("2"),
                    b("STREAMS"),
                    self.key_in(t),
                    self.key_in(t),
                    b("0"),
                    b("0"),
                ]
            }
            _ => vec![b("XTRIM"), k, b("MAXLEN"), b("3")],
        }
    }

    fn hll_geo_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let m = self.field();
        let t = self.tag();
        match self.rng.below(8) {
            0 => vec![b("PFADD"), k, m, self.field()],
            1 => vec![b("PFCOUNT"), k],
            2 => vec![b("PFMERGE"), self.key_in(t), self.key_in(t)],
            3 => vec![b("GEOADD"), k, b("13.36"), b("38.11"), m],
            4 => vec![b("GEOPOS"), k, m],
            5 => vec![b("GEODIST"), k, m, self.field(), b("km")],
            6 => vec![b("GEOHASH"), k, m],
            _ => vec![
                b("GEOSEARCH"),
                k,
                b("FROMLONLAT"),
                b("13.36"),
                b("38.11"),
                b("BYRADIUS"),
                b("100"),
                b("km"),
                b("ASC"),
            ],
        }
    }

    fn generic_cmd(&mut self) -> Vec<Vec<u8>> {
        let k = self.key();
        let t = self.tag();
        let n = 1 + self.rng.below(4);
        // Split commands: keys spread over every server.
        let spread: Vec<Vec<u8>> = (0..n).map(|_| self.key()).collect();
        match self.rng.below(18) {
            0 => [vec![b("DEL")], spread].concat(),
            1 => [vec![b("EXISTS")], spread].concat(),
            2 => [vec![b("UNLINK")], spread].concat(),
            3 => [vec![b("TOUCH")], spread].concat(),
            4 | 5 => [vec![b("MGET")], spread].concat(),
            6 => {
                let mut c = vec![b("MSET")];
                for key in spread {
                    c.push(key);
                    c.push(self.value());
                }
                c
            }
            7 => vec![b("TYPE"), k],
            8 => vec![
                b(self.rng.pick(&["RENAME", "RENAMENX"])),
                self.key_in(t),
                self.key_in(t),
            ],
            9 => vec![b("COPY"), self.key_in(t), self.key_in(t), b("REPLACE")],
            10 => vec![
                b(self.rng.pick(&["EXPIREAT", "PEXPIREAT"])),
                k,
                b("4000000000000"),
            ],
            11 => vec![b(self.rng.pick(&["EXPIRETIME", "PEXPIRETIME"])), k],
            12 => vec![b("PERSIST"), k],
            13 => vec![b("OBJECT"), b("ENCODING"), k],
            14 => vec![b("SORT"), k, b("ALPHA"), b("LIMIT"), b("0"), b("3")],
            // Fan-out to every server: summed, and concatenated.
            16 => self.cmd(&["DBSIZE"]),
            17 => vec![
                b("KEYS"),
                b(self.rng.pick(&["*", "{a}*", "*k1", "nosuch*"])),
            ],
            _ => vec![
                b("SORT"),
                self.key_in(t),
                b("ALPHA"),
                b("STORE"),
                self.key_in(t),
            ],
        }
    }

    fn script_cmd(&mut self) -> Vec<Vec<u8>> {
        let t = self.tag();
        match self.rng.below(10) {
            0 => vec![
                b("EVAL"),
                b("return redis.call('get', KEYS[1])"),
                b("1"),
                self.key(),
            ],
            1 => vec![
                b("EVAL_RO"),
                b("return {KEYS[1], KEYS[2], ARGV[1]}"),
                b("2"),
                self.key_in(t),
                self.key_in(t),
                self.value(),
            ],
            2 => vec![
                b("EVAL"),
                b("return 1"),
                b(self.rng.pick(&["-1", "x", "5", "01", "-0"])),
                self.key(),
            ],
            3 => vec![
                b("EVALSHA"),
                b(self
                    .rng
                    .pick(&["abc", "0123456789012345678901234567890123456789"])),
                b(self.rng.pick(&["1", "-1", "x", "5"])),
                self.key(),
            ],
            4 => vec![
                b(self.rng.pick(&["FCALL", "FCALL_RO"])),
                b("nosuchfunction"),
                b(self.rng.pick(&["1", "-1", "x", "5"])),
                self.key(),
            ],
            5 => vec![
                b("EVAL"),
                b("return redis.call('incr', KEYS[1])"),
                b("1"),
                self.key(),
            ],
            // The script cache on every server: a script only ever loaded
            // this way (EVAL caches its script on one server only), so
            // EXISTS and EVALSHA answer as one Redis would.
            6 => self.cmd(&["SCRIPT", "LOAD", LOADED_SCRIPT]),
            7 => vec![
                b("SCRIPT"),
                b("EXISTS"),
                b(LOADED_SHA),
                b("0123456789012345678901234567890123456789"),
            ],
            8 => vec![b("EVALSHA"), b(LOADED_SHA), b("1"), self.key()],
            _ => {
                if self.rng.one_in(4) {
                    self.cmd(&["SCRIPT", "FLUSH"])
                } else {
                    self.cmd(&["SCRIPT", "LOAD", LOADED_SCRIPT])
                }
            }
        }
    }

    fn connection_cmd(&mut self) -> Vec<Vec<u8>> {
        match self.rng.below(11) {
            0 => self.cmd(&["PING"]),
            1 => vec![b("PING"), self.value()],
            2 => vec![b("ECHO"), self.value()],
            3 => self.cmd(&["SELECT", "0"]),
            4 => self.cmd(&["CLIENT", "GETNAME"]),
            5 => vec![
                b("CLIENT"),
                b("SETNAME"),
                b(self.rng.pick(&["app", "", "a b"])),
            ],
            6 => self.cmd(&["OBJECT", "HELP"]),
            7 => self.cmd(&["SELECT", "x"]),
            8 => vec![b("HELLO"), b(self.rng.pick(&["4", "x", "0"]))],
            9 => {
                // The connection's own protocol, which HELLO keeps.
                let proto = if self.resp3 { "3" } else { "2" };
                vec![b("HELLO"), b(proto), b("SETNAME"), b("h")]
            }
            _ => self.cmd(&["ECHO"]),
        }
    }

    fn unknown_cmd(&mut self) -> Vec<Vec<u8>> {
        let names: [&[u8]; 5] = [b"nosuch", b"GETT", b"\xff\xfe", b"x\x00y", b"a b"];
        let name = self.rng.pick(&names);
        let mut c = vec![name.to_vec()];
        for _ in 0..self.rng.below(6) {
            let v = self.value();
            c.push(v);
        }
        c
    }

    /// Commands refused by design; not sent to the reference (some would
    /// wipe it).
    fn refused_cmd(&mut self) -> (Vec<Vec<u8>>, Check) {
        let (cmd, name) = match self.rng.below(12) {
            0 => (self.cmd(&["SCRIPT", "KILL"]), "SCRIPT"),
            1 => (self.cmd(&["MONITOR"]), "MONITOR"),
            2 => (self.cmd(&["WAITAOF", "0", "0", "0"]), "WAITAOF"),
            3 => (self.cmd(&["WAIT", "0", "0"]), "WAIT"),
            4 => (self.cmd(&["PUBSUB", "HELP"]), "PUBSUB"),
            5 => (self.cmd(&["BGSAVE"]), "BGSAVE"),
            6 => (self.cmd(&["FLUSHALL"]), "FLUSHALL"),
            7 => (self.cmd(&["FUNCTION", "LIST"]), "FUNCTION"),
            8 => (self.cmd(&["SWAPDB", "0", "1"]), "SWAPDB"),
            9 => (self.cmd(&["FLUSHDB"]), "FLUSHDB"),
            10 => (vec![b("RESET")], "RESET"),
            _ => (self.cmd(&["CLIENT", "PAUSE", "100"]), "CLIENT PAUSE"),
        };
        (cmd, Check::Refused(refusal(name)))
    }
}

/// Runs `count` random commands on fresh RESP2 and RESP3 connections to the
/// reference and to aster, in pipelined batches written in small pieces.
fn differential(reference: u16, aster: u16, label: &str) {
    let seed = seed();
    let count = env_or("ASTER_DIFF_COUNT", 1500) as usize;
    eprintln!("differential {label}: ASTER_DIFF_SEED={seed} ASTER_DIFF_COUNT={count}");
    let mut g = Gen {
        rng: Rng::new(seed),
        resp3: false,
        stream_id: 0,
    };
    let mut mismatches: Vec<String> = Vec::new();
    let mut sent = 0;
    for resp3 in [false, true] {
        g.resp3 = resp3;
        let mut r = Raw::connect(reference);
        let mut a = Raw::connect(aster);
        if resp3 {
            let hr = r.cmd_str(&["HELLO", "3"]);
            let ha = a.cmd_str(&["HELLO", "3"]);
            assert_eq!(mask_hello(&hr), mask_hello(&ha), "HELLO 3 ({label})");
        }
        while sent < count * (1 + usize::from(resp3)) / 2 {
            let batch = 1 + g.rng.below(16);
            let cmds: Vec<(Vec<Vec<u8>>, Check)> = (0..batch).map(|_| g.next()).collect();
            let mut to_ref = Vec::new();
            let mut to_aster = Vec::new();
            for (cmd, check) in &cmds {
                let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
                let frame = encode(&args);
                if !matches!(check, Check::Refused(_)) {
                    to_ref.extend_from_slice(&frame);
                }
                to_aster.extend_from_slice(&frame);
            }
            r.send(&to_ref);
            a.send_split(&to_aster, &mut g.rng);
            for (cmd, check) in &cmds {
                let got = a.read_one();
                let (ok, want) = match check {
                    Check::Refused(prefix) => (got.starts_with(prefix.as_bytes()), b(prefix)),
                    Check::Same => {
                        let want = r.read_one();
                        (want == got, want)
                    }
                    Check::Hello => {
                        let want = r.read_one();
                        (mask_hello(&want) == mask_hello(&got), want)
                    }
                    Check::Unordered { pairs } => {
                        let want = r.read_one();
                        let same = sorted_elements(&want, *pairs) == sorted_elements(&got, *pairs);
                        (same, want)
                    }
                };
                if !ok {
                    mismatches.push(format!(
                        "#{sent} {} {}\n   redis: {}\n   aster: {}",
                        if resp3 { "RESP3" } else { "RESP2" },
                        show_cmd(cmd),
                        show(&want),
                        show(&got)
                    ));
                }
                sent += 1;
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{label}: {} of {sent} replies differ (replay with ASTER_DIFF_SEED={seed} ASTER_DIFF_COUNT={count}):\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn flushall(port: u16) {
    let mut c = Raw::connect(port);
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n", "FLUSHALL on {port}");
}

#[test]
fn differential_redis_mode() {
    let shards = Shards::start(3);
    let reference = RedisServer::start();
    for s in &shards.servers {
        flushall(s.port());
    }
    flushall(reference.port());
    differential(reference.port(), shards.proxy.port(), "redis mode");
}

#[test]
fn differential_cluster_mode() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("read_timeout", "3000")]).to_toml());
    let reference = RedisServer::start();
    for p in rc.ports() {
        flushall(p);
    }
    flushall(reference.port());
    differential(reference.port(), proxy.port(), "cluster mode");
}
