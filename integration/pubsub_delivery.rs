//! Pub/sub delivery (issue 18, defects 3-5), in both modes, against real
//! servers: a confirmation means the subscription is active (a message
//! published right after it is never lost, and after an unsubscribe
//! confirmation PUBLISH no longer counts the client); every server's
//! keyspace events reach channel and pattern subscribers once each; and
//! PUBLISH counts every subscriber that came through aster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::{Client, Proxy, RedisCluster, RedisServer, Reply, Shards, holder, poll_until};

/// The three kinds of subscription, each with the command that publishes
/// to it and its unsubscribe command.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn of(i: usize) -> Kind {
        [Kind::Channel, Kind::Pattern, Kind::Shard][i % 3]
    }

    /// (subscribe, unsubscribe, publish) commands, the name subscribed to
    /// and the channel published on, for iteration `i`.
    fn plan(self, i: usize) -> ([&'static str; 3], String, String) {
        match self {
            Kind::Channel => (
                ["SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH"],
                format!("t{i}"),
                format!("t{i}"),
            ),
            Kind::Pattern => (
                ["PSUBSCRIBE", "PUNSUBSCRIBE", "PUBLISH"],
                format!("p{i}.*"),
                format!("p{i}.x"),
            ),
            Kind::Shard => (
                ["SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH"],
                format!("s{i}"),
                format!("s{i}"),
            ),
        }
    }
}

/// Sends `cmd name` and checks its confirmation, which carries `count`.
fn confirmed(c: &mut Client, cmd: &str, name: &str, count: i64) {
    let want = Reply::Array(vec![
        Reply::bulk(&cmd.to_ascii_lowercase()),
        Reply::bulk(name),
        Reply::Int(count),
    ]);
    assert_eq!(c.cmd(&[cmd, name]), want, "{cmd} {name}");
}

/// What `publish_after_confirmation` saw: messages lost, and PUBLISH
/// counts that were not 0 right after an unsubscribe confirmation.
#[derive(Debug, Default, PartialEq, Eq)]
struct Timing {
    lost: Vec<usize>,
    counted_after_unsubscribe: Vec<usize>,
}

/// `n` times: a new connection subscribes (channel, pattern, shard channel
/// in turn) and reads its confirmation, and at once another connection
/// publishes. Then each subscriber reads its message, unsubscribes, reads
/// that confirmation, and at once another PUBLISH must count nobody.
fn publish_after_confirmation(port: u16, n: usize) -> Timing {
    let mut publ = Client::connect(port);
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let (cmds, name, channel) = Kind::of(i).plan(i);
        let mut sub = Client::connect(port);
        confirmed(&mut sub, cmds[0], &name, 1);
        publ.cmd(&[cmds[2], &channel, &format!("m{i}")]);
        subs.push(sub);
    }
    let mut out = Timing::default();
    for (i, sub) in subs.iter_mut().enumerate() {
        let (cmds, _, channel) = Kind::of(i).plan(i);
        let payload = format!("m{i}");
        if !sub.readable_within(Duration::from_millis(500)) {
            out.lost.push(i);
            continue;
        }
        let msg = sub.read_reply().expect("message");
        match &msg {
            Reply::Array(v) if v.last() == Some(&Reply::bulk(&payload)) => {}
            other => panic!("iteration {i} on port {port}: {other:?}"),
        }
        let (_, name, _) = Kind::of(i).plan(i);
        confirmed(sub, cmds[1], &name, 0);
        if publ.cmd(&[cmds[2], &channel, "after"]) != Reply::Int(0) {
            out.counted_after_unsubscribe.push(i);
        }
    }
    out
}

/// Aster in front of `port`'s servers answers a keyed command (cluster
/// mode: it has learned the slot table).
fn wait_serving(port: u16) {
    let mut c = Client::connect(port);
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (c.cmd(&["SET", "warmup", "x"]) == Reply::ok()).then_some(())
    });
    assert!(ok.is_some(), "aster on {port} does not serve");
}

/// `publish_after_confirmation` loses nothing on a plain redis-server, nor
/// through aster on `port`.
fn as_reliable_as_redis(port: u16, mode: &str) {
    let direct = RedisServer::start();
    assert_eq!(
        publish_after_confirmation(direct.port(), 100),
        Timing::default(),
        "plain redis-server"
    );
    wait_serving(port);
    assert_eq!(
        publish_after_confirmation(port, 100),
        Timing::default(),
        "through aster ({mode})"
    );
}

