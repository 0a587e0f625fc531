//! Sockets: non-blocking reads and vectored writes reduced to a few outcomes
//! (for the workers), and a blocking request/reply client with timeouts (for
//! the supervisor's pings and topology queries).

pub mod rpc;
pub mod sock;
