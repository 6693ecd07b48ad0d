//! whisper.cpp's `whisper-server` (the real one, from scripts/setup-whisper-server.sh):
//! detected by its identity only, listed with its one model, refused for chat, and
//! reached for speech-to-text through a streamed upload.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use flm_core::ports::{ProbeOutcome, RawRequest};
use flm_core::{EngineError, EngineKind};
use flm_testkit::whisper::{WhisperAssets, WhisperServer};
use flm_testkit::{EmulatedKind, EmulatorOptions};
use futures::StreamExt;

use crate::common::{chat_request, emulator, engine, probe, probe_answered, target, PROBE_TIMEOUT};

fn assets(test: &str) -> Option<WhisperAssets> {
    match flm_testkit::whisper::assets() {
        Ok(Some(a)) => Some(a),
        Ok(None) => {
            eprintln!(
                "\n\n*** {test}: SKIPPED — FLM_WHISPER_SERVER is not set and no whisper-server \
                 is cached: run scripts/setup-whisper-server.sh (scripts/test.sh does) ***\n"
            );
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

async fn start(a: &WhisperAssets) -> WhisperServer {
    let a = a.clone();
    tokio::task::spawn_blocking(move || WhisperServer::start(&a))
        .await
        .unwrap()
        .expect("whisper-server starts")
}

#[tokio::test]
async fn whisper_server_is_detected_by_identity_and_never_taken_for_another_engine() {
    let Some(a) = assets("whisper_server_is_detected_by_identity") else {
        return;
    };
    let server = start(&a).await;
    let url = server.base_url();
    let (count, warning) = probe_answered(&target("whisper", EngineKind::WhisperCpp, &url)).await;
    assert_eq!((count, warning), (1, None));
    for kind in [
        EngineKind::Ollama,
        EngineKind::Vllm,
        EngineKind::LmStudio,
        EngineKind::LlamaCpp,
    ] {
        match probe(&target("other", kind, &url), PROBE_TIMEOUT).await {
            ProbeOutcome::WrongIdentity { found } => {
                assert_eq!(found, "whisper.cpp", "probed as {kind}");
            }
            other => panic!("whisper-server probed as {kind}: {other:?}"),
        }
    }
    // And no other engine passes for whisper.cpp.
    let vllm = emulator(EmulatedKind::Vllm, EmulatorOptions::default()).await;
    match probe(
        &target("w", EngineKind::WhisperCpp, &vllm.base_url()),
        PROBE_TIMEOUT,
    )
    .await
    {
        ProbeOutcome::WrongIdentity { found } => assert_eq!(found, "vLLM"),
        other => panic!("vLLM probed as whisper.cpp: {other:?}"),
    }
}

#[tokio::test]
async fn whisper_engine_lists_its_model_refuses_chat_and_transcribes_a_streamed_upload() {
    let Some(a) = assets("whisper_engine_transcribes") else {
        return;
    };
    let server = start(&a).await;
    let e = engine(
        &target("whisper", EngineKind::WhisperCpp, &server.base_url()),
        Duration::from_secs(60),
    );
    let models = e.list_models().await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id.to_string(), "flm://whisper/whisper-1");
    assert!(!models[0].supports_chat && models[0].audio_inputs);
    assert!(e.capabilities().transcription && !e.capabilities().chat);
    match e.chat(chat_request("whisper-1")).await {
        Err(EngineError::Api {
            status_code: Some(400),
            message,
        }) => assert!(message.contains("speech-to-text"), "{message}"),
        other => panic!("chat on whisper: {other:?}"),
    }
    let wav = std::fs::read(&a.sample).unwrap();
    let b = "engine-test";
    let mut parts: Vec<Result<Bytes, EngineError>> = vec![Ok(Bytes::from(format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"jfk.wav\"\r\n\r\n"
    )))];
    parts.extend(wav.chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))));
    parts.push(Ok(Bytes::from(format!("\r\n--{b}--\r\n"))));
    let resp = e
        .relay_stream(
            RawRequest {
                method: "POST".into(),
                path_and_query: "/inference".into(),
                headers: vec![(
                    "content-type".into(),
                    format!("multipart/form-data; boundary={b}"),
                )],
                body: Bytes::new(),
            },
            Box::pin(futures::stream::iter(parts)),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let body: Vec<u8> = resp.body.map(|c| c.unwrap().to_vec()).concat().await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The duration comes from the samples whisper.cpp received: the whole file.
    assert_eq!(v["duration"], 11.0, "{v}");
    assert_eq!(v["text"], "", "{v}");
}
