//! What workers publish and its sum, and twemproxy's stats port: each TCP
//! connection receives one JSON document in nutcracker's shape, then the
//! socket closes. The counters themselves are declared in `catalogue.rs`.
//!
//! Workers count in plain integers they own (no atomics on the request
//! path) and publish a copy a few times a second into their slot of the
//! cluster's `ClusterStats`. Each stats connection sums the slots when it
//! is accepted, so nothing runs while nobody asks.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::observe::catalogue::Desc;
pub use crate::observe::catalogue::{PoolStats, ServerStats};
use crate::observe::port;
use crate::observe::slowlog::SlowLog;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// When the process started (the first call), for uptimes.
pub fn started() -> Instant {
    *STARTED.get_or_init(Instant::now)
}

/// What one worker publishes: its pool counters and, per server name, its
/// server counters.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    pub pool: PoolStats,
    pub servers: Vec<(String, ServerStats)>,
}

/// What the health checks say of one configured server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHealth {
    pub name: String,
    /// µs since the epoch of its last ejection (0: never).
    pub ejected_at: u64,
    /// Ejected right now.
    pub ejected: bool,
}

/// Shared by a cluster's workers, its supervisor duty and the stats thread.
pub struct ClusterStats {
    pub name: String,
    pub workers: Vec<Mutex<WorkerSnapshot>>,
    pub server_ejects: AtomicU64,
    /// Clients connected across all workers, for `max_clients`.
    pub clients: AtomicUsize,
    pub slowlog: SlowLog,
    /// Configured servers in config order (so documents list them stably),
    /// with their health. Locked only on ejections, reloads and reports.
    health: Mutex<Vec<ServerHealth>>,
    /// SCRIPT FLUSHes sent through the proxy: a worker whose script cache
    /// saw fewer empties it before using it.
    pub script_flushes: AtomicU64,
    /// The lowest Redis version the servers last reported
    /// (`local::pack_version`), 0 until one did: INFO and HELLO report it.
    pub backend_version: Arc<AtomicU64>,
}

impl ClusterStats {
    pub fn new(
        name: &str,
        server_names: Vec<String>,
        workers: usize,
        slowlog_max: usize,
    ) -> ClusterStats {
        let c = ClusterStats {
            name: name.to_owned(),
            workers: (0..workers)
                .map(|_| Mutex::new(WorkerSnapshot::default()))
                .collect(),
            server_ejects: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            slowlog: SlowLog::new(slowlog_max),
            health: Mutex::new(Vec::new()),
            script_flushes: AtomicU64::new(0),
            backend_version: Arc::new(AtomicU64::new(0)),
        };
        c.set_servers(&server_names, &vec![true; server_names.len()]);
        c
    }

    /// A reload changed the server list: servers kept by name keep their
    /// history; `live[i]` says whether server i takes keys (the supervisor
    /// keeps an unchanged server's health across a reload).
    pub fn set_servers(&self, names: &[String], live: &[bool]) {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = names
            .iter()
            .zip(live)
            .map(|(n, &live)| {
                let old = h.iter().find(|x| &x.name == n);
                ServerHealth {
                    name: n.clone(),
                    ejected_at: old.map_or(0, |o| o.ejected_at),
                    ejected: !live,
                }
            })
            .collect();
        *h = fresh;
    }