// 100 subscribers at once, a third of them (patterns) holding a connection
// to every server in redis mode: more than the default pool.
#[test]
fn redis_mode_a_confirmed_subscription_is_active() {
    let s = Shards::start_with(3, |c| c.set("max_dedicated_connections", "512"));
    as_reliable_as_redis(s.proxy.port(), "redis mode");
}

#[test]
fn cluster_mode_a_confirmed_subscription_is_active() {
    let rc = RedisCluster::start(3, 0);
    let conf = rc.proxy_conf(&[("max_dedicated_connections", "512")]);
    let proxy = Proxy::start(&conf.to_toml());
    as_reliable_as_redis(proxy.port(), "cluster mode");
}

/// A RESP3 client that subscribes and publishes in one write: as on one
/// Redis, its PUBLISH runs after the subscription is active.
#[test]
fn resp3_publish_pipelined_after_subscribe_counts_the_subscriber() {
    let s = Shards::start(3);
    wait_serving(s.proxy.port());
    for i in 0..20 {
        let mut c = s.client();
        c.set_timeout(Duration::from_secs(2));
        assert!(!c.cmd(&["HELLO", "3"]).is_error());
        let ch = format!("own{i}");
        let mut bytes = crate::harness::encode_str(&["SUBSCRIBE", &ch]);
        bytes.extend(crate::harness::encode_str(&["PUBLISH", &ch, "m"]));
        c.send(&bytes);
        let got = c.read_replies(3);
        assert_eq!(
            got[0],
            Reply::Array(vec![
                Reply::bulk("subscribe"),
                Reply::bulk(&ch),
                Reply::Int(1)
            ]),
            "{got:?}"
        );
        assert!(got.contains(&Reply::Int(1)), "iteration {i}: {got:?}");
    }
}

/// A message PUBLISH counted before the subscriber sent UNSUBSCRIBE is
/// delivered, ahead of the unsubscribe confirmation, as one Redis does,
/// for each kind of subscription; and a RESP3 client's own PUBLISH
/// pipelined between SUBSCRIBE and UNSUBSCRIBE reaches it.
/// (In cluster mode a pattern lives on one node, which the bus brings
/// every message to after PUBLISH has answered, and PUBLISH counts only
/// its own node's subscribers: there patterns are left out.)
fn published_before_unsubscribe_is_delivered(port: u16, cluster: bool) {
    let mut publ = Client::connect(port);
    for i in 0..60 {
        let kind = Kind::of(i);
        let (cmds, name, channel) = kind.plan(i);
        let mut sub = Client::connect(port);
        sub.set_timeout(Duration::from_secs(2));
        confirmed(&mut sub, cmds[0], &name, 1);
        let counted = publ.cmd(&[cmds[2], &channel, "before"]);
        if !(cluster && matches!(kind, Kind::Pattern)) {
            assert_eq!(
                counted,
                Reply::Int(1),
                "iteration {i}: the subscriber is counted"
            );
        }
        sub.send_cmd(&[cmds[1], &name]);
        if cluster && matches!(kind, Kind::Pattern) {
            // The bus brings the message to the pattern's node after
            // PUBLISH answered, so it may come after the unsubscribe there,
            // as on a Redis Cluster itself: nothing to check but the reply.
            continue;
        }
        let first = sub.read_reply().expect("a reply");
        match &first {
            Reply::Array(v) if v.last() == Some(&Reply::bulk("before")) => {}
            other => panic!(
                "iteration {i} ({}): the counted message was lost: {other:?}",
                cmds[0]
            ),
        }
        let second = sub.read_reply().expect("the confirmation");
        assert_eq!(
            second,
            Reply::Array(vec![
                Reply::bulk(&cmds[1].to_ascii_lowercase()),
                Reply::bulk(&name),
                Reply::Int(0)
            ]),
            "iteration {i}"
        );
    }
    for i in 0..20 {
        let mut c = Client::connect(port);
        c.set_timeout(Duration::from_secs(2));
        assert!(!c.cmd(&["HELLO", "3"]).is_error());
        let ch = format!("own-unsub{i}");
        let mut bytes = crate::harness::encode_str(&["SUBSCRIBE", &ch]);
        bytes.extend(crate::harness::encode_str(&["PUBLISH", &ch, "m"]));
        bytes.extend(crate::harness::encode_str(&["UNSUBSCRIBE", &ch]));
        c.send(&bytes);
        let raw = c.read_raw(4, Duration::from_secs(2));
        let got = crate::harness::parse_all(&raw).expect("replies");
        assert_eq!(got.len(), 4, "iteration {i}: {got:?}");
        let message = Reply::Array(vec![
            Reply::bulk("message"),
            Reply::bulk(&ch),
            Reply::bulk("m"),
        ]);
        assert!(got.contains(&message), "iteration {i}: {got:?}");
        assert!(got.contains(&Reply::Int(1)), "iteration {i}: {got:?}");
    }
}

