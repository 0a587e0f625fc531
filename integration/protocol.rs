//! The client side of the wire: inline commands, protocol errors, frames split
//! or batched in any way, long pipelines, many clients, hostile input.

use std::io::Write;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Client, Reply, Rng, Shards, args, encode_str, parse_all};

#[test]
fn inline_commands_work() {
    let s = Shards::start(3);
    let out = s.proxy.raw(b"PING\r\nSET a b\r\nGET a\r\n", 3);
    assert_eq!(String::from_utf8_lossy(&out), "+PONG\r\n+OK\r\n$1\r\nb\r\n");
    // Bare "\n" line ends (as `nc` sends them) and extra spaces work too.
    let out = s.proxy.raw(b"SET  c   d\nGET c\nEXISTS a c\n", 3);
    assert_eq!(String::from_utf8_lossy(&out), "+OK\r\n$1\r\nd\r\n:2\r\n");
    // Inline and multibulk mixed on one connection, replies in order.
    let mut bytes = b"PING\r\n".to_vec();
    bytes.extend(encode_str(&["GET", "a"]));
    bytes.extend(b"GET c\r\n");
    let out = s.proxy.raw(&bytes, 3);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+PONG\r\n$1\r\nb\r\n$1\r\nd\r\n"
    );
}

#[test]
fn protocol_errors_reply_then_close() {
    let s = Shards::start(3);
    let cases: [&[u8]; 4] = [
        b"*1\r\n$abc\r\n",
        b"*-5x\r\n",
        b"*abc\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
    ];
    for bad in cases {
        let mut c = s.client();
        c.send(bad);
        let r = c.read_reply();
        let text = match &r {
            Ok(Reply::Error(e)) => e.clone(),
            other => panic!(
                "{:?}: expected an error reply, got {other:?}",
                String::from_utf8_lossy(bad)
            ),
        };
        assert!(
            text.starts_with("ERR Protocol error"),
            "{:?}: reply should start with 'ERR Protocol error': {text:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{:?}: connection should be closed after a protocol error",
            String::from_utf8_lossy(bad)
        );
    }
    // Requests before the bad frame are answered first, in order.
    let out = s
        .proxy
        .raw(b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$abc\r\n", 3);
    let replies = parse_all(&out).expect("well-formed replies");
    assert_eq!(replies.len(), 3, "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(replies[0], Reply::status("PONG"));
    assert_eq!(replies[1], Reply::status("PONG"));
    assert!(
        replies[2].text().starts_with("ERR Protocol error"),
        "{:?}",
        replies[2]
    );
    // The proxy itself is fine.
    assert_eq!(s.client().cmd(&["PING"]), Reply::status("PONG"));
}

#[test]
fn frames_split_byte_by_byte() {
    let s = Shards::start(3);
    let mut c = s.client();
    let mut bytes = encode_str(&["SET", "split-key", "split value"]);
    bytes.extend(encode_str(&["GET", "split-key"]));
    bytes.extend(b"PING\r\n");
    bytes.extend(encode_str(&["MGET", "split-key", "missing", "split-key"]));
    for b in &bytes {
        c.send(std::slice::from_ref(b));
        thread::sleep(Duration::from_millis(1));
    }
    let replies = c.read_replies(4);
    assert_eq!(replies[0], Reply::ok());
    assert_eq!(replies[1], Reply::bulk("split value"));
    assert_eq!(replies[2], Reply::status("PONG"));
    assert_eq!(
        replies[3],
        Reply::Array(vec![
            Reply::bulk("split value"),
            Reply::Nil,
            Reply::bulk("split value")
        ])
    );
    // Split at every position of one frame, in two writes.
    let frame = encode_str(&["INCR", "split-counter"]);
    for cut in 1..frame.len() {
        c.send(&frame[..cut]);
        thread::sleep(Duration::from_millis(2));
        c.send(&frame[cut..]);
        assert_eq!(c.read_reply().expect("INCR reply"), Reply::Int(cut as i64));
    }
}

#[test]
fn thousands_of_frames_in_one_write() {
    let s = Shards::start(3);
    let mut c = s.client();
    let mut bytes = Vec::new();
    let n = 5000;
    for i in 0..n {
        bytes.extend(encode_str(&["INCR", &format!("burst{}", i % 7)]));
    }
    let replies = c.pipeline_raw(bytes, n);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(*r, Reply::Int((i / 7 + 1) as i64), "reply {i}");
    }
    // Inline commands in bulk too.
    let mut bytes = Vec::new();
    for i in 0..2000 {
        bytes.extend(format!("SET inl{i} {i}\r\nGET inl{i}\r\n").as_bytes());
    }
    let replies = c.pipeline_raw(bytes, 4000);
    for i in 0..2000 {
        assert_eq!(replies[2 * i], Reply::ok());
        assert_eq!(replies[2 * i + 1], Reply::bulk(&i.to_string()));
    }
}

#[test]
fn pipeline_of_20000_mixed_commands_in_order() {
    let s = Shards::start(3);
    let mut c = s.client();
    let mut cmds = Vec::with_capacity(20_000);
    let mut expected = Vec::with_capacity(20_000);
    for i in 0..10_000 {
        cmds.push(args(&["SET", &format!("p:{i}"), &format!("v:{i}")]));
        expected.push(Reply::ok());
        // A key set earlier in this same pipeline, usually on another backend.
        let j = i / 2;
        cmds.push(args(&["GET", &format!("p:{j}")]));
        expected.push(Reply::bulk(&format!("v:{j}")));
    }
    let start = Instant::now();
    let replies = c.pipeline(&cmds);
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i} of the pipeline");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "pipeline took {:?}",
        start.elapsed()
    );
    let sizes: Vec<i64> = s.servers.iter().map(|srv| srv.dbsize()).collect();
    assert_eq!(sizes.iter().sum::<i64>(), 10_000, "{sizes:?}");
}

