//! aster-proxy: a Redis proxy (twemproxy-compatible sharding and Redis Cluster).
//! The program lives in the library (`control::app`), so its parts stay private
//! to it; this is the shell.

#![deny(rust_2018_idioms, unused_imports)]

use std::process::ExitCode;

fn main() -> ExitCode {
    aster_proxy::control::app::main()
}
