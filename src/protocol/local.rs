//! Commands the proxy answers itself: connection handshakes and probes that
//! clients send before their first real command.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::protocol::command::{Args, Local};
use crate::protocol::refusal::Refusal;
use crate::protocol::resp;
use serde::Deserialize;

/// A named user for `AUTH user pass` (the `users` config key).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for User {
    /// Secrets never reach a log line, even through a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "User {{ username: {:?}, password: \"***\" }}",
            self.username
        )
    }
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What HELLO and INFO report as the server version until a server has told
/// its own (none answered yet): clients gate features on it, and aster's
/// command table is Redis 7's.
pub const FALLBACK_VERSION: &str = "7.0.0";

/// A Redis version (`7.0.15`) as one number that orders as versions do
/// (0 is none); `None` if it is not one.
pub fn pack_version(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut parts = text.split('.');
    let mut packed = 0u64;
    for _ in 0..3 {
        let n: u64 = match parts.next() {
            Some(p) => p.parse().ok().filter(|&n| n < 1 << 20)?,
            None => 0,
        };
        packed = packed << 20 | n;
    }
    (parts.next().is_none() && packed != 0).then_some(packed)
}

/// The version HELLO and INFO report: `packed` (from `pack_version`), or
/// the fallback while no server has told its own.
pub fn version_text(packed: u64) -> String {
    if packed == 0 {
        return FALLBACK_VERSION.to_owned();
    }
    let part = |shift: u32| (packed >> shift) & ((1 << 20) - 1);
    format!("{}.{}.{}", part(40), part(20), part(0))
}

/// The per-connection facts a local answer needs.
pub struct ClientInfo<'a> {
    pub id: u64,
    pub name: &'a mut Option<Bytes>,
    pub authed: &'a mut bool,
    /// The client switched to RESP3 with HELLO 3.
    pub resp3: &'a mut bool,
    /// The cluster's frontend password, if it has one.
    pub password: Option<&'a str>,
    /// Named users for `AUTH username password`.
    pub users: &'a [User],
}

/// Compares without an early exit, so the time taken does not tell how much
/// of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// AUTH [user] password: `password` is the "default" user's; `users` adds
/// named ones. Every candidate is compared, so timing says nothing either.
fn auth(user: Option<&[u8]>, pass: &[u8], c: &mut ClientInfo<'_>) -> Result<(), Refusal> {
    if c.password.is_none() && c.users.is_empty() {
        // Redis without a password has only the passwordless "default"
        // user: any password logs it in, other users do not exist.
        return match user {
            None => Err(Refusal::NoPassword),
            Some(b"default") => {
                *c.authed = true;
                Ok(())
            }
            Some(_) => Err(Refusal::WrongPass),
        };
    }
    let user = user.unwrap_or(b"default");
    let mut ok = false;
    if let Some(want) = c.password {
        ok |= user == b"default" && same_secret(pass, want.as_bytes());
    }
    for u in c.users {
        ok |= u.username.as_bytes() == user && same_secret(pass, u.password.as_bytes());
    }
    if ok {
        *c.authed = true;
        Ok(())
    } else {
        Err(Refusal::WrongPass)
    }
}

pub struct Answer {
    /// The reply, or the refusal the worker renders and counts.
    pub reply: Result<Bytes, Refusal>,
    /// QUIT: close after this reply.
    pub close: bool,
}

fn reply(b: Bytes) -> Answer {
    Answer {
        reply: Ok(b),
        close: false,
    }
}

fn refuse(r: Refusal) -> Answer {
    Answer {
        reply: Err(r),
        close: false,
    }
}

fn upper(s: &[u8]) -> Vec<u8> {
    s.to_ascii_uppercase()
}

