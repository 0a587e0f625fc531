//! One test per engine bug found and fixed, each written to fail first.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Shards;

/// Client sockets lost TCP_NODELAY once: when a batch's replies left in
/// several writes (backends answer at different times), each later write
/// waited for redis-benchmark's delayed ACK (40 ms), and one client at
/// pipeline 16 made ~30 batches a second. 400 batches then took over 10 s;
/// with Nagle off they take well under a second even on a loaded machine.
#[test]
fn pipelined_batches_are_not_held_back_by_nagle() {
    let s = Shards::start(3);
    let started = Instant::now();
    let out = Command::new("redis-benchmark")
        .args(["-p", &s.proxy.port().to_string(), "-t", "get", "-n", "6400"])
        .args(["-c", "1", "-P", "16", "-r", "100000", "-q"])
        .output()
        .expect("run redis-benchmark");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(5),
        "400 batches of 16 GETs took {took:?}: replies are being held back"
    );
}

/// Reads stop at a short read (the socket is drained) unless the event says
/// the peer closed. A request and a half-close arriving together must still
/// be answered, and the close seen: the proxy then closes its side.
#[test]
fn request_with_half_close_is_answered_then_closed() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    let s = Shards::start(3);
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", s.proxy.port())).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$5\r\n1:eof\r\n")
            .expect("write");
        c.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        // read_to_end returns only when the proxy closes its side.
        c.read_to_end(&mut got)
            .expect("the proxy closes after answering");
        assert_eq!(got, b"+PONG\r\n$-1\r\n");
    }
}

/// Workers listen with SO_REUSEPORT, so a second proxy on the same port used
/// to start and silently take half the connections. It must refuse to start.
#[test]
fn a_second_proxy_on_a_busy_port_refuses_to_start() {
    let s = Shards::start(1);
    let dir = crate::harness::TempDir::new("busy-port");
    let path = dir.join("second.toml");
    let conf = format!(
        "[[clusters]]\nname = \"second\"\nlisten_addr = \"127.0.0.1:{}\"\nservers = [\"{}\"]\nthread = 2\n",
        s.proxy.port(),
        s.servers[0].addr()
    );
    std::fs::write(&path, conf).expect("write config");
    let out = crate::harness::run_proxy_bin(&["-c", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen"), "{err}");
}
