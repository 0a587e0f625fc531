//! redis-benchmark through the proxy.

use std::process::Command;

use crate::harness::{Reply, Shards};

fn run_benchmark(port: u16, extra: &[&str]) -> String {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(extra)
        .output()
        .expect("run redis-benchmark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "redis-benchmark {extra:?} failed ({}):\n{text}",
        out.status
    );
    for line in text.split(['\n', '\r']) {
        let lower = line.to_lowercase();
        assert!(
            !line.contains("ERR") && !lower.contains("error"),
            "redis-benchmark {extra:?} reported: {line:?}\n{text}"
        );
    }
    text
}

#[test]
fn redis_benchmark_runs_clean_through_proxy() {
    let s = Shards::start(3);
    let text = run_benchmark(
        s.proxy.port(),
        &[
            "-t",
            "set,get,mset,incr,lpush",
            "-n",
            "20000",
            "-c",
            "20",
            "-P",
            "16",
        ],
    );
    for test in ["SET", "GET", "MSET", "INCR", "LPUSH"] {
        assert!(text.contains(test), "no {test} result in:\n{text}");
    }
    run_benchmark(s.proxy.port(), &["-t", "set,get", "-n", "5000", "-c", "50"]);
    let mut c = s.client();
    match c.cmd(&["GET", "key:__rand_int__"]) {
        Reply::Bulk(v) => assert_eq!(v.len(), 3, "benchmark values are 3 bytes"),
        other => panic!("GET of a benchmark key: {other:?}"),
    }
    assert_eq!(c.cmd(&["INCR", "counter:__rand_int__"]), Reply::Int(20001));
}
