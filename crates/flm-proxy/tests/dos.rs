//! Denial of service by connections, over real sockets: idle connections from one
//! address (plain and TLS) or from many addresses must not lock honest clients out
//! with resource protection on, and a client that stops reading its stream must not
//! hold the engine request behind it.
//!
//! Attackers bind their sockets to other loopback addresses (127.0.0.2 …), so the
//! proxy sees them as other clients than the honest one (127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{vllm, vllm_with, Harness};
use flm_core::proxy::{ProxyConfig, ProxyMode};
use flm_core::services::ConfigService;
use flm_testkit::EmulatorOptions;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Honest requests per test.
const HONEST: usize = 1000;

/// Resource protection on, with the connection figure as the only threshold that can
/// trip: the honest load runs in this very process, and CPU or memory figures of a
/// shared test machine must not decide the outcome.
async fn protect(h: &Harness) {
    let policy = json!({"resource_protection": {"enabled": true, "cpu_threshold": 100, "memory_threshold": 100}});
    h.store.policy().save(&policy.to_string()).await.unwrap();
    h.manager.reload_security().await.unwrap();
}

#[derive(Default)]
struct Attack {
    opened: AtomicU64,
    /// Connections the proxy closed (refused at accept, evicted, timed out).
    closed: AtomicU64,
}

/// Holds `per_source` idle connections from each of `sources` to `target`, never
/// sending a byte, and reopens every connection the proxy closes one second later
/// (as the attack in the issue did), until `stop`.
fn hold_idle(
    target: SocketAddr,
    sources: &[Ipv4Addr],
    per_source: usize,
    stop: watch::Receiver<bool>,
) -> (Arc<Attack>, Vec<tokio::task::JoinHandle<()>>) {
    let stats = Arc::new(Attack::default());
    let mut tasks = Vec::new();
    for &src in sources {
        for _ in 0..per_source {
            let stats = stats.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    let sock = tokio::net::TcpSocket::new_v4().unwrap();
                    sock.bind(SocketAddr::new(src.into(), 0)).unwrap();
                    let Ok(mut s) = sock.connect(target).await else {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    };
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    tokio::select! {
                        _ = s.read(&mut buf) => {
                            stats.closed.fetch_add(1, Ordering::Relaxed);
                        }
                        _ = stop.changed() => return,
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
    }
    (stats, tasks)
}

/// Waits until the proxy closed `n` attacker connections, well before the 10 s
/// header and handshake timeouts could have closed any.
async fn wait_closed(a: &Attack, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(6);
    while a.closed.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the proxy closed only {} attacker connections, expected {n}",
            a.closed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_opened(a: &Attack, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.opened.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the attack could not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends [`HONEST`] chat requests (4 at a time) and returns how many got `200`, with
/// the other statuses or errors seen.
async fn honest_load(client: reqwest::Client, url: String, key: String) -> (usize, Vec<String>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let (ok, failures, next) = (ok.clone(), failures.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < HONEST as u64 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"model": "flm://vllm/test-model", "messages": [{"role": "user", "content": "hi"}]}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        if r.bytes().await.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let started = Instant::now();
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the load took too long"
    );
    let ok = ok.load(Ordering::Relaxed) as usize;
    let failures = failures.lock().unwrap().clone();
    (ok, failures)
}

fn assert_served(ok: usize, failures: &[String]) {
    // ≥ 99.9 %: at most one request of the thousand may fail.
    assert!(
        ok * 1000 >= HONEST * 999,
        "honest client served {ok}/{HONEST}; first failures: {:?}",
        &failures[..failures.len().min(5)]
    );
}

fn proxy_addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_do_not_lock_others_out() {
    let (_engine, h) = vllm().await;
    protect(&h).await;
    let (stop, stop_rx) = watch::channel(false);
    let (attack, tasks) = hold_idle(
        proxy_addr(&h.base),
        &[Ipv4Addr::new(127, 0, 0, 2)],
        500,
        stop_rx,
    );
    wait_opened(&attack, 500).await;
    // Beyond the per-address cap (128 by default) the proxy closes at once.
    wait_closed(&attack, 500 - 128).await;
    let (ok, failures) = honest_load(
        h.http.clone(),
        format!("{}/v1/chat/completions", h.base),
        h.key.clone(),
    )
    .await;
    stop.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert_served(ok, &failures);
    h.stop().await;
}

/// Many addresses: the pending connections (no request yet) are bounded all together;
/// the oldest make room, long before their header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_addresses_are_bounded() {
    let (_engine, h) = vllm().await;
    protect(&h).await;
    let (stop, stop_rx) = watch::channel(false);
    let sources: Vec<Ipv4Addr> = (2..12).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let (attack, tasks) = hold_idle(proxy_addr(&h.base), &sources, 100, stop_rx);
    wait_opened(&attack, 1000).await;
    // 1000 pending sockets, at most 512 kept: the oldest were closed to make room.
    wait_closed(&attack, 1000 - 512).await;
    let (ok, failures) = honest_load(
        h.http.clone(),
        format!("{}/v1/chat/completions", h.base),
        h.key.clone(),
    )
    .await;
    stop.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert_served(ok, &failures);
    h.stop().await;
}

/// A port whose successor is free too (TLS modes use port and port+1).
fn free_pair() -> u16 {
    for _ in 0..50 {
        let p = common::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_from_one_address_do_not_lock_others_out() {
    let (_engine, h) = vllm().await;
    protect(&h).await;
    let handle = h
        .manager
        .start(ProxyConfig {
            mode: ProxyMode::DevSelfsigned,
            port: free_pair(),
            ..ProxyConfig::default()
        })
        .await
        .unwrap();
    let https = handle.https_port.expect("https port");
    let pem = std::fs::read(&handle.tls.clone().expect("tls").trust_cert_path).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    // Idle before the handshake: the TLS port is where an attacker would hold them.
    let (attack, tasks) = hold_idle(
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), https),
        &[Ipv4Addr::new(127, 0, 0, 2)],
        500,
        stop_rx,
    );
    wait_opened(&attack, 500).await;
    wait_closed(&attack, 500 - 128).await;
    let (ok, failures) = honest_load(
        client,
        format!("https://127.0.0.1:{https}/v1/chat/completions"),
        h.key.clone(),
    )
    .await;
    stop.send_replace(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert_served(ok, &failures);
    h.stop().await;
}

/// A client that reads the response headers of a stream and then nothing: the proxy's
/// writes stop making progress, `proxy.send_timeout_secs` closes the connection, and
/// the engine sees its stream cancelled — not after the 30-minute ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_releases_the_engine_stream() {
    // ~200,000 chunks (tens of MB): far more than every buffer on the way can hold.
    let (engine, h) = vllm_with(EmulatorOptions::default().stream_padding(200_000)).await;
    let config = ConfigService::new(h.store.settings(), "config.db");
    config.set("proxy.send_timeout_secs", "1").await.unwrap();
    let port = common::free_port();
    h.manager
        .start(ProxyConfig {
            port,
            ..ProxyConfig::default()
        })
        .await
        .unwrap();

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock
        .connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
        .await
        .unwrap();
    let body = json!({"model": "flm://vllm/test-model", "messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        h.key,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the response head, then stop reading (the socket stays open).
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    while engine.control().cancelled_streams() == 0 {
        assert!(
            Instant::now() < deadline,
            "the engine stream is still open {} s after the client stopped reading",
            started.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(engine.control().open_streams(), 0);
    // The proxy closed the stalled connection.
    let mut sink = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection stayed open");
    drop(s);
    h.stop().await;
}
