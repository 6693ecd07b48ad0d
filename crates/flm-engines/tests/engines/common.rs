//! Helpers shared by the engine integration tests.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flm_core::ports::{EngineFactory, EngineProber, LlmEngine, ProbeOutcome};
use flm_core::{
    ChatMessage, ChatRequest, ChatStream, ChatStreamChunk, EngineError, EngineId, EngineKind,
    EngineSource, EngineTarget, Role,
};
use flm_engines::{BinaryFinder, HttpClient, HttpProber, Registry};
use flm_testkit::llama::{self, LlamaServer, TinyModel};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use futures::StreamExt;

/// Upper bound for any single wait on an engine that is expected to answer.
pub const WAIT: Duration = Duration::from_secs(10);

/// Probe budget when the engine is expected to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Request timeout of adapters when the engine is expected to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Budget for starting one llama-server (it normally takes well under a second).
const LLAMA_START: Duration = Duration::from_secs(90);

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn bounded<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

pub fn client() -> HttpClient {
    HttpClient::new().expect("the HTTP client builds")
}

/// The production prober, with binary discovery switched off (empty environment).
pub fn prober() -> HttpProber {
    HttpProber::new(client(), BinaryFinder::new(Arc::new(|_| None)))
}

pub fn target(id: &str, kind: EngineKind, base_url: &str) -> EngineTarget {
    EngineTarget {
        id: EngineId::parse(id).expect("valid engine id"),
        kind,
        base_url: base_url.to_owned(),
        source: EngineSource::Configured,
    }
}

/// The adapter the registry builds for `target`.
pub fn engine(target: &EngineTarget, request_timeout: Duration) -> Arc<dyn LlmEngine> {
    Registry::new(client()).build(target, request_timeout)
}

/// Probes `target`; the probe itself must respect `timeout` (checked with 2 s of slack).
pub async fn probe(target: &EngineTarget, timeout: Duration) -> ProbeOutcome {
    bounded(
        &format!("probing {} as {}", target.base_url, target.kind),
        timeout + Duration::from_secs(2),
        prober().probe(target, timeout),
    )
    .await
}

/// Probes and requires `Answered`; returns `(model_count, warning)`.
pub async fn probe_answered(target: &EngineTarget) -> (usize, Option<String>) {
    match probe(target, PROBE_TIMEOUT).await {
        ProbeOutcome::Answered {
            model_count,
            warning,
            ..
        } => (model_count, warning),
        other => panic!(
            "probing {} as {}: expected Answered, got {other:?}",
            target.base_url, target.kind
        ),
    }
}

/// A one-message chat request, deterministic and short.
pub fn chat_request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![
            ChatMessage::text(Role::System, "You are terse."),
            ChatMessage::text(Role::User, "Say hello to the integration test"),
        ],
        temperature: Some(0.0),
        max_tokens: Some(8),
        ..ChatRequest::default()
    }
}

/// Reads a stream to its end (bounded by `limit`), returning every item.
pub async fn drain(
    mut stream: ChatStream,
    limit: Duration,
) -> Vec<Result<ChatStreamChunk, EngineError>> {
    bounded("reading the stream to its end", limit, async move {
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item);
            assert!(items.len() < 10_000, "the stream never ends");
        }
        items
    })
    .await
}

/// Asserts `err` is `EngineError::Api` with `status` and a message containing `needle`.
#[track_caller]
pub fn assert_api(err: &EngineError, status: u16, needle: &str) {
    match err {
        EngineError::Api {
            status_code,
            message,
        } => {
            assert_eq!(*status_code, Some(status), "status of {message:?}");
            assert!(
                message.contains(needle),
                "expected {needle:?} in the message {message:?}"
            );
        }
        other => panic!("expected EngineError::Api({status}, …{needle}…), got {other:?}"),
    }
}

/// The FLM kind of an emulated engine.
pub fn kind_of(k: EmulatedKind) -> EngineKind {
    match k {
        EmulatedKind::Ollama => EngineKind::Ollama,
        EmulatedKind::LmStudio => EngineKind::LmStudio,
        EmulatedKind::Vllm => EngineKind::Vllm,
    }
}

/// Starts an emulator on an ephemeral loopback port.
pub async fn emulator(kind: EmulatedKind, opts: EmulatorOptions) -> Emulator {
    bounded("starting an emulator", WAIT, Emulator::start(kind, opts))
        .await
        .expect("the emulator starts")
}

/// Engine name of the default emulator model, as the engine lists it.
pub fn default_model(kind: EmulatedKind) -> String {
    match kind {
        EmulatedKind::Ollama => format!("{}:latest", flm_testkit::DEFAULT_MODEL),
        _ => flm_testkit::DEFAULT_MODEL.to_owned(),
    }
}

/// A loopback URL where nothing listens (an ephemeral port, bound then released).
pub fn closed_port_url() -> String {
    let port = llama::free_port().expect("a free port");
    format!("http://127.0.0.1:{port}")
}

// === the real llama-server ===

/// Whether the llama.cpp tests can run. When llama-server is not built they fail with a
/// pointer to the set-up script, unless `FLM_SKIP_LLAMA=1` says to skip them.
pub fn llama_required(test: &str) -> bool {
    if llama::available() {
        return true;
    }
    if std::env::var("FLM_SKIP_LLAMA").is_ok_and(|v| v == "1") {
        eprintln!("{test}: skipped (FLM_SKIP_LLAMA=1 and llama-server is not built)");
        return false;
    }
    panic!(
        "{test}: the real llama-server or its tiny models are missing. Build them with \
         scripts/setup-llama-server.sh (or point FLM_LLAMA_SERVER / FLM_TINY_MODELS at \
         them); set FLM_SKIP_LLAMA=1 to skip the llama.cpp tests"
    );
}

/// Starts a real llama-server serving `model` (blocking start moved off the runtime).
pub async fn start_llama(model: TinyModel) -> LlamaServer {
    let started = bounded(
        "starting llama-server",
        LLAMA_START,
        tokio::task::spawn_blocking(move || LlamaServer::start(model)),
    )
    .await
    .expect("the start task does not panic");
    started.unwrap_or_else(|e| panic!("llama-server ({model:?}) does not start: {e}"))
}

/// Starts a real llama-server that stays in its "Loading model" state.
#[cfg(unix)]
pub async fn start_llama_loading() -> LlamaServer {
    let started = bounded(
        "starting a loading llama-server",
        LLAMA_START,
        tokio::task::spawn_blocking(LlamaServer::start_loading),
    )
    .await
    .expect("the start task does not panic");
    started.unwrap_or_else(|e| panic!("the loading llama-server does not start: {e}"))
}
