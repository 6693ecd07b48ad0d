//! Ollama emulator: identity, listings, NDJSON chat, OpenAI SSE, embeddings, Host guard.

use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, EmulatorOptions};
use serde_json::{json, Value};

use crate::common::{chat_body, client, get_json, post, sse_json, start, start_default};

const KIND: EmulatedKind = EmulatedKind::Ollama;

fn opts() -> EmulatorOptions {
    EmulatorOptions::with_models([
        EmulatedModel::chat("llama3.2")
            .with_context_length(131_072)
            .with_tools()
            .with_vision(),
        EmulatedModel::embedding("all-minilm"),
        EmulatedModel::chat("qwen3:4b").with_thinking(),
    ])
}

#[tokio::test]
async fn identity_probes() {
    let emu = start_default(KIND).await;
    let c = client();
    let base = emu.base_url();

    let resp = c.get(&base).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("server").is_none(),
        "Ollama sets no Server header"
    );
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(resp.text().await.unwrap(), "Ollama is running");

    let head = c.head(&base).send().await.unwrap();
    assert_eq!(head.status(), 200);

    let (status, v) = get_json(&c, format!("{base}/api/version")).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"version": "0.12.6"}));

    for (method, path) in [("GET", "/nope"), ("GET", "/api/chat"), ("GET", "/version")] {
        let resp = c
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
        assert_eq!(resp.text().await.unwrap(), "404 page not found");
    }
}

