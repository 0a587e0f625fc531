use super::*;
use crate::rng::Rng;

fn parse_all(stream: &[u8], cuts: &[usize]) -> Vec<Result<Framed, McError>> {
    let limits = McLimits::default();
    let mut p = McRequestParser::default();
    let mut args = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    // Feed growing prefixes, as reads append to a buffer.
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    ends.push(stream.len());
    for end in ends {
        loop {
            match p.parse(&stream[start..end], &mut args, &limits) {
                Ok(Some(f)) => {
                    let len = match &f {
                        Framed::Request { len, .. } | Framed::Bad { len, .. } => *len,
                    };
                    out.push(Ok(f));
                    start += len;
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn one(req: &[u8]) -> (Framed, Vec<Vec<u8>>) {
    let mut p = McRequestParser::default();
    let mut args = Vec::new();
    let f = p
        .parse(req, &mut args, &McLimits::default())
        .expect("no fatal error")
        .expect("complete");
    let toks = args.iter().map(|r| req[r.clone()].to_vec()).collect();
    (f, toks)
}

#[test]
fn storage_commands_carry_their_data_block() {
    let req = b"set k 5 0 7\r\nab\r\ncde\r\n";
    let (f, toks) = one(req);
    assert_eq!(
        f,
        Framed::Request {
            len: req.len(),
            cmd: McCommand::Storage { noreply: false }
        }
    );
    assert_eq!(toks.last().map(Vec::as_slice), Some(&b"ab\r\ncde"[..]));
    let (f, _) = one(b"cas k 0 0 1 99 noreply\r\nx\r\n");
    assert!(matches!(
        f,
        Framed::Request {
            cmd: McCommand::Storage { noreply: true },
            ..
        }
    ));
    let (f, toks) = one(b"ms k 2 T0 q\r\nhi\r\n");
    assert!(matches!(
        f,
        Framed::Request {
            cmd: McCommand::Storage { noreply: true },
            ..
        }
    ));
    assert_eq!(toks.last().map(Vec::as_slice), Some(&b"hi"[..]));
}

#[test]
fn retrieval_and_keyed_commands() {
    let (f, toks) = one(b"get a b  c\r\n");
    assert!(matches!(
        f,
        Framed::Request {
            cmd: McCommand::Retrieval { first_key: 1 },
            ..
        }
    ));
    assert_eq!(toks, [&b"get"[..], b"a", b"b", b"c"]);
    let (f, _) = one(b"gats 100 a b\r\n");
    assert!(matches!(
        f,
        Framed::Request {
            cmd: McCommand::Retrieval { first_key: 2 },
            ..
        }
    ));
    for (req, noreply) in [
        (&b"delete k\r\n"[..], false),
        (b"delete k noreply\r\n", true),
        (b"delete k 0 noreply\r\n", true),
        (b"incr k 5\r\n", false),
        (b"decr k 5 noreply\r\n", true),
        (b"touch k 10 noreply\r\n", true),
        (b"mg k v f q\r\n", true),
    ] {
        let (f, _) = one(req);
        assert!(
            matches!(f, Framed::Request { cmd: McCommand::Keyed { noreply: n }, .. } if n == noreply),
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(matches!(
        one(b"mn\r\n").0,
        Framed::Request {
            cmd: McCommand::MetaNoop,
            ..
        }
    ));
    assert!(matches!(
        one(b"flush_all 10 noreply\r\n").0,
        Framed::Request {
            cmd: McCommand::Admin(Admin::FlushAll { noreply: true }),
            ..
        }
    ));
}

#[test]
fn bad_requests_are_answered_and_the_connection_goes_on() {
    let long_key = format!("get {}\r\n", "k".repeat(251));
    for (req, err) in [
        (&b"bogus\r\n"[..], McError::UnknownCommand),
        (b"get\r\n", McError::UnknownCommand),
        (b"set k 0 0\r\n", McError::UnknownCommand),
        (b"set k x 0 1\r\nv\r\n", McError::BadFormat),
        (b"set k 0 0 1\r\nv\n\r", McError::BadDataChunk),
        (b"incr k x\r\n", McError::BadDelta),
        (b"get a\x01b\r\n", McError::BadKey),
        (long_key.as_bytes(), McError::KeyTooLong),
        (b"delete k 5\r\n", McError::BadFormat),
    ] {
        let (f, _) = one(req);
        assert_eq!(
            f,
            Framed::Bad {
                len: req.len(),
                err
            },
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    // A refused storage command's data block is consumed: its bytes never
    // run as a command.
    let out = parse_all(b"set k 0 x 9\r\nflush_all\r\nget k\r\n", &[]);
    assert!(matches!(
        out[0],
        Ok(Framed::Bad {
            len: 24,
            err: McError::BadFormat
        })
    ));
    assert!(matches!(
        out[1],
        Ok(Framed::Request {
            cmd: McCommand::Retrieval { .. },
            ..
        })
    ));
    assert_eq!(out.len(), 2);
}

#[test]
fn fatal_input_is_an_error() {
    let limits = McLimits {
        max_line: 64,
        ..McLimits::default()
    };
    let mut p = McRequestParser::default();
    let mut args = Vec::new();
    assert_eq!(
        p.parse(&[b'g'; 65], &mut args, &limits),
        Err(McError::LineTooLong)
    );
    let mut p = McRequestParser::default();
    assert_eq!(
        p.parse(b"set k 0 0 4294967295\r\n", &mut args, &McLimits::default()),
        Err(McError::TooLarge)
    );
}

/// Requests of every shape, valid and not, with random keys and values
/// (CRLF inside values included).
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..1 + rng.below(20) {
        let key = format!("k{}", rng.below(1000));
        let value: Vec<u8> = (0..rng.below(40))
            .map(|_| rng.pick(b"ab\r\n \x00z"))
            .collect();
        match rng.below(8) {
            0 => {
                s.extend(format!("set {key} 1 0 {}\r\n", value.len()).as_bytes());
                s.extend(&value);
                s.extend(b"\r\n");
            }
            1 => s.extend(format!("get {key} {key}x {key}y\r\n").as_bytes()),
            2 => s.extend(format!("delete {key} noreply\r\n").as_bytes()),
            3 => s.extend(format!("incr {key} 7\r\n").as_bytes()),
            4 => s.extend(b"bogus line\r\n"),
            5 => {
                s.extend(format!("ms {key} {}\r\n", value.len()).as_bytes());
                s.extend(&value);
                s.extend(b"\r\n");
            }
            6 => s.extend(b"mn\r\n"),
            _ => s.extend(b"version\r\n"),
        }
    }
    s
}

#[test]
fn any_split_into_reads_gives_the_same_frames() {
    let mut rng = Rng::new(0x6d63_7265_7175_6573);
    for _ in 0..300 {
        let stream = random_stream(&mut rng);
        let whole = parse_all(&stream, &[]);
        let consumed: usize = whole
            .iter()
            .map(|f| match f {
                Ok(Framed::Request { len, .. } | Framed::Bad { len, .. }) => *len,
                Err(_) => 0,
            })
            .sum();
        assert_eq!(consumed, stream.len(), "every byte framed");
        let mut cuts: Vec<usize> = (0..1 + rng.below(8))
            .map(|_| rng.below(stream.len()))
            .collect();
        cuts.sort_unstable();
        assert_eq!(parse_all(&stream, &cuts), whole);
    }
}

#[test]
fn random_bytes_never_panic_and_frames_stay_in_bounds() {
    let mut rng = Rng::new(7);
    let limits = McLimits {
        max_line: 256,
        max_tokens: 8,
        max_value: 64,
    };
    for _ in 0..2000 {
        let buf: Vec<u8> = (0..rng.below(200))
            .map(|_| rng.pick(b"setgmn 0123\r\nVALUEND\x00"))
            .collect();
        let mut p = McRequestParser::default();
        let mut args = Vec::new();
        if let Ok(Some(Framed::Request { len, .. } | Framed::Bad { len, .. })) =
            p.parse(&buf, &mut args, &limits)
        {
            assert!(len <= buf.len());
            assert!(args.iter().all(|r| r.end <= len));
        }
        let mut s = McReplyScanner::default();
        if let Ok(Some(len)) = s.scan(&buf) {
            assert!(len <= buf.len());
        }
    }
}

fn scan_all(stream: &[u8], cuts: &[usize]) -> Result<Vec<usize>, McError> {
    let mut s = McReplyScanner::default();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    ends.push(stream.len());
    for end in ends {
        while let Some(n) = s.scan(&stream[start..end])? {
            out.push(n);
            start += n;
        }
    }
    Ok(out)
}

#[test]
fn replies_are_framed_whole_in_any_reads() {
    let replies: [&[u8]; 9] = [
        b"STORED\r\n",
        b"VALUE a 0 3\r\nx\r\n\r\nVALUE b 5 0 12\r\n\r\nEND\r\n",
        b"END\r\n",
        b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n",
        b"VA 5 f1\r\nEND\r\n\r\n",
        b"HD\r\n",
        b"SERVER_ERROR out of memory\r\n",
        b"42\r\n",
        b"VERSION 1.6.21\r\n",
    ];
    let stream: Vec<u8> = replies.concat();
    let lens: Vec<usize> = replies.iter().map(|r| r.len()).collect();
    assert_eq!(scan_all(&stream, &[]), Ok(lens.clone()));
    for cut in 0..stream.len() {
        assert_eq!(scan_all(&stream, &[cut]), Ok(lens.clone()), "cut at {cut}");
    }
    assert_eq!(
        scan_all(b"VALUE a 0 1\r\nxy\r\nEND\r\n", &[]),
        Err(McError::BadReply)
    );
}
