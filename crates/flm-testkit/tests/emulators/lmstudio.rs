//! LM Studio emulator: Express header, 200-with-error, the three listings, chat, errors.

use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, EmulatorOptions};
use serde_json::{json, Value};

use crate::common::{chat_body, client, get_json, post, sse_json, start};

const KIND: EmulatedKind = EmulatedKind::LmStudio;

fn opts() -> EmulatorOptions {
    EmulatorOptions::with_models([
        EmulatedModel::chat("qwen2.5-7b-instruct").with_tools(),
        EmulatedModel::chat("mlx-community/qwen2-vl-7b-instruct")
            .with_vision()
            .with_context_length(32_768),
        EmulatedModel::embedding("text-embedding-nomic-embed-text-v1.5").with_context_length(2048),
    ])
}

#[tokio::test]
async fn unknown_routes_answer_200_with_an_error() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let base = emu.base_url();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/foo"),
        ("POST", "/chat/completions"),
        ("DELETE", "/v1/models"),
    ] {
        let resp = c
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method} {path}");
        assert_eq!(resp.headers()["x-powered-by"], "Express");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v,
            json!({"error": format!("Unexpected endpoint or method. ({method} {path})")})
        );
    }
}

#[tokio::test]
async fn three_model_listings() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let base = emu.base_url();

    let resp = c.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.headers()["x-powered-by"], "Express");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        json!({"id": "qwen2.5-7b-instruct", "object": "model", "owned_by": "organization_owner"})
    );

    let (_, v0) = get_json(&c, format!("{base}/api/v0/models")).await;
    let data = v0["data"].as_array().unwrap();
    assert_eq!(data[0]["type"], "llm");
    assert_eq!(data[0]["capabilities"], json!(["tool_use"]));
    assert_eq!(data[1]["type"], "vlm");
    assert_eq!(data[1]["publisher"], "mlx-community");
    assert_eq!(data[1]["max_context_length"], 32_768);
    assert_eq!(data[2]["type"], "embeddings");
    for m in data {
        assert_eq!(m["state"], "loaded");
        assert!(m["loaded_context_length"].is_u64());
        for key in ["arch", "compatibility_type", "quantization", "publisher"] {
            assert!(m[key].is_string(), "{key}");
        }
    }
    let (status, one) = get_json(&c, format!("{base}/api/v0/models/qwen2.5-7b-instruct")).await;
    assert_eq!((status, &one["id"]), (200, &json!("qwen2.5-7b-instruct")));

    let (_, v1) = get_json(&c, format!("{base}/api/v1/models")).await;
    let models = v1["models"].as_array().unwrap();
    assert_eq!(models[1]["key"], "mlx-community/qwen2-vl-7b-instruct");
    assert_eq!(models[1]["type"], "llm");
    assert_eq!(models[1]["capabilities"]["vision"], true);
    assert_eq!(models[0]["capabilities"]["trained_for_tool_use"], true);
    assert_eq!(models[2]["type"], "embedding");
    assert_eq!(
        models[0]["loaded_instances"][0]["config"]["context_length"],
        4096
    );

    // Nothing loaded.
    emu.control().set_behavior(Behavior::Loading);
    let (_, v0) = get_json(&c, format!("{base}/api/v0/models")).await;
    assert_eq!(v0["data"][0]["state"], "not-loaded");
    assert!(v0["data"][0].get("loaded_context_length").is_none());
    let (_, v1) = get_json(&c, format!("{base}/api/v1/models")).await;
    assert_eq!(v1["models"][0]["loaded_instances"], json!([]));
    let (status, body) = post(
        &c,
        format!("{base}/v1/chat/completions"),
        &chat_body("qwen2.5-7b-instruct", false),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"error":"No models loaded. Please load a model in the developer page or use the 'lms load' command."}"#
    );
}

#[tokio::test]
async fn chat_sse_and_errors() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", emu.base_url());

    let resp = c
        .post(&url)
        .json(&chat_body("qwen2.5-7b-instruct", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-powered-by"], "Express");
    let chunks = sse_json(&resp.text().await.unwrap());
    assert!(chunks
        .iter()
        .all(|c| c["system_fingerprint"] == "qwen2.5-7b-instruct"));
    assert_eq!(
        crate::common::sse_content(&chunks),
        "Hello from lmstudio qwen2.5-7b-instruct: you said hi there friend."
    );

    let (status, body) = post(&c, url.clone(), &chat_body("o4-mini", false)).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid model identifier \"o4-mini\"."));

    let img = json!({"model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let (status, body) = post(&c, url.clone(), &img).await;
    assert_eq!(status, 400);
    assert!(body.contains("Model does not support images"));

    let resp = c.post(&url).body("nope").send().await.unwrap();
    assert_eq!(resp.status(), 400);

    let (status, body) = post(
        &c,
        format!("{}/v1/embeddings", emu.base_url()),
        &json!({"model": "text-embedding-nomic-embed-text-v1.5", "input": "hello"}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}
