//! The scripts a worker has seen go through it (EVAL bodies, SCRIPT LOAD),
//! by their sha1, and the servers it knows hold each one. Redis caches a
//! script only on the server that ran or loaded it, so an EVALSHA for a key
//! on another server would get NOSCRIPT: instead, an EVALSHA of a known
//! script bound for a server not known to hold it goes as EVAL with the
//! body, in the EVALSHA's place (same connection, same position in the
//! client's order), which runs it and caches it there; later ones go as
//! they are.
//!
//! Bounded: at most `MAX_SCRIPTS` bodies and `MAX_BYTES` in all, the least
//! recently used going first; a larger body is not kept (its EVALSHA then
//! behaves as on Redis). A SCRIPT FLUSH through any worker of the cluster
//! empties every worker's cache before it next looks (a shared counter),
//! so an EVALSHA after it gets NOSCRIPT, as from Redis.

use std::collections::HashMap;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::config::Addr;
use crate::protocol::command::Args;
use crate::protocol::resp;

const MAX_SCRIPTS: usize = 1024;
const MAX_BYTES: usize = 4 << 20;

type Sha = [u8; 20];

struct Script {
    body: Bytes,
    /// Servers known to hold it: those it was sent to (EVAL, or an
    /// EVALSHA rewritten into EVAL).
    on: Vec<Addr>,
    /// For eviction: the cache's clock when it was last used.
    used: u64,
}

#[derive(Default)]
pub(crate) struct Scripts {
    by_sha: HashMap<Sha, Script>,
    bytes: usize,
    clock: u64,
    /// The cluster's SCRIPT FLUSH count this cache is in step with.
    flushes: u64,
}

impl Scripts {
    /// Forgets everything if a SCRIPT FLUSH went through since last time.
    pub(crate) fn sync(&mut self, flushes: u64) {
        if flushes != self.flushes {
            self.flushes = flushes;
            self.by_sha.clear();
            self.bytes = 0;
        }
    }

    /// SCRIPT LOAD `body` (sent to every server, which may fail on some:
    /// none is marked as holding it).
    pub(crate) fn loaded(&mut self, body: &[u8]) {
        self.entry(body);
    }

    /// EVAL or EVAL_RO of `body` sent to server `at`, which caches it.
    pub(crate) fn ran(&mut self, body: &[u8], at: &Addr) {
        if let Some(s) = self.entry(body)
            && !s.on.contains(at)
        {
            s.on.push(at.clone());
        }
    }

    /// EVALSHA `sha` bound for server `at`: the body to send instead, when
    /// this cache knows the script and not that `at` holds it (it will,
    /// once the EVAL is sent: marked now).
    pub(crate) fn body_for(&mut self, sha: &[u8], at: &Addr) -> Option<Bytes> {
        let sha = parse_sha(sha)?;
        self.clock += 1;
        let s = self.by_sha.get_mut(&sha)?;
        s.used = self.clock;
        if s.on.contains(at) {
            return None;
        }
        s.on.push(at.clone());
        Some(s.body.clone())
    }

    /// The entry of `body`, made if new and it fits; its clock bumped.
    fn entry(&mut self, body: &[u8]) -> Option<&mut Script> {
        if body.len() > MAX_BYTES / 4 {
            return None;
        }
        let sha: Sha = Sha1::digest(body).into();
        self.clock += 1;
        if !self.by_sha.contains_key(&sha) {
            while self.by_sha.len() >= MAX_SCRIPTS || self.bytes + body.len() > MAX_BYTES {
                self.evict();
            }
            self.bytes += body.len();
            let script = Script {
                body: Bytes::copy_from_slice(body),
                on: Vec::new(),
                used: 0,
            };
            self.by_sha.insert(sha, script);
        }
        let s = self.by_sha.get_mut(&sha)?;
        s.used = self.clock;
        Some(s)
    }

    /// Drops the least recently used script (a scan: eviction is rare,
    /// and the cache small).
    fn evict(&mut self) {
        let oldest = self
            .by_sha
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| *k);
        match oldest.and_then(|k| self.by_sha.remove(&k)) {
            Some(s) => self.bytes -= s.body.len(),
            None => self.bytes = 0,
        }
    }
}

