//! `POST /v1/responses`, `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`
//! (docs/guides/proxy.md, "Responses API").
//!
//! - **Native relay** to engines whose `/v1/responses` FLM relies on (vLLM, see
//!   [`serves_responses`]): the client's body with the engine's model name and the
//!   conversation of `previous_response_id` spelled out as input items
//!   ([`native_request_body`]); the engine's answer and events come back with the
//!   client's model id.
//! - **Bridge** for every other engine ([`bridge`]): the request becomes a chat
//!   completions body that goes through the chat route's own entry
//!   ([`handlers::chat_entry`]) — routing, fail-over, key scopes, profiles and
//!   templates exactly as for `/v1/chat/completions` — and the answer is turned into
//!   a `response` object, or into the Responses event sequence ([`stream`]).
//!
//! `previous_response_id` is always resolved by FLM from its own bounded store
//! ([`store`]), whichever way the response was produced, so a chain of turns works
//! across engines and after fail-over; an id FLM does not hold for the caller's key is
//! refused (`400 previous_response_not_found`), never ignored.

pub(crate) mod bridge;
pub(crate) mod store;
pub(crate) mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use flm_core::ports::RawRequest;
use flm_core::EngineKind;
use serde_json::{json, Map, Value};

use crate::app::{KeyAccess, KeyId, SharedState};
use crate::defence::ClientIp;
use crate::error::ApiError;
use crate::handlers::{self, Attempt};
use crate::request_id::RequestId;
use crate::routing::EngineEntry;

pub use store::ResponseStore;

/// Largest non-streamed chat answer the bridge reads back (the chat path already
/// bounded it in time).
const MAX_CHAT_BODY: usize = 64 * 1024 * 1024;

/// Whether FLM relays `/v1/responses` to this engine as is. Only vLLM: its Responses
/// API is part of every release FLM supports; LM Studio (0.3.29+), Ollama (0.13.3+,
/// stateless) and llama.cpp (recent builds) have it only in some versions, so they
/// are bridged, which also gives them the same `previous_response_id` behaviour.
pub(crate) fn serves_responses(entry: &EngineEntry) -> bool {
    entry.kind == EngineKind::Vllm
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "response_not_found",
        "invalid_request_error",
        format!("no stored response `{id}` for this API key (FLM keeps responses in memory for 3 hours, at most 1000 of them; `store: false` responses are not kept)"),
    )
}

/// The stored conversation a follow-up continues.
fn previous_items(st: &SharedState, key: &str, id: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let Some(id) = id else {
        return Ok(Vec::new());
    };
    match st.responses.get(id, key) {
        Some(s) => Ok(s.history),
        None => Err(ApiError::bad_request(
            "previous_response_not_found",
            format!("previous_response_id `{id}` is unknown to this API key: it never existed, expired (kept 3 hours, at most 1000 responses), was created with `store: false`, or the proxy restarted; send the whole conversation as `input` instead"),
        )),
    }
}

/// Output items worth carrying into the next turn.
fn history_with(items: &[Value], response: &Value) -> Vec<Value> {
    let mut h = items.to_vec();
    if let Some(out) = response.get("output").and_then(Value::as_array) {
        h.extend(
            out.iter()
                .filter(|i| {
                    matches!(
                        i.get("type").and_then(Value::as_str),
                        Some("message" | "function_call")
                    )
                })
                .cloned(),
        );
    }
    h
}

/// Stores a finished response (unless `store: false`).
fn keep(st: &SharedState, key: &str, store: bool, items: &[Value], response: &Value) {
    let done = matches!(
        response.get("status").and_then(Value::as_str),
        Some("completed" | "incomplete")
    );
    let Some(id) = response.get("id").and_then(Value::as_str) else {
        return;
    };
    if store && done {
        st.responses
            .put(id, key, response.clone(), history_with(items, response));
    }
}

