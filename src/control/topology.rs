//! A Redis Cluster's topology: `CLUSTER SLOTS` parsed into the slot map and
//! the list of nodes a route table is built from, and the start-up query
//! that asks the seeds for it. (Later refreshes are the supervisor's.)

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::config::Addr;
use crate::hashing::slots::{SLOT_COUNT, Shard, SlotMap, UNASSIGNED};
use crate::net::rpc::{Conn, Value};
use crate::routing::node::Node;

/// The command that asks a node for the slot table.
pub const CLUSTER_SLOTS: &[&[u8]] = &[b"CLUSTER", b"SLOTS"];

#[derive(Debug)]
pub enum TopologyError {
    /// No seed or known node answered CLUSTER SLOTS.
    NoNode(Vec<String>),
    /// The poll that waits for the answers could not be made.
    Poll(io::Error),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::NoNode(errs) => {
                write!(
                    f,
                    "no cluster node answered CLUSTER SLOTS: {}",
                    errs.join("; ")
                )
            }
            TopologyError::Poll(e) => write!(f, "cannot poll the cluster nodes: {e}"),
        }
    }
}

impl std::error::Error for TopologyError {}

/// Asks every node at once and takes the first slot table that comes
/// back, so a hung seed costs nothing while another answers; each node
/// has `timeout` in all.
pub fn fetch(
    nodes: &[SocketAddr],
    timeout: Duration,
) -> Result<(Vec<Node>, SlotMap), TopologyError> {
    let mut poll = Poll::new().map_err(TopologyError::Poll)?;
    let mut errs = Vec::new();
    let mut conns: Vec<Option<Conn>> = nodes
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            let asked =
                Conn::open(&Addr::Tcp(addr), poll.registry(), Token(i)).and_then(|mut c| {
                    c.send(CLUSTER_SLOTS)?;
                    Ok(c)
                });
            asked.map_err(|e| errs.push(format!("{addr}: {e}"))).ok()
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut events = Events::with_capacity(nodes.len().max(1));
    let mut replies = Vec::new();
    while conns.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match poll.poll(&mut events, Some(left)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TopologyError::Poll(e)),
            Ok(()) => {}
        }
        for ev in &events {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            replies.clear();
            let pumped = c.pump(&mut replies);
            let addr = nodes[i];
            let outcome = match (replies.first(), pumped) {
                (Some(reply), _) => table_from(reply, addr),
                (None, Ok(())) => continue,
                (None, Err(e)) => Err(e.to_string()),
            };
            match outcome {
                Ok(table) => return Ok(table),
                Err(e) => errs.push(format!("{addr}: {e}")),
            }
            if let Some(c) = conns[i].take() {
                c.close(poll.registry());
            }
        }
    }
    for (i, c) in conns.iter().enumerate() {
        if c.is_some() {
            errs.push(format!("{}: timed out", nodes[i]));
        }
    }
    Err(TopologyError::NoNode(errs))
}

/// The slot table in a node's reply to CLUSTER SLOTS; an error reply
/// (LOADING, cluster support disabled...) is the node's failure.
pub fn table_from(reply: &Value, asked: SocketAddr) -> Result<(Vec<Node>, SlotMap), String> {
    if let Value::Error(e) = reply {
        return Err(e.clone());
    }
    parse_slots(reply, asked)
}

/// Builds the slot map from a CLUSTER SLOTS reply:
/// `[[start, end, [ip, port, id, ...], [replica ip, port, ...]...], ...]`.
/// An empty ip means "the node you asked".
pub fn parse_slots(reply: &Value, asked: SocketAddr) -> Result<(Vec<Node>, SlotMap), String> {
    let ranges = reply
        .as_array()
        .ok_or("CLUSTER SLOTS reply is not an array")?;
    let mut servers: Vec<Node> = Vec::new();
    let mut index: HashMap<SocketAddr, usize> = HashMap::new();
    let mut shards: Vec<Shard> = Vec::new();
    let mut slot_shard = vec![UNASSIGNED; SLOT_COUNT];
    for r in ranges {
        let r = r.as_array().ok_or("slot range is not an array")?;
        if r.len() < 3 {
            return Err("slot range without a master".into());
        }
        let (Some(start), Some(end)) = (r[0].as_int(), r[1].as_int()) else {
            return Err("slot range bounds are not integers".into());
        };
        if start < 0 || end < start || end >= SLOT_COUNT as i64 {
            return Err(format!("bad slot range {start}-{end}"));
        }
        let mut node_ids = Vec::with_capacity(r.len() - 2);
        for node in &r[2..] {
            let addr = node_addr(node, asked)?;
            let id = *index.entry(addr).or_insert_with(|| {
                servers.push(Node {
                    addr: Addr::Tcp(addr),
                    name: addr.to_string(),
                });
                servers.len() - 1
            });
            node_ids.push(id);
        }
        let shard = Shard {
            master: node_ids[0],
            replicas: node_ids[1..].to_vec(),
        };
        let si = match shards.iter().position(|s| *s == shard) {
            Some(i) => i,
            None => {
                shards.push(shard);
                shards.len() - 1
            }
        };
        for slot in &mut slot_shard[start as usize..=end as usize] {
            *slot = si as u16;
        }
    }
    if shards.is_empty() {
        return Err("the cluster has no slots assigned".into());
    }
    Ok((servers, SlotMap { slot_shard, shards }))
}

fn node_addr(node: &Value, asked: SocketAddr) -> Result<SocketAddr, String> {
    let n = node.as_array().ok_or("node entry is not an array")?;
    let host = n
        .first()
        .and_then(Value::as_text)
        .ok_or("node without an address")?;
    let port = n
        .get(1)
        .and_then(Value::as_int)
        .filter(|p| (1..=65535).contains(p))
        .ok_or("node without a port")?;
    if host.is_empty() || host == "?" {
        return Ok(SocketAddr::new(asked.ip(), port as u16));
    }
    resolve(&host, port as u16)
}

pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ip: &str, port: i64) -> Value {
        Value::Array(Some(vec![
            Value::Bulk(Some(ip.as_bytes().to_vec())),
            Value::Int(port),
            Value::Bulk(Some(b"id".to_vec())),
        ]))
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = Value::Array(Some(vec![
            Value::Array(Some(vec![
                Value::Int(0),
                Value::Int(8191),
                node("127.0.0.1", 7001),
                node("127.0.0.1", 7004),
            ])),
            Value::Array(Some(vec![
                Value::Int(8192),
                Value::Int(16383),
                node("", 7002),
            ])),
        ]));
        let asked: SocketAddr = "127.0.0.2:7000".parse().unwrap();
        let (servers, map) = parse_slots(&reply, asked).unwrap();
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[2].addr.tcp(), "127.0.0.2:7002".parse().ok());
        assert_eq!(map.covered(), SLOT_COUNT);
        let s = map.shard(100).unwrap();
        assert_eq!((s.master, s.replicas.clone()), (0, vec![1]));
        assert_eq!(map.shard(16383).unwrap().master, 2);
        let bad = Value::Array(Some(vec![Value::Array(Some(vec![
            Value::Int(5),
            Value::Int(2),
            node("a", 1),
        ]))]));
        assert!(parse_slots(&bad, asked).is_err());
    }
}
