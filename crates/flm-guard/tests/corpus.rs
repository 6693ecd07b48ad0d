//! Seed-corpus robustness tests: every file under `tests/seeds/<target>/` — plus
//! deterministic mutations of it, and every seed fed to every other target — goes
//! through the matching parser / normaliser / detector, which must not panic and must
//! keep its documented invariants. The coverage-guided fuzz targets in `fuzz/` start
//! from the same seed directories and check the same invariants, so every seed (and
//! every crash a fuzzer found, once added here) also runs in CI:
//!
//! | seed dir | fuzz target | entry points |
//! |---|---|---|
//! | `path`, `query`, `header` | `normalize` | `normalize::decode`, `normalize_path`, `canonical_path`, `is_honeypot_path` |
//! | `request`, `path`, `query`, `header`, `fields` | `detectors` | `inspect`, `inspect_fields`, `fields_from_json`, `IntrusionDetector`, `AnomalyDetector` |
//! | `cidr`, `xff` | `net` | `IpNet` parse/Display, `parse_forwarded_addr`, `client_ip`, `AllowList` |
//! | `policy` | `policy` | `SecurityPolicy::from_json_slice` → `to_json_string` → parse round trip |
//!
//! The `api_key` target (`flm_core::keys::KeyTable::verify`) has its seeds in
//! `fuzz/seeds/api_key`; flm-guard does not depend on flm-core, so they are not run
//! here.

// Test code: a failed assertion or an unreadable seed directory must abort the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use flm_guard::anomaly::{
    fingerprint, AnomalyConfig, AnomalyDetector, RequestObservation, ResponseObservation,
};
use flm_guard::intrusion::{
    fields_from_json, inspect, inspect_fields, is_honeypot_path, IntrusionConfig,
    IntrusionDetector, RequestFacts,
};
use flm_guard::net::{client_ip, parse_forwarded_addr, AllowList, IpNet};
use flm_guard::normalize::{
    canonical_path, decode, is_plain_path, normalize_path, MAX_DECODE_ROUNDS, MAX_SCAN_BYTES,
};
use flm_guard::ratelimit::{Limit, RateLimiter};
use flm_guard::resource::{CpuSample, MemSample};
use flm_guard::{Blocklist, BlocklistConfig, SecurityPolicy};

const TARGETS: &[&str] = &[
    "policy", "cidr", "xff", "path", "query", "header", "fields", "request", "procstat", "meminfo",
];

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("seeds")
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = seeds_dir().join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("dir entry").path();
            let bytes = std::fs::read(&path).expect("read seed");
            (path.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

fn run(target: &str, input: &[u8]) {
    match target {
        "policy" => policy(input),
        "cidr" => cidr(input),
        "xff" => xff(input),
        "path" => path(input),
        "query" => query(input),
        "header" => header(input),
        "fields" => fields(input),
        "request" => request(input),
        "procstat" => {
            let text = String::from_utf8_lossy(input);
            if let Ok(s) = CpuSample::parse_proc_stat(&text) {
                let _ = s.busy_pct_since(&CpuSample::default());
                let _ = CpuSample::default().busy_pct_since(&s);
            }
        }
        "meminfo" => {
            if let Ok(m) = MemSample::parse_meminfo(&String::from_utf8_lossy(input)) {
                if let Some(p) = m.used_pct() {
                    assert!((0.0..=100.0).contains(&p), "{p}");
                }
            }
        }
        other => panic!("unknown target {other}"),
    }
}

fn policy(input: &[u8]) {
    match SecurityPolicy::from_json_slice(input) {
        Ok(p) => {
            // The normal form parses back to the same policy and is stable.
            let text = p.to_json_string();
            let back = SecurityPolicy::from_json_str(&text).expect("normal form must parse");
            assert_eq!(back, p);
            assert_eq!(back.to_json_string(), text);
            let _ = p.effective(true);
            let _ = p.effective(false);
        }
        Err(e) => {
            assert!(!e.errors().is_empty());
            let _ = e.to_string();
        }
    }
}

fn cidr(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(net) = text.parse::<IpNet>() {
        let again: IpNet = net.to_string().parse().expect("display must parse");
        assert_eq!(again, net);
        assert!(net.contains(net.addr()));
        assert!(AllowList::new(vec![net]).allows(net.addr()));
    }
    let _ = parse_forwarded_addr(&text);
}

fn xff(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (xff, real) = text.split_once('\n').unwrap_or((&text, ""));
    let trusted: Vec<IpNet> = ["10.0.0.0/8", "::1", "fd00::/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let got = client_ip(peer, Some(xff), Some(real), &trusted);
    let from_header = xff
        .split(',')
        .filter_map(parse_forwarded_addr)
        .any(|ip| ip == got)
        || parse_forwarded_addr(real) == Some(got);
    assert!(got == peer || from_header, "{got} came from nowhere");
    // An untrusted peer is never overridden.
    let outsider: IpAddr = "203.0.113.1".parse().unwrap();
    assert_eq!(
        client_ip(outsider, Some(xff), Some(real), &trusted),
        outsider
    );
    assert_eq!(client_ip(peer, Some(xff), Some(real), &[]), peer);
}

fn facts_inspect(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &[u8])],
    fields: &[(&str, &str)],
) {
    let findings = inspect(&RequestFacts {
        method,
        path,
        query,
        headers,
        fields,
    });
    assert!(findings.len() <= 64);
    let mut d = IntrusionDetector::new(IntrusionConfig::default());
    let _ = d.observe("192.0.2.1".parse().unwrap(), &findings, 0);
}

