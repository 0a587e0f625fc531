//! A node a route table can send to.

use crate::config::Addr;

/// One server a table can route to. Workers key their connections by `addr`,
/// so a table may reorder or replace nodes without dropping connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub addr: Addr,
    /// For logs and stats: the alias, or `host:port` (`/path:` for a unix
    /// socket, as nutcracker names it).
    pub name: String,
}
