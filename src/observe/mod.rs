//! What operators see: per-worker counters published to shared snapshots,
//! twemproxy's stats JSON, Prometheus metrics and the slow log.

pub(crate) mod catalogue;
pub(crate) mod fatal;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod port;
pub(crate) mod slowlog;
pub(crate) mod stats;
