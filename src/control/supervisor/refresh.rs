//! Slot-table refreshes for a Redis Cluster: every `fetch` seconds, at most
//! 100 ms after a worker's kick (a MOVED, a failed node, CLUSTERDOWN), and
//! every 200 ms while a master of the table does not answer (a failover
//! may be under way: its outcome is picked up without waiting for a
//! worker's next failure, which its reconnect backoff spaces out).
//!
//! A refresh asks CLUSTER SLOTS of the node that answered most recently
//! first, then of the others (never asked, then those that failed, the
//! longest ago first); a node that has not answered within 100 ms does not
//! hold up the next, asked meanwhile. The first table that comes back is
//! the one used. Each refresh also PINGs the table's masters, which is how
//! a master that stopped answering is noticed.

use std::cmp::Ordering as CmpOrdering;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Registry, Token};

use super::Watched;
use super::probe::{Answer, Ask, Probe};
use crate::config::{Addr, ClusterConfig};
use crate::control::topology;
use crate::hashing::slots::{self, SlotMap};
use crate::routing::node::Node;
use crate::routing::table::RouteTable;

/// The longest one node may take to answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// Refreshes asked for by workers are at least this far apart.
const REFRESH_GAP: Duration = Duration::from_millis(100);
/// A node that has not answered CLUSTER SLOTS by then: the next is asked too.
const STAGGER: Duration = Duration::from_millis(100);
/// Refreshes this far apart while a master of the table does not answer.
const FOLLOW_UP: Duration = Duration::from_millis(200);

pub(super) struct Refresher {
    seeds: Vec<SocketAddr>,
    /// The known nodes and seeds, each with its kept connection.
    probes: Vec<Probe>,
    /// The masters of the table last published.
    masters: Vec<SocketAddr>,
    round: Option<Round>,
    /// When the last refresh started.
    last: Instant,
    /// When the next periodic refresh is due.
    next: Instant,
    kicked: bool,
}

/// One refresh under way.
struct Round {
    /// The nodes to ask, best first.
    order: Vec<SocketAddr>,
    /// How many of `order` were asked.
    launched: usize,
    /// When the next node is asked even if no answer has failed.
    next_launch: Instant,
    /// Why each node asked so far gave no table.
    errors: Vec<String>,
}

impl Refresher {
    /// The refresher of a cluster whose first table was just learned, or,
    /// after a reload (`old`), the same one with the new seeds and period.
    pub fn new(
        cfg: &ClusterConfig,
        route: &RouteTable,
        old: Option<Refresher>,
        now: Instant,
    ) -> Refresher {
        // Validation keeps a Redis Cluster's seeds on TCP, and its nodes
        // name each other by host:port: every probe here is a TCP one.
        let seeds = cfg.servers.iter().filter_map(|s| s.addr.tcp()).collect();
        match old {
            Some(o) => Refresher {
                seeds,
                next: o.last + cfg.fetch,
                ..o
            },
            None => Refresher {
                seeds,
                probes: Vec::new(),
                masters: masters_of(route),
                round: None,
                last: now,
                next: now + cfg.fetch,
                kicked: false,
            },
        }
    }

    /// A worker asked for a refresh.
    pub fn kick(&mut self) {
        self.kicked = true;
    }

    /// When there is next something to do: a refresh, the next node of the
    /// one under way, or a deadline.
    pub fn due(&self) -> Option<Instant> {
        let deadlines = self.probes.iter().filter_map(Probe::deadline);
        let round = match &self.round {
            // A new refresh waits for this one: only its next node is due.
            Some(r) => (r.launched < r.order.len()).then_some(r.next_launch),
            None => Some(self.next_refresh()),
        };
        deadlines.chain(round).min()
    }