#[test]
fn two_hundred_concurrent_clients_get_their_own_replies() {
    let s = Shards::start(3);
    let clients = 200;
    let rounds = 20;
    let barrier = Barrier::new(clients);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|id| {
                let barrier = &barrier;
                let port = s.proxy.port();
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        let mut c = Client::connect(port);
                        barrier.wait();
                        for round in 0..rounds {
                            let key = format!("c{id}:{round}");
                            let val = format!("value-of-{id}-{round}");
                            let cmds = vec![
                                args(&["SET", &key, &val]),
                                args(&["GET", &key]),
                                args(&["INCR", &format!("ctr{id}")]),
                                args(&["MGET", &key, &format!("c{id}:0"), "nokey"]),
                            ];
                            let r = c.pipeline(&cmds);
                            assert_eq!(r[0], Reply::ok(), "client {id} round {round}");
                            assert_eq!(r[1], Reply::bulk(&val), "client {id} round {round}");
                            assert_eq!(r[2], Reply::Int(round + 1), "client {id} round {round}");
                            assert_eq!(
                                r[3],
                                Reply::Array(vec![
                                    Reply::bulk(&val),
                                    Reply::bulk(&format!("value-of-{id}-0")),
                                    Reply::Nil
                                ]),
                                "client {id} round {round}"
                            );
                        }
                    })
                    .expect("spawn client thread")
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    let mut c = s.client();
    assert_eq!(c.cmd(&["GET", "ctr199"]), Reply::bulk("20"));
    let total: i64 = s.servers.iter().map(|srv| srv.dbsize()).sum();
    assert_eq!(total, (clients * rounds as usize + clients) as i64);
}

#[test]
fn clients_vanishing_mid_pipeline_do_not_disturb_others() {
    let s = Shards::start(3);
    let mut steady = s.client();
    assert_eq!(steady.cmd(&["SET", "steady", "1"]), Reply::ok());
    for round in 0..20 {
        let mut c = s.client();
        let mut bytes = Vec::new();
        for i in 0..2000 {
            bytes.extend(encode_str(&["SET", &format!("gone{round}:{i}"), "x"]));
            bytes.extend(encode_str(&["GET", "steady"]));
        }
        c.send(&bytes);
        drop(c);
        // The connection that stays gets exactly its own replies.
        assert_eq!(steady.cmd(&["INCR", "steady"]), Reply::Int(round + 2));
    }
    let mut fresh = s.client();
    assert_eq!(fresh.cmd(&["GET", "steady"]), Reply::bulk("21"));
}

