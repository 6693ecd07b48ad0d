//! vLLM emulator: health, version, model cards, chat (`n`, usage), embeddings, errors.

use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, EmulatorOptions};
use serde_json::{json, Value};

use crate::common::{chat_body, client, get_json, post, sse_json, start, start_default};

const KIND: EmulatedKind = EmulatedKind::Vllm;

#[tokio::test]
async fn health_version_models_and_unknown_routes() {
    let emu = start(
        KIND,
        EmulatorOptions::with_models([
            EmulatedModel::chat("meta-llama/Llama-3.1-8B-Instruct").with_context_length(131_072)
        ]),
    )
    .await;
    let c = client();
    let base = emu.base_url();

    let resp = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["server"], "uvicorn");
    assert_eq!(resp.text().await.unwrap(), "");

    let (_, v) = get_json(&c, format!("{base}/version")).await;
    assert_eq!(v, json!({"version": "0.11.0"}));

    let (_, list) = get_json(&c, format!("{base}/v1/models")).await;
    assert_eq!(list["object"], "list");
    let card = &list["data"][0];
    assert_eq!(card["id"], "meta-llama/Llama-3.1-8B-Instruct");
    assert_eq!(card["object"], "model");
    assert_eq!(card["owned_by"], "vllm");
    assert_eq!(card["root"], "meta-llama/Llama-3.1-8B-Instruct");
    assert!(card["parent"].is_null());
    assert_eq!(card["max_model_len"], 131_072);
    assert!(card["created"].is_i64());
    assert_eq!(card["permission"][0]["object"], "model_permission");

    let (status, v) = get_json(&c, format!("{base}/nope")).await;
    assert_eq!((status, v), (404, json!({"detail": "Not Found"})));
    let (status, v) = get_json(&c, format!("{base}/v1/chat/completions")).await;
    assert_eq!((status, v), (405, json!({"detail": "Method Not Allowed"})));

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("vllm:num_requests_waiting{")));
}

#[tokio::test]
async fn chat_full_with_n_and_errors() {
    let emu = start_default(KIND).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", emu.base_url());

    let mut req = chat_body("test-model", false);
    req["n"] = json!(2);
    let (status, body) = post(&c, url.clone(), &req).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(
        choices[0]["message"]["content"],
        "Hello from vllm test-model: you said hi there friend."
    );
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // `model` may be omitted; `max_tokens` cuts the reply.
    let req = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2});
    let (status, body) = post(&c, url.clone(), &req).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "test-model");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    let (status, body) = post(&c, url.clone(), &chat_body("gpt-4", false)).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": {"message": "The model `gpt-4` does not exist.", "type": "NotFoundError", "param": null, "code": 404}})
    );

    let resp = c.post(&url).body("{oops").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(v["error"]["code"], 400);
}

#[tokio::test]
async fn sse_with_usage_and_n() {
    let emu = start_default(KIND).await;
    let c = client();
    let mut req = chat_body("test-model", true);
    req["n"] = json!(2);
    req["stream_options"] = json!({"include_usage": true});
    let resp = c
        .post(format!("{}/v1/chat/completions", emu.base_url()))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = sse_json(&resp.text().await.unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().any(|c| c["choices"][0]["index"] == 1));
    let finishes = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"] == "stop")
        .count();
    assert_eq!(finishes, 2, "one finish chunk per choice");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() >= 10);
}

#[tokio::test]
async fn embeddings_only_on_embedding_models() {
    let emu = start(
        KIND,
        EmulatorOptions::with_models([
            EmulatedModel::chat("chat"),
            EmulatedModel::embedding("BAAI/bge-small"),
        ]),
    )
    .await;
    let c = client();
    let url = format!("{}/v1/embeddings", emu.base_url());
    let (status, body) = post(
        &c,
        url.clone(),
        &json!({"model": "BAAI/bge-small", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("embd-"));
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 8);

    let (status, body) = post(&c, url, &json!({"model": "chat", "input": "a"})).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["error"]["message"],
        "The model does not support Embeddings API"
    );
    assert_eq!(v["error"]["code"], 400);
}

#[tokio::test]
async fn loading_and_api_key() {
    let emu = start(
        KIND,
        EmulatorOptions {
            api_key: Some("sekret".into()),
            ..EmulatorOptions::default()
        },
    )
    .await;
    let c = client();
    let base = emu.base_url();

    // The key guards `/v1/*` only.
    let resp = c.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), r#"{"error":"Unauthorized"}"#);
    let resp = c
        .get(format!("{base}/v1/models"))
        .bearer_auth("sekret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        c.get(format!("{base}/version"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    emu.control().set_behavior(Behavior::Loading);
    let resp = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "");
    let resp = c
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sekret")
        .json(&chat_body("test-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 503);
}

fn audio_form(fields: &[(&str, &str)], file: Option<&[u8]>) -> (String, Vec<u8>) {
    let b = "emu-audio";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some(data) = file {
        body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

#[tokio::test]
async fn audio_routes_serve_speech_recognition_models_only() {
    let emu = start(
        KIND,
        EmulatorOptions::with_models([
            EmulatedModel::asr("openai/whisper-large-v3"),
            EmulatedModel::chat("chat-model"),
        ]),
    )
    .await;
    let c = client();
    let base = emu.base_url();
    let send = |path: &'static str, (ct, body): (String, Vec<u8>)| {
        let c = c.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let wav = b"RIFF0000WAVEdata".as_slice();
    let (s, body) = send(
        "/v1/audio/transcriptions",
        audio_form(&[("model", "openai/whisper-large-v3")], Some(wav)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"text": "Hello from vllm openai/whisper-large-v3: transcribed 16 bytes of a.wav"})
    );
    let (s, body) = send(
        "/v1/audio/translations",
        audio_form(&[("response_format", "text")], Some(wav)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("translated 16 bytes"), "{body}");
    // A chat model refuses, with vLLM's nested error.
    let (s, body) = send(
        "/v1/audio/transcriptions",
        audio_form(&[("model", "chat-model")], Some(wav)),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not support Transcriptions API"));
    let (s, body) = send(
        "/v1/audio/transcriptions",
        audio_form(&[("model", "openai/whisper-large-v3")], None),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("'file'"), "{body}");
    let (s, _) = send(
        "/v1/audio/transcriptions",
        audio_form(&[("model", "nope")], Some(wav)),
    )
    .await;
    assert_eq!(s, 404);
}
