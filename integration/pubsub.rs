//! Pub/sub through the proxy (issue 13, item 3): subscriptions on
//! connections of the client's own, channels on the server their name
//! hashes to, patterns on every server, confirmations as one Redis sends
//! them, RESP2's subscribed-mode rules, RESP3 pushes beside normal replies,
//! and cluster mode's classic and shard channels.

use std::time::Duration;

use crate::harness::{
    Client, Proxy, RedisCluster, RedisServer, Reply, Shards, info_u64, poll_until,
};

fn message(kind: &str, parts: &[&str]) -> Reply {
    let mut v = vec![Reply::bulk(kind)];
    v.extend(parts.iter().map(|p| Reply::bulk(p)));
    Reply::Array(v)
}

fn confirm(kind: &str, name: &str, count: i64) -> Reply {
    Reply::Array(vec![
        Reply::bulk(kind),
        Reply::bulk(name),
        Reply::Int(count),
    ])
}

#[test]
fn channels_live_where_they_hash_and_patterns_everywhere() {
    let s = Shards::start(3);
    let chans = s.key_per_server("chan");
    let mut sub = s.client();
    let mut publ = s.client();
    for (i, ch) in chans.iter().enumerate() {
        sub.send_cmd(&["SUBSCRIBE", ch]);
        assert_eq!(
            sub.read_reply().expect("confirmation"),
            confirm("subscribe", ch, i as i64 + 1)
        );
    }
    sub.send_cmd(&["PSUBSCRIBE", "chan*"]);
    assert_eq!(
        sub.read_reply().expect("confirmation"),
        confirm("psubscribe", "chan*", 4)
    );
    // Let every server register the subscriptions.
    let ready = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        chans
            .iter()
            .all(|ch| publ.cmd(&["PUBLISH", ch, "probe"]) == Reply::Int(2))
            .then_some(())
    });
    assert!(ready.is_some(), "subscriptions did not reach every server");
    for _ in 0..chans.len() * 2 {
        sub.read_reply().expect("probe messages");
    }
    for ch in &chans {
        // One subscriber by channel and one by pattern, on its server.
        assert_eq!(publ.cmd(&["PUBLISH", ch, "hello"]), Reply::Int(2));
        let got = [
            sub.read_reply().expect("message"),
            sub.read_reply().expect("pmessage"),
        ];
        assert!(
            got.contains(&message("message", &[ch, "hello"]))
                && got.contains(&message("pmessage", &["chan*", ch, "hello"])),
            "{got:?}"
        );
    }
    assert!(
        !sub.readable_within(Duration::from_millis(200)),
        "duplicates"
    );
}

#[test]
fn resp2_subscribed_mode_rules_and_unsubscribe_all() {
    let s = Shards::start(2);
    let chans = s.key_per_server("r2");
    let mut sub = s.client();
    let mut watcher = s.client();
    sub.send_cmd(&["SUBSCRIBE", &chans[0], &chans[1]]);
    assert_eq!(
        sub.read_reply().unwrap(),
        confirm("subscribe", &chans[0], 1)
    );
    assert_eq!(
        sub.read_reply().unwrap(),
        confirm("subscribe", &chans[1], 2)
    );
    assert_eq!(
        sub.cmd(&["GET", "k"]).error(),
        Some(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )
    );
    assert_eq!(
        sub.cmd(&["PING"]),
        Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("")])
    );
    let leased = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        info_u64(&mut watcher, "dedicated_connections_in_use")
            .is_some_and(|n| n >= 2)
            .then_some(())
    });
    assert!(leased.is_some(), "{:?}", watcher.cmd(&["INFO"]));
    sub.send_cmd(&["UNSUBSCRIBE"]);
    let a = sub.read_reply().unwrap();
    let b = sub.read_reply().unwrap();
    let mut names = Vec::new();
    for (r, count) in [(a, 1), (b, 0)] {
        match r {
            Reply::Array(v) if v.len() == 3 && v[0] == Reply::bulk("unsubscribe") => {
                assert_eq!(v[2], Reply::Int(count));
                names.push(v[1].text().to_string());
            }
            other => panic!("{other:?}"),
        }
    }
    names.sort();
    let mut want = chans.clone();
    want.sort();
    assert_eq!(names, want);
    // Out of subscribed mode: normal commands again, connections released.
    assert_eq!(sub.cmd(&["SET", "k", "v"]), Reply::ok());
    let released = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut watcher, "dedicated_connections_in_use") == Some(0)).then_some(())
    });
    assert!(released.is_some(), "{:?}", watcher.cmd(&["INFO"]));
    // Nothing to unsubscribe from: Redis's nil confirmation.
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]),
        Reply::Array(vec![Reply::bulk("unsubscribe"), Reply::Nil, Reply::Int(0)])
    );
}

