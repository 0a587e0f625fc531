//! Defects 6 and 7: replies aster builds itself, against a real redis-server.

use super::*;

/// Sends every command to both and compares the raw replies.
fn same_replies(reference: &mut Raw, aster: &mut Raw, cmds: &[Vec<Vec<u8>>]) {
    let mut diffs = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        let want = reference.cmd(&args);
        let got = aster.cmd(&args);
        if want != got {
            diffs.push(format!(
                "{}\n   redis: {}\n   aster: {}",
                show_cmd(cmd),
                show(&want),
                show(&got)
            ));
        }
    }
    assert!(diffs.is_empty(), "replies differ:\n{}", diffs.join("\n"));
}

fn words(list: &[&[&str]]) -> Vec<Vec<Vec<u8>>> {
    list.iter()
        .map(|c| c.iter().map(|w| w.as_bytes().to_vec()).collect())
        .collect()
}

#[test]
fn resp3_replies_built_by_aster_match_redis() {
    let shards = Shards::start(2);
    let reference = RedisServer::start();
    let mut r = Raw::connect(reference.port());
    let mut a = Raw::connect(shards.proxy.port());
    for c in [&mut r, &mut a] {
        let hello = c.cmd_str(&["HELLO", "3"]);
        assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    }
    same_replies(
        &mut r,
        &mut a,
        &words(&[
            &["CLIENT", "GETNAME"],
            &["CLIENT", "SETNAME", "app"],
            &["CLIENT", "GETNAME"],
            &["CLIENT", "SETNAME", ""],
            &["CLIENT", "GETNAME"],
            &["COMMAND", "DOCS", "nosuchcommand"],
            &["GET", "missing"],
            &["MGET", "missing", "nothere", "{x}a"],
            &["PING"],
            &["ECHO", "hi"],
        ]),
    );
    // HELLO SETNAME sets the name, an empty one clears it (HELLO's id and
    // version are aster's own).
    for (name, want) in [("x", &b"$1\r\nx\r\n"[..]), ("", b"_\r\n")] {
        let hr = r.cmd_str(&["HELLO", "3", "SETNAME", name]);
        let ha = a.cmd_str(&["HELLO", "3", "SETNAME", name]);
        assert_eq!(mask_hello(&hr), mask_hello(&ha));
        assert_eq!(r.cmd_str(&["CLIENT", "GETNAME"]), want);
        assert_eq!(a.cmd_str(&["CLIENT", "GETNAME"]), want);
    }
    // INFO is aster's own text, but its type must be Redis's: a verbatim
    // string in RESP3.
    let info = a.cmd_str(&["INFO", "server"]);
    assert!(info.starts_with(b"="), "{}", show(&info));
    assert!(
        show(&info).contains("\\r\\ntxt:# Server"),
        "{}",
        show(&info)
    );
    let info = r.cmd_str(&["INFO", "server"]);
    assert!(info.starts_with(b"="), "{}", show(&info));
    // COMMAND INFO of an unknown command is a RESP3 null (the server's own
    // reply: COMMAND goes to one).
    let ci = a.cmd_str(&["COMMAND", "INFO", "nosuchcommand"]);
    assert_eq!(ci, b"*1\r\n_\r\n", "{}", show(&ci));
    assert_eq!(ci, r.cmd_str(&["COMMAND", "INFO", "nosuchcommand"]));
    // RESP2 again: the RESP2 forms come back.
    for c in [&mut r, &mut a] {
        let hello = c.cmd_str(&["HELLO", "2"]);
        assert!(hello.starts_with(b"*14\r\n"), "{}", show(&hello));
    }
    same_replies(
        &mut r,
        &mut a,
        &words(&[
            &["CLIENT", "GETNAME"],
            &["COMMAND", "DOCS", "nosuchcommand"],
        ]),
    );
    assert_eq!(
        a.cmd_str(&["COMMAND", "INFO", "nosuch"]),
        r.cmd_str(&["COMMAND", "INFO", "nosuch"])
    );
    assert!(a.cmd_str(&["INFO", "server"]).starts_with(b"$"));
}

