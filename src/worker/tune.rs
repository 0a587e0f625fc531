//! Socket options for the worker's connections.

use log::debug;
use mio::net::TcpStream;

use crate::config::ClusterConfig;

/// Socket options every connection gets. Nagle's algorithm is off: a
/// proxy's small replies would otherwise wait for the peer's delayed ACK.
pub(crate) fn tune(cfg: &ClusterConfig, sock: &TcpStream) {
    if let Err(e) = sock.set_nodelay(true) {
        debug!("cluster {}: set nodelay: {e}", cfg.name);
    }
    if cfg.tcpkeepalive
        && let Err(e) = socket2::SockRef::from(sock).set_keepalive(true)
    {
        debug!("cluster {}: set keepalive: {e}", cfg.name);
    }
}
