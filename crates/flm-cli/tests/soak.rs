//! A bounded soak of the real daemon under moderate load while things go wrong
//! around it: an engine that goes down and comes back, clients that hang up in the
//! middle of a stream, and bans that are made and lifted with the CLI.
//!
//! What must hold for the whole run:
//! - requests to the engine that never fails all succeed (nothing beyond the
//!   injected failures goes wrong);
//! - requests to the failing engine either succeed or fail with an engine error
//!   (never a 500, never a dropped connection);
//! - a banned address is refused within 1 s of `ip-blocklist add` and served again
//!   within 1 s of `unblock`;
//! - the daemon's memory stays flat (after warm-up);
//! - the audit chain verifies afterwards.
//!
//! `FLM_SOAK_SECS` sets the duration (default 60 s: the suite's short version);
//! `bench/soak.sh` runs the same test for 30 minutes on a release build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, Env};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::{json, Value};

fn soak_secs() -> u64 {
    std::env::var("FLM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .clamp(20, 4 * 3600)
}

fn client(from: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(from)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    injected: AtomicU64,
    disconnects: AtomicU64,
    unexpected: AtomicU64,
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 8,
           "messages": [{"role": "user", "content": "soak"}]})
}

/// Whether a failure is one the test injected (the vLLM engine is down or just came
/// back and is not re-checked yet).
/// A pinned engine that went away between two checks is spec 30-proxy §9.2's
/// `500 chat_error`; the test accepts it only when the message says the engine could
/// not be reached (never for a bad answer of a running engine).
fn injected(status: u16, body: &Value) -> bool {
    let code = body["error"]["code"].as_str().unwrap_or("");
    let message = body["error"]["message"].as_str().unwrap_or("");
    let unreachable = status == 500
        && code == "chat_error"
        && (message.starts_with("cannot connect to")
            || message.contains("connection closed before message completed"));
    unreachable
        || matches!(status, 404 | 502 | 503 | 504)
            && (code.starts_with("engine_")
                || code == "model_not_found"
                || code.contains("unavailable"))
}

