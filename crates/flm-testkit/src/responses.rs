//! vLLM's `POST /v1/responses` (`vllm/entrypoints/openai/serving_responses.py`): the
//! Responses API over the same deterministic replies as chat.
//!
//! Reproduced: `model` optional (the first served model); `input` a string or items;
//! `instructions`; flat function `tools`; `max_output_tokens`; the response store off
//! by default (`VLLM_ENABLE_RESPONSES_API_STORE` unset), so a `previous_response_id`
//! is `404 Response with id '…' not found.`; streaming as `event:` + `data:` pairs with
//! `sequence_number`s and no `[DONE]`.

#![expect(
    clippy::result_large_err,
    reason = "handlers fail with a ready-made native error `Response`, as in the engine modules"
)]

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::chat::{self, ChatInput, Reply};
use crate::server::{native_error, HandlerResult, Shared};
use crate::stream::{self, StreamPlan, SSE};
use crate::{fake, Behavior, EmulatedKind, EmulatedModel};

pub(crate) const V1_RESPONSES: &str = "/v1/responses";

/// The chat view of a Responses request, for [`chat::plan`].
fn chat_view(body: &Value) -> Value {
    let mut messages = Vec::new();
    if let Some(s) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": s}));
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for item in items {
                let role = match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => "assistant",
                    Some("function_call_output") => "tool",
                    _ => item.get("role").and_then(Value::as_str).unwrap_or("user"),
                };
                let content = item
                    .get("content")
                    .or_else(|| item.get("output"))
                    .cloned()
                    .unwrap_or(Value::Null);
                messages.push(json!({"role": role, "content": content}));
            }
        }
        _ => {}
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|t| json!({"type": "function", "function": {"name": t.get("name")}}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "model": body.get("model"),
        "messages": messages,
        "tools": tools,
        "tool_choice": body.get("tool_choice"),
        "max_tokens": body.get("max_output_tokens"),
    })
}

fn output_items(st: &Shared, reply: &Reply) -> Vec<Value> {
    let seq = st.next_seq().to_string();
    match &reply.tool_call {
        Some(tc) => vec![json!({
            "type": "function_call",
            "id": format!("fc_{}", fake::hex_id(&seq, 32)),
            "call_id": tc.id,
            "name": tc.name,
            "arguments": tc.arguments.to_string(),
            "status": "completed",
        })],
        None => vec![json!({
            "type": "message",
            "id": format!("msg_{}", fake::hex_id(&seq, 32)),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": reply.content(), "annotations": [], "logprobs": null}],
        })],
    }
}

fn response_object(
    body: &Value,
    model: &str,
    id: &str,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id,
        "created_at": chrono::Utc::now().timestamp(),
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata"),
        "model": model,
        "object": "response",
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
        "temperature": body.get("temperature"),
        "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": body.get("tools").cloned().unwrap_or(json!([])),
        "top_p": body.get("top_p"),
        "background": false,
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": null,
        "reasoning": null,
        "service_tier": "auto",
        "status": status,
        "text": null,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        // The store is off unless VLLM_ENABLE_RESPONSES_API_STORE is set.
        "store": false,
    })
}

fn event(kind: &str, seq: &mut u64, mut fields: Value) -> Bytes {
    fields["type"] = json!(kind);
    fields["sequence_number"] = json!(*seq);
    *seq += 1;
    Bytes::from(format!("event: {kind}\ndata: {fields}\n\n"))
}

fn stream_plan(
    body: &Value,
    model: &str,
    id: &str,
    reply: &Reply,
    output: Vec<Value>,
    status: &str,
    usage: Value,
) -> StreamPlan {
    let mut seq = 0;
    let mut frames = Vec::new();
    let start = response_object(body, model, id, "in_progress", vec![], Value::Null);
    frames.push(event(
        "response.created",
        &mut seq,
        json!({"response": start}),
    ));
    frames.push(event(
        "response.in_progress",
        &mut seq,
        json!({"response": start}),
    ));
    for (index, item) in output.iter().enumerate() {
        let item_id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
            frames.push(event(
                "response.output_item.added",
                &mut seq,
                json!({"output_index": index, "item": added}),
            ));
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            frames.push(event("response.content_part.added", &mut seq, json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part})));
            for piece in &reply.pieces {
                frames.push(event("response.output_text.delta", &mut seq, json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []})));
            }
            let text = reply.content();
            frames.push(event("response.output_text.done", &mut seq, json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []})));
            frames.push(event("response.content_part.done", &mut seq, json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": item["content"][0]})));
        } else {
            added["arguments"] = json!("");
            frames.push(event(
                "response.output_item.added",
                &mut seq,
                json!({"output_index": index, "item": added}),
            ));
            frames.push(event(
                "response.function_call_arguments.delta",
                &mut seq,
                json!({"item_id": item_id, "output_index": index, "delta": item["arguments"]}),
            ));
            frames.push(event(
                "response.function_call_arguments.done",
                &mut seq,
                json!({"item_id": item_id, "output_index": index, "arguments": item["arguments"]}),
            ));
        }
        frames.push(event(
            "response.output_item.done",
            &mut seq,
            json!({"output_index": index, "item": item}),
        ));
    }
    let terminal = frames.len();
    let done = response_object(body, model, id, status, output, usage);
    let kind = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    frames.push(event(kind, &mut seq, json!({"response": done})));
    let error_frame = event(
        "error",
        &mut seq.clone(),
        json!({"code": "internal_error", "message": "emulated engine failure", "param": null}),
    );
    StreamPlan {
        content_type: SSE,
        frames,
        terminal,
        error_frame,
        after_error: Vec::new(),
    }
}

/// Serves one `/v1/responses` request of the vLLM emulator.
pub(crate) fn vllm_responses(
    st: &Shared,
    behavior: &Behavior,
    body: &Value,
    m: &EmulatedModel,
) -> HandlerResult {
    let kind = EmulatedKind::Vllm;
    let bad = |msg: &str| native_error(kind, V1_RESPONSES, StatusCode::BAD_REQUEST, msg);
    match body.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        _ => {
            return Err(bad(
                "[{'type': 'missing', 'loc': ('body', 'input'), 'msg': 'Field required'}]",
            ))
        }
    }
    if m.embedding {
        return Err(bad("The model does not support Responses API"));
    }
    if let Some(prev) = body.get("previous_response_id").and_then(Value::as_str) {
        return Err(native_error(
            kind,
            V1_RESPONSES,
            StatusCode::NOT_FOUND,
            &format!("Response with id '{prev}' not found."),
        ));
    }
    let input = ChatInput::parse(&chat_view(body));
    let reply = chat::plan(kind.as_str(), &m.name, &input, false);
    let output = output_items(st, &reply);
    let status = if reply.finish == "length" {
        "incomplete"
    } else {
        "completed"
    };
    let usage = json!({
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    });
    let id = format!("resp_{}", fake::hex_id(&st.next_seq().to_string(), 32));
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let plan = stream_plan(body, &m.name, &id, &reply, output, status, usage);
        Ok(stream::respond(st, behavior, plan))
    } else {
        let v = response_object(body, &m.name, &id, status, output, usage);
        Ok(stream::json_or_drop(behavior, &v))
    }
}
