//! The same nutcracker.yml, unchanged.

use super::*;

/// A two-pool nutcracker.yml with most pool keys, for `servers`.
fn two_pool_yml(alpha: u16, beta: u16, servers: &[&RedisServer]) -> String {
    let alpha_pool = pool_yml(
        "alpha",
        alpha,
        &[
            "hash: fnv1a_64",
            "hash_tag: \"{}\"",
            "distribution: ketama",
            "timeout: 2000",
            "backlog: 1024",
            "preconnect: true",
            "redis: true",
            "server_connections: 1",
            "auto_eject_hosts: true",
            "server_retry_timeout: 2000",
            "server_failure_limit: 3",
            "client_connections: 1000",
            "tcpkeepalive: true",
        ],
        &server_lines(servers, &[]),
    );
    let beta_servers: Vec<String> = servers
        .iter()
        .zip(["red", "green", "blue"])
        .enumerate()
        .map(|(i, (s, n))| format!("{}:{} {n}", s.addr(), i % 2 + 1))
        .collect();
    let beta_pool = pool_yml(
        "beta",
        beta,
        &[
            "hash: murmur",
            "distribution: modula",
            "redis: true",
            "redis_db: 0",
            "timeout: 2000",
        ],
        &beta_servers,
    );
    format!("{alpha_pool}{beta_pool}")
}

#[test]
fn two_pool_nutcracker_yml_runs_unchanged_with_the_same_placement() {
    let backends: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let (alpha, beta) = (free_port(), free_port());
    let dir = TempDir::new("compat-two-pools");
    let yml_path = dir.join("nutcracker.yml");
    let yml = two_pool_yml(alpha, beta, &refs);
    fs::write(&yml_path, &yml).expect("write yml");

    // -t: valid for aster, and for nutcracker itself.
    assert_accepted(&["-t", "-c", path_str(&yml_path)], &yml);
    let have_nutcracker = nutcracker_available();
    if have_nutcracker {
        let out = run_nutcracker(&["-t", "-c", path_str(&yml_path)]);
        assert!(
            out.status.success(),
            "nutcracker -t: {}\n{yml}",
            output_text(&out)
        );
    }

    // 120 keys per pool, some sharing hash tags.
    let alpha_keys: Vec<String> = (0..120)
        .map(|i| match i % 3 {
            0 => format!("a:{i}"),
            1 => format!("{{user{}}}:name:{i}", i / 6),
            _ => format!("{i}:a{{}}"),
        })
        .collect();
    let beta_keys: Vec<String> = (0..120).map(|i| format!("b:{i}")).collect();

    let mut nut_doc = None;
    if have_nutcracker {
        let mut nut = Nutcracker::start_file(&yml_path);
        for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
            let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
            let replies = Client::connect(port).pipeline(&sets);
            assert!(
                replies.iter().all(|r| *r == Reply::ok()),
                "SET through nutcracker on {port}: {replies:?}"
            );
        }
        nut_doc = Some(wait_stats(nut.stats_port(), "nutcracker's requests", |d| {
            server_sum(d, "alpha", "requests") >= 120 && server_sum(d, "beta", "requests") >= 120
        }));
        nut.stop();
    } else {
        // Without the reference, write directly where aster puts them.
        let a = Proxy::start_yml_file(&yml_path, &[]);
        for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
            let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
            Client::connect(port).pipeline(&sets);
        }
        drop(a);
    }
    let sizes: Vec<i64> = backends.iter().map(RedisServer::dbsize).collect();
    assert_eq!(sizes.iter().sum::<i64>(), 240, "keys written: {sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n > 0).count() >= 2,
        "keys should spread over the backends: {sizes:?}"
    );

    // Now aster on the very same file and ports.
    let aster = Proxy::start_yml_file(&yml_path, &[]);
    for (port, keys) in [(alpha, &alpha_keys), (beta, &beta_keys)] {
        let missed = keys_not_read_back(port, keys);
        assert!(
            missed.is_empty(),
            "port {port}: {} of {} keys written through nutcracker not found through aster, e.g. {:?}",
            missed.len(),
            keys.len(),
            &missed[..missed.len().min(5)]
        );
    }
    // Tagged keys of one user sit together (MGET is served whole).
    let tagged: Vec<&str> = alpha_keys
        .iter()
        .filter(|k| k.starts_with("{user3}"))
        .map(String::as_str)
        .collect();
    let holders: BTreeSet<usize> = tagged.iter().map(|k| holder(&refs, k)).collect();
    assert_eq!(holders.len(), 1, "{tagged:?} on {holders:?}");

    // Same stats shape as nutcracker for the same file: pools, counters, and
    // servers named as nutcracker names them (host:port unaliased, else alias).
    let doc = aster.stats();
    let alpha_names: Vec<String> = refs.iter().map(|s| s.addr()).collect();
    let beta_names: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    assert_shape(
        &doc,
        &[("alpha", alpha_names.clone()), ("beta", beta_names.clone())],
    );
    if let Some(nd) = nut_doc {
        assert_shape(&nd, &[("alpha", alpha_names), ("beta", beta_names)]);
        assert_eq!(key_set(&doc), key_set(&nd), "top-level members");
        for pool in ["alpha", "beta"] {
            assert_eq!(key_set(&doc[pool]), key_set(&nd[pool]), "pool {pool}");
        }
    }
}
