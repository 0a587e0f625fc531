//! The decision core: what to do with one parsed request, from the command,
//! its arguments and a few facts about the client and the route, and
//! nothing else (no socket, no connection), so unit tests drive it
//! directly. `Dispatch::request` reads the facts, asks `decide`, and
//! carries the decision out; the handlers ask `place_keys` where a keyed
//! command goes under the route table.

use crate::config::ClusterConfig;
use crate::hashing::hash::hash_tag_slice;
use crate::hashing::ketama::Distribution;
use crate::hashing::slots::slot_of;
use crate::protocol::command::{Args, Command, FanOut, KeyPositions, Kind, Local, Split, Sub, Tx};
use crate::protocol::refusal::Refusal;
use crate::routing::table::{Place, RouteTable};

/// What a request's handling depends on besides the request, read once.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Facts {
    /// The cluster wants a password and the client has not given it.
    pub(super) unauthenticated: bool,
    /// The route table changed while requests of its own are unanswered.
    pub(super) route_changed: bool,
    pub(super) resp3: bool,
    pub(super) subscribed: bool,
    /// (Un)subscribe confirmations still awaited from servers.
    pub(super) confirming: bool,
    /// Requests of its own still unanswered.
    pub(super) awaiting: bool,
    pub(super) session: SessionKind,
    /// The route is a Redis Cluster's slot map.
    pub(super) cluster: bool,
}

/// The client's transaction state, as the decision needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum SessionKind {
    #[default]
    Normal,
    Watching,
    Multi {
        /// A keyed command picked the transaction's server already.
        pinned: bool,
    },
}

/// What `Dispatch::request` does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Answered with this error; nothing is sent.
    Refuse(Refusal),
    /// Refused, and inside MULTI the transaction is doomed too (EXEC
    /// answers EXECABORT), as Redis does for an unknown command or a wrong
    /// arity.
    RefuseAndDoom(Refusal),
    /// PING from a RESP2 subscriber: Redis's `pong` array.
    SubscribedPing,
    /// Kept back until the client's earlier requests are answered.
    Defer,
    /// Inside MULTI: queued (`Dispatch::queue`).
    Queue,
    /// Answered by the proxy (INFO and HELLO may ask the servers first).
    Local(Local),
    /// Sent whole to the server of its keys; a blocking one on a connection
    /// of the client's own.
    Keyed,
    /// Split per server, the parts merged.
    Split(Split),
    /// Sent to every server (or one), the replies merged.
    FanOut(FanOut),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction(Tx),
    /// EXEC with arguments inside MULTI: refused, and the transaction is
    /// discarded with it (`-EXECABORT`), as Redis does.
    AbortExec(&'static str),
    /// (Un)subscribing, on the client's subscriber connections.
    PubSub(Sub),
}

/// The decision for a request: `cmd` is the command table's entry for it
/// (`None`: an unknown command). The checks run in Redis's order: the
/// command exists, the arity, the client is authenticated, the
/// subscriber context; then whether it must wait, be queued, or runs.
pub(super) fn decide(cmd: Option<&Command>, args: &(impl Args + ?Sized), f: &Facts) -> Decision {
    let Some(cmd) = cmd else {
        return Decision::RefuseAndDoom(Refusal::unknown_command(args));
    };
    // Redis checks the arity before the authentication.
    if !cmd.check_arity(args.len()) {
        if cmd.kind == Kind::Transaction(Tx::Exec) && matches!(f.session, SessionKind::Multi { .. })
        {
            return Decision::AbortExec(cmd.name);
        }
        return Decision::RefuseAndDoom(Refusal::WrongArity(cmd.name));
    }
    let authenticating = matches!(
        cmd.kind,
        Kind::Local(Local::Auth | Local::Hello | Local::Quit)
    );
    if f.unauthenticated && !authenticating {
        return Decision::Refuse(Refusal::NoAuth);
    }
    // A RESP2 client with subscriptions may only manage them, as in Redis.
    if f.subscribed && !f.resp3 {
        match cmd.kind {
            Kind::PubSub(_) | Kind::Local(Local::Quit) => {}
            Kind::Local(Local::Ping) => return Decision::SubscribedPing,
            _ => return Decision::Refuse(Refusal::Subscribed(cmd.name)),
        }
    }
    if must_wait(cmd, args, f) {
        return Decision::Defer;
    }
    let queued = !matches!(
        cmd.kind,
        Kind::Transaction(Tx::Multi | Tx::Exec | Tx::Discard | Tx::Watch)
            | Kind::Local(Local::Quit)
    );
    if queued && matches!(f.session, SessionKind::Multi { .. }) {
        return Decision::Queue;
    }
    match cmd.kind {
        Kind::Local(l) => Decision::Local(l),
        Kind::Unsupported(why) => Decision::Refuse(Refusal::Unsupported {
            name: cmd.name,
            why,
        }),
        Kind::Keyed(_) | Kind::Blocking(..) => Decision::Keyed,
        Kind::Split(split) => Decision::Split(split),
        Kind::FanOut(fan) => Decision::FanOut(fan),
        Kind::Transaction(tx) => Decision::Transaction(tx),
        Kind::PubSub(Sub::Ssubscribe) if f.cluster && !one_slot(args) => {
            Decision::Refuse(Refusal::CrossSlot)
        }
        Kind::PubSub(sub) => Decision::PubSub(sub),
    }
}