    pub fn health(&self) -> Vec<ServerHealth> {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn publish(&self, worker: usize, snap: WorkerSnapshot) {
        if let Some(slot) = self.workers.get(worker) {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = snap;
        }
    }

    pub fn ejected(&self, server: usize) {
        self.server_ejects.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(x) = h.get_mut(server) {
            x.ejected_at = epoch_micros();
            x.ejected = true;
        }
    }

    pub fn readmitted(&self, server: usize) {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(x) = h.get_mut(server) {
            x.ejected = false;
        }
    }

    /// The sum over workers: pool counters and per-server counters, servers
    /// in config order first, then any others (cluster nodes) by name; with
    /// what the health checks count (`server_ejects`, `server_ejected_at`).
    pub fn total(&self) -> (PoolStats, Vec<(String, ServerStats)>) {
        let health = self.health();
        let mut pool = PoolStats::default();
        let mut servers: Vec<(String, ServerStats)> = health
            .iter()
            .map(|h| (h.name.clone(), ServerStats::default()))
            .collect();
        for w in &self.workers {
            let snap = w.lock().unwrap_or_else(PoisonError::into_inner);
            pool.add(&snap.pool);
            for (name, st) in &snap.servers {
                match servers.iter_mut().find(|(n, _)| n == name) {
                    Some((_, acc)) => acc.add(st),
                    None => servers.push((name.clone(), st.clone())),
                }
            }
        }
        pool.server_ejects = self.server_ejects.load(Ordering::Relaxed);
        for ((_, st), h) in servers.iter_mut().zip(&health) {
            st.server_ejected_at = h.ejected_at;
        }
        (pool, servers)
    }
}

fn epoch_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `"key":value, ` for each of a family's values in twemproxy's JSON.
fn members<T>(out: &mut String, descs: &[Desc<T>], t: &T) {
    for d in descs.iter().filter(|d| d.twemproxy.is_some()) {
        json_str(out, d.name);
        let _ = write!(out, ":{}, ", (d.get)(t));
    }
}

/// Ends an object: drops the trailing ", " of its last member.
fn close(out: &mut String) {
    if out.ends_with(", ") {
        out.truncate(out.len() - 2);
    }
    out.push('}');
}

/// The clusters being served; reloads add and remove entries.
pub type Registry = Arc<Mutex<Vec<Arc<ClusterStats>>>>;

pub fn registered(r: &Registry) -> Vec<Arc<ClusterStats>> {
    r.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The whole document, as nutcracker lays it out.
pub fn render(clusters: &[Arc<ClusterStats>], started: Instant, source: &str) -> String {
    let mut out = String::with_capacity(1024);
    let totals: Vec<_> = clusters.iter().map(|c| c.total()).collect();
    let total_conn: u64 = totals.iter().map(|(p, _)| p.total_connections).sum();
    let curr_conn: u64 = totals.iter().map(|(p, _)| p.client_connections).sum();
    out.push('{');
    out.push_str("\"service\":\"nutcracker\", \"source\":");
    json_str(&mut out, source);
    out.push_str(", \"version\":");
    json_str(&mut out, crate::protocol::local::VERSION);
    let _ = write!(
        out,
        ", \"uptime\":{}, \"timestamp\":{}, \"total_connections\":{total_conn}, \"curr_connections\":{curr_conn}",
        started.elapsed().as_secs(),
        epoch_micros() / 1_000_000
    );
    for (c, (pool, servers)) in clusters.iter().zip(&totals) {
        out.push_str(", ");
        json_str(&mut out, &c.name);
        out.push_str(":{");
        members(&mut out, PoolStats::COUNTERS, pool);
        for (name, s) in servers {
            json_str(&mut out, name);
            out.push_str(":{");
            members(&mut out, ServerStats::COUNTERS, s);
            close(&mut out);
            out.push_str(", ");
        }
        close(&mut out);
    }
    // nutcracker ends the document with a newline; line readers need it.
    out.push_str("}\n");
    out
}

/// Starts the stats port: every connection gets a document rendered then,
/// as nutcracker's stats thread does (it aggregates what the workers last
/// published, at most ~200 ms old, when a client asks), on a thread of its
/// own (`observe::port`), so a client that never reads a large document
/// holds no other. Nothing runs while nobody asks. `-i` is accepted for
/// nutcracker's command line; nothing here waits on it.
pub fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<()> {
    let started = started();
    let source = hostname();
    port::serve(addr, "stats", move |c| {
        c.write_all(render(&registered(&registry), started, &source).as_bytes())
    })
}

/// `-D`: what each counter of twemproxy's JSON means, as nutcracker says.
pub fn describe() -> String {
    fn lines<T>(out: &mut String, title: &str, descs: &[Desc<T>]) {
        out.push_str(title);
        for d in descs {
            if let Some(text) = d.twemproxy {
                let _ = writeln!(out, "  {:<20}\"{text}\"", d.name);
            }
        }
    }
    let mut out = String::new();
    lines(&mut out, "pool stats:\n", PoolStats::COUNTERS);
    lines(&mut out, "\nserver stats:\n", ServerStats::COUNTERS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::catalogue::Histogram;

    #[test]
    fn document_sums_workers_in_twemproxy_shape() {
        let c = Arc::new(ClusterStats::new(
            "alpha",
            vec!["one".into(), "two".into()],
            2,
            8,
        ));
        let mut a = WorkerSnapshot::default();
        a.pool.client_connections = 2;
        a.pool.total_connections = 5;
        a.servers.push((
            "two".into(),
            ServerStats {
                requests: 3,
                ..Default::default()
            },
        ));
        let mut b = WorkerSnapshot::default();
        b.pool.client_connections = 1;
        b.servers.push((
            "two".into(),
            ServerStats {
                requests: 4,
                ..Default::default()
            },
        ));
        c.publish(0, a);
        c.publish(1, b);
        c.ejected(0);
        let doc = render(&[c], Instant::now(), "host\"x");
        let mut h = Histogram::default();
        h.observe(100);
        h.observe(101);
        h.observe(10_000_000);
        assert_eq!(
            (h.counts[0], h.counts[1], h.counts[14], h.count()),
            (1, 1, 1, 3)
        );
        assert!(
            doc.starts_with("{\"service\":\"nutcracker\", \"source\":\"host\\\"x\""),
            "{doc}"
        );
        assert!(
            doc.contains("\"total_connections\":5, \"curr_connections\":3"),
            "{doc}"
        );
        assert!(doc.contains("\"alpha\":{\"client_eof\":0, \"client_err\":0, \"client_connections\":3, \"server_ejects\":1"), "{doc}");
        assert!(doc.contains("\"two\":{\"server_eof\":0"), "{doc}");
        assert!(doc.contains("\"requests\":7,"), "{doc}");
        assert!(!doc.contains("\"server_ejected_at\":0, \"requests\":0, \"request_bytes\":0, \"responses\":0, \"response_bytes\":0, \"in_queue\":0, \"in_queue_bytes\":0, \"out_queue\":0, \"out_queue_bytes\":0}, \"two\""));
        assert!(doc.ends_with("}}}\n"), "{doc}");
    }

    /// The pool and server objects byte for byte as nutcracker writes them:
    /// its members in its order (integration tests compare with it).
    #[test]
    fn pool_and_server_objects_in_nutcracker_order() {
        let c = Arc::new(ClusterStats::new("alpha", vec!["one".into()], 1, 8));
        let snap = WorkerSnapshot {
            pool: PoolStats::numbered(100),
            servers: vec![("one".into(), ServerStats::numbered(200))],
        };
        c.publish(0, snap);
        let doc = render(&[c], Instant::now(), "h");
        let body = doc.split_once("\"alpha\":").map(|(_, b)| b);
        assert_eq!(
            body,
            Some(concat!(
                "{\"client_eof\":103, \"client_err\":104, \"client_connections\":105, ",
                "\"server_ejects\":0, \"forward_error\":107, \"fragments\":108, ",
                "\"one\":{\"server_eof\":201, \"server_err\":202, \"server_timedout\":203, ",
                "\"server_connections\":204, \"server_ejected_at\":0, \"requests\":206, ",
                "\"request_bytes\":207, \"responses\":208, \"response_bytes\":209, ",
                "\"in_queue\":210, \"in_queue_bytes\":211, \"out_queue\":212, ",
                "\"out_queue_bytes\":213}}}\n"
            )),
            "{doc}"
        );
        assert!(doc.contains("\"total_connections\":101, \"curr_connections\":105, \"alpha\""));
    }

    /// `-D` as nutcracker prints it (`compat` compares line by line).
    #[test]
    fn describe_as_nutcracker() {
        let expected = "pool stats:
  client_eof          \"# eof on client connections\"
  client_err          \"# errors on client connections\"
  client_connections  \"# active client connections\"
  server_ejects       \"# times backend server was ejected\"
  forward_error       \"# times we encountered a forwarding error\"
  fragments           \"# fragments created from a multi-vector request\"

server stats:
  server_eof          \"# eof on server connections\"
  server_err          \"# errors on server connections\"
  server_timedout     \"# timeouts on server connections\"
  server_connections  \"# active server connections\"
  server_ejected_at   \"timestamp when server was ejected in usec since epoch\"
  requests            \"# requests\"
  request_bytes       \"total request bytes\"
  responses           \"# responses\"
  response_bytes      \"total response bytes\"
  in_queue            \"# requests in incoming queue\"
  in_queue_bytes      \"current request bytes in incoming queue\"
  out_queue           \"# requests in outgoing queue\"
  out_queue_bytes     \"current request bytes in outgoing queue\"
";
        assert_eq!(describe(), expected);
    }
}
