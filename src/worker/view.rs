//! A worker's view of its cluster: the configuration and route table it
//! runs with, adopted from the shared pointer the supervisor and reloads
//! publish, plus the handle to ask for a topology refresh. Read by every
//! request; changed only between events, when a new table is loaded.

use std::cell::Cell;
use std::sync::Arc;

use log::info;

use crate::config::ClusterConfig;
use crate::protocol::resp::Limits;
use crate::protocol::wire::Wire;
use crate::rng::Rng;
use crate::routing::refresh::Kick;
use crate::routing::table::{RouteHandle, RouteTable};

pub(crate) struct View {
    index: usize,
    cfg: Arc<ClusterConfig>,
    handle: RouteHandle,
    route: Arc<RouteTable>,
    /// Bumped each time a new table is adopted: a client's requests routed
    /// under one table must be answered before any is routed under another.
    generation: u64,
    limits: Limits,
    /// Asks the supervisor for a topology refresh (cluster mode).
    kick: Option<Kick>,
    /// For the random distribution and replica choice.
    rng: Cell<Rng>,
}

/// What loading the shared pointer found.
pub(crate) enum Refresh {
    Same,
    /// A new table with the same configuration.
    Table,
    /// A new table from a reloaded configuration: the previous one.
    Config(Arc<ClusterConfig>),
}

impl View {
    pub(crate) fn new(
        index: usize,
        cfg: Arc<ClusterConfig>,
        handle: RouteHandle,
        kick: Option<Kick>,
    ) -> View {
        let route = handle.load_full();
        View {
            index,
            limits: cfg.limits,
            cfg,
            handle,
            route,
            generation: 0,
            kick,
            rng: Cell::new(Rng::new(0x2545_f491_4f6c_dd1d ^ (index as u64 + 1))),
        }
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn cfg(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The protocol the cluster speaks.
    pub(crate) fn wire(&self) -> Wire {
        self.cfg.cache_type.wire()
    }

    pub(crate) fn route(&self) -> &RouteTable {
        &self.route
    }

    /// Which table the worker routes with (see `Client::may_route`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Loads the shared table if it changed; a reloaded configuration
    /// comes with it.
    pub(crate) fn refresh(&mut self) -> Refresh {
        let cur = self.handle.load();
        if Arc::ptr_eq(&cur, &self.route) {
            return Refresh::Same;
        }
        self.route = Arc::clone(&cur);
        self.generation += 1;
        drop(cur);
        if Arc::ptr_eq(&self.cfg, &self.route.cfg) {
            return Refresh::Table;
        }
        let old = std::mem::replace(&mut self.cfg, Arc::clone(&self.route.cfg));
        self.limits = self.cfg.limits;
        info!(
            "cluster {}: worker {} runs the reloaded configuration",
            self.cfg.name, self.index
        );
        Refresh::Config(old)
    }

    pub(crate) fn kick_refresh(&self) {
        if let Some(k) = &self.kick {
            k.send();
        }
    }

    /// Placement for the random distribution, not security: the high half
    /// of the next output (the better half of xorshift64*'s bits).
    pub(crate) fn random(&self) -> u32 {
        let mut rng = self.rng.get();
        let x = rng.next_u64();
        self.rng.set(rng);
        (x >> 32) as u32
    }

    pub(crate) fn needs_auth(&self) -> bool {
        self.cfg.password.is_some() || !self.cfg.users.is_empty()
    }
}
