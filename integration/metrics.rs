//! Prometheus metrics (`--metrics`): every family with consistent counts,
//! an ejected backend as the metrics and INFO show it, and refusals counted
//! by kind.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{
    ClusterConf, Metrics, Proxy, RedisServer, accepts, args, assert_shape, free_port, get, http,
    info, info_backends, info_field, info_num, key_per_server, poll_until, proxy_version,
    stats_doc,
};

const POLL: Duration = Duration::from_millis(50);

#[test]
fn metrics_endpoint_serves_every_family_with_consistent_counts() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("metered", &refs);
    let mport = free_port();
    let maddr = format!("127.0.0.1:{mport}");
    let proxy = Proxy::start_at_info(&conf.to_toml(), &["--metrics", &maddr]);
    Metrics::wait_ready(mport);
    let mut c = proxy.client();
    let n = 60;
    let mut cmds: Vec<Vec<String>> = (0..n)
        .map(|i| args(&["SET", &format!("m{i}"), "v"]))
        .collect();
    cmds.extend((0..n).map(|i| args(&["GET", &format!("m{i}")])));
    assert!(c.pipeline(&cmds).iter().all(|r| !r.is_error()));
    let keys = key_per_server(&mut c, &servers, "mk");
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert!(!c.cmd(&mget).is_error());
    let sent = 2 * n + 1;
    let backend_min = 2 * n + 3;

    let cl = [("cluster", "metered")];
    let m = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let m = Metrics::fetch(mport);
        let done = m.value("aster_commands_total", &cl).unwrap_or(0.0) >= sent as f64
            && m.sum("aster_backend_requests_total", &cl) >= backend_min as f64
            && m.sum("aster_backend_responses_total", &cl)
                >= m.sum("aster_backend_requests_total", &cl)
            && m.value("aster_fragments_total", &cl).unwrap_or(0.0) > 0.0;
        done.then_some(m)
    });
    let m = m.unwrap_or_else(|| {
        panic!(
            "counters not published within 5 s (sent {sent} commands):\n{}",
            Metrics::fetch(mport).text
        )
    });

    for (name, kind) in [
        ("aster_build_info", "gauge"),
        ("aster_uptime_seconds", "gauge"),
        ("aster_client_connections", "gauge"),
        ("aster_client_connections_total", "counter"),
        ("aster_commands_total", "counter"),
        ("aster_client_errors_total", "counter"),
        ("aster_forward_errors_total", "counter"),
        ("aster_fragments_total", "counter"),
        ("aster_backend_ejections_total", "counter"),
        ("aster_request_duration_seconds", "histogram"),
        ("aster_backend_requests_total", "counter"),
        ("aster_backend_responses_total", "counter"),
        ("aster_backend_errors_total", "counter"),
        ("aster_backend_timeouts_total", "counter"),
        ("aster_backend_connections", "gauge"),
        ("aster_backend_in_flight", "gauge"),
        ("aster_backend_up", "gauge"),
        ("aster_backend_request_duration_seconds", "histogram"),
    ] {
        m.assert_family(name, kind);
    }
    let version = m
        .samples
        .iter()
        .find(|s| s.name == "aster_build_info")
        .and_then(|s| s.labels.get("version").cloned())
        .expect("build_info version label");
    let own = proxy_version();
    assert_eq!(own, format!("aster-proxy {version}"));
    assert!(m.value("aster_uptime_seconds", &[]).expect("uptime") >= 0.0);
    assert!(m.value("aster_client_connections", &cl).expect("clients") >= 1.0);
    assert!(
        m.value("aster_client_connections_total", &cl)
            .expect("accepted")
            >= 1.0
    );
    assert_eq!(m.value("aster_backend_ejections_total", &cl), Some(0.0));
    assert_eq!(m.value("aster_forward_errors_total", &cl), Some(0.0));
    for i in 0..3 {
        let b = [("cluster", "metered"), ("backend", &*format!("redis{i}"))];
        assert_eq!(m.value("aster_backend_up", &b), Some(1.0), "redis{i} up");
        assert!(
            m.value("aster_backend_requests_total", &b)
                .expect("requests")
                >= 1.0
        );
        assert!(m.value("aster_backend_connections", &b).expect("conns") >= 1.0);
        assert_eq!(m.value("aster_backend_in_flight", &b), Some(0.0));
        assert_eq!(m.value("aster_backend_errors_total", &b), Some(0.0));
        assert_eq!(m.value("aster_backend_timeouts_total", &b), Some(0.0));
    }
    let cluster_counts = m.check_histogram("aster_request_duration_seconds");
    assert_eq!(cluster_counts.len(), 1);
    assert!(
        cluster_counts[0].1 >= backend_min as f64,
        "request histogram counted {} of {backend_min} backend requests",
        cluster_counts[0].1
    );
    let backend_counts = m.check_histogram("aster_backend_request_duration_seconds");
    assert_eq!(backend_counts.len(), 3);
    let per_backend: f64 = backend_counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        per_backend,
        m.sum("aster_backend_responses_total", &cl),
        "per-backend histogram counts vs responses"
    );

    // Only GET /metrics is served.
    let (code, _, _) = get(mport, "/other");
    assert_eq!(code, 404);
    let (code, _, _) = get(mport, "/");
    assert_eq!(code, 404);
    let (code, _, _) = http(
        mport,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(code, 404, "POST /metrics");
    // Still serving after the 404s.
    assert!(
        Metrics::fetch(mport)
            .value("aster_commands_total", &cl)
            .is_some()
    );
}