fn path(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let n = normalize_path(&text);
    let c = &n.canonical;
    assert!(c.starts_with('/'));
    assert!(c == "/" || !c.ends_with('/'), "{c:?}");
    assert!(!c.contains("//") && !n.decoded.text.contains('\\'));
    assert_eq!(&canonical_path(c), c, "canonical form is a fixed point");
    // The plain-path fast path and the full path agree on honeypots.
    if text.starts_with('/') && is_plain_path(c) {
        assert_eq!(is_honeypot_path(&text), is_honeypot_path(c), "{text:?}");
    }
    facts_inspect("GET", &text, None, &[("user-agent", b"x")], &[]);
    let mut a = AnomalyDetector::new(AnomalyConfig::default());
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    let _ = a.on_request(
        ip,
        &RequestObservation {
            method: "GET",
            path: &text,
            body_bytes: u64::MAX,
            header_count: usize::MAX,
            user_agent: Some(input),
            fingerprint: Some(1),
        },
        u64::MAX,
    );
    let _ = a.on_response(
        ip,
        &ResponseObservation {
            status: 404,
            duration_ms: u64::MAX,
            streaming: false,
        },
        0,
    );
}

fn query(input: &[u8]) {
    for plus in [false, true] {
        let d = decode(input, plus);
        assert!(
            d.text.len() <= MAX_SCAN_BYTES * 3,
            "decoding never grows much"
        );
        assert!(d.rounds <= MAX_DECODE_ROUNDS);
        assert_eq!(d.truncated, input.len() > MAX_SCAN_BYTES);
        assert!(!d.text.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(d.nul, d.text.contains('\0'));
        assert_eq!(decode(input, plus), d, "deterministic");
    }
    let text = String::from_utf8_lossy(input);
    facts_inspect(
        "POST",
        "/v1/models",
        Some(&text),
        &[("user-agent", b"x")],
        &[("model", &text)],
    );
}

fn header(input: &[u8]) {
    let headers: [(&str, &[u8]); 4] = [
        ("User-Agent", input),
        ("X-Api-Version", input),
        ("Authorization", input),
        ("origin", input),
    ];
    facts_inspect("OPTIONS", "/", None, &headers, &[]);
    facts_inspect(
        &String::from_utf8_lossy(input),
        "/",
        None,
        &headers[1..],
        &[],
    );
}

fn fields(input: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) {
        let owned = fields_from_json(&v);
        assert!(owned.len() <= 64 + 128 * 3);
        let borrowed: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        facts_inspect(
            "POST",
            "/v1/chat/completions",
            None,
            &[("user-agent", b"x")],
            &borrowed,
        );
    }
}

