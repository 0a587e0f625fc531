//! The redis-mode scenario.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::PACE;
use super::run::Run;
use super::shared::StopOnDrop;
use crate::harness::{ClusterConf, Proxy, RedisServer};

/// Redis mode, 3 servers, `read_timeout = 500`, three times over: a server
/// killed and restarted (its data lost), a reload that moves keys (a weight
/// change), another while a server is stopped, an unchanged reload, a server
/// stopped for less than `read_timeout`, then past it.
#[test]
fn ordering_under_faults_redis_mode() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let conf = ClusterConf::new("chaos", &refs)
        .set("read_timeout", "500")
        .set("write_timeout", "500");
    let proxy = Proxy::start_at_info(&conf.to_toml(), &[]);
    let mut run = Run::start(proxy.port(), false, true);
    let shared = Arc::clone(&run.shared);
    let _stop = StopOnDrop(Arc::clone(&shared));
    let result = (|| -> Result<(), String> {
        shared.await_rounds(3)?;
        for cycle in 0..3 {
            let victim = cycle % servers.len();
            shared.phase(&format!("kill and restart server {victim}"), false)?;
            let base = shared.errors();
            shared.begin_loss();
            servers[victim].kill();
            let felt = shared.await_errors(&base, 2);
            servers[victim].restart();
            shared.end_loss();
            felt?;
            run.recovered(Instant::now(), "a restart")?;

            let heavy = (cycle + 1) % servers.len();
            shared.phase(&format!("reload: server {heavy} weighs 3"), true)?;
            let weighted = ClusterConf {
                servers: servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        format!("{}:{} redis{i}", s.addr(), if i == heavy { 3 } else { 1 })
                    })
                    .collect(),
                ..conf.clone()
            };
            shared.begin_loss();
            proxy.reload(&weighted.to_toml(), "runs the reloaded configuration", 2);
            shared.end_loss();
            run.recovered(Instant::now(), "a reload moving keys")?;

            // Keys move while requests wait on a stopped server.
            let stalled = (cycle + 2) % servers.len();
            shared.phase(&format!("reload while server {stalled} is stopped"), false)?;
            servers[stalled].pause();
            thread::sleep(2 * PACE);
            shared.begin_loss();
            proxy.reload(&conf.to_toml(), "runs the reloaded configuration", 2);
            shared.end_loss();
            thread::sleep(2 * PACE);
            servers[stalled].resume();
            run.recovered(Instant::now(), "a reload while a server was stopped")?;

            shared.phase("unchanged reload", true)?;
            proxy.reload(&conf.to_toml(), "reload of", 1);
            run.recovered(Instant::now(), "an unchanged reload")?;

            shared.phase(&format!("stop server {stalled} for 150 ms"), false)?;
            servers[stalled].pause();
            thread::sleep(Duration::from_millis(150));
            servers[stalled].resume();
            run.recovered(Instant::now(), "a short stop")?;

            // Long enough for requests sent at once to time out, short
            // enough that a pipeline whose requests time out one after the
            // other (each waits for a blocking command or an EXEC before it)
            // is answered well within the clients' 10 s read timeout.
            shared.phase(&format!("stop server {stalled} past read_timeout"), false)?;
            let base = shared.errors();
            servers[stalled].pause();
            thread::sleep(Duration::from_millis(900));
            servers[stalled].resume();
            shared.await_errors(&base, 2)?;
            run.recovered(Instant::now(), "a stop past read_timeout")?;
        }
        shared.phase("after the faults", true)?;
        shared.await_rounds(5)
    })();
    run.finish(result);
}
