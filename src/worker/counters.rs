//! A worker's counters: plain integers it owns (no atomics per request),
//! published as a snapshot into its slot of the cluster's `ClusterStats` at
//! most every 200 ms, and soon after any activity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::observe::stats::{ClusterStats, PoolStats, ServerStats, WorkerSnapshot};
use crate::protocol::refusal::Refusal;
use crate::protocol::wire::Wire;

/// How often a worker publishes its counters for the stats port.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Counters {
    pub(crate) pool: PoolStats,
    shared: Arc<ClusterStats>,
    next_publish: Instant,
    /// Something was counted since the last publish.
    unpublished: bool,
}

impl Counters {
    pub(crate) fn new(shared: Arc<ClusterStats>) -> Counters {
        Counters {
            pool: PoolStats::default(),
            shared,
            next_publish: Instant::now(),
            unpublished: true,
        }
    }

    /// A refusal's reply, counted by its kind (`PoolStats::refused`): every
    /// refusal the worker gives is rendered here.
    pub(crate) fn refuse(&mut self, wire: Wire, r: &Refusal) -> Bytes {
        self.pool.refused[r.kind()] += 1;
        wire.refusal(r)
    }

    /// The cluster's shared counters (clients, slow log, other workers').
    pub(crate) fn shared(&self) -> &ClusterStats {
        &self.shared
    }

    /// Counters changed: publish soon even if nothing else happens.
    pub(crate) fn touch(&mut self) {
        self.unpublished = true;
    }

    /// When a publish is due, if one is.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.unpublished.then_some(self.next_publish)
    }

    /// Publishes if due: `servers` builds the per-server part and the
    /// dedicated-connection gauges (leased, pooled, blocked clients).
    pub(crate) fn publish_if_due(
        &mut self,
        now: Instant,
        worker: usize,
        servers: impl FnOnce() -> (Vec<(String, ServerStats)>, [u64; 3]),
    ) {
        if !self.unpublished || now < self.next_publish {
            return;
        }
        self.publish_now(now, worker, servers);
    }

    /// Publishes at once (INFO asked: the answering worker's own counters
    /// are then current; the other workers' at most 200 ms old).
    pub(crate) fn publish_now(
        &mut self,
        now: Instant,
        worker: usize,
        servers: impl FnOnce() -> (Vec<(String, ServerStats)>, [u64; 3]),
    ) {
        self.unpublished = false;
        self.next_publish = now + PUBLISH_EVERY;
        let (servers, [in_use, pooled, blocked]) = servers();
        self.pool.dedicated_in_use = in_use;
        self.pool.dedicated_pooled = pooled;
        self.pool.blocked_clients = blocked;
        let snap = WorkerSnapshot {
            pool: self.pool.clone(),
            servers,
        };
        self.shared.publish(worker, snap);
    }
}
