//! Bad paths: each ends in a precise error, within a bounded time, without a panic.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use flm_core::ports::{EngineProber, LlmEngine, ProbeOutcome};
use flm_core::{EmbeddingRequest, EngineError, EngineKind};
use flm_engines::ollama::OllamaEngine;
use flm_engines::{BinaryFinder, HttpClient, HttpProber};
use flm_testkit::llama::TinyModel;
use flm_testkit::{Behavior, EmulatedKind, EmulatorOptions};

use crate::common::{
    assert_api, bounded, chat_request, closed_port_url, default_model, drain, emulator, engine,
    kind_of, llama_required, probe, start_llama, target, PROBE_TIMEOUT, REQUEST_TIMEOUT, WAIT,
};

/// Slack allowed on top of a timeout before it counts as "did not respect it".
const SLACK: Duration = Duration::from_secs(1);

fn emulator_with(behavior: Behavior) -> EmulatorOptions {
    EmulatorOptions {
        behavior,
        ..EmulatorOptions::default()
    }
}

fn embed_request(model: &str) -> EmbeddingRequest {
    EmbeddingRequest {
        model: model.to_owned(),
        input: vec!["one".into(), "two".into()],
    }
}

/// Runs `fut`, returning its output and how long it took.
async fn timed<F: std::future::Future>(fut: F) -> (F::Output, Duration) {
    let started = Instant::now();
    let out = fut.await;
    (out, started.elapsed())
}

#[tokio::test]
async fn unreachable_address_is_reported_quickly() {
    let url = closed_port_url();
    for kind in EngineKind::ALL {
        let (outcome, took) = timed(probe(&target("gone", kind, &url), PROBE_TIMEOUT)).await;
        match outcome {
            ProbeOutcome::Unreachable { reason } => {
                assert!(reason.contains(&url), "{kind}: {reason}")
            }
            other => panic!("{kind}: expected Unreachable, got {other:?}"),
        }
        assert!(took < SLACK, "{kind}: a refused connection took {took:?}");
    }
    for kind in [EngineKind::Ollama, EngineKind::Vllm] {
        let e = engine(&target("gone", kind, &url), REQUEST_TIMEOUT);
        let errors = [
            bounded("list_models", WAIT, e.list_models()).await.err(),
            bounded("chat", WAIT, e.chat(chat_request("m"))).await.err(),
            bounded("chat_stream", WAIT, e.chat_stream(chat_request("m")))
                .await
                .err(),
            bounded("embeddings", WAIT, e.embeddings(embed_request("m")))
                .await
                .err(),
        ];
        for err in errors {
            match err {
                Some(EngineError::Network(msg)) => {
                    assert!(
                        msg.contains("cannot connect") && msg.contains(&url),
                        "{kind}: {msg}"
                    )
                }
                other => panic!("{kind}: expected a Network error, got {other:?}"),
            }
        }
    }
}

/// Every operation against an engine that accepts connections and never answers ends
/// with a timeout error, within its budget.
async fn hang_case(kind: EmulatedKind) {
    const BUDGET: Duration = Duration::from_millis(400);
    let emu = emulator(kind, emulator_with(Behavior::Hang)).await;
    let t = target("hangs", kind_of(kind), &emu.base_url());

    let (outcome, took) = timed(probe(&t, BUDGET)).await;
    assert!(
        matches!(outcome, ProbeOutcome::TimedOut { .. }),
        "{kind}: expected TimedOut, got {outcome:?}"
    );
    assert!(took < BUDGET + SLACK, "{kind}: the probe took {took:?}");

    let e = engine(&t, BUDGET);
    let model = default_model(kind);
    let check = |op: &'static str, took: Duration, err: Option<EngineError>| {
        assert!(took < BUDGET + SLACK, "{kind} {op}: took {took:?}");
        match err {
            Some(EngineError::Timeout(msg)) => {
                assert!(msg.contains(&emu.base_url()), "{kind} {op}: {msg}")
            }
            other => panic!("{kind} {op}: expected a Timeout, got {other:?}"),
        }
    };
    let limit = BUDGET + SLACK + SLACK;
    let ((list, t1), (chat, t2), (stream, t3), (embed, t4)) = tokio::join!(
        timed(bounded("list_models", limit, e.list_models())),
        timed(bounded("chat", limit, e.chat(chat_request(&model)))),
        timed(bounded(
            "chat_stream",
            limit,
            e.chat_stream(chat_request(&model))
        )),
        timed(bounded(
            "embeddings",
            limit,
            e.embeddings(embed_request(&model))
        )),
    );
    check("list_models", t1, list.err());
    check("chat", t2, chat.err());
    check("chat_stream", t3, stream.err());
    check("embeddings", t4, embed.err());
}

