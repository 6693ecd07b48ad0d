//! The engine pass-through `/engine/{id}/*` end to end: a real proxy in front of the
//! real llama-server and the testkit emulators, over real sockets. What an engine
//! received is read per route from the emulators' request records, so a health probe
//! landing in between cannot hide anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flm_core::ports::SystemClock;
use flm_core::proxy::ProxyConfig;
use flm_core::services::{ConfigService, KeyService};
use flm_core::EngineKind;
use flm_engines::HttpClient;
use flm_proxy::{ProxyDeps, ProxyManager};
use flm_store::{Store, StorePaths};
use flm_testkit::http::{HeaderName, HeaderValue};
use flm_testkit::llama::TinyModel;
use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use common::{egress_engines, engine_service, free_port, llama, security_deps, Harness};

/// A proxy with `settings` on top of the usual test ones. Engines are re-checked only
/// every hour: whatever stays routable stays so without the help of a re-detection.
async fn proxy(endpoints: &[(EngineKind, String, &str)], settings: &[(&str, &str)]) -> Harness {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let config = ConfigService::new(store.settings(), "config.db");
    for (k, v) in [
        ("engine.probe_default_ports", "false"),
        ("engine.detect_timeout_ms", "1500"),
        ("engine.request_timeout_secs", "5"),
        ("proxy.engine_check_interval_secs", "3600"),
        ("proxy.request_timeout_secs", "5"),
        ("proxy.shutdown_grace_secs", "1"),
    ]
    .iter()
    .chain(settings)
    {
        config.set(k, v).await.unwrap();
    }
    let engines = engine_service(&store, &config, HttpClient::new().unwrap());
    for (kind, url, id) in endpoints {
        engines.add_endpoint(*kind, url, Some(id)).await.unwrap();
    }
    let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
    let key = keys.create("test").await.unwrap().key;
    let manager = ProxyManager::new(ProxyDeps {
        engines,
        config: config.clone(),
        keys: store.api_keys(),
        changes: Some(store.change_markers()),
        security: Some(security_deps(&store)),
        certs_dir: dir.path().join("certs"),
        egress_engines: Some(egress_engines(store.clone(), config.clone())),
        acme: flm_proxy::AcmeDeps::default(),
        certificates: Some(store.certificates()),
        audit: Some(store.audit()),
    });
    let port = free_port();
    manager
        .start(ProxyConfig {
            port,
            ..ProxyConfig::default()
        })
        .await
        .unwrap();
    Harness {
        _dir: dir,
        store: store.clone(),
        manager,
        keys,
        base: format!("http://127.0.0.1:{port}"),
        key,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

/// One pass-through call: status and body text.
async fn call(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut rb = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(&h.key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// No internal address in what a client got: neither the loopback IP nor the port of
/// any engine.
fn assert_no_address(body: &str, ports: &[u16]) {
    assert!(!body.contains("127.0.0.1"), "address leaked: {body}");
    assert!(!body.contains("localhost"), "address leaked: {body}");
    for p in ports {
        assert!(!body.contains(&format!(":{p}")), "port {p} leaked: {body}");
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_by_default_allows_reads_and_inference_per_engine_kind() {
    let chat = llama(TinyModel::Chat);
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let generic = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = proxy(
        &[
            (EngineKind::LlamaCpp, chat.base_url(), "llama"),
            (EngineKind::Ollama, ollama.base_url(), "ollama"),
            (EngineKind::Vllm, vllm.base_url(), "vllm"),
            (EngineKind::LmStudio, lms.base_url(), "lms"),
            (EngineKind::OpenAi, generic.base_url(), "generic"),
        ],
        &[],
    )
    .await;
    h.models().await; // the first engine check is done: no probe lands in between
    let model = json!({"model": "test-model"});
    // Allowed: the request reaches the emulated engine on exactly that route.
    let allowed: [(&Emulator, &str, Method, &str, Option<Value>); 10] = [
        (&ollama, "ollama", Method::GET, "/api/tags", None),
        (&ollama, "ollama", Method::GET, "/api/version", None),
        (
            &ollama,
            "ollama",
            Method::POST,
            "/api/show",
            Some(model.clone()),
        ),
        (
            &ollama,
            "ollama",
            Method::GET,
            "/v1/models/test-model%3Alatest",
            None,
        ),
        (&vllm, "vllm", Method::GET, "/version", None),
        (&vllm, "vllm", Method::GET, "/health", None),
        (&lms, "lms", Method::GET, "/api/v0/models", None),
        (&lms, "lms", Method::GET, "/api/v0/models/test-model", None),
        (&generic, "generic", Method::GET, "/v1/models", None),
        (
            &ollama,
            "ollama",
            Method::POST,
            "/api/chat",
            Some(json!({"model": "test-model", "messages": user("hi"), "stream": false})),
        ),
    ];
    for (emu, id, method, path, body) in allowed {
        // The engine receives the decoded path.
        let engine_path = path.replace("%3A", ":");
        let before = emu.control().route_requests(&engine_path);
        let (status, text) = call(&h, method.clone(), &format!("/engine/{id}{path}"), body).await;
        assert_eq!(status, 200, "{method} {id}{path}: {text}");
        let after = emu.control().route_requests(&engine_path);
        assert_eq!(
            after,
            before + 1,
            "{method} {id}{path} did not reach the engine"
        );
    }
    // The real llama-server: props, health, tokenize.
    for (method, path, body) in [
        (Method::GET, "/props", None),
        (Method::GET, "/health", None),
        (Method::POST, "/tokenize", Some(json!({"content": "hello"}))),
    ] {
        let (status, text) = call(&h, method.clone(), &format!("/engine/llama{path}"), body).await;
        assert_eq!(status, 200, "{method} llama{path}: {text}");
    }
    // Denied: refused by FLM with a precise code naming the setting; the engine never
    // sees the request.
    let denied: [(Option<&Emulator>, &str, Method, &str); 20] = [
        (Some(&ollama), "ollama", Method::DELETE, "/api/delete"),
        (Some(&ollama), "ollama", Method::POST, "/api/pull"),
        (Some(&ollama), "ollama", Method::POST, "/api/push"),
        (Some(&ollama), "ollama", Method::POST, "/api/create"),
        (Some(&ollama), "ollama", Method::POST, "/api/copy"),
        (
            Some(&ollama),
            "ollama",
            Method::POST,
            "/api/blobs/sha256:00",
        ),
        (Some(&ollama), "ollama", Method::PUT, "/api/tags"),
        (None, "llama", Method::POST, "/props"),
        (None, "llama", Method::GET, "/slots"),
        (None, "llama", Method::POST, "/slots/0"),
        (None, "llama", Method::POST, "/lora-adapters"),
        (None, "llama", Method::POST, "/models/load"),
        (Some(&vllm), "vllm", Method::POST, "/start_profile"),
        (Some(&vllm), "vllm", Method::POST, "/reset_prefix_cache"),
        (Some(&vllm), "vllm", Method::POST, "/sleep"),
        (Some(&vllm), "vllm", Method::POST, "/v1/load_lora_adapter"),
        (Some(&lms), "lms", Method::POST, "/api/v1/models/load"),
        (Some(&lms), "lms", Method::POST, "/api/v1/models/download"),
        (Some(&generic), "generic", Method::GET, "/metrics"),
        (Some(&ollama), "ollama", Method::GET, "/api/unknown-route"),
    ];
    for (emu, id, method, path) in denied {
        let before = emu.map_or(0, |e| e.control().route_requests(path));
        let (status, text) = call(
            &h,
            method.clone(),
            &format!("/engine/{id}{path}?action=erase"),
            Some(json!({"model": "test-model", "name": "registry.example/evil"})),
        )
        .await;
        assert_eq!(status, 403, "{method} {id}{path}: {text}");
        assert_eq!(code(&text), "passthrough_forbidden", "{text}");
        assert!(text.contains("proxy.passthrough"), "{text}");
        if let Some(emu) = emu {
            assert_eq!(
                emu.control().route_requests(path),
                before,
                "{method} {id}{path} reached the engine"
            );
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_opens_every_route_relaying_the_engine_status_and_off_closes_all() {
    let chat = llama(TinyModel::Chat);
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let engines = [
        (EngineKind::LlamaCpp, chat.base_url(), "llama"),
        (EngineKind::Ollama, ollama.base_url(), "ollama"),
    ];
    let h = proxy(&engines, &[("proxy.passthrough", "full")]).await;
    // Reaches the engine, whose own answer (an unknown route here) is relayed.
    let (status, text) = call(
        &h,
        Method::DELETE,
        "/engine/ollama/api/delete",
        Some(json!({"model": "test-model"})),
    )
    .await;
    assert_ne!(status, 403, "{text}");
    assert_eq!(ollama.control().route_requests("/api/delete"), 1);
    let (status, text) = call(&h, Method::GET, "/engine/llama/slots", None).await;
    assert!(status == 200 || status == 501, "{status} {text}");
    // Non-2xx answers keep their status and body: the real llama-server's 404 ...
    let (status, text) = call(&h, Method::GET, "/engine/llama/no-such-route", None).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("Not Found"), "{text}");
    // ... and an emulated engine's error statuses.
    for s in [400u16, 404, 500, 503] {
        ollama.control().set_behavior(Behavior::StatusError(s));
        let (status, text) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
        assert_eq!(status, s, "{text}");
        assert!(text.contains("emulated error"), "{text}");
    }
    ollama.control().set_behavior(Behavior::Normal);
    h.stop().await;

    let h = proxy(&engines, &[("proxy.passthrough", "off")]).await;
    h.models().await; // the first engine check is done: nothing else reaches the engine
    ollama.control().reset();
    let (status, text) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(code(&text), "passthrough_disabled");
    assert!(text.contains("proxy.passthrough"), "{text}");
    let (status, _) = call(&h, Method::GET, "/engine/llama/props", None).await;
    assert_eq!(status, 403);
    assert_eq!(ollama.control().route_requests("/api/tags"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_400_and_the_engine_stays_routable() {
    let chat = llama(TinyModel::Chat);
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let ports = [port_of(&chat.base_url()), port_of(&ollama.base_url())];
    let h = proxy(
        &[
            (EngineKind::LlamaCpp, chat.base_url(), "llama"),
            (EngineKind::Ollama, ollama.base_url(), "ollama"),
        ],
        // Full: the path check must hold even where no allow list applies.
        &[("proxy.passthrough", "full")],
    )
    .await;
    let all = h.models().await;
    assert!(
        all.contains(&"flm://llama/tiny-llama".to_owned()),
        "{all:?}"
    );
    assert!(
        all.contains(&"flm://ollama/test-model:latest".to_owned()),
        "{all:?}"
    );
    for id in ["llama", "ollama"] {
        for path in [
            "a%20b",
            "%3C",
            "%3Cscript%3E",
            "a%0Ab",
            "a%0D%0AX-Injected:%201",
            "a%00b",
            "a%7F",
            "a%09b",
            "%25",
            "a%3Fb",
            "v1%5Cmodels",
            "%C3%A9",
            "a%zz",
            // (`%2e%2e` segments are resolved by the HTTP client itself; the unit tests
            // cover them.)
            "v1/models%2F..%2F..%2Fapi%2Fpull",
            "a//b",
        ] {
            for method in [Method::GET, Method::POST] {
                let (status, text) =
                    call(&h, method.clone(), &format!("/engine/{id}/{path}"), None).await;
                assert_eq!(status, 400, "{method} {id}/{path}: {text}");
                assert_eq!(code(&text), "invalid_path", "{text}");
                assert_no_address(&text, &ports);
                assert!(!text.contains("X-Injected"), "{text}");
            }
        }
    }
    // Nothing reached the emulated engine on any of those paths.
    for p in ["/a%20b", "/a b", "/%3C", "/api/pull"] {
        assert_eq!(ollama.control().route_requests(p), 0, "{p}");
    }
    // Both engines are still offered, with no re-detection in between (once an hour).
    let after = h.models().await;
    assert_eq!(after, all);
    for model in ["flm://llama/tiny-llama", "flm://ollama/test-model:latest"] {
        let (status, v) = h
            .chat(json!({"model": model, "messages": user("hi"), "max_tokens": 4}))
            .await;
        assert_eq!(status, 200, "{model}: {v}");
    }
    let (status, text) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
    assert_eq!(status, 200, "{text}");
    // Encoded characters that are valid in a route are decoded and forwarded as such.
    let (status, text) = call(
        &h,
        Method::GET,
        "/engine/ollama/v1/models/test-model%3Alatest",
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_is_a_502_that_never_shows_its_address() {
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let ports = [port_of(&ollama.base_url()), port_of(&vllm.base_url())];
    let h = proxy(
        &[
            (EngineKind::Ollama, ollama.base_url(), "ollama"),
            (EngineKind::Vllm, vllm.base_url(), "vllm"),
        ],
        &[],
    )
    .await;
    // A stream the engine breaks off: the error event names no address.
    vllm.control()
        .set_behavior(Behavior::DropMidStream { after_chunks: 2 });
    let (status, events) = h
        .stream(
            json!({"model": "flm://vllm/test-model", "messages": user("hi there"), "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    let joined = events.join("\n");
    assert!(joined.contains("stream_error"), "{joined}");
    assert_no_address(&joined, &ports);
    vllm.control().set_behavior(Behavior::Normal);

    ollama.shutdown().await.unwrap();
    // The engine is still in the routing table (re-checked once an hour): the
    // pass-through finds it dead.
    let (status, text) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(code(&text), "engine_unreachable", "{text}");
    assert!(text.contains("ollama"), "{text}");
    assert_no_address(&text, &ports);
    // Chat to the dead engine: whatever the error, no address either.
    let r = h
        .post("/v1/chat/completions")
        .json(&json!({"model": "flm://ollama/test-model:latest", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_server_error());
    assert_no_address(&r.text().await.unwrap(), &ports);
    // The re-check the failure asked for takes the dead engine out; the other stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let models = h.models().await;
        if !models.iter().any(|m| m.starts_with("flm://ollama/")) {
            assert!(models.contains(&"flm://vllm/test-model".to_owned()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead engine still offered: {models:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, text) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
    assert_eq!(status, 404, "{text}");
    assert_no_address(&text, &ports);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_forwarded_and_cookies_never_returned() {
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    ollama.control().add_response_header(
        HeaderName::from_static("set-cookie"),
        HeaderValue::from_static("engine_session=secret; Path=/"),
    );
    let h = proxy(
        &[(EngineKind::Ollama, ollama.base_url(), "ollama")],
        // Re-checks every second: health probes and listings land on the same engine
        // (and on /api/tags) while the test runs.
        &[("proxy.engine_check_interval_secs", "1")],
    )
    .await;
    for (i, (method, path, body)) in [
        (Method::GET, "/api/tags", None),
        (
            Method::POST,
            "/api/show",
            Some(json!({"model": "test-model"})),
        ),
        (
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "test-model", "messages": user("hi")})),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let marker = format!("m{i}");
        let mut rb = h
            .http
            .request(method.clone(), format!("{}/engine/ollama{path}", h.base))
            .bearer_auth(&h.key)
            .header("cookie", "flm_session=client-secret")
            .header("proxy-authorization", "Basic dXNlcjpwYXNz")
            .header("x-api-key", &h.key)
            .header("x-flm-test", &marker);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200, "{method} {path}");
        assert!(r.headers().get("set-cookie").is_none(), "{method} {path}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let seen: Vec<_> = ollama
            .control()
            .requests_on(path)
            .into_iter()
            .filter(|r| {
                r.headers
                    .get("x-flm-test")
                    .is_some_and(|v| v == marker.as_str())
            })
            .collect();
        assert_eq!(
            seen.len(),
            1,
            "{method} {path}: the request was not recorded"
        );
        let headers = &seen[0].headers;
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "x-api-key",
        ] {
            assert!(
                headers.get(name).is_none(),
                "{method} {path}: `{name}` forwarded"
            );
        }
        let leaked = headers
            .values()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&h.key)));
        assert!(!leaked, "{method} {path}: the FLM key reached the engine");
    }
    // Probes did land on the engine meanwhile (so `last_headers` alone would have shown
    // a probe, not the request under test).
    assert!(ollama.control().route_requests("/api/tags") > 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_engine_route_times_out_and_streams_stop_at_the_ceiling() {
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([EmulatedModel::chat("test-model")])
            .chunk_delay(Duration::from_millis(400)),
    )
    .await
    .unwrap();
    let ports = [port_of(&ollama.base_url())];
    let h = proxy(
        &[(EngineKind::Ollama, ollama.base_url(), "ollama")],
        &[
            ("proxy.request_timeout_secs", "2"),
            ("proxy.stream_timeout_secs", "2"),
        ],
    )
    .await;
    ollama
        .control()
        .set_behavior(Behavior::HangOn("/api/ps".into()));
    let started = Instant::now();
    let (status, text) = call(&h, Method::GET, "/engine/ollama/api/ps", None).await;
    let took = started.elapsed();
    assert_eq!(status, 408, "{text}");
    assert_eq!(code(&text), "request_timeout", "{text}");
    assert!(text.contains("proxy.request_timeout_secs"), "{text}");
    assert_no_address(&text, &ports);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The engine is still fine on every other route.
    let (status, _) = call(&h, Method::GET, "/engine/ollama/api/tags", None).await;
    assert_eq!(status, 200);
    ollama.control().set_behavior(Behavior::Normal);
    // A streamed answer (NDJSON) longer than the streaming ceiling is cut at it.
    let started = Instant::now();
    let r = h
        .post("/engine/ollama/api/chat")
        .json(&json!({
            "model": "test-model",
            "messages": user("one two three four five six seven eight nine ten eleven twelve"),
            "stream": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(broke, "the stream was not cut: {text}");
    assert!(!text.contains("\"done\":true"), "{text}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // The engine saw the connection go away.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ollama.control().open_streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "the engine stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}