#[test]
fn redis_mode_a_message_published_before_unsubscribe_is_delivered() {
    let s = Shards::start(3);
    wait_serving(s.proxy.port());
    published_before_unsubscribe_is_delivered(s.proxy.port(), false);
}

#[test]
fn cluster_mode_a_message_published_before_unsubscribe_is_delivered() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    wait_serving(proxy.port());
    published_before_unsubscribe_is_delivered(proxy.port(), true);
}

/// Reads replies until `n` arrived or `within` passed, then makes sure
/// nothing more comes for a moment.
fn collect(c: &mut Client, n: usize, within: Duration) -> Vec<Reply> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !c.readable_within(left) {
            return got;
        }
        got.push(c.read_reply().expect("event"));
    }
    while c.readable_within(Duration::from_millis(200)) {
        got.push(c.read_reply().expect("event"));
    }
    got
}

fn texts(parts: &[Reply]) -> Vec<String> {
    parts.iter().map(|r| r.text().to_string()).collect()
}

/// Every server (master) has keyspace events on; 30 keys are written
/// through aster and must land on `servers` different servers (`owner`
/// tells which; keys vary at the front, where the hash spreads them); a
/// channel subscriber, a pattern subscriber and a `*` subscriber each get
/// every event once.
fn keyspace_events_once(port: u16, servers: usize, owner: impl Fn(&str) -> usize) {
    wait_serving(port);
    let mut by_channel = Client::connect(port);
    confirmed(&mut by_channel, "SUBSCRIBE", "__keyevent@0__:set", 1);
    let mut by_pattern = Client::connect(port);
    confirmed(&mut by_pattern, "PSUBSCRIBE", "__keyspace@0__:*.ev", 1);
    let mut by_all = Client::connect(port);
    confirmed(&mut by_all, "PSUBSCRIBE", "*", 1);
    let keys: Vec<String> = (0..30).map(|i| format!("{i}.ev")).collect();
    let mut writer = Client::connect(port);
    let mut places = BTreeSet::new();
    for k in &keys {
        assert_eq!(writer.cmd(&["SET", k, "v"]), Reply::ok());
        places.insert(owner(k));
    }
    assert_eq!(
        places.len(),
        servers,
        "the keys are spread over every server"
    );
    let expect = |f: &dyn Fn(&str) -> Vec<String>| {
        let mut v: Vec<String> = keys.iter().flat_map(|k| f(k)).collect();
        v.sort();
        v
    };
    assert_eq!(
        events(&mut by_channel, keys.len()),
        expect(&|k| vec![format!("message __keyevent@0__:set {k}")]),
        "SUBSCRIBE __keyevent@0__:set: each event once"
    );
    assert_eq!(
        events(&mut by_pattern, keys.len()),
        expect(&|k| vec![format!(
            "pmessage __keyspace@0__:*.ev __keyspace@0__:{k} set"
        )]),
        "PSUBSCRIBE __keyspace@0__:*.ev: each event once"
    );
    // `*` sees both notifications of every SET, each once.
    assert_eq!(
        events(&mut by_all, 2 * keys.len()),
        expect(&|k| {
            vec![
                format!("pmessage * __keyevent@0__:set {k}"),
                format!("pmessage * __keyspace@0__:{k} set"),
            ]
        }),
        "PSUBSCRIBE *: each event once"
    );
}

/// The messages `c` gets (`n`, unless some are lost, and any more that
/// come), each as its words, sorted.
fn events(c: &mut Client, n: usize) -> Vec<String> {
    let mut out: Vec<String> = collect(c, n, Duration::from_secs(3))
        .iter()
        .map(|m| match m {
            Reply::Array(v) => texts(v).join(" "),
            other => panic!("{other:?}"),
        })
        .collect();
    out.sort();
    out
}