#[test]
fn ejected_backend_shows_in_metrics_and_info() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("health", &refs)
        .set("ping_fail_limit", "1")
        .set("ping_interval", "100");
    let mut servers = servers;
    let mport = free_port();
    // --metrics PORT alone listens on 127.0.0.1.
    let proxy = Proxy::start_at_info(&conf.to_toml(), &["--metrics", &mport.to_string()]);
    Metrics::wait_ready(mport);
    let mut c = proxy.client();
    let text = info(&mut c, Some("backends"));
    let b = info_backends(&text);
    assert_eq!(b.len(), 3, "{text}");
    for (i, line) in b.iter().enumerate() {
        assert_eq!(line["name"], format!("redis{i}"));
        assert_eq!(line["addr"], servers[i].addr());
        assert_eq!(line["state"], "up", "{text}");
    }
    let up = |m: &Metrics, i: usize| {
        m.value(
            "aster_backend_up",
            &[("cluster", "health"), ("backend", &format!("redis{i}"))],
        )
    };
    let m = Metrics::fetch(mport);
    assert!((0..3).all(|i| up(&m, i) == Some(1.0)), "{}", m.text);

    servers[1].kill();
    let m = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let m = Metrics::fetch(mport);
        (up(&m, 1) == Some(0.0)).then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "aster_backend_up of a killed backend is not 0 after 5 s:\n{}",
            Metrics::fetch(mport).text
        )
    });
    assert_eq!(up(&m, 0), Some(1.0));
    assert_eq!(up(&m, 2), Some(1.0));
    let ejections = m
        .value("aster_backend_ejections_total", &[("cluster", "health")])
        .expect("ejections");
    assert!(ejections >= 1.0, "ejections {ejections}");
    let text = info(&mut c, None);
    let b = info_backends(&text);
    assert_eq!(b[1]["state"], "ejected", "{text}");
    assert_eq!(b[0]["state"], "up", "{text}");
    assert_eq!(b[2]["state"], "up", "{text}");
    assert!(info_num(&text, "server_ejects") >= 1, "{text}");

    // The first answered ping brings it back.
    servers[1].restart();
    let back = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        (up(&Metrics::fetch(mport), 1) == Some(1.0)).then_some(())
    });
    assert!(back.is_some(), "aster_backend_up stays 0 after the restart");
    let ok = poll_until(Duration::from_secs(3), POLL, || {
        (info_backends(&info(&mut c, Some("backends")))[1]["state"] == "up").then_some(())
    });
    assert!(ok.is_some(), "INFO: {}", info(&mut c, None));
    let (code, _, _) = get(mport, "/other");
    assert_eq!(code, 404);
}

