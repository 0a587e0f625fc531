//! Ordering under faults (issue 18): pipelining clients write
//! sequence-numbered values through aster while the harness kills and
//! restarts servers, stops them (past `read_timeout` or not), reloads the
//! proxy (keys moving or not), migrates slots (ASK and MOVED come back
//! mid-pipeline, also from a source stopped while aster learns the new
//! owner) and fails masters over (CLUSTER FAILOVER, kill -9). A model per
//! client checks every reply.
//!
//! Each client has its own keys and sends pipelines of 10-50 commands in one
//! write, a new one every 40 ms while up to six are unanswered (so requests
//! keep arriving while earlier ones wait): SET/GET, INCR, RPUSH/LINDEX,
//! MSET/MGET (keys on different servers or slots), and for even clients
//! MULTI/SET/INCR/RPUSH/EXEC on one hash tag and RPUSH then BLPOP (0.2 s) on
//! a queue (odd clients send plain commands only, which nothing but the
//! ordering rules holds back). Every value written is `<client>:<seq>`,
//! `seq` growing in the order the client sends.
//!
//! What the faults permit, so what the checks allow:
//! - A reply is the right one or a clear error: a connection error (`ERR
//!   Connection refused / timed out / reset by peer`, `Broken pipe`, the
//!   client's own backend connection lost), in cluster mode `CLUSTERDOWN` or
//!   `TRYAGAIN`, and `EXECABORT` on EXEC. `MOVED`/`ASK` reach the client only
//!   from the connections aster leases to a transaction or a blocking
//!   command, which do not follow redirects (README: "Blocking commands and
//!   transactions"). Any other error, a closed connection or a malformed
//!   reply fails the test. During the faults aster hides (a reload, a slot
//!   migration, CLUSTER FAILOVER) a plain command gets no error at all but
//!   Redis Cluster's own `CLUSTERDOWN`, which a node answers for a moment
//!   while a failover's new epoch spreads.
//! - A request answered with an error has an unknown outcome: its value may
//!   show up, after the last acknowledged one. A server stopped past
//!   `read_timeout` may run such a request *late*, after later ones sent on a
//!   new connection (`late`: redis mode, where a server is stopped): then its
//!   value may show up at any time. A transaction answered `EXECABORT` did
//!   not run.
//! - Data-losing faults: a killed server without persistence, a master
//!   killed before its replica caught up (or restarted empty and briefly
//!   claiming its old slots), a reload that moves keys to other servers
//!   (their old values stay behind). The controller makes each one an
//!   interval of the loss epoch (odd while it lasts); a check relying on a
//!   write sent before the interval ended only requires that what it reads
//!   is a value the client wrote (and popped once, before the loss).
//! - Otherwise: no acknowledged write is lost or overtaken. A read returns
//!   the key's last acknowledged value or a later attempted one; INCR
//!   replies and list lengths strictly increase (by one per acknowledged
//!   request, plus at most the failed ones); a list holds every acknowledged
//!   element, in the order sent; a queue pops acknowledged elements in order,
//!   each once.
//! - Recovery: after each fault ends, every client completes an error-free
//!   pipeline within 3 s; the proxy answers PING within 2 s throughout; no
//!   client waits over 10 s for a reply.
//!
//! `ASTER_CHAOS_SEED` replays a run's workload (the faults' timing is not
//! replayed).
//!
//! | file              | holds                                                |
//! |-------------------|------------------------------------------------------|
//! | `shared.rs`       | what the controller and the clients share, the waits |
//! | `model.rs`        | a client's keys and the model of what they may hold  |
//! | `ops.rs`          | the commands, the checks of their replies, a client  |
//! | `run.rs`          | a run: clients, pingers, the report                  |
//! | `redis_mode.rs`   | the redis-mode scenario                              |
//! | `cluster_mode.rs` | the cluster-mode scenario and its slot moves         |

use std::time::Duration;

mod cluster_mode;
mod model;
mod ops;
mod redis_mode;
mod run;
mod shared;

const CLIENTS: usize = 4;
/// Pipelines a client may have unanswered: while one is stuck (a stopped
/// server), the client sends another every `PACE`, up to this many, so
/// requests keep arriving while earlier ones wait, as from a real
/// pipelining client.
const WINDOW: usize = 6;
const PACE: Duration = Duration::from_millis(40);
/// Every client completes an error-free pipeline this soon after a fault ends.
const RECOVERY: Duration = Duration::from_secs(3);
/// The proxy answers PING this fast throughout.
const PING_LIMIT: Duration = Duration::from_secs(2);
/// Bounds each wait of the controller on the clients.
const WAIT_LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(5);
