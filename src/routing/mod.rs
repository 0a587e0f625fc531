//! Where a request goes: the immutable route table a worker consults for
//! every request (built from the configuration and the `hashing` leaf), the
//! handle that publishes it, and the handle a worker asks for a refresh
//! through.

pub(crate) mod node;
pub(crate) mod refresh;
pub(crate) mod table;
