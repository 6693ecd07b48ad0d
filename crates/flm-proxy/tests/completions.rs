//! `POST /v1/completions` (legacy text completion, `suffix` for fill-in-the-middle)
//! through the proxy, in front of the real llama-server: the official `openai` Python
//! SDK as the client (tests/e2e/completions_client.py), then the raw HTTP edges —
//! malformed bodies, missing and revoked keys, SSE framing — and what the proxy
//! recorded: audit rows and usage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flm_core::ports::SystemClock;
use flm_core::security::AuditFilter;
use flm_core::services::UsageService;
use flm_core::usage::{UsageGroupBy, UsageRange};
use flm_core::EngineKind;
use flm_proxy::StopTarget;
use flm_testkit::llama::{LlamaServer, TinyModel};
use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::{json, Value};

fn python() -> String {
    if let Ok(p) = std::env::var("FLM_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = format!("{home}/.cache/flm/pyenv/bin/python");
    assert!(
        std::path::Path::new(&venv).exists(),
        "the Python openai SDK is missing: run scripts/test.sh (or set FLM_PYTHON to a python with `openai` installed)"
    );
    venv
}

/// The tiny llama model with three of its tokens declared as the fill-in-the-middle
/// prefix/suffix/middle tokens, so that llama-server's `/infill` accepts it.
fn llama_with_fim() -> LlamaServer {
    assert!(
        flm_testkit::llama::available(),
        "the real llama-server is missing: run scripts/setup-llama-server.sh"
    );
    LlamaServer::start_with_args(
        TinyModel::Chat,
        &[
            "--override-kv",
            "tokenizer.ggml.fim_pre_token_id=int:3",
            "--override-kv",
            "tokenizer.ggml.fim_suf_token_id=int:4",
            "--override-kv",
            "tokenizer.ggml.fim_mid_token_id=int:5",
        ],
    )
    .expect("llama-server starts")
}

async fn error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Reads an SSE answer to its end (bounded): the status, how many body chunks
/// arrived, and the `data:` payloads.
async fn sse(r: reqwest::Response) -> (u16, usize, Vec<String>) {
    let status = r.status().as_u16();
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut chunks = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), body.next()).await {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let events = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
        .collect();
    (status, chunks, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_completions_and_fill_in_the_middle_through_the_proxy() {
    let plain = common::llama(TinyModel::Chat);
    let fim = llama_with_fim();
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("llama3.2"),
            EmulatedModel::chat("qwen2.5-coder").with_insert(),
            EmulatedModel::embedding("all-minilm"),
        ]),
    )
    .await
    .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness_with_telemetry(&[
        (EngineKind::LlamaCpp, plain.base_url(), "llama"),
        (EngineKind::LlamaCpp, fim.base_url(), "fim"),
        (EngineKind::Ollama, ollama.base_url(), "ollama"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
        (EngineKind::LmStudio, lms.base_url(), "lms"),
    ])
    .await;

    // Every protection on, with the defaults of an exposed bind: prompts and suffixes
    // full of code must not be scored.
    h.set_policy(&json!({
        "ip_blocklist": {"enabled": true},
        "intrusion_detection": {"enabled": true},
        "anomaly_detection": {"enabled": true},
        "ip_rate_limit": {"enabled": true},
        "resource_protection": {"enabled": true, "cpu_threshold": 100, "memory_threshold": 100},
    }))
    .await;

    // The official SDK: plain, streamed and FIM completions, and every refusal.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/completions_client.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("FLM_COMPLETION_MODEL", "flm://llama/tiny-llama")
            .env("FLM_FIM_MODEL", "flm://fim/tiny-llama")
            .env("FLM_EMBED_MODEL", "flm://ollama/all-minilm:latest")
            .env("FLM_NO_FIM_ENGINE_MODEL", "flm://vllm/test-model")
            .env(
                "FLM_EMULATED_MODELS",
                "flm://ollama/llama3.2:latest,flm://vllm/test-model,flm://lms/test-model",
            )
            .env("FLM_OLLAMA_FIM_MODEL", "flm://ollama/qwen2.5-coder:latest")
            .env("NO_PROXY", "*")
            .output(),
    )
    .await
    .expect("the SDK script finished in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\"done\": true"),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.manager.guard().flush().await;
    let findings = h
        .store
        .security_events()
        .list_intrusions(&flm_core::security::IntrusionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        findings.is_empty(),
        "the SDK's traffic was scored: {findings:?}"
    );

    // Each engine got its own `/v1/completions` with its own model name; the FIM
    // request refused by engine kind never reached vLLM.
    assert_eq!(vllm.control().route_requests("/v1/completions"), 2);
    let sent = vllm.control().last_chat_body().unwrap();
    assert!(
        sent["model"] == "test-model" && sent.get("suffix").is_none(),
        "{sent}"
    );
    let fim_sent = ollama.control().last_chat_body().unwrap();
    assert_eq!(fim_sent["suffix"], "return c", "{fim_sent}");
    assert_eq!(fim_sent["model"], "qwen2.5-coder:latest", "{fim_sent}");
    // Ollama's own refusal of a model without `insert` reaches the client as a 400.
    let r = h
        .post("/v1/completions")
        .json(&json!({"model": "flm://ollama/llama3.2:latest", "prompt": "a", "suffix": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not support insert"),
        "{v}"
    );

    // Malformed bodies: precise 400s.
    let post = |body: &'static str| {
        h.post("/v1/completions")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, want) in [
        ("{\"model\":", "invalid_json"),
        ("[1,2]", "invalid_json"),
        ("{\"model\":\"flm://llama/tiny-llama\"}", "invalid_prompt"),
        (
            "{\"model\":\"flm://llama/tiny-llama\",\"prompt\":[\"a\",[1]]}",
            "invalid_prompt",
        ),
        (
            "{\"model\":\"flm://llama/tiny-llama\",\"prompt\":\"a\",\"stream\":\"yes\"}",
            "invalid_request",
        ),
        (
            "{\"model\":\"flm://llama/tiny-llama\",\"prompt\":\"a\",\"max_tokens\":-3}",
            "invalid_max_tokens",
        ),
        (
            "{\"model\":\"flm://llama/tiny-llama\",\"prompt\":\"a\",\"temperature\":\"hot\"}",
            "invalid_temperature",
        ),
        (
            "{\"model\":\"flm://llama/tiny-llama\",\"prompt\":\"a\",\"messages\":[]}",
            "unsupported_parameter",
        ),
        ("{\"prompt\":\"a\"}", "invalid_model"),
        (
            "{\"model\":\"flm://fim/tiny-llama\",\"prompt\":[\"a\"],\"suffix\":\"b\"}",
            "invalid_prompt",
        ),
    ] {
        assert_eq!(
            error(post(body).await.unwrap()).await,
            (400, want.to_owned()),
            "{body}"
        );
    }

    // Streams arrive chunk by chunk, end with [DONE], and name the client's model id.
    for (model, suffix) in [
        ("flm://llama/tiny-llama", None),
        ("flm://fim/tiny-llama", Some("\n    return c\n")),
    ] {
        let mut body =
            json!({"model": model, "prompt": "def add(a, b):", "max_tokens": 6, "stream": true});
        if let Some(s) = suffix {
            body["suffix"] = json!(s);
        }
        let r = h.post("/v1/completions").json(&body).send().await.unwrap();
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (status, chunks, events) = sse(r).await;
        assert_eq!(status, 200);
        assert!(chunks > 1, "{model}: one chunk only: {events:?}");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}");
        let parsed: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(
            parsed
                .iter()
                .all(|v| v["model"] == model && v["object"] == "text_completion"),
            "{model}: {events:?}"
        );
        assert!(
            parsed
                .iter()
                .any(|v| v["usage"]["completion_tokens"].as_u64() > Some(0)),
            "{model}: no usage: {events:?}"
        );
    }

    // A missing, then a revoked key.
    let r = h
        .http
        .post(format!("{}/v1/completions", h.base))
        .json(&json!({"model": "flm://llama/tiny-llama", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error(r).await, (401, "invalid_api_key".into()));
    let other = h.keys.create("revoked-soon").await.unwrap();
    let ask = |key: String| {
        h.http
            .post(format!("{}/v1/completions", h.base))
            .bearer_auth(key)
            .json(&json!({"model": "flm://llama/tiny-llama", "prompt": "x", "max_tokens": 2}))
            .send()
    };
    assert_eq!(ask(other.key.clone()).await.unwrap().status(), 200);
    h.keys.revoke(&other.metadata.id).await.unwrap();
    h.manager.reload_keys().await.unwrap();
    assert_eq!(
        error(ask(other.key.clone()).await.unwrap()).await,
        (401, "invalid_api_key".into())
    );

    // The audit log has the route, for successes and for refusals.
    h.manager.guard().flush().await;
    let rows = h
        .store
        .audit()
        .list(&AuditFilter {
            limit: Some(100_000),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let route: Vec<_> = rows
        .iter()
        .filter(|r| r.endpoint == "/v1/completions")
        .collect();
    assert!(
        route
            .iter()
            .any(|r| r.status == 200 && r.event_type.as_deref() == Some("auth_success")),
        "{route:?}"
    );
    assert!(
        route
            .iter()
            .any(|r| r.status == 401 && r.event_type.as_deref() == Some("auth_failure")),
        "{route:?}"
    );

    // Usage was metered per model from the engines' `usage` (streams included).
    h.manager.stop(&StopTarget::default()).await.unwrap();
    let report = UsageService::new(h.store.usage(), None, Arc::new(SystemClock))
        .report(UsageRange::Hour, UsageGroupBy::Model)
        .await
        .unwrap();
    for model in ["flm://llama/tiny-llama", "flm://fim/tiny-llama"] {
        let g = report
            .groups
            .iter()
            .find(|g| g.group == model)
            .unwrap_or_else(|| panic!("no usage for {model}: {:?}", report.groups));
        assert!(
            g.requests >= 3 && g.tokens_in > 0 && g.tokens_out > 0,
            "{model}: {g:?}"
        );
    }
}

/// Streamed completions get chat's protections: a broken engine stream ends with an
/// error event and `[DONE]`, and the streaming ceiling ends a stream — and the
/// engine's request — even when the client has stopped reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_streams_are_bounded_like_chat() {
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::default().chunk_delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let h = common::harness_with_settings(
        &[(EngineKind::Vllm, vllm.base_url(), "vllm")],
        &[("proxy.stream_timeout_secs", "2")],
    )
    .await;
    // About 45 chunks, 300 ms apart: the engine alone would stream for 13 s.
    let prompt = "word ".repeat(40);
    let body = json!({"model": "flm://vllm/test-model", "prompt": prompt, "max_tokens": 100,
                      "stream": true});

    vllm.control()
        .set_behavior(Behavior::DropMidStream { after_chunks: 2 });
    let (status, _, events) =
        sse(h.post("/v1/completions").json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "stream_error", "{events:?}");
    vllm.control().set_behavior(Behavior::Normal);

    // Read to the end: cut at the ceiling with `streaming_timeout`.
    let started = Instant::now();
    let (status, _, events) =
        sse(h.post("/v1/completions").json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "streaming_timeout", "{events:?}");

    // A client that stops reading: the engine's stream is still ended at the ceiling.
    let started = Instant::now();
    let stalled = h.post("/v1/completions").json(&body).send().await.unwrap();
    assert_eq!(stalled.status(), 200);
    let deadline = started + Duration::from_millis(4500);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while vllm.control().open_streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "the engine stream outlived the ceiling"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
    h.stop().await;
}
