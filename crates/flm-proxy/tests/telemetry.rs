//! Usage aggregates and engine health history, recorded by a running proxy in front
//! of real engines (the real llama-server and the testkit emulators), read back
//! through the core services and the app API routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{harness_with_telemetry, Harness};
use flm_core::ports::SystemClock;
use flm_core::services::{HealthHistoryService, UsageService};
use flm_core::usage::{UsageGroupBy, UsageRange};
use flm_core::EngineKind;
use flm_proxy::StopTarget;
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::{json, Value};

/// The proxy (recording usage and health) and `(id, secret)` of two keys.
struct Proxy {
    h: Harness,
    keys: Vec<(String, String)>,
}

async fn proxy(endpoints: &[(EngineKind, String, &str)]) -> Proxy {
    let h = harness_with_telemetry(endpoints).await;
    let second = h.keys.create("second").await.unwrap();
    let first = h
        .store
        .api_keys()
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.label == "test")
        .unwrap();
    let keys = vec![
        (first.id, h.key.clone()),
        (second.metadata.id.clone(), second.key),
    ];
    Proxy { h, keys }
}

impl std::ops::Deref for Proxy {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

/// What the client saw of one request: status, usage tokens (when reported).
async fn send(p: &Proxy, key: usize, body: Value) -> (u16, Option<(u64, u64)>) {
    let r = p
        .http
        .post(format!("{}/v1/chat/completions", p.base))
        .bearer_auth(&p.keys[key].1)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let tokens = |u: &Value| {
        u.get("prompt_tokens").map(|_| {
            (
                u["prompt_tokens"].as_u64().unwrap_or(0),
                u["completion_tokens"].as_u64().unwrap_or(0),
            )
        })
    };
    if body["stream"] == json!(true) && status == 200 {
        let mut text = String::new();
        let mut s = r.bytes_stream();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), s.next()).await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(text.contains("data: [DONE]"), "{text}");
        let usage = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v.get("usage").and_then(tokens))
            .last();
        return (status, usage);
    }
    // The metering wrapper keeps the body's exact size (no switch to chunked).
    assert!(r.content_length().is_some(), "{:?}", r.headers());
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v.get("usage").and_then(tokens))
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 8,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

