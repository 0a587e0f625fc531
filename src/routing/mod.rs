//! Where a key goes: twemproxy's hash functions and distributions (ketama,
//! modula, random), Redis Cluster's slots, and the immutable route table a
//! worker consults for every request.

pub mod hash;
pub mod ketama;
pub(crate) mod node;
pub mod slots;
pub(crate) mod table;
pub(crate) mod topology;
