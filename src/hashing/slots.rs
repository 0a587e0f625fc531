//! Redis Cluster: key slots, the slot map, and learning it from the nodes
//! with CLUSTER SLOTS.

pub const SLOT_COUNT: usize = 16384;
pub(crate) const UNASSIGNED: u16 = u16::MAX;

/// Redis Cluster's hash tag: the text between the first '{' and the first
/// '}' after it, when not empty; else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

pub fn slot_of(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) % SLOT_COUNT as u16
}

/// The nodes serving one range of slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Index into the table's servers.
    pub master: usize,
    pub replicas: Vec<usize>,
}

/// Slot -> shard, for all 16384 slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    pub(crate) slot_shard: Vec<u16>,
    pub shards: Vec<Shard>,
}

impl SlotMap {
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let s = *self.slot_shard.get(slot as usize)?;
        if s == UNASSIGNED {
            return None;
        }
        self.shards.get(s as usize)
    }

    pub fn covered(&self) -> usize {
        self.slot_shard.iter().filter(|&&s| s != UNASSIGNED).count()
    }
}

/// The target of a `-MOVED slot host:port` or `-ASK slot host:port` reply.
pub fn redirect_target(reply: &[u8]) -> Option<(bool, &str)> {
    let text = std::str::from_utf8(reply.strip_prefix(b"-")?.strip_suffix(b"\r\n")?).ok()?;
    let mut words = text.split(' ');
    let ask = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    words.next()?;
    Some((ask, words.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
    }

    #[test]
    fn redirects() {
        assert_eq!(
            redirect_target(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some((false, "127.0.0.1:6381"))
        );
        assert_eq!(
            redirect_target(b"-ASK 3999 127.0.0.1:6381\r\n"),
            Some((true, "127.0.0.1:6381"))
        );
        assert_eq!(redirect_target(b"-ERR x\r\n"), None);
    }
}
