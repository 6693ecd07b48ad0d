//! The audio and image routes end to end: the official `openai` Python SDK
//! (tests/e2e/media_client.py) and raw HTTP through a running proxy to the REAL
//! whisper.cpp server, an emulated vLLM with a speech-recognition model and an
//! OpenAI-shaped image/speech server; plus every refusal (no file, no model, wrong
//! content type, oversize body, engine without the capability, engine down, key scope).
//!
//! whisper-server comes from scripts/setup-whisper-server.sh (FLM_WHISPER_SERVER,
//! FLM_WHISPER_MODEL, FLM_WHISPER_SAMPLE); without FLM_WHISPER_SERVER and without a
//! cached build the whisper tests are skipped with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use flm_core::services::KeyLimits;
use flm_core::EngineKind;
use flm_testkit::media::MediaServer;
use flm_testkit::whisper::{WhisperAssets, WhisperServer};
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::{json, Value};

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

/// The whisper assets, or `None` (after a loud message) when they are not set up.
fn whisper_assets(test: &str) -> Option<WhisperAssets> {
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

async fn start_whisper(assets: &WhisperAssets) -> WhisperServer {
    let a = assets.clone();
    tokio::task::spawn_blocking(move || WhisperServer::start(&a))
        .await
        .unwrap()
        .expect("whisper-server starts")
}

/// A multipart body (`fields` first, then the file) and its content type.
fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, data)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send(
    h: &common::Harness,
    key: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}{path}", h.base))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A POST over a raw socket: the body is written by a separate task (write errors
