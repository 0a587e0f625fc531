//! memcached ASCII replies framed in place. A reply is one line, except:
//! `VALUE` items (each with a data block) up to `END` for the retrieval
//! commands; `STAT`, `ITEM` and `PREFIX` lines up to `END` for `stats`;
//! and the meta `VA` line with its data block. Lines are known without
//! the request: no other reply starts with those words.

use super::McError;

/// Frames replies, resuming where the last call stopped: lines already
/// passed (and data blocks already skipped) are not read again.
#[derive(Debug, Default)]
pub struct McReplyScanner {
    /// Bytes of the current reply already passed.
    at: usize,
    /// Inside a multi-line reply (`VALUE`/`STAT` lines so far): it ends at `END`.
    multi: bool,
}

/// Data blocks past this are refused: no memcached stores one.
const MAX_BLOCK: usize = 1 << 31;

impl McReplyScanner {
    /// The length of the complete reply at the front of `buf`; `None`
    /// until it is complete.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, McError> {
        loop {
            let Some(nl) = buf[self.at.min(buf.len())..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + self.at)
            else {
                return Ok(None);
            };
            let line = &buf[self.at..=nl];
            let word = line
                .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
                .next()
                .unwrap_or_default();
            let block = match word {
                b"VALUE" => Some(block_len(line, 3)?),
                b"VA" => Some(block_len(line, 1)?),
                _ => None,
            };
            let mut end = nl + 1;
            if let Some(n) = block {
                end += n + 2;
                if buf.len() < end {
                    // The block is not all here: come back to this line.
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(McError::BadReply);
                }
            }
            let continues = match word {
                b"VALUE" | b"STAT" | b"ITEM" | b"PREFIX" => true,
                b"END" => false,
                _ if self.multi => return Err(McError::BadReply),
                _ => false,
            };
            if continues {
                self.multi = true;
                self.at = end;
                continue;
            }
            self.at = 0;
            self.multi = false;
            return Ok(Some(end));
        }
    }

    pub fn is_idle(&self) -> bool {
        self.at == 0 && !self.multi
    }
}

/// The data block length in token `k` of a `VALUE` or `VA` line.
fn block_len(line: &[u8], k: usize) -> Result<usize, McError> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let tok = body
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .nth(k)
        .ok_or(McError::BadReply)?;
    if tok.is_empty() || !tok.iter().all(u8::is_ascii_digit) || tok.len() > 10 {
        return Err(McError::BadReply);
    }
    let n: usize = std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(McError::BadReply)?;
    if n > MAX_BLOCK {
        return Err(McError::BadReply);
    }
    Ok(n)
}
