//! A probe never reports one engine as another: probing an engine with any other kind
//! gives `WrongIdentity` naming what answered, and anything carrying FLM's own server
//! header is refused whatever else it looks like.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flm_core::ports::ProbeOutcome;
use flm_core::{EngineKind, FLM_SERVER_HEADER};
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatorOptions};
use serde_json::{json, Value};

use crate::common::{
    emulator, kind_of, llama_required, probe, probe_answered, start_llama, target, PROBE_TIMEOUT,
};

/// The kinds that are auto-detected and therefore must tell each other apart. (The
/// generic `openai` kind accepts any OpenAI-compatible server by design.)
const DETECTED: [EngineKind; 4] = [
    EngineKind::Ollama,
    EngineKind::Vllm,
    EngineKind::LmStudio,
    EngineKind::LlamaCpp,
];

/// Probes `base_url` with each of `kinds` (concurrently) and requires `WrongIdentity`
/// whose `found` contains `needle`.
async fn assert_refused(label: &str, base_url: &str, kinds: &[EngineKind], needle: &str) {
    let probes = kinds.iter().map(|kind| async move {
        let outcome = probe(&target("identity-check", *kind, base_url), PROBE_TIMEOUT).await;
        (*kind, outcome)
    });
    for (kind, outcome) in futures::future::join_all(probes).await {
        match outcome {
            ProbeOutcome::WrongIdentity { found } => assert!(
                found.contains(needle) && !found.contains("possibly") && !found.contains("unknown"),
                "{label} probed as {kind}: found {found:?}, expected it to name {needle:?} for sure"
            ),
            other => panic!("{label} probed as {kind}: expected WrongIdentity, got {other:?}"),
        }
    }
}

fn others(actual: EngineKind) -> Vec<EngineKind> {
    DETECTED.into_iter().filter(|k| *k != actual).collect()
}

#[tokio::test]
async fn identity_llamacpp_real_server_is_never_taken_for_another_engine() {
    if !llama_required("identity_llamacpp_real_server_is_never_taken_for_another_engine") {
        return;
    }
    let server = start_llama(TinyModel::Chat).await;
    let url = server.base_url();
    probe_answered(&target("llamacpp-self", EngineKind::LlamaCpp, &url)).await;
    assert_refused(
        "llama-server",
        &url,
        &others(EngineKind::LlamaCpp),
        "llama.cpp",
    )
    .await;
}

/// A llama-server still loading its model answers 503 on every route, including the
/// identity routes of other engines: still llama.cpp, never "an engine that is loading".
#[cfg(unix)]
#[tokio::test]
async fn identity_loading_llamacpp_is_never_taken_for_another_engine() {
    if !llama_required("identity_loading_llamacpp_is_never_taken_for_another_engine") {
        return;
    }
    let server = crate::common::start_llama_loading().await;
    assert_refused(
        "loading llama-server",
        &server.base_url(),
        &others(EngineKind::LlamaCpp),
        "llama.cpp",
    )
    .await;
}

#[tokio::test]
async fn identity_emulators_are_never_taken_for_another_engine() {
    for (emulated, needle) in [
        (EmulatedKind::Ollama, "Ollama"),
        (EmulatedKind::LmStudio, "LM Studio"),
        (EmulatedKind::Vllm, "vLLM"),
    ] {
        let emu = emulator(emulated, EmulatorOptions::default()).await;
        let kind = kind_of(emulated);
        let url = emu.base_url();
        probe_answered(&target("self-check", kind, &url)).await;
        assert_refused(&format!("{emulated} emulator"), &url, &others(kind), needle).await;
    }
}

/// Serves `app` on an ephemeral loopback port until the test's runtime ends.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn json_ok(v: Value) -> Response {
    Json(v).into_response()
}

/// Newer llama-server builds answer Ollama's `/api/tags` and `/api/version` for
/// Copilot compatibility (reference §4.3). This stand-in has exactly those routes, with
/// llama.cpp's `Server` header and its 404 on `/`.
#[tokio::test]
async fn identity_ollama_routes_on_llamacpp_do_not_make_it_ollama() {
    let headers = |r: Response| async move {
        let mut r = r;
        r.headers_mut()
            .insert("server", HeaderValue::from_static("llama.cpp"));
        r
    };
    let app = Router::new()
        .route(
            "/api/tags",
            get(|| async {
                json_ok(json!({"models": [{"name": "tiny", "model": "tiny", "details": {}}]}))
            }),
        )
        .route(
            "/api/version",
            get(|| async { json_ok(json!({"version": "0.12.6"})) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}})),
            )
        })
        .layer(axum::middleware::map_response(headers));
    let url = serve(app).await;
    assert_refused(
        "llama-server with Ollama routes",
        &url,
        &[EngineKind::Ollama],
        "llama.cpp",
    )
    .await;
}

/// A server that looks like every engine at once (Ollama's `/` text, vLLM's `/version`,
/// LM Studio's `/api/v0/models` and Express header, llama.cpp's `Server` header, an
/// OpenAI `/v1/models`) but carries FLM's server header: FLM's own proxy. Every kind,
/// the generic one included, must refuse it.
#[tokio::test]
async fn identity_flm_proxy_is_never_taken_for_an_engine() {
    let headers = |r: Response| async move {
        let mut r = r;
        let h = r.headers_mut();
        h.insert(
            HeaderName::from_static(FLM_SERVER_HEADER),
            HeaderValue::from_static("flm/0.1.0"),
        );
        h.insert("server", HeaderValue::from_static("llama.cpp"));
        h.insert("x-powered-by", HeaderValue::from_static("Express"));
        r
    };
    let model = json!({"id": "m", "object": "model", "created": 1, "owned_by": "vllm"});
    let app = Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { json_ok(json!({"version": "0.12.6"})) }),
        )
        .route(
            "/api/tags",
            get(|| async { json_ok(json!({"models": [{"name": "m", "model": "m"}]})) }),
        )
        .route(
            "/version",
            get(|| async { json_ok(json!({"version": "0.11.0"})) }),
        )
        .route(
            "/health",
            get(|| async { json_ok(json!({"status": "ok"})) }),
        )
        .route("/props", get(|| async { json_ok(json!({})) }))
        .route(
            "/api/v0/models",
            get(|| async {
                json_ok(json!({"object": "list", "data": [{"id": "m", "type": "llm", "state": "loaded"}]}))
            }),
        )
        .route(
            "/v1/models",
            get(move || {
                let model = model.clone();
                async move { json_ok(json!({"object": "list", "data": [model]})) }
            }),
        )
        .layer(axum::middleware::map_response(headers));
    let url = serve(app).await;
    assert_refused("an FLM proxy", &url, &EngineKind::ALL, "FLM").await;
}
