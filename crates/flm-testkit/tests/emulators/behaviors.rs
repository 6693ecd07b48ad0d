//! Every `Behavior`, on every engine.

use std::time::{Duration, Instant};

use flm_testkit::{Behavior, EmulatedKind, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::Value;

use crate::common::{chat_body, client, post, sse_payloads, start, start_default, WAIT};

/// The engine's chat route and streaming request body.
fn stream_request(emu: &Emulator) -> (String, Value) {
    let path = match emu.kind() {
        EmulatedKind::Ollama => "/api/chat",
        _ => "/v1/chat/completions",
    };
    (
        format!("{}{path}", emu.base_url()),
        chat_body("test-model", true),
    )
}

/// A probe route that stays healthy under `StatusError`, and a listing route.
fn probe_and_listing(kind: EmulatedKind) -> (&'static str, &'static str) {
    match kind {
        EmulatedKind::Ollama => ("/", "/api/tags"),
        EmulatedKind::Vllm => ("/health", "/v1/models"),
        EmulatedKind::LmStudio => ("/unknown-route", "/api/v0/models"),
    }
}

/// Reads a streamed body frame by frame until it ends or fails.
#[expect(
    clippy::expect_used,
    reason = "test helper: a timeout is a test failure"
)]
async fn read_stream(resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
    {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(_) => return (body, true),
        }
    }
    (body, false)
}

#[tokio::test]
async fn hang_never_answers_and_shutdown_still_completes() {
    for kind in EmulatedKind::ALL {
        let emu = start(
            kind,
            EmulatorOptions {
                behavior: Behavior::Hang,
                ..EmulatorOptions::default()
            },
        )
        .await;
        let (probe, _) = probe_and_listing(kind);
        let started = Instant::now();
        let err = client()
            .get(format!("{}{probe}", emu.base_url()))
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .expect_err("no answer");
        assert!(err.is_timeout(), "{kind}: {err}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            emu.control().requests(),
            1,
            "{kind}: the request reached the engine"
        );

        // A hanging request in flight must not block shutdown.
        let pending = tokio::spawn(client().get(format!("{}{probe}", emu.base_url())).send());
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::time::timeout(WAIT, emu.shutdown())
            .await
            .expect("shutdown in time")
            .expect("clean shutdown");
        let _ = tokio::time::timeout(WAIT, pending)
            .await
            .expect("pending request ends");
    }
}