/// The same subscription dialogue straight to Redis and through aster
/// (one server): the bytes must be the same.
#[test]
fn confirmations_are_byte_for_byte_redis_s() {
    let direct = RedisServer::start();
    let s = Shards::start(1);
    let dialogue: &[&[&str]] = &[
        &["SUBSCRIBE", "a", "b"],
        &["PSUBSCRIBE", "p*", "q*"],
        &["UNSUBSCRIBE", "a"],
        &["PUNSUBSCRIBE"],
        &["PING", "x"],
        &["UNSUBSCRIBE", "b", "nosuch"],
        &["PUNSUBSCRIBE"],
    ];
    let replies = [2usize, 2, 1, 2, 1, 2, 1];
    let mut raw = Vec::new();
    for cmd in dialogue {
        raw.extend(crate::harness::encode_str(cmd));
    }
    let total: usize = replies.iter().sum();
    let exchange = |mut c: Client| {
        c.send(&raw);
        c.read_raw(total, Duration::from_secs(3))
    };
    let want = exchange(direct.client());
    let got = exchange(s.client());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn resp3_clients_get_pushes_beside_normal_replies() {
    let s = Shards::start(2);
    let chans = s.key_per_server("r3");
    let mut sub = s.client();
    let mut publ = s.client();
    assert!(!sub.cmd(&["HELLO", "3"]).is_error());
    sub.send_cmd(&["SUBSCRIBE", &chans[1]]);
    assert_eq!(
        sub.read_reply().unwrap(),
        confirm("subscribe", &chans[1], 1)
    );
    // Normal commands interleave.
    assert_eq!(sub.cmd(&["SET", "k3", "v"]), Reply::ok());
    assert_eq!(sub.cmd(&["GET", "k3"]), Reply::bulk("v"));
    let ready = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        (publ.cmd(&["PUBLISH", &chans[1], "m"]) == Reply::Int(1)).then_some(())
    });
    assert!(ready.is_some());
    let raw = sub.read_raw(1, Duration::from_secs(2));
    assert!(raw.starts_with(b">3\r\n$7\r\nmessage\r\n"), "{raw:?}");
}

#[test]
fn a_subscriber_that_leaves_releases_its_connections() {
    let s = Shards::start(3);
    let mut watcher = s.client();
    {
        let mut sub = s.client();
        sub.send_cmd(&["PSUBSCRIBE", "gone*"]);
        sub.read_reply().expect("confirmation");
        let leased = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
            (info_u64(&mut watcher, "dedicated_connections_in_use") == Some(3)).then_some(())
        });
        assert!(leased.is_some(), "a pattern is subscribed on every server");
    }
    let released = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (info_u64(&mut watcher, "dedicated_connections_in_use") == Some(0)).then_some(())
    });
    assert!(released.is_some(), "{:?}", watcher.cmd(&["INFO"]));
    assert_eq!(watcher.cmd(&["PUBLISH", "gone1", "x"]), Reply::Int(0));
}

