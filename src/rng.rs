//! The one small generator (xorshift64*): the random distribution's
//! placement and the replica choice at run time, and the randomized tests,
//! where a seed reproduces a run. Not for anything secret. (The property
//! tests draw from proptest's byte tape instead, so that a failure shrinks.)

/// xorshift64* (Vigna, 2016): 64 bits of state, which is never zero.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`; 0, which xorshift never leaves, counts as 1.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True about once in `n` calls.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    /// A seed gives a fixed sequence (here xorshift64*'s first output from
    /// seed 1): the random distribution places keys the same way from
    /// release to release, and a test's seed replays it.
    #[test]
    fn known_sequence() {
        let mut r = Rng::new(1);
        assert_eq!(r.next_u64(), 0x47e4_ce4b_896c_dd1d);
        assert_eq!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn below_stays_below() {
        let mut r = Rng::new(42);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }
}
