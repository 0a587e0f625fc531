//! Reads from replicas (`read_from_slave`).

use super::*;

#[test]
fn read_from_slave_sends_reads_to_replicas_and_writes_to_masters() {
    let (rc, proxy) = start(&[("read_from_slave", "true")]);
    let keys: Vec<String> = (0..60).map(|i| format!("rfs:{i}")).collect();
    let mut c = proxy.client();
    rc.reset_stats();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    assert!(c.pipeline(&sets).iter().all(|r| *r == Reply::ok()));
    rc.wait_replicated();

    let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
    for mut client in [c, proxy.client()] {
        for (k, r) in keys.iter().zip(client.pipeline(&gets)) {
            assert_eq!(r, Reply::bulk(k), "GET {k} from a replica");
        }
    }
    let masters = rc.masters();
    let replicas = rc.replicas();
    let total = |nodes: &[usize], cmd: &str| -> (u64, u64) {
        nodes.iter().fold((0, 0), |(c, r), &n| {
            let s = rc.cmdstat(n, cmd);
            (c + s.calls, r + s.rejected_calls)
        })
    };
    assert_eq!(
        total(&masters, "get"),
        (0, 0),
        "no GET reached a master (calls, rejected)"
    );
    assert_eq!(
        total(&replicas, "get"),
        (2 * keys.len() as u64, 0),
        "every GET was served by a replica (calls, rejected)"
    );
    for &r in &replicas {
        assert!(
            rc.cmdstat(r, "get").calls > 0,
            "replica {} served none of the GETs",
            rc.port(r)
        );
    }
    assert_eq!(
        total(&masters, "set"),
        (keys.len() as u64, 0),
        "every SET was served by a master"
    );
    assert_eq!(
        total(&replicas, "set").1,
        0,
        "no SET was sent to a replica (it would answer MOVED)"
    );
}

/// MGET and EXISTS are read-only too: with `read_from_slave` their per-slot
/// parts should be read from replicas like GET.
#[test]
fn read_from_slave_sends_split_reads_to_replicas() {
    let (rc, proxy) = start(&[("read_from_slave", "true")]);
    let keys: Vec<String> = rc.key_per_master("split-rfs:").into_values().collect();
    let mut c = proxy.client();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, k]), Reply::ok());
    }
    rc.wait_replicated();
    rc.reset_stats();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert_eq!(
        c.cmd(&mget),
        Reply::Array(keys.iter().map(|k| Reply::bulk(k)).collect())
    );
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    assert_eq!(c.cmd(&exists), Reply::Int(3));
    for m in rc.masters() {
        let st = rc.commandstats(m);
        assert!(
            !st.contains_key("mget") && !st.contains_key("exists"),
            "read-only MGET/EXISTS parts went to master {}: {st:?}",
            rc.port(m)
        );
    }
    for r in rc.replicas() {
        assert_eq!(
            rc.cmdstat(r, "mget").calls,
            1,
            "MGET part on replica {}",
            rc.port(r)
        );
        assert_eq!(
            rc.cmdstat(r, "exists").calls,
            1,
            "EXISTS part on replica {}",
            rc.port(r)
        );
    }
}

#[test]
fn reads_on_a_dead_replica_are_retried_on_its_master() {
    let (mut rc, proxy) = start(&[("read_from_slave", "true"), ("fetch", "1")]);
    let keys: Vec<String> = (0..30).map(|i| format!("fallback:{i}")).collect();
    let mut c = proxy.client();
    let sets: Vec<Vec<String>> = keys.iter().map(|k| args(&["SET", k, k])).collect();
    assert!(c.pipeline(&sets).iter().all(|r| *r == Reply::ok()));
    rc.wait_replicated();
    let gets: Vec<Vec<String>> = keys.iter().map(|k| args(&["GET", k])).collect();
    assert!(
        c.pipeline(&gets)
            .iter()
            .zip(&keys)
            .all(|(r, k)| *r == Reply::bulk(k))
    );

    let dead = rc.replicas()[0];
    let Role::Replica(master_port) = rc.role(dead) else {
        unreachable!()
    };
    let master = rc.node_of_port(master_port);
    rc.kill(dead);
    rc.reset_stats();
    let killed_at = Instant::now();
    // Reads sent to the dead replica, in flight or sent while the proxy
    // retries it, are retried on its master: no read fails. Watch for a
    // window longer than the longest backoff (1 s).
    let quiet = Duration::from_millis(1500);
    let mut last_error: Option<(Duration, Reply)> = None;
    let mut error_rounds = Vec::new();
    let mut quiet_since = Instant::now();
    while killed_at.elapsed() < Duration::from_secs(12) && quiet_since.elapsed() < quiet {
        let replies = c.pipeline(&gets);
        let errors: Vec<&Reply> = replies.iter().filter(|r| r.is_error()).collect();
        if let Some(&e) = errors.first() {
            last_error = Some((killed_at.elapsed(), e.clone()));
            error_rounds.push((killed_at.elapsed(), errors.len()));
            quiet_since = Instant::now();
        } else {
            for (r, k) in replies.iter().zip(&keys) {
                assert_eq!(*r, Reply::bulk(k), "GET {k} after a replica died");
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        error_rounds.is_empty(),
        "reads failed after a replica died (time, count): {error_rounds:?}; last {last_error:?}"
    );
    assert!(quiet_since.elapsed() >= quiet);
    assert!(
        rc.cmdstat(master, "get").calls > 0,
        "the dead replica's master serves its reads"
    );
}