/// The `detectors` fuzz target's input layout: `method \0 path \0 query \0 header
/// values… \x01 JSON body`. Checks bounded, deduplicated findings, determinism, and
/// that the proxy's split inspection (head, then body fields) equals a full one.
fn request(input: &[u8]) {
    const NAMES: &[&str] = &[
        "User-Agent",
        "referer",
        "X-Forwarded-For",
        "accept",
        "sec-ch-ua",
        "Cookie",
        "x-custom",
        "origin",
    ];
    let (head, body) = match input.iter().position(|&b| b == 1) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let mut parts = head.split(|&b| b == 0);
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = parts
        .next()
        .map(|q| String::from_utf8_lossy(q).into_owned());
    let headers: Vec<(&str, &[u8])> = parts
        .enumerate()
        .take(80)
        .map(|(i, v)| (NAMES[i % NAMES.len()], v))
        .collect();
    let owned = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| fields_from_json(&v))
        .unwrap_or_default();
    let body_text = String::from_utf8_lossy(body);
    let mut fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    fields.push(("model", &body_text));
    let facts = RequestFacts {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        fields: &fields,
    };
    let full = inspect(&facts);
    assert!(full.len() <= 64);
    for (i, f) in full.iter().enumerate() {
        assert_eq!(f.score, f.pattern.points());
        assert!(!full[..i]
            .iter()
            .any(|o| o.pattern == f.pattern && o.location == f.location));
    }
    assert_eq!(inspect(&facts), full);
    let mut split = inspect(&RequestFacts {
        fields: &[],
        ..facts
    });
    split.extend(inspect_fields(&fields));
    if split.len() < 64 {
        assert_eq!(split, full);
    }
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let mut a = AnomalyDetector::new(AnomalyConfig::default());
    for k in 0..4u64 {
        let _ = a.on_request(
            ip,
            &RequestObservation {
                method: &method,
                path: &path,
                body_bytes: body.len() as u64,
                header_count: headers.len(),
                user_agent: headers.first().map(|(_, v)| *v),
                fingerprint: Some(fingerprint(&method, &path, body)),
            },
            k * 997,
        );
        let _ = a.on_response(
            ip,
            &ResponseObservation {
                status: 400 + k as u16,
                duration_ms: k,
                streaming: k % 2 == 0,
            },
            k * 997,
        );
    }
}

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the parsers and detectors.
const INTERESTING: &[u8] =
    b"%./\\'\";|&$`(){}[]<>:,=+-*#@\n\r\t \x00\xc0\xaf\xff0123456789abcdefuU";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let b = INTERESTING[rng.below(INTERESTING.len())];
                v.insert(i, b);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            4 if !v.is_empty() && v.len() < 40_000 => {
                let a = rng.below(v.len());
                let b = (a + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                v.splice(a..a, chunk);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.splice(i..i, b"%25%2e%c0%af".iter().copied());
            }
        }
    }
    v
}

#[test]
fn seeds_do_not_panic() {
    for target in TARGETS {
        for (name, bytes) in seeds(target) {
            let r = std::panic::catch_unwind(|| run(target, &bytes));
            assert!(r.is_ok(), "{target}: seed {name} panicked");
        }
    }
}

#[test]
fn mutations_do_not_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for target in TARGETS {
        for (name, bytes) in seeds(target) {
            // Big seeds get fewer mutants: the point is breadth, not CPU time.
            let n = if bytes.len() > 4096 { 4 } else { 48 };
            for i in 0..n {
                let m = mutate(&mut rng, &bytes);
                let r = std::panic::catch_unwind(|| run(target, &m));
                assert!(r.is_ok(), "{target}: mutant {i} of {name} panicked: {m:?}");
            }
        }
    }
}

#[test]
fn every_seed_through_every_target() {
    let all: Vec<(String, Vec<u8>)> = TARGETS.iter().flat_map(|t| seeds(t)).collect();
    for target in TARGETS {
        for (name, bytes) in &all {
            let r = std::panic::catch_unwind(|| run(target, bytes));
            assert!(r.is_ok(), "{target}: foreign seed {name} panicked");
        }
    }
}

#[test]
fn stateful_structures_survive_hostile_clocks_and_keys() {
    let mut rl = RateLimiter::with_max_keys(Limit::new(u32::MAX, 1), 8);
    let mut bl = Blocklist::new(BlocklistConfig {
        max_entries: 8,
        ..BlocklistConfig::default()
    });
    let mut rng = Rng(42);
    let times = [0, 1, u64::MAX, u64::MAX - 1, 1_700_000_000_000, 60_000];
    for i in 0..2000u32 {
        let now = times[rng.below(times.len())].wrapping_add(rng.below(100_000) as u64);
        let key = format!("k{}", rng.below(20));
        let _ = rl.check(&key, now);
        let _ = rl.check_with(
            &key,
            Limit::new(rng.below(5) as u32, rng.below(5) as u32),
            now,
        );
        let ip = IpAddr::from([10, 0, 0, (i % 20) as u8]);
        let _ = bl.record_failure(ip, now);
        let _ = bl.impose(ip, u64::MAX, now);
        let _ = bl.is_blocked(ip, now);
        if i % 97 == 0 {
            bl.sweep(now);
            rl.sweep(now);
        }
        assert!(rl.len() <= 8 && bl.len() <= 8);
    }
    let restored = Blocklist::from_entries(BlocklistConfig::default(), bl.entries());
    assert_eq!(restored.entries(), bl.entries());
}
