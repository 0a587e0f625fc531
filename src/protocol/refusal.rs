//! Every error reply the proxy writes itself, typed, and rendered here only.
//!
//! Handlers return a [`Refusal`] (a request the proxy answers with an error
//! instead of running it) or a [`BadMerge`] (the servers ran it, but their
//! replies cannot be merged into one); the worker renders it where it
//! replies, and counts refusals by [`Refusal::kind`]. The texts are the
//! contract: Redis's own, byte for byte, where Redis has one (clients and
//! their alerting match on them), else aster's, which say what to do.
//! Errors a server or a backend connection produces (`worker/error.rs`)
//! are not here: they are not the proxy's refusals. A client's own
//! (dedicated) connection refused or lost is: the proxy decides it.

use bytes::Bytes;

use crate::protocol::command::Args;
use crate::protocol::resp::{self, ProtoError};

/// A request the proxy answers with an error instead of running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    // The request itself.
    /// No such command; the name and its first arguments, as Redis quotes
    /// them (`Refusal::unknown_command`).
    UnknownCommand {
        name: Vec<u8>,
        quoted: Vec<u8>,
    },
    /// The command's name (lowercase, `container|sub` for subcommands).
    WrongArity(&'static str),
    Syntax,
    NotAnInteger,
    /// The client's bytes are not a request: the connection is closed.
    Protocol(ProtoError),

    // Authentication and the connection's state.
    NoAuth,
    /// AUTH with a password where none is configured.
    NoPassword,
    WrongPass,
    /// HELLO before authenticating, without its AUTH option.
    HelloNoAuth,
    NoProto,
    HelloProtoNotInteger,
    /// An option HELLO does not know, as the client sent it.
    HelloOption(Vec<u8>),
    BadClientName,
    /// A RESP2 client with subscriptions sent the command named.
    Subscribed(&'static str),
    /// INFO or SLOWLOG reaching the answerer that needs no cluster state.
    NotHere,
    /// The worker holds its maximum number of clients.
    MaxClients,

    // What aster does not do.
    /// The command's name and why (the command table's reason).
    Unsupported {
        name: &'static str,
        why: &'static str,
    },
    /// A CLIENT subcommand other than SETNAME/GETNAME/SETINFO/ID, uppercase.
    ClientSubcommand(Vec<u8>),
    /// A command that runs code (EVAL, FCALL) named no key to route by.
    NoKeys(&'static str),

    // Where the keys go.
    /// Sharding mode: no live server for the key.
    NoServer,
    /// Cluster mode: the key's slot has no master in the table.
    ClusterDown,
    /// Cluster mode: the keys are in different slots.
    CrossSlot,
    /// Sharding mode: the command's keys are on different servers.
    KeysOnServers(&'static str),
    /// A SORT BY or GET pattern (the option named) may form keys elsewhere.
    SortPattern(&'static str),
    /// SCAN's cursor is not one aster gave.
    InvalidCursor,

    // Transactions.
    NestedMulti,
    /// EXEC of a transaction a refused command doomed; or EXEC itself
    /// refused for its arity (the name given), which discards it too.
    ExecAbort(Option<&'static str>),
    /// EXEC or DISCARD (the name) outside MULTI.
    WithoutMulti(&'static str),
    WatchInMulti,
    /// A key of the transaction on another server than its first.
    OtherServer,
    /// A keyed command without a key, inside MULTI.
    QueuedWithoutKey(&'static str),
    /// A command that cannot be queued inside MULTI.
    NotQueueable(&'static str),

    // The client's own backend connection (blocking commands,
    // transactions, pub/sub).
    /// The worker holds `max_dedicated_connections` (the value) already.
    NoDedicated(usize),
    /// The connection a client was given went away before its request was
    /// queued on it.
    OwnConnectionLost,
}

impl Refusal {
    /// How many kinds `kind` tells apart: the length of the counters.
    pub const KINDS: usize = 34;

    /// The kind's name, by index: for the stats (as `refused_<name>`).
    pub const NAMES: [&'static str; Refusal::KINDS] = [
        "unknown_command",
        "wrong_arity",
        "syntax",
        "not_an_integer",
        "protocol",
        "noauth",
        "no_password",
        "wrongpass",
        "hello_noauth",
        "noproto",
        "hello_proto",
        "hello_option",
        "client_name",
        "subscribed",
        "not_here",
        "max_clients",
        "unsupported",
        "client_subcommand",
        "no_keys",
        "no_server",
        "clusterdown",
        "crossslot",
        "keys_on_servers",
        "sort_pattern",
        "invalid_cursor",
        "nested_multi",
        "execabort",
        "without_multi",
        "watch_in_multi",
        "other_server",
        "queued_without_key",
        "not_queueable",
        "no_dedicated",
        "own_connection_lost",
    ];

    /// Redis's reply to an unknown command, byte for byte: the name and then
    /// each argument quoted and followed by a space, printed as C strings
    /// (a NUL ends one) and capped at 128 bytes in all, as Redis's `%.128s`
    /// / `%.*s` do.
    pub fn unknown_command(args: &(impl Args + ?Sized)) -> Refusal {
        fn c_str(arg: &[u8], cap: usize) -> &[u8] {
            let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
            &arg[..end.min(cap)]
        }
        let mut quoted = Vec::new();
        let mut i = 1;
        while i < args.len() && quoted.len() < 128 {
            let room = 128 - quoted.len();
            quoted.push(b'\'');
            quoted.extend_from_slice(c_str(args.get(i), room));
            quoted.extend_from_slice(b"' ");
            i += 1;
        }
        let name = if args.is_empty() {
            &[][..]
        } else {
            args.get(0)
        };
        Refusal::UnknownCommand {
            name: c_str(name, 128).to_vec(),
            quoted,
        }
    }

    /// No server for a key: the cluster's or the ring's words.
    pub fn no_server(cluster: bool) -> Refusal {
        if cluster {
            Refusal::ClusterDown
        } else {
            Refusal::NoServer
        }
    }

    /// The index of this refusal's kind in `NAMES` and in the counters.
    pub fn kind(&self) -> usize {
        match self {
            Refusal::UnknownCommand { .. } => 0,
            Refusal::WrongArity(_) => 1,
            Refusal::Syntax => 2,
            Refusal::NotAnInteger => 3,
            Refusal::Protocol(_) => 4,
            Refusal::NoAuth => 5,
            Refusal::NoPassword => 6,
            Refusal::WrongPass => 7,
            Refusal::HelloNoAuth => 8,
            Refusal::NoProto => 9,
            Refusal::HelloProtoNotInteger => 10,
            Refusal::HelloOption(_) => 11,
            Refusal::BadClientName => 12,
            Refusal::Subscribed(_) => 13,
            Refusal::NotHere => 14,
            Refusal::MaxClients => 15,
            Refusal::Unsupported { .. } => 16,
            Refusal::ClientSubcommand(_) => 17,
            Refusal::NoKeys(_) => 18,
            Refusal::NoServer => 19,
            Refusal::ClusterDown => 20,
            Refusal::CrossSlot => 21,
            Refusal::KeysOnServers(_) => 22,
            Refusal::SortPattern(_) => 23,
            Refusal::InvalidCursor => 24,
            Refusal::NestedMulti => 25,
            Refusal::ExecAbort(_) => 26,
            Refusal::WithoutMulti(_) => 27,
            Refusal::WatchInMulti => 28,
            Refusal::OtherServer => 29,
            Refusal::QueuedWithoutKey(_) => 30,
            Refusal::NotQueueable(_) => 31,
            Refusal::NoDedicated(_) => 32,
            Refusal::OwnConnectionLost => 33,
        }
    }

    /// The error reply, as the client reads it.
    pub fn reply(&self) -> Bytes {
        let upper = |name: &str| name.to_ascii_uppercase();
        match self {
            Refusal::UnknownCommand { name, quoted } => {
                let mut msg = b"ERR unknown command '".to_vec();
                msg.extend_from_slice(name);
                msg.extend_from_slice(b"', with args beginning with: ");
                msg.extend_from_slice(quoted);
                resp::error_bytes(&msg)
            }
            Refusal::WrongArity(name) => resp::error(&format!(
                "ERR wrong number of arguments for '{name}' command"
            )),
            Refusal::Syntax => resp::error("ERR syntax error"),
            Refusal::NotAnInteger => resp::error("ERR value is not an integer or out of range"),
            Refusal::Protocol(e) => resp::error(&format!("ERR {e}")),
            Refusal::NoAuth => resp::error("NOAUTH Authentication required."),
            Refusal::NoPassword => resp::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            Refusal::WrongPass => {
                resp::error("WRONGPASS invalid username-password pair or user is disabled.")
            }
            Refusal::HelloNoAuth => resp::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            ),
            Refusal::NoProto => resp::error("NOPROTO unsupported protocol version"),
            Refusal::HelloProtoNotInteger => {
                resp::error("ERR Protocol version is not an integer or out of range")
            }
            Refusal::HelloOption(option) => {
                let mut msg = b"ERR Syntax error in HELLO option '".to_vec();
                msg.extend_from_slice(option);
                msg.push(b'\'');
                resp::error_bytes(&msg)
            }
            Refusal::BadClientName => resp::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            Refusal::Subscribed(name) => resp::error(&format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )),
            Refusal::NotHere => resp::error("ERR not available here"),
            Refusal::MaxClients => resp::error("ERR max number of clients reached"),
            Refusal::Unsupported { name, why } => resp::error(&format!(
                "ERR {} is not supported by aster: {why}",
                upper(name)
            )),
            Refusal::ClientSubcommand(sub) => resp::error(&format!(
                "ERR CLIENT {} is not supported by aster: it would act on a shared backend connection",
                String::from_utf8_lossy(sub)
            )),
            Refusal::NoKeys(name) => resp::error(&format!(
                "ERR {} with no keys cannot be routed by aster: name at least one key",
                upper(name)
            )),
            Refusal::NoServer => resp::error("ERR no server is available for this key"),
            Refusal::ClusterDown => resp::error("CLUSTERDOWN Hash slot not served"),
            Refusal::CrossSlot => {
                resp::error("CROSSSLOT Keys in request don't hash to the same slot")
            }
            Refusal::KeysOnServers(name) => resp::error(&format!(
                "ERR keys of {} map to different servers; put them on one server with a hash tag",
                upper(name)
            )),
            Refusal::SortPattern(option) => resp::error(&format!(
                "ERR {option} option of SORT denied by aster when keys formed by the pattern may be on another server: put the sorted key's hash tag in the pattern, before its '*'"
            )),
            Refusal::InvalidCursor => resp::error("ERR invalid cursor"),
            Refusal::NestedMulti => resp::error("ERR MULTI calls can not be nested"),
            Refusal::ExecAbort(None) => {
                resp::error("EXECABORT Transaction discarded because of previous errors.")
            }
            Refusal::ExecAbort(Some(name)) => resp::error(&format!(
                "EXECABORT Transaction discarded because of: wrong number of arguments for '{name}' command"
            )),
            Refusal::WithoutMulti(name) => {
                resp::error(&format!("ERR {} without MULTI", upper(name)))
            }
            Refusal::WatchInMulti => resp::error("ERR WATCH inside MULTI is not allowed"),
            Refusal::OtherServer => resp::error(
                "ERR a transaction through aster runs on one server, and these keys are on another: put the transaction's keys on one server with a hash tag",
            ),
            Refusal::QueuedWithoutKey(name) => resp::error(&format!(
                "ERR {} without a key cannot be queued by aster: a transaction runs on the server of its keys",
                upper(name)
            )),
            Refusal::NotQueueable(name) => resp::error(&format!(
                "ERR {} cannot be queued in a transaction by aster",
                upper(name)
            )),
            Refusal::NoDedicated(max) => resp::error(&format!(
                "ERR no dedicated backend connection left for blocking commands, \
                 transactions and pub/sub (max_dedicated_connections = {max} per worker)"
            )),
            Refusal::OwnConnectionLost => {
                resp::error("ERR the client's own backend connection was lost")
            }
        }
    }
}

/// The servers ran the request, but their replies cannot be merged into
/// one (`fanout::merge`, `multikey::Gather`): the client gets this instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadMerge {
    /// A reply of a shape the command does not give; the command named
    /// (`None`: a split integer command).
    Unexpected(Option<&'static str>),
    /// Commands whose every server must say the same (SCRIPT LOAD...).
    Differ,
    /// A server's SCAN cursor does not fit the bits aster's cursor gives it.
    CursorTooWide { cursor: u64, bits: u32 },
}

impl BadMerge {
    /// The error reply, as the client reads it.
    pub fn reply(self) -> Bytes {
        match self {
            BadMerge::Unexpected(None) => resp::error("ERR unexpected reply from a backend"),
            BadMerge::Unexpected(Some(what)) => {
                resp::error(&format!("ERR unexpected reply from a backend to {what}"))
            }
            BadMerge::Differ => {
                resp::error("ERR the backends answered differently; check each backend")
            }
            BadMerge::CursorTooWide { cursor, bits } => resp::error(&format!(
                "ERR SCAN cursor {cursor} of a backend does not fit aster's cursor encoding (at most 2^{bits} - 1)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One refusal of each kind, for the checks below.
    fn one_of_each() -> Vec<Refusal> {
        vec![
            Refusal::unknown_command(&[&b"foo"[..], b"a"]),
            Refusal::WrongArity("get"),
            Refusal::Syntax,
            Refusal::NotAnInteger,
            Refusal::Protocol(ProtoError::BigCount),
            Refusal::NoAuth,
            Refusal::NoPassword,
            Refusal::WrongPass,
            Refusal::HelloNoAuth,
            Refusal::NoProto,
            Refusal::HelloProtoNotInteger,
            Refusal::HelloOption(b"x".to_vec()),
            Refusal::BadClientName,
            Refusal::Subscribed("get"),
            Refusal::NotHere,
            Refusal::MaxClients,
            Refusal::Unsupported {
                name: "select",
                why: "only database 0 is served",
            },
            Refusal::ClientSubcommand(b"KILL".to_vec()),
            Refusal::NoKeys("eval"),
            Refusal::NoServer,
            Refusal::ClusterDown,
            Refusal::CrossSlot,
            Refusal::KeysOnServers("rename"),
            Refusal::SortPattern("BY"),
            Refusal::InvalidCursor,
            Refusal::NestedMulti,
            Refusal::ExecAbort(None),
            Refusal::WithoutMulti("exec"),
            Refusal::WatchInMulti,
            Refusal::OtherServer,
            Refusal::QueuedWithoutKey("sinter"),
            Refusal::NotQueueable("subscribe"),
            Refusal::NoDedicated(4),
            Refusal::OwnConnectionLost,
        ]
    }

    #[test]
    fn every_kind_has_its_own_counter_and_name() {
        let all = one_of_each();
        assert_eq!(all.len(), Refusal::KINDS);
        let mut seen = [false; Refusal::KINDS];
        for r in &all {
            assert!(!seen[r.kind()], "{r:?} shares its kind");
            seen[r.kind()] = true;
            let reply = r.reply();
            assert!(resp::is_error(&reply) && reply.ends_with(b"\r\n"), "{r:?}");
        }
        let mut names = Refusal::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Refusal::KINDS);
    }

    #[test]
    fn texts_are_redis_own() {
        let r = Refusal::unknown_command(&[&b"FOO"[..], b"a\0b", b"c"]);
        assert_eq!(
            &r.reply()[..],
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'c' \r\n"
        );
        assert_eq!(
            &Refusal::WrongArity("client|id").reply()[..],
            b"-ERR wrong number of arguments for 'client|id' command\r\n"
        );
        assert_eq!(
            &Refusal::WithoutMulti("exec").reply()[..],
            b"-ERR EXEC without MULTI\r\n"
        );
        assert_eq!(
            &Refusal::HelloOption(b"a\r\nb".to_vec()).reply()[..],
            b"-ERR Syntax error in HELLO option 'a  b'\r\n"
        );
        assert_eq!(
            &Refusal::NoDedicated(4).reply()[..],
            &b"-ERR no dedicated backend connection left for blocking commands, transactions and pub/sub (max_dedicated_connections = 4 per worker)\r\n"[..]
        );
        assert_eq!(
            &Refusal::OwnConnectionLost.reply()[..],
            b"-ERR the client's own backend connection was lost\r\n"
        );
        assert_eq!(
            &BadMerge::Unexpected(Some("MGET")).reply()[..],
            b"-ERR unexpected reply from a backend to MGET\r\n"
        );
    }
}
