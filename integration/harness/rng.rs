//! Randomized tests: the library's generator (a seed reproduces a failure)
//! and where a test takes its seed. Owns no process or file.

pub use aster_proxy::rng::Rng;

/// The seed named by environment variable `var` (to replay a failure), else
/// one from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
