//! Every counter declared once. A family (a cluster's pool counters, one
//! server's counters) is one `family!` table: each row names a field, its
//! kind, and where it shows (twemproxy's stats JSON under the field's own
//! name with its `-D` text, an INFO key, a Prometheus name and help). The
//! table makes the struct workers count in, its sum over workers, and
//! `const` slices of descriptors; the stats JSON and `-D` text (`stats.rs`),
//! INFO (`worker/admin.rs`) and `/metrics` (`metrics.rs`) walk those slices,
//! so each lists the family's values in the table's order and none can
//! miss one. twemproxy's JSON fixes that order for the rows it has.

use std::ops::{Index, IndexMut};

use crate::protocol::refusal::Refusal;

/// Upper bounds (µs) of the latency histogram's buckets; a last one counts
/// everything slower.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Request latencies in fixed buckets, as Prometheus histograms want them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is the overflow bucket.
    pub counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    #[inline]
    pub fn observe(&mut self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us += us;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// A counter by kind: one value per kind, indexed as the row's `names`.
/// (Arrays past 32 have no `Default`, hence the wrapper.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByKind<const N: usize>(pub [u64; N]);

impl<const N: usize> Default for ByKind<N> {
    fn default() -> Self {
        ByKind([0; N])
    }
}

impl<const N: usize> Index<usize> for ByKind<N> {
    type Output = u64;
    fn index(&self, kind: usize) -> &u64 {
        &self.0[kind]
    }
}

impl<const N: usize> IndexMut<usize> for ByKind<N> {
    fn index_mut(&mut self, kind: usize) -> &mut u64 {
        &mut self.0[kind]
    }
}

impl<const N: usize> ByKind<N> {
    fn add(&mut self, o: &ByKind<N>) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }
}

/// What a value is to Prometheus: a counter only grows, a gauge is a level
/// now. Workers' values of either kind are summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn prometheus(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Where INFO shows a value: a `key:value` line of its Clients or Stats
/// section, or a `key=value` of each server's `backendN:` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Clients,
    Stats,
    Backends,
}

/// One row of a family's table: a field of `T`, or a value derived from
/// its fields (`derived`, never in twemproxy's JSON).
pub struct Desc<T> {
    /// The field's name, which is also its twemproxy stats key.
    pub name: &'static str,
    pub kind: Kind,
    /// In twemproxy's stats JSON, with this `-D` text.
    pub twemproxy: Option<&'static str>,
    pub info: Option<(Section, &'static str)>,
    /// Prometheus name and help.
    pub prom: Option<(&'static str, &'static str)>,
    pub get: fn(&T) -> u64,
}

impl<T> Desc<T> {
    /// Its INFO key when INFO shows it in `section`.
    pub fn info_key(&self, section: Section) -> Option<&'static str> {
        self.info.filter(|(s, _)| *s == section).map(|(_, k)| k)
    }
}

/// A row with a label: one value per kind (a `ByKind` field). `/metrics`
/// shows a series per kind under one header, labelled `label="<name>"`;
/// INFO a `<key>_<name>:N` line per kind counted; never twemproxy's JSON.
pub struct LabelledDesc<T> {
    pub kind: Kind,
    /// The label's name, and each kind's value of it, by index.
    pub label: &'static str,
    pub names: &'static [&'static str],
    pub info: Option<(Section, &'static str)>,
    /// Prometheus name and help.
    pub prom: Option<(&'static str, &'static str)>,
    pub get: fn(&T) -> &[u64],
}

impl<T> LabelledDesc<T> {
    /// Its INFO key prefix when INFO shows it in `section`.
    pub fn info_key(&self, section: Section) -> Option<&'static str> {
        self.info.filter(|(s, _)| *s == section).map(|(_, k)| k)
    }

    /// Each kind's name and value in `t`, in the kinds' order.
    pub fn values<'a>(&self, t: &'a T) -> impl Iterator<Item = (&'static str, u64)> + 'a {
        self.names
            .iter()
            .copied()
            .zip((self.get)(t).iter().copied())
    }
}

/// A latency histogram of a family: only `/metrics` shows it.
pub struct HistDesc<T> {
    /// Prometheus name and help.
    pub prom: (&'static str, &'static str),
    pub get: fn(&T) -> &Histogram,
}

macro_rules! opt {
    () => {
        None
    };
    ($v:expr) => {
        Some($v)
    };
}

