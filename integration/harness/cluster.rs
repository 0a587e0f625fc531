//! A real Redis Cluster: `redis-server` nodes with `--cluster-enabled yes`,
//! joined by `redis-cli --cluster create`, helpers to inspect them (roles,
//! slot owners, command stats) and to disturb them (kill a node, fail over,
//! move a slot), and key slots computed independently of the proxy's code.
//!
//! Lifecycle: `RedisCluster::start` starts every node (each a `RedisServer`)
//! and returns once the cluster is healthy; the value owns the nodes, and its
//! `Drop` kills and reaps every node (printing their logs' tails when a test
//! panics) and removes their directories.
//!
//! Ports: a node listens on `port` and on its cluster bus `port + 10000`. Both
//! are taken from below `free_port`'s range (which starts at 15000) and below
//! the kernel's ephemeral range, so neither collides with the other tests'
//! servers and proxies, nor with the local end of an outgoing connection (a
//! bus bind would fail with EADDRINUSE). A node that still fails to bind is
//! retried on another port.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use super::client::{Client, Reply, try_cmd};
use super::info::info_fields;
use super::ports::{MIN_PORT, PortPool, TempDir, bindable, ephemeral_low, local_addr, poll_until};
use super::process::{tail, wait_timeout};
use super::proxy::ClusterConf;
use super::redis::{RedisServer, redis_cli};

/// Cluster bus ports are the node port plus this.
const BUS_OFFSET: u16 = 10000;
/// Lowest node port handed out (bus 13000).
const NODE_PORT_MIN: u16 = 3000;
/// One past the highest node port (bus below `MIN_PORT`, where `free_port` starts).
const NODE_PORT_END: u16 = MIN_PORT - BUS_OFFSET;
/// How long the cluster gets to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub const SLOT_COUNT: u16 = 16384;

// ---------------------------------------------------------------------------
// Slots, computed independently of the proxy's code
// ---------------------------------------------------------------------------

