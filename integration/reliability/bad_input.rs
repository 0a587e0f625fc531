//! Bad input.

use super::*;

#[test]
fn malformed_requests_get_a_protocol_error_and_only_their_connection_closes() {
    let s = Shards::start(2);
    let port = s.proxy.port();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "steady", "0"]), Reply::ok());

    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    // Random bytes with no line end and no leading '*': an inline line that never ends.
    let garbage_line: Vec<u8> = (0..100_000)
        .map(|i| {
            loop {
                let b = rng.next_u64() as u8;
                if b != b'\n' && b != b'\r' && !(i == 0 && b == b'*') {
                    break b;
                }
            }
        })
        .collect();
    let mut long_count = b"*".to_vec();
    long_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let mut long_bulk_header = b"*1\r\n$".to_vec();
    long_bulk_header.extend(std::iter::repeat_n(b'2', 70 * 1024));
    let endless_inline = vec![b'x'; 70 * 1024];

    // (what, bytes, expected text when Redis has a well-known one)
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "bad type byte in a multibulk",
            b"*1\r\n+x\r\n".to_vec(),
            Some("ERR Protocol error: expected '$', got '+'"),
        ),
        (
            "negative bulk length",
            b"*1\r\n$-3\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "overflowing multibulk count",
            b"*99999999999999999999\r\n".to_vec(),
            Some("ERR Protocol error: invalid multibulk length"),
        ),
        (
            "overflowing bulk length",
            b"*1\r\n$99999999999999999999\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "non-numeric bulk length",
            b"*2\r\n$3\r\nGET\r\n$1x\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "bulk length over max_bulk_len (512 MiB default)",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n".to_vec(),
            Some("ERR Protocol error: invalid bulk length"),
        ),
        (
            "bulk body longer than declared",
            b"*2\r\n$4\r\nECHO\r\n$3\r\nhello\r\n".to_vec(),
            None,
        ),
        ("multibulk count line over 64 KiB", long_count, None),
        ("bulk length line over 64 KiB", long_bulk_header, None),
        (
            "endless inline line over 64 KiB",
            endless_inline,
            Some("ERR Protocol error: too big inline request"),
        ),
        (
            "binary garbage as a count",
            b"*\x00\xff\xfe\x80\r\n".to_vec(),
            Some("ERR Protocol error: invalid multibulk length"),
        ),
        (
            "binary garbage instead of a bulk",
            b"*2\r\n$3\r\nGET\r\n\x00\xff\x10\x02junk\r\n".to_vec(),
            None,
        ),
        ("100 KB of binary garbage", garbage_line, None),
    ];
    for (i, (what, bytes, want)) in cases.iter().enumerate() {
        let text = assert_protocol_error(port, bytes, what);
        if let Some(want) = want {
            assert_eq!(text, *want, "{what}");
        }
        // Only that connection was closed: an older one keeps working, in order.
        assert_eq!(
            steady.cmd(&["INCR", "steady"]),
            Reply::Int(i as i64 + 1),
            "{what}: another client was disturbed"
        );
    }
    // A fresh connection works too, and nothing was written by the bad ones.
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["EXISTS", "k"]), Reply::Int(0));
    assert_eq!(
        fresh.cmd(&["GET", "steady"]),
        Reply::bulk(&cases.len().to_string())
    );
}

