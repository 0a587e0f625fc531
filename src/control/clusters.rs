//! The set of running clusters: start, live reload, stop.
//!
//! A reload keeps every cluster whose listener (a unix socket's mode aside),
//! thread count and mode are unchanged (its new options and servers arrive
//! with one route-table swap, so no client is dropped), stops the clusters
//! that were removed, restarts the changed ones and starts the new ones. A
//! changed cluster is never lost to a reload: one that moves to another
//! address starts there before the old one stops, and stays as it was if it
//! cannot; one that must free its address first and then fails to start is
//! started again with its previous configuration.

use std::sync::Arc;

use log::{error, info, warn};

use crate::config::{ClusterConfig, Config};
use crate::control::proxy::{Proxy, StartError};
use crate::control::supervisor::{Mailbox, Msg, Watched};
use crate::observe::stats::Registry;
use crate::routing::refresh::Kick;

pub struct Clusters {
    proxies: Vec<Proxy>,
    mailbox: Mailbox,
    registry: Registry,
    next_id: u64,
}

/// What one reload did to the clusters, for its summary line.
#[derive(Default)]
struct Tally {
    updated: usize,
    started: usize,
    stopped: usize,
    refused: usize,
}

impl Tally {
    fn restarted(&mut self) {
        self.started += 1;
        self.stopped += 1;
    }
}

impl Clusters {
    pub fn new(mailbox: Mailbox, registry: Registry) -> Clusters {
        Clusters {
            proxies: Vec::new(),
            mailbox,
            registry,
            next_id: 1,
        }
    }

    /// Starts every cluster of `config`; the first failure stops them all.
    pub fn start_all(&mut self, config: &Config) -> Result<(), StartError> {
        for c in &config.clusters {
            if let Err(e) = self.start(c.clone()) {
                self.stop_all();
                return Err(e);
            }
        }
        Ok(())
    }

    fn start(&mut self, cfg: ClusterConfig) -> Result<(), StartError> {
        let proxy = self.launch(cfg)?;
        self.proxies.push(proxy);
        self.publish_registry();
        Ok(())
    }

    /// Starts a cluster and has the supervisor watch it; the caller places it.
    fn launch(&mut self, cfg: ClusterConfig) -> Result<Proxy, StartError> {
        let id = self.next_id;
        self.next_id += 1;
        let summary = summary(&cfg);
        let proxy = Proxy::start(cfg, Kick::new(Arc::new(self.mailbox.clone()), id))?;
        info!("{summary}");
        self.watch(&proxy);
        Ok(proxy)
    }

    /// Stops a cluster taken out of the set and waits for it to drain.
    fn retire(&self, p: Proxy, why: &str) {
        info!("cluster {}: stopping ({why})", p.cfg.name);
        self.mailbox.send(Msg::Unwatch(p.id));
        p.stop();
        p.join();
    }

    fn watch(&self, p: &Proxy) {
        let w = Watched {
            cfg: Arc::clone(&p.cfg),
            route: Arc::clone(&p.route),
            wakers: p.wakers.clone(),
            kicked: Arc::clone(&p.kicked),
            stats: Arc::clone(&p.stats),
        };
        self.mailbox.send(Msg::Watch(p.id, w));
    }

    fn publish_registry(&self) {
        let list = self.proxies.iter().map(|p| Arc::clone(&p.stats)).collect();
        *self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.proxies.iter().position(|p| p.cfg.name == name)
    }

