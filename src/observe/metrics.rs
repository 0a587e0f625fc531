//! Prometheus metrics on `--metrics PORT`: a tiny HTTP/1.x responder for
//! `GET /metrics`, one request per connection, each connection served on its
//! own (`observe::port`), rendered from the same counters the stats port
//! serves.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::observe::port::{self, Conn};
use crate::observe::stats::{self, Histogram, LATENCY_BUCKETS_US, Registry};

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

/// A metric read off a counters struct: name, type, help, getter.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

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

    let per_cluster: [Family<stats::PoolStats>; 10] = [
        (
            "aster_client_connections",
            "gauge",
            "Clients connected now.",
            |p| p.client_connections,
        ),
        (
            "aster_client_connections_total",
            "counter",
            "Clients accepted.",
            |p| p.total_connections,
        ),
        (
            "aster_commands_total",
            "counter",
            "Requests received from clients.",
            |p| p.commands,
        ),
        (
            "aster_client_errors_total",
            "counter",
            "Client connections closed by an error.",
            |p| p.client_err,
        ),
        (
            "aster_forward_errors_total",
            "counter",
            "Requests answered with an error because their backend was down.",
            |p| p.forward_error,
        ),
        (
            "aster_fragments_total",
            "counter",
            "Sub-requests made by splitting multi-key commands.",
            |p| p.fragments,
        ),
        (
            "aster_dedicated_connections_in_use",
            "gauge",
            "Backend connections leased to one client (blocking command, transaction).",
            |p| p.dedicated_in_use,
        ),
        (
            "aster_dedicated_connections_pooled",
            "gauge",
            "Idle dedicated backend connections kept for the next client.",
            |p| p.dedicated_pooled,
        ),
        (
            "aster_dedicated_connections_refused_total",
            "counter",
            "Clients refused a dedicated connection (max_dedicated_connections).",
            |p| p.dedicated_refused,
        ),
        (
            "aster_blocked_clients",
            "gauge",
            "Clients waiting in a blocking command.",
            |p| p.blocked_clients,
        ),
    ];
    for (name, kind, help, get) in per_cluster {
        header(&mut out, name, kind, help);
        for (c, (pool, _)) in &totals {
            let _ = writeln!(out, "{name}{{cluster=\"{}\"}} {}", esc(&c.name), get(pool));
        }
    }
    header(
        &mut out,
        "aster_backend_ejections_total",
        "counter",
        "Times a backend was ejected by the health checks.",
    );
    for (c, _) in &totals {
        let _ = writeln!(
            out,
            "aster_backend_ejections_total{{cluster=\"{}\"}} {}",
            esc(&c.name),
            c.server_ejects.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "aster_request_duration_seconds",
        "histogram",
        "From queueing a request on a backend to its reply.",
    );
    for (c, (pool, _)) in &totals {
        histogram(
            &mut out,
            "aster_request_duration_seconds",
            &format!("cluster=\"{}\"", esc(&c.name)),
            &pool.latency,
        );
    }

    let per_backend: [Family<stats::ServerStats>; 6] = [
        (
            "aster_backend_requests_total",
            "counter",
            "Requests sent to the backend.",
            |s| s.requests,
        ),
        (
            "aster_backend_responses_total",
            "counter",
            "Replies read from the backend.",
            |s| s.responses,
        ),
        (
            "aster_backend_errors_total",
            "counter",
            "Backend connections that failed (errors and resets).",
            |s| s.server_err + s.server_eof,
        ),
        (
            "aster_backend_timeouts_total",
            "counter",
            "Backend connections reset after a timeout.",
            |s| s.server_timedout,
        ),
        (
            "aster_backend_connections",
            "gauge",
            "Open connections to the backend.",
            |s| s.server_connections,
        ),
        (
            "aster_backend_in_flight",
            "gauge",
            "Requests queued or sent and not yet answered.",
            |s| s.in_queue + s.out_queue,
        ),
    ];
    for (name, kind, help, get) in per_backend {
        header(&mut out, name, kind, help);
        for (c, (_, servers)) in &totals {
            for (b, st) in servers {
                let _ = writeln!(
                    out,
                    "{name}{{cluster=\"{}\",backend=\"{}\"}} {}",
                    esc(&c.name),
                    esc(b),
                    get(st)
                );
            }
        }
    }
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
    header(
        &mut out,
        "aster_backend_request_duration_seconds",
        "histogram",
        "From queueing a request on this backend to its reply.",
    );
    for (c, (_, servers)) in &totals {
        for (b, st) in servers {
            let labels = format!("cluster=\"{}\",backend=\"{}\"", esc(&c.name), esc(b));
            histogram(
                &mut out,
                "aster_backend_request_duration_seconds",
                &labels,
                &st.latency,
            );
        }
    }
    out
}