/// The endpoint served one connection at a time, each with a 2 s read
/// timeout: six idle connections (a port scanner, a stuck scraper) held a
/// scrape for 10 s, past Prometheus's timeout. Each connection is served
/// without waiting on another now.
#[test]
fn a_scrape_is_answered_while_idle_connections_stay_open() {
    let s = RedisServer::start();
    let mport = free_port();
    let maddr = format!("127.0.0.1:{mport}");
    let _proxy = Proxy::start_at_info(
        &ClusterConf::new("idle", &[&s]).to_toml(),
        &["--metrics", &maddr],
    );
    Metrics::wait_ready(mport);
    let idle: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(("127.0.0.1", mport)).expect("connect"))
        .collect();
    // One more that sent half a request and stopped.
    let mut half = TcpStream::connect(("127.0.0.1", mport)).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let (code, _, body) = get(mport, "/metrics");
    let took = t0.elapsed();
    assert_eq!(code, 200);
    assert!(body.contains("aster_build_info"), "{body}");
    assert!(
        took < Duration::from_secs(1),
        "a scrape behind 7 idle connections took {took:?}"
    );
    drop((idle, half));
}

/// Requests the proxy answers with an error of its own are counted by kind:
/// a series per kind in `/metrics` (the kinds never seen at 0), a
/// `refused_<kind>` line in INFO's Stats for each kind seen, nothing in
/// twemproxy's stats JSON, whose shape stays nutcracker's.
#[test]
fn refusals_are_counted_by_kind_in_metrics_and_info() {
    let s = RedisServer::start();
    // No dedicated connection: a blocking command is refused too.
    let conf = ClusterConf::new("refusing", &[&s]).set("max_dedicated_connections", "0");
    let (mport, sport) = (free_port(), free_port());
    let (maddr, sport_arg) = (format!("127.0.0.1:{mport}"), sport.to_string());
    let proxy = Proxy::start_at_info(
        &conf.to_toml(),
        &["--metrics", &maddr, "-s", &sport_arg, "-a", "127.0.0.1"],
    );
    Metrics::wait_ready(mport);
    let mut c = proxy.client();
    let sent: [(&[&str], &str, &str); 5] = [
        (
            &["NOSUCHCMD", "a"],
            "unknown_command",
            "ERR unknown command",
        ),
        (&["nosuchcmd"], "unknown_command", "ERR unknown command"),
        (&["GET"], "wrong_arity", "ERR wrong number of arguments"),
        (&["EXEC"], "without_multi", "ERR EXEC without MULTI"),
        (
            &["BLPOP", "q", "1"],
            "no_dedicated",
            "ERR no dedicated backend",
        ),
    ];
    for (cmd, _, text) in sent {
        let r = c.cmd(cmd);
        assert!(
            r.error().is_some_and(|e| e.starts_with(text)),
            "{cmd:?}: {r:?}"
        );
    }
    assert!(!c.cmd(&["SET", "k", "v"]).is_error(), "a request that runs");
    let want = |kind: &str| sent.iter().filter(|(_, k, _)| *k == kind).count() as u64;

    // INFO publishes the answering worker's counters first: current.
    let text = info(&mut c, Some("stats"));
    for (_, kind, _) in sent {
        assert_eq!(
            info_num(&text, &format!("refused_{kind}")),
            want(kind),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("refused_").count(),
        4,
        "only kinds seen: {text}"
    );
    assert!(info_field(&text, "refused_syntax").is_none(), "{text}");

    let cl = [("cluster", "refusing")];
    let m = poll_until(Duration::from_secs(5), POLL, || {
        let m = Metrics::fetch(mport);
        let kind = [("cluster", "refusing"), ("kind", "no_dedicated")];
        (m.value("aster_refused_total", &kind) == Some(1.0)).then_some(m)
    })
    .unwrap_or_else(|| panic!("refusals not published:\n{}", Metrics::fetch(mport).text));
    m.assert_family("aster_refused_total", "counter");
    let series: Vec<_> = m.matching("aster_refused_total", &cl).collect();
    assert!(series.len() > 30, "a series per kind: {}", m.text);
    for s in series {
        let kind = &s.labels["kind"];
        assert_eq!(s.value, want(kind) as f64, "kind {kind}: {}", m.text);
    }
    assert_eq!(
        m.value("aster_refused_total", &[("kind", "syntax")]),
        Some(0.0)
    );

    assert!(
        poll_until(Duration::from_secs(5), POLL, || accepts(sport)
            .then_some(()))
        .is_some(),
        "the stats port {sport} does not accept"
    );
    let doc = stats_doc(sport);
    assert_shape(&doc, &[("refusing", vec!["redis0".into()])]);
    assert!(!doc.to_string().contains("refused"), "{doc:#}");
}
