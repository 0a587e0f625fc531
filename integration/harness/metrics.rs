//! The Prometheus endpoint (`--metrics`): one HTTP request, the text
//! exposition format parsed into samples, and checks on families and
//! histograms. Owns no process; each fetch is one connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::ports::{accepts, poll_until};

/// One HTTP/1.1 request on a fresh connection: (status code, headers, body).
pub fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to metrics port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (code, head.to_string(), body.to_string())
}

/// GET `path` on a fresh connection: (status code, headers, body).
pub fn get(port: u16, path: &str) -> (u16, String, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n"),
    )
}

/// A parsed sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape of the metrics endpoint: its text and its parsed samples.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: String) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label k=v");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics { text, samples }
    }

    /// Waits until the metrics port accepts (it opens after the clusters).
    pub fn wait_ready(port: u16) {
        let ok = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            accepts(port).then_some(())
        });
        assert!(ok.is_some(), "the metrics port {port} does not accept");
    }

    pub fn fetch(port: u16) -> Metrics {
        let (code, head, body) = get(port, "/metrics");
        assert_eq!(code, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        Metrics::parse(body)
    }

    /// The samples of `name` whose labels include every pair of `want`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the first sample `matching`.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, want).next().map(|s| s.value)
    }

    /// The sum of every sample `matching`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(name, want).map(|s| s.value).sum()
    }

    /// Checks `# TYPE` and at least one sample for a family.
    pub fn assert_family(&self, name: &str, kind: &str) {
        assert!(
            self.text.contains(&format!("# TYPE {name} {kind}\n")),
            "no '# TYPE {name} {kind}':\n{}",
            self.text
        );
        assert!(
            self.text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        let sample = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(
            self.samples.iter().any(|s| s.name == sample),
            "no sample of {name}:\n{}",
            self.text
        );
    }

    /// Every series of histogram `name`: buckets ascending in `le` and
    /// cumulative, the +Inf bucket equal to _count. Returns the _counts.
    pub fn check_histogram(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let bucket = format!("{name}_bucket");
        // Labels without `le` -> (le, cumulative count) in order of appearance.
        type Series = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;
        let mut series = Series::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let le = s.labels.get("le").expect("bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "no buckets for {name}");
        let mut counts = Vec::new();
        for (labels, buckets) in series {
            let want: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(buckets.len() >= 2, "{name}{labels:?}: {buckets:?}");
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{name}{labels:?}: le not ascending");
                assert!(
                    w[0].1 <= w[1].1,
                    "{name}{labels:?}: buckets not cumulative: {buckets:?}"
                );
            }
            let (last_le, inf) = *buckets.last().expect("buckets");
            assert!(
                last_le.is_infinite(),
                "{name}{labels:?}: last bucket is not +Inf"
            );
            let count = self
                .value(&format!("{name}_count"), &want)
                .unwrap_or_else(|| panic!("{name}_count{labels:?} missing"));
            assert_eq!(inf, count, "{name}{labels:?}: +Inf bucket != _count");
            let sum = self
                .value(&format!("{name}_sum"), &want)
                .unwrap_or_else(|| panic!("{name}_sum{labels:?} missing"));
            assert!(
                sum >= 0.0 && (count > 0.0 || sum == 0.0),
                "{name}_sum {sum}"
            );
            counts.push((labels.into_iter().collect(), count));
        }
        counts
    }
}
