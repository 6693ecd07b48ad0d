//! Model profiles (`profile/<label>` as a model id) and prompt templates through a
//! real proxy: an emulated vLLM engine records the body it receives, so the test
//! sees the injected system message and the merged parameters exactly as the engine
//! got them; the real llama-server and the official `openai` Python SDK drive a
//! profile end to end (tests/e2e/profiles_client.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flm_core::ports::SystemClock;
use flm_core::profiles::{ProfileDraft, ProfileService, PromptScope};
use flm_core::services::{KeyLimits, KeyService};
use flm_core::EngineKind;
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

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

async fn chat_with(h: &common::Harness, key: &str, body: Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn models_of(h: &common::Harness, key: &str) -> Vec<String> {
    let v: Value = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_merge_under_the_client_and_templates_come_first() {
    let engine = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([
            EmulatedModel::chat("test-model"),
            EmulatedModel::chat("other-model"),
        ]),
    )
    .await
    .unwrap();
    let ctl = engine.control();
    let h = common::harness(&[(EngineKind::Vllm, engine.base_url(), "vllm")]).await;
    h.manager.use_profiles(h.store.profiles()).await;
    let svc = ProfileService::new(h.store.profiles());
    svc.save_profile(&ProfileDraft {
        model: "flm://vllm/test-model".into(),
        label: "precise".into(),
        parameters: obj(json!({"temperature": 0.2, "max_tokens": 50, "stop": ["END"], "seed": 7})),
        ..Default::default()
    })
    .await
    .unwrap();
    svc.set_prompt(PromptScope::Default, "House rules.")
        .await
        .unwrap();
    svc.set_prompt(
        PromptScope::model("other-model").unwrap(),
        "Other model rules.",
    )
    .await
    .unwrap();
    // Followed through the change marker, well within a second.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The profile: routed to its model, its parameters under the client's own.
    let (status, body) = h
        .chat(json!({
            "model": "profile/precise",
            "temperature": 0.9,
            "messages": [
                {"role": "system", "content": "Client system."},
                {"role": "user", "content": "hi"}
            ]
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = ctl.last_chat_body().unwrap();
    assert_eq!(sent["model"], "test-model");
    assert_eq!(sent["temperature"], 0.9, "the client's value wins");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["seed"], 7);
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[0],
        json!({"role": "system", "content": "House rules."})
    );
    assert_eq!(msgs[1]["content"], "Client system.");
    assert_eq!(msgs[2]["content"], "hi");

    // A client max_completion_tokens counts as max_tokens: the profile's is not added.
    let (status, _) = h
        .chat(
            json!({"model": "profile/precise", "max_completion_tokens": 9,
                     "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let sent = ctl.last_chat_body().unwrap();
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    assert_eq!(sent["max_completion_tokens"], 9);

    // Streaming goes through the same entry.
    let (status, events) = h
        .stream(json!({"model": "profile/precise", "stream": true,
                       "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let sent = ctl.last_chat_body().unwrap();
    assert_eq!(sent["messages"][0]["content"], "House rules.");
    assert_eq!(sent["temperature"], 0.2);

    // A model's template beats the default, on its bare name and on flm:// ids.
    for model in ["other-model", "flm://vllm/other-model"] {
        let (status, _) = h
            .chat(json!({"model": model, "messages": [{"role": "user", "content": "x"}]}))
            .await;
        assert_eq!(status, 200);
        let sent = ctl.last_chat_body().unwrap();
        assert_eq!(
            sent["messages"][0]["content"], "Other model rules.",
            "{model}"
        );
        assert!(
            sent.get("temperature").is_none(),
            "no profile, no parameters"
        );
    }

    // A key's template beats both.
    let keys = KeyService::new(h.store.api_keys(), Arc::new(SystemClock));
    let other = keys.create("other").await.unwrap();
    svc.set_prompt(PromptScope::key(&other.metadata.id).unwrap(), "Key rules.")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = chat_with(
        &h,
        &other.key,
        json!({"model": "other-model", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ctl.last_chat_body().unwrap()["messages"][0]["content"],
        "Key rules."
    );

    // /v1/completions: the profile's parameters, never a template.
    let r = h
        .post("/v1/completions")
        .json(&json!({"model": "profile/precise", "prompt": "Once"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let sent = ctl.last_chat_body().unwrap();
    assert_eq!(sent["prompt"], "Once");
    assert_eq!(sent["max_tokens"], 50);
    assert!(sent.get("messages").is_none());

    // Listed for the key, with its target; an unknown profile is a precise 404.
    let models = h.models().await;
    assert!(models.contains(&"profile/precise".to_owned()), "{models:?}");
    let (status, body) = h
        .chat(json!({"model": "profile/nope", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no model profile `nope`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_key_cannot_reach_another_model_through_a_profile() {
    let engine = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([
            EmulatedModel::chat("test-model"),
            EmulatedModel::chat("secret-model"),
        ]),
    )
    .await
    .unwrap();
    let ctl = engine.control();
    let h = common::harness(&[(EngineKind::Vllm, engine.base_url(), "vllm")]).await;
    h.manager.use_profiles(h.store.profiles()).await;
    let svc = ProfileService::new(h.store.profiles());
    for (label, model) in [
        ("open", "test-model"),
        ("backdoor", "flm://vllm/secret-model"),
    ] {
        svc.save_profile(&ProfileDraft {
            model: model.into(),
            label: label.into(),
            parameters: obj(json!({"temperature": 0.1})),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let keys = KeyService::new(h.store.api_keys(), Arc::new(SystemClock));
    let scoped = keys
        .create_limited(
            "scoped",
            &KeyLimits {
                models: Some(vec!["test-model".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Wait until the proxy knows both the key and the profiles.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = models_of(&h, &scoped.key).await;
        if m.contains(&"profile/open".to_owned()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = models_of(&h, &scoped.key).await;
    assert!(listed.contains(&"profile/open".to_owned()), "{listed:?}");
    assert!(
        !listed.contains(&"profile/backdoor".to_owned()),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|m| m.contains("secret")), "{listed:?}");

    let before = ctl.chat_requests();
    for model in [
        "profile/backdoor",
        "profile/does-not-exist",
        "flm://vllm/secret-model",
    ] {
        let (status, body) = chat_with(
            &h,
            &scoped.key,
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(status, 403, "{model}: {body}");
        assert_eq!(body["error"]["code"], "model_not_allowed", "{model}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains("secret-model") || model.contains("secret"),
            "{msg}"
        );
    }
    // The same on /v1/completions.
    let r = h
        .http
        .post(format!("{}/v1/completions", h.base))
        .bearer_auth(&scoped.key)
        .json(&json!({"model": "profile/backdoor", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(ctl.chat_requests(), before, "nothing reached the engine");

    let (status, _) = chat_with(
        &h,
        &scoped.key,
        json!({"model": "profile/open", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ctl.last_chat_body().unwrap()["model"], "test-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_sdk_uses_a_profile_on_the_real_llama_server() {
    let llama = common::llama(TinyModel::Chat);
    let h = common::harness(&[(EngineKind::LlamaCpp, llama.base_url(), "llama")]).await;
    h.manager.use_profiles(h.store.profiles()).await;
    let svc = ProfileService::new(h.store.profiles());
    svc.save_profile(&ProfileDraft {
        model: "flm://llama/tiny-llama".into(),
        label: "short".into(),
        parameters: obj(json!({"max_tokens": 3, "temperature": 0, "seed": 1})),
        ..Default::default()
    })
    .await
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/profiles_client.py"
    );
    let run = |phase: &'static str| {
        tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(python())
                .arg(script)
                .env("FLM_BASE_URL", format!("{}/v1", h.base))
                .env("FLM_API_KEY", &h.key)
                .env("FLM_PROFILE", "profile/short")
                .env("FLM_PHASE", phase)
                .env("NO_PROXY", "*")
                .output(),
        )
    };
    let out = run("plain").await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("\"done\": true"),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain_prompt_tokens: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("prompt_tokens="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A template makes the real engine's prompt longer.
    svc.set_prompt(
        PromptScope::Default,
        "You are a careful assistant. Answer in one short sentence, always.",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let out = run("template").await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_template: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("prompt_tokens="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        with_template > plain_prompt_tokens + 5,
        "{with_template} vs {plain_prompt_tokens}"
    );
}
