//! Load: redis-benchmark, blocking commands that time out.

use super::*;

fn benchmark(port: u16, extra: &[&str]) {
    let p = port.to_string();
    let mut child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &p])
        .args(["-t", "set,get,mset", "-n", "20000", "-c", "20", "-q"])
        .args(["-r", "100000"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-benchmark");
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-benchmark {extra:?} did not finish within 60 s");
    }
    let out = child.wait_with_output().expect("benchmark output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("redis-benchmark {extra:?}:\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "redis-benchmark {extra:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for name in ["SET", "GET", "MSET (10 keys)"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{name}: ")) && l.contains("requests per second")),
            "no result for {name} in:\n{stdout}\n{stderr}"
        );
    }
    let all = format!("{stdout}\n{stderr}").to_lowercase();
    // redis-benchmark warns that it cannot read CONFIG (the proxy refuses
    // CONFIG); any other error is a failure.
    let errors: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("error") || l.contains("err "))
        .collect();
    assert!(
        errors.is_empty(),
        "redis-benchmark {extra:?} saw errors: {errors:?}"
    );
}

#[test]
fn redis_benchmark_through_the_proxy_has_no_errors() {
    let (rc, proxy) = start(&[]);
    benchmark(proxy.port(), &[]);
    benchmark(proxy.port(), &["-P", "16"]);
    for m in rc.masters() {
        assert!(
            rc.dbsize(m) > 1000,
            "master {} got few keys: {}",
            rc.port(m),
            rc.dbsize(m)
        );
    }
    assert_eq!(proxy.client().cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn blocking_commands_time_out_and_the_connection_stays_usable() {
    let (_rc, proxy) = start(&[]);
    let mut c = proxy.client();
    // Blocking commands run on a connection of the client's own
    // (integration/dedicated.rs); here they time out on empty lists.
    assert_eq!(c.cmd(&["BLPOP", "list:1", "0.2"]), Reply::Nil);
    assert_eq!(
        c.cmd(&["BRPOPLPUSH", "{list}1", "{list}2", "0.2"]),
        Reply::Nil
    );
    // Pub/sub is served (integration/pubsub.rs); PUBSUB introspection and
    // MONITOR are refused, and the connection stays usable.
    for cmd in [&["PUBSUB", "HELP"][..], &["MONITOR"]] {
        let r = c.cmd(cmd);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("{cmd:?} should be refused: {r:?}"));
        assert!(
            e.to_uppercase().contains(cmd[0]),
            "the error should name {}: {e:?}",
            cmd[0]
        );
        assert_eq!(c.cmd(&["SET", "after:block", cmd[0]]), Reply::ok());
        assert_eq!(c.cmd(&["GET", "after:block"]), Reply::bulk(cmd[0]));
    }
    // A BLPOP in a pipeline: what follows waits for it, then runs.
    let started = Instant::now();
    let replies = c.pipeline(&[
        args(&["BLPOP", "list:empty", "0.2"]),
        args(&["SET", "after:pipe", "1"]),
        args(&["MONITOR"]),
        args(&["GET", "after:pipe"]),
    ]);
    assert!(
        replies[0] == Reply::Nil && replies[2].is_error(),
        "{replies:?}"
    );
    assert_eq!(replies[1], Reply::ok());
    assert_eq!(replies[3], Reply::bulk("1"));
    assert!(started.elapsed() < Duration::from_secs(2));
}