/// ignored) while the answer is read; `chunked` sends it without Content-Length.
async fn raw_post(
    h: &common::Harness,
    path: &str,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n",
        h.key
    );
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        if chunked {
            for c in body.chunks(64 * 1024) {
                wr.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                    .await?;
                wr.write_all(c).await?;
                wr.write_all(b"\r\n").await?;
            }
            wr.write_all(b"0\r\n\r\n").await?;
        } else {
            wr.write_all(&body).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let len = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                });
                if len.is_some_and(|n| rest.len() >= n) {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("an answer in time");
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(text.clone())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_drives_audio_and_image_routes() {
    let Some(assets) = whisper_assets("openai_sdk_drives_audio_and_image_routes") else {
        return;
    };
    let whisper = start_whisper(&assets).await;
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::asr("whisper-large-v3")]),
    )
    .await
    .unwrap();
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let media = MediaServer::start().await.unwrap();
    let h = common::harness_with_settings(
        &[
            (EngineKind::WhisperCpp, whisper.base_url(), "whisper"),
            (EngineKind::Vllm, vllm.base_url(), "vllm"),
            (EngineKind::LmStudio, lms.base_url(), "lms"),
            (EngineKind::OpenAi, media.base_url(), "media"),
        ],
        // whisper.cpp on one thread of a loaded CI machine takes seconds per file.
        &[("proxy.request_timeout_secs", "60")],
    )
    .await;
    // The whisper engine is detected and lists its loaded model.
    let models = h.models().await;
    assert!(
        models.contains(&"flm://whisper/whisper-1".to_owned()),
        "{models:?}"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/media_client.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("FLM_AUDIO_FILE", &assets.sample)
            // The bare OpenAI name resolves: an OpenAI client works unchanged.
            .env("FLM_WHISPER_MODEL", "whisper-1")
            .env("FLM_ASR_MODEL", "flm://vllm/whisper-large-v3")
            .env("FLM_SPEECH_MODEL", "flm://media/tiny-tts")
            .env("FLM_IMAGE_MODEL", "flm://media/tiny-image")
            .env("FLM_TEXT_ONLY_MODEL", "flm://lms/test-model")
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
    // The engines got their own model names, never the flm:// ids.
    let speech = media.bodies_on("/v1/audio/speech");
    assert!(
        speech.iter().all(|b| b["model"] == "tiny-tts"),
        "{speech:?}"
    );
    let images = media.bodies_on("/v1/images/generations");
    assert_eq!(images[0]["model"], "tiny-image");
    assert_eq!(images[0]["n"], 2);
    // Audited like chat.
    h.manager.guard().flush().await;
    let audit = h
        .store
        .audit()
        .list(&flm_core::security::AuditFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    for path in [
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/speech",
        "/v1/images/generations",
    ] {
        assert!(
            audit.iter().any(|e| e.endpoint == path),
            "no audit record for {path}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_streamed_and_refused_precisely() {
    let Some(assets) = whisper_assets("uploads_are_streamed_and_refused_precisely") else {
        return;
    };
    let whisper = start_whisper(&assets).await;
    let mut doomed = start_whisper(&assets).await;
    let lms = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::asr("whisper-large-v3")]),
    )
    .await
    .unwrap();
    let h = common::harness_with_settings(
        &[
            (EngineKind::WhisperCpp, whisper.base_url(), "whisper"),
            (EngineKind::WhisperCpp, doomed.base_url(), "doomed"),
            (EngineKind::LmStudio, lms.base_url(), "lms"),
            (EngineKind::Vllm, vllm.base_url(), "vllm"),
        ],
        // No re-check during the test: the killed engine stays routed until a
        // request finds it dead.
        &[
            ("proxy.engine_check_interval_secs", "600"),
            ("proxy.request_timeout_secs", "60"),
        ],
    )
    .await;
    let wav = std::fs::read(&assets.sample).unwrap();
    let key = h.key.clone();
    let t = "/v1/audio/transcriptions";

    // The file before the model: held (within the limit) until the model arrives.
    let boundary = "late-model";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"jfk.wav\"\r\nContent-Type: audio/wav\r\n\r\n").into_bytes();
    body.extend_from_slice(&wav);
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nflm://whisper/whisper-1\r\n--{boundary}--\r\n").as_bytes());
    let (s, v) = send(
        &h,
        &key,
        t,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["duration"], 11.0, "{v}");

    // whisper.cpp's plain-text answer is served as text, never as HTML.
    let (ct, body) = form(
        &[("model", "whisper-1"), ("response_format", "text")],
        Some(("jfk.wav", &wav)),
    );
    let r = h
        .http
        .post(format!("{}{t}", h.base))
        .bearer_auth(&key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");

    // A chunked upload (no Content-Length), in small pieces: streamed through.
    let (ct, body) = form(
        &[("model", "flm://vllm/whisper-large-v3")],
        Some(("jfk.wav", &wav)),
    );
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(7000).map(|c| Ok(c.to_vec())).collect();
    let (s, v) = send(
        &h,
        &key,
        t,
        &ct,
        reqwest::Body::wrap_stream(futures::stream::iter(pieces)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .ends_with(&format!("transcribed {} bytes of jfk.wav", wav.len())),
        "{v}"
    );

    // whisper.cpp serves speech-to-text only: chat and completions on it are refused.
    let (s, v) = h
        .chat(json!({"model": "flm://whisper/whisper-1", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("chat_error")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("speech-to-text"),
        "{v}"
    );
    let (s, v) = send(
        &h,
        &key,
        "/v1/completions",
        "application/json",
        json!({"model": "flm://whisper/whisper-1", "prompt": "hi"}).to_string(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("completions_not_supported")),
        "{v}"
    );

    // No file, no model, wrong content type, malformed body, bad fields.
    let (ct, body) = form(&[("model", "whisper-1")], None);
    let (s, v) = send(&h, &key, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("missing_file")),
        "{v}"
    );
    let (ct, body) = form(&[("language", "en")], Some(("jfk.wav", &wav)));
    let (s, v) = send(&h, &key, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("missing_model")),
        "{v}"
    );
    let (s, v) = send(&h, &key, t, "application/json", r#"{"model":"whisper-1"}"#).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_content_type")),
        "{v}"
    );
    let (s, v) = send(
        &h,
        &key,
        t,
        "multipart/form-data; boundary=nope",
        "--nope\r\nno headers here\r\n\r\nx",
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_multipart")),
        "{v}"
    );
    // A body that breaks off after the file started streaming to the engine: the
    // engine request is aborted and the client hears about its own body.
    let (ct, body) = form(
        &[("model", "flm://vllm/whisper-large-v3")],
        Some(("jfk.wav", &wav)),
    );
    let cut = body[..body.len() - 40].to_vec();
    let (s, v) = send(&h, &key, t, &ct, cut).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_multipart")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closing boundary"),
        "{v}"
    );
    let (ct, body) = form(
        &[("model", "whisper-1"), ("temperature", "warm")],
        Some(("jfk.wav", &wav)),
    );
    let (s, v) = send(&h, &key, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_temperature")),
        "{v}"
    );

    // Over the limit: refused from Content-Length before the body is read, and while
    // streaming a chunked body that has none. (Raw sockets: the proxy answers and
    // closes while the client is still sending, which HTTP clients report as a write
    // error instead of the answer.)
    let big = vec![0u8; 26 * 1024 * 1024];
    let (ct, body) = form(&[("model", "whisper-1")], Some(("big.wav", &big)));
    let (s, v) = raw_post(&h, t, &ct, &body, false).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let (s, v) = raw_post(&h, t, &ct, &body, true).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );

    // An engine without the capability.
    let (ct, body) = form(
        &[("model", "flm://lms/test-model")],
        Some(("jfk.wav", &wav)),
    );
    let (s, v) = send(&h, &key, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("unsupported_modality")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/audio/transcriptions"),
        "{v}"
    );

    // A scoped key without the `audio` route.
    let chat_only = h
        .keys
        .create_limited(
            "chat-only",
            &KeyLimits {
                routes: Some(vec!["chat".into()]),
                ..KeyLimits::default()
            },
        )
        .await
        .unwrap()
        .key;
    let (ct, body) = form(&[("model", "whisper-1")], Some(("jfk.wav", &wav)));
    let (s, v) = send(&h, &chat_only, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("route_not_allowed")),
        "{v}"
    );
    let (s, v) = send(
        &h,
        &chat_only,
        "/v1/images/generations",
        "application/json",
        r#"{"model":"x","prompt":"y"}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("route_not_allowed")),
        "{v}"
    );

    // The engine goes away: 502, and the answer never shows where it lived.
    let doomed_url = doomed.base_url();
    doomed.kill();
    let (ct, body) = form(
        &[("model", "flm://doomed/whisper-1")],
        Some(("jfk.wav", &wav)),
    );
    let (s, v) = send(&h, &key, t, &ct, body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (502, Some("engine_unreachable")),
        "{v}"
    );
    let shown = v.to_string();
    let port = doomed_url.rsplit(':').next().unwrap();
    assert!(
        !shown.contains("127.0.0.1") && !shown.contains(port),
        "{shown}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_media_routes_refuse_bad_requests() {
    let media = MediaServer::start().await.unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness(&[
        (EngineKind::OpenAi, media.base_url(), "media"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
    ])
    .await;
    let key = h.key.clone();
    for (path, body, code) in [
        (
            "/v1/audio/speech",
            json!({"input": "hi", "voice": "a"}),
            "missing_model",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "flm://media/tiny-tts", "voice": "a"}),
            "invalid_input",
        ),
        (
            "/v1/images/generations",
            json!({"model": "flm://media/tiny-image"}),
            "invalid_prompt",
        ),
        (
            "/v1/images/generations",
            json!({"model": "flm://vllm/test-model", "prompt": "x"}),
            "unsupported_modality",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "flm://vllm/test-model", "input": "x", "voice": "a"}),
            "unsupported_modality",
        ),
    ] {
        let (s, v) = send(&h, &key, path, "application/json", body.to_string()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{path}: {v}"
        );
    }
    // The engine's own refusal is relayed with its status.
    let (s, v) = send(
        &h,
        &key,
        "/v1/audio/speech",
        "application/json",
        json!({"model": "flm://media/tiny-tts", "input": "x", "voice": "a", "response_format": "mp3"}).to_string(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("speech_error")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("mp3"),
        "{v}"
    );
    // Over the JSON body limit.
    let huge = json!({"model": "flm://media/tiny-image", "prompt": "x".repeat(11 * 1024 * 1024)});
    let (s, v) = raw_post(
        &h,
        "/v1/images/generations",
        "application/json",
        huge.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    // The engine goes away: 502 without its address.
    let url = media.base_url();
    drop(media);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, v) = send(
        &h,
        &key,
        "/v1/images/generations",
        "application/json",
        json!({"model": "flm://media/tiny-image", "prompt": "x"}).to_string(),
    )
    .await;
    assert!(
        s == 502 && v["error"]["code"] == "engine_unreachable"
            // The monitor may have taken the engine out of routing first.
            || s == 404,
        "{s} {v}"
    );
    assert!(
        !v.to_string().contains(url.trim_start_matches("http://")),
        "{v}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_requests_are_metered_per_engine_and_model() {
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::asr("whisper-large-v3")]),
    )
    .await
    .unwrap();
    let media = MediaServer::start().await.unwrap();
    let h = common::harness_with_telemetry(&[
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
        (EngineKind::OpenAi, media.base_url(), "media"),
    ])
    .await;
    let key = h.key.clone();
    let from = chrono::Utc::now().timestamp() - 60;
    let (ct, body) = form(&[("model", "whisper-large-v3")], Some(("a.wav", b"RIFF")));
    assert_eq!(
        send(&h, &key, "/v1/audio/transcriptions", &ct, body)
            .await
            .0,
        200
    );
    let image = json!({"model": "flm://media/tiny-image", "prompt": "x"}).to_string();
    assert_eq!(
        send(
            &h,
            &key,
            "/v1/images/generations",
            "application/json",
            image
        )
        .await
        .0,
        200
    );
    let speech = json!({"model": "flm://media/tiny-tts", "input": "a b", "voice": "v"}).to_string();
    let (s, _) = send(&h, &key, "/v1/audio/speech", "application/json", speech).await;
    assert_eq!(s, 200);
    let refused = json!({"model": "flm://vllm/whisper-large-v3", "prompt": "x"}).to_string();
    assert_eq!(
        send(
            &h,
            &key,
            "/v1/images/generations",
            "application/json",
            refused
        )
        .await
        .0,
        400
    );
    let store = h.store.clone();
    // Stopping writes what the meter still holds.
    h.stop().await;
    let to = chrono::Utc::now().timestamp() + 60;
    let by_model = store
        .usage()
        .groups(from, to, flm_core::usage::UsageGroupBy::Model)
        .await
        .unwrap();
    let count = |m: &str| {
        by_model
            .iter()
            .find(|(g, _)| g == m)
            .map(|(_, c)| (c.requests, c.errors))
    };
    assert_eq!(
        count("flm://vllm/whisper-large-v3"),
        Some((1, 0)),
        "{by_model:?}"
    );
    assert_eq!(
        count("flm://media/tiny-image"),
        Some((1, 0)),
        "{by_model:?}"
    );
    assert_eq!(count("flm://media/tiny-tts"), Some((1, 0)), "{by_model:?}");
    let total: u64 = by_model.iter().map(|(_, c)| c.requests).sum();
    let errors: u64 = by_model.iter().map(|(_, c)| c.errors).sum();
    assert_eq!((total, errors), (4, 1), "{by_model:?}");
}