/// `POST /v1/responses`.
pub async fn create(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(key): Extension<KeyId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = handlers::read_body(&st, body).await?;
    let obj = handlers::parse_checked(&st, ip, &rid.0, "/v1/responses", &bytes)?;
    let parsed = bridge::parse(&obj)?;
    tracing::debug!(request_id = %rid.0, api_key_id = %key.0, model = %parsed.model, stream = parsed.stream, "responses request");
    let mut items = previous_items(&st, &key.0, parsed.previous_response_id.as_deref())?;
    items.extend(parsed.input.iter().cloned());
    // Media goes through the bridge, where the chat path's SSRF guard, size limits and
    // capability checks apply: an engine relayed natively would fetch remote URLs
    // itself, from inside the network FLM protects.
    let relayed = if carries_media(&items) {
        None
    } else {
        native_candidates(&st, &parsed.model, &access).await
    };
    if let Some((candidates, model)) = relayed {
        let template = crate::profiles::template_for(&st, &access.0, &parsed.model).await;
        let native_req = NativeRequest {
            obj: &obj,
            template: template.as_deref(),
        };
        return native(
            &st,
            &rid,
            &key,
            &parsed,
            native_req,
            items,
            &candidates,
            model,
        )
        .await;
    }
    let chat = bridge::chat_body(&parsed, &items);
    let resp = match handlers::chat_entry(&st, &rid, &key, &access, chat).await {
        Ok(r) => r,
        Err(e) => return Err(renamed(e)),
    };
    if resp.status().as_u16() >= 400 {
        let (mut parts, body) = resp.into_parts();
        if let Some(e) = parts.extensions.remove::<ApiError>() {
            parts.extensions.insert(renamed(e));
        }
        return Ok(Response::from_parts(parts, body));
    }
    let shell = bridge::Shell::new(&parsed);
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if parsed.stream {
        let st2 = st.clone();
        let key_id = key.0.clone();
        let store = parsed.store;
        let on_complete: stream::OnComplete =
            Box::new(move |r: &Value| keep(&st2, &key_id, store, &items, r));
        let events = stream::drive(
            body.into_data_stream(),
            stream::ChatEvents::new(shell, on_complete),
        );
        return Ok(Response::from_parts(parts, Body::from_stream(events)));
    }
    let raw = axum::body::to_bytes(body, MAX_CHAT_BODY)
        .await
        .map_err(|e| ApiError::internal(format!("could not read the chat answer: {e}")))?;
    let chat: Value = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::engine(
            "responses_error",
            &flm_core::EngineError::InvalidResponse(format!("the chat answer is not JSON: {e}")),
        )
    })?;
    let response = bridge::from_chat(&shell, &chat);
    keep(&st, &key.0, parsed.store, &items, &response);
    Ok(Response::from_parts(
        parts,
        Body::from(response.to_string()),
    ))
}

/// Errors of the chat path, under this route's code.
fn renamed(mut e: ApiError) -> ApiError {
    if e.code == "chat_error" {
        e.code = "responses_error";
    }
    e
}

async fn native_candidates(
    st: &SharedState,
    model: &str,
    access: &KeyAccess,
) -> Option<(Vec<Arc<EngineEntry>>, String)> {
    let routes = st.router.routes(st.first_check_wait).await;
    let resolved = routes.resolve(model, &access.0.scope).ok()?;
    let all =
        !resolved.candidates.is_empty() && resolved.candidates.iter().all(|e| serves_responses(e));
    all.then_some((resolved.candidates, resolved.model))
}

/// What the client sees of a natively relayed response where FLM, not the engine,
/// decided: its model id, its `previous_response_id` (resolved by FLM) and `store`.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub model: String,
    pub previous_response_id: Option<String>,
    pub store: bool,
    /// The client's own `instructions`: an engine echoes what it received, which
    /// includes FLM's prompt template, and the client is shown what it sent (as on
    /// the bridge).
    pub instructions: Value,
}

impl Shown {
    pub(crate) fn apply(&self, response: &mut Value) {
        if let Some(o) = response.as_object_mut() {
            o.insert("model".into(), json!(self.model));
            o.insert(
                "previous_response_id".into(),
                json!(self.previous_response_id),
            );
            o.insert("store".into(), json!(self.store));
            if o.contains_key("instructions") {
                o.insert("instructions".into(), self.instructions.clone());
            }
        }
    }
}

/// Whether any input item carries an image, audio or file part.
fn carries_media(items: &[Value]) -> bool {
    items.iter().any(|item| {
        item.get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts.iter().any(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("input_image" | "input_audio" | "input_file" | "image_url")
                    )
                })
            })
    })
}

/// What the client asked of a native `/v1/responses` engine, with the prompt template
/// that applies to the key and model.
#[derive(Clone, Copy)]
pub(crate) struct NativeRequest<'a> {
    pub obj: &'a Map<String, Value>,
    pub template: Option<&'a str>,
}