#[allow(clippy::too_many_lines)] // one story, told in order
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_failing_engine_disconnects_and_bans() {
    let secs = soak_secs();
    let vllm_port = free_port();
    let opts = || {
        let mut o = EmulatorOptions::default().chunk_delay(Duration::from_millis(2));
        o.port = vllm_port;
        o
    };
    let mut vllm = Some(Emulator::start(EmulatedKind::Vllm, opts()).await.unwrap());
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::default().chunk_delay(Duration::from_millis(2)),
    )
    .await
    .unwrap();
    let env = Env::new();
    let _guard = env.guard();
    let v = env
        .flm(&[
            "engines",
            "add",
            "--kind",
            "vllm",
            "--url",
            &format!("http://127.0.0.1:{vllm_port}"),
        ])
        .await
        .ok();
    let o = env
        .flm(&[
            "engines",
            "add",
            "--kind",
            "ollama",
            "--url",
            &ollama.base_url(),
        ])
        .await
        .ok();
    let vllm_model = format!("flm://{}/test-model", v["id"].as_str().unwrap());
    let ollama_model = format!("flm://{}/test-model", o["id"].as_str().unwrap());
    // Engines are re-checked every second, so a restarted engine is back quickly.
    env.flm(&["config", "set", "proxy.engine_check_interval_secs", "1"])
        .await
        .ok();
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let pid = started["pid"].as_u64().unwrap() as u32;
    let base = format!("http://127.0.0.1:{port}");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (tally, stop, key, base) = (tally.clone(), stop.clone(), key.clone(), base.clone());
        let (vm, om) = (vllm_model.clone(), ollama_model.clone());
        workers.push(tokio::spawn(async move {
            let http = client(None);
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (model, stream, hang_up) = match i % 5 {
                    0 => (&vm, false, false),
                    1 => (&vm, true, false),
                    2 => (&om, true, false),
                    3 => (&om, false, false),
                    _ => (&om, true, true),
                };
                let sent = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&chat_body(model, stream))
                    .send()
                    .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("[soak] transport error: {e}");
                        tally.unexpected.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let status = resp.status().as_u16();
                if status == 200 && hang_up {
                    // Read the first chunk, then hang up mid-stream.
                    let mut body = resp.bytes_stream();
                    let _ = body.next().await;
                    drop(body);
                    tally.disconnects.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let text = resp.text().await.unwrap_or_default();
                let failing_engine = model == &vm;
                if status == 200 && (!stream || text.contains("data: [DONE]")) {
                    if stream && text.contains("\"error\"") {
                        // A stream the engine broke off (it went down mid-stream).
                        if failing_engine {
                            tally.injected.fetch_add(1, Ordering::Relaxed);
                        } else {
                            eprintln!("[soak] broken stream from the healthy engine: {text}");
                            tally.unexpected.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if failing_engine && injected(status, &body) {
                    tally.injected.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("[soak] unexpected answer for {model}: {status} {text}");
                    tally.unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Memory samples: (seconds since start, KiB).
    let started_at = Instant::now();
    let mut rss: Vec<(u64, u64)> = Vec::new();
    let banned_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let banned = client(Some(banned_ip));
    let mut cycle = 0u32;
    let (mut ban_latencies, mut unban_latencies) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        cycle += 1;
        // The engine goes down for 2 s and comes back on the same port.
        if let Some(e) = vllm.take() {
            e.shutdown().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        vllm = Some(Emulator::start(EmulatedKind::Vllm, opts()).await.unwrap());

        // A ban made and lifted with the CLI, each applied within 1 s.
        env.flm(&["security", "ip-blocklist", "add", "127.0.0.2"])
            .await
            .ok();
        let t = Instant::now();
        loop {
            let r = banned
                .get(format!("{base}/v1/models"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            if r.status() == 403 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "ban not applied within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ban_latencies.push(t.elapsed());
        env.flm(&["security", "ip-blocklist", "unblock", "127.0.0.2"])
            .await
            .ok();
        let t = Instant::now();
        loop {
            let r = banned
                .get(format!("{base}/v1/models"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "unblock not applied within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        unban_latencies.push(t.elapsed());

        if let Some(kib) = rss_kib(pid) {
            rss.push((started_at.elapsed().as_secs(), kib));
        }
        let pause = Duration::from_secs(4).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("workers stop")
            .unwrap();
    }
    if let Some(kib) = rss_kib(pid) {
        rss.push((started_at.elapsed().as_secs(), kib));
    }

    let ok = tally.ok.load(Ordering::Relaxed);
    let injected_n = tally.injected.load(Ordering::Relaxed);
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    let disconnects = tally.disconnects.load(Ordering::Relaxed);
    // Warm-up: the first third of the run (allocator pools, connection pools, tables).
    let warm = secs / 3;
    let base_kib = rss
        .iter()
        .filter(|(t, _)| *t <= warm.max(10))
        .map(|(_, k)| *k)
        .max()
        .unwrap_or(0);
    let last_kib = rss.last().map_or(0, |(_, k)| *k);
    let max_late = rss
        .iter()
        .filter(|(t, _)| *t > warm.max(10))
        .map(|(_, k)| *k)
        .max()
        .unwrap_or(last_kib);
    eprintln!(
        "[soak] {secs} s, {cycle} cycles: {ok} ok, {injected_n} injected failures, {disconnects} hang-ups, {unexpected} unexpected; \
         ban applied in max {:?}, unblock in max {:?}; RSS after warm-up {base_kib} KiB, max later {max_late} KiB, last {last_kib} KiB; samples {rss:?}",
        ban_latencies.iter().max().copied().unwrap_or_default(),
        unban_latencies.iter().max().copied().unwrap_or_default(),
    );
    assert_eq!(unexpected, 0, "failures beyond the injected ones");
    assert!(ok > secs * 20, "too few successful requests: {ok}");
    assert!(disconnects > 0 && cycle >= 2);
    // Flat: no more than 25 % (or 8 MiB, whichever is larger) above the warm level.
    let allowed = base_kib + (base_kib / 4).max(8 * 1024);
    assert!(
        max_late <= allowed,
        "memory grew: {base_kib} KiB after warm-up, {max_late} KiB later"
    );

    env.flm(&["proxy", "stop"]).await.ok();
    let verified = env.flm(&["security", "audit-logs", "verify"]).await.ok();
    assert!(verified["rows_checked"].as_u64().unwrap() > 0, "{verified}");
}