#[test]
fn hostile_input_never_kills_the_proxy() {
    let s = Shards::start(3);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"*2147483647\r\n".to_vec(),
        b"*1\r\n$2147483647\r\n".to_vec(),
        b"*9223372036854775807\r\n".to_vec(),
        b"*1\r\n$-1\r\n".to_vec(),
        b"*0\r\n".to_vec(),
        b"*1\r\n$0\r\n\r\n".to_vec(),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n".to_vec(),
        b"\r\n\r\n\n\n".to_vec(),
        b"$5\r\nhello\r\n".to_vec(),
        b":1\r\n".to_vec(),
        b"+OK\r\n".to_vec(),
        b"-ERR x\r\n".to_vec(),
        b"*1\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"GET \"unterminated\r\n".to_vec(),
        vec![b'a'; 200_000],
        vec![0u8; 1000],
        vec![0xff; 1000],
    ];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let seeds = [
        encode_str(&["SET", "fuzz", "value"]),
        encode_str(&["MGET", "a", "b", "c"]),
        encode_str(&["EVAL", "return 1", "1", "k"]),
        b"PING\r\n".to_vec(),
    ];
    let alphabet = b"*$:+-\r\n0123456789-abcXYZ {}";
    for _ in 0..300 {
        let mut v = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(v.len());
            match rng.below(3) {
                0 => v[at] = alphabet[rng.below(alphabet.len())],
                1 => v.truncate(at),
                _ => v.insert(at, rng.next_u64() as u8),
            }
            if v.is_empty() {
                v.push(b'*');
            }
        }
        inputs.push(v);
    }
    for chunk in inputs.chunks(40) {
        let mut conns: Vec<Client> = chunk
            .iter()
            .map(|bytes| {
                let c = s.client();
                // The proxy may close the connection early: write errors are fine.
                let _ = c.stream().write_all(bytes);
                c
            })
            .collect();
        // Give the proxy a moment to chew, then close everything.
        for c in &mut conns {
            let _ = c.readable_within(Duration::from_millis(5));
        }
        drop(conns);
    }
    let mut s = s;
    assert!(s.proxy.is_alive(), "proxy died on hostile input");
    let mut c = s.client();
    assert_eq!(c.cmd(&["PING"]), Reply::status("PONG"));
    assert_eq!(c.cmd(&["SET", "after", "fuzz"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "after"]), Reply::bulk("fuzz"));
}

#[test]
fn several_backend_connections_keep_each_clients_order() {
    let s = Shards::start_with(3, |c| c.set("thread", "1").set("server_connections", "3"));
    thread::scope(|scope| {
        for id in 0..12 {
            let port = s.proxy.port();
            scope.spawn(move || {
                let mut c = Client::connect(port);
                let key = format!("{id}:same-key");
                let mut cmds = Vec::new();
                for j in 0..500 {
                    cmds.push(args(&["SET", &key, &j.to_string()]));
                    cmds.push(args(&["GET", &key]));
                }
                let replies = c.pipeline(&cmds);
                for j in 0..500 {
                    assert_eq!(replies[2 * j], Reply::ok(), "client {id}");
                    assert_eq!(
                        replies[2 * j + 1],
                        Reply::bulk(&j.to_string()),
                        "client {id}: GET after SET {j} saw another value"
                    );
                }
            });
        }
    });
    // The proxy really used several connections to a backend.
    let most = s
        .servers
        .iter()
        .map(|srv| match srv.client().cmd(&["CLIENT", "LIST"]) {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).lines().count() - 1,
            other => panic!("CLIENT LIST: {other:?}"),
        })
        .max()
        .unwrap_or(0);
    assert!(
        most >= 2,
        "expected several proxy connections to one backend, saw {most}"
    );
}