#[tokio::test]
async fn hanging_engine_times_out_within_the_budget() {
    tokio::join!(
        hang_case(EmulatedKind::Ollama),
        hang_case(EmulatedKind::LmStudio),
        hang_case(EmulatedKind::Vllm),
    );
}

#[tokio::test]
async fn malformed_json_is_a_bad_response_naming_the_url() {
    for kind in EmulatedKind::ALL {
        let emu = emulator(kind, emulator_with(Behavior::MalformedJson)).await;
        let base = emu.base_url();
        let t = target("garbled", kind_of(kind), &base);
        match probe(&t, PROBE_TIMEOUT).await {
            ProbeOutcome::BadResponse { reason } => assert!(
                reason.contains(&format!("{base}/")) && reason.contains("invalid JSON"),
                "{kind}: {reason}"
            ),
            other => panic!("{kind}: expected BadResponse, got {other:?}"),
        }

        let e = engine(&t, REQUEST_TIMEOUT);
        let model = default_model(kind);
        let invalid = |op: &str, err: Option<EngineError>| match err {
            Some(EngineError::InvalidResponse(msg)) => assert!(
                msg.contains(&format!("{base}/")) && msg.contains("invalid"),
                "{kind} {op}: {msg}"
            ),
            other => panic!("{kind} {op}: expected InvalidResponse, got {other:?}"),
        };
        invalid(
            "list_models",
            bounded("list_models", WAIT, e.list_models()).await.err(),
        );
        invalid(
            "chat",
            bounded("chat", WAIT, e.chat(chat_request(&model)))
                .await
                .err(),
        );
        invalid(
            "embeddings",
            bounded("embeddings", WAIT, e.embeddings(embed_request(&model)))
                .await
                .err(),
        );
        let stream = bounded("chat_stream", WAIT, e.chat_stream(chat_request(&model)))
            .await
            .unwrap_or_else(|err| panic!("{kind}: the stream starts (framing is intact): {err}"));
        let mut items = drain(stream, WAIT).await;
        assert_eq!(
            items.len(),
            1,
            "{kind}: one error ends the stream: {items:?}"
        );
        invalid("chat_stream", items.pop().unwrap().err());
    }
}

#[tokio::test]
async fn status_error_on_listing_carries_the_engine_message() {
    const MESSAGE: &str = "emulated error: Internal Server Error";
    for kind in EmulatedKind::ALL {
        let emu = emulator(kind, emulator_with(Behavior::StatusError(500))).await;
        let t = target("failing", kind_of(kind), &emu.base_url());
        match probe(&t, PROBE_TIMEOUT).await {
            ProbeOutcome::BadResponse { reason } => assert!(
                reason.contains("HTTP 500") && reason.contains(MESSAGE),
                "{kind}: {reason}"
            ),
            other => panic!("{kind}: expected BadResponse, got {other:?}"),
        }
        let e = engine(&t, REQUEST_TIMEOUT);
        let err = bounded("list_models", WAIT, e.list_models())
            .await
            .unwrap_err();
        assert_api(&err, 500, MESSAGE);
        let err = bounded("chat", WAIT, e.chat(chat_request(&default_model(kind))))
            .await
            .unwrap_err();
        assert_api(&err, 500, MESSAGE);
    }
}

