//! Micro-benchmarks of the per-request hot path: the RESP request parser, the
//! reply scanner (small frames, and 1M-element ones arriving in 64 KiB reads),
//! the command table, the key hashes and the routers; and the socket paths
//! around them: a client's replies leaving in one `writev`, and a large reply
//! relayed from one loopback socket to another.
//!
//! `cargo bench` prints one line per case: the median ns/op over several
//! samples, plus the fastest and slowest sample. `cargo bench -- NAME` runs
//! the cases whose name contains NAME. Run without `--bench` (as
//! `cargo test --all-targets` does), every case runs once as a smoke test.
//!
//! No benchmark framework on purpose: std::time::Instant and black_box keep
//! the build fast for CI.

use std::collections::VecDeque;
use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use aster_proxy::hashing::hash::HashKind;
use aster_proxy::hashing::ketama::{Distribution, Ring, RingServer};
use aster_proxy::hashing::slots;
use aster_proxy::net::sock::{self, ReadStatus};
use aster_proxy::protocol::command::{self, Args, Split};
use aster_proxy::protocol::multikey::{self, Plan};
use aster_proxy::protocol::resp::{self, Limits};

/// Samples per case; the median is reported.
const SAMPLES: usize = 15;
/// Target time of one sample.
const SAMPLE_TIME: Duration = Duration::from_millis(20);

struct Runner {
    filter: Vec<String>,
    /// False: run each case once (smoke test), print nothing.
    measure: bool,
}

impl Runner {
    fn from_args() -> Runner {
        let mut filter = Vec::new();
        let mut measure = false;
        for a in std::env::args().skip(1) {
            if a == "--bench" {
                measure = true;
            } else if !a.starts_with('-') {
                filter.push(a);
            }
        }
        Runner { filter, measure }
    }

    /// Times `f`, which does `ops` operations per call.
    fn run(&self, name: &str, ops: u64, mut f: impl FnMut()) {
        if !self.filter.is_empty() && !self.filter.iter().any(|p| name.contains(p.as_str())) {
            return;
        }
        if !self.measure {
            f();
            return;
        }
        // Calibrate: double the call count until one batch takes a tenth of
        // a sample, then scale to the sample time.
        let mut calls: u64 = 1;
        let per_call = loop {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            let e = t.elapsed();
            if e >= SAMPLE_TIME / 10 {
                break e.as_secs_f64() / calls as f64;
            }
            calls *= 2;
        };
        let calls = ((SAMPLE_TIME.as_secs_f64() / per_call) as u64).max(1);
        let mut ns: Vec<f64> = (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    f();
                }
                t.elapsed().as_nanos() as f64 / (calls * ops) as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        println!(
            "{name:<40} {:>9.1} ns/op   (min {:.1}, max {:.1}, {} ops/sample)",
            ns[SAMPLES / 2],
            ns[0],
            ns[SAMPLES - 1],
            calls * ops
        );
    }
}

/// A parsed request's arguments, as the worker sees them.
struct Frame<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl Args for Frame<'_> {
    fn len(&self) -> usize {
        self.ranges.len()
    }
    fn get(&self, i: usize) -> &[u8] {
        &self.buf[self.ranges[i].clone()]
    }
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// redis-benchmark's key shape.
fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

