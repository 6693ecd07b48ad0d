//! Per-call cost of the hot-path functions. Prints ns/op and asserts nothing: timings
//! depend on the machine and the profile (run with `--release` for real numbers:
//! `cargo test -p flm-guard --release --test perf -- --nocapture`). Each figure is the
//! best of 5 rounds of 20 000 calls (100 000 in all), to shrug off a busy machine.

// Test code: setup failures must abort the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use flm_guard::intrusion::{inspect, RequestFacts};
use flm_guard::net::{client_ip, rate_subject, IpNet};
use flm_guard::ratelimit::{Limit, RateLimiter};
use flm_guard::Blocklist;

const ROUNDS: u32 = 5;
const N: u32 = 20_000;

/// Runs `f(i)` for `i` in `0..N`, `ROUNDS` times, and prints the best ns/op.
fn bench(name: &str, mut f: impl FnMut(u32)) {
    let mut best = u128::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..N {
            f(i);
        }
        best = best.min(start.elapsed().as_nanos() / u128::from(N));
    }
    println!("{name:<48} {best:>7} ns/op");
}

#[test]
fn hot_path_costs() {
    let headers: [(&str, &[u8]); 7] = [
        ("host", b"gpu-box.lan:8780"),
        ("user-agent", b"OpenAI/Python 1.35.3"),
        (
            "authorization",
            b"Bearer flm_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        ),
        ("content-type", b"application/json"),
        ("accept", b"application/json"),
        ("x-stainless-lang", b"python"),
        ("content-length", b"1234"),
    ];
    let fields = [
        ("model", "flm://ollama/llama3.1:8b"),
        ("tools[].function.name", "get_weather"),
    ];
    let benign = RequestFacts {
        method: "POST",
        path: "/v1/chat/completions",
        query: None,
        headers: &headers,
        fields: &fields,
    };
    let browser_headers: [(&str, &[u8]); 6] = [
        ("user-agent", b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
        ("sec-ch-ua", b"\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\""),
        ("accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", b"en-US,en;q=0.9"),
        ("origin", b"https://chat.example.com"),
        ("referer", b"https://chat.example.com/c/123?x=1&y=2"),
    ];
    let browser = RequestFacts {
        method: "GET",
        path: "/v1/models",
        query: Some("limit=10&order=desc"),
        headers: &browser_headers,
        fields: &[],
    };
    let attack_headers: [(&str, &[u8]); 1] =
        [("user-agent", b"sqlmap/1.7.2#stable (https://sqlmap.org)")];
    let attack = RequestFacts {
        method: "GET",
        path: "/v1/%252e%252e/%252e%252e/etc/passwd",
        query: Some("id=1'%20UNION%20SELECT%20null,version()--"),
        headers: &attack_headers,
        fields: &[],
    };
    assert!(inspect(&benign).is_empty());
    assert!(inspect(&browser).is_empty());
    assert!(!inspect(&attack).is_empty());

    for (name, facts) in [
        ("inspect: SDK chat request (clean)", &benign),
        ("inspect: browser GET with query (clean)", &browser),
        ("inspect: encoded traversal + SQLi + sqlmap", &attack),
    ] {
        bench(name, |_| {
            black_box(inspect(black_box(facts)));
        });
    }

    let t0: u64 = 1_700_000_000_000;
    let mut rl = RateLimiter::new(Limit::new(6_000_000, 6_000_000));
    bench("ratelimit::check: one hot key", |i| {
        black_box(rl.check(black_box("key_0123456789abcdef"), t0 + u64::from(i)));
    });

    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let mut rl = RateLimiter::new(Limit::new(1000, 1000));
    bench("ratelimit::check: 10k rotating keys", |i| {
        let k = &keys[(i as usize) % keys.len()];
        black_box(rl.check(black_box(k), t0 + u64::from(i)));
    });

    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    bench("client_ip (2 hops) + rate_subject", |_| {
        let ip = client_ip(
            black_box(peer),
            black_box(Some("198.51.100.7, 10.0.0.9")),
            None,
            &trusted,
        );
        black_box(rate_subject(ip));
    });

    let bl = Blocklist::new(flm_guard::BlocklistConfig::default());
    bench("blocklist::is_blocked (miss)", |_| {
        black_box(bl.is_blocked(black_box(peer), t0));
    });
}
