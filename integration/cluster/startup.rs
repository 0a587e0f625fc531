//! Start-up with and without a reachable seed.

use super::*;

#[test]
fn startup_fails_with_exit_code_3_when_no_seed_gives_a_slot_table() {
    let dir = TempDir::new("cluster-noseed");
    let seeds = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let conf = proxy_conf_for(seeds.clone(), &[]);
    let path = dir.join("aster.toml");
    fs::write(&path, conf.to_toml()).expect("write config");
    let started = Instant::now();
    let out = run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot learn the cluster's slots"),
        "stderr should say why: {stderr}"
    );
    for s in &seeds {
        assert!(
            stderr.contains(s.as_str()),
            "stderr should name seed {s}: {stderr}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused seeds should fail fast: {:?}",
        started.elapsed()
    );
    // Nothing listens: the proxy did not half-start.
    assert!(!crate::harness::accepts(conf.port));

    // A seed that answers but is no cluster node is no better.
    let plain = RedisServer::start();
    let conf = proxy_conf_for(vec![plain.addr()], &[]);
    fs::write(&path, conf.to_toml()).expect("write config");
    let out = run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot learn the cluster's slots") && stderr.contains(&plain.addr()),
        "stderr should say why: {stderr}"
    );
    assert!(
        stderr.contains("cluster support disabled"),
        "stderr should carry the node's own error: {stderr}"
    );
}

#[test]
fn one_answering_seed_is_enough_to_start() {
    let rc = RedisCluster::start(3, 1);
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&proxy_conf_for(vec![dead, rc.addr(4)], &[]).to_toml());
    let mut c = proxy.client();
    for (m, k) in rc.key_per_master("seed:") {
        assert_eq!(c.cmd(&["SET", &k, "x"]), Reply::ok());
        assert_eq!(rc.cmd(m, &["GET", &k]), Reply::bulk("x"));
    }
}