    /// Applies a new, already validated configuration.
    pub fn reload(&mut self, config: &Config) {
        let mut tally = Tally::default();
        // Removed clusters stop first: their addresses may be what a changed
        // or added cluster listens on now.
        let mut i = 0;
        while i < self.proxies.len() {
            if config
                .clusters
                .iter()
                .any(|c| c.name == self.proxies[i].cfg.name)
            {
                i += 1;
                continue;
            }
            let p = self.proxies.remove(i);
            self.retire(p, "removed");
            tally.stopped += 1;
        }
        // Names running before this reload: a cluster that a failed restart
        // left stopped is not started again as a new one.
        let known: Vec<String> = self.proxies.iter().map(|p| p.cfg.name.clone()).collect();
        let mut moves = Vec::new();
        for c in &config.clusters {
            let Some(i) = self.position(&c.name) else {
                continue;
            };
            if self.proxies[i].can_update(c) {
                self.proxies[i].update(c.clone());
                self.watch(&self.proxies[i]);
                tally.updated += 1;
            } else if self.proxies[i].holds_address_of(c) {
                self.restart_in_place(i, c, &mut tally);
            } else {
                moves.push(c);
            }
        }
        self.move_all(moves, &mut tally);
        for c in &config.clusters {
            if known.contains(&c.name) {
                continue;
            }
            match self.start(c.clone()) {
                Ok(()) => tally.started += 1,
                Err(e) => {
                    error!(
                        "reload refused for cluster {}, it is not started: {e}",
                        c.name
                    );
                    tally.refused += 1;
                }
            }
        }
        self.publish_registry();
        info!(
            "reload of {}: {} cluster(s) updated in place, {} started, {} stopped, {} refused",
            config.path.display(),
            tally.updated,
            tally.started,
            tally.stopped,
            tally.refused
        );
    }
    /// A changed cluster that listens where the running one does: the old
    /// one stops first to free the address. If the new configuration cannot
    /// start, the previous one is started again.
    fn restart_in_place(&mut self, i: usize, cfg: &ClusterConfig, tally: &mut Tally) {
        let old = self.proxies.remove(i);
        let previous = ClusterConfig::clone(&old.cfg);
        self.retire(
            old,
            "restarting: listener, threads, mode or backlog changed",
        );
        let err = match self.launch(cfg.clone()) {
            Ok(p) => {
                self.proxies.insert(i, p);
                tally.restarted();
                return;
            }
            Err(e) => e,
        };
        error!(
            "reload refused for cluster {}, its previous configuration starts again: {err}",
            cfg.name
        );
        match self.launch(previous) {
            Ok(p) => {
                self.proxies.insert(i, p);
                tally.refused += 1;
            }
            Err(e) => {
                error!(
                    "cluster {}: the previous configuration cannot start again either, \
                     the cluster is stopped until a reload starts it: {e}",
                    cfg.name
                );
                tally.stopped += 1;
            }
        }
    }

    /// Changed clusters that listen somewhere else now: each starts on its
    /// new address before the old one stops, and keeps running as it was if
    /// it cannot. A cluster moving onto the address another one leaves in
    /// this reload is tried again once that one has moved.
    fn move_all(&mut self, mut moves: Vec<&ClusterConfig>, tally: &mut Tally) {
        loop {
            let tried = moves.len();
            let mut failed = Vec::new();
            for c in moves {
                let Some(i) = self.position(&c.name) else {
                    continue;
                };
                match self.move_to(i, c) {
                    Ok(()) => tally.restarted(),
                    Err(e) => failed.push((c, e)),
                }
            }
            if failed.is_empty() || failed.len() == tried {
                for (c, e) in failed {
                    error!(
                        "reload refused for cluster {}, its running configuration stays: {e}",
                        c.name
                    );
                    tally.refused += 1;
                }
                return;
            }
            moves = failed.into_iter().map(|(c, _)| c).collect();
        }
    }

    /// Starts `cfg` on its new address, then stops the cluster at `i`.
    fn move_to(&mut self, i: usize, cfg: &ClusterConfig) -> Result<(), StartError> {
        let new = self.launch(cfg.clone())?;
        let old = std::mem::replace(&mut self.proxies[i], new);
        self.retire(old, &format!("moved to {}", cfg.listen_addr));
        Ok(())
    }

    /// Stops every cluster and waits for their workers to drain.
    pub fn stop_all(&mut self) {
        for p in &self.proxies {
            p.stop();
        }
        for p in self.proxies.drain(..) {
            p.join();
        }
    }
}

fn summary(c: &ClusterConfig) -> String {
    let servers: Vec<&str> = c.servers.iter().map(|s| s.name.as_str()).collect();
    format!(
        "cluster {}: listening on {} ({:?}, {} thread(s), {} {}), servers: {}",
        c.name,
        c.listen_addr,
        c.cache_type,
        c.thread,
        c.hash.name(),
        c.distribution.name(),
        servers.join(", ")
    )
}

/// What a reload cannot change without a restart.
pub fn warn_restart_only(old: &Config, new: &Config) {
    if old.stats != new.stats {
        warn!("reload: the stats port settings changed; they take effect at the next restart");
    }
}