pub fn answer(cmd: Local, args: &(impl Args + ?Sized), client: ClientInfo<'_>) -> Answer {
    match cmd {
        Local::Ping => match args.len() {
            1 => reply(Bytes::from_static(resp::PONG)),
            2 => reply(resp::bulk(args.get(1))),
            _ => refuse(Refusal::WrongArity("ping")),
        },
        Local::Echo => reply(resp::bulk(args.get(1))),
        Local::Quit => Answer {
            reply: Ok(Bytes::from_static(resp::OK)),
            close: true,
        },
        Local::Select => match resp::parse_int(args.get(1)) {
            Some(0) => reply(Bytes::from_static(resp::OK)),
            Some(_) => refuse(Refusal::Unsupported {
                name: "select",
                why: "only database 0 is served (set the backend database in the config)",
            }),
            None => refuse(Refusal::NotAnInteger),
        },
        Local::Client => client_cmd(args, client),
        Local::Hello => match hello(args, client) {
            Ok(h) => reply(hello_reply(h, FALLBACK_VERSION)),
            Err(e) => refuse(e),
        },
        Local::Auth => {
            let mut c = client;
            let res = match args.len() {
                2 => auth(None, args.get(1), &mut c),
                3 => auth(Some(args.get(1)), args.get(2), &mut c),
                _ => Err(Refusal::Syntax),
            };
            match res {
                Ok(()) => reply(Bytes::from_static(resp::OK)),
                Err(e) => refuse(e),
            }
        }
        // They need the cluster's state: the worker answers them (admin.rs).
        Local::Info | Local::Slowlog => refuse(Refusal::NotHere),
        Local::Time => reply(time()),
    }
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn client_cmd(args: &(impl Args + ?Sized), c: ClientInfo<'_>) -> Answer {
    let sub = upper(args.get(1));
    match (sub.as_slice(), args.len()) {
        (b"SETNAME", 3) => {
            let name = args.get(2);
            if !valid_name(name) {
                return refuse(Refusal::BadClientName);
            }
            *c.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            reply(Bytes::from_static(resp::OK))
        }
        (b"GETNAME", 2) => reply(match c.name {
            Some(n) => resp::bulk(n),
            None => resp::null(*c.resp3),
        }),
        // CLIENT SETINFO (Redis 7.2): accepted and ignored, whatever the
        // servers' version, as the backends never see this connection.
        (b"SETINFO", 4) => reply(Bytes::from_static(resp::OK)),
        (b"ID", 2) => reply(resp::int(c.id as i64)),
        (b"SETNAME", _) => refuse(Refusal::WrongArity("client|setname")),
        (b"GETNAME", _) => refuse(Refusal::WrongArity("client|getname")),
        (b"SETINFO", _) => refuse(Refusal::WrongArity("client|setinfo")),
        (b"ID", _) => refuse(Refusal::WrongArity("client|id")),
        _ => refuse(Refusal::ClientSubcommand(sub)),
    }
}

/// What HELLO's reply says of the connection, once HELLO is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub proto: i64,
    pub id: u64,
}

/// HELLO [protover [AUTH user pass] [SETNAME name]], checked in Redis's
/// order: version, options, credentials, then authentication; the
/// connection's state changes only once all are accepted. The reply itself (`hello_reply`) needs the version the
/// servers report.
pub fn hello(args: &(impl Args + ?Sized), mut c: ClientInfo<'_>) -> Result<Hello, Refusal> {
    let proto = if args.len() >= 2 {
        match resp::parse_int(args.get(1)) {
            Some(v @ (2 | 3)) => v,
            Some(_) => return Err(Refusal::NoProto),
            None => return Err(Refusal::HelloProtoNotInteger),
        }
    } else if *c.resp3 {
        3
    } else {
        2
    };
    let mut creds = None;
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        match upper(args.get(i)).as_slice() {
            b"AUTH" if i + 2 < args.len() => {
                creds = Some((args.get(i + 1), args.get(i + 2)));
                i += 3;
            }
            b"SETNAME" if i + 1 < args.len() => {
                let n = args.get(i + 1);
                if !valid_name(n) {
                    return Err(Refusal::BadClientName);
                }
                name = Some(n);
                i += 2;
            }
            _ => return Err(Refusal::HelloOption(args.get(i).to_vec())),
        }
    }
    if let Some((user, pass)) = creds
        && let Err(e) = auth(Some(user), pass, &mut c)
    {
        return Err(e);
    }
    let needs_auth = c.password.is_some() || !c.users.is_empty();
    if needs_auth && !*c.authed {
        return Err(Refusal::HelloNoAuth);
    }
    if let Some(n) = name {
        // An empty name clears it, as CLIENT SETNAME "" does.
        *c.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
    }
    // Switched only once every option was accepted, as Redis does.
    *c.resp3 = proto == 3;
    Ok(Hello { proto, id: c.id })
}

/// HELLO's reply: a map in RESP3, its flattened pairs in RESP2.
pub fn hello_reply(h: Hello, version: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(if h.proto == 3 { b"%7\r\n" } else { b"*14\r\n" });
    for (k, v) in [("server", "redis"), ("version", version)] {
        resp::put_bulk(&mut out, k.as_bytes());
        resp::put_bulk(&mut out, v.as_bytes());
    }
    resp::put_bulk(&mut out, b"proto");
    resp::put_int(&mut out, b':', h.proto);
    resp::put_bulk(&mut out, b"id");
    resp::put_int(&mut out, b':', h.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        resp::put_bulk(&mut out, k.as_bytes());
        resp::put_bulk(&mut out, v.as_bytes());
    }
    // Redis's seven pairs, in its order; "modules" is the last.
    resp::put_bulk(&mut out, b"modules");
    out.extend_from_slice(b"*0\r\n");
    out.freeze()
}

