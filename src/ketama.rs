//! Placeholder until the twemproxy distribution module lands.
#![allow(dead_code, non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Ketama,
    Random,
}
impl Distribution {
    pub fn from_name(name: &str) -> Option<Self> {
        (name == "ketama").then_some(Distribution::Ketama)
    }
    pub fn name(self) -> &'static str {
        "ketama"
    }
}
pub struct RingServer<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub live: bool,
}
pub struct Ring {
    live: Vec<usize>,
}
impl Ring {
    pub fn build(_dist: Distribution, servers: &[RingServer<'_>]) -> Ring {
        Ring {
            live: servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.live)
                .map(|(i, _)| i)
                .collect(),
        }
    }
    pub fn pick(&self, hash: u32) -> Option<usize> {
        if self.live.is_empty() {
            None
        } else {
            Some(self.live[hash as usize % self.live.len()])
        }
    }
}
