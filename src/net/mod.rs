//! Sockets: non-blocking reads and vectored writes reduced to a few outcomes
//! (for the workers), and non-blocking request/reply connections (for the
//! supervisor's pings and topology queries, many waited on in one poll).

pub mod rpc;
pub mod sock;
pub(crate) mod stream;
