//! Health pings for a sharding cluster: every `ping_interval` each server
//! gets a PING with its own deadline (the interval, at most 1 s), all at
//! once, so a hung server delays no other's verdict. `ping_fail_limit`
//! failures in a row eject a server; its first answer brings it back.

use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Registry, Token};

use super::probe::{Answer, Ask, Probe};
use crate::config::{ClusterConfig, ServerSpec};
use crate::observe::stats::ClusterStats;

/// The longest a ping may take.
const MAX_PING_TIMEOUT: Duration = Duration::from_secs(1);

struct Pinged {
    /// As configured: a reload that leaves it equal keeps the health below.
    spec: ServerSpec,
    probe: Probe,
    fails: u32,
    live: bool,
}

pub(super) struct Pinger {
    servers: Vec<Pinged>,
    next_round: Instant,
}

/// What the owner must do after the pinger ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Same,
    /// A server was ejected or readmitted: publish a new table.
    Changed,
}

impl Pinger {
    /// The pinger of `cfg`'s servers. After a reload (`old`), a server the
    /// reload left unchanged (same address, name and weight) keeps its
    /// health, connection and questions in flight; changed and added
    /// servers start live. With pings off every server is live.
    pub fn new(
        cfg: &ClusterConfig,
        old: Option<Pinger>,
        registry: &Registry,
        now: Instant,
    ) -> Pinger {
        let (mut kept, next_round) = match old {
            Some(o) => (o.servers, o.next_round.min(now + cfg.ping_interval)),
            None => (Vec::new(), now),
        };
        let pinging = cfg.ping_fail_limit > 0;
        let servers = cfg
            .servers
            .iter()
            .map(|spec| {
                let found = kept.iter().position(|p| p.spec == *spec);
                match found.map(|i| kept.swap_remove(i)) {
                    Some(p) if pinging => p,
                    Some(mut p) => {
                        p.probe.close(registry);
                        fresh(spec)
                    }
                    None => fresh(spec),
                }
            })
            .collect();
        for mut gone in kept {
            gone.probe.close(registry);
        }
        Pinger {
            servers,
            next_round,
        }
    }

    /// Which servers take keys, in configuration order.
    pub fn live(&self) -> Vec<bool> {
        self.servers.iter().map(|p| p.live).collect()
    }

    /// When there is next something to do: a round or a deadline. None
    /// with pings off, so an idle supervisor does not wake for them.
    pub fn due(&self, cfg: &ClusterConfig) -> Option<Instant> {
        if cfg.ping_fail_limit == 0 {
            return None;
        }
        let deadlines = self.servers.iter().filter_map(|p| p.probe.deadline());
        deadlines.chain([self.next_round]).min()
    }

    /// An event on one of its connections; None when the token is not its.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        cfg: &ClusterConfig,
        stats: &ClusterStats,
    ) -> Option<Verdict> {
        let i = self.servers.iter().position(|p| p.probe.owns(token))?;
        let mut answers = Vec::new();
        self.servers[i].probe.on_event(registry, now, &mut answers);
        Some(self.judge(i, answers, cfg, stats))
    }

    /// Fails pings past their deadline, then starts the round if due.
    pub fn tick(
        &mut self,
        registry: &Registry,
        now: Instant,
        cfg: &ClusterConfig,
        stats: &ClusterStats,
    ) -> Verdict {
        if cfg.ping_fail_limit == 0 {
            return Verdict::Same;
        }
        let mut verdict = Verdict::Same;
        let mut answers = Vec::new();
        for i in 0..self.servers.len() {
            self.servers[i].probe.expire(registry, now, &mut answers);
            if self.judge(i, std::mem::take(&mut answers), cfg, stats) == Verdict::Changed {
                verdict = Verdict::Changed;
            }
        }
        if now < self.next_round {
            return verdict;
        }
        self.next_round = now + cfg.ping_interval;
        let timeout = cfg.ping_interval.min(MAX_PING_TIMEOUT);
        for i in 0..self.servers.len() {
            // A ping still unanswered (only with an interval over 1 s
            // could one be) is not doubled.
            if self.servers[i].probe.is_asked(Ask::Ping) {
                continue;
            }
            self.servers[i]
                .probe
                .ask(registry, Ask::Ping, now, timeout, &mut answers);
            if self.judge(i, std::mem::take(&mut answers), cfg, stats) == Verdict::Changed {
                verdict = Verdict::Changed;
            }
        }
        verdict
    }

    pub fn close(&mut self, registry: &Registry) {
        for p in &mut self.servers {
            p.probe.close(registry);
        }
    }

    /// Counts server `i`'s answers: ejects it, or brings it back.
    fn judge(
        &mut self,
        i: usize,
        answers: Vec<Answer>,
        cfg: &ClusterConfig,
        stats: &ClusterStats,
    ) -> Verdict {
        let mut verdict = Verdict::Same;
        let p = &mut self.servers[i];
        for a in answers {
            match a.pong() {
                Ok(()) => {
                    p.fails = 0;
                    if !p.live {
                        p.live = true;
                        verdict = Verdict::Changed;
                        stats.readmitted(i);
                        info!(
                            "cluster {}: backend {} ({}) answers again: back in the ring",
                            cfg.name, p.spec.name, p.spec.addr
                        );
                    }
                }
                Err(e) => {
                    p.fails = p.fails.saturating_add(1);
                    if p.live && cfg.ping_fail_limit > 0 && p.fails >= cfg.ping_fail_limit {
                        p.live = false;
                        verdict = Verdict::Changed;
                        stats.ejected(i);
                        warn!(
                            "cluster {}: backend {} ({}) failed {} ping(s) in a row ({e}): ejected",
                            cfg.name, p.spec.name, p.spec.addr, p.fails
                        );
                    }
                }
            }
        }
        verdict
    }
}