#[tokio::test]
async fn listings_show_and_ps() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let base = emu.base_url();

    let (_, tags) = get_json(&c, format!("{base}/api/tags")).await;
    let models = tags["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    let m = &models[0];
    assert_eq!(m["name"], "llama3.2:latest");
    assert_eq!(m["model"], "llama3.2:latest");
    assert!(m["modified_at"].is_string() && m["size"].is_u64() && m["digest"].is_string());
    let d = &m["details"];
    for key in [
        "parent_model",
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    ] {
        assert!(d.get(key).is_some(), "details.{key}");
    }
    assert_eq!(d["context_length"], 131_072);
    assert_eq!(models[1]["details"]["embedding_length"], 8);
    assert!(models[2]["details"].get("context_length").is_none());
    assert_eq!(
        c.head(format!("{base}/api/tags"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // `show` is a POST; the tag defaults to `latest`.
    let (status, body) = post(
        &c,
        format!("{base}/api/show"),
        &json!({"model": "llama3.2"}),
    )
    .await;
    assert_eq!(status, 200);
    let show: Value = serde_json::from_str(&body).unwrap();
    let arch = show["model_info"]["general.architecture"].as_str().unwrap();
    assert_eq!(
        show["model_info"][format!("{arch}.context_length")],
        131_072
    );
    assert_eq!(
        show["capabilities"],
        json!(["completion", "tools", "vision"])
    );
    let (_, body) = post(
        &c,
        format!("{base}/api/show"),
        &json!({"model": "all-minilm"}),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["capabilities"],
        json!(["embedding"])
    );
    let (_, body) = post(&c, format!("{base}/api/show"), &json!({"name": "qwen3:4b"})).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["capabilities"],
        json!(["completion", "thinking"])
    );

    let (status, body) = post(&c, format!("{base}/api/show"), &json!({"model": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(body, r#"{"error":"model 'x' not found"}"#);

    let (_, ps) = get_json(&c, format!("{base}/api/ps")).await;
    assert_eq!(ps["models"], json!([]));
    post(
        &c,
        format!("{base}/api/chat"),
        &chat_body("llama3.2", false),
    )
    .await;
    let (_, ps) = get_json(&c, format!("{base}/api/ps")).await;
    assert_eq!(ps["models"][0]["name"], "llama3.2:latest");
    assert_eq!(ps["models"][0]["context_length"], 4096);

    let (_, v1) = get_json(&c, format!("{base}/v1/models")).await;
    assert_eq!(v1["object"], "list");
    assert_eq!(v1["data"][0]["id"], "llama3.2:latest");
    assert_eq!(v1["data"][0]["owned_by"], "library");
    assert!(v1["data"][0]["created"].is_i64());
    let (status, one) = get_json(&c, format!("{base}/v1/models/llama3.2:latest")).await;
    assert_eq!((status, &one["id"]), (200, &json!("llama3.2:latest")));
    let (status, err) = get_json(&c, format!("{base}/v1/models/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn native_chat_streams_ndjson_by_default() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let body =
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi there friend"}]});
    let resp = c
        .post(format!("{}/api/chat", emu.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with('\n') && !text.contains("data:"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 6, "{text}");
    let (last, chunks) = lines.split_last().unwrap();
    let content: String = chunks
        .iter()
        .inspect(|l| assert_eq!(l["done"], false))
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        content,
        "Hello from ollama llama3.2:latest: you said hi there friend."
    );
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["model"], "llama3.2");
    assert_eq!(last["eval_count"], chunks.len());
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 0);
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(last[key].as_u64().unwrap() > 0, "{key}");
    }
    assert_eq!(emu.control().chat_requests(), 1);
    assert_eq!(emu.control().last_chat_body(), Some(body));
}

#[tokio::test]
async fn native_chat_non_stream_tools_thinking_and_errors() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let url = format!("{}/api/chat", emu.base_url());

    let (status, body) = post(&c, url.clone(), &chat_body("llama3.2", false)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["done"], true);
    assert!(v["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from ollama"));

    let req = json!({"model": "llama3.2", "stream": false,
        "messages": [{"role": "user", "content": "call get_weather for Paris"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});
    let (_, body) = post(&c, url.clone(), &req).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let call = &v["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    assert!(
        call["arguments"].is_object(),
        "Ollama tool arguments are an object"
    );
    assert!(
        v["message"]["tool_calls"][0]["id"].is_string(),
        "newer builds send an id"
    );
    emu.control().set_tool_call_ids(false);
    let (_, older) = post(&c, url.clone(), &req).await;
    let older: Value = serde_json::from_str(&older).unwrap();
    assert!(
        older["message"]["tool_calls"][0].get("id").is_none(),
        "{older}"
    );
    emu.control().set_tool_call_ids(true);
    // The result goes back keyed by name, the arguments as an object: a text answer.
    let req = json!({"model": "llama3.2", "stream": false, "messages": [
        {"role": "user", "content": "call get_weather for Paris"},
        {"role": "assistant", "content": "", "tool_calls": v["message"]["tool_calls"].clone()},
        {"role": "tool", "tool_name": "get_weather", "content": "18 C"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});
    let (status, body) = post(&c, url.clone(), &req).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["message"].get("tool_calls").is_none(), "{body}");
    assert!(v["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from ollama"));

    let req = json!({"model": "qwen3:4b", "stream": false, "think": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let (_, body) = post(&c, url.clone(), &req).await;
    assert!(serde_json::from_str::<Value>(&body).unwrap()["message"]["thinking"].is_string());

    let cases = [
        (
            json!({"model": "nope", "messages": []}),
            404,
            r#"{"error":"model 'nope' not found"}"#,
        ),
        (
            json!({"messages": []}),
            400,
            r#"{"error":"model is required"}"#,
        ),
        (
            json!({"model": "llama3.2", "think": true, "messages": [{"role": "user", "content": "x"}]}),
            400,
            r#"{"error":"\"llama3.2\" does not support thinking"}"#,
        ),
        // OpenAI's arguments (JSON text) are not Ollama's (an object).
        (
            json!({"model": "llama3.2", "messages": [
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_name": "f", "content": "x"}]}),
            400,
            r#"{"error":"json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments"}"#,
        ),
    ];
    for (req, want_status, want_body) in cases {
        let (status, body) = post(&c, url.clone(), &req).await;
        assert_eq!((status, body.as_str()), (want_status, want_body), "{req}");
    }

    // No messages: the model is loaded, nothing generated.
    let (_, body) = post(&c, url.clone(), &json!({"model": "llama3.2"})).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["done_reason"],
        "load"
    );

    let resp = c.post(url).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"].is_string());
}

#[tokio::test]
async fn openai_sse_framing() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", emu.base_url());
    let mut req = chat_body("llama3.2", true);
    req["stream_options"] = json!({"include_usage": true});
    let resp = c.post(&url).json(&req).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = sse_json(&resp.text().await.unwrap());
    let first = &chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["system_fingerprint"], "fp_ollama");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 2]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(
        crate::common::sse_content(&chunks),
        "Hello from ollama llama3.2:latest: you said hi there friend."
    );

    // Without include_usage there is no usage chunk.
    let chunks = sse_json(
        &c.post(&url)
            .json(&chat_body("llama3.2", true))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));

    // Non-streaming (the default on /v1).
    let mut req = chat_body("llama3.2", false);
    req.as_object_mut().unwrap().remove("stream");
    let (status, body) = post(&c, url.clone(), &req).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 5);

    let (status, body) = post(&c, url.clone(), &chat_body("ghost", false)).await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["code"].is_null());

    let img = json!({"model": "llama3.2", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let (status, body) = post(&c, url, &img).await;
    assert_eq!(status, 400);
    assert!(body.contains("image URLs are not currently supported"));
}

#[tokio::test]
async fn embeddings_native_legacy_and_openai() {
    let emu = start(KIND, opts()).await;
    let c = client();
    let base = emu.base_url();

    let (status, body) = post(
        &c,
        format!("{base}/api/embed"),
        &json!({"model": "all-minilm", "input": ["a b", "c"]}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].as_array().unwrap().len(), 8);
    assert_ne!(e[0], e[1]);

    let (_, body) = post(
        &c,
        format!("{base}/api/embed"),
        &json!({"model": "all-minilm", "input": "a b"}),
    )
    .await;
    let single: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(single["embeddings"][0], e[0], "deterministic");

    let (_, body) = post(
        &c,
        format!("{base}/api/embeddings"),
        &json!({"model": "all-minilm", "prompt": "a b"}),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["embedding"],
        e[0]
    );

    let (status, body) = post(
        &c,
        format!("{base}/v1/embeddings"),
        &json!({"model": "all-minilm", "input": "a b"}),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"], e[0]);
    assert_eq!(v["data"][0]["index"], 0);

    let (status, body) = post(
        &c,
        format!("{base}/api/embed"),
        &json!({"model": "llama3.2", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("does not support embeddings"), "{body}");
}

#[tokio::test]
async fn host_guard_refuses_foreign_hosts() {
    let emu = start_default(KIND).await;
    let c = client();
    let base = emu.base_url();
    for host in ["evil.example.com", "evil.example.com:11434", "8.8.8.8"] {
        let resp = c.get(&base).header("host", host).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{host}");
        assert_eq!(resp.text().await.unwrap(), "", "empty body");
    }
    for host in [
        "localhost:11434",
        "127.0.0.1",
        "box.local",
        "ollama.internal",
        "10.0.0.5:11434",
    ] {
        let resp = c.get(&base).header("host", host).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{host}");
    }
    assert_eq!(emu.control().requests(), 8);
    assert_eq!(
        emu.control().last_headers().unwrap()["host"],
        "10.0.0.5:11434"
    );
}

#[tokio::test]
async fn loading_keeps_probes_but_refuses_chat() {
    let emu = start_default(KIND).await;
    emu.control().set_behavior(Behavior::Loading);
    let c = client();
    let base = emu.base_url();
    assert_eq!(c.get(&base).send().await.unwrap().status(), 200);
    let (status, body) = post(
        &c,
        format!("{base}/api/chat"),
        &chat_body("test-model", false),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#
    );
    let (status, body) = post(
        &c,
        format!("{base}/v1/chat/completions"),
        &chat_body("test-model", false),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "api_error"
    );
}
