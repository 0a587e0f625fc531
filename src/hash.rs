//! Placeholder until the twemproxy hash module lands.
#![allow(dead_code, non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    Fnv1a_64,
}
impl HashKind {
    pub fn from_name(name: &str) -> Option<HashKind> {
        (name == "fnv1a_64").then_some(HashKind::Fnv1a_64)
    }
    pub fn name(self) -> &'static str {
        "fnv1a_64"
    }
    pub fn hash(self, key: &[u8]) -> u32 {
        let mut h: u32 = 0x8422_2325;
        for &b in key {
            h ^= b as i8 as i32 as u32;
            h = h.wrapping_mul(0x1b3);
        }
        h
    }
}
pub fn hash_tag_slice(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else { return key };
    let Some(s) = key.iter().position(|&b| b == open) else {
        return key;
    };
    let Some(e) = key[s + 1..].iter().position(|&b| b == close) else {
        return key;
    };
    if e == 0 { key } else { &key[s + 1..s + 1 + e] }
}
