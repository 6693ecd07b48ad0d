//! Function calling through FLM to Ollama's native `/api/chat`: the official `openai`
//! Python SDK does a full round trip (tests/e2e/openai_tools.py), then the Ollama
//! emulator's view of the request is checked, and the bad paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use flm_core::EngineKind;
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

fn tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_function_calling_round_trip() {
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("qwen3").with_tools(),
            EmulatedModel::chat("plain"),
        ]),
    )
    .await
    .unwrap();
    let h = common::harness(&[(EngineKind::Ollama, ollama.base_url(), "ollama")]).await;
    let model = "flm://ollama/qwen3:latest";

    // The official SDK: tool call (non-streamed, streamed), tool result, final answer;
    // then the Responses API bridged to the same model.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/openai_tools.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("FLM_TOOL_MODEL", model)
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
    // The Responses round trip reached Ollama in its own shapes.
    let sent = ollama.control().last_chat_body().unwrap();
    let msgs = sent["messages"].as_array().unwrap();
    let call = &msgs[msgs.len() - 2]["tool_calls"][0];
    assert!(call["function"]["arguments"].is_object(), "{sent}");
    assert_eq!(msgs[msgs.len() - 1]["role"], "tool", "{sent}");
    assert_eq!(msgs[msgs.len() - 1]["tool_name"], "get_weather", "{sent}");
    assert_eq!(msgs[msgs.len() - 1]["tool_call_id"], call["id"], "{sent}");

    // What Ollama receives for an OpenAI round trip.
    let (status, v) = h
        .chat(json!({
            "model": model,
            "tools": tools(),
            "tool_choice": "auto",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"query\":\"Paris\"}"},
                }]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "18 C"},
            ],
        }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    let sent = ollama.control().last_chat_body().unwrap();
    assert_eq!(sent["model"], "qwen3:latest");
    assert_eq!(sent["tools"], tools(), "{sent}");
    assert!(sent.get("tool_choice").is_none(), "{sent}");
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_abc",
            "function": {"index": 0, "name": "get_weather", "arguments": {"query": "Paris"}},
        }]}),
        "{sent}"
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "18 C", "tool_name": "get_weather", "tool_call_id": "call_abc"}),
        "{sent}"
    );

    // Streamed tool call, checked on the wire: one delta with the whole call.
    let (status, events) = h
        .stream(json!({
            "model": model, "stream": true, "tools": tools(),
            "messages": [{"role": "user", "content": "use get_weather"}],
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let parsed: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let deltas: Vec<&Value> = parsed
        .iter()
        .filter_map(|e| e.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert_eq!(deltas.len(), 1, "{events:?}");
    assert_eq!(deltas[0]["index"], 0);
    assert_eq!(deltas[0]["type"], "function");
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    let args: Value =
        serde_json::from_str(deltas[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "use get_weather"}));
    assert!(parsed
        .iter()
        .any(|e| e.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    assert!(
        parsed.iter().any(|e| e.get("usage").is_some()),
        "{events:?}"
    );

    // Older Ollama builds send calls without `id`: FLM makes one up, and a tool result
    // that echoes it still reaches Ollama with the function's name.
    ollama.control().set_tool_call_ids(false);
    let ask = json!({"role": "user", "content": "use get_weather"});
    let (status, v) = h
        .chat(json!({"model": model, "tools": tools(), "messages": [ask]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("call_") && id.len() > 10, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert!(v["choices"][0]["message"]["content"].is_null(), "{v}");
    let (_, events) = h
        .stream(json!({"model": model, "stream": true, "tools": tools(), "messages": [ask]}))
        .await;
    assert!(
        events.iter().any(|e| e.contains("\"id\":\"call_")),
        "{events:?}"
    );
    let (status, v) = h
        .chat(json!({"model": model, "tools": tools(), "messages": [
            ask,
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "18 C"},
        ]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let sent = ollama.control().last_chat_body().unwrap();
    assert_eq!(sent["messages"][2]["tool_name"], "get_weather", "{sent}");
    ollama.control().set_tool_call_ids(true);

    // tool_choice `none`: the tools are not offered, the model answers in text.
    let (status, v) = h
        .chat(json!({
            "model": model, "tools": tools(), "tool_choice": "none",
            "messages": [{"role": "user", "content": "use get_weather"}],
        }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(ollama
        .control()
        .last_chat_body()
        .unwrap()
        .get("tools")
        .is_none());

    // Bad paths. Ollama cannot force a call.
    let before = ollama.control().chat_requests();
    for choice in [
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let (status, v) = h
            .chat(json!({
                "model": model, "tools": tools(), "tool_choice": choice,
                "messages": [{"role": "user", "content": "hi"}],
            }))
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "unsupported_parameter", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot force"),
            "{v}"
        );
    }
    // Arguments that are not JSON.
    for (args, hint) in [("{\"query\": ", "not valid JSON"), ("[1]", "JSON object")] {
        let (status, v) = h
            .chat(json!({
                "model": model, "tools": tools(),
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": args}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                ],
            }))
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_tool_arguments", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("messages[1].tool_calls[0].function.arguments") && msg.contains(hint),
            "{v}"
        );
    }
    assert_eq!(
        ollama.control().chat_requests(),
        before,
        "refused before reaching Ollama"
    );
    // A model without the tools capability: Ollama's own refusal, relayed.
    let (status, v) = h
        .chat(json!({
            "model": "flm://ollama/plain:latest", "tools": tools(),
            "messages": [{"role": "user", "content": "use get_weather"}],
        }))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not support tools"),
        "{v}"
    );
    h.stop().await;
}