/// Whether the request must wait for the client's earlier requests. One
/// that moves the client onto a connection of its own (a blocking command,
/// the first WATCH, the first keyed command of a transaction) waits until
/// its earlier requests, on shared connections, are answered: they must
/// run first. So does any request while requests routed under an older
/// route table are unanswered: one of them may be for the same key. And a
/// request for a server after a subscription change not yet confirmed (a
/// RESP3 client's SUBSCRIBE then PUBLISH runs in that order, as on one
/// Redis).
fn must_wait(cmd: &Command, args: &(impl Args + ?Sized), f: &Facts) -> bool {
    let after_confirmation = f.confirming
        && !matches!(
            cmd.kind,
            Kind::PubSub(_) | Kind::Local(_) | Kind::Unsupported(_)
        );
    f.route_changed
        || after_confirmation
        || (f.awaiting && switches_connection(f.session, cmd, args))
}

/// Whether this request would start using a connection of the client's
/// own, so the client's earlier requests on shared ones must be answered
/// first.
fn switches_connection(session: SessionKind, cmd: &Command, args: &(impl Args + ?Sized)) -> bool {
    match (cmd.kind, session) {
        (Kind::Transaction(Tx::Watch), SessionKind::Normal) => true,
        (Kind::Keyed(_) | Kind::Blocking(..) | Kind::Split(_), SessionKind::Multi { pinned }) => {
            !pinned
        }
        (Kind::Blocking(..), _) => true,
        // HELLO 3 moves the client to the RESP3 connections (HELLO 2 back).
        (Kind::Local(Local::Hello), _) => true,
        // Leaving a subscription on the subscriber connection: a PUBLISH
        // the client sent before, on a shared one, must count it and reach
        // it first, as on one Redis.
        (Kind::PubSub(Sub::Unsubscribe | Sub::Punsubscribe | Sub::Sunsubscribe), _) => true,
        (Kind::Keyed(_), _) => cmd.block(args).is_some(),
        _ => false,
    }
}

/// Where keys `first` and the rest of `positions` go: one place, or the
/// refusal when they span groups (servers; slots in cluster mode).
pub(super) fn place_keys(
    route: &RouteTable,
    cfg: &ClusterConfig,
    cmd: &Command,
    args: &(impl Args + ?Sized),
    positions: KeyPositions,
    first: usize,
    random: u32,
) -> Result<Place, Refusal> {
    let Some(place) = route.place(args.get(first), random) else {
        return Err(Refusal::no_server(route.is_cluster()));
    };
    for k in positions.iter().skip(1) {
        let other = route.place(args.get(k), random);
        if other.map(|p| p.group) != Some(place.group) {
            return Err(if route.is_cluster() {
                Refusal::CrossSlot
            } else {
                Refusal::KeysOnServers(cmd.name)
            });
        }
    }
    sort_patterns_here(route, cfg, cmd, args, place)?;
    Ok(place)
}