/// LM Studio answers unknown routes with HTTP 200 and an error body. A base URL with a
/// spurious `/v1` (a common mistake) sends every request to such a route.
#[tokio::test]
async fn lmstudio_200_with_error_body_is_an_api_error() {
    const MESSAGE: &str = "Unexpected endpoint or method.";
    let emu = emulator(EmulatedKind::LmStudio, EmulatorOptions::default()).await;
    let base = format!("{}/v1", emu.base_url());
    let t = target("lmstudio-v1", EngineKind::LmStudio, &base);
    match probe(&t, PROBE_TIMEOUT).await {
        ProbeOutcome::BadResponse { reason } => assert!(reason.contains(MESSAGE), "{reason}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
    let e = engine(&t, REQUEST_TIMEOUT);
    let model = flm_testkit::DEFAULT_MODEL;
    let errors = [
        bounded("list_models", WAIT, e.list_models()).await.err(),
        bounded("chat", WAIT, e.chat(chat_request(model)))
            .await
            .err(),
        bounded("chat_stream", WAIT, e.chat_stream(chat_request(model)))
            .await
            .err(),
        bounded("embeddings", WAIT, e.embeddings(embed_request(model)))
            .await
            .err(),
    ];
    for err in errors {
        let err = err.expect("a 200 with an error body is not a success");
        assert_api(&err, 200, MESSAGE);
        assert!(err.to_string().contains("/v1/v1/"), "names the URL: {err}");
    }
}

#[tokio::test]
async fn fail_mid_stream_yields_some_chunks_then_one_error() {
    for kind in EmulatedKind::ALL {
        let emu = emulator(
            kind,
            emulator_with(Behavior::FailMidStream { after_chunks: 3 }),
        )
        .await;
        let e = engine(
            &target("flaky", kind_of(kind), &emu.base_url()),
            REQUEST_TIMEOUT,
        );
        let model = default_model(kind);
        let stream = bounded("chat_stream", WAIT, e.chat_stream(chat_request(&model)))
            .await
            .unwrap_or_else(|err| panic!("{kind}: the stream starts: {err}"));
        let mut items = drain(stream, WAIT).await;
        let last = items.pop().expect("items");
        assert_eq!(items.len(), 3, "{kind}: three chunks before the error");
        for (i, item) in items.iter().enumerate() {
            assert!(item.is_ok(), "{kind}: item {i} is {item:?}");
        }
        match last {
            Err(EngineError::Api { message, .. }) => assert!(
                message.contains("emulated engine failure in the middle of the stream"),
                "{kind}: {message}"
            ),
            other => panic!("{kind}: expected the engine's error last, got {other:?}"),
        }
        // Non-streaming requests are not affected.
        bounded("chat", WAIT, e.chat(chat_request(&model)))
            .await
            .unwrap_or_else(|err| panic!("{kind}: chat: {err}"));
    }
}

#[tokio::test]
async fn drop_mid_stream_ends_with_an_error_and_never_hangs() {
    for kind in EmulatedKind::ALL {
        let emu = emulator(
            kind,
            emulator_with(Behavior::DropMidStream { after_chunks: 3 }),
        )
        .await;
        let e = engine(
            &target("dropped", kind_of(kind), &emu.base_url()),
            REQUEST_TIMEOUT,
        );
        let model = default_model(kind);
        let stream = bounded("chat_stream", WAIT, e.chat_stream(chat_request(&model)))
            .await
            .unwrap_or_else(|err| panic!("{kind}: the stream starts: {err}"));
        let mut items = drain(stream, WAIT).await;
        let last = items.pop().expect("items");
        assert!(!items.is_empty(), "{kind}: chunks arrive before the drop");
        for (i, item) in items.iter().enumerate() {
            assert!(item.is_ok(), "{kind}: item {i} is {item:?}");
        }
        match last {
            Err(EngineError::Network(msg)) => {
                assert!(msg.contains(&emu.base_url()), "{kind}: {msg}")
            }
            other => panic!("{kind}: expected a Network error last, got {other:?}"),
        }
        // A non-streaming answer cut in the middle of its body.
        match bounded("chat", WAIT, e.chat(chat_request(&model))).await {
            Err(EngineError::Network(msg)) => {
                assert!(msg.contains(&emu.base_url()), "{kind}: {msg}")
            }
            other => panic!("{kind}: expected a Network error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_model_is_an_api_error_with_the_engine_message() {
    for (kind, status, message) in [
        (EmulatedKind::Ollama, 404, "model 'no-such-model' not found"),
        (
            EmulatedKind::Vllm,
            404,
            "The model `no-such-model` does not exist.",
        ),
        (
            EmulatedKind::LmStudio,
            400,
            "Invalid model identifier \"no-such-model\"",
        ),
    ] {
        let emu = emulator(kind, EmulatorOptions::default()).await;
        let e = engine(
            &target("picky", kind_of(kind), &emu.base_url()),
            REQUEST_TIMEOUT,
        );
        let err = bounded("chat", WAIT, e.chat(chat_request("no-such-model")))
            .await
            .unwrap_err();
        assert_api(&err, status, message);
        let err = bounded(
            "chat_stream",
            WAIT,
            e.chat_stream(chat_request("no-such-model")),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{kind}: no stream for an unknown model"));
        assert_api(&err, status, message);
        let err = bounded(
            "embeddings",
            WAIT,
            e.embeddings(embed_request("no-such-model")),
        )
        .await
        .unwrap_err();
        assert_api(&err, status, message);
    }
}

#[tokio::test]
async fn llamacpp_embeddings_on_a_chat_server_is_unsupported() {
    if !llama_required("llamacpp_embeddings_on_a_chat_server_is_unsupported") {
        return;
    }
    let server = start_llama(TinyModel::Chat).await;
    let e = engine(
        &target("llamacpp-chat", EngineKind::LlamaCpp, &server.base_url()),
        REQUEST_TIMEOUT,
    );
    let err = bounded(
        "embeddings",
        WAIT,
        e.embeddings(embed_request("tiny-llama")),
    )
    .await
    .unwrap_err();
    assert_api(&err, 501, "does not support embeddings");
}

/// Ollama refuses non-local `Host` headers when it listens on loopback: the adapter
/// must send the host of its base URL (here the loopback IP), never another name.
#[tokio::test]
async fn ollama_adapter_sends_a_local_host_header() {
    let emu = emulator(EmulatedKind::Ollama, EmulatorOptions::default()).await;
    let e = engine(
        &target("ollama-host", EngineKind::Ollama, &emu.base_url()),
        REQUEST_TIMEOUT,
    );
    let expected = format!("127.0.0.1:{}", emu.addr().port());
    let host = || {
        emu.control().last_headers().and_then(|h| {
            h.get("host")
                .and_then(|v| v.to_str().ok().map(str::to_owned))
        })
    };
    bounded("list_models", WAIT, e.list_models()).await.unwrap();
    assert_eq!(host().as_deref(), Some(expected.as_str()));
    bounded(
        "chat",
        WAIT,
        e.chat(chat_request(&default_model(EmulatedKind::Ollama))),
    )
    .await
    .unwrap();
    assert_eq!(host().as_deref(), Some(expected.as_str()));
}

/// The other side of the guard: an Ollama addressed by a public-looking name (here
/// resolved to loopback by the client, no DNS involved) answers an empty 403, which the
/// adapter explains.
#[tokio::test]
async fn ollama_host_guard_refusal_is_explained() {
    let emu = emulator(EmulatedKind::Ollama, EmulatorOptions::default()).await;
    let raw = reqwest::Client::builder()
        .no_proxy()
        .resolve("ollama.example.com", emu.addr())
        .build()
        .unwrap();
    let base = format!("http://ollama.example.com:{}", emu.addr().port());
    let e = OllamaEngine::new(
        flm_core::EngineId::parse("ollama-named").unwrap(),
        &base,
        HttpClient::from_reqwest(raw.clone()),
        REQUEST_TIMEOUT,
    );
    let err = bounded("list_models", WAIT, e.list_models())
        .await
        .unwrap_err();
    assert_api(&err, 403, "Host header");
    let err = bounded(
        "chat",
        WAIT,
        e.chat(chat_request(&default_model(EmulatedKind::Ollama))),
    )
    .await
    .unwrap_err();
    assert_api(&err, 403, "Host header");
    // The probe's `GET /` is refused the same way, and the probe says why.
    let prober = HttpProber::new(
        HttpClient::from_reqwest(raw),
        BinaryFinder::new(std::sync::Arc::new(|_| None)),
    );
    let outcome = bounded(
        "probe",
        WAIT,
        prober.probe(
            &target("ollama-named", EngineKind::Ollama, &base),
            PROBE_TIMEOUT,
        ),
    )
    .await;
    match outcome {
        ProbeOutcome::BadResponse { reason } => assert!(
            reason.contains("HTTP 403") && reason.contains("Host header"),
            "{reason}"
        ),
        other => panic!("expected BadResponse, got {other:?}"),
    }
}
