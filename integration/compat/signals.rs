//! Signals.

use super::*;

#[test]
fn signals_move_the_log_level_and_reopen_the_log() {
    let server = RedisServer::start();
    let (port, yml) = single_pool("sig", &server);
    let dir = TempDir::new("compat-signals");
    let log = dir.join("aster.log");
    // Default level (nutcracker's 5: notice, aster's info).
    let aster = Proxy::start_yml(&yml, &["-o", path_str(&log)]);
    let wait_log = |path: &Path, what: &str, f: &dyn Fn(&str) -> bool| {
        poll_until(Duration::from_secs(5), POLL, || {
            let t = read_lossy(path);
            f(&t).then_some(t)
        })
        .unwrap_or_else(|| panic!("log never showed {what}:\n{}", read_lossy(path)))
    };
    let is_debug = |l: &str| l.contains("[DEBUG]") && l.contains("connected");
    // No debug line at the default level.
    drop(Client::connect(port));
    thread::sleep(Duration::from_millis(200));
    assert!(
        !read_lossy(&log).lines().any(is_debug),
        "{}",
        read_lossy(&log)
    );

    signal(aster.pid(), "TTIN");
    wait_log(&log, "got SIGTTIN", &|t| {
        t.contains("got SIGTTIN: log level now DEBUG")
    });
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    wait_log(&log, "a debug line after SIGTTIN", &|t| {
        t.lines().any(is_debug)
    });

    signal(aster.pid(), "TTOU");
    let t = wait_log(&log, "got SIGTTOU", &|t| {
        t.contains("got SIGTTOU: log level now INFO")
    });
    let debug_lines = t.lines().filter(|l| is_debug(l)).count();
    drop(Client::connect(port));
    thread::sleep(Duration::from_millis(200));
    let t = read_lossy(&log);
    assert_eq!(
        t.lines().filter(|l| is_debug(l)).count(),
        debug_lines,
        "no debug line after SIGTTOU:\n{t}"
    );

    // logrotate: move the file away, SIGHUP, a new file at the -o path.
    let rotated = dir.join("aster.log.1");
    fs::rename(&log, &rotated).expect("rename log");
    signal(aster.pid(), "HUP");
    wait_log(&log, "the reopened line in a new file", &|t| {
        t.contains("got SIGHUP: log file") && t.contains("reopened")
    });
    assert!(
        !read_lossy(&rotated).contains("reopened"),
        "the reopened line should go to the new file"
    );
    assert!(read_lossy(&rotated).contains("got SIGTTOU"));
    assert_eq!(
        c.cmd(&["SET", "after", "hup"]),
        Reply::ok(),
        "serves after SIGHUP"
    );

    // SIGINT: exit 0.
    let mut aster = aster;
    signal(aster.pid(), "INT");
    let status = aster
        .wait_exit(Duration::from_secs(8))
        .expect("exits on SIGINT");
    assert!(status.success(), "SIGINT exit: {status}");
    assert!(
        read_lossy(&log).contains("got SIGINT"),
        "{}",
        read_lossy(&log)
    );
}
