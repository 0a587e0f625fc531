//! A backend as configured: where it is (`Addr`: a TCP address or a unix
//! socket path) and the entry it is read from, `host:port[:weight] [name]`
//! or nutcracker's `/path/to.sock:weight [name]`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use crate::config::types::ServerSpec;
use crate::config::validate::{MAX_INT, check_socket_path};

/// Where a backend server listens. Workers key their connections by it and
/// the supervisor probes it, so both kinds are handled alike past the
/// connect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(Arc<Path>),
}

impl Addr {
    /// The TCP address; `None` for a unix socket.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(a) => Some(*a),
            Addr::Unix(_) => None,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

const SHAPE: &str = "expected 'host:port[:weight] [name]' or '/path/to.sock[:weight] [name]'";

/// Parses one `servers` entry.
pub(crate) fn parse_server(s: &str) -> Result<ServerSpec, String> {
    let mut words = s.split_whitespace();
    let addr_part = words.next().ok_or("empty server entry")?;
    let alias = words.next();
    if words.next().is_some() {
        return Err(SHAPE.into());
    }
    if addr_part.starts_with('/') {
        return parse_path_server(addr_part, alias);
    }
    let parts: Vec<&str> = addr_part.split(':').collect();
    let (host, port, weight) = match parts.as_slice() {
        [h, p] => (*h, *p, "1"),
        [h, p, w] => (*h, *p, *w),
        _ => return Err(SHAPE.into()),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port '{port}'"))?;
    let weight = parse_weight(weight)?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{host}' resolves to no address"))?;
    let host_port = format!("{host}:{port}");
    let name = match alias {
        Some(a) => a.to_owned(),
        None if port == 11211 => host.to_owned(),
        None => host_port.clone(),
    };
    Ok(ServerSpec {
        addr: Addr::Tcp(addr),
        host_port,
        weight,
        name,
    })
}

/// `/path/to.sock[:weight]`: nutcracker cuts the weight off at the last
/// ':' and refuses a path with another. Without a name it hashes (and its
/// stats show) the path with that ':' but no port, `/path/to.sock:`, so
/// the name here is the same. (nutcracker requires the weight; aster
/// takes 1 when it is left out, as for `host:port`.)
fn parse_path_server(addr_part: &str, alias: Option<&str>) -> Result<ServerSpec, String> {
    let (path, weight) = match addr_part.split_once(':') {
        None => (addr_part, "1"),
        Some((_, w)) if w.contains(':') => {
            return Err("a unix socket path must not contain ':'".into());
        }
        Some((p, w)) => (p, w),
    };
    check_socket_path(path)?;
    let weight = parse_weight(weight)?;
    Ok(ServerSpec {
        addr: Addr::Unix(Arc::from(Path::new(path))),
        host_port: path.to_owned(),
        weight,
        name: alias.map_or_else(|| format!("{path}:"), str::to_owned),
    })
}

fn parse_weight(w: &str) -> Result<u32, String> {
    w.parse()
        .ok()
        .filter(|w| *w > 0 && u64::from(*w) <= MAX_INT)
        .ok_or_else(|| format!("bad weight '{w}': must be a whole number 1..={MAX_INT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_twemproxy() {
        assert_eq!(parse_server("127.0.0.1:11211").unwrap().name, "127.0.0.1");
        assert_eq!(parse_server("127.0.0.1:6379:3").unwrap().weight, 3);
        assert!(parse_server("127.0.0.1").is_err());
        assert!(parse_server("127.0.0.1:1:1 a b").is_err());
    }

    #[test]
    fn a_path_server_is_named_as_nutcracker_names_it() {
        let s = parse_server("/tmp/r.sock:2").unwrap();
        assert_eq!(s.addr, Addr::Unix(Arc::from(Path::new("/tmp/r.sock"))));
        assert_eq!(s.addr.to_string(), "/tmp/r.sock");
        assert_eq!((s.weight, s.name.as_str()), (2, "/tmp/r.sock:"));
        let s = parse_server("/tmp/r.sock:1 cache").unwrap();
        assert_eq!((s.weight, s.name.as_str()), (1, "cache"));
        // The weight may be left out, as for host:port: the name is the same.
        let s = parse_server("/tmp/r.sock").unwrap();
        assert_eq!((s.weight, s.name.as_str()), (1, "/tmp/r.sock:"));
        for bad in [
            "/tmp/a:b.sock:1",
            "/tmp/r.sock:0",
            "/tmp/r.sock:x",
            "/tmp/:1",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        let long = format!("/{}:1", "a".repeat(120));
        assert!(parse_server(&long).unwrap_err().contains("107"));
    }
}
