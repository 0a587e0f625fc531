//! Prometheus metrics on `--metrics PORT`: a tiny HTTP/1.x responder for
//! `GET /metrics`, one request per connection, each connection served on its
//! own (`observe::port`), rendered from the same counters the stats port
//! serves.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::observe::catalogue::{
    Desc, HistDesc, Histogram, LATENCY_BUCKETS_US, LabelledDesc, PoolStats, ServerStats,
};
use crate::observe::port::{self, Conn};
use crate::observe::stats::{self, Registry};

/// The most of a request read before answering: a GET line and headers.
const MAX_REQUEST: usize = 8192;

/// Serves `/metrics` on `addr`, each connection on its own (`port`).
pub fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<()> {
    port::serve(addr, "metrics", move |c| answer(c, &registry))
}

fn answer(c: &mut Conn, registry: &Registry) -> std::io::Result<()> {
    let buf = c.read_request(MAX_REQUEST, |b| b.windows(4).any(|w| w == b"\r\n\r\n"))?;
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or(&[]), words.next().unwrap_or(&[]));
    let (status, body) =
        if method == b"GET" && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
            ("200 OK", render(registry))
        } else {
            (
                "404 Not Found",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())
}

/// Label values escaped as the exposition format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += h.counts[i];
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// A family's descriptors, as its `family!` table makes them.
struct Family<T: 'static> {
    counters: &'static [Desc<T>],
    labelled: &'static [LabelledDesc<T>],
    histograms: &'static [HistDesc<T>],
}

/// Each of a family's counters and histograms, one series per row (and
/// per kind, for a labelled counter): the rows' labels (`cluster="a"`) and
/// values.
fn family<T>(out: &mut String, f: Family<T>, rows: &[(String, &T)]) {
    for d in f.counters {
        let Some((name, help)) = d.prom else { continue };
        header(out, name, d.kind.prometheus(), help);
        for (labels, t) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", (d.get)(t));
        }
    }
    for d in f.labelled {
        let Some((name, help)) = d.prom else { continue };
        header(out, name, d.kind.prometheus(), help);
        for (labels, t) in rows {
            for (kind, v) in d.values(t) {
                let _ = writeln!(out, "{name}{{{labels},{}=\"{kind}\"}} {v}", d.label);
            }
        }
    }
    for h in f.histograms {
        let (name, help) = h.prom;
        header(out, name, "histogram", help);
        for (labels, t) in rows {
            histogram(out, name, labels, (h.get)(t));
        }
    }
}

pub fn render(registry: &Registry) -> String {
    let clusters = stats::registered(registry);
    let totals: Vec<_> = clusters.iter().map(|c| (c, c.total())).collect();
    let mut out = String::with_capacity(4096);
    header(&mut out, "aster_build_info", "gauge", "Build information.");
    let _ = writeln!(
        out,
        "aster_build_info{{version=\"{}\"}} 1",
        crate::protocol::local::VERSION
    );
    header(
        &mut out,
        "aster_uptime_seconds",
        "gauge",
        "Seconds since the proxy started.",
    );
    let _ = writeln!(
        out,
        "aster_uptime_seconds {}",
        stats::started().elapsed().as_secs()
    );

    let pools: Vec<_> = totals
        .iter()
        .map(|(c, (pool, _))| (format!("cluster=\"{}\"", esc(&c.name)), pool))
        .collect();
    let pool = Family {
        counters: PoolStats::COUNTERS,
        labelled: PoolStats::LABELLED,
        histograms: PoolStats::HISTOGRAMS,
    };
    family(&mut out, pool, &pools);
    let backends: Vec<_> = totals
        .iter()
        .flat_map(|(c, (_, servers))| {
            servers.iter().map(|(b, st)| {
                let labels = format!("cluster=\"{}\",backend=\"{}\"", esc(&c.name), esc(b));
                (labels, st)
            })
        })
        .collect();
    let server = Family {
        counters: ServerStats::COUNTERS,
        labelled: ServerStats::LABELLED,
        histograms: ServerStats::HISTOGRAMS,
    };
    family(&mut out, server, &backends);
    header(
        &mut out,
        "aster_backend_up",
        "gauge",
        "1 unless the health checks ejected the backend.",
    );
    for (c, (_, servers)) in &totals {
        let health = c.health();
        for (i, (b, _)) in servers.iter().enumerate() {
            let ejected = health.get(i).is_some_and(|h| h.ejected);
            let _ = writeln!(
                out,
                "aster_backend_up{{cluster=\"{}\",backend=\"{}\"}} {}",
                esc(&c.name),
                esc(b),
                u8::from(!ejected)
            );
        }
    }
    out
}