fn main() {
    let r = Runner::from_args();
    let limits = Limits::default();
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(16);

    // --- request parser ---
    let get = multibulk(&[b"GET", &key(123_456)]);
    r.run("parse_request GET", 1, || {
        let n = resp::parse_request(black_box(&get), &mut ranges, &limits);
        black_box(n.ok());
    });

    // What the worker runs: a whole frame takes the one-pass path.
    let mut parser = resp::RequestParser::default();
    r.run("RequestParser GET (whole frame)", 1, || {
        let n = parser.parse(black_box(&get), &mut ranges, &limits);
        black_box(n.ok());
    });

    let keys: Vec<Vec<u8>> = (0..10).map(|i| key(1000 + i * 7919)).collect();
    let mut mget_args: Vec<&[u8]> = vec![b"MGET"];
    mget_args.extend(keys.iter().map(Vec::as_slice));
    let mget = multibulk(&mget_args);
    r.run("parse_request MGET 10 keys", 1, || {
        let n = resp::parse_request(black_box(&mget), &mut ranges, &limits);
        black_box(n.ok());
    });

    let mut pipeline = Vec::new();
    for i in 0..100 {
        pipeline.extend(multibulk(&[b"SET", &key(i * 31), b"xxx"]));
    }
    r.run("parse_request 100 SETs (per SET)", 100, || {
        let buf = black_box(pipeline.as_slice());
        let mut pos = 0;
        while let Ok(Some(n)) = resp::parse_request(&buf[pos..], &mut ranges, &limits) {
            pos += n;
        }
        black_box(pos);
    });

    let inline = b"GET key:000000123456\r\n".to_vec();
    r.run("parse_request inline GET", 1, || {
        let n = resp::parse_request(black_box(&inline), &mut ranges, &limits);
        black_box(n.ok());
    });

    // --- reply scanner ---
    let bulk3 = b"$3\r\nxxx\r\n".to_vec();
    r.run("scan_reply bulk 3 B", 1, || {
        black_box(resp::scan_reply(black_box(&bulk3)).ok());
    });
    let mut bulk1k = b"$1024\r\n".to_vec();
    bulk1k.extend(std::iter::repeat_n(b'x', 1024));
    bulk1k.extend_from_slice(b"\r\n");
    r.run("scan_reply bulk 1 KiB", 1, || {
        black_box(resp::scan_reply(black_box(&bulk1k)).ok());
    });
    r.run("scan_reply +OK", 1, || {
        black_box(resp::scan_reply(black_box(b"+OK\r\n")).ok());
    });
    let mut array10 = b"*10\r\n".to_vec();
    for i in 0..10 {
        if i % 4 == 3 {
            array10.extend_from_slice(b"$-1\r\n");
        } else {
            array10.extend_from_slice(b"$3\r\nxxx\r\n");
        }
    }
    r.run("scan_reply array of 10 bulks", 1, || {
        black_box(resp::scan_reply(black_box(&array10)).ok());
    });

    // --- frames arriving in many reads ---
    // A read loop hands the parser the buffer grown by one read at a time; a
    // parser that rescanned from byte 0 would cost O(reads x bytes) here, so
    // a regression shows as a per-element time hundreds of times larger.
    const BIG: usize = 1_000_000;
    const READ: usize = 64 * 1024;
    let mut big_reply = format!("*{BIG}\r\n").into_bytes();
    for i in 0..BIG {
        big_reply.extend_from_slice(format!("$7\r\n{i:07}\r\n").as_bytes());
    }
    r.run(
        "ReplyScanner 1M-element array in 64 KiB reads (per element)",
        BIG as u64,
        || {
            let mut s = resp::ReplyScanner::new();
            let mut end = 0;
            let got = loop {
                end = (end + READ).min(big_reply.len());
                match s.scan(black_box(&big_reply[..end])) {
                    Ok(None) if end < big_reply.len() => {}
                    other => break other,
                }
            };
            assert_eq!(got, Ok(Some(big_reply.len())));
        },
    );
    // A 10 MiB bulk: its data is skipped by length, never looked at.
    let mut big_bulk = format!("${}\r\n", 10 << 20).into_bytes();
    big_bulk.resize(big_bulk.len() + (10 << 20), b'x');
    big_bulk.extend_from_slice(b"\r\n");
    r.run(
        "ReplyScanner 10 MiB bulk in 64 KiB reads (per read)",
        160,
        || {
            let mut s = resp::ReplyScanner::new();
            let mut end = 0;
            let got = loop {
                end = (end + READ).min(big_bulk.len());
                match s.scan(black_box(&big_bulk[..end])) {
                    Ok(None) if end < big_bulk.len() => {}
                    other => break other,
                }
            };
            assert_eq!(got, Ok(Some(big_bulk.len())));
        },
    );
    let mut big_req = format!("*{}\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n", BIG + 2).into_bytes();
    big_req.extend_from_slice(
        &big_reply[big_reply.iter().position(|&b| b == b'\n').unwrap_or(0) + 1..],
    );
    let mut big_args: Vec<Range<usize>> = Vec::new();
    r.run(
        "RequestParser 1M-element RPUSH in 64 KiB reads (per element)",
        BIG as u64,
        || {
            let mut p = resp::RequestParser::default();
            let mut end = 0;
            let got = loop {
                end = (end + READ).min(big_req.len());
                match p.parse(black_box(&big_req[..end]), &mut big_args, &limits) {
                    Ok(None) if end < big_req.len() => {}
                    other => break other,
                }
            };
            assert_eq!(got, Ok(Some(big_req.len())));
            assert_eq!(big_args.len(), BIG + 2);
        },
    );

    // --- command table ---
    r.run("command::lookup GET", 1, || {
        black_box(command::lookup(black_box(b"GET")).is_some());
    });
    r.run("command::lookup mget (lowercase)", 1, || {
        black_box(command::lookup(black_box(b"mget")).is_some());
    });
    r.run("command::lookup unknown", 1, || {
        black_box(command::lookup(black_box(b"NOSUCHCMD")).is_some());
    });
    let _ = resp::parse_request(&mget, &mut ranges, &limits);
    let mget_ranges = ranges.clone();
    r.run("command::lookup_request MGET", 1, || {
        let f = Frame {
            buf: black_box(&mget),
            ranges: &mget_ranges,
        };
        black_box(command::lookup_request(&f).is_some());
    });
    let client_setname: [&[u8]; 3] = [b"CLIENT", b"SETNAME", b"app"];
    r.run("command::lookup_request CLIENT SETNAME", 1, || {
        black_box(command::lookup_request(black_box(&client_setname)).is_some());
    });
    let cmd = command::lookup(b"MGET").expect("MGET in the table");
    r.run("Command::key_positions MGET 10", 1, || {
        let f = Frame {
            buf: black_box(&mget),
            ranges: &mget_ranges,
        };
        black_box(cmd.key_positions(&f).map(|k| k.count()).ok());
    });

    // --- key hashes ---
    let k16 = key(123_456);
    for (name, kind) in [
        ("hash fnv1a_64 16 B", HashKind::Fnv1a_64),
        ("hash murmur 16 B", HashKind::Murmur),
        ("hash md5 16 B", HashKind::Md5),
        ("hash crc32a 16 B", HashKind::Crc32a),
        ("hash one_at_a_time 16 B", HashKind::OneAtATime),
    ] {
        r.run(name, 1, || {
            black_box(kind.hash(black_box(&k16)));
        });
    }
    let tagged = b"{user1000}.following".to_vec();
    r.run("hash_tag_slice + fnv1a_64", 1, || {
        let k = aster_proxy::hashing::hash::hash_tag_slice(black_box(&tagged), Some(*b"{}"));
        black_box(HashKind::Fnv1a_64.hash(k));
    });

    // --- routing ---
    let names = ["redis1", "redis2", "redis3"];
    let servers: Vec<RingServer<'_>> = names
        .iter()
        .map(|n| RingServer {
            name: n,
            weight: 1,
            live: true,
        })
        .collect();
    let ring3 = Ring::build(Distribution::Ketama, &servers);
    let names64: Vec<String> = (0..64).map(|i| format!("redis{i}")).collect();
    let servers64: Vec<RingServer<'_>> = names64
        .iter()
        .map(|n| RingServer {
            name: n,
            weight: 1,
            live: true,
        })
        .collect();
    let ring64 = Ring::build(Distribution::Ketama, &servers64);
    let hashes: Vec<u32> = (0..1024)
        .map(|i| HashKind::Fnv1a_64.hash(&key(i)))
        .collect();
    r.run("Ring::pick ketama 3 servers", 1024, || {
        for &h in black_box(&hashes) {
            black_box(ring3.pick(h));
        }
    });
    r.run("Ring::pick ketama 64 servers", 1024, || {
        for &h in black_box(&hashes) {
            black_box(ring64.pick(h));
        }
    });
    r.run("route GET key (fnv1a_64 + ketama)", 1, || {
        black_box(ring3.pick(HashKind::Fnv1a_64.hash(black_box(&k16))));
    });
    r.run("slots::slot_of 16 B", 1, || {
        black_box(slots::slot_of(black_box(&k16)));
    });
    r.run("slots::slot_of {tag}", 1, || {
        black_box(slots::slot_of(black_box(&tagged)));
    });

    // --- multi-key split and merge (MGET of 10 keys over 3 servers) ---
    let mget_frame = Frame {
        buf: &mget,
        ranges: &mget_ranges,
    };
    let place = |k: &[u8]| {
        ring3
            .pick(HashKind::Fnv1a_64.hash(k))
            .map(|s| (s as u64, s))
    };
    let replies: Vec<bytes::Bytes> = match multikey::plan(Split::Mget, &mget_frame, place) {
        Ok(Plan::Parts(parts, _)) => parts
            .iter()
            .map(|p| {
                let mut r = Vec::new();
                let _ = resp::parse_request(&p.req, &mut r, &limits);
                let mut reply = format!("*{}\r\n", r.len() - 1).into_bytes();
                for _ in 1..r.len() {
                    reply.extend_from_slice(b"$3\r\nxxx\r\n");
                }
                bytes::Bytes::from(reply)
            })
            .collect(),
        _ => Vec::new(),
    };
    r.run("multikey::plan MGET 10 keys", 1, || {
        black_box(multikey::plan(Split::Mget, black_box(&mget_frame), place).is_ok());
    });
    r.run("multikey plan + Gather merge MGET 10", 1, || {
        if let Ok(Plan::Parts(_, mut gather)) =
            multikey::plan(Split::Mget, black_box(&mget_frame), place)
        {
            let mut merged = None;
            for (i, reply) in replies.iter().enumerate() {
                merged = gather.fill(i as u32, reply.clone());
            }
            black_box(merged);
        }
    });
    r.run("resp::command MGET 10 keys", 1, || {
        black_box(resp::command(black_box(&mget_args)));
    });

    // --- one whole GET, parse to backend pick ---
    r.run("GET: parse + lookup + hash + pick", 1, || {
        let buf = black_box(get.as_slice());
        if let Ok(Some(_)) = resp::parse_request(buf, &mut ranges, &limits) {
            let f = Frame {
                buf,
                ranges: &ranges,
            };
            if let Some(c) = command::lookup_request(&f)
                && let Ok(kp) = c.key_positions(&f)
                && let Some(k) = kp.first_key()
            {
                black_box(ring3.pick(HashKind::Fnv1a_64.hash(f.get(k))));
            }
        }
    });

    sockets(&r);
}