#[tokio::test]
async fn delay_answers_late() {
    for kind in EmulatedKind::ALL {
        let emu = start_default(kind).await;
        emu.control()
            .set_behavior(Behavior::Delay(Duration::from_millis(150)));
        let (_, listing) = probe_and_listing(kind);
        let started = Instant::now();
        let resp = client()
            .get(format!("{}{listing}", emu.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(150), "{kind}");
        emu.control().set_behavior(Behavior::Normal);
        let resp = client()
            .get(format!("{}{listing}", emu.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{kind}: back to normal");
    }
}

#[tokio::test]
async fn malformed_json_bodies_and_frames() {
    for kind in EmulatedKind::ALL {
        let emu = start_default(kind).await;
        emu.control().set_behavior(Behavior::MalformedJson);
        let c = client();
        let (_, listing) = probe_and_listing(kind);
        let resp = c
            .get(format!("{}{listing}", emu.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(!text.is_empty());
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "{kind}: {text}"
        );

        // Errors become 200 with broken JSON too.
        let (status, body) = post(
            &c,
            format!("{}/v1/chat/completions", emu.base_url()),
            &chat_body("ghost", false),
        )
        .await;
        assert_eq!(status, 200, "{kind}");
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{kind}");

        let (url, req) = stream_request(&emu);
        let text = c
            .post(url)
            .json(&req)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let payloads: Vec<String> = if kind == EmulatedKind::Ollama {
            text.lines().map(str::to_owned).collect()
        } else {
            sse_payloads(&text)
        };
        assert!(payloads.len() >= 5, "{kind}");
        for p in payloads.iter().filter(|p| *p != "[DONE]") {
            assert!(serde_json::from_str::<Value>(p).is_err(), "{kind}: {p}");
        }
    }
}

#[tokio::test]
async fn status_error_uses_native_shapes_on_api_routes_only() {
    for kind in EmulatedKind::ALL {
        let emu = start_default(kind).await;
        emu.control().set_behavior(Behavior::StatusError(429));
        let c = client();
        let (probe, listing) = probe_and_listing(kind);
        assert_eq!(
            c.get(format!("{}{probe}", emu.base_url()))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{kind}"
        );
        assert_eq!(
            c.get(format!("{}{listing}", emu.base_url()))
                .send()
                .await
                .unwrap()
                .status(),
            429,
            "{kind}"
        );

        let (status, body) = post(
            &c,
            format!("{}/v1/chat/completions", emu.base_url()),
            &chat_body("test-model", true),
        )
        .await;
        assert_eq!(status, 429, "{kind}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string(), "{kind}: {v}");
        match kind {
            EmulatedKind::Vllm => assert_eq!(v["error"]["code"], 429),
            _ => assert!(v["error"]["code"].is_null()),
        }
        if kind == EmulatedKind::Ollama {
            let (status, body) = post(
                &c,
                format!("{}/api/chat", emu.base_url()),
                &chat_body("test-model", true),
            )
            .await;
            assert_eq!(status, 429);
            assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        }
        assert_eq!(
            emu.control().chat_requests(),
            if kind == EmulatedKind::Ollama { 2 } else { 1 }
        );
        assert_eq!(
            emu.control().last_chat_body(),
            Some(chat_body("test-model", true))
        );
    }
}

#[tokio::test]
async fn fail_mid_stream_sends_the_native_error() {
    for kind in EmulatedKind::ALL {
        let emu = start_default(kind).await;
        emu.control()
            .set_behavior(Behavior::FailMidStream { after_chunks: 2 });
        let (url, req) = stream_request(&emu);
        let resp = client().post(url).json(&req).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let (body, failed) = read_stream(resp).await;
        assert!(!failed, "{kind}: the stream ends cleanly");
        let text = String::from_utf8(body).unwrap();
        let frames: Vec<String> = if kind == EmulatedKind::Ollama {
            text.lines().map(str::to_owned).collect()
        } else {
            sse_payloads(&text)
        };
        let expected = if kind == EmulatedKind::Vllm { 4 } else { 3 };
        assert_eq!(frames.len(), expected, "{kind}: {text}");
        let err: Value = serde_json::from_str(&frames[2]).unwrap();
        match kind {
            EmulatedKind::Ollama => assert!(err["error"].is_string()),
            _ => assert!(err["error"]["message"].is_string()),
        }
        if kind == EmulatedKind::Vllm {
            assert_eq!(frames[3], "[DONE]");
        }
    }
}

#[tokio::test]
async fn drop_mid_stream_aborts_the_connection() {
    for kind in EmulatedKind::ALL {
        let emu = start_default(kind).await;
        emu.control()
            .set_behavior(Behavior::DropMidStream { after_chunks: 2 });
        let (url, req) = stream_request(&emu);
        let c = client();
        let resp = c.post(&url).json(&req).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let (body, failed) = read_stream(resp).await;
        assert!(failed, "{kind}: the body must end in an error");
        let text = String::from_utf8(body).unwrap();
        assert!(
            !text.contains("[DONE]") && !text.contains("\"done\":true"),
            "{kind}: {text}"
        );
        let frames = if kind == EmulatedKind::Ollama {
            text.lines().count()
        } else {
            sse_payloads(&text).len()
        };
        assert_eq!(frames, 2, "{kind}: {text}");

        // Non-streaming: half a body, then the drop.
        let resp = c
            .post(&url)
            .json(&chat_body("test-model", false))
            .send()
            .await
            .unwrap();
        let (_, failed) = read_stream(resp).await;
        assert!(failed, "{kind}");
    }
}

#[tokio::test]
async fn chunk_delay_paces_streams() {
    for kind in EmulatedKind::ALL {
        let opts = EmulatorOptions::default().chunk_delay(Duration::from_millis(40));
        let emu = start(kind, opts).await;
        let (url, req) = stream_request(&emu);
        let started = Instant::now();
        let resp = client().post(url).json(&req).send().await.unwrap();
        let mut stream = resp.bytes_stream();
        let mut first_at = None;
        let mut frames = 0;
        while let Some(chunk) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            chunk.unwrap();
            first_at.get_or_insert_with(|| started.elapsed());
            frames += 1;
        }
        let total = started.elapsed();
        assert!(frames >= 7, "{kind}: {frames}");
        assert!(total >= Duration::from_millis(40 * 6), "{kind}: {total:?}");
        let first_at = first_at.unwrap();
        assert!(
            first_at + Duration::from_millis(150) < total,
            "{kind}: chunks are flushed one by one"
        );
    }
}
