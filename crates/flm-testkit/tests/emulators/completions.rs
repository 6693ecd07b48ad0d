//! Legacy `POST /v1/completions` on the three emulated engines: `text_completion`
//! bodies and streams, and each engine's own refusals (`suffix`, prompt shapes,
//! embedding models).

use flm_testkit::{EmulatedKind, EmulatedModel, EmulatorOptions};
use serde_json::{json, Value};

use crate::common::{client, post, sse_json, start};

fn models() -> EmulatorOptions {
    EmulatorOptions::with_models([
        EmulatedModel::chat("test-model"),
        EmulatedModel::chat("coder").with_insert(),
        EmulatedModel::embedding("embedder"),
    ])
}

#[tokio::test]
async fn text_completions_full_and_streamed_on_every_engine() {
    for kind in [
        EmulatedKind::Ollama,
        EmulatedKind::Vllm,
        EmulatedKind::LmStudio,
    ] {
        let emu = start(kind, models()).await;
        let c = client();
        let url = format!("{}/v1/completions", emu.base_url());
        let model = if kind == EmulatedKind::Ollama {
            "test-model:latest"
        } else {
            "test-model"
        };
        let (status, body) = post(
            &c,
            url.clone(),
            &json!({"model": model, "prompt": "Say hello", "max_tokens": 3}),
        )
        .await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "text_completion", "{kind:?}");
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
        assert!(!v["choices"][0]["text"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");

        let (status, body) = post(
            &c,
            url.clone(),
            &json!({"model": model, "prompt": "Say hello", "max_tokens": 3, "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        let chunks = sse_json(&body);
        let texts: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/text").and_then(Value::as_str))
            .collect();
        assert_eq!(texts.len(), 3, "{kind:?}: {body}");
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
        assert_eq!(emu.control().route_requests("/v1/completions"), 2);
    }
}

#[tokio::test]
async fn each_engine_refuses_what_it_does_not_support() {
    let c = client();
    let ollama = start(EmulatedKind::Ollama, models()).await;
    let url = format!("{}/v1/completions", ollama.base_url());
    for (body, status, msg) in [
        (
            json!({"model": "test-model", "prompt": "a", "suffix": "b"}),
            400,
            "\"test-model\" does not support insert",
        ),
        (
            json!({"model": "embedder", "prompt": "a"}),
            400,
            "\"embedder\" does not support generate",
        ),
        (
            json!({"model": "test-model", "prompt": ["a", "b"]}),
            400,
            "cannot unmarshal array into Go struct field CompletionRequest.prompt of type string",
        ),
        (
            json!({"model": "nope", "prompt": "a"}),
            404,
            "model 'nope' not found",
        ),
    ] {
        let (got, text) = post(&c, url.clone(), &body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(&msg.replace('"', "\\\"")), "{text}");
    }
    let (got, text) = post(
        &c,
        url,
        &json!({"model": "coder", "prompt": "def f(", "suffix": "return x"}),
    )
    .await;
    assert_eq!(got, 200, "{text}");

    let vllm = start(EmulatedKind::Vllm, models()).await;
    let url = format!("{}/v1/completions", vllm.base_url());
    let (got, text) = post(
        &c,
        url.clone(),
        &json!({"model": "test-model", "prompt": "a", "suffix": "b"}),
    )
    .await;
    assert_eq!(got, 400);
    assert!(text.contains("suffix is not currently supported"), "{text}");
    let (got, text) = post(
        &c,
        url,
        &json!({"model": "test-model", "prompt": [[1, 2], [3]], "max_tokens": 2}),
    )
    .await;
    assert_eq!(got, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2, "{v}");

    let lms = start(EmulatedKind::LmStudio, models()).await;
    let (got, text) = post(
        &c,
        format!("{}/v1/completions", lms.base_url()),
        &json!({"model": "test-model"}),
    )
    .await;
    assert_eq!(got, 400);
    assert!(text.contains("'prompt' field is required"), "{text}");
}
