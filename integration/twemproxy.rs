//! Key routing must match twemproxy (nutcracker) for the same pool config:
//! keys written through nutcracker are found through aster.

use crate::harness::{
    ClusterConf, Nutcracker, Proxy, RedisServer, Reply, args, keys_not_read_back,
};

const HASHES: [&str; 12] = [
    "one_at_a_time",
    "md5",
    "crc16",
    "crc32",
    "crc32a",
    "fnv1_64",
    "fnv1a_64",
    "fnv1_32",
    "fnv1a_32",
    "hsieh",
    "murmur",
    "jenkins",
];

/// Writes keys through nutcracker, reads them through aster.
fn check_same_routing(servers: &[RedisServer], conf: &ClusterConf) {
    for s in servers {
        assert_eq!(s.client().cmd(&["FLUSHALL"]), Reply::ok());
    }
    let label = format!("{:?} {:?}", conf.servers, conf.fields);
    let twem = Nutcracker::start(conf);
    let aster = Proxy::start(&conf.to_toml());
    let keys: Vec<String> = (0..200)
        .map(|i| match i % 5 {
            0 => format!("key:{i}"),
            4 => format!("{i}:key"),
            1 => format!("{{tag{i}}}:x"),
            2 => format!("user:{i}:{{}}"),
            _ => format!("{i}"),
        })
        .collect();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    let replies = twem.client().pipeline(&sets);
    assert!(
        replies.iter().all(|r| *r == Reply::ok()),
        "{label}: SET through nutcracker: {replies:?}"
    );
    // (Some twemproxy hashes put every key on one server under ketama, e.g.
    // crc32, whose result has 15 bits: aster must do the same.)
    let total: i64 = servers.iter().map(|s| s.dbsize()).sum();
    assert_eq!(
        total,
        keys.len() as i64,
        "{label}: keys written through nutcracker"
    );
    let missed = keys_not_read_back(aster.port(), &keys);
    assert!(
        missed.is_empty(),
        "{label}: {} of {} keys routed differently from twemproxy, e.g. {:?}",
        missed.len(),
        keys.len(),
        &missed[..missed.len().min(5)]
    );
}

fn servers(n: usize) -> Option<Vec<RedisServer>> {
    if !Nutcracker::available() {
        eprintln!("nutcracker not installed: skipping the twemproxy routing comparison");
        return None;
    }
    Some((0..n).map(|_| RedisServer::start()).collect())
}

#[test]
fn ketama_routing_matches_twemproxy_for_every_hash() {
    let Some(servers) = servers(3) else { return };
    let refs: Vec<&RedisServer> = servers.iter().collect();
    for hash in HASHES {
        let conf = ClusterConf::new("ketama", &refs).set("hash", &format!("\"{hash}\""));
        check_same_routing(&servers, &conf);
    }
}

#[test]
fn modula_routing_matches_twemproxy_for_every_hash() {
    let Some(servers) = servers(3) else { return };
    let refs: Vec<&RedisServer> = servers.iter().collect();
    for hash in HASHES {
        let conf = ClusterConf::new("modula", &refs)
            .set("hash", &format!("\"{hash}\""))
            .set("distribution", "\"modula\"");
        check_same_routing(&servers, &conf);
    }
}

#[test]
fn weights_unaliased_servers_and_other_hash_tags_match_twemproxy() {
    let Some(servers) = servers(4) else { return };
    // No aliases: ketama points come from "host:port".
    let plain: Vec<String> = servers.iter().map(|s| format!("{}:1", s.addr())).collect();
    // Weights 1..4 with aliases.
    let weighted: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}:{} node{i}", s.addr(), i + 1))
        .collect();
    for lines in [plain, weighted] {
        for dist in ["ketama", "modula"] {
            let conf = ClusterConf::with_server_lines("w", lines.clone())
                .set("distribution", &format!("\"{dist}\""));
            check_same_routing(&servers, &conf);
        }
    }
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("tags", &refs).set("hash_tag", "\":}\"");
    check_same_routing(&servers, &conf);
}
