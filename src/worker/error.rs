//! How a backend connection fails, on the data path. One enum renders its
//! twemproxy text once (clients and their alerting match on those texts),
//! names the stats counter it counts in, and says whether a read it failed
//! may be retried on the master.

use std::fmt;
use std::io;

use bytes::Bytes;

use crate::net::sock;
use crate::protocol::resp;

/// The stats counter a failure counts in: twemproxy's `server_eof`,
/// `server_timedout` and `server_err`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Eof,
    Timeout,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendError {
    /// The connection could not be made (the system's text).
    Connect(String),
    /// A read or a write failed (the system's text).
    Io(String),
    /// The server closed the connection with requests in flight.
    Eof,
    /// No reply within `read_timeout`, no write progress within
    /// `write_timeout`, or a connect unfinished after it.
    Timeout,
    /// The server's bytes are not RESP, or a reply came with nothing in flight.
    Protocol(String),
    /// A command sent on connect (AUTH, HELLO 3, SELECT, READONLY) was
    /// refused: the server's own error text.
    InitRejected(String),
    /// The route table names no server for the request.
    NoServer,
}

impl BackendError {
    pub(crate) fn connect(e: &io::Error) -> BackendError {
        BackendError::Connect(sock::error_text(e))
    }

    pub(crate) fn io(e: &io::Error) -> BackendError {
        BackendError::Io(sock::error_text(e))
    }

    pub(crate) fn fault(&self) -> Fault {
        match self {
            BackendError::Eof => Fault::Eof,
            BackendError::Timeout => Fault::Timeout,
            _ => Fault::Error,
        }
    }

    /// The error reply every request it failed gets: `-ERR <text>`, or the
    /// server's own error line when it refused a command sent on connect
    /// (`-WRONGPASS ...`, `-ERR DB index is out of range`).
    pub(crate) fn reply(&self) -> Bytes {
        match self {
            BackendError::InitRejected(text) => resp::error(text),
            _ => resp::error(&format!("ERR {self}")),
        }
    }

    /// A read sent to a replica and failed by this may go to the master:
    /// the replica never answered it, and a read is safe to repeat.
    pub(crate) fn read_may_retry_on_master(&self) -> bool {
        !matches!(self, BackendError::NoServer)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Connect(text) | BackendError::Io(text) => f.write_str(text),
            BackendError::Eof => f.write_str("Connection reset by peer"),
            BackendError::Timeout => f.write_str("Connection timed out"),
            BackendError::Protocol(text) | BackendError::InitRejected(text) => f.write_str(text),
            BackendError::NoServer => f.write_str("no server for this key"),
        }
    }
}

impl std::error::Error for BackendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twemproxy_texts_and_faults() {
        let refused = BackendError::connect(&io::Error::from_raw_os_error(111));
        assert_eq!(&refused.reply()[..], b"-ERR Connection refused\r\n");
        assert_eq!(refused.fault(), Fault::Error);
        assert_eq!(
            &BackendError::Timeout.reply()[..],
            b"-ERR Connection timed out\r\n"
        );
        assert_eq!(BackendError::Timeout.fault(), Fault::Timeout);
        assert_eq!(
            &BackendError::Eof.reply()[..],
            b"-ERR Connection reset by peer\r\n"
        );
        assert_eq!(BackendError::Eof.fault(), Fault::Eof);
        let init = BackendError::InitRejected("WRONGPASS invalid".into());
        assert_eq!(&init.reply()[..], b"-WRONGPASS invalid\r\n");
        assert!(init.read_may_retry_on_master());
        assert!(!BackendError::NoServer.read_may_retry_on_master());
    }
}
