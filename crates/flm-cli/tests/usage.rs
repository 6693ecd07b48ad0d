//! `flm usage` and `flm engines health-history` after real traffic through the
//! daemon's proxy (a real `flm` process in front of the vLLM emulator).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{free_port, Env};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_health_history_after_traffic() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let env = Env::new();
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "vllm",
        "--url",
        &vllm.base_url(),
        "--id",
        "v",
    ])
    .await
    .ok();
    let _guard = env.guard();
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut tokens = (0, 0);
    for model in ["flm://v/test-model", "flm://v/test-model", "flm://v/nosuch"] {
        let r = http
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        tokens.0 += v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        tokens.1 += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    }
    // Stopping the last proxy ends the daemon; the counts are written first.
    env.flm(&["proxy", "stop"]).await.ok();

    let usage = env
        .flm(&["usage", "--range", "1h", "--by", "key"])
        .await
        .ok();
    assert_eq!(usage["range"], "1h");
    let groups = usage["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{usage}");
    assert_eq!(groups[0]["label"], "default");
    assert_eq!(groups[0]["requests"], 3);
    assert_eq!(groups[0]["errors"], 1);
    assert_eq!(groups[0]["tokens_in"], tokens.0);
    assert_eq!(groups[0]["tokens_out"], tokens.1);
    let by_model = env.flm(&["usage", "--by", "model"]).await.ok();
    assert_eq!(
        by_model["groups"].as_array().unwrap().len(),
        2,
        "{by_model}"
    );
    let msg = env
        .flm(&["usage", "--range", "2h"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("1h, 24h or 7d"), "{msg}");

    let history = env
        .flm(&["engines", "health-history", "--engine", "v"])
        .await
        .ok();
    let logs = history["logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l["engine_id"] == "v" && l["status"] == "healthy" && l["model_id"].is_null()),
        "{history}"
    );
    for field in [
        "id",
        "engine_id",
        "model_id",
        "status",
        "latency_ms",
        "error_rate",
        "created_at",
    ] {
        assert!(logs[0].get(field).is_some(), "{field}: {history}");
    }
    let summary = &history["summary"][0];
    assert_eq!(summary["engine_id"], "v");
    assert_eq!(summary["success_rate"], 1.0);
    env.flm(&["engines", "health-history", "--limit", "0"])
        .await
        .err("INVALID_ARGUMENT", 1);
    let text = env
        .flm(&["--format", "text", "engines", "health-history"])
        .await;
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("SUCCESS"), "{}", text.stdout);
}