fn time() -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = BytesMut::new();
    out.extend_from_slice(b"*2\r\n");
    resp::put_bulk(&mut out, now.as_secs().to_string().as_bytes());
    resp::put_bulk(&mut out, now.subsec_micros().to_string().as_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmd: Local, args: Vec<&'static [u8]>, name: &mut Option<Bytes>) -> Bytes {
        let mut authed = false;
        let info = ClientInfo {
            id: 7,
            name,
            authed: &mut authed,
            resp3: &mut false,
            password: None,
            users: &[],
        };
        answer(cmd, &args, info).reply.unwrap_or_else(|r| r.reply())
    }

    #[test]
    fn auth_checks_the_password() {
        let mut name = None;
        let mut authed = false;
        let users = vec![User {
            username: "app".into(),
            password: "apppass".into(),
        }];
        let mut call = |args: Vec<&'static [u8]>, cmd: Local| {
            let info = ClientInfo {
                id: 1,
                name: &mut name,
                authed: &mut authed,
                resp3: &mut false,
                password: Some("s3cret"),
                users: &users,
            };
            answer(cmd, &args, info).reply.unwrap_or_else(|r| r.reply())
        };
        assert_eq!(
            &call(vec![b"AUTH", b"nope"], Local::Auth)[..],
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(
            &call(vec![b"AUTH", b"s3cre"], Local::Auth)[..],
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(
            &call(vec![b"AUTH", b"bob", b"s3cret"], Local::Auth)[..],
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(
            &call(vec![b"AUTH", b"app", b"s3cret"], Local::Auth)[..],
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(
            &call(vec![b"AUTH", b"app", b"apppass"], Local::Auth)[..],
            resp::OK
        );
        assert_eq!(&call(vec![b"AUTH", b"s3cret"], Local::Auth)[..], resp::OK);
        assert!(authed);
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"a", b""));
        assert!(!same_secret(b"ab", b"abc"));
        let mut name = None;
        let r = run(Local::Auth, vec![b"AUTH", b"x"], &mut name);
        assert_eq!(
            &r[..],
            &b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"[..]
        );
    }

    #[test]
    fn handshake_commands() {
        let mut name = None;
        assert_eq!(
            &run(Local::Ping, vec![b"PING"], &mut name)[..],
            b"+PONG\r\n"
        );
        assert_eq!(
            &run(Local::Ping, vec![b"PING", b"hi"], &mut name)[..],
            b"$2\r\nhi\r\n"
        );
        assert_eq!(
            &run(
                Local::Client,
                vec![b"CLIENT", b"setname", b"app"],
                &mut name
            )[..],
            resp::OK
        );
        assert_eq!(
            &run(Local::Client, vec![b"CLIENT", b"GETNAME"], &mut name)[..],
            b"$3\r\napp\r\n"
        );
        assert!(resp::is_error(&run(
            Local::Client,
            vec![b"CLIENT", b"SETNAME", b"a b"],
            &mut name
        )));
        assert!(resp::is_error(&run(
            Local::Client,
            vec![b"CLIENT", b"KILL", b"x"],
            &mut name
        )));
        assert_eq!(
            &run(Local::Select, vec![b"SELECT", b"0"], &mut name)[..],
            resp::OK
        );
        assert!(resp::is_error(&run(
            Local::Select,
            vec![b"SELECT", b"1"],
            &mut name
        )));
        let h = run(Local::Hello, vec![b"HELLO", b"2"], &mut name);
        assert_eq!(
            crate::protocol::resp::scan_reply(&h).unwrap(),
            Some(h.len())
        );
        assert!(h.starts_with(b"*14\r\n"));
        let h3 = run(Local::Hello, vec![b"HELLO", b"3"], &mut name);
        assert!(h3.starts_with(b"%7\r\n"), "{h3:?}");
        assert_eq!(
            crate::protocol::resp::scan_reply(&h3).unwrap(),
            Some(h3.len())
        );
        assert!(run(Local::Hello, vec![b"HELLO", b"4"], &mut name).starts_with(b"-NOPROTO"));
    }

    #[test]
    fn versions_pack_in_order() {
        let v = |t: &str| pack_version(t.as_bytes());
        assert!(v("7.0.15") < v("7.2.0") && v("6.2.14") < v("7.0.0"));
        assert!(v("7.10.0") > v("7.9.9"));
        assert_eq!(v("7.2"), v("7.2.0"));
        for bad in ["", "x", "7.a.1", "1.2.3.4", "0.0.0", "-1.0.0"] {
            assert_eq!(v(bad), None, "{bad}");
        }
        for text in ["7.0.15", "255.255.255", "6.2.0"] {
            assert_eq!(version_text(v(text).expect("a version")), text);
        }
        assert_eq!(version_text(0), FALLBACK_VERSION);
    }
}