#[test]
fn cluster_mode_classic_and_shard_channels() {
    let rc = RedisCluster::start(3, 0);
    let proxy = Proxy::start(&rc.proxy_conf(&[("thread", "1")]).to_toml());
    let mut sub = proxy.client();
    let mut publ = proxy.client();
    sub.send_cmd(&["SUBSCRIBE", "news"]);
    assert_eq!(sub.read_reply().unwrap(), confirm("subscribe", "news", 1));
    sub.send_cmd(&["SSUBSCRIBE", "{s}1", "{s}2"]);
    assert_eq!(sub.read_reply().unwrap(), confirm("ssubscribe", "{s}1", 1));
    assert_eq!(sub.read_reply().unwrap(), confirm("ssubscribe", "{s}2", 2));
    let counted = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (publ.cmd(&["PUBSUB", "NUMSUB", "news"])
            == Reply::Array(vec![Reply::bulk("news"), Reply::Int(1)])
            && publ.cmd(&["PUBSUB", "SHARDNUMSUB", "{s}1"])
                == Reply::Array(vec![Reply::bulk("{s}1"), Reply::Int(1)]))
        .then_some(())
    });
    assert!(
        counted.is_some(),
        "PUBSUB NUMSUB/SHARDNUMSUB over the masters"
    );
    let err = sub.cmd(&["SSUBSCRIBE", "a", "b"]);
    assert!(
        err.error().is_some_and(|e| e.starts_with("CROSSSLOT")),
        "{err:?}"
    );
    // PUBLISH goes to the channel's slot; the cluster bus carries it.
    let got = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        publ.cmd(&["PUBLISH", "news", "n"]);
        sub.readable_within(Duration::from_millis(100))
            .then(|| sub.read_reply().ok())
            .flatten()
    });
    assert_eq!(got, Some(message("message", &["news", "n"])));
    let n = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (publ.cmd(&["SPUBLISH", "{s}1", "x"]) == Reply::Int(1)).then_some(())
    });
    assert!(n.is_some());
    // Drain any extra "news" messages from the retries above.
    loop {
        match sub.read_reply() {
            Ok(r) if r == message("smessage", &["{s}1", "x"]) => break,
            Ok(r) if r == message("message", &["news", "n"]) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn pubsub_introspection_asks_every_server() {
    let s = Shards::start(3);
    let chans = s.key_per_server("intro");
    let mut sub = s.client();
    let mut other = s.client();
    for ch in &chans {
        sub.send_cmd(&["SUBSCRIBE", ch]);
        sub.read_reply().expect("confirmation");
    }
    sub.send_cmd(&["PSUBSCRIBE", "intro*"]);
    sub.read_reply().expect("confirmation");
    let all = poll_until(
        Duration::from_secs(3),
        Duration::from_millis(50),
        || match other.cmd(&["PUBSUB", "CHANNELS", "intro*"]) {
            Reply::Array(v) if v.len() == chans.len() => Some(v),
            _ => None,
        },
    )
    .expect("every server's channels");
    let mut got: Vec<String> = all.iter().map(|r| r.text().to_string()).collect();
    got.sort();
    let mut want = chans.clone();
    want.sort();
    assert_eq!(got, want);
    let mut numsub = vec!["PUBSUB", "NUMSUB"];
    numsub.extend(chans.iter().map(String::as_str));
    numsub.push("nobody");
    let mut expect = Vec::new();
    for ch in &chans {
        expect.push(Reply::bulk(ch));
        expect.push(Reply::Int(1));
    }
    expect.push(Reply::bulk("nobody"));
    expect.push(Reply::Int(0));
    assert_eq!(other.cmd(&numsub), Reply::Array(expect));
    // The pattern is on every server, but counted once.
    assert_eq!(other.cmd(&["PUBSUB", "NUMPAT"]), Reply::Int(1));
    let r = other.cmd(&["PUBSUB", "HELP"]);
    assert!(
        r.error().is_some_and(|e| e.contains("not supported")),
        "{r:?}"
    );
}

/// A subscriber that does not read: the proxy reads the server for it, so
/// the server's pub/sub output limit no longer applies; the proxy applies
/// Redis's (32 MiB) itself and closes it.
#[test]
fn a_subscriber_that_does_not_read_is_closed_past_the_pubsub_limit() {
    let server = RedisServer::start();
    let conf = crate::harness::ClusterConf::new("flood", &[&server]).set("thread", "1");
    let proxy = Proxy::start_with_args(&conf.to_toml(), &["-v", "warn"]);
    let mut sub = proxy.client();
    socket2::SockRef::from(sub.stream())
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    sub.send_cmd(&["SUBSCRIBE", "flood"]);
    let mut publ = proxy.client();
    let payload = "x".repeat(100 * 1024);
    let ready = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        (publ.cmd(&["PUBLISH", "flood", "probe"]) == Reply::Int(1)).then_some(())
    });
    assert!(ready.is_some());
    for _ in 0..500 {
        publ.cmd(&["PUBLISH", "flood", &payload]);
    }
    let log = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        proxy.log().contains("pub/sub limit").then_some(())
    });
    assert!(log.is_some(), "no close logged:\n{}", proxy.log());
    // Its backend subscription is gone with it (what the kernel still
    // holds for its small window drains slowly, so EOF is not awaited).
    let gone = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (publ.cmd(&["PUBLISH", "flood", "after"]) == Reply::Int(0)).then_some(())
    });
    assert!(gone.is_some(), "the subscription outlived its client");
    drop(sub);
}