/// A connected loopback pair: the accepted end as a non-blocking mio stream
/// (what the worker holds), and the connecting end.
fn tcp_pair() -> (mio::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (ours, _) = l.accept().expect("accept");
    ours.set_nonblocking(true).expect("nonblocking");
    (mio::net::TcpStream::from_std(ours), peer)
}

/// Reads everything from `s` until it closes, in a thread.
fn drain(mut s: std::net::TcpStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(std::io::Read::read(&mut s, &mut buf), Ok(n) if n > 0) {}
    })
}

/// Writes the whole queue, waiting out a full socket.
fn write_all(sock: &mut mio::net::TcpStream, q: &mut VecDeque<Bytes>) {
    while !q.is_empty() {
        if sock::write_queue(sock, q).expect("write") == 0 {
            std::thread::yield_now();
        }
    }
}

fn sockets(r: &Runner) {
    // A client's 16 pipelined replies, each cut from a different backend
    // read (so none lie end to end), leaving in one writev.
    let (mut client, peer) = tcp_pair();
    let drainer = drain(peer);
    let replies: Vec<Bytes> = (0..16)
        .map(|_| Bytes::copy_from_slice(b"$3\r\nxxx\r\n"))
        .collect();
    let mut q: VecDeque<Bytes> = VecDeque::with_capacity(16);
    r.run("write_queue 16 small replies (per reply)", 16, || {
        q.extend(replies.iter().cloned());
        write_all(&mut client, &mut q);
    });
    drop(client);
    let _ = drainer.join();

    // A 10 MiB reply relayed as the worker relays it: read from the backend
    // socket into one buffer (read_into, growing its reads), cut off, and
    // written to the client socket (write_queue), the peers on threads.
    const SIZE: usize = 10 << 20;
    let (mut backend, mut feeder) = tcp_pair();
    let (mut client, peer) = tcp_pair();
    let drainer = drain(peer);
    let (go, went) = std::sync::mpsc::channel::<bool>();
    let feed = std::thread::spawn(move || {
        let data = vec![b'x'; SIZE];
        while went.recv().unwrap_or(false) {
            if std::io::Write::write_all(&mut feeder, &data).is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::new();
    let mut q: VecDeque<Bytes> = VecDeque::new();
    r.run(
        "relay 10 MiB: read_into + write_queue (per MiB)",
        10,
        || {
            let _ = go.send(true);
            let mut moved = 0;
            while moved < SIZE {
                match sock::read_into(&mut backend, &mut buf, 256 << 10, true) {
                    ReadStatus::Eof | ReadStatus::Error(_) => panic!("feeder gone"),
                    _ => {}
                }
                if buf.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                moved += buf.len();
                q.push_back(buf.split().freeze());
                write_all(&mut client, &mut q);
            }
        },
    );
    let _ = go.send(false);
    drop(client);
    let _ = feed.join();
    let _ = drainer.join();
}
