//! What the proxy writes itself: its replies (errors, nulls, integers,
//! bulks, verbatim text) and the commands it sends to servers.

use bytes::{BufMut, Bytes, BytesMut};

pub const OK: &[u8] = b"+OK\r\n";
pub const PONG: &[u8] = b"+PONG\r\n";
pub const NIL: &[u8] = b"$-1\r\n";
/// RESP3's null.
pub const NULL3: &[u8] = b"_\r\n";

/// An error reply: `-<msg>\r\n`, with any CR or LF in `msg` made a space so a
/// message can never break the framing.
pub fn error(msg: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    b.put_u8(b'-');
    b.extend(
        msg.bytes()
            .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    b.put_slice(b"\r\n");
    b.freeze()
}

/// [`error`] for a message holding client bytes, which Redis echoes as they
/// are (only CR and LF become spaces, as Redis maps them).
pub fn error_bytes(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    b.put_u8(b'-');
    b.extend(
        msg.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    b.put_slice(b"\r\n");
    b.freeze()
}

/// The null reply of the client's protocol: RESP3 has its own type.
pub fn null(resp3: bool) -> Bytes {
    Bytes::from_static(if resp3 { NULL3 } else { NIL })
}

/// A text reply as Redis sends INFO: a verbatim string (`=`, format `txt`)
/// in RESP3, a bulk string in RESP2.
pub fn verbatim(text: &[u8], resp3: bool) -> Bytes {
    if !resp3 {
        return bulk(text);
    }
    let mut b = BytesMut::with_capacity(text.len() + 24);
    put_int(&mut b, b'=', text.len() as i64 + 4);
    b.put_slice(b"txt:");
    b.put_slice(text);
    b.put_slice(b"\r\n");
    b.freeze()
}

pub fn put_int(out: &mut BytesMut, prefix: u8, v: i64) {
    out.put_u8(prefix);
    let mut buf = [0u8; 20];
    out.put_slice(fmt_int(v, &mut buf));
    out.put_slice(b"\r\n");
}

fn fmt_int(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

pub fn int(v: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    put_int(&mut b, b':', v);
    b.freeze()
}

pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_int(out, b'$', data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

pub fn bulk(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut b, data);
    b.freeze()
}

/// Encodes a command as a multibulk request.
pub fn put_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    put_int(out, b'*', args.len() as i64);
    for a in args {
        put_bulk(out, a);
    }
}

pub fn command(args: &[&[u8]]) -> Bytes {
    // Sized up front (a bulk header is at most 24 bytes with its CRLFs), so
    // building a sub-request never regrows the buffer.
    let len = 16 + args.iter().map(|a| a.len() + 24).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    put_command(&mut b, args.iter().copied());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        assert_eq!(&error("ERR a\r\nb")[..], b"-ERR a  b\r\n");
        assert_eq!(&error_bytes(b"ERR \xff\r\n")[..], b"-ERR \xff  \r\n");
        assert_eq!(&null(false)[..], b"$-1\r\n");
        assert_eq!(&null(true)[..], b"_\r\n");
        assert_eq!(&verbatim(b"a", false)[..], b"$1\r\na\r\n");
        assert_eq!(&verbatim(b"a\r\n", true)[..], b"=7\r\ntxt:a\r\n\r\n");
        assert_eq!(&int(-7)[..], b":-7\r\n");
        assert_eq!(&int(i64::MIN)[..], b":-9223372036854775808\r\n");
        assert_eq!(&bulk(b"hi")[..], b"$2\r\nhi\r\n");
        assert_eq!(
            &command(&[b"GET", b"k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
