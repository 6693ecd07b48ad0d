//! Engines that are up but not ready: the probe answers with a warning, detection
//! classifies that as degraded, and requests fail with the engine's own reason.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flm_core::ports::ProbeOutcome;
use flm_core::services::{classify, DetectionThresholds};
use flm_core::{EmbeddingRequest, EngineKind, EngineSource, EngineStatus};
use flm_testkit::{Behavior, EmulatedKind, EmulatorOptions};

use crate::common::{
    assert_api, bounded, chat_request, default_model, emulator, engine, llama_required,
    probe_answered, target, REQUEST_TIMEOUT, WAIT,
};

const THRESHOLDS: DetectionThresholds = DetectionThresholds {
    health_latency_threshold_ms: 1500,
};

/// Classifies an `Answered` outcome carrying `warning` for both sources, requiring
/// `RunningDegraded` whose reason is the warning.
#[track_caller]
fn assert_degraded(warning: &str) {
    let outcome = ProbeOutcome::Answered {
        latency_ms: 1,
        version: None,
        model_count: 0,
        warning: Some(warning.to_owned()),
        capabilities: Default::default(),
    };
    for source in [EngineSource::Default, EngineSource::Configured] {
        let c = classify(&outcome, source, false, None, THRESHOLDS)
            .unwrap_or_else(|| panic!("{source:?}: a loading engine is reported"));
        match c.status {
            EngineStatus::RunningDegraded { reason, .. } => {
                assert_eq!(reason, warning, "{source:?}")
            }
            other => panic!("{source:?}: expected RunningDegraded, got {other:?}"),
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn loading_llamacpp_real_server_is_degraded() {
    if !llama_required("loading_llamacpp_real_server_is_degraded") {
        return;
    }
    let server = crate::common::start_llama_loading().await;
    let t = target("llamacpp-loading", EngineKind::LlamaCpp, &server.base_url());
    let outcome = crate::common::probe(&t, crate::common::PROBE_TIMEOUT).await;
    let ProbeOutcome::Answered {
        warning: Some(warning),
        model_count,
        ..
    } = &outcome
    else {
        panic!("expected Answered with a warning, got {outcome:?}");
    };
    assert!(warning.contains("Loading model"), "{warning}");
    assert_eq!(*model_count, 0);
    // The classification of this very outcome.
    let c = classify(&outcome, EngineSource::Configured, false, None, THRESHOLDS).unwrap();
    assert_eq!(c.status.name(), "RunningDegraded", "{:?}", c.status);
    assert!(c.status.reason().unwrap().contains("Loading model"));
    assert_degraded(warning);

    // Requests fail with the engine's 503 instead of hanging or being misread.
    let e = engine(&t, REQUEST_TIMEOUT);
    let err = bounded("list_models", WAIT, e.list_models())
        .await
        .unwrap_err();
    assert_api(&err, 503, "Loading model");
    let err = bounded("chat", WAIT, e.chat(chat_request("tiny-llama")))
        .await
        .unwrap_err();
    assert_api(&err, 503, "Loading model");
    let err = bounded(
        "chat_stream",
        WAIT,
        e.chat_stream(chat_request("tiny-llama")),
    )
    .await
    .err()
    .expect("no stream while loading");
    assert_api(&err, 503, "Loading model");
}

#[tokio::test]
async fn loading_vllm_emulator_warns() {
    let emu = emulator(
        EmulatedKind::Vllm,
        EmulatorOptions {
            behavior: Behavior::Loading,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let t = target("vllm-loading", EngineKind::Vllm, &emu.base_url());
    let (_, warning) = probe_answered(&t).await;
    let warning = warning.expect("a loading vLLM gives a warning");
    assert!(warning.contains("503"), "{warning}");
    assert_degraded(&warning);
    let err = bounded(
        "chat",
        WAIT,
        engine(&t, REQUEST_TIMEOUT).chat(chat_request(&default_model(EmulatedKind::Vllm))),
    )
    .await
    .unwrap_err();
    assert_api(&err, 503, "still loading");

    // Once loaded, the same engine is healthy again.
    emu.control().set_behavior(Behavior::Normal);
    let (count, warning) = probe_answered(&t).await;
    assert_eq!((count, warning), (1, None));
}

/// Ollama and LM Studio have no loading state in their probes; their busy / nothing-
/// loaded answers surface on requests, with the engine's message.
#[tokio::test]
async fn loading_ollama_and_lmstudio_fail_requests_precisely() {
    let ollama = emulator(
        EmulatedKind::Ollama,
        EmulatorOptions {
            behavior: Behavior::Loading,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let t = target("ollama-busy", EngineKind::Ollama, &ollama.base_url());
    let e = engine(&t, REQUEST_TIMEOUT);
    let model = default_model(EmulatedKind::Ollama);
    let err = bounded("chat", WAIT, e.chat(chat_request(&model)))
        .await
        .unwrap_err();
    assert_api(&err, 503, "server busy");
    let err = bounded("chat_stream", WAIT, e.chat_stream(chat_request(&model)))
        .await
        .err()
        .expect("no stream when busy");
    assert_api(&err, 503, "server busy");

    let lms = emulator(
        EmulatedKind::LmStudio,
        EmulatorOptions {
            behavior: Behavior::Loading,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let t = target("lmstudio-empty", EngineKind::LmStudio, &lms.base_url());
    let e = engine(&t, REQUEST_TIMEOUT);
    let models = bounded("list_models", WAIT, e.list_models()).await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].loaded, Some(false), "{models:?}");
    let err = bounded(
        "chat",
        WAIT,
        e.chat(chat_request(flm_testkit::DEFAULT_MODEL)),
    )
    .await
    .unwrap_err();
    assert_api(&err, 400, "No models loaded");
    let err = bounded(
        "embeddings",
        WAIT,
        e.embeddings(EmbeddingRequest {
            model: flm_testkit::DEFAULT_MODEL.into(),
            input: vec!["a".into()],
        }),
    )
    .await
    .unwrap_err();
    assert_api(&err, 400, "No models loaded");
}
