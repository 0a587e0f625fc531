//! Better than twemproxy.

use super::*;

fn side_by_side_yml(port: u16, servers: &[&RedisServer]) -> String {
    pool_yml(
        "pool",
        port,
        &[
            "redis: true",
            "hash: fnv1a_64",
            "distribution: ketama",
            "timeout: 2000",
        ],
        &server_lines(servers, &["x", "y"]),
    )
}

#[test]
fn unsupported_command_gets_an_error_and_the_connection_stays() {
    let backends: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let ap = free_port();
    let _aster = Proxy::start_yml(&side_by_side_yml(ap, &refs), &[]);
    let mut c = Client::connect(ap);
    assert_eq!(c.cmd(&["SET", "u", "1"]), Reply::ok());
    let r = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(
        r.error()
            .is_some_and(|e| e.starts_with("ERR ") && e.contains("CONFIG")),
        "aster: CONFIG GET should get an error naming CONFIG: {r:?}"
    );
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"), "same connection");
    assert_eq!(c.cmd(&["GET", "u"]), Reply::bulk("1"), "same connection");

    if nutcracker_available() {
        let np = free_port();
        let _nut = Nutcracker::start_yml(&side_by_side_yml(np, &refs));
        let mut n = Client::connect(np);
        assert_eq!(n.cmd(&["GET", "u"]), Reply::bulk("1"));
        n.send_cmd(&["CONFIG", "GET", "maxmemory"]);
        assert!(
            n.closed_within(Duration::from_secs(3)),
            "nutcracker should close the connection on CONFIG"
        );
        assert!(
            n.read_raw(1, Duration::from_millis(10)).is_empty(),
            "nutcracker answers nothing"
        );
    }
}

#[test]
fn exists_over_several_servers_is_summed() {
    let backends: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = backends.iter().collect();
    let ap = free_port();
    let _aster = Proxy::start_yml(&side_by_side_yml(ap, &refs), &[]);
    let mut c = Client::connect(ap);
    let per = keys_per_server(&mut c, &refs, "ex:", 2, true).0;
    let (x0, x1) = (per[0][0].as_str(), per[0][1].as_str());
    let (y0, y1) = (per[1][0].as_str(), per[1][1].as_str());
    let cases: Vec<(Vec<&str>, i64)> = vec![
        (vec![x0, y0, y1], 3),
        (vec![y0, x0, x1], 3),
        (vec![x0, "ex:missing", y0], 2),
        (vec![x0, y0, x0], 3),
        (vec![x0, x1, y0, y1], 4),
    ];
    for (keys, want) in &cases {
        let mut cmd = vec!["EXISTS"];
        cmd.extend(keys);
        assert_eq!(c.cmd(&cmd), Reply::Int(*want), "aster: {cmd:?}");
    }
    if nutcracker_available() {
        let np = free_port();
        let _nut = Nutcracker::start_yml(&side_by_side_yml(np, &refs));
        let mut n = Client::connect(np);
        let r = n.cmd(&["EXISTS", x0, y0, y1]);
        assert!(
            r != Reply::Int(3),
            "nutcracker was expected to count on the first key's server only: {r:?}"
        );
    }
}
