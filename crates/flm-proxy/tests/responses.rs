//! `POST /v1/responses`, `GET|DELETE /v1/responses/{id}` through the proxy: the
//! official `openai` Python SDK (tests/e2e/responses_client.py) against the real
//! llama-server (bridged to chat completions), an emulated LM Studio (bridged, with a
//! deterministic tool call) and an emulated vLLM (relayed natively); then what reached
//! the engines, and the raw HTTP edges: scoped keys, a dead engine, streams the engine
//! breaks off, token quotas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flm_core::ports::SystemClock;
use flm_core::services::{KeyLimits, UsageService};
use flm_core::usage::{UsageGroupBy, UsageRange};
use flm_core::EngineKind;
use flm_proxy::StopTarget;
use flm_testkit::llama::TinyModel;
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

async fn post(h: &common::Harness, key: &str, body: Value) -> reqwest::Response {
    h.http
        .post(format!("{}/v1/responses", h.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create(h: &common::Harness, body: Value) -> Value {
    let r = post(h, &h.key, body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// The events of an SSE answer, read to the end (bounded): (status, events as JSON).
async fn events(r: reqwest::Response) -> (u16, Vec<Value>) {
    let status = r.status().as_u16();
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let events = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let kind = e.lines().find_map(|l| l.strip_prefix("event: "));
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(kind, v["type"].as_str(), "event line and type agree: {e}");
            v
        })
        .collect();
    (status, events)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn roles(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_through_the_bridge_and_the_native_relay() {
    let chat = common::llama(TinyModel::Chat);
    let lms = Emulator::start(
        EmulatedKind::LmStudio,
        EmulatorOptions::with_models([EmulatedModel::chat("tool-model").with_tools()]),
    )
    .await
    .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness_with_telemetry(&[
        (EngineKind::LlamaCpp, chat.base_url(), "llama"),
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
    ])
    .await;
    let other = h.keys.create("other").await.unwrap().key;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/responses_client.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(python())
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("FLM_OTHER_KEY", &other)
            .env("FLM_BRIDGE_MODEL", "flm://llama/tiny-llama")
            .env("FLM_TOOL_MODEL", "flm://lms/tool-model")
            .env("FLM_NATIVE_MODEL", "flm://vllm/test-model")
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

    // Native relay: a three-turn chain reaches vLLM as one input of five items, never
    // as a previous_response_id (vLLM's store is off: it would answer 404).
    let r1 = create(
        &h,
        json!({"model": "flm://vllm/test-model", "input": "one"}),
    )
    .await;
    let r2 = create(
        &h,
        json!({"model": "flm://vllm/test-model", "input": "two", "previous_response_id": r1["id"]}),
    )
    .await;
    let r3 = create(&h, json!({"model": "flm://vllm/test-model", "input": "three", "previous_response_id": r2["id"]})).await;
    assert_eq!(r3["model"], "flm://vllm/test-model");
    let sent = vllm.control().last_chat_body().unwrap();
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    assert_eq!(sent["model"], "test-model");
    let input = sent["input"].as_array().unwrap();
    assert_eq!(input.len(), 5, "{sent}");
    assert_eq!(input[0]["content"], "one");
    assert_eq!(input[1]["type"], "message");
    assert_eq!(input[4]["content"], "three");

    // Bridge: the same chain reaches LM Studio as chat messages, instructions first.
    let r1 = create(
        &h,
        json!({"model": "flm://lms/tool-model", "input": "one", "instructions": "be brief"}),
    )
    .await;
    let r2 = create(
        &h,
        json!({"model": "flm://lms/tool-model", "input": "two", "previous_response_id": r1["id"]}),
    )
    .await;
    create(
        &h,
        json!({
            "model": "flm://lms/tool-model",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "three"}]}],
            "previous_response_id": r2["id"],
            "instructions": "be kind",
            "max_output_tokens": 7,
            "text": {"format": {"type": "json_object"}},
            "tools": [{"type": "function", "name": "lookup"}],
            "tool_choice": "none",
        }),
    )
    .await;
    let sent = lms.control().last_chat_body().unwrap();
    assert_eq!(
        roles(&sent),
        ["system", "user", "assistant", "user", "assistant", "user"],
        "{sent}"
    );
    // Instructions are not carried over from earlier turns (OpenAI semantics).
    assert_eq!(sent["messages"][0]["content"], "be kind");
    assert_eq!(sent["messages"][5]["content"], "three");
    assert!(
        sent["messages"][2]["content"]
            .as_str()
            .unwrap()
            .contains("you said"),
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 7);
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(
        sent["tools"][0],
        json!({"type": "function", "function": {"name": "lookup"}})
    );
    assert_eq!(sent["tool_choice"], "none");

    // Usage was metered for the responses route, tokens included (streams too).
    h.manager.stop(&StopTarget::default()).await.unwrap();
    let report = UsageService::new(h.store.usage(), None, Arc::new(SystemClock))
        .report(UsageRange::Hour, UsageGroupBy::Model)
        .await
        .unwrap();
    for model in [
        "flm://llama/tiny-llama",
        "flm://lms/tool-model",
        "flm://vllm/test-model",
    ] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_dead_engines_broken_streams_and_quotas() {
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let gone = Emulator::start(
        EmulatedKind::LmStudio,
        EmulatorOptions::with_models([EmulatedModel::chat("gone")]),
    )
    .await
    .unwrap();
    let h = common::harness(&[
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
        (EngineKind::LmStudio, gone.base_url(), "gone"),
    ])
    .await;
    let lms_model = "flm://lms/test-model";
    let vllm_model = "flm://vllm/test-model";
    assert!(h.models().await.iter().any(|m| m == "flm://gone/gone"));

    // A key limited to chat may not call the Responses routes.
    let chat_only = h
        .keys
        .create_limited(
            "chat only",
            &KeyLimits {
                routes: Some(vec!["chat".into()]),
                ..KeyLimits::default()
            },
        )
        .await
        .unwrap()
        .key;
    let r = post(&h, &chat_only, json!({"model": lms_model, "input": "hi"})).await;
    assert_eq!(error(r).await, (403, "route_not_allowed".into()));
    let r = h
        .http
        .get(format!("{}/v1/responses/resp_x", h.base))
        .bearer_auth(&chat_only)
        .send()
        .await
        .unwrap();
    assert_eq!(error(r).await, (403, "route_not_allowed".into()));
    // A key limited to one model: the bridge applies the chat path's model scope.
    let one_model = h
        .keys
        .create_limited(
            "one model",
            &KeyLimits {
                models: Some(vec![vllm_model.into()]),
                routes: Some(vec!["responses".into()]),
                ..KeyLimits::default()
            },
        )
        .await
        .unwrap()
        .key;
    let r = post(&h, &one_model, json!({"model": lms_model, "input": "hi"})).await;
    assert_eq!(error(r).await.0, 403);
    let r = post(&h, &one_model, json!({"model": vllm_model, "input": "hi"})).await;
    assert_eq!(r.status(), 200);

    // Malformed bodies.
    let r = h
        .http
        .post(format!("{}/v1/responses", h.base))
        .bearer_auth(&h.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error(r).await, (400, "invalid_json".into()));
    let r = post(
        &h,
        &h.key,
        json!({"model": lms_model, "input": [{"role": "robot", "content": "x"}]}),
    )
    .await;
    assert_eq!(error(r).await, (400, "invalid_input".into()));
    let r = post(
        &h,
        &h.key,
        json!({"model": lms_model, "input": "x", "text": {"format": {"type": "yaml"}}}),
    )
    .await;
    assert_eq!(error(r).await, (400, "invalid_text_format".into()));
    let r = post(&h, &h.key, json!({"input": "x"})).await;
    assert_eq!(error(r).await, (400, "invalid_model".into()));

    // An engine that went away: a precise error, not a hang.
    gone.shutdown().await.unwrap();
    let started = Instant::now();
    let r = post(
        &h,
        &h.key,
        json!({"model": "flm://gone/gone", "input": "hi"}),
    )
    .await;
    let (status, code) = error(r).await;
    assert!(status >= 500, "{status} {code}");
    assert!(
        ["responses_error", "engine_unavailable", "engine_not_found"].contains(&code.as_str()),
        "{status} {code}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Streams the engine breaks off end with `error` then `response.failed`.
    for (emulator, model) in [(&lms, lms_model), (&vllm, vllm_model)] {
        emulator
            .control()
            .set_behavior(Behavior::FailMidStream { after_chunks: 3 });
        let r = post(
            &h,
            &h.key,
            json!({"model": model, "input": "tell me more", "stream": true}),
        )
        .await;
        let (status, ev) = events(r).await;
        assert_eq!(status, 200);
        let t = types(&ev);
        assert_eq!(
            &t[..2],
            ["response.created", "response.in_progress"],
            "{t:?}"
        );
        assert_eq!(t.last(), Some(&"response.failed"), "{model}: {t:?}");
        assert!(t.contains(&"error"), "{t:?}");
        let seqs: Vec<u64> = ev
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..ev.len() as u64).collect::<Vec<_>>(), "{model}");
        assert_eq!(ev.last().unwrap()["response"]["status"], "failed");
        // A failed response is not stored.
        let id = ev[0]["response"]["id"].as_str().unwrap();
        let r = h
            .http
            .get(format!("{}/v1/responses/{id}", h.base))
            .bearer_auth(&h.key)
            .send()
            .await
            .unwrap();
        assert_eq!(error(r).await, (404, "response_not_found".into()));
        // Dropped connections too.
        emulator
            .control()
            .set_behavior(Behavior::DropMidStream { after_chunks: 3 });
        let r = post(
            &h,
            &h.key,
            json!({"model": model, "input": "tell me more", "stream": true}),
        )
        .await;
        let (_, ev) = events(r).await;
        assert_eq!(types(&ev).last(), Some(&"response.failed"), "{model}");
        emulator.control().set_behavior(Behavior::Normal);
    }
    // An engine error before the stream: the engine's status with this route's code.
    vllm.control().set_behavior(Behavior::StatusError(400));
    let r = post(&h, &h.key, json!({"model": vllm_model, "input": "hi"})).await;
    assert_eq!(error(r).await, (400, "responses_error".into()));
    lms.control().set_behavior(Behavior::StatusError(400));
    let r = post(&h, &h.key, json!({"model": lms_model, "input": "hi"})).await;
    assert_eq!(error(r).await, (400, "responses_error".into()));
    vllm.control().set_behavior(Behavior::Normal);
    lms.control().set_behavior(Behavior::Normal);

    // Tokens of the Responses route count toward a key's monthly quota.
    let quota = h
        .keys
        .create_limited(
            "quota",
            &KeyLimits {
                monthly_tokens: Some(5),
                ..KeyLimits::default()
            },
        )
        .await
        .unwrap()
        .key;
    let r = post(
        &h,
        &quota,
        json!({"model": vllm_model, "input": "a rather long question about many things"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post(
        &h,
        &quota,
        json!({"model": lms_model, "input": "again", "stream": true}),
    )
    .await;
    assert_eq!(error(r).await, (429, "monthly_quota_exceeded".into()));
    // Reading a stored response spends nothing, so an exhausted key still may.
    let id = first["id"].as_str().unwrap();
    let r = h
        .http
        .get(format!("{}/v1/responses/{id}", h.base))
        .bearer_auth(&quota)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], first["id"]);
    h.stop().await;
}

/// The bridge enters the chat path where profiles and prompt templates apply: a
/// profile id works as a Responses model, and the template comes before the
/// request's `instructions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_templates_apply_through_the_bridge() {
    use flm_core::profiles::{ProfileDraft, ProfileService, PromptScope};
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness(&[(EngineKind::LmStudio, lms.base_url(), "lms")]).await;
    h.manager.use_profiles(h.store.profiles()).await;
    let svc = ProfileService::new(h.store.profiles());
    svc.save_profile(&ProfileDraft {
        model: "flm://lms/test-model".into(),
        label: "precise".into(),
        parameters: json!({"temperature": 0.2, "max_tokens": 50})
            .as_object()
            .cloned()
            .unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    svc.set_prompt(PromptScope::Default, "House rules.")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = create(
        &h,
        json!({"model": "profile/precise", "instructions": "Client system.", "input": "hi", "temperature": 0.7}),
    )
    .await;
    assert_eq!(r["model"], "profile/precise");
    let sent = lms.control().last_chat_body().unwrap();
    assert_eq!(sent["model"], "test-model");
    assert_eq!(sent["temperature"], 0.7, "the client's value wins");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(roles(&sent), ["system", "system", "user"], "{sent}");
    assert_eq!(sent["messages"][0]["content"], "House rules.");
    assert_eq!(sent["messages"][1]["content"], "Client system.");
    h.stop().await;
}

/// On the native relay the template is sent as the first part of `instructions`
/// (the client's own follow it), and the answer shows the client what it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_reach_the_native_relay_as_instructions() {
    use flm_core::profiles::{ProfileService, PromptScope};
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness(&[(EngineKind::Vllm, vllm.base_url(), "vllm")]).await;
    h.manager.use_profiles(h.store.profiles()).await;
    let svc = ProfileService::new(h.store.profiles());
    svc.set_prompt(PromptScope::Default, "House rules.")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = create(
        &h,
        json!({"model": "flm://vllm/test-model", "instructions": "Client system.", "input": "hi"}),
    )
    .await;
    let sent = vllm.control().last_chat_body().unwrap();
    assert_eq!(
        sent["instructions"], "House rules.\n\nClient system.",
        "{sent}"
    );
    assert_eq!(r["instructions"], "Client system.", "{r}");
    let r = create(&h, json!({"model": "flm://vllm/test-model", "input": "hi"})).await;
    let sent = vllm.control().last_chat_body().unwrap();
    assert_eq!(sent["instructions"], "House rules.", "{sent}");
    assert!(r["instructions"].is_null(), "{r}");
    h.stop().await;
}

/// A remote image for a natively served model goes through the bridge, where the
/// SSRF guard applies: vLLM is never asked to fetch an internal address itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_for_native_engines_pass_the_ssrf_guard() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness(&[(EngineKind::Vllm, vllm.base_url(), "vllm")]).await;
    let r = post(
        &h,
        &h.key,
        json!({"model": "flm://vllm/test-model", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "http://169.254.169.254/latest/meta-data"}
        ]}]}),
    )
    .await;
    let (status, code) = error(r).await;
    assert_eq!((status, code.as_str()), (400, "image_url_forbidden"));
    assert_eq!(vllm.control().route_requests("/v1/responses"), 0);
    assert_eq!(vllm.control().route_requests("/v1/chat/completions"), 0);
    h.stop().await;
}