/// Declares a family: its struct (`u64` counters, counters by kind, then
/// histograms), its `COUNTERS` (fields then derived values, in this order),
/// `LABELLED` and `HISTOGRAMS`, and `add`, the sum over workers.
macro_rules! family {
    (
        $(#[$meta:meta])*
        pub struct $T:ident {
            counters {$(
                $(#[$fdoc:meta])*
                $f:ident: $fkind:ident {
                    $(twemproxy: $tw:literal,)?
                    $(info: $fsec:ident $fkey:literal,)?
                    $(prom: $fname:literal $fhelp:literal,)?
                }
            )*}
            derived {$(
                $(#[$ddoc:meta])*
                $d:ident: $dkind:ident = $get:expr, {
                    $(info: $dsec:ident $dkey:literal,)?
                    $(prom: $dname:literal $dhelp:literal,)?
                }
            )*}
            labelled {$(
                $(#[$ldoc:meta])*
                $l:ident: $lkind:ident by $label:literal in $names:expr, {
                    $(info: $lsec:ident $lkey:literal,)?
                    $(prom: $lname:literal $lhelp:literal,)?
                }
            )*}
            histograms {$(
                $(#[$hdoc:meta])*
                $h:ident { prom: $hname:literal $hhelp:literal, }
            )*}
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $T {
            $($(#[$fdoc])* pub $f: u64,)*
            $($(#[$ldoc])* pub $l: ByKind<{ $names.len() }>,)*
            $($(#[$hdoc])* pub $h: Histogram,)*
        }

        impl $T {
            pub const COUNTERS: &'static [Desc<$T>] = &[
                $(Desc {
                    name: stringify!($f),
                    kind: Kind::$fkind,
                    twemproxy: opt!($($tw)?),
                    info: opt!($((Section::$fsec, $fkey))?),
                    prom: opt!($(($fname, $fhelp))?),
                    get: |s| s.$f,
                },)*
                $(Desc {
                    name: stringify!($d),
                    kind: Kind::$dkind,
                    twemproxy: None,
                    info: opt!($((Section::$dsec, $dkey))?),
                    prom: opt!($(($dname, $dhelp))?),
                    get: $get,
                },)*
            ];

            pub const LABELLED: &'static [LabelledDesc<$T>] = &[
                $(LabelledDesc {
                    kind: Kind::$lkind,
                    label: $label,
                    names: &$names,
                    info: opt!($((Section::$lsec, $lkey))?),
                    prom: opt!($(($lname, $lhelp))?),
                    get: |s| &s.$l.0,
                },)*
            ];

            pub const HISTOGRAMS: &'static [HistDesc<$T>] = &[
                $(HistDesc {
                    prom: ($hname, $hhelp),
                    get: |s| &s.$h,
                },)*
            ];

            /// Every counter a different value, from `first` up: tests
            /// tell by the value which field an output shows.
            #[cfg(test)]
            pub fn numbered(first: u64) -> $T {
                let mut n = first;
                let mut next = || {
                    n += 1;
                    n
                };
                $T {
                    $($f: next(),)*
                    $($l: ByKind(std::array::from_fn(|_| next())),)*
                    ..$T::default()
                }
            }

            pub fn add(&mut self, o: &$T) {
                $(self.$f += o.$f;)*
                $(self.$l.add(&o.$l);)*
                $(self.$h.add(&o.$h);)*
            }
        }
    };
}

family! {
    /// A cluster's own counters (twemproxy's pool counters), as one worker
    /// counts them or summed over workers.
    pub struct PoolStats {
        counters {
            /// Clients accepted since start (the JSON's top-level
            /// `total_connections` sums it over clusters).
            total_connections: Counter {
                info: Stats "total_connections_received",
                prom: "aster_client_connections_total" "Clients accepted.",
            }
            /// Requests parsed from clients.
            commands: Counter {
                info: Stats "total_commands_processed",
                prom: "aster_commands_total" "Requests received from clients.",
            }
            client_eof: Counter {
                twemproxy: "# eof on client connections",
                info: Stats "client_eof",
            }
            client_err: Counter {
                twemproxy: "# errors on client connections",
                info: Stats "client_err",
                prom: "aster_client_errors_total" "Client connections closed by an error.",
            }
            /// Clients connected now (the JSON's top-level `curr_connections`
            /// sums it over clusters).
            client_connections: Gauge {
                twemproxy: "# active client connections",
                prom: "aster_client_connections" "Clients connected now.",
            }
            /// Counted by the health checks, not by workers:
            /// `ClusterStats::total` fills it in.
            server_ejects: Counter {
                twemproxy: "# times backend server was ejected",
                info: Stats "server_ejects",
                prom: "aster_backend_ejections_total" "Times a backend was ejected by the health checks.",
            }
            forward_error: Counter {
                twemproxy: "# times we encountered a forwarding error",
                info: Stats "forward_error",
                prom: "aster_forward_errors_total" "Requests answered with an error because their backend was down.",
            }
            fragments: Counter {
                twemproxy: "# fragments created from a multi-vector request",
                info: Stats "fragments",
                prom: "aster_fragments_total" "Sub-requests made by splitting multi-key commands.",
            }
            dedicated_in_use: Gauge {
                info: Stats "dedicated_connections_in_use",
                prom: "aster_dedicated_connections_in_use" "Backend connections leased to one client (blocking command, transaction).",
            }
            dedicated_pooled: Gauge {
                info: Stats "dedicated_connections_pooled",
                prom: "aster_dedicated_connections_pooled" "Idle dedicated backend connections kept for the next client.",
            }
            /// Clients refused a dedicated connection (`max_dedicated_connections`).
            dedicated_refused: Counter {
                info: Stats "dedicated_connections_refused",
                prom: "aster_dedicated_connections_refused_total" "Clients refused a dedicated connection (max_dedicated_connections).",
            }
            blocked_clients: Gauge {
                info: Clients "blocked_clients",
                prom: "aster_blocked_clients" "Clients waiting in a blocking command.",
            }
        }
        derived {}
        labelled {
            /// Requests the proxy answered with an error of its own instead
            /// of running them, by `Refusal::kind`.
            refused: Counter by "kind" in Refusal::NAMES, {
                info: Stats "refused",
                prom: "aster_refused_total" "Requests the proxy refused with an error of its own, by kind.",
            }
        }
        histograms {
            /// From queueing each request on a backend to its reply, all servers.
            latency {
                prom: "aster_request_duration_seconds" "From queueing a request on a backend to its reply.",
            }
        }
    }
}

family! {
    /// One server's counters, as twemproxy names them.
    pub struct ServerStats {
        counters {
            server_eof: Counter {
                twemproxy: "# eof on server connections",
            }
            server_err: Counter {
                twemproxy: "# errors on server connections",
            }
            server_timedout: Counter {
                twemproxy: "# timeouts on server connections",
                info: Backends "timeouts",
                prom: "aster_backend_timeouts_total" "Backend connections reset after a timeout.",
            }
            server_connections: Gauge {
                twemproxy: "# active server connections",
                prom: "aster_backend_connections" "Open connections to the backend.",
            }
            /// µs since the epoch of its last ejection, 0 if never: from the
            /// health checks, not workers (`ClusterStats::total` fills it in).
            server_ejected_at: Gauge {
                twemproxy: "timestamp when server was ejected in usec since epoch",
            }
            requests: Counter {
                twemproxy: "# requests",
                info: Backends "requests",
                prom: "aster_backend_requests_total" "Requests sent to the backend.",
            }
            request_bytes: Counter {
                twemproxy: "total request bytes",
            }
            responses: Counter {
                twemproxy: "# responses",
                prom: "aster_backend_responses_total" "Replies read from the backend.",
            }
            response_bytes: Counter {
                twemproxy: "total response bytes",
            }
            in_queue: Gauge {
                twemproxy: "# requests in incoming queue",
            }
            in_queue_bytes: Gauge {
                twemproxy: "current request bytes in incoming queue",
            }
            out_queue: Gauge {
                twemproxy: "# requests in outgoing queue",
            }
            out_queue_bytes: Gauge {
                twemproxy: "current request bytes in outgoing queue",
            }
        }
        derived {
            errors: Counter = |s| s.server_err + s.server_eof, {
                info: Backends "errors",
                prom: "aster_backend_errors_total" "Backend connections that failed (errors and resets).",
            }
            in_flight: Gauge = |s| s.in_queue + s.out_queue, {
                prom: "aster_backend_in_flight" "Requests queued or sent and not yet answered.",
            }
        }
        labelled {}
        histograms {
            /// From queueing a request to its reply.
            latency {
                prom: "aster_backend_request_duration_seconds" "From queueing a request on this backend to its reply.",
            }
        }
    }
}
