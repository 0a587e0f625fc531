//! Defect 4: blocking forms stall nobody.

use super::*;

#[test]
fn blocking_forms_stall_nobody_and_connection_state_commands_are_refused() {
    let shards = Shards::start_with(1, |c| {
        c.set("thread", "1")
            .set("server_connections", "1")
            .set("read_timeout", "1000")
    });
    let mut blocker = Raw::connect(shards.proxy.port());
    let mut normal = Raw::connect(shards.proxy.port());
    assert_eq!(normal.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    // Blocking forms wait on a connection of their own (see dedicated.rs):
    // the other client on the same worker is answered meanwhile.
    for cmd in [
        &["XREAD", "COUNT", "1", "BLOCK", "300", "STREAMS", "s", "$"][..],
        &["BLPOP", "l", "0.3"],
        &["BZPOPMIN", "z", "0.3"],
    ] {
        blocker.send(&encode(
            &cmd.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
        ));
        let started = Instant::now();
        assert_eq!(normal.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "GET waited {:?} behind {cmd:?}",
            started.elapsed()
        );
        let reply = blocker.read_one();
        assert!(
            reply.starts_with(b"*-1") || reply.starts_with(b"_"),
            "{cmd:?}: {}",
            show(&reply)
        );
    }
    // Commands that change a connection's state for all clients sharing
    // it, or count a connection's writes, are refused.
    for cmd in [
        &["WAIT", "1", "0"][..],
        &["WAITAOF", "1", "0", "0"],
        &["CLIENT", "PAUSE", "10000"],
        &["CLIENT", "REPLY", "OFF"],
        &["CLIENT", "TRACKING", "ON"],
        &["CLIENT", "NO-EVICT", "ON"],
        &["PUBSUB", "HELP"],
        &["MONITOR"],
        &["RESET"],
        &["READONLY"],
        &["DEBUG", "SLEEP", "5"],
        &["SCRIPT", "KILL"],
        &["FUNCTION", "KILL"],
    ] {
        let started = Instant::now();
        let reply = blocker.cmd_str(cmd);
        assert!(
            reply.starts_with(b"-ERR ") && show(&reply).contains("not supported by aster"),
            "{cmd:?}: {}",
            show(&reply)
        );
        assert!(started.elapsed() < Duration::from_millis(500), "{cmd:?}");
    }
    assert_eq!(normal.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
}
