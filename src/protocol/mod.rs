//! The Redis protocol as the proxy needs it: RESP requests and replies
//! scanned in place, reply builders, the command table with its key specs,
//! multi-key split and merge, pub/sub frames, fan-out to every server, and
//! the commands the proxy answers itself.
//! Nothing here does I/O or knows about connections. The worker reaches it
//! through `wire::Wire`, the seam a second protocol plugs into.

pub mod command;
pub mod fanout;
pub(crate) mod local;
pub mod memcache;
pub mod multikey;
pub mod pubsub;
pub mod refusal;
pub mod resp;
pub mod wire;
