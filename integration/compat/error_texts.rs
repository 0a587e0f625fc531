//! Error texts.

use super::*;

#[test]
fn refused_and_timed_out_texts_match_nutcracker() {
    let mut down = RedisServer::start();
    let mut slow = RedisServer::start();
    let yml_for = |p_down: u16, p_slow: u16| {
        format!(
            "{}{}",
            pool_yml(
                "down",
                p_down,
                &["redis: true", "timeout: 300"],
                &server_lines(&[&down], &[])
            ),
            pool_yml(
                "slow",
                p_slow,
                &["redis: true", "timeout: 300"],
                &server_lines(&[&slow], &[])
            ),
        )
    };
    let (ad, as_) = (free_port(), free_port());
    let aster = Proxy::start_yml(&yml_for(ad, as_), &[]);
    let mut proxies = vec![("aster", ad, as_)];
    let mut _nut = None;
    if nutcracker_available() {
        let (nd, ns) = (free_port(), free_port());
        _nut = Some(Nutcracker::start_yml(&yml_for(nd, ns)));
        proxies.push(("nutcracker", nd, ns));
    }
    // Both pools work, and every proxy holds a connection to each backend.
    let mut clients: Vec<(Client, Client)> = Vec::new();
    for (who, pd, ps) in &proxies {
        let (mut cd, mut cs) = (Client::connect(*pd), Client::connect(*ps));
        assert_eq!(cd.cmd(&["SET", "k", "v"]), Reply::ok(), "{who}");
        assert_eq!(cs.cmd(&["SET", "k", "v"]), Reply::ok(), "{who}");
        clients.push((cd, cs));
    }

    down.kill();
    thread::sleep(Duration::from_millis(100));
    for ((who, pd, _), (cd, _)) in proxies.iter().zip(clients.iter_mut()) {
        for i in 0..3 {
            assert_eq!(
                cd.cmd(&["GET", "k"]),
                Reply::Error("ERR Connection refused".into()),
                "{who}: GET #{i} with the backend killed"
            );
        }
        // A fresh client too.
        assert_eq!(
            Client::connect(*pd).cmd(&["GET", "k"]),
            Reply::Error("ERR Connection refused".into()),
            "{who}: fresh client"
        );
    }

    slow.pause();
    let t0 = Instant::now();
    for (_, cs) in clients.iter_mut() {
        cs.send_cmd(&["GET", "k"]);
    }
    for ((who, _, _), (_, cs)) in proxies.iter().zip(clients.iter_mut()) {
        let r = cs.read_reply().expect("reply to GET on a stopped backend");
        let took = t0.elapsed();
        assert_eq!(
            r,
            Reply::Error("ERR Connection timed out".into()),
            "{who}: GET with the backend stopped"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{who}: timed out after {took:?}, timeout is 300 ms"
        );
    }
    slow.resume();
    drop(aster);
}

#[test]
fn auth_and_db_texts_and_backend_setup() {
    let secured: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    for s in &secured {
        assert_eq!(
            s.client().cmd(&["CONFIG", "SET", "requirepass", "s3cret"]),
            Reply::ok()
        );
    }
    let plain = RedisServer::start();
    let (p_auth, p_open, p_db) = (free_port(), free_port(), free_port());
    let sec_refs: Vec<&RedisServer> = secured.iter().collect();
    let yml = format!(
        "{}{}{}",
        pool_yml(
            "auth",
            p_auth,
            &["redis: true", "redis_auth: s3cret", "timeout: 2000"],
            &server_lines(&sec_refs, &["s0", "s1"]),
        ),
        pool_yml(
            "open",
            p_open,
            &["redis: true"],
            &server_lines(&[&plain], &[])
        ),
        pool_yml(
            "db3",
            p_db,
            &["redis: true", "redis_db: 3"],
            &server_lines(&[&plain], &[])
        ),
    );
    let _aster = Proxy::start_yml(&yml, &[]);

    let noauth = Reply::Error("NOAUTH Authentication required.".into());
    let mut c = Client::connect(p_auth);
    assert_eq!(c.cmd(&["PING"]), noauth, "PING before AUTH");
    assert_eq!(c.cmd(&["GET", "x"]), noauth, "GET before AUTH");
    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(c.cmd(&["PING"]), noauth, "PING after a wrong AUTH");
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Reply::ok());
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    // Keys on both backends: the proxy authenticated to each of them.
    let keys: Vec<String> = (0..40).map(|i| format!("au:{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), Reply::ok(), "SET {k}");
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk(k), "GET {k}");
    }
    let counts: Vec<String> = secured
        .iter()
        .map(|s| redis_cli(s.port(), &["--no-auth-warning", "-a", "s3cret", "DBSIZE"]))
        .collect();
    assert!(
        counts.iter().all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
        "each secured backend should hold keys: {counts:?}"
    );

    let mut o = Client::connect(p_open);
    assert_eq!(
        o.cmd(&["AUTH", "x"]),
        Reply::Error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
                .into()
        )
    );
    assert_eq!(
        o.cmd(&["PING"]),
        Reply::status("PONG"),
        "open pool after AUTH"
    );

    let mut d = Client::connect(p_db);
    assert_eq!(d.cmd(&["SET", "in3", "three"]), Reply::ok());
    assert_eq!(plain.cli(&["-n", "3", "GET", "in3"]), "three", "db 3");
    assert_eq!(plain.cli(&["-n", "0", "EXISTS", "in3"]), "0", "not in db 0");
    assert_eq!(plain.cli(&["-n", "3", "SET", "direct3", "d"]), "OK");
    assert_eq!(d.cmd(&["GET", "direct3"]), Reply::bulk("d"));
    // The open pool on the same backend stays on db 0.
    assert_eq!(o.cmd(&["GET", "in3"]), Reply::Nil);
}
