//! The memcached ASCII protocol, framed in place like RESP: requests
//! (`request.rs`) and replies (`reply.rs`), resumable across reads, never
//! copying and never allocating by a length a peer sent.
//!
//! Not yet behind `wire::Wire`: memcached pools are the next step of the
//! issue that adds them (routing, multi-get split and merge, `noreply`).

use std::fmt;

mod reply;
mod request;

pub use reply::McReplyScanner;
pub use request::{Admin, Framed, McCommand, McRequestParser, valid_key};

/// memcached's longest key.
pub const MAX_KEY: usize = 250;

#[derive(Clone, Copy, Debug)]
pub struct McLimits {
    /// The longest command line, CRLF included (a multi-get of many keys
    /// is one line).
    pub max_line: usize,
    /// Tokens on one line (a multi-get's keys).
    pub max_tokens: usize,
    /// The largest data block.
    pub max_value: usize,
}

impl Default for McLimits {
    fn default() -> Self {
        McLimits {
            max_line: 1024 * 1024,
            max_tokens: 16 * 1024,
            max_value: 512 * 1024 * 1024,
        }
    }
}

/// What is wrong with a request or a reply, as memcached words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McError {
    /// An unknown command, or a known one with the wrong number of tokens.
    UnknownCommand,
    BadFormat,
    BadDelta,
    KeyTooLong,
    BadKey,
    BadDataChunk,
    TooManyKeys,
    /// Fatal: the connection closes after the answer.
    LineTooLong,
    /// Fatal: a data block past `max_value`.
    TooLarge,
    /// A server's reply that is not memcached's.
    BadReply,
}

impl McError {
    /// The line memcached answers with.
    pub fn reply(self) -> &'static [u8] {
        match self {
            McError::UnknownCommand => b"ERROR\r\n",
            McError::BadFormat => b"CLIENT_ERROR bad command line format\r\n",
            McError::BadDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            McError::KeyTooLong => b"CLIENT_ERROR key too long (max 250 bytes)\r\n",
            McError::BadKey => b"CLIENT_ERROR key contains a control character\r\n",
            McError::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            McError::TooManyKeys => b"CLIENT_ERROR too many keys\r\n",
            McError::LineTooLong => b"CLIENT_ERROR line too long\r\n",
            McError::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            McError::BadReply => b"SERVER_ERROR unexpected reply from the server\r\n",
        }
    }

    /// Whether memcached would close the connection after it.
    pub fn is_fatal(self) -> bool {
        matches!(self, McError::LineTooLong | McError::TooLarge)
    }
}

impl fmt::Display for McError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.reply();
        f.write_str(&String::from_utf8_lossy(&line[..line.len() - 2]))
    }
}

#[cfg(test)]
mod tests;