/// CRC16/XMODEM of the key's hash tag, modulo 16384: Redis Cluster's slot.
pub fn key_slot(key: &str) -> u16 {
    let k = key.as_bytes();
    let tagged = match k.iter().position(|&b| b == b'{') {
        Some(open) => match k[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &k[open + 1..open + 1 + len],
            _ => k,
        },
        None => k,
    };
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOT_COUNT
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

static NODE_PORTS: PortPool = PortPool::new();

/// A node port whose bus port is free too; never the same twice per process.
fn node_port() -> u16 {
    assert!(
        NODE_PORT_END + BUS_OFFSET <= ephemeral_low(),
        "cluster bus ports {}..{} reach into the ephemeral port range (from {})",
        NODE_PORT_MIN + BUS_OFFSET,
        NODE_PORT_END + BUS_OFFSET,
        ephemeral_low()
    );
    NODE_PORTS
        .take(NODE_PORT_MIN, NODE_PORT_END, |p| {
            bindable(p) && bindable(p + BUS_OFFSET)
        })
        .unwrap_or_else(|| panic!("no free cluster node port in {NODE_PORT_MIN}..{NODE_PORT_END}"))
}

// ---------------------------------------------------------------------------
// Direct connections
// ---------------------------------------------------------------------------

/// Several commands on one connection (e.g. ASKING then GET).
pub fn cmds(port: u16, list: &[&[&str]]) -> Vec<Reply> {
    let mut c = Client::connect(port);
    list.iter().map(|a| c.cmd(a)).collect()
}

fn text_of(r: &Reply) -> String {
    match r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Status(s) | Reply::Error(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// One `cmdstat_*` line of INFO commandstats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdStat {
    pub calls: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// A node's role, from ROLE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    /// A replica of the master on this port.
    Replica(u16),
}

/// One range of CLUSTER SLOTS: its master's and replicas' ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: u16,
    pub replicas: Vec<u16>,
}

fn parse_cluster_slots(r: &Reply) -> Option<Vec<SlotRange>> {
    let Reply::Array(ranges) = r else {
        return None;
    };
    let port_of = |n: &Reply| match n {
        Reply::Array(f) => match f.get(1) {
            Some(Reply::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        },
        _ => None,
    };
    let mut out = Vec::new();
    for range in ranges {
        let Reply::Array(f) = range else {
            return None;
        };
        let (Some(Reply::Int(start)), Some(Reply::Int(end))) = (f.first(), f.get(1)) else {
            return None;
        };
        let master = port_of(f.get(2)?)?;
        let replicas = f[3..].iter().map(port_of).collect::<Option<Vec<u16>>>()?;
        out.push(SlotRange {
            start: u16::try_from(*start).ok()?,
            end: u16::try_from(*end).ok()?,
            master,
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Some(out)
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// A cluster node: a `redis-server` with cluster mode on, its `nodes.conf`
/// in its own directory.
fn start_node() -> RedisServer {
    RedisServer::start_on(
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            // Replicas sync at once, not after the default 5 s diskless delay.
            "--repl-diskless-sync-delay",
            "0",
        ],
        node_port,
    )
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// A running Redis Cluster on 127.0.0.1. Nodes are addressed by index
/// (creation order); roles change with failovers, so ask `role`/`masters`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
    replicas_per_master: usize,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters * (1 + replicas_per_master)` nodes, creates the
    /// cluster, and waits until every node reports `cluster_state:ok`, every
    /// node's CLUSTER SLOTS agrees and lists the replicas of every range, and
    /// every replica's link to its master is up.
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        let dir = TempDir::new("cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            masters,
            replicas_per_master,
            dir,
        };
        cluster.nodes = (0..masters * (1 + replicas_per_master))
            .map(|_| start_node())
            .collect();
        cluster.create();
        cluster.wait_linked(READY_TIMEOUT);
        // CLUSTER SLOTS lists a replica only once its replication offset is
        // not 0, which on an idle master takes until its first replication
        // PING (10 s): FLUSHALL is replicated even on an empty master.
        for m in cluster.masters() {
            assert_eq!(cluster.cmd(m, &["FLUSHALL"]), Reply::ok());
        }
        cluster.wait_ready(READY_TIMEOUT);
        cluster
    }

    fn create(&self) {
        let addrs: Vec<String> = self.nodes.iter().map(|n| local_addr(n.port())).collect();
        let out_path = self.dir.join("create.log");
        let out = File::create(&out_path).expect("create.log");
        let mut child = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &self.replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn redis-cli --cluster create");
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-cli --cluster create did not finish in 30 s:\n{}",
                tail(&out_path, 40)
            );
        };
        assert!(
            status.success(),
            "redis-cli --cluster create failed ({status}):\n{}",
            tail(&out_path, 40)
        );
    }

    /// Waits (bounded) until every replica knows it is one and its link to
    /// its master is up.
    fn wait_linked(&self, timeout: Duration) {
        let mut last = String::new();
        let want = self.masters * self.replicas_per_master;
        let ok = poll_until(timeout, Duration::from_millis(20), || {
            let mut linked = 0;
            for i in 0..self.len() {
                let r = self.info_on(self.port(i), "replication").ok()?;
                let role = r.get("role").map(String::as_str);
                let link = r.get("master_link_status").map(String::as_str);
                if role != Some("master") {
                    if link != Some("up") {
                        last = format!("node {}: role {role:?}, link {link:?}", self.port(i));
                        return None;
                    }
                    linked += 1;
                }
            }
            if linked < want {
                last = format!("{linked} of {want} replicas linked");
                return None;
            }
            Some(())
        });
        assert!(
            ok.is_some(),
            "replicas did not link to their masters within {timeout:?}: {last}"
        );
    }

    /// Waits (bounded) until the live nodes agree on a complete slot table
    /// with `replicas_per_master` replicas per range, all in state ok, and
    /// every replica is in sync with its master.
    pub fn wait_ready(&self, timeout: Duration) {
        let mut last = String::new();
        let ok = poll_until(timeout, Duration::from_millis(50), || {
            match self.readiness() {
                Ok(()) => Some(()),
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        if ok.is_none() {
            panic!("the cluster did not become ready within {timeout:?}: {last}");
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let mut first: Option<Vec<SlotRange>> = None;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let info =
                text_of(&try_cmd(n.port(), &["CLUSTER", "INFO"]).map_err(|e| e.to_string())?);
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {} is not cluster_state:ok", n.port()));
            }
            let slots = try_cmd(n.port(), &["CLUSTER", "SLOTS"]).map_err(|e| e.to_string())?;
            let ranges = parse_cluster_slots(&slots)
                .ok_or_else(|| format!("node {}: bad CLUSTER SLOTS {slots:?}", n.port()))?;
            let covered: usize = ranges
                .iter()
                .map(|r| usize::from(r.end - r.start) + 1)
                .sum();
            if covered != usize::from(SLOT_COUNT) {
                return Err(format!("node {} covers {covered} slots", n.port()));
            }
            if let Some(r) = ranges
                .iter()
                .find(|r| r.replicas.len() < self.replicas_per_master)
            {
                return Err(format!("node {}: range {r:?} lacks replicas", n.port()));
            }
            match &first {
                None => first = Some(ranges),
                Some(f) if *f != ranges => {
                    return Err(format!("nodes disagree: {f:?} vs {ranges:?}"));
                }
                Some(_) => {}
            }
            let repl = self.info_on(n.port(), "replication")?;
            if repl.get("role").map(String::as_str) == Some("slave")
                && repl.get("master_link_status").map(String::as_str) != Some("up")
            {
                return Err(format!("replica {} is not linked to its master", n.port()));
            }
        }
        Ok(())
    }

    fn info_on(&self, port: u16, section: &str) -> Result<BTreeMap<String, String>, String> {
        match try_cmd(port, &["INFO", section]) {
            Ok(Reply::Bulk(b)) => Ok(info_fields(&String::from_utf8_lossy(&b))),
            Ok(other) => Err(format!("INFO {section} on {port}: {other:?}")),
            Err(e) => Err(format!("INFO {section} on {port}: {e}")),
        }
    }

    // ---- nodes ----

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port()).collect()
    }

    /// "127.0.0.1:PORT" of a node.
    pub fn addr(&self, node: usize) -> String {
        local_addr(self.port(node))
    }

    /// The node listening on `port`.
    pub fn node_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    pub fn pid(&self, node: usize) -> u32 {
        self.nodes[node].pid()
    }

    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].is_running()
    }

    /// One command on a node, directly.
    pub fn cmd(&self, node: usize, args: &[&str]) -> Reply {
        super::client::cmd(self.port(node), args)
    }

    /// `redis-cli -p PORT args...` on a node (raw output).
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        redis_cli(self.port(node), args)
    }

    /// CLUSTER MYID.
    pub fn node_id(&self, node: usize) -> String {
        text_of(&self.cmd(node, &["CLUSTER", "MYID"]))
    }

    /// ROLE.
    pub fn role(&self, node: usize) -> Role {
        match self.cmd(node, &["ROLE"]) {
            Reply::Array(f) if f.first() == Some(&Reply::bulk("master")) => Role::Master,
            Reply::Array(f) if f.first() == Some(&Reply::bulk("slave")) => match f.get(2) {
                Some(Reply::Int(p)) => Role::Replica(*p as u16),
                other => panic!("ROLE on {}: master port {other:?}", self.port(node)),
            },
            other => panic!("ROLE on {}: {other:?}", self.port(node)),
        }
    }

    /// The live masters.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.is_alive(i) && self.role(i) == Role::Master)
            .collect()
    }

    /// A live master other than `not`, to move a slot to.
    pub fn other_master(&self, not: usize) -> usize {
        self.masters()
            .into_iter()
            .find(|&m| m != not)
            .expect("another master")
    }

    /// The live replicas.
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.is_alive(i) && self.role(i) != Role::Master)
            .collect()
    }

    /// The live replicas of a master.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let port = self.port(master);
        (0..self.len())
            .filter(|&i| self.is_alive(i) && self.role(i) == Role::Replica(port))
            .collect()
    }

    /// CLUSTER SLOTS as the first live node answering sees it.
    pub fn slot_ranges(&self) -> Vec<SlotRange> {
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            if let Ok(r) = try_cmd(n.port(), &["CLUSTER", "SLOTS"])
                && let Some(ranges) = parse_cluster_slots(&r)
            {
                return ranges;
            }
        }
        panic!("no live node answered CLUSTER SLOTS");
    }

    /// The master node serving `slot` (per CLUSTER SLOTS).
    pub fn slot_owner(&self, slot: u16) -> usize {
        let ranges = self.slot_ranges();
        let r = ranges
            .iter()
            .find(|r| r.start <= slot && slot <= r.end)
            .unwrap_or_else(|| panic!("slot {slot} is not served: {ranges:?}"));
        self.node_of_port(r.master)
    }

    /// The master node serving `key`.
    pub fn key_owner(&self, key: &str) -> usize {
        self.slot_owner(key_slot(key))
    }

    /// For each master, one key `{prefix}N` it serves (by node index).
    pub fn key_per_master(&self, prefix: &str) -> BTreeMap<usize, String> {
        let ranges = self.slot_ranges();
        let masters: BTreeSet<u16> = ranges.iter().map(|r| r.master).collect();
        let mut out = BTreeMap::new();
        for i in 0..100_000 {
            if out.len() == masters.len() {
                break;
            }
            let key = format!("{prefix}{i}");
            let slot = key_slot(&key);
            let r = ranges
                .iter()
                .find(|r| r.start <= slot && slot <= r.end)
                .expect("slot served");
            out.entry(self.node_of_port(r.master)).or_insert(key);
        }
        out
    }

    /// SIGKILL a node (it stays dead; Drop reaps the rest).
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// Starts a killed node again on its port and directory: it comes back
    /// empty (no persistence) with its `nodes.conf`, and rejoins the cluster
    /// (a master that was failed over comes back as a replica).
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart();
    }

    /// CONFIG SET cluster-node-timeout on every live node: a long one lets a
    /// test stop a node without the others failing it over.
    pub fn set_node_timeout(&self, ms: u64) {
        let ms = ms.to_string();
        for node in (0..self.len()).filter(|&n| self.is_alive(n)) {
            assert_eq!(
                self.cmd(node, &["CONFIG", "SET", "cluster-node-timeout", &ms]),
                Reply::ok(),
                "cluster-node-timeout on {}",
                self.port(node)
            );
        }
    }

    /// SIGSTOP a node: it keeps its sockets but answers nothing.
    pub fn pause(&mut self, node: usize) {
        self.nodes[node].pause();
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self, node: usize) {
        self.nodes[node].resume();
    }

    /// CLUSTER FAILOVER on a replica; waits (10 s at most) until ROLE says it
    /// is a master.
    pub fn failover(&self, replica: usize) {
        assert_eq!(
            self.cmd(replica, &["CLUSTER", "FAILOVER"]),
            Reply::ok(),
            "CLUSTER FAILOVER on {}",
            self.port(replica)
        );
        let done = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            (self.role(replica) == Role::Master).then_some(())
        });
        assert!(
            done.is_some(),
            "node {} is not a master 10 s after CLUSTER FAILOVER",
            self.port(replica)
        );
    }

    /// A node's keys in one slot (CLUSTER GETKEYSINSLOT, at most 1000).
    pub fn keys_in_slot(&self, node: usize, slot: u16) -> BTreeSet<String> {
        match self.cmd(
            node,
            &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"],
        ) {
            Reply::Array(items) => items.iter().map(text_of).collect(),
            other => panic!("GETKEYSINSLOT on {}: {other:?}", self.port(node)),
        }
    }

    /// DBSIZE of a node.
    pub fn dbsize(&self, node: usize) -> i64 {
        match self.cmd(node, &["DBSIZE"]) {
            Reply::Int(n) => n,
            other => panic!("DBSIZE on {}: {other:?}", self.port(node)),
        }
    }

    // ---- slot migration ----

    /// CLUSTER SETSLOT slot IMPORTING (on `to`) and MIGRATING (on `from`).
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize) {
        let s = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        assert_eq!(
            self.cmd(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            Reply::ok()
        );
        assert_eq!(
            self.cmd(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            Reply::ok()
        );
    }

    /// MIGRATE `keys` from `from` to `to`.
    pub fn migrate_keys(&self, from: usize, to: usize, keys: &[&str]) {
        let port = self.port(to).to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(keys);
        assert_eq!(self.cmd(from, &args), Reply::ok(), "MIGRATE {keys:?}");
    }

    /// MIGRATEs up to `n` of the keys `from` holds in `slot` to `to`, while
    /// clients may still create or delete keys there (a key gone since the
    /// listing is skipped); returns how many keys of the slot `from` still
    /// holds.
    pub fn migrate_some(&self, slot: u16, from: usize, to: usize, n: usize) -> usize {
        let keys = self.keys_in_slot(from, slot);
        if !keys.is_empty() {
            let port = self.port(to).to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().take(n).map(String::as_str));
            let r = self.cmd(from, &args);
            assert!(
                r == Reply::ok() || r == Reply::status("NOKEY"),
                "MIGRATE of slot {slot} from {} to {port}: {r:?}",
                self.port(from)
            );
        }
        self.keys_in_slot(from, slot).len()
    }

    /// CLUSTER SETSLOT slot NODE `to` on `to`, then `from`, then every other
    /// live master; waits until every live node's CLUSTER SLOTS names `to`.
    pub fn finish_migration(&self, slot: u16, from: usize, to: usize) {
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .into_iter()
                .filter(|m| *m != to && *m != from),
        );
        self.set_slot_node(slot, to, &order);
        let to_port = self.port(to);
        let agreed = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| {
                    try_cmd(n.port(), &["CLUSTER", "SLOTS"])
                        .ok()
                        .and_then(|r| parse_cluster_slots(&r))
                        .is_some_and(|ranges| {
                            ranges
                                .iter()
                                .any(|r| r.start <= slot && slot <= r.end && r.master == to_port)
                        })
                })
                .then_some(())
        });
        assert!(
            agreed.is_some(),
            "not every node sees slot {slot} on {to_port} 10 s after SETSLOT NODE"
        );
    }

    /// CLUSTER SETSLOT slot NODE `to` on each of `nodes`, in order, without
    /// waiting for the others to agree (one may be stopped).
    pub fn set_slot_node(&self, slot: u16, to: usize, nodes: &[usize]) {
        let s = slot.to_string();
        let to_id = self.node_id(to);
        for &node in nodes {
            assert_eq!(
                self.cmd(node, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]),
                Reply::ok(),
                "SETSLOT NODE on {}",
                self.port(node)
            );
        }
    }

    /// Moves a whole slot, keys included, from its owner to `to`.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.slot_owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {}", self.port(to));
        self.begin_migration(slot, from, to);
        let keys = self.keys_in_slot(from, slot);
        if !keys.is_empty() {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.migrate_keys(from, to, &keys);
        }
        self.finish_migration(slot, from, to);
    }

    // ---- stats ----

    /// INFO commandstats of a node, by command name (lowercase, e.g. "get").
    pub fn commandstats(&self, node: usize) -> BTreeMap<String, CmdStat> {
        let fields = self
            .info_on(self.port(node), "commandstats")
            .unwrap_or_else(|e| panic!("{e}"));
        fields
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("cmdstat_")?.to_string();
                let mut st = CmdStat::default();
                for kv in v.split(',') {
                    let (f, n) = kv.split_once('=')?;
                    let n: u64 = n.parse().unwrap_or(0);
                    match f {
                        "calls" => st.calls = n,
                        "rejected_calls" => st.rejected_calls = n,
                        "failed_calls" => st.failed_calls = n,
                        _ => {}
                    }
                }
                Some((name, st))
            })
            .collect()
    }

    /// One command's stats on a node (zeros if never called).
    pub fn cmdstat(&self, node: usize, command: &str) -> CmdStat {
        self.commandstats(node)
            .get(command)
            .copied()
            .unwrap_or_default()
    }

    /// CONFIG RESETSTAT on every live node.
    pub fn reset_stats(&self) {
        for i in (0..self.len()).filter(|&i| self.is_alive(i)) {
            assert_eq!(self.cmd(i, &["CONFIG", "RESETSTAT"]), Reply::ok());
        }
    }

    /// Waits (10 s at most) until every live replica has processed all of
    /// its master's replication stream.
    pub fn wait_replicated(&self) {
        let mut last = String::new();
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
            for r in self.replicas() {
                let repl = self.info_on(self.port(r), "replication").ok()?;
                let master_port: u16 = repl.get("master_port")?.parse().ok()?;
                let m = self.info_on(master_port, "replication").ok()?;
                let want: u64 = m.get("master_repl_offset")?.parse().ok()?;
                let got: u64 = repl.get("slave_repl_offset")?.parse().ok()?;
                if got < want {
                    last = format!("replica {} at {got} of {want}", self.port(r));
                    return None;
                }
            }
            Some(())
        });
        assert!(ok.is_some(), "replication did not catch up: {last}");
    }

    // ---- proxy config ----

    /// A `[[clusters]]` table for this cluster: `redis_cluster`, the first two
    /// nodes as seeds, two workers, 1 s timeouts; `extra` sets or overrides
    /// fields with raw TOML values.
    pub fn proxy_conf(&self, extra: &[(&str, &str)]) -> ClusterConf {
        let seeds = vec![self.addr(0), self.addr(1)];
        proxy_conf_for(seeds, extra)
    }
}

/// A `redis_cluster` `[[clusters]]` table with these seeds.
pub fn proxy_conf_for(seeds: Vec<String>, extra: &[(&str, &str)]) -> ClusterConf {
    let mut conf = ClusterConf::with_server_lines("rc", seeds)
        .unset("hash")
        .unset("distribution")
        .unset("hash_tag")
        .unset("ping_fail_limit")
        .unset("ping_interval")
        .set("cache_type", "\"redis_cluster\"")
        .set("thread", "2")
        .set("read_timeout", "1000")
        .set("write_timeout", "1000");
    for (k, v) in extra {
        conf = conf.set(k, v);
    }
    conf
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "---- cluster node {} log (last 10 lines) ----\n{}",
                    n.port(),
                    n.log_tail(10)
                );
            }
        }
        for n in &mut self.nodes {
            n.kill();
        }
        // Each node's own TempDir goes with it.
    }
}
