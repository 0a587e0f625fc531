//! aster-proxy: a Redis proxy (twemproxy-compatible sharding and Redis Cluster).

use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = getopts::Options::new();
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    let matches = match opts.parse(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("aster-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if matches.opt_present("h") {
        print!("{}", opts.usage("Usage: aster-proxy [options]"));
        return ExitCode::SUCCESS;
    }
    if matches.opt_present("V") {
        println!("aster-proxy {VERSION}");
        return ExitCode::SUCCESS;
    }
    ExitCode::SUCCESS
}