/// The body sent to an engine that serves `/v1/responses` itself: the client's body
/// with the engine's model name; the prompt template goes first in `instructions`
/// (the client's own instructions follow it, as a client's system message follows the
/// template on chat); on a follow-up, the conversation of `previous_response_id`
/// (which FLM resolved from its own store) spelled out in `input` (`conversation`:
/// earlier turns, then this one).
pub(crate) fn native_request_body(
    req: NativeRequest<'_>,
    model: &str,
    conversation: Option<&[Value]>,
) -> Map<String, Value> {
    let mut body = req.obj.clone();
    body.insert("model".into(), Value::String(model.to_owned()));
    if let Some(template) = req.template {
        let instructions = match body.get("instructions").and_then(Value::as_str) {
            Some(own) if !own.is_empty() => format!("{template}\n\n{own}"),
            _ => template.to_owned(),
        };
        body.insert("instructions".into(), Value::String(instructions));
    }
    if let Some(items) = conversation {
        body.remove("previous_response_id");
        body.insert("input".into(), Value::Array(items.to_vec()));
    }
    body
}

#[allow(clippy::too_many_arguments)] // one call site; the request's parts as they are
async fn native(
    st: &SharedState,
    rid: &RequestId,
    key: &KeyId,
    parsed: &bridge::Parsed,
    req: NativeRequest<'_>,
    items: Vec<Value>,
    candidates: &[Arc<EngineEntry>],
    model: String,
) -> Result<Response, ApiError> {
    let items = Arc::new(items);
    handlers::try_candidates(st, "responses_error", candidates, &model, |entry| {
        let st = st.clone();
        let items = items.clone();
        let model = model.clone();
        let rid = rid.0.clone();
        let key = key.0.clone();
        async move {
            let conversation = parsed.previous_response_id.as_ref().map(|_| &items[..]);
            let body = native_request_body(req, &model, conversation);
            let raw = match serde_json::to_vec(&body) {
                Ok(b) => b,
                Err(e) => return Attempt::Done(Err(ApiError::internal(e.to_string()))),
            };
            let request = RawRequest {
                method: "POST".into(),
                path_and_query: "/v1/responses".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from(raw),
            };
            let shown = Shown {
                model: parsed.model.clone(),
                previous_response_id: parsed.previous_response_id.clone(),
                store: parsed.store,
                instructions: req.obj.get("instructions").cloned().unwrap_or(Value::Null),
            };
            let store = parsed.store;
            if parsed.stream {
                let resp = match entry.engine.relay(request).await {
                    Ok(r) => r,
                    Err(e) => return handlers::attempt_err("responses_error", e),
                };
                let is_sse = handlers::header_value(&resp, "content-type")
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                if (200..300).contains(&resp.status) && is_sse {
                    let on_complete: stream::OnComplete = {
                        let st = st.clone();
                        Box::new(move |r: &Value| keep(&st, &key, store, &items, r))
                    };
                    let relayed = Box::pin(crate::relay::relay_sse(
                        resp.body,
                        st.settings.stream_timeout,
                        rid,
                    ));
                    let events =
                        stream::drive(relayed, stream::NativeEvents::new(shown, on_complete));
                    return Attempt::Done(Ok(handlers::sse_response(events)));
                }
                let status = resp.status;
                return match handlers::collect(&st, resp.body).await {
                    Ok(b) => Attempt::Done(Err(handlers::upstream_error(
                        "responses_error",
                        status,
                        &b,
                        entry.id.as_str(),
                    ))),
                    Err(e) => handlers::attempt_err("responses_error", e),
                };
            }
            handlers::relay_full(&st, &entry, request, "responses_error", |b| {
                let mut v: Value = serde_json::from_slice(&b).map_err(|e| {
                    ApiError::engine(
                        "responses_error",
                        &flm_core::EngineError::InvalidResponse(format!(
                            "engine `{}` answered /v1/responses with a body that is not JSON: {e}",
                            entry.id
                        )),
                    )
                })?;
                shown.apply(&mut v);
                keep(&st, &key, store, &items, &v);
                Ok(Bytes::from(v.to_string()))
            })
            .await
        }
    })
    .await
}

/// `GET /v1/responses/{id}`: a stored response of the caller's key.
pub async fn retrieve(
    State(st): State<SharedState>,
    Extension(key): Extension<KeyId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = st
        .responses
        .get(&id, &key.0)
        .ok_or_else(|| not_found(&id))?;
    Ok(handlers::json_response(
        StatusCode::OK,
        Bytes::from(stored.response.to_string()),
    ))
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(st): State<SharedState>,
    Extension(key): Extension<KeyId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !st.responses.delete(&id, &key.0) {
        return Err(not_found(&id));
    }
    let body = json!({"id": id, "object": "response", "deleted": true});
    Ok(handlers::json_response(
        StatusCode::OK,
        Bytes::from(body.to_string()),
    ))
}
