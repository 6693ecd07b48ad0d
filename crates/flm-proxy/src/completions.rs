//! `POST /v1/completions` helpers: the per-event SSE rewriting used on relayed text
//! completion streams, and the translation of a fill-in-the-middle request (`suffix`)
//! to llama-server's native `/infill` and of its answers back to OpenAI
//! `text_completion` objects.
//!
//! llama-server's own `/v1/completions` accepts `suffix` but ignores it (its OpenAI
//! layer builds a plain completion), so FLM sends FIM requests for llama.cpp engines to
//! `/infill`, which builds the real prefix/suffix/middle prompt from the model's FIM
//! tokens.

use bytes::Bytes;
use flm_core::ports::RawBody;
use futures::StreamExt;
use serde_json::{json, Map, Value};

/// An event longer than this without a boundary is passed through untouched (and so
/// is everything after it): the rewriting never buffers without bound.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// End of the first complete SSE event in `buf`: (end of the event, start of the next).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Rewrites one SSE event: its JSON `data:` payload goes through `f`, which returns
/// the payloads to send instead. Events without a JSON object (comments, `[DONE]`)
/// are kept as they are.
fn map_event(event: &[u8], f: &mut dyn FnMut(Value) -> Vec<String>, out: &mut Vec<u8>) {
    let keep = |out: &mut Vec<u8>| {
        out.extend_from_slice(event);
        out.extend_from_slice(b"\n\n");
    };
    let Ok(text) = std::str::from_utf8(event) else {
        return keep(out);
    };
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    let payload = data.join("\n");
    if !payload.trim_start().starts_with('{') {
        return keep(out);
    }
    match serde_json::from_str::<Value>(&payload) {
        Ok(v @ Value::Object(_)) => {
            for p in f(v) {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(p.as_bytes());
                out.extend_from_slice(b"\n\n");
            }
        }
        _ => keep(out),
    }
}

/// Applies `f` to every JSON event of an SSE body, event by event: each event is sent
/// on as soon as it is complete, so streaming stays streaming.
pub(crate) fn map_sse<F>(body: RawBody, f: F) -> RawBody
where
    F: FnMut(Value) -> Vec<String> + Send + 'static,
{
    struct St<F> {
        body: RawBody,
        buf: Vec<u8>,
        f: F,
        raw: bool,
        done: bool,
    }
    let st = St {
        body,
        buf: Vec::new(),
        f,
        raw: false,
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if !st.raw {
                let mut out = Vec::new();
                let mut start = 0;
                while let Some((end, next)) = event_end(&st.buf[start..]) {
                    if end > 0 {
                        map_event(&st.buf[start..start + end], &mut st.f, &mut out);
                    }
                    start += next;
                }
                st.buf.drain(..start);
                if st.buf.len() > MAX_EVENT_BYTES {
                    tracing::warn!(
                        "an SSE event from the engine exceeds 1 MiB; relayed without rewriting"
                    );
                    st.raw = true;
                    out.append(&mut st.buf);
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), st));
                }
            }
            match st.body.next().await {
                Some(Ok(chunk)) if st.raw => return Some((Ok(chunk), st)),
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    if st.buf.is_empty() {
                        return None;
                    }
                    // An unterminated last event: completed if it is whole JSON.
                    let rest = std::mem::take(&mut st.buf);
                    let mut out = Vec::new();
                    if st.raw {
                        out = rest;
                    } else {
                        map_event(&rest, &mut st.f, &mut out);
                    }
                    return Some((Ok(Bytes::from(out)), st));
                }
            }
        }
    }))
}

/// Sets `model` on an object that has one (the client sees the id it sent).
pub(crate) fn set_model(v: &mut Value, model: &str) {
    if let Some(m) = v.get_mut("model") {
        *m = Value::String(model.to_owned());
    }
}

/// An event rewriter that shows the client's model id on every chunk.
pub(crate) fn rewrite_model(model: String) -> impl FnMut(Value) -> Vec<String> + Send {
    move |mut v| {
        set_model(&mut v, &model);
        vec![v.to_string()]
    }
}

/// A non-streaming engine answer with the client's model id (unchanged if it is not
/// a JSON object).
pub(crate) fn rewrite_model_body(body: Bytes, model: &str) -> Bytes {
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut v @ Value::Object(_)) => {
            set_model(&mut v, model);
            Bytes::from(v.to_string())
        }
        _ => body,
    }
}

/// Parameters copied from an OpenAI completion body to llama-server's `/infill` (the
/// native names where they differ are set separately).
const INFILL_COPIED: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "logit_bias",
    "stream",
];