    /// An event on one of its connections; false when the token is not its.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        w: &Watched,
    ) -> bool {
        let Some(i) = self.probes.iter().position(|p| p.owns(token)) else {
            return false;
        };
        let mut answers = Vec::new();
        self.probes[i].on_event(registry, now, &mut answers);
        self.settle(registry, i, answers, now, w);
        true
    }

    /// Fails questions past their deadline, asks the next node of the
    /// refresh under way if its turn came, or starts a refresh if one is due.
    pub fn tick(&mut self, registry: &Registry, now: Instant, w: &Watched) {
        let mut answers = Vec::new();
        for i in 0..self.probes.len() {
            self.probes[i].expire(registry, now, &mut answers);
            if !answers.is_empty() {
                self.settle(registry, i, std::mem::take(&mut answers), now, w);
            }
        }
        match &self.round {
            Some(r) if r.launched < r.order.len() && now >= r.next_launch => {
                self.launch(registry, now, w);
            }
            Some(_) => {}
            None if now >= self.next_refresh() => self.start(registry, now, w),
            None => {}
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        for p in &mut self.probes {
            p.close(registry);
        }
    }

    fn next_refresh(&self) -> Instant {
        let mut at = self.next;
        if self.kicked {
            at = at.min(self.last + REFRESH_GAP);
        }
        if self.master_down() {
            at = at.min(self.last + FOLLOW_UP);
        }
        at
    }

    /// Whether a master of the table failed its last question.
    fn master_down(&self) -> bool {
        self.probes
            .iter()
            .any(|p| tcp_of(p).is_some_and(|a| self.masters.contains(&a)) && p.failed().is_some())
    }

    fn start(&mut self, registry: &Registry, now: Instant, w: &Watched) {
        self.kicked = false;
        w.kicked.store(false, Ordering::Release);
        self.last = now;
        self.next = now + w.cfg.fetch;
        let route = w.route.load();
        self.masters = masters_of(&route);
        let mut order: Vec<SocketAddr> =
            route.servers.iter().filter_map(|n| n.addr.tcp()).collect();
        for s in &self.seeds {
            if !order.contains(s) {
                order.push(*s);
            }
        }
        order.sort_by(|a, b| rank(self.probe(*a), self.probe(*b)));
        self.round = Some(Round {
            order,
            launched: 0,
            next_launch: now,
            errors: Vec::new(),
        });
        self.launch(registry, now, w);
        // A master answering CLUSTER SLOTS needs no ping as well.
        let mut answers = Vec::new();
        for m in self.masters.clone() {
            let i = self.probe_index(m);
            let p = &mut self.probes[i];
            if !p.is_asked(Ask::Ping) && !p.is_asked(Ask::Slots) {
                // A failure is the probe's own record: nothing else to do.
                p.ask(registry, Ask::Ping, now, RPC_TIMEOUT, &mut answers);
                answers.clear();
            }
        }
    }

    /// Asks the next nodes of the refresh under way: the next one, and
    /// past it each one that fails at once.
    fn launch(&mut self, registry: &Registry, now: Instant, w: &Watched) {
        let Some(mut r) = self.round.take() else {
            return;
        };
        let mut answers = Vec::new();
        while r.launched < r.order.len() {
            let addr = r.order[r.launched];
            r.launched += 1;
            let i = self.probe_index(addr);
            let p = &mut self.probes[i];
            if !p.is_asked(Ask::Slots) {
                p.ask(registry, Ask::Slots, now, RPC_TIMEOUT, &mut answers);
            }
            if answers.is_empty() {
                r.next_launch = now + STAGGER;
                self.round = Some(r);
                return;
            }
            for a in answers.drain(..) {
                if let Err(e) = a.reply {
                    r.errors.push(format!("{addr}: {e}"));
                }
            }
        }
        self.round = Some(r);
        self.end_if_exhausted(w);
    }

    /// Node `i`'s answers: a table ends the refresh under way; a failure
    /// moves it on to the next node at once.
    fn settle(
        &mut self,
        registry: &Registry,
        i: usize,
        answers: Vec<Answer>,
        now: Instant,
        w: &Watched,
    ) {
        // (Its probes are all TCP: see `new`.)
        let Some(addr) = tcp_of(&self.probes[i]) else {
            return;
        };
        for a in answers {
            if a.ask == Ask::Ping {
                if a.pong().is_err() {
                    self.probes[i].note_failure(now);
                }
                continue;
            }
            // An answer to a refresh already decided is not used: it could
            // only flip the table back and forth.
            let Some(r) = self.round.as_mut() else {
                continue;
            };
            let table = a.reply.and_then(|v| topology::table_from(&v, addr));
            match table {
                Ok((servers, map)) => {
                    self.round = None;
                    self.adopt(registry, servers, map, w);
                    return;
                }
                Err(e) => {
                    r.errors.push(format!("{addr}: {e}"));
                    self.probes[i].note_failure(now);
                    self.launch(registry, now, w);
                }
            }
        }
    }

    /// With every node asked and none still to answer, the refresh failed.
    fn end_if_exhausted(&mut self, w: &Watched) {
        let Some(r) = &self.round else {
            return;
        };
        if r.launched < r.order.len() || self.probes.iter().any(|p| p.is_asked(Ask::Slots)) {
            return;
        }
        warn!(
            "cluster {}: topology refresh failed: no cluster node answered CLUSTER SLOTS: {}",
            w.cfg.name,
            r.errors.join("; ")
        );
        self.round = None;
    }

    /// Publishes a table that differs from the current one; forgets the
    /// nodes that are neither in it nor seeds.
    fn adopt(&mut self, registry: &Registry, servers: Vec<Node>, map: SlotMap, w: &Watched) {
        let current = w.route.load();
        if !current.same_cluster_layout(&servers, &map) {
            info!(
                "cluster {}: slot table updated: {} shard(s), {} node(s), {} of {} slots served",
                w.cfg.name,
                map.shards.len(),
                servers.len(),
                map.covered(),
                slots::SLOT_COUNT
            );
            w.publish(RouteTable::cluster(Arc::clone(&w.cfg), servers, map));
        }
        let route = w.route.load();
        self.masters = masters_of(&route);
        let seeds = &self.seeds;
        self.probes.retain_mut(|p| {
            let keep = tcp_of(p).is_some_and(|a| seeds.contains(&a))
                || route.servers.iter().any(|n| n.addr == *p.addr());
            if !keep {
                p.close(registry);
            }
            keep
        });
    }

    fn probe(&self, addr: SocketAddr) -> Option<&Probe> {
        self.probes.iter().find(|p| tcp_of(p) == Some(addr))
    }

    /// The probe of `addr`, made if it is new.
    fn probe_index(&mut self, addr: SocketAddr) -> usize {
        match self.probes.iter().position(|p| tcp_of(p) == Some(addr)) {
            Some(i) => i,
            None => {
                self.probes.push(Probe::new(Addr::Tcp(addr)));
                self.probes.len() - 1
            }
        }
    }
}

fn masters_of(route: &RouteTable) -> Vec<SocketAddr> {
    route
        .keyspace_servers()
        .into_iter()
        .filter_map(|i| route.servers.get(i).and_then(|n| n.addr.tcp()))
        .collect()
}

fn tcp_of(p: &Probe) -> Option<SocketAddr> {
    p.addr().tcp()
}

/// Which node to ask first: the most recent answer, then nodes never
/// asked, then failed ones, the longest failed first.
fn rank(a: Option<&Probe>, b: Option<&Probe>) -> CmpOrdering {
    let answered = |p: Option<&Probe>| p.and_then(Probe::answered);
    let failed = |p: Option<&Probe>| p.and_then(Probe::failed);
    let class = |p: Option<&Probe>| match (answered(p), failed(p)) {
        (Some(_), _) => 0,
        (None, None) => 1,
        (None, Some(_)) => 2,
    };
    class(a)
        .cmp(&class(b))
        .then_with(|| answered(b).cmp(&answered(a)))
        .then_with(|| failed(a).cmp(&failed(b)))
}