fn fresh(spec: &ServerSpec) -> Pinged {
    Pinged {
        spec: spec.clone(),
        probe: Probe::new(spec.addr.clone()),
        fails: 0,
        live: true,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mio::Poll;

    use super::*;
    use crate::config::Config;

    fn cfg(servers: &[&str], limit: u32) -> ClusterConfig {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        let text = format!(
            "[[clusters]]\nname = \"t\"\nlisten_addr = \"127.0.0.1:1\"\n\
             servers = [{}]\nping_fail_limit = {limit}\nping_interval = 100\n",
            list.join(", ")
        );
        let mut c = Config::parse(Path::new("t.toml"), &text).expect("valid config");
        c.clusters.remove(0)
    }

    fn fail(p: &mut Pinger, i: usize, cfg: &ClusterConfig, stats: &ClusterStats) -> Verdict {
        let a = Answer {
            ask: Ask::Ping,
            reply: Err("refused".into()),
        };
        p.judge(i, vec![a], cfg, stats)
    }

    #[test]
    fn a_reload_keeps_the_health_of_unchanged_servers_only() {
        let poll = Poll::new().expect("poll");
        let reg = poll.registry();
        let now = Instant::now();
        let servers = [
            "127.0.0.1:7001:1 a",
            "127.0.0.1:7002:1 b",
            "127.0.0.1:7003:1 c",
        ];
        let first = cfg(&servers, 2);
        let stats = ClusterStats::new("t", vec!["a".into(), "b".into(), "c".into()], 1, 1);
        let mut p = Pinger::new(&first, None, reg, now);
        assert_eq!(fail(&mut p, 2, &first, &stats), Verdict::Same);
        assert_eq!(fail(&mut p, 2, &first, &stats), Verdict::Changed);
        assert_eq!(fail(&mut p, 1, &first, &stats), Verdict::Same);
        assert_eq!(p.live(), [true, true, false]);

        // The same file: c stays out, b's failure still counts.
        let mut p = Pinger::new(&first, Some(p), reg, now);
        assert_eq!(p.live(), [true, true, false]);
        assert_eq!(fail(&mut p, 1, &first, &stats), Verdict::Changed);
        assert_eq!(p.live(), [true, false, false]);

        // c weighs more, b moved: both start live; a is untouched.
        let changed = cfg(
            &[
                "127.0.0.1:7001:1 a",
                "127.0.0.1:7009:1 b",
                "127.0.0.1:7003:2 c",
            ],
            2,
        );
        let p = Pinger::new(&changed, Some(p), reg, now);
        assert_eq!(p.live(), [true, true, true]);

        // With pings turned off nothing can be readmitted: all live.
        let mut p = Pinger::new(&first, Some(p), reg, now);
        fail(&mut p, 0, &first, &stats);
        fail(&mut p, 0, &first, &stats);
        assert_eq!(p.live(), [false, true, true]);
        let off = cfg(&servers, 0);
        let p = Pinger::new(&off, Some(p), reg, now);
        assert_eq!(p.live(), [true, true, true]);
        assert_eq!(p.due(&off), None, "no wake-up with pings off");
    }
}