/// OpenAI's default `max_tokens` for text completions.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// The `/infill` body for a validated completion with a string `prompt` and a
/// `suffix`: the prompt is the text before the insertion point.
pub(crate) fn infill_body(obj: &Map<String, Value>, model: &str, suffix: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert(
        "input_prefix".into(),
        obj.get("prompt").cloned().unwrap_or_default(),
    );
    body.insert("input_suffix".into(), Value::String(suffix.to_owned()));
    body.insert(
        "n_predict".into(),
        json!(obj
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    match obj.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            body.insert("stop".into(), v.clone());
        }
        _ => {}
    }
    for key in INFILL_COPIED {
        if let Some(v) = obj.get(*key).filter(|v| !v.is_null()) {
            body.insert((*key).into(), v.clone());
        }
    }
    Value::Object(body)
}

/// OpenAI's `finish_reason` for a llama.cpp `stop_type`.
fn finish_reason(v: &Value) -> &'static str {
    match v.get("stop_type").and_then(Value::as_str) {
        Some("limit") => "length",
        _ => "stop",
    }
}

fn infill_usage(v: &Value) -> Value {
    let prompt = v
        .get("tokens_evaluated")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let completion = v
        .get("tokens_predicted")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A `text_completion` object from a non-streaming `/infill` answer.
pub(crate) fn infill_to_completion(v: &Value, id: &str, model: &str, created: i64) -> Value {
    json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "text": v.get("content").and_then(Value::as_str).unwrap_or_default(),
            "logprobs": null,
            "finish_reason": finish_reason(v),
        }],
        "usage": infill_usage(v),
    })
}

/// An event rewriter turning `/infill` stream events into `text_completion` chunks,
/// ending with a usage chunk and `[DONE]` (llama-server's native stream has no
/// `[DONE]`).
pub(crate) fn infill_chunks(
    id: String,
    model: String,
    created: i64,
) -> impl FnMut(Value) -> Vec<String> + Send {
    move |v| {
        if v.get("error").is_some() {
            return vec![v.to_string()];
        }
        let chunk = |text: &str, finish: Option<&str>| {
            json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            })
            .to_string()
        };
        let text = v.get("content").and_then(Value::as_str).unwrap_or_default();
        let stop = v.get("stop").and_then(Value::as_bool).unwrap_or(false);
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(chunk(text, None));
        }
        if stop {
            out.push(chunk("", Some(finish_reason(&v))));
            out.push(
                json!({
                    "id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [], "usage": infill_usage(&v),
                })
                .to_string(),
            );
            out.push("[DONE]".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flm_core::EngineError;

    fn body(parts: &[&'static str]) -> RawBody {
        Box::pin(futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, EngineError>(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        ))
    }

    async fn collect(b: RawBody) -> Vec<String> {
        b.map(|r| String::from_utf8(r.unwrap().to_vec()).unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn events_split_across_chunks_are_rewritten_whole() {
        let out = collect(map_sse(
            body(&[
                "data: {\"model\":\"tiny\",\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"mo",
                "del\":\"tiny\"}\n\n: ping\n\ndata: [DONE]\n\n",
            ]),
            rewrite_model("flm://e/tiny".into()),
        ))
        .await;
        let all = out.concat();
        assert_eq!(
            all.matches("\"model\":\"flm://e/tiny\"").count(),
            2,
            "{all}"
        );
        assert!(all.contains(": ping\n\n") && all.ends_with("data: [DONE]\n\n"));
        // The first event left before the second one was complete.
        assert!(out[0].contains("\"text\":\"a\"") && !out[0].contains("DONE"));
    }

    #[tokio::test]
    async fn infill_streams_become_text_completion_chunks() {
        let out = collect(map_sse(
            body(&[
                "data: {\"index\":0,\"content\":\" x\",\"stop\":false}\n\n",
                "data: {\"index\":0,\"content\":\"\",\"stop\":true,\"stop_type\":\"limit\",\"tokens_predicted\":4,\"tokens_evaluated\":10}\n\n",
            ]),
            infill_chunks("cmpl-1".into(), "flm://e/m".into(), 5),
        ))
        .await
        .concat();
        assert!(out.contains("\"text\":\" x\""), "{out}");
        assert!(out.contains("\"finish_reason\":\"length\""), "{out}");
        assert!(out.contains("\"total_tokens\":14"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[test]
    fn infill_bodies_carry_prefix_suffix_and_limits() {
        let obj = json!({"model":"flm://e/m","prompt":"def f(","suffix":"return x","max_tokens":5,"stop":"\n","temperature":0})
            .as_object()
            .cloned()
            .unwrap();
        let b = infill_body(&obj, "m", "return x");
        assert_eq!(b["input_prefix"], "def f(");
        assert_eq!(b["input_suffix"], "return x");
        assert_eq!(b["n_predict"], 5);
        assert_eq!(b["stop"], json!(["\n"]));
        assert_eq!(b["temperature"], 0);
    }
}