#[test]
fn redis_mode_keyspace_events_of_every_server_arrive_once() {
    let s = Shards::start(3);
    for srv in &s.servers {
        assert_eq!(
            srv.cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"])
                .trim(),
            "OK"
        );
    }
    keyspace_events_once(s.proxy.port(), 3, |k| holder(&s.servers, k));
}

#[test]
fn cluster_mode_keyspace_events_of_every_master_arrive_once() {
    let rc = RedisCluster::start(3, 0);
    for m in rc.masters() {
        assert_eq!(
            rc.cmd(m, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
            Reply::ok()
        );
    }
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    keyspace_events_once(proxy.port(), 3, |k| rc.key_owner(k));
}

/// Two clients subscribe through aster to `chans` (two channels living on
/// different servers), one to the pattern `*` and one to `pc*`: PUBLISH
/// through aster, right after the confirmations, answers `want` (the
/// subscribers it counts), and each gets each message once.
fn publish_counts(port: u16, chans: &[String], want: i64) {
    wait_serving(port);
    let mut subs: Vec<Client> = (0..2).map(|_| Client::connect(port)).collect();
    for sub in &mut subs {
        sub.send_cmd(&["SUBSCRIBE", &chans[0], &chans[1]]);
        sub.read_replies(2);
    }
    let mut psubs: Vec<(Client, &str)> = ["*", "pc*"]
        .into_iter()
        .map(|p| {
            let mut c = Client::connect(port);
            confirmed(&mut c, "PSUBSCRIBE", p, 1);
            (c, p)
        })
        .collect();
    let mut publ = Client::connect(port);
    for ch in chans {
        assert_eq!(
            publ.cmd(&["PUBLISH", ch, "hi"]),
            Reply::Int(want),
            "PUBLISH {ch}"
        );
    }
    let message = |kind: &str, parts: &[&str]| {
        let mut v = vec![Reply::bulk(kind)];
        v.extend(parts.iter().map(|p| Reply::bulk(p)));
        Reply::Array(v)
    };
    // The two channels live on different servers: their messages come on
    // different connections, in either order (README, pub/sub), even though
    // the second PUBLISH went out after the first one's reply.
    let sorted = |mut v: Vec<Reply>| {
        v.sort_by_key(|r| format!("{r:?}"));
        v
    };
    for sub in &mut subs {
        let got = collect(sub, 2, Duration::from_secs(2));
        let want: Vec<Reply> = chans
            .iter()
            .map(|ch| message("message", &[ch, "hi"]))
            .collect();
        assert_eq!(sorted(got), sorted(want));
    }
    for (psub, pattern) in &mut psubs {
        let got = collect(psub, 2, Duration::from_secs(2));
        let want: Vec<Reply> = chans
            .iter()
            .map(|ch| message("pmessage", &[pattern, ch, "hi"]))
            .collect();
        assert_eq!(sorted(got), sorted(want), "PSUBSCRIBE {pattern}");
    }
}

/// Redis mode: a channel lives where its name hashes, where PUBLISH goes;
/// patterns are on every server: all four subscribers are counted.
#[test]
fn redis_mode_publish_counts_every_subscriber() {
    let s = Shards::start(3);
    let chans = s.key_per_server("pc");
    publish_counts(s.proxy.port(), &chans[..2], 4);
}

/// Cluster mode: a channel is subscribed on its slot's master, where
/// PUBLISH goes, and `*` (which may match keyspace channels) on every
/// master: they are counted. `pc*` is on one node, the master of slot 0,
/// which serves neither channel: it gets the messages (the cluster bus
/// brings them) but is not counted, as a Redis Cluster node counts only
/// its own subscribers.
#[test]
fn cluster_mode_publish_counts_every_subscriber() {
    let rc = RedisCluster::start(3, 0);
    // Channels on the two masters that do not serve slot 0 (where aster
    // used to subscribe every classic channel).
    let slot0 = rc.slot_owner(0);
    let chans: Vec<String> = rc
        .key_per_master("pc")
        .into_iter()
        .filter(|(m, _)| *m != slot0)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(chans.len(), 2);
    let proxy = Proxy::start(&rc.proxy_conf(&[]).to_toml());
    publish_counts(proxy.port(), &chans, 3);
}
