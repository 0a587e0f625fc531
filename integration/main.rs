//! Integration tests: the real binary against real redis-server processes.

mod harness;

mod admin;
mod bench;
mod chaos;
mod client_libraries;
mod client_patterns;
mod cluster;
mod commands;
mod compat;
mod config_cli;
mod config_matrix;
mod dedicated;
mod differential;
mod fanout;
mod faults;
mod metrics;
mod ordering;
mod protocol;
mod pubsub;
mod pubsub_delivery;
mod redis_mode;
mod regressions;
mod reliability;
mod reload;
mod scripts;
mod supervisor;
mod twemproxy;
mod unix_servers;
mod unix_sockets;

use std::process::Command;

#[test]
fn version_flag_prints_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_aster-proxy"))
        .arg("--version")
        .output()
        .expect("run aster-proxy");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("aster-proxy "));
}
