//! Everything that is not the request path: the running set of clusters and
//! their reloads, each cluster's listeners and worker threads, and the
//! supervisor thread (health pings, ejection, slot refresh).

pub mod app;
pub(crate) mod cli;
pub(crate) mod clusters;
pub mod memory;
pub(crate) mod proxy;
pub(crate) mod supervisor;
pub(crate) mod topology;
