//! Egress through SOCKS5 (spec 30-proxy §11) with Debian's real `microsocks`: a remote
//! engine (an emulator on this machine's non-loopback address) is reached through the
//! SOCKS server, loopback engines stay direct, an unreachable endpoint stops the start
//! (fail closed) unless fail-open, and a SOCKS server that dies is never bypassed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{egress_engines, engine_service, free_port};
use flm_core::proxy::{EgressConfig, EgressMode, ProxyConfig};
use flm_core::services::{ConfigService, KeyService};
use flm_core::EngineKind;
use flm_engines::HttpClient;
use flm_proxy::{ProxyDeps, ProxyManager, StopTarget};
use flm_store::{Store, StorePaths};
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

/// This machine's non-loopback address (what a "remote" engine binds to).
fn lan_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `microsocks` on loopback; its log lines ("client[n] …: connected to host:port")
/// are collected.
struct Socks {
    child: tokio::process::Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Socks {
    async fn start() -> Socks {
        let port = free_port();
        let mut child = tokio::process::Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("microsocks is installed (Debian package microsocks)");
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    log.lock().unwrap().push(l);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "microsocks did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Socks { child, port, log }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn saw(&self, target: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("connected to {target}")))
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

struct Setup {
    _dir: TempDir,
    store: Store,
    manager: ProxyManager,
    key: String,
}

async fn setup(endpoints: &[(&str, String)]) -> Setup {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let config = ConfigService::new(store.settings(), "config.db");
    for (k, v) in [
        ("engine.probe_default_ports", "false"),
        ("engine.detect_timeout_ms", "1500"),
        ("engine.request_timeout_secs", "5"),
        ("proxy.engine_check_interval_secs", "1"),
        ("proxy.request_timeout_secs", "5"),
        ("proxy.shutdown_grace_secs", "1"),
    ] {
        config.set(k, v).await.unwrap();
    }
    let engines = engine_service(&store, &config, HttpClient::new().unwrap());
    for (id, url) in endpoints {
        engines
            .add_endpoint(EngineKind::Vllm, url, Some(id))
            .await
            .unwrap();
    }
    let keys = KeyService::new(store.api_keys(), Arc::new(flm_core::ports::SystemClock));
    let key = keys.create("test").await.unwrap().key;
    let manager = ProxyManager::new(ProxyDeps {
        engines,
        config: config.clone(),
        keys: store.api_keys(),
        changes: None,
        security: None,
        certs_dir: dir.path().join("certs"),
        egress_engines: Some(egress_engines(store.clone(), config)),
        acme: flm_proxy::AcmeDeps::default(),
        certificates: Some(store.certificates()),
        audit: Some(store.audit()),
    });
    Setup {
        _dir: dir,
        store,
        manager,
        key,
    }
}

fn socks(endpoint: String, fail_open: bool) -> ProxyConfig {
    ProxyConfig {
        port: free_port(),
        egress: EgressConfig {
            mode: EgressMode::Socks5,
            socks5_endpoint: Some(endpoint),
            fail_open,
        },
        ..ProxyConfig::default()
    }
}

async fn chat(port: u16, key: &str, model: &str) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Retries until the proxy's first engine check has found the engine.
async fn chat_ok(port: u16, key: &str, model: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = chat(port, key, model).await;
        if code == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "chat never succeeded: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn remote_emulator(ip: IpAddr, model: &str) -> Emulator {
    Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions {
            bind: ip,
            ..EmulatorOptions::with_models([EmulatedModel::chat(model)])
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_engines_go_through_socks5_and_loopback_stays_direct() {
    let Some(ip) = lan_ip() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let remote = remote_emulator(ip, "remote-model").await;
    let local = remote_emulator("127.0.0.1".parse().unwrap(), "local-model").await;
    let ms = Socks::start().await;
    let s = setup(&[
        ("vllm-remote", remote.base_url()),
        ("vllm-local", local.base_url()),
    ])
    .await;
    let handle = s.manager.start(socks(ms.endpoint(), false)).await.unwrap();
    assert_eq!(handle.egress.mode, EgressMode::Socks5);
    assert_eq!(
        handle.egress.display_url(),
        format!("socks5://{}", ms.endpoint())
    );
    assert!(handle.last_error.is_none());

    let answer = chat_ok(handle.port, &s.key, "flm://vllm-remote/remote-model").await;
    assert!(answer["choices"][0]["message"].is_object(), "{answer}");
    chat_ok(handle.port, &s.key, "flm://vllm-local/local-model").await;
    // microsocks connected to the remote engine, never to the loopback one.
    let remote_addr = remote.addr().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ms.saw(&remote_addr) {
        assert!(
            Instant::now() < deadline,
            "microsocks never connected to {remote_addr}: {:?}",
            ms.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ms.saw(&local.addr().to_string()),
        "a loopback engine went through SOCKS: {:?}",
        ms.log.lock().unwrap()
    );

    // Fail closed at run time: with the SOCKS server gone, the remote engine is not
    // reached at all (no direct fallback) and the client gets an error.
    ms.kill().await;
    remote.control().reset();
    let (code, body) = chat(handle.port, &s.key, "flm://vllm-remote/remote-model").await;
    assert!(code >= 500 || code == 404, "{code} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await; // a monitor round
    assert_eq!(remote.control().requests(), 0, "a request bypassed SOCKS");
    // Loopback engines keep working.
    chat_ok(handle.port, &s.key, "flm://vllm-local/local-model").await;
    s.manager.stop(&StopTarget::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_socks_endpoint_fails_closed_unless_fail_open() {
    let Some(ip) = lan_ip() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let remote = remote_emulator(ip, "remote-model").await;
    let s = setup(&[("vllm-remote", remote.base_url())]).await;
    let dead = format!("127.0.0.1:{}", free_port());

    let started = Instant::now();
    let err = s
        .manager
        .start(socks(dead.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROXY_INVALID_CONFIG");
    let msg = err.to_string();
    assert!(
        msg.contains(&dead) && msg.contains("--egress-fail-open"),
        "{msg}"
    );
    assert!(msg.contains("3 attempts"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(s.manager.status().is_empty());
    assert_eq!(remote.control().requests(), 0);

    // Tor's default endpoint, when nothing listens there, is named in the error.
    if tokio::net::TcpStream::connect("127.0.0.1:9050")
        .await
        .is_err()
    {
        let mut tor = socks(String::new(), false);
        tor.egress = EgressConfig {
            mode: EgressMode::Tor,
            ..EgressConfig::default()
        };
        let err = s.manager.start(tor).await.unwrap_err();
        assert!(err.to_string().contains("tor://127.0.0.1:9050"), "{err}");
        assert!(err.to_string().contains("start Tor"), "{err}");
    }

    // Fail open: starts, says why, and reaches the engine directly.
    let handle = s.manager.start(socks(dead.clone(), true)).await.unwrap();
    let note = handle.last_error.clone().unwrap();
    assert!(note.contains("direct"), "{note}");
    assert_eq!(
        handle.egress.mode,
        EgressMode::Direct,
        "status tells the truth"
    );
    assert!(note.contains(&dead), "{note}");
    // Both outcomes are in the audit log.
    let events: Vec<String> = s
        .store
        .audit()
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.event_type)
        .collect();
    for want in ["socks5_unreachable", "egress_fail_open_triggered"] {
        assert!(
            events.iter().any(|e| e == want),
            "{want} missing: {events:?}"
        );
    }
    chat_ok(handle.port, &s.key, "flm://vllm-remote/remote-model").await;
    assert!(remote.control().chat_requests() >= 1);
    s.manager.stop(&StopTarget::default()).await.unwrap();
}

#[tokio::test]
async fn egress_config_is_validated() {
    let s = setup(&[]).await;
    let mut c = socks("127.0.0.1:1080".into(), false);
    c.egress.socks5_endpoint = None;
    let err = s.manager.start(c).await.unwrap_err();
    assert_eq!(err.code(), "PROXY_INVALID_CONFIG");
    for bad in ["nohost", ":1080", "127.0.0.1:0", "127.0.0.1:x", "h/x:1"] {
        let err = s.manager.start(socks(bad.into(), false)).await.unwrap_err();
        assert_eq!(err.code(), "PROXY_INVALID_CONFIG", "{bad}");
    }
    let c = ProxyConfig {
        port: free_port(),
        egress: EgressConfig {
            socks5_endpoint: Some("127.0.0.1:1080".into()),
            ..EgressConfig::default()
        },
        ..ProxyConfig::default()
    };
    assert_eq!(
        s.manager.start(c).await.unwrap_err().code(),
        "PROXY_INVALID_CONFIG"
    );
}

/// A `--socks5-endpoint` that is a plain HTTP server (or a silent listener) is refused
/// at once, fail-closed even with `--egress-fail-open`: it is a wrong endpoint, not an
/// outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_that_is_not_socks5_is_refused_precisely() {
    let s = setup(&[]).await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "hello" });
        axum::serve(http, app).await.unwrap();
    });
    for fail_open in [false, true] {
        let started = Instant::now();
        let err = s
            .manager
            .start(socks(http_addr.clone(), fail_open))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "PROXY_INVALID_CONFIG");
        let msg = err.to_string();
        assert!(
            msg.contains(&http_addr) && msg.contains("did not speak SOCKS5"),
            "{msg}"
        );
        assert!(msg.contains("HTTP server"), "{msg}");
        assert!(!msg.contains("attempts"), "not retried: {msg}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // Accepts, then says nothing: refused after one bounded wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    let started = Instant::now();
    let err = s
        .manager
        .start(socks(silent_addr.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PROXY_INVALID_CONFIG");
    assert!(err.to_string().contains("did not speak SOCKS5"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(s.manager.status().is_empty());
    let events: Vec<String> = s
        .store
        .audit()
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.event_type)
        .collect();
    assert!(events.iter().any(|e| e == "socks5_not_socks"), "{events:?}");
}
