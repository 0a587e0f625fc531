//! INFO text, as the proxy and `redis-server` write it: fetched through a
//! `Client` and parsed into fields. Owns no process or connection.

use std::collections::BTreeMap;

use super::client::{Client, Reply};

/// INFO [section] through a client, as text.
pub fn info(c: &mut Client, section: Option<&str>) -> String {
    let r = match section {
        Some(s) => c.cmd(&["INFO", s]),
        None => c.cmd(&["INFO"]),
    };
    match r {
        Reply::Bulk(b) => String::from_utf8(b).expect("INFO is UTF-8"),
        other => panic!("INFO: {other:?}"),
    }
}

/// `key:value` of an INFO text.
pub fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
}

/// A numeric field of a fresh INFO; `None` when missing, so a poll waiting
/// for it goes on instead of panicking.
pub fn info_u64(c: &mut Client, key: &str) -> Option<u64> {
    info_field(&info(c, None), key)?.trim().parse().ok()
}

/// A numeric `key:value` of an INFO text; panics if missing or not a number.
pub fn info_num(text: &str, key: &str) -> u64 {
    info_field(text, key)
        .unwrap_or_else(|| panic!("INFO has no {key}:\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO {key} is not a number:\n{text}"))
}

/// Every `key:value` line of an INFO text, as a map.
pub fn info_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim_end_matches('\r').split_once(':')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The `backendN:k=v,...` lines of the proxy's INFO text, each as a map.
pub fn info_backends(text: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .filter(|l| l.starts_with("backend"))
        .map(|l| {
            let (_, rest) = l.split_once(':').expect("backend line has ':'");
            rest.split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("k=v");
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .collect()
}
