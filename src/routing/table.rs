//! Route tables: which backend a key goes to.
//!
//! A table is immutable. The supervisor builds a new one for every change
//! (a server ejected or back, a new slot map) and publishes it with one atomic
//! pointer swap; workers compare the pointer once per loop turn.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{ClusterConfig, ServerSpec};
use crate::hashing::hash::{HashKind, hash_tag_slice};
use crate::hashing::ketama::{Distribution, Ring, RingServer};
use crate::hashing::slots::{self, SlotMap};
use crate::routing::node::Node;

/// The shared pointer a cluster's workers read their table through.
pub type RouteHandle = Arc<ArcSwap<RouteTable>>;

pub struct RouteTable {
    /// The cluster's configuration this table was built from: workers adopt
    /// it with the table, so a reload reaches them through the same swap.
    pub cfg: Arc<ClusterConfig>,
    pub servers: Vec<Node>,
    placement: Placement,
}

enum Placement {
    /// twemproxy-style placement over plain Redis servers.
    Hashed(HashRing),
    /// Redis Cluster: CRC16 slots, each owned by a master and its replicas.
    Cluster(SlotMap),
}

struct HashRing {
    ring: Ring,
    hash: HashKind,
    tag: Option<[u8; 2]>,
    random: bool,
}

/// Where one key goes. Keys with the same `group` may travel in one request:
/// the server in sharding mode, the slot in cluster mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub group: u64,
    pub server: usize,
}

impl RouteTable {
    /// A sharding table over the configured servers; only those with
    /// `live[i]` take keys.
    pub fn shard(cfg: &Arc<ClusterConfig>, live: &[bool]) -> RouteTable {
        let ring_servers: Vec<RingServer<'_>> = cfg
            .servers
            .iter()
            .zip(live)
            .map(|(s, &live)| RingServer {
                name: &s.name,
                weight: s.weight,
                live,
            })
            .collect();
        RouteTable {
            cfg: Arc::clone(cfg),
            servers: cfg.servers.iter().map(node_of).collect(),
            placement: Placement::Hashed(HashRing {
                ring: Ring::build(cfg.distribution, &ring_servers),
                hash: cfg.hash,
                tag: cfg.hash_tag,
                random: cfg.distribution == Distribution::Random,
            }),
        }
    }

    /// A cluster table, as learned from CLUSTER SLOTS.
    pub fn cluster(cfg: Arc<ClusterConfig>, servers: Vec<Node>, map: SlotMap) -> RouteTable {
        RouteTable {
            cfg,
            servers,
            placement: Placement::Cluster(map),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.placement, Placement::Cluster(_))
    }

    /// Where `key` goes (the master, in cluster mode); `None` when no server
    /// is live or the slot is not served. `random` is used only by the random
    /// distribution.
    #[inline]
    pub fn place(&self, key: &[u8], random: u32) -> Option<Place> {
        match &self.placement {
            Placement::Hashed(s) => {
                let h = if s.random {
                    random
                } else {
                    s.hash.hash(hash_tag_slice(key, s.tag))
                };
                let server = s.ring.pick(h)?;
                Some(Place {
                    group: server as u64,
                    server,
                })
            }
            Placement::Cluster(map) => {
                let slot = slots::slot_of(key);
                Some(Place {
                    group: u64::from(slot),
                    server: map.shard(slot)?.master,
                })
            }
        }
    }

    /// Where a command about the whole keyspace goes (KEYS, SCAN, SCRIPT
    /// LOAD...): every server in sharding mode, every master in cluster
    /// mode, in ascending route order (SCAN cursors number them by it).
    pub fn keyspace_servers(&self) -> Vec<usize> {
        match &self.placement {
            Placement::Hashed(_) => (0..self.servers.len()).collect(),
            Placement::Cluster(map) => {
                let mut masters: Vec<usize> = map.shards.iter().map(|s| s.master).collect();
                masters.sort_unstable();
                masters.dedup();
                masters
            }
        }
    }

    /// The master of a placement group in cluster mode: where a read sent to
    /// a replica goes when the replica fails.
    pub fn master_of(&self, group: u64) -> Option<usize> {
        match &self.placement {
            Placement::Cluster(map) => map.shard(u16::try_from(group).ok()?).map(|s| s.master),
            Placement::Hashed(_) => None,
        }
    }

    /// The replicas serving a placement's group (cluster mode), for reads.
    pub fn replicas(&self, place: Place) -> &[usize] {
        match &self.placement {
            Placement::Cluster(map) => map
                .shard(place.group as u16)
                .map(|s| s.replicas.as_slice())
                .unwrap_or(&[]),
            Placement::Hashed(_) => &[],
        }
    }

    /// The same cluster layout under another configuration (a reload).
    pub fn with_cfg(&self, cfg: Arc<ClusterConfig>) -> Option<RouteTable> {
        match &self.placement {
            Placement::Cluster(map) => {
                Some(RouteTable::cluster(cfg, self.servers.clone(), map.clone()))
            }
            Placement::Hashed(_) => None,
        }
    }

    /// Same servers and same placement: publishing it would change nothing.
    pub fn same_cluster_layout(&self, servers: &[Node], map: &SlotMap) -> bool {
        match &self.placement {
            Placement::Cluster(m) => self.servers == servers && m == map,
            Placement::Hashed(_) => false,
        }
    }
}

fn node_of(s: &ServerSpec) -> Node {
    Node {
        addr: s.addr.clone(),
        name: s.name.clone(),
    }
}
