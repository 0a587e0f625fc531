//! Cluster mode against a real six-node Redis Cluster.