#[test]
fn configured_request_limits_refuse_early() {
    let s = Shards::start_with(2, |c| {
        c.set("max_bulk_len", "1024")
            .set("max_multibulk_len", "10")
            .set("max_inline_len", "100")
    });
    let port = s.proxy.port();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["PING"]), Reply::status("PONG"));

    // At the limits: accepted.
    let at_limit = vec![b'v'; 1024];
    assert_eq!(
        steady.cmd_bytes(&[b"SET", b"lim:1024", &at_limit]),
        Reply::ok(),
        "a 1024-byte value with max_bulk_len = 1024"
    );
    let ten: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..9).map(|i| format!("lim:{i}")))
        .collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    assert_eq!(steady.cmd(&ten), Reply::Int(0), "10 arguments");
    let mut inline_ok = b"ECHO ".to_vec();
    inline_ok.extend(vec![b'a'; 90]);
    inline_ok.extend(b"\r\n");
    assert_eq!(inline_ok.len(), 97);
    steady.send(&inline_ok);
    assert_eq!(
        steady.read_reply().expect("inline reply"),
        Reply::Bulk(vec![b'a'; 90]),
        "a 97-byte inline line with max_inline_len = 100"
    );

    // A 2 KB value: refused on its header, before the body is sent.
    let mut c = Client::connect(port);
    c.send(b"*3\r\n$3\r\nSET\r\n$7\r\nlim:big\r\n$2048\r\n");
    assert!(
        c.readable_within(Duration::from_secs(3)),
        "no reply to a bulk header over max_bulk_len before its body"
    );
    let r = c.read_reply().expect("reply to an oversized bulk header");
    assert_eq!(
        r,
        Reply::Error("ERR Protocol error: invalid bulk length".into())
    );
    assert!(c.closed_within(Duration::from_secs(3)), "not closed");
    // Whole, and one byte over: refused too.
    let over = vec![b'v'; 1025];
    let mut bytes = encode(&[b"SET", b"lim:1025", &over]);
    bytes.extend(encode_str(&["PING"]));
    assert_protocol_error(port, &bytes, "a 1025-byte value");
    assert_eq!(
        steady.cmd(&["EXISTS", "lim:big", "lim:1025"]),
        Reply::Int(0)
    );

    // 11 arguments: refused on the count line alone, and whole.
    let mut c = Client::connect(port);
    c.send(b"*11\r\n");
    assert!(
        c.readable_within(Duration::from_secs(3)),
        "no reply to a count over max_multibulk_len"
    );
    let r = c.read_reply().expect("reply");
    assert_eq!(
        r,
        Reply::Error("ERR Protocol error: invalid multibulk length".into())
    );
    assert!(c.closed_within(Duration::from_secs(3)), "not closed");
    let eleven: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..10).map(|i| format!("lim:{i}")))
        .collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_protocol_error(port, &encode_str(&eleven), "an 11-argument DEL");

    // A 200-byte inline line, with and without its line end.
    let mut long_inline = b"ECHO ".to_vec();
    long_inline.extend(vec![b'a'; 193]);
    long_inline.extend(b"\r\n");
    assert_eq!(long_inline.len(), 200);
    let text = assert_protocol_error(port, &long_inline, "a 200-byte inline line");
    assert_eq!(text, "ERR Protocol error: too big inline request");
    assert_protocol_error(port, &[b'a'; 200], "200 inline bytes, no line end");

    assert_eq!(
        steady.cmd(&["GET", "lim:1024"]),
        Reply::Bulk(at_limit),
        "the steady client is unaffected"
    );
}

#[test]
fn a_declared_500_mb_bulk_allocates_nothing() {
    let s = Shards::start(2);
    let pid = s.proxy.pid();
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "a", "1"]), Reply::ok());
    thread::sleep(Duration::from_millis(200));
    let (rss0, vsz0) = (rss_mb(pid), status_kb(pid, "VmSize") / 1024);
    // Eight clients each announce a 500 MB value and send nothing more.
    let mut hogs: Vec<Client> = (0..8)
        .map(|i| {
            let mut c = s.client();
            let key = format!("huge{i}");
            let mut header = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n", key.len()).into_bytes();
            header.extend(b"$500000000\r\n");
            c.send(&header);
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // Served meanwhile.
    assert_eq!(steady.cmd(&["GET", "a"]), Reply::bulk("1"));
    let (rss1, vsz1) = (rss_mb(pid), status_kb(pid, "VmSize") / 1024);
    eprintln!("500 MB headers: RSS {rss0} -> {rss1} MB, VmSize {vsz0} -> {vsz1} MB");
    assert!(
        rss1 < rss0 + 64,
        "RSS grew from {rss0} MB to {rss1} MB after 8 headers declaring 500 MB each"
    );
    // 8 x 500 MB reserved (even untouched) would show in the address space.
    assert!(
        vsz1 < vsz0 + 1024,
        "VmSize grew from {vsz0} MB to {vsz1} MB after 8 headers declaring 500 MB each"
    );
    // The hogs are still waiting for their bodies (500 MB is within limits).
    for h in &mut hogs {
        assert!(
            !h.readable_within(Duration::from_millis(20)),
            "a valid (if large) header got a reply"
        );
    }
    drop(hogs);
    assert_eq!(steady.cmd(&["EXISTS", "huge0"]), Reply::Int(0));
}