/// SORT's BY and GET patterns, sharding mode: every key a pattern forms
/// must live on the sorted key's server, or SORT would find none of
/// those kept elsewhere and answer wrongly. They do when the pattern has
/// a hash tag before its '*' that maps there (the element replaces the
/// '*', so the tag stays the same), as Redis Cluster requires a slot's
/// tag. In cluster mode the node checks its patterns itself.
fn sort_patterns_here(
    route: &RouteTable,
    cfg: &ClusterConfig,
    cmd: &Command,
    args: &(impl Args + ?Sized),
    place: Place,
) -> Result<(), Refusal> {
    if route.is_cluster() || route.servers.len() < 2 {
        return Ok(());
    }
    for (option, pattern) in cmd.sort_patterns(args) {
        let star = pattern
            .iter()
            .position(|&b| b == b'*')
            .unwrap_or(pattern.len());
        let prefix = &pattern[..star];
        let tagged = hash_tag_slice(prefix, cfg.hash_tag).len() < prefix.len();
        let here = tagged
            && cfg.distribution != Distribution::Random
            && route
                .place(prefix, 0)
                .is_some_and(|p| p.group == place.group);
        if !here {
            return Err(Refusal::SortPattern(option.name()));
        }
    }
    Ok(())
}

/// SSUBSCRIBE's channels all in one slot, as Redis Cluster requires.
fn one_slot(args: &(impl Args + ?Sized)) -> bool {
    let first = slot_of(args.get(1));
    (2..args.len()).all(|i| slot_of(args.get(i)) == first)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::hashing::slots::{Shard, SlotMap, UNASSIGNED};
    use crate::protocol::command::lookup_request;
    use crate::routing::node::Node;

    fn run(args: &[&[u8]], f: &Facts) -> Decision {
        decide(lookup_request(args), args, f)
    }

    fn multi() -> Facts {
        Facts {
            session: SessionKind::Multi { pinned: false },
            ..Facts::default()
        }
    }

    #[test]
    fn unknown_commands_and_wrong_arities_doom_a_transaction() {
        let f = Facts::default();
        let d = run(&[b"NOSUCH", b"a"], &f);
        let Decision::RefuseAndDoom(r) = d else {
            panic!("{d:?}");
        };
        assert_eq!(
            &r.reply()[..],
            b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"
        );
        assert_eq!(
            run(&[b"GET"], &f),
            Decision::RefuseAndDoom(Refusal::WrongArity("get"))
        );
        // Inside MULTI the same: refused before anything is queued.
        assert_eq!(
            run(&[b"GET", b"a", b"b"], &multi()),
            Decision::RefuseAndDoom(Refusal::WrongArity("get"))
        );
        assert_eq!(run(&[b"GET", b"a"], &f), Decision::Keyed);
    }

    #[test]
    fn without_auth_only_auth_hello_and_quit_pass() {
        let f = Facts {
            unauthenticated: true,
            ..Facts::default()
        };
        assert_eq!(run(&[b"GET", b"a"], &f), Decision::Refuse(Refusal::NoAuth));
        // The arity is checked first, as Redis does.
        assert_eq!(
            run(&[b"GET"], &f),
            Decision::RefuseAndDoom(Refusal::WrongArity("get"))
        );
        assert_eq!(run(&[b"PING"], &f), Decision::Refuse(Refusal::NoAuth));
        assert_eq!(run(&[b"AUTH", b"pw"], &f), Decision::Local(Local::Auth));
        assert_eq!(run(&[b"HELLO", b"3"], &f), Decision::Local(Local::Hello));
        assert_eq!(run(&[b"QUIT"], &f), Decision::Local(Local::Quit));
    }

    #[test]
    fn a_resp2_subscriber_may_only_manage_its_subscriptions() {
        let f = Facts {
            subscribed: true,
            ..Facts::default()
        };
        assert_eq!(
            run(&[b"GET", b"a"], &f),
            Decision::Refuse(Refusal::Subscribed("get"))
        );
        assert_eq!(run(&[b"PING"], &f), Decision::SubscribedPing);
        assert_eq!(run(&[b"QUIT"], &f), Decision::Local(Local::Quit));
        assert_eq!(
            run(&[b"SUBSCRIBE", b"c"], &f),
            Decision::PubSub(Sub::Subscribe)
        );
        // RESP3 clients may run anything while subscribed.
        let resp3 = Facts { resp3: true, ..f };
        assert_eq!(run(&[b"GET", b"a"], &resp3), Decision::Keyed);
        assert_eq!(run(&[b"PING"], &resp3), Decision::Local(Local::Ping));
    }

    #[test]
    fn inside_multi_commands_are_queued_but_transaction_control() {
        let f = multi();
        assert_eq!(run(&[b"SET", b"a", b"1"], &f), Decision::Queue);
        assert_eq!(run(&[b"PING"], &f), Decision::Queue);
        assert_eq!(run(&[b"SUBSCRIBE", b"c"], &f), Decision::Queue);
        assert_eq!(run(&[b"UNWATCH"], &f), Decision::Queue);
        assert_eq!(run(&[b"EXEC"], &f), Decision::Transaction(Tx::Exec));
        assert_eq!(run(&[b"DISCARD"], &f), Decision::Transaction(Tx::Discard));
        assert_eq!(run(&[b"MULTI"], &f), Decision::Transaction(Tx::Multi));
        assert_eq!(run(&[b"WATCH", b"a"], &f), Decision::Transaction(Tx::Watch));
        assert_eq!(run(&[b"QUIT"], &f), Decision::Local(Local::Quit));
    }

    #[test]
    fn requests_wait_for_earlier_ones_when_order_needs_it() {
        let awaiting = Facts {
            awaiting: true,
            ..Facts::default()
        };
        // Moving onto a connection of the client's own waits.
        assert_eq!(run(&[b"BLPOP", b"l", b"0"], &awaiting), Decision::Defer);
        assert_eq!(run(&[b"WATCH", b"a"], &awaiting), Decision::Defer);
        assert_eq!(run(&[b"HELLO", b"3"], &awaiting), Decision::Defer);
        assert_eq!(run(&[b"UNSUBSCRIBE"], &awaiting), Decision::Defer);
        // XREAD with BLOCK blocks: it is keyed, but waits like one.
        let xread: &[&[u8]] = &[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"];
        assert_eq!(run(xread, &awaiting), Decision::Defer);
        // Shared connections keep the order themselves.
        assert_eq!(run(&[b"GET", b"a"], &awaiting), Decision::Keyed);
        assert_eq!(
            run(&[b"MGET", b"a", b"b"], &awaiting),
            Decision::Split(Split::Mget)
        );
        let watching = Facts {
            session: SessionKind::Watching,
            ..awaiting
        };
        assert_eq!(
            run(&[b"WATCH", b"b"], &watching),
            Decision::Transaction(Tx::Watch)
        );
        // The first keyed command of a transaction picks its connection.
        let unpinned = Facts {
            awaiting: true,
            ..multi()
        };
        assert_eq!(run(&[b"GET", b"a"], &unpinned), Decision::Defer);
        let pinned = Facts {
            session: SessionKind::Multi { pinned: true },
            ..unpinned
        };
        assert_eq!(run(&[b"GET", b"a"], &pinned), Decision::Queue);
        // A new route table: everything waits.
        let moved = Facts {
            route_changed: true,
            ..Facts::default()
        };
        assert_eq!(run(&[b"PING"], &moved), Decision::Defer);
        // A subscription change unconfirmed: requests for servers wait.
        let confirming = Facts {
            confirming: true,
            resp3: true,
            subscribed: true,
            ..Facts::default()
        };
        assert_eq!(run(&[b"PUBLISH", b"c", b"m"], &confirming), Decision::Defer);
        assert_eq!(run(&[b"PING"], &confirming), Decision::Local(Local::Ping));
    }

    #[test]
    fn kinds_map_to_their_handlers() {
        let f = Facts::default();
        let d = run(&[b"BGSAVE"], &f);
        let Decision::Refuse(Refusal::Unsupported { name: "bgsave", .. }) = d else {
            panic!("{d:?}");
        };
        assert_eq!(run(&[b"KEYS", b"*"], &f), Decision::FanOut(FanOut::Keys));
        assert_eq!(run(&[b"DEL", b"a"], &f), Decision::Split(Split::SumInt));
        assert_eq!(run(&[b"BLPOP", b"l", b"0"], &f), Decision::Keyed);
        assert_eq!(run(&[b"INFO"], &f), Decision::Local(Local::Info));
    }

    #[test]
    fn ssubscribe_across_slots_is_refused_in_cluster_mode() {
        let across: &[&[u8]] = &[b"SSUBSCRIBE", b"a", b"b"];
        let tagged: &[&[u8]] = &[b"SSUBSCRIBE", b"{t}a", b"{t}b"];
        let cluster = Facts {
            cluster: true,
            ..Facts::default()
        };
        assert_eq!(run(across, &cluster), Decision::Refuse(Refusal::CrossSlot));
        assert_eq!(run(tagged, &cluster), Decision::PubSub(Sub::Ssubscribe));
        let shard = Facts::default();
        assert_eq!(run(across, &shard), Decision::PubSub(Sub::Ssubscribe));
    }

    fn two_servers() -> Arc<ClusterConfig> {
        let text = "[[clusters]]\nname = \"t\"\nlisten_addr = \"127.0.0.1:1\"\n\
                    servers = [\"127.0.0.1:7001:1 a\", \"127.0.0.1:7002:1 b\"]\n";
        let mut c = Config::parse(Path::new("t.toml"), text).expect("valid config");
        Arc::new(c.clusters.remove(0))
    }

    /// Places `args`' keys as `Dispatch::keyed` does.
    fn place(route: &RouteTable, cfg: &ClusterConfig, args: &[&[u8]]) -> Result<Place, Refusal> {
        let cmd = lookup_request(args).expect("a known command");
        let positions = cmd.key_positions(args).expect("valid keys");
        let first = positions.first_key().expect("a key");
        place_keys(route, cfg, cmd, args, positions, first, 0)
    }

    #[test]
    fn keys_of_one_command_must_share_a_slot_in_cluster_mode() {
        let cfg = two_servers();
        // Slots below 8192 on the first master; the rest served by nobody.
        let mut slot_shard = vec![UNASSIGNED; 16384];
        slot_shard[..8192].fill(0);
        let map = SlotMap {
            slot_shard,
            shards: vec![Shard {
                master: 0,
                replicas: vec![],
            }],
        };
        let node = Node {
            addr: crate::config::Addr::Tcp("127.0.0.1:7001".parse().expect("an address")),
            name: "a".into(),
        };
        let route = RouteTable::cluster(Arc::clone(&cfg), vec![node], map);
        // "b" is in slot 3300, "a" in 15495.
        let same = place(&route, &cfg, &[b"MSETNX", b"{b}1", b"v", b"{b}2", b"v"]);
        assert_eq!(same.map(|p| p.server), Ok(0));
        let served = (0..100)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| slot_of(k) < 8192 && slot_of(k) != slot_of(b"b"))
            .expect("a key in another served slot");
        let across = place(&route, &cfg, &[b"MSETNX", b"b", b"v", &served, b"v"]);
        assert_eq!(across, Err(Refusal::CrossSlot));
        let unserved = place(&route, &cfg, &[b"GET", b"a"]);
        assert_eq!(unserved, Err(Refusal::ClusterDown));
        // The first key's slot unserved says so before any cross-slot.
        let both = place(&route, &cfg, &[b"RENAME", b"a", b"b"]);
        assert_eq!(both, Err(Refusal::ClusterDown));
    }

    #[test]
    fn keys_of_one_command_must_share_a_server_in_sharding_mode() {
        let cfg = two_servers();
        let route = RouteTable::shard(&cfg, &[true, true]);
        let home = |k: &[u8]| route.place(k, 0).map(|p| p.server);
        let other = (0..100)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| home(k) != home(b"k"))
            .expect("a key on the other server");
        let across = place(&route, &cfg, &[b"RENAME", b"k", &other]);
        assert_eq!(across, Err(Refusal::KeysOnServers("rename")));
        let tagged = place(&route, &cfg, &[b"RENAME", b"{k}1", b"{k}2"]);
        assert_eq!(
            tagged.map(|p| p.server),
            home(b"k").ok_or(Refusal::NoServer)
        );
        let down = RouteTable::shard(&cfg, &[false, false]);
        assert_eq!(place(&down, &cfg, &[b"GET", b"k"]), Err(Refusal::NoServer));
    }
}