/// A sha as Redis reads EVALSHA's: 40 hex digits, either case.
fn parse_sha(hex: &[u8]) -> Option<Sha> {
    if hex.len() != 40 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 20];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// EVALSHA / EVALSHA_RO `sha numkeys ...` as EVAL / EVAL_RO `body numkeys ...`.
pub(crate) fn as_eval(args: &(impl Args + ?Sized), body: &[u8]) -> Bytes {
    let name: &[u8] = if args.get(0).eq_ignore_ascii_case(b"evalsha_ro") {
        b"EVAL_RO"
    } else {
        b"EVAL"
    };
    let mut words: Vec<&[u8]> = Vec::with_capacity(args.len());
    words.push(name);
    words.push(body);
    for i in 2..args.len() {
        words.push(args.get(i));
    }
    resp::command(&words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"return redis.call('incr', KEYS[1])";
    const SHA: &[u8] = b"2bab3b661081db58bd2341920e0ba7cf5dc77b25";

    fn addr(port: u16) -> Addr {
        Addr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn an_evalsha_becomes_eval_once_per_server_that_lacks_the_script() {
        let mut s = Scripts::default();
        assert_eq!(s.body_for(SHA, &addr(1)), None, "unknown script");
        s.ran(BODY, &addr(1));
        assert_eq!(s.body_for(SHA, &addr(1)), None, "ran there");
        assert_eq!(s.body_for(SHA, &addr(2)).as_deref(), Some(BODY));
        assert_eq!(s.body_for(SHA, &addr(2)), None, "sent there as EVAL");
        let upper = SHA.to_ascii_uppercase();
        assert_eq!(s.body_for(&upper, &addr(3)).as_deref(), Some(BODY));
        for bad in [&b"2bab"[..], b"zzab3b661081db58bd2341920e0ba7cf5dc77b25"] {
            assert_eq!(s.body_for(bad, &addr(4)), None);
        }
        // SCRIPT LOAD: known, held nowhere for sure.
        s.loaded(b"return 1");
        let sha1 = b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        assert_eq!(
            s.body_for(sha1, &addr(1)).as_deref(),
            Some(&b"return 1"[..])
        );
        // A SCRIPT FLUSH anywhere: forgotten.
        s.sync(1);
        assert_eq!(s.body_for(SHA, &addr(5)), None);
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recently_used() {
        let mut s = Scripts::default();
        s.ran(BODY, &addr(1));
        for i in 0..MAX_SCRIPTS + 10 {
            s.loaded(format!("return {i}").as_bytes());
            // Used all along: never the least recently used.
            assert_eq!(s.body_for(SHA, &addr(1)), None);
        }
        assert_eq!(s.by_sha.len(), MAX_SCRIPTS);
        assert_eq!(s.body_for(SHA, &addr(9)).as_deref(), Some(BODY));
        let big = vec![b' '; MAX_BYTES / 8];
        for i in 0..20u8 {
            let mut body = big.clone();
            body[0] = b'a' + i;
            s.loaded(&body);
        }
        assert!(s.bytes <= MAX_BYTES, "{}", s.bytes);
        assert_eq!(
            s.bytes,
            s.by_sha.values().map(|x| x.body.len()).sum::<usize>()
        );
        s.loaded(&vec![b' '; MAX_BYTES]);
        assert!(s.bytes <= MAX_BYTES, "a body too large is not kept");
    }

    #[test]
    fn evalsha_is_rewritten_into_eval() {
        let args: Vec<&[u8]> = vec![b"evalsha", SHA, b"1", b"k", b"a"];
        assert_eq!(
            as_eval(&args, BODY),
            resp::command(&[b"EVAL", BODY, b"1", b"k", b"a"])
        );
        let args: Vec<&[u8]> = vec![b"EVALSHA_RO", SHA, b"0"];
        assert_eq!(
            as_eval(&args, BODY),
            resp::command(&[b"EVAL_RO", BODY, b"0"])
        );
    }
}
