//! Security.

use super::*;

const NOAUTH: &str = "NOAUTH Authentication required.";

#[test]
fn front_password_and_users_gate_every_command() {
    let s = Shards::start_with(2, |c| {
        c.set("password", "\"s3cret\"")
            .set("users", "[{ username = \"app\", password = \"apppass\" }]")
    });
    let port = s.proxy.port();
    let noauth = Reply::Error(NOAUTH.into());

    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), noauth, "PING before AUTH");
    assert_eq!(c.cmd(&["GET", "gated"]), noauth, "GET before AUTH");
    assert_eq!(c.cmd(&["SET", "gated", "x"]), noauth, "SET before AUTH");
    assert_eq!(c.cmd(&["MSET", "gated", "x", "g2", "y"]), noauth);
    assert_eq!(c.cmd(&["DEL", "gated", "g2"]), noauth);
    assert_eq!(c.cmd(&["EVAL", "return 1", "1", "gated"]), noauth);
    assert_eq!(c.cmd(&["INFO"]), noauth);
    let r = c.cmd(&["HELLO", "2"]);
    assert!(
        r.text().starts_with("NOAUTH"),
        "HELLO 2 without AUTH before authenticating: {r:?}"
    );
    // Nothing reached a backend.
    for (i, srv) in s.servers.iter().enumerate() {
        let mut d = srv.client();
        for cmd in ["get", "set", "mset", "del", "eval"] {
            assert_eq!(
                backend_calls(&mut d, cmd),
                0,
                "backend {i} saw {cmd} from an unauthenticated client"
            );
        }
        assert_eq!(srv.dbsize(), 0, "backend {i} has keys");
    }

    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        c.cmd(&["GET", "gated"]),
        noauth,
        "still locked after a bad AUTH"
    );
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Reply::ok());
    assert_eq!(c.cmd(&["SET", "gated", "x"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"));
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    // A later failed AUTH does not lock out an authenticated connection (as Redis).
    assert!(c.cmd(&["AUTH", "nope"]).is_error());
    assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"));

    // Named users; "default" is the password's user.
    let cases: [(&[&str], bool); 6] = [
        (&["AUTH", "app", "apppass"], true),
        (&["AUTH", "app", "wrong"], false),
        (&["AUTH", "app", "s3cret"], false),
        (&["AUTH", "default", "s3cret"], true),
        (&["AUTH", "default", "apppass"], false),
        (&["AUTH", "nobody", "apppass"], false),
    ];
    for (cmd, ok) in cases {
        let mut c = Client::connect(port);
        let r = c.cmd(cmd);
        if ok {
            assert_eq!(r, Reply::ok(), "{cmd:?}");
            assert_eq!(c.cmd(&["GET", "gated"]), Reply::bulk("x"), "after {cmd:?}");
        } else {
            assert!(r.is_error(), "{cmd:?}: {r:?}");
            assert_eq!(c.cmd(&["GET", "gated"]), noauth, "after {cmd:?}");
        }
    }

    // HELLO 2 AUTH user pass authenticates; with a wrong password it does not.
    let mut h = Client::connect(port);
    let r = h.cmd(&["HELLO", "2", "AUTH", "app", "wrong"]);
    assert!(r.is_error(), "HELLO with a wrong password: {r:?}");
    assert_eq!(h.cmd(&["GET", "gated"]), noauth);
    let r = h.cmd(&["HELLO", "2", "AUTH", "app", "apppass"]);
    assert!(
        matches!(r, Reply::Array(_)),
        "HELLO 2 AUTH app apppass: {r:?}"
    );
    assert_eq!(h.cmd(&["GET", "gated"]), Reply::bulk("x"));

    // Pipelined: each request is judged in order.
    let mut p = Client::connect(port);
    let mut bytes = encode_str(&["GET", "gated"]);
    bytes.extend(b"AUTH s3cret\r\n");
    bytes.extend(encode_str(&["GET", "gated"]));
    let replies = p.pipeline_raw(bytes, 3);
    assert_eq!(replies, vec![noauth.clone(), Reply::ok(), Reply::bulk("x")]);

    // QUIT works before AUTH.
    let mut q = Client::connect(port);
    assert_eq!(q.cmd(&["QUIT"]), Reply::ok());
    assert!(q.closed_within(Duration::from_secs(3)));
}

/// A redis-server whose clients must authenticate: `requirepass` (the
/// harness's readiness check needs a password-less PING, so it is set after
/// start), plus a user `proxyuser` with password `ppass`.
fn locked_server(pass: &str) -> RedisServer {
    let srv = RedisServer::start();
    let mut c = srv.client();
    assert_eq!(
        c.cmd(&[
            "ACL",
            "SETUSER",
            "proxyuser",
            "on",
            ">ppass",
            "~*",
            "&*",
            "+@all"
        ]),
        Reply::ok()
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", pass]), Reply::ok());
    srv
}

/// A direct client to a locked server, authenticated as default.
fn locked_client(srv: &RedisServer, pass: &str) -> Client {
    let mut c = srv.client();
    assert_eq!(c.cmd(&["AUTH", pass]), Reply::ok());
    c
}

#[test]
fn backend_password_username_and_db_are_sent_on_every_backend_connection() {
    let servers = [locked_server("bpass"), locked_server("bpass")];
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let good = ClusterConf::new("good", &refs).set("backend_password", "\"bpass\"");
    let named = ClusterConf::new("named", &refs)
        .set("backend_username", "\"proxyuser\"")
        .set("backend_password", "\"ppass\"")
        .set("backend_db", "2");
    let bad = ClusterConf::new("bad", &refs).set("backend_password", "\"not-it\"");
    let proxy = Proxy::start(&config_toml(&[good, named, bad]));
    let ports = proxy.ports().to_vec();

    // Plain password: commands work, data lands in db 0.
    let mut c = Client::connect(ports[0]);
    let mut cmds = Vec::new();
    for i in 0..20 {
        cmds.push(vec!["SET".to_string(), format!("bp{i}"), format!("v{i}")]);
    }
    assert!(c.pipeline(&cmds).iter().all(|r| *r == Reply::ok()));
    for i in 0..20 {
        assert_eq!(
            c.cmd(&["GET", &format!("bp{i}")]),
            Reply::bulk(&format!("v{i}"))
        );
    }
    let mut db0 = 0;
    for srv in &servers {
        match locked_client(srv, "bpass").cmd(&["DBSIZE"]) {
            Reply::Int(n) => db0 += n,
            other => panic!("DBSIZE: {other:?}"),
        }
    }
    assert_eq!(db0, 20, "keys written through the proxy, in db 0");

    // Username + password + db: the backend sees user proxyuser, keys in db 2.
    let mut n = Client::connect(ports[1]);
    for i in 0..20 {
        assert_eq!(n.cmd(&["SET", &format!("named{i}"), "x"]), Reply::ok());
    }
    assert_eq!(n.cmd(&["GET", "named3"]), Reply::bulk("x"));
    let mut db2 = 0;
    let mut saw_user = false;
    for srv in &servers {
        let mut d = locked_client(srv, "bpass");
        assert_eq!(
            d.cmd(&["EXISTS", "named3"]),
            Reply::Int(0),
            "named3 in db 0"
        );
        let list = d.cmd(&["CLIENT", "LIST"]);
        saw_user |= list.text().contains("user=proxyuser");
        assert_eq!(d.cmd(&["SELECT", "2"]), Reply::ok());
        match d.cmd(&["DBSIZE"]) {
            Reply::Int(k) => db2 += k,
            other => panic!("DBSIZE: {other:?}"),
        }
    }
    assert_eq!(db2, 20, "keys written with backend_db = 2");
    assert!(saw_user, "no backend connection authenticated as proxyuser");

    // A wrong backend password: errors, promptly, every time; never a hang.
    let mut b = Client::connect(ports[2]);
    for attempt in 0..5 {
        let start = Instant::now();
        let r = b.cmd(&["GET", &format!("bp{attempt}")]);
        let took = start.elapsed();
        assert!(
            r.is_error(),
            "attempt {attempt}: GET with a wrong backend password: {r:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: took {took:?}"
        );
        assert_eq!(b.cmd(&["PING"]), Reply::status("PONG"));
        thread::sleep(Duration::from_millis(100));
    }
    // The good clusters are unaffected.
    assert_eq!(c.cmd(&["GET", "bp1"]), Reply::bulk("v1"));
}

#[test]
fn secrets_never_reach_the_log_or_the_slowlog() {
    let secrets = [
        "front-s3cret-7f",
        "user-pass-9c",
        "guess-pw-1a",
        "hello-guess-2b",
        "back-pass-3d",
        "bad-back-4e",
    ];
    let servers = [locked_server("back-pass-3d"), locked_server("back-pass-3d")];
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let front = |name: &str| {
        ClusterConf::new(name, &refs)
            .set("password", "\"front-s3cret-7f\"")
            .set(
                "users",
                "[{ username = \"app\", password = \"user-pass-9c\" }]",
            )
            .set("slowlog_log_slower_than", "0")
    };
    let good = front("good").set("backend_password", "\"back-pass-3d\"");
    let bad = front("bad").set("backend_password", "\"bad-back-4e\"");
    let dir = TempDir::new("secrets");
    let log_path = dir.join("aster.log");
    let log_arg = log_path.to_string_lossy().into_owned();
    let proxy =
        Proxy::start_with_args(&config_toml(&[good, bad]), &["-v", "trace", "-o", &log_arg]);
    let ports = proxy.ports().to_vec();

    for &port in &ports {
        let mut c = Client::connect(port);
        assert!(c.cmd(&["AUTH", "guess-pw-1a"]).is_error());
        assert!(c.cmd(&["AUTH", "app", "guess-pw-1a"]).is_error());
        assert!(
            c.cmd(&["HELLO", "2", "AUTH", "app", "hello-guess-2b"])
                .is_error()
        );
        assert_eq!(c.cmd(&["AUTH", "front-s3cret-7f"]), Reply::ok());
        assert_eq!(c.cmd(&["AUTH", "app", "user-pass-9c"]), Reply::ok());
        let r = c.cmd(&["HELLO", "2", "AUTH", "app", "user-pass-9c"]);
        assert!(matches!(r, Reply::Array(_)), "{r:?}");
        // Requests that reach backends (through a fresh backend connection, so
        // AUTH to the backend happens now), and fail there on the bad cluster.
        for i in 0..10 {
            let _ = c.cmd(&["SET", &format!("s{i}"), "v"]);
            let _ = c.cmd(&["GET", &format!("s{i}")]);
        }
        // Inline AUTH, and malformed frames carrying a secret.
        c.send(b"AUTH front-s3cret-7f\r\n");
        assert_eq!(c.read_reply().expect("inline AUTH"), Reply::ok());
        let slowlog = c.cmd(&["SLOWLOG", "GET", "1000"]);
        let shown = format!("{slowlog:?}");
        // The good cluster's backends answered: its slow log has entries.
        assert!(
            matches!(slowlog, Reply::Array(ref v) if port != ports[0] || !v.is_empty()),
            "SLOWLOG GET with slowlog_log_slower_than = 0: {shown}"
        );
        for s in secrets {
            assert!(!shown.contains(s), "the slow log shows {s:?}: {shown}");
        }
        let _ = assert_protocol_error(
            port,
            b"*2\r\n$4\r\nAUTH\r\n$3\r\nfront-s3cret-7f\r\n",
            "AUTH with a bulk longer than declared",
        );
        let _ = assert_protocol_error(
            port,
            b"AUTH \"front-s3cret-7f\r\n",
            "inline AUTH with an unbalanced quote",
        );
    }
    let mut c = Client::connect(ports[0]);
    assert_eq!(c.cmd(&["AUTH", "front-s3cret-7f"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "s3"]), Reply::bulk("v"));
    drop(c);
    // Flush by stopping the proxy, then read what it wrote.
    let stderr_log = proxy.log();
    drop(proxy);
    for s in secrets {
        assert!(!stderr_log.contains(s), "stderr shows {s:?}:\n{stderr_log}");
    }
    let log = fs::read(&log_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        log.lines().count() >= 10,
        "the trace log is nearly empty ({} lines):\n{log}",
        log.lines().count()
    );
    for s in secrets {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(s)).collect();
        assert!(hits.is_empty(), "the log shows {s:?}:\n{}", hits.join("\n"));
    }
}

/// Whether /proc/net/tcp{,6} has a listening socket on `port` whose local
/// address is not 127.0.0.1; and whether it has one on 127.0.0.1.
fn listeners_on(port: u16) -> (bool, bool) {
    let (mut on_loopback, mut elsewhere) = (false, false);
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((addr, p)) = f[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            if addr == "0100007F" {
                on_loopback = true;
            } else {
                elsewhere = true;
            }
        }
    }
    (on_loopback, elsewhere)
}

#[test]
fn listeners_bind_only_the_configured_address() {
    let s = Shards::start(1);
    let port = s.proxy.port();
    let (on_loopback, elsewhere) = listeners_on(port);
    assert!(
        on_loopback,
        "no listener on 127.0.0.1:{port} in /proc/net/tcp"
    );
    assert!(
        !elsewhere,
        "a listener on port {port} at another address than 127.0.0.1"
    );
    let other: SocketAddr = ([127, 0, 0, 2], port).into();
    assert!(
        TcpStream::connect_timeout(&other, Duration::from_secs(1)).is_err(),
        "the proxy listening on 127.0.0.1:{port} accepted a connection on 127.0.0.2"
    );
    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
}
