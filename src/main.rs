//! aster-proxy: a Redis proxy (twemproxy-compatible sharding and Redis Cluster).
//! The program lives in the library (`control::app`), so its parts stay private
//! to it; this is the shell.

#![deny(rust_2018_idioms, unused_imports)]

use std::process::ExitCode;

/// glibc's allocator, counting large frees so memory goes back to the
/// system after a burst (`control::memory`).
#[global_allocator]
static ALLOCATOR: aster_proxy::control::memory::Allocator = aster_proxy::control::memory::Allocator;

fn main() -> ExitCode {
    aster_proxy::control::app::main()
}
