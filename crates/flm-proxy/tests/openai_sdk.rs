//! The official `openai` Python SDK as a real client of the proxy, in front of the
//! real llama-server and every emulated engine (tests/e2e/openai_client.py).
//! `scripts/test.sh` installs the SDK into a virtualenv and sets `FLM_PYTHON`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use flm_core::EngineKind;
use flm_testkit::llama::TinyModel;
use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_sdk_against_every_engine() {
    let chat = common::llama(TinyModel::Chat);
    let emb = common::llama(TinyModel::Embeddings);
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("llama3.2"),
            EmulatedModel::embedding("all-minilm"),
        ]),
    )
    .await
    .unwrap();
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let broken = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::chat("fragile")]),
    )
    .await
    .unwrap();
    let h = common::harness(&[
        (EngineKind::LlamaCpp, chat.base_url(), "llama"),
        (EngineKind::LlamaCpp, emb.base_url(), "bert"),
        (EngineKind::Ollama, ollama.base_url(), "ollama"),
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
        (EngineKind::Vllm, broken.base_url(), "broken"),
    ])
    .await;
    broken
        .control()
        .set_behavior(Behavior::DropMidStream { after_chunks: 3 });
    // Every protection on, with the defaults of an exposed bind: the SDK's real
    // traffic (its headers, its retries, its error paths) must not be scored.
    let all_on = serde_json::json!({
        "ip_blocklist": {"enabled": true},
        "intrusion_detection": {"enabled": true},
        "anomaly_detection": {"enabled": true},
        "ip_rate_limit": {"enabled": true},
        "resource_protection": {"enabled": true, "cpu_threshold": 100, "memory_threshold": 100},
    });
    h.store.policy().save(&all_on.to_string()).await.unwrap();
    h.manager.reload_security().await.unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/openai_client.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("FLM_CHAT_MODELS", "flm://llama/tiny-llama,flm://ollama/llama3.2:latest,flm://lms/test-model,flm://vllm/test-model")
            .env("FLM_EMBED_MODELS", "flm://bert/tiny-bert,flm://ollama/all-minilm:latest")
            .env("FLM_BROKEN_MODEL", "flm://broken/fragile")
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
    assert!(h
        .store
        .blocklist()
        .load_all()
        .await
        .unwrap()
        .iter()
        .all(|r| r.blocked_until.is_none() && !r.permanent));
    let audit = h
        .store
        .audit()
        .list(&flm_core::security::AuditFilter {
            event_type: Some("auth_success".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.len() >= 10, "{}", audit.len());
    h.stop().await;
}
