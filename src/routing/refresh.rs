//! A worker's way to ask for a fresh route table (cluster mode: after a
//! MOVED, a failed node, CLUSTERDOWN). Whoever refreshes tables (the
//! supervisor) implements `RefreshSink`; the worker holds a `Kick` and
//! knows nothing of who answers it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Takes refresh requests for a cluster, by its id.
pub(crate) trait RefreshSink: Send + Sync {
    fn refresh(&self, cluster: u64);
}

/// A worker's handle to ask for a refresh of its cluster's table.
#[derive(Clone)]
pub(crate) struct Kick {
    sink: Arc<dyn RefreshSink>,
    cluster: u64,
    /// Set while a request is on its way, so a burst of redirects sends
    /// one, not thousands; the refresher clears it when it takes it.
    kicked: Arc<AtomicBool>,
}

impl Kick {
    pub(crate) fn new(sink: Arc<dyn RefreshSink>, cluster: u64) -> Kick {
        Kick {
            sink,
            cluster,
            kicked: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn cluster(&self) -> u64 {
        self.cluster
    }

    pub(crate) fn kicked(&self) -> &Arc<AtomicBool> {
        &self.kicked
    }

    pub(crate) fn send(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            self.sink.refresh(self.cluster);
        }
    }
}
