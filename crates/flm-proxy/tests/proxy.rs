//! The proxy end to end: a real HTTP server on loopback in front of the real
//! llama-server and the testkit emulators, driven over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use flm_core::EngineKind;
use flm_testkit::llama::TinyModel;
use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::{json, Value};

use common::{harness, harness_with, llama};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_auth_errors_and_request_ids() {
    let h = harness(&[]).await;
    let r = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(r.headers().contains_key(flm_core::FLM_SERVER_HEADER));

    // No key, wrong scheme, wrong key: 401 with the OpenAI error shape.
    for auth in [
        None,
        Some("Basic abc".to_owned()),
        Some(format!("Bearer {}x", h.key)),
        Some("Bearer flm_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
    ] {
        let mut rb = h.http.get(format!("{}/v1/models", h.base));
        if let Some(a) = &auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["request_id"], rid);
        let (ms, rand) = rid.split_once('-').unwrap();
        assert!(
            ms.parse::<u64>().is_ok() && rand.parse::<u64>().is_ok(),
            "{rid}"
        );
    }
    // Unknown routes: JSON 404, with or without a key.
    let r = h
        .http
        .get(format!("{}/v1/nope", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    // Wrong method.
    let r = h
        .http
        .get(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_answered_precisely() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = harness(&[(EngineKind::Vllm, vllm.base_url(), "v")]).await;
    let send = |body: Vec<u8>| {
        h.post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (vec![0xff, 0xfe, b'{', b'}'], 400, "invalid_json"),
        (b"[1,2]".to_vec(), 400, "invalid_json"),
        (
            json!({"messages": user("x")}).to_string().into_bytes(),
            400,
            "invalid_model",
        ),
        (
            json!({"model": 3, "messages": user("x")})
                .to_string()
                .into_bytes(),
            400,
            "invalid_model_field",
        ),
        (
            json!({"model": "flm://nosuch/m", "messages": user("x")})
                .to_string()
                .into_bytes(),
            404,
            "engine_not_found",
        ),
        (
            json!({"model": "no-such-model", "messages": user("x")})
                .to_string()
                .into_bytes(),
            404,
            "model_not_found",
        ),
        (
            json!({"model": "flm://v/test-model", "messages": []})
                .to_string()
                .into_bytes(),
            400,
            "invalid_messages",
        ),
        (
            json!({"model": "flm://v/test-model", "messages": user("x"), "temperature": "hot"})
                .to_string()
                .into_bytes(),
            400,
            "invalid_temperature",
        ),
        (
            json!({"model": "flm://v/test-model", "messages": user("x"), "max_tokens": "many"})
                .to_string()
                .into_bytes(),
            400,
            "invalid_max_tokens",
        ),
        (
            json!({"model": "flm://v/test-model", "messages": user("x"), "stop": 1})
                .to_string()
                .into_bytes(),
            400,
            "invalid_stop",
        ),
        (
            json!({"model": "flm://v/test-model", "messages": user("x"), "bogus": 1})
                .to_string()
                .into_bytes(),
            400,
            "unsupported_parameter",
        ),
        (
            json!({"model": "flm://v/missing-model", "messages": user("x")})
                .to_string()
                .into_bytes(),
            404,
            "chat_error",
        ),
    ];
    for (body, status, code) in cases {
        let r = send(body.clone()).await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    // Oversized body: 413 before anything reaches the engine.
    let before = vllm.control().requests();
    let big = vec![b' '; 11 * 1024 * 1024];
    let r = send(big).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(vllm.control().requests(), before);
    // Embeddings input validation.
    let r = h
        .post("/v1/embeddings")
        .json(&json!({"model": "flm://v/test-model", "input": [[1, 2]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The server is still up.
    assert_eq!(h.models().await, vec!["flm://v/test-model"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_kind_through_one_endpoint() {
    let chat = llama(TinyModel::Chat);
    let emb = llama(TinyModel::Embeddings);
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("llama3.2"),
            EmulatedModel::embedding("all-minilm"),
        ]),
    )
    .await
    .unwrap();
    let lms = Emulator::start(
        EmulatedKind::LmStudio,
        EmulatorOptions::with_models([
            EmulatedModel::chat("qwen2.5-7b-instruct"),
            EmulatedModel::embedding("text-embedding-nomic"),
        ]),
    )
    .await
    .unwrap();
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::chat("meta-llama/Llama-3.1-8B-Instruct")]),
    )
    .await
    .unwrap();
    let h = harness(&[
        (EngineKind::LlamaCpp, chat.base_url(), "llama"),
        (EngineKind::LlamaCpp, emb.base_url(), "bert"),
        (EngineKind::Ollama, ollama.base_url(), "ollama"),
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
    ])
    .await;
    let models = h.models().await;
    for want in [
        "flm://llama/tiny-llama",
        "flm://bert/tiny-bert",
        "flm://ollama/llama3.2:latest",
        "flm://lms/qwen2.5-7b-instruct",
        "flm://vllm/meta-llama/Llama-3.1-8B-Instruct",
    ] {
        assert!(
            models.contains(&want.to_owned()),
            "{want} not in {models:?}"
        );
    }
    for model in [
        "flm://llama/tiny-llama",
        "flm://ollama/llama3.2:latest",
        "flm://lms/qwen2.5-7b-instruct",
        "flm://vllm/meta-llama/Llama-3.1-8B-Instruct",
    ] {
        let (status, v) = h.chat(json!({"model": model, "messages": user("Hello there"), "max_tokens": 8, "temperature": 0})).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(v["object"], "chat.completion", "{model}: {v}");
        assert!(
            v["choices"][0]["message"]["content"].as_str().is_some(),
            "{model}: {v}"
        );
        assert!(
            v["usage"]["total_tokens"].as_u64().unwrap() > 0,
            "{model}: {v}"
        );

        let (status, events) = h.stream(json!({"model": model, "messages": user("Hello there"), "max_tokens": 8, "temperature": 0, "stream": true})).await;
        assert_eq!(status, 200, "{model}");
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{model}: {events:?}"
        );
        let chunks: Vec<Value> = events
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(
            chunks.iter().all(|c| c.get("error").is_none()),
            "{model}: {events:?}"
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"].is_string()),
            "{model}: {events:?}"
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["usage"]["total_tokens"].as_u64().is_some()),
            "{model}: usage on the stream: {events:?}"
        );
    }
    for model in [
        "flm://bert/tiny-bert",
        "flm://ollama/all-minilm:latest",
        "flm://lms/text-embedding-nomic",
    ] {
        let r = h
            .post("/v1/embeddings")
            .json(&json!({"model": model, "input": ["hello world", "bye"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{model}: {v}");
        assert_eq!(data[1]["index"], 1);
        assert!(!data[0]["embedding"].as_array().unwrap().is_empty());
    }
    // A bare model name resolves when one engine serves it.
    let (status, v) = h
        .chat(json!({"model": "llama3.2:latest", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    // Engine pass-through, restricted to that engine.
    let r = h
        .http
        .get(format!("{}/engine/ollama/api/tags", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["models"].is_array());
    let r = h
        .http
        .get(format!("{}/engine/nosuch/api/tags", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The engine never sees the client's FLM key: read the requests recorded on the
    // route under test (a health probe on another route cannot hide a leak).
    vllm.control().reset();
    let (status, v) = h
        .chat(
            json!({"model": "flm://vllm/meta-llama/Llama-3.1-8B-Instruct", "messages": user("hi")}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let seen = vllm.control().requests_on("/v1/chat/completions");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
    let tags = ollama.control().requests_on("/api/tags");
    assert!(!tags.is_empty());
    for r in tags.iter().chain(&seen) {
        let leaked = r
            .headers
            .values()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&h.key)));
        assert!(!leaked, "the FLM key reached the engine on {}", r.path);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_failing_mid_stream_end_with_an_error_event_then_done() {
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let h = harness(&[
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Ollama, ollama.base_url(), "ollama"),
    ])
    .await;
    for behavior in [
        Behavior::FailMidStream { after_chunks: 3 },
        Behavior::DropMidStream { after_chunks: 3 },
    ] {
        lms.control().set_behavior(behavior.clone());
        ollama.control().set_behavior(behavior.clone());
        for model in ["flm://lms/test-model", "flm://ollama/test-model:latest"] {
            let (status, events) = h
                .stream(
                    json!({"model": model, "messages": user("tell me a story"), "stream": true}),
                )
                .await;
            assert_eq!(status, 200);
            assert_eq!(
                events.last().map(String::as_str),
                Some("[DONE]"),
                "{model} {behavior:?}: {events:?}"
            );
            let errors: Vec<&String> = events
                .iter()
                .filter(|e| e.starts_with("{\"error\""))
                .collect();
            assert_eq!(errors.len(), 1, "{model} {behavior:?}: {events:?}");
            assert!(
                events.len() >= 3,
                "chunks before the failure were relayed: {events:?}"
            );
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_engines_stop_being_offered_and_bare_names_fail_over() {
    let a = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::chat("shared-model")]),
    )
    .await
    .unwrap();
    let b = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::chat("shared-model")]),
    )
    .await
    .unwrap();
    let h = harness(&[
        (EngineKind::Vllm, a.base_url(), "a"),
        (EngineKind::Vllm, b.base_url(), "b"),
    ])
    .await;
    assert_eq!(h.models().await.len(), 2);
    a.shutdown().await.unwrap();
    // The first candidate is dead: the request fails over to the second one.
    let (status, v) = h
        .chat(json!({"model": "shared-model", "messages": user("hi")}))
        .await;
    assert_eq!(status, 200, "{v}");
    // And the dead engine is no longer offered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let models = h.models().await;
        if models == vec!["flm://b/shared-model"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead engine still offered: {models:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pinned to the dead engine: a clear 404.
    let (status, v) = h
        .chat(json!({"model": "flm://a/shared-model", "messages": user("hi")}))
        .await;
    assert_eq!(status, 404, "{v}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_keys_stop_working() {
    let h = harness(&[]).await;
    let new = h.keys.create("second").await.unwrap();
    h.manager.reload_keys().await.unwrap();
    let ok = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&new.key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    h.keys.revoke(&new.metadata.id).await.unwrap();
    h.manager.reload_keys().await.unwrap();
    let denied = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&new.key)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_block_others() {
    use tokio::io::AsyncWriteExt;
    let h = harness(&[]).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    // Slow-loris: a few connections that never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // A half-sent body.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n{{\"model\":", h.key).as_bytes()).await.unwrap();
    slow.push(s);
    let started = Instant::now();
    let r = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(slow);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_stream() {
    // The full answer takes ~7 s (about 14 chunks, 500 ms apart): far longer than the
    // window below, so only a real cancellation can close the stream in time.
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::default().chunk_delay(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let h = harness(&[(EngineKind::Vllm, vllm.base_url(), "v")]).await;
    let r = h.post("/v1/chat/completions").json(&json!({"model": "flm://v/test-model", "messages": user("a long story please"), "stream": true})).send().await.unwrap();
    let mut body = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(vllm.control().open_streams(), 1);
    drop(body);
    // The engine's own signal: its stream was dropped before it ended.
    let deadline = Instant::now() + Duration::from_secs(3);
    while vllm.control().cancelled_streams() == 0 {
        assert!(
            Instant::now() < deadline,
            "upstream stream not cancelled after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vllm.control().open_streams(), 0);
    assert_eq!(vllm.control().cancelled_streams(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_the_policy_origins() {
    let h = harness_with(&[], vec!["https://app.example.com".into()]).await;
    let preflight = |origin: &str| {
        h.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", h.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let denied = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // Actual requests from an allowed origin carry the header; others do not.
    let r = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&h.key)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&h.key)
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    h.stop().await;

    // No origins configured: any origin (`*`).
    let h = harness(&[]).await;
    let r = h
        .http
        .get(format!("{}/health", h.base))
        .header("origin", "https://x.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    h.stop().await;
}
