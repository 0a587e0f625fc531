//! A node a route table can send to.

use std::net::SocketAddr;

/// One server a table can route to. Workers key their connections by `addr`,
/// so a table may reorder or replace nodes without dropping connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub addr: SocketAddr,
    /// For logs and stats: the alias, or `host:port`.
    pub name: String,
}
