//! Where a key hashes to, with nothing else to know: twemproxy's hash
//! functions and distributions (ketama, modula, random) and Redis Cluster's
//! slots (CRC16, the slot map, MOVED/ASK parsing). A leaf: the configuration
//! names these, the route table applies them, and they import no other
//! folder of the crate.

pub mod hash;
pub mod ketama;
pub mod slots;
