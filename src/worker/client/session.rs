//! A client's transaction: WATCH on a connection of its own, then MULTI
//! with the commands queued until a keyed one picks the server.

use bytes::Bytes;
use mio::Token;

/// A transaction's server: the route server its keys live on, and the
/// client's own connection to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) server: usize,
    pub(crate) conn: Token,
}

/// A client's transaction state.
#[derive(Debug, Default)]
pub(crate) enum Session {
    #[default]
    Normal,
    /// WATCH went out on `Pin`'s connection; no MULTI yet.
    Watching(Pin),
    Multi(Multi),
}

/// Inside MULTI. Until a keyed command picks the server, nothing is sent:
/// commands the proxy can answer are queued here (frame and answer), and
/// go to the server first once it is picked.
#[derive(Debug, Default)]
pub(crate) struct Multi {
    pub(crate) pin: Option<Pin>,
    pub(crate) queued: Vec<(Bytes, Bytes)>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub(crate) aborted: bool,
}
