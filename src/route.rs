//! Route tables: which backend a key goes to.
//!
//! A table is immutable. The supervisor builds a new one for every change
//! (a server ejected or back, a new slot map) and publishes it with one atomic
//! pointer swap; workers compare the pointer once per loop turn.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{ClusterConfig, ServerSpec};
use crate::hash::{HashKind, hash_tag_slice};
use crate::ketama::{Distribution, Ring, RingServer};

/// The shared pointer a cluster's workers read their table through.
pub type RouteHandle = Arc<ArcSwap<RouteTable>>;

/// One backend a table can route to. Workers key their connections by `addr`,
/// so a table may reorder or replace servers without dropping connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    /// For logs and stats: the alias, or `host:port`.
    pub name: String,
}

pub struct RouteTable {
    pub servers: Vec<Backend>,
    shard: Shard,
}

/// twemproxy-style placement over plain Redis servers.
struct Shard {
    ring: Ring,
    hash: HashKind,
    tag: Option<[u8; 2]>,
    random: bool,
}

impl RouteTable {
    /// A sharding table over `specs`; only servers with `live[i]` take keys.
    pub fn shard(cfg: &ClusterConfig, live: &[bool]) -> RouteTable {
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
            servers: cfg.servers.iter().map(backend_of).collect(),
            shard: Shard {
                ring: Ring::build(cfg.distribution, &ring_servers),
                hash: cfg.hash,
                tag: cfg.hash_tag,
                random: cfg.distribution == Distribution::Random,
            },
        }
    }

    /// The server index for `key`; `None` when no server is live.
    /// `random` is used only by the random distribution.
    #[inline]
    pub fn route(&self, key: &[u8], random: u32) -> Option<usize> {
        let s = &self.shard;
        if s.random {
            return s.ring.pick(random);
        }
        s.ring.pick(s.hash.hash(hash_tag_slice(key, s.tag)))
    }
}

fn backend_of(s: &ServerSpec) -> Backend {
    Backend {
        addr: s.addr,
        name: s.name.clone(),
    }
}
