//! The set of running clusters: start, live reload, stop.
//!
//! A reload keeps every cluster whose listener, thread count and mode are
//! unchanged (its new options and servers arrive with one route-table swap,
//! so no client is dropped), stops the clusters that were removed or must
//! rebind, and starts the new ones.

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
        let id = self.next_id;
        self.next_id += 1;
        let summary = summary(&cfg);
        let proxy = Proxy::start(cfg, Kick::new(Arc::new(self.mailbox.clone()), id))?;
        info!("{summary}");
        self.watch(&proxy);
        self.proxies.push(proxy);
        self.publish_registry();
        Ok(())
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

    /// Applies a new, already validated configuration.
    pub fn reload(&mut self, config: &Config) {
        let mut kept = 0;
        let mut started = 0;
        let mut stopped = 0;
        // Clusters gone from the file, or that must rebind, stop first so
        // their ports are free for what replaces them.
        let mut i = 0;
        while i < self.proxies.len() {
            let p = &self.proxies[i];
            let keep = config
                .clusters
                .iter()
                .any(|c| c.name == p.cfg.name && p.can_update(c));
            if keep {
                i += 1;
                continue;
            }
            let p = self.proxies.remove(i);
            info!(
                "cluster {}: stopping (removed or changed listener/threads/mode)",
                p.cfg.name
            );
            self.mailbox.send(Msg::Unwatch(p.id));
            p.stop();
            p.join();
            stopped += 1;
        }
        for c in &config.clusters {
            match self.proxies.iter().position(|p| p.cfg.name == c.name) {
                Some(i) => {
                    self.proxies[i].update(c.clone());
                    self.watch(&self.proxies[i]);
                    kept += 1;
                }
                None => match self.start(c.clone()) {
                    Ok(()) => started += 1,
                    Err(e) => error!("reload: {e}"),
                },
            }
        }
        self.publish_registry();
        info!(
            "reload of {}: {kept} cluster(s) updated in place, {started} started, {stopped} stopped",
            config.path.display()
        );
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