#[test]
fn error_texts_built_by_aster_match_redis() {
    let shards = Shards::start(3);
    let reference = RedisServer::start();
    let mut r = Raw::connect(reference.port());
    let mut a = Raw::connect(shards.proxy.port());
    let long = "x".repeat(200);
    let mut cmds = words(&[
        &["nosuchcmd"],
        &["nosuchcmd", "a", "b"],
        &["nosuchcmd", &long, "tail"],
        &["nosuchcmd", "a b", "c\r\nd"],
        &[
            "nosuchcmd",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "11",
            "12",
            "13",
            "14",
            "15",
            "16",
            "17",
            "18",
            "19",
            "20",
            "21",
            "22",
            "23",
            "24",
            "25",
            "26",
            "27",
            "28",
            "29",
            "30",
            "31",
            "32",
            "33",
        ],
        &["EVAL", "return 1", "-1"],
        &["EVAL", "return 1", "-1", "a"],
        &["EVAL", "return 1", "abc", "a"],
        &["EVAL", "return 1", "3", "a"],
        &["EVAL", "return 1", "01", "a"],
        &["EVAL_RO", "return 1", "2", "a"],
        &["EVALSHA", "abc", "5", "a"],
        &[
            "EVALSHA",
            "0123456789012345678901234567890123456789",
            "5",
            "a",
        ],
        &["EVALSHA", "0123456789012345678901234567890123456789", "-2"],
        &["FCALL", "f", "-1"],
        &["FCALL", "f", "x", "a"],
        &["FCALL", "f", "5", "a"],
        &["FCALL_RO", "f", "2", "a"],
        &["ZUNIONSTORE", "d", "2", "a"],
        &["ZINTERSTORE", "d", "3", "a"],
        &["ZINTERSTORE", "d", "x", "a"],
        &["ZUNIONSTORE", "d", "-1", "a"],
        &["ZUNIONSTORE", "d", "0", "a"],
        &["ZDIFFSTORE", "d", "4", "a"],
        &["ZUNION", "3", "a"],
        &["ZUNION", "0", "a"],
        &["ZINTER", "x", "a"],
        &["ZDIFF", "-1", "a"],
        &["ZINTERCARD", "0", "a"],
        &["ZINTERCARD", "5", "a"],
        &["SINTERCARD", "0", "a"],
        &["SINTERCARD", "x", "a"],
        &["SINTERCARD", "3", "a"],
        &["SINTERCARD", "-1", "a"],
        &["LMPOP", "0", "a", "LEFT"],
        &["LMPOP", "5", "a", "LEFT"],
        &["ZMPOP", "x", "a", "MIN"],
        &["OBJECT", "HELP"],
        &["OBJECT", "nosuch"],
        &["OBJECT", "ENCODING"],
        &["XINFO", "HELP"],
        &["XGROUP", "HELP"],
        &["XREAD", "COUNT", "1", "s", "0"],
        &["XREAD", "STREAMS", "a", "b", "0"],
        &["AUTH", "x"],
        &["AUTH", "u", "p"],
        &["AUTH", "a", "b", "c"],
        &["HELLO", "4"],
        &["HELLO", "1"],
        &["HELLO", "x"],
        &["HELLO", "2", "nosuchoption"],
        &["HELLO", "2", "SETNAME", "a b"],
        &["CLIENT", "SETNAME"],
        &["CLIENT", "GETNAME", "x"],
        &["CLIENT", "ID", "x"],
        &["SELECT", "x"],
        &["PING", "a", "b"],
        &["ECHO"],
        &["TIME", "x"],
        &["COMMAND", "COUNT", "x"],
    ]);
    // Binary never mangled: bytes above 0x7f stay, a NUL ends an argument
    // (Redis prints them with %s).
    cmds.push(vec![b"nosuch\xffcmd".to_vec(), b"\xfe\xff".to_vec()]);
    cmds.push(vec![b"bad".to_vec(), b"ab\0cd".to_vec(), b"e".to_vec()]);
    cmds.push(vec![vec![b'n'; 300], b"a".to_vec()]);
    same_replies(&mut r, &mut a, &cmds);
}

#[test]
fn auth_error_texts_match_redis() {
    let reference = RedisServer::start();
    assert_eq!(
        Raw::connect(reference.port()).cmd_str(&["CONFIG", "SET", "requirepass", "s3cret"]),
        b"+OK\r\n"
    );
    let backend = RedisServer::start();
    let conf = ClusterConf::new("auth", &[&backend]).set("password", "\"s3cret\"");
    let proxy = Proxy::start(&conf.to_toml());
    let mut r = Raw::connect(reference.port());
    let mut a = Raw::connect(proxy.port());
    same_replies(
        &mut r,
        &mut a,
        &words(&[
            &["PING"],
            &["HELLO"],
            &["HELLO", "3"],
            &["AUTH", "wrong"],
            &["AUTH", "default", "wrong"],
            &["AUTH", "nobody", "s3cret"],
            &["HELLO", "2", "AUTH", "default", "bad"],
            &["AUTH", "a", "b", "c"],
            &["GET", "k"],
            // Unknown command and arity come before authentication.
            &["SET", "k"],
            &["NOSUCH", "k"],
            &["AUTH", "s3cret"],
            &["GET", "k"],
            &["AUTH", "wrong"],
            // A failed AUTH leaves an authenticated connection authenticated.
            &["GET", "k"],
        ]),
    );
}

// ---------------------------------------------------------------------------

/// EXEC with arguments inside MULTI: Redis discards the transaction with
/// `-EXECABORT ... because of: wrong number of arguments`, whether or not a
/// queued command picked a server yet.
#[test]
fn exec_with_arguments_inside_multi_discards_the_transaction() {
    let reference = RedisServer::start();
    let s = Shards::start(2);
    let mut r = Raw::connect(reference.port());
    let mut a = Raw::connect(s.proxy.port());
    same_replies(
        &mut r,
        &mut a,
        &words(&[
            &["MULTI"],
            &["PING"],
            &["EXEC", "k"],
            &["GET", "{x}a"],
            &["DISCARD"],
            &["MULTI"],
            &["SET", "{x}a", "1"],
            &["EXEC", "k"],
            &["GET", "{x}a"],
            &["EXEC"],
        ]),
    );
}