#[derive(Default, Debug, PartialEq)]
struct Expect {
    requests: u64,
    errors: u64,
    tokens_in: u64,
    tokens_out: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_through_a_running_proxy_matches_what_was_sent() {
    let llama = common::llama(TinyModel::Chat);
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([EmulatedModel::chat("beta")]),
    )
    .await
    .unwrap();
    let p = proxy(&[
        (EngineKind::LlamaCpp, llama.base_url(), "llama"),
        (EngineKind::Ollama, ollama.base_url(), "olla"),
    ])
    .await;
    let models: Value = p
        .http
        .get(format!("{}/v1/models", p.base))
        .bearer_auth(&p.keys[0].1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let llama_model = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .find(|id| id.starts_with("flm://llama/"))
        .expect("llama model listed");

    // Key `test`: the real llama-server, full and streamed. Key `second`: the Ollama
    // emulator, streamed and full, and one model the engine does not have (an error).
    let plan: Vec<(usize, String, bool)> = vec![
        (0, llama_model.clone(), false),
        (0, llama_model.clone(), true),
        (0, llama_model.clone(), false),
        (1, "flm://olla/beta".into(), true),
        (1, "flm://olla/beta".into(), true),
        (1, "flm://olla/beta".into(), false),
        (1, "flm://olla/nosuch".into(), false),
    ];
    let mut by_key: HashMap<String, Expect> = HashMap::new();
    let mut by_model: HashMap<String, Expect> = HashMap::new();
    for (key, model, stream) in &plan {
        let (status, usage) = send(&p, *key, chat(model, *stream)).await;
        let error = status >= 400;
        assert_eq!(error, model.ends_with("nosuch"), "{model}: {status}");
        let (i, o) = usage.unwrap_or((0, 0));
        for e in [
            by_key.entry(p.keys[*key].0.clone()).or_default(),
            by_model.entry(model.clone()).or_default(),
        ] {
            e.requests += 1;
            e.errors += u64::from(error);
            e.tokens_in += i;
            e.tokens_out += o;
        }
    }
    assert!(
        by_key[&p.keys[0].0].tokens_out > 0,
        "llama-server reported no usage"
    );

    // Stopping writes what is still in memory (no wait for the 10 s flush).
    p.manager.stop(&StopTarget::default()).await.unwrap();

    let service = UsageService::new(
        p.store.usage(),
        Some(p.store.api_keys()),
        Arc::new(SystemClock),
    );
    let report = service
        .report(UsageRange::Hour, UsageGroupBy::Key)
        .await
        .unwrap();
    assert_eq!(report.series.len(), 60);
    assert_eq!(
        report.series.iter().map(|s| s.requests).sum::<u64>(),
        plan.len() as u64
    );
    assert_eq!(report.groups.len(), 2, "{:?}", report.groups);
    for g in &report.groups {
        let want = &by_key[&g.group];
        let got = Expect {
            requests: g.requests,
            errors: g.errors,
            tokens_in: g.tokens_in,
            tokens_out: g.tokens_out,
        };
        assert_eq!(&got, want, "key {}", g.group);
        assert!(g.latency_p50_ms.is_some() && g.latency_p95_ms.is_some());
        assert!(
            g.ttft_p50_ms.is_some(),
            "streams give a time to first token"
        );
        let label = if g.group == p.keys[0].0 {
            "test"
        } else {
            "second"
        };
        assert_eq!(g.label.as_deref(), Some(label));
    }
    let report = service
        .report(UsageRange::Day, UsageGroupBy::Model)
        .await
        .unwrap();
    assert_eq!(report.bucket_secs, 900);
    assert_eq!(report.groups.len(), 3, "{:?}", report.groups);
    for g in &report.groups {
        let want = &by_model[&g.group];
        assert_eq!(
            (g.requests, g.errors, g.tokens_in, g.tokens_out),
            (want.requests, want.errors, want.tokens_in, want.tokens_out),
            "model {}",
            g.group
        );
    }
    let report = service
        .report(UsageRange::Week, UsageGroupBy::Engine)
        .await
        .unwrap();
    let engines: HashMap<&str, u64> = report
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.requests))
        .collect();
    assert_eq!(engines, HashMap::from([("llama", 3), ("olla", 4)]));

    // The same numbers through the app API routes.
    let app = flm_proxy::ui_api::usage::router(flm_proxy::ui_api::usage::UsageApiDeps::new(
        p.store.usage(),
        p.store.health_log(),
        p.store.api_keys(),
    ))
    .layer(axum::middleware::from_fn(
        flm_proxy::ui_api::with_request_id,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let get = |path: &str| {
        let url = format!("{api}{path}");
        let http = p.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get("/usage?range=1h&group_by=key").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["range"], "1h");
    assert_eq!(v["bucket_secs"], 60);
    assert_eq!(v["series"].as_array().unwrap().len(), 60);
    for g in v["groups"].as_array().unwrap() {
        let want = &by_key[g["group"].as_str().unwrap()];
        assert_eq!(g["requests"], want.requests);
        assert_eq!(g["errors"], want.errors);
        assert_eq!(g["tokens_in"], want.tokens_in);
        assert_eq!(g["tokens_out"], want.tokens_out);
        assert!(g["latency_p95_ms"].is_number(), "{g}");
    }
    let r = get("/usage?range=2h&group_by=key").await;
    assert_eq!(r.status(), 400);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_range");
    assert_eq!(v["error"]["request_id"], rid.as_str());
    let r = get("/usage?range=1h&group_by=user").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_group_by"
    );

    let r = get("/engines/health-history?hours=24&limit=100").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let summary = v["summary"].as_array().unwrap();
    for engine in ["llama", "olla"] {
        let s = summary
            .iter()
            .find(|s| s["engine_id"] == engine && s["model"].is_null())
            .unwrap_or_else(|| panic!("no summary for {engine}: {v}"));
        assert_eq!(s["success_rate"], 1.0, "{s}");
        assert_eq!(s["error_rate"], 0.0, "{s}");
    }
    let sample = &v["samples"][0];
    for field in ["at", "engine_id", "model", "status", "latency_ms", "error"] {
        assert!(sample.get(field).is_some(), "{field} missing: {sample}");
    }
    let r = get("/engines/health-history?hours=0").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_hours"
    );
    let r = get("/engines/health-history?limit=abc").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_history_shows_an_engine_going_down() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let p = proxy(&[
        (EngineKind::Vllm, vllm.base_url(), "v"),
        (EngineKind::Ollama, ollama.base_url(), "o"),
    ])
    .await;
    let service = HealthHistoryService::new(p.store.health_log(), Arc::new(SystemClock));
    let wait_for = |what: &'static str, ok: fn(&flm_core::services::HealthHistory) -> bool| {
        let service = service.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let h = service.history(1, 1000, None, None).await.unwrap();
                if ok(&h) {
                    return h;
                }
                assert!(Instant::now() < deadline, "{what}: {h:#?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let h = wait_for("both engines healthy", |h| {
        ["v", "o"].iter().all(|e| {
            h.samples
                .iter()
                .any(|s| s.engine_id == *e && s.model.is_none() && s.status == "healthy")
        })
    })
    .await;
    let o_model = h
        .samples
        .iter()
        .filter_map(|s| s.model.clone())
        .find(|m| m.starts_with("flm://o/"))
        .unwrap_or_else(|| panic!("per-model samples: {h:#?}"));
    // The monitor checks every second, but writes a steady status at most once a minute.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let steady = service.history(1, 1000, Some("o"), None).await.unwrap();
    assert_eq!(
        steady.samples.iter().filter(|s| s.model.is_none()).count(),
        1,
        "{steady:#?}"
    );

    vllm.shutdown().await.unwrap();
    let h = wait_for("vllm down", |h| {
        h.samples
            .iter()
            .any(|s| s.engine_id == "v" && s.status == "down" && s.error.is_some())
    })
    .await;
    let v = h
        .summary
        .iter()
        .find(|s| s.engine_id == "v" && s.model.is_none())
        .unwrap();
    assert!(v.success_rate < 1.0 && v.error_rate > 0.0, "{v:?}");
    let o = h
        .summary
        .iter()
        .find(|s| s.engine_id == "o" && s.model.is_none())
        .unwrap();
    assert_eq!((o.success_rate, o.error_rate), (1.0, 0.0));
    // Filters.
    let only_v = service.history(1, 1000, Some("v"), None).await.unwrap();
    assert!(only_v.samples.iter().all(|s| s.engine_id == "v"));
    let one_model = service
        .history(1, 1000, None, Some(&o_model))
        .await
        .unwrap();
    assert!(!one_model.samples.is_empty());
    assert!(one_model
        .samples
        .iter()
        .all(|s| s.model.as_ref() == Some(&o_model)));
    p.manager.stop(&StopTarget::default()).await.unwrap();
}
