//! Helpers shared by the emulator tests.

use std::time::Duration;

use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::Value;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

pub async fn start(kind: EmulatedKind, opts: EmulatorOptions) -> Emulator {
    Emulator::start(kind, opts).await.expect("emulator starts")
}

pub async fn start_default(kind: EmulatedKind) -> Emulator {
    start(kind, EmulatorOptions::default()).await
}

/// A client that never goes through an environment proxy and never waits forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("client builds")
}

/// Splits an SSE body into its `data:` payloads, asserting the exact `data: …\n\n`
/// framing of every event.
pub fn sse_payloads(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            let payload = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without `data: ` prefix: {event:?}"));
            assert!(!payload.contains('\n'), "one line per event: {event:?}");
            payload.to_owned()
        })
        .collect()
}

/// Parses the JSON payloads of an SSE body, checking that it ends with `[DONE]`.
pub fn sse_json(body: &str) -> Vec<Value> {
    let mut payloads = sse_payloads(body);
    assert_eq!(payloads.pop().as_deref(), Some("[DONE]"), "{body}");
    payloads
        .iter()
        .map(|p| serde_json::from_str(p).expect("SSE payload is JSON"))
        .collect()
}

/// Concatenated `delta.content` of choice 0.
pub fn sse_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

/// POSTs JSON and returns status and body text.
pub async fn post(client: &reqwest::Client, url: String, body: &Value) -> (u16, String) {
    let resp = client.post(url).json(body).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// GETs and returns status and parsed JSON body.
pub async fn get_json(client: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi there friend"}],
    })
}
