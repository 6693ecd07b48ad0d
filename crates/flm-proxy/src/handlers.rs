//! Route handlers: thin — read and validate the request, resolve the engine, hand the
//! exchange to the relay or the translator.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use flm_core::ports::{RawRequest, RawResponse};
use flm_core::upstream::{embedded_error, upstream_message};
use flm_core::{EngineError, EngineKind};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::app::{KeyAccess, KeyId, SharedState};
use crate::completions;
use crate::defence::ClientIp;
use crate::error::ApiError;
use crate::openai_req::{self, ChatParams, CompletionParams, PromptShape};
use crate::relay::{relay_sse, translate_sse};
use crate::request_id::RequestId;
use crate::routing::EngineEntry;

/// `GET /v1/models`.
pub async fn list_models(
    State(st): State<SharedState>,
    Extension(access): Extension<KeyAccess>,
) -> Response {
    let routes = st.router.routes(st.first_check_wait).await;
    let body = routes.models_json_for(&access.0.scope);
    json_response(
        StatusCode::OK,
        crate::profiles::with_profiles(&st, &routes, &access.0, body),
    )
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn sse_response(
    stream: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    r
}

/// Reads the whole body, bounded in size and time.
pub(crate) async fn read_body(st: &SharedState, body: Body) -> Result<Bytes, ApiError> {
    let limit = st.settings.max_body_bytes;
    match tokio::time::timeout(
        st.settings.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "timeout_error",
            "the request body was not received in time",
        )),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if too_large {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "invalid_request_error",
                    format!("the request body exceeds {limit} bytes (proxy.max_body_bytes)"),
                ))
            } else {
                Err(ApiError::bad_request(
                    "invalid_request",
                    format!("could not read the request body: {e}"),
                ))
            }
        }
        Ok(Ok(b)) => Ok(b),
    }
}

/// Parses the body as a JSON object and scores its non-content fields (the defence
/// never looks at messages or inputs).
pub(crate) fn parse_checked(
    st: &SharedState,
    ip: Option<Extension<ClientIp>>,
    rid: &str,
    path: &str,
    bytes: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let value = parse_value(bytes)?;
    if let Some(Extension(ClientIp(ip))) = ip {
        st.guard.inspect_body(st.exposed, ip, rid, path, &value)?;
    }
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "invalid_json",
            "the request body must be a JSON object",
        )),
    }
}

fn parse_value(bytes: &[u8]) -> Result<Value, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is not valid UTF-8",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// Outcome of one attempt on one engine.
pub(crate) enum Attempt {
    /// Nothing reached the client and the engine looks dead: try the next engine.
    Retry(EngineError),
    /// Final answer (success or error).
    Done(Result<Response, ApiError>),
}

pub(crate) fn attempt_err(route_code: &'static str, e: EngineError) -> Attempt {
    match e {
        EngineError::Network(_) => Attempt::Retry(e),
        other => Attempt::Done(Err(ApiError::engine(route_code, &other))),
    }
}

pub(crate) async fn try_candidates<F, Fut>(
    st: &SharedState,
    route_code: &'static str,
    candidates: &[Arc<EngineEntry>],
    model: &str,
    mut attempt: F,
) -> Result<Response, ApiError>
where
    F: FnMut(Arc<EngineEntry>) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let mut last = None;
    for entry in candidates {
        match attempt(entry.clone()).await {
            Attempt::Done(r) => return Ok(served_by(r, entry, model)),
            Attempt::Retry(e) => {
                st.router.mark_down(entry);
                tracing::warn!(engine = %entry.id, error = %e, "engine failed before the first byte; trying the next one");
                last = Some((e, entry));
            }
        }
    }
    match last {
        Some((e, entry)) => Ok(served_by(
            Err(ApiError::engine(route_code, &e)),
            entry,
            model,
        )),
        None => Err(ApiError::internal("no engine to try")),
    }
}

/// Tags the answer with the engine and model that gave it (for usage metering).
fn served_by(r: Result<Response, ApiError>, entry: &EngineEntry, model: &str) -> Response {
    let mut resp = r.unwrap_or_else(axum::response::IntoResponse::into_response);
    resp.extensions_mut().insert(crate::telemetry::Served {
        engine_id: entry.id.to_string(),
        model: flm_core::ModelId::new(entry.id.clone(), model).to_string(),
        kind: entry.kind.slug(),
    });
    resp
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(key): Extension<KeyId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let obj = parse_checked(&st, ip, &rid.0, "/v1/chat/completions", &bytes)?;
    chat_entry(&st, &rid, &key, &access, obj).await
}

/// The chat path after the body was read and inspected: validation, routing within
/// the key's scope, fail-over, relay or translation. `/v1/chat/completions` and the
/// Responses bridge ([`crate::responses`]) both enter here.
pub(crate) async fn chat_entry(
    st: &SharedState,
    rid: &RequestId,
    key: &KeyId,
    access: &KeyAccess,
    mut obj: Map<String, Value>,
) -> Result<Response, ApiError> {
    crate::profiles::apply(st, &access.0, crate::profiles::Route::Chat, &mut obj).await?;
    let params = openai_req::validate_chat(&mut obj)?;
    tracing::debug!(request_id = %rid.0, api_key_id = %key.0, model = %params.model, stream = params.stream, "chat request");
    let routes = st.router.routes(st.first_check_wait).await;
    let mut resolved = routes.resolve(&params.model, &access.0.scope)?;
    crate::multimodal::prepare(st, &mut obj, &mut resolved).await?;
    let model = resolved.model.clone();
    try_candidates(st, "chat_error", &resolved.candidates, &model, |entry| {
        let st = st.clone();
        let obj = &obj;
        let params = &params;
        let model = model.clone();
        let rid = rid.0.clone();
        async move {
            if entry.engine.speaks_openai() {
                chat_relay(&st, &entry, obj, params, &model, rid).await
            } else {
                chat_translate(&st, &entry, obj, params, &model, rid).await
            }
        }
    })
    .await
}

async fn chat_relay(
    st: &SharedState,
    entry: &EngineEntry,
    obj: &Map<String, Value>,
    params: &ChatParams,
    model: &str,
    rid: String,
) -> Attempt {
    let request = match engine_request(
        entry,
        obj,
        model,
        params.stream,
        entry.kind == EngineKind::Vllm,
        "/v1/chat/completions",
    ) {
        Ok(r) => r,
        Err(e) => return Attempt::Done(Err(e)),
    };
    if params.stream {
        let resp = match entry.engine.relay(request).await {
            Ok(r) => r,
            Err(e) => return attempt_err("chat_error", e),
        };
        let is_sse =
            header_value(&resp, "content-type").is_some_and(|v| v.starts_with("text/event-stream"));
        if (200..300).contains(&resp.status) && is_sse {
            return Attempt::Done(Ok(sse_response(relay_sse(
                resp.body,
                st.settings.stream_timeout,
                rid,
            ))));
        }
        let status = resp.status;
        return match collect(st, resp.body).await {
            Ok(b) => Attempt::Done(Err(upstream_error(
                "chat_error",
                status,
                &b,
                &entry.id.to_string(),
            ))),
            Err(e) => attempt_err("chat_error", e),
        };
    }
    relay_full(st, entry, request, "chat_error", Ok).await
}

/// A non-streaming relay: the whole exchange bounded by `proxy.request_timeout_secs`;
/// `transform` shapes a successful body for the client.
pub(crate) async fn relay_full(
    st: &SharedState,
    entry: &EngineEntry,
    request: RawRequest,
    route_code: &'static str,
    transform: impl FnOnce(Bytes) -> Result<Bytes, ApiError>,
) -> Attempt {
    let exchange = async {
        let resp = entry.engine.relay(request).await?;
        let status = resp.status;
        let body = collect_unbounded(resp.body).await?;
        Ok::<_, EngineError>((status, body))
    };
    match tokio::time::timeout(st.settings.request_timeout, exchange).await {
        Err(_) => engine_timeout(st, entry),
        Ok(Err(e)) => attempt_err(route_code, e),
        Ok(Ok((status, body))) => {
            if (200..300).contains(&status) {
                // LM Studio reports failures as HTTP 200 with an `error` body. Parse only
                // when the bytes can hold one: the common path stays parse-free.
                let may_hold_error = body.windows(7).any(|w| w == b"\"error\"");
                if let Some(Ok(v)) = may_hold_error.then(|| serde_json::from_slice::<Value>(&body))
                {
                    if embedded_error(&v).is_some() {
                        return Attempt::Done(Err(upstream_error(
                            route_code,
                            502,
                            &body,
                            entry.id.as_str(),
                        )));
                    }
                }
                Attempt::Done(transform(body).map(|body| {
                    json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
                }))
            } else {
                Attempt::Done(Err(upstream_error(
                    route_code,
                    status,
                    &body,
                    entry.id.as_str(),
                )))
            }
        }
    }
}

/// 408 for an engine that stayed silent past `proxy.request_timeout_secs`.
fn engine_timeout(st: &SharedState, entry: &EngineEntry) -> Attempt {
    Attempt::Done(Err(ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "timeout_error",
        format!(
            "engine `{}` did not answer within {} s (proxy.request_timeout_secs)",
            entry.id,
            st.settings.request_timeout.as_secs()
        ),
    )))
}

pub(crate) fn upstream_error(
    route_code: &'static str,
    status: u16,
    body: &[u8],
    engine: &str,
) -> ApiError {
    let msg = upstream_message(body).unwrap_or_else(|| "empty body".into());
    ApiError::engine(
        route_code,
        &EngineError::Api {
            status_code: Some(status),
            message: format!("engine `{engine}` answered HTTP {status}: {msg}"),
        },
    )
}

pub(crate) fn header_value<'a>(resp: &'a RawResponse, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn collect_unbounded(mut body: flm_core::ports::RawBody) -> Result<Bytes, EngineError> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(buf))
}

pub(crate) async fn collect(
    st: &SharedState,
    body: flm_core::ports::RawBody,
) -> Result<Bytes, EngineError> {
    tokio::time::timeout(st.settings.request_timeout, collect_unbounded(body))
        .await
        .map_err(|_| {
            EngineError::Timeout("the engine's error body did not arrive in time".into())
        })?
}

async fn chat_translate(
    st: &SharedState,
    entry: &EngineEntry,
    obj: &Map<String, Value>,
    params: &ChatParams,
    model: &str,
    rid: String,
) -> Attempt {
    let request = match openai_req::to_chat_request(obj, model) {
        Ok(r) => r,
        Err(e) => return Attempt::Done(Err(e)),
    };
    if params.stream {
        return match entry.engine.chat_stream(request).await {
            Ok(chunks) => Attempt::Done(Ok(sse_response(translate_sse(
                chunks,
                st.settings.stream_timeout,
                rid,
                params.model.clone(),
            )))),
            Err(e) => attempt_err("chat_error", e),
        };
    }
    match tokio::time::timeout(st.settings.request_timeout, entry.engine.chat(request)).await {
        Err(_) => engine_timeout(st, entry),
        Ok(Err(e)) => attempt_err("chat_error", e),
        Ok(Ok(r)) => {
            let body = json!({
                "id": format!("chatcmpl-{rid}"),
                "object": "chat.completion",
                "created": chrono::Utc::now().timestamp(),
                "model": params.model,
                "choices": [{
                    "index": 0,
                    "message": crate::relay::assistant_message(&r.message),
                    "finish_reason": r.finish_reason.unwrap_or_else(|| "stop".into()),
                }],
                "usage": r.usage.unwrap_or_default(),
            });
            Attempt::Done(Ok(json_response(
                StatusCode::OK,
                Bytes::from(body.to_string()),
            )))
        }
    }
}

/// `POST /v1/completions`: legacy text completion, with `suffix` for
/// fill-in-the-middle. Relayed to the engine's own `/v1/completions`, except a FIM
/// request to llama.cpp, which goes to its native `/infill` (see [`completions`]).
pub async fn completions(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(key): Extension<KeyId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let mut obj = parse_checked(&st, ip, &rid.0, "/v1/completions", &bytes)?;
    crate::profiles::apply(
        &st,
        &access.0,
        crate::profiles::Route::Completions,
        &mut obj,
    )
    .await?;
    let params = openai_req::validate_completion(&mut obj)?;
    tracing::debug!(request_id = %rid.0, api_key_id = %key.0, model = %params.model, stream = params.stream, fim = params.suffix.is_some(), "completion request");
    let routes = st.router.routes(st.first_check_wait).await;
    let resolved = routes.resolve(&params.model, &access.0.scope)?;
    let model = resolved.model.clone();
    // Engines that cannot serve this request are left out of the fail-over list; if
    // none can, the first one's reason is the answer.
    let mut refused = None;
    let candidates: Vec<Arc<EngineEntry>> = resolved
        .candidates
        .into_iter()
        .filter(|e| match completion_support(e, &model, &params) {
            Ok(()) => true,
            Err(err) => {
                refused.get_or_insert(err);
                false
            }
        })
        .collect();
    if candidates.is_empty() {
        return Err(refused.unwrap_or_else(|| ApiError::internal("no engine to try")));
    }
    try_candidates(&st, "completions_error", &candidates, &model, |entry| {
        let st = st.clone();
        let obj = &obj;
        let params = &params;
        let model = model.clone();
        let rid = rid.0.clone();
        async move {
            match (&params.suffix, entry.kind) {
                (Some(suffix), EngineKind::LlamaCpp) => {
                    infill(&st, &entry, obj, params, &model, suffix, rid).await
                }
                _ => completion_relay(&st, &entry, obj, params, &model, rid).await,
            }
        }
    })
    .await
}

/// Whether `entry` can serve this completion request; a precise 400 when it cannot.
fn completion_support(
    entry: &EngineEntry,
    model: &str,
    params: &CompletionParams,
) -> Result<(), ApiError> {
    let id = flm_core::ModelId::new(entry.id.clone(), model);
    if entry
        .models
        .iter()
        .any(|m| m.name == model && !m.supports_chat)
    {
        return Err(ApiError::bad_request(
            "completions_not_supported",
            format!("model `{id}` does not generate text (it serves embeddings or speech-to-text only): it cannot answer /v1/completions (see GET /v1/models, `flm.chat`)"),
        ));
    }
    if params.suffix.is_some() {
        match entry.kind {
            EngineKind::LlamaCpp | EngineKind::Ollama | EngineKind::OpenAi => {}
            EngineKind::Vllm | EngineKind::LmStudio | EngineKind::WhisperCpp => {
                return Err(ApiError::bad_request(
                    "suffix_not_supported",
                    format!(
                        "engine `{}` ({}) does not support `suffix` (fill-in-the-middle) on /v1/completions; use a llama.cpp or Ollama engine, or send the prompt without `suffix`",
                        entry.id,
                        entry.kind.display_name()
                    ),
                ));
            }
        }
        if params.prompt != PromptShape::Text {
            return Err(ApiError::bad_request(
                "invalid_prompt",
                "with `suffix`, `prompt` must be one string (the text before the insertion point)",
            ));
        }
    }
    if entry.kind == EngineKind::Ollama && params.prompt != PromptShape::Text {
        return Err(ApiError::bad_request(
            "invalid_prompt",
            format!(
                "engine `{}` (Ollama) accepts only a string `prompt` on /v1/completions",
                entry.id
            ),
        ));
    }
    Ok(())
}

async fn completion_relay(
    st: &SharedState,
    entry: &EngineEntry,
    obj: &Map<String, Value>,
    params: &CompletionParams,
    model: &str,
    rid: String,
) -> Attempt {
    let request = match engine_request(
        entry,
        obj,
        model,
        params.stream,
        matches!(entry.kind, EngineKind::Vllm | EngineKind::OpenAi),
        "/v1/completions",
    ) {
        Ok(r) => r,
        Err(e) => return Attempt::Done(Err(e)),
    };
    let shown = params.model.clone();
    if params.stream {
        let resp = match entry.engine.relay(request).await {
            Ok(r) => r,
            Err(e) => return attempt_err("completions_error", e),
        };
        let is_sse =
            header_value(&resp, "content-type").is_some_and(|v| v.starts_with("text/event-stream"));
        if (200..300).contains(&resp.status) && is_sse {
            let events = completions::map_sse(resp.body, completions::rewrite_model(shown));
            return Attempt::Done(Ok(sse_response(relay_sse(
                events,
                st.settings.stream_timeout,
                rid,
            ))));
        }
        let status = resp.status;
        return match collect(st, resp.body).await {
            Ok(b) => Attempt::Done(Err(upstream_error(
                "completions_error",
                status,
                &b,
                entry.id.as_str(),
            ))),
            Err(e) => attempt_err("completions_error", e),
        };
    }
    relay_full(st, entry, request, "completions_error", |b| {
        Ok(completions::rewrite_model_body(b, &shown))
    })
    .await
}

/// Fill-in-the-middle on llama.cpp: `/infill`, answered as `text_completion`.
async fn infill(
    st: &SharedState,
    entry: &EngineEntry,
    obj: &Map<String, Value>,
    params: &CompletionParams,
    model: &str,
    suffix: &str,
    rid: String,
) -> Attempt {
    let body = completions::infill_body(obj, model, suffix);
    let request = RawRequest {
        method: "POST".into(),
        path_and_query: "/infill".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_string()),
    };
    let id = format!("cmpl-{rid}");
    let created = chrono::Utc::now().timestamp();
    let shown = params.model.clone();
    let infill_error = |status: u16, body: &[u8]| {
        if status == 501 {
            let msg = upstream_message(body).unwrap_or_else(|| "no reason given".into());
            ApiError::bad_request(
                "suffix_not_supported",
                format!(
                    "model `{}` has no fill-in-the-middle tokens, so `suffix` cannot be used (engine `{}` answered: {msg})",
                    flm_core::ModelId::new(entry.id.clone(), model),
                    entry.id
                ),
            )
        } else {
            upstream_error("completions_error", status, body, entry.id.as_str())
        }
    };
    if params.stream {
        let resp = match entry.engine.relay(request).await {
            Ok(r) => r,
            Err(e) => return attempt_err("completions_error", e),
        };
        let is_sse =
            header_value(&resp, "content-type").is_some_and(|v| v.starts_with("text/event-stream"));
        if (200..300).contains(&resp.status) && is_sse {
            let events =
                completions::map_sse(resp.body, completions::infill_chunks(id, shown, created));
            return Attempt::Done(Ok(sse_response(relay_sse(
                events,
                st.settings.stream_timeout,
                rid,
            ))));
        }
        let status = resp.status;
        return match collect(st, resp.body).await {
            Ok(b) => Attempt::Done(Err(infill_error(status, &b))),
            Err(e) => attempt_err("completions_error", e),
        };
    }
    let exchange = async {
        let resp = entry.engine.relay(request).await?;
        let status = resp.status;
        let body = collect_unbounded(resp.body).await?;
        Ok::<_, EngineError>((status, body))
    };
    match tokio::time::timeout(st.settings.request_timeout, exchange).await {
        Err(_) => engine_timeout(st, entry),
        Ok(Err(e)) => attempt_err("completions_error", e),
        Ok(Ok((status, body))) if (200..300).contains(&status) => {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.get("content").is_some() => {
                    let out = completions::infill_to_completion(&v, &id, &shown, created);
                    Attempt::Done(Ok(json_response(
                        StatusCode::OK,
                        Bytes::from(out.to_string()),
                    )))
                }
                _ => Attempt::Done(Err(ApiError::engine(
                    "completions_error",
                    &EngineError::InvalidResponse(format!(
                        "engine `{}` answered /infill without `content`",
                        entry.id
                    )),
                ))),
            }
        }
        Ok(Ok((status, body))) => Attempt::Done(Err(infill_error(status, &body))),
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(st): State<SharedState>,
    rid: Option<Extension<RequestId>>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let rid = rid.map(|Extension(r)| r.0).unwrap_or_default();
    let obj = parse_checked(&st, ip, &rid, "/v1/embeddings", &bytes)?;
    let (requested, input) = openai_req::validate_embeddings(&obj)?;
    let routes = st.router.routes(st.first_check_wait).await;
    let resolved = routes.resolve(&requested, &access.0.scope)?;
    let model = resolved.model.clone();
    try_candidates(&st, "embeddings_error", &resolved.candidates, &model, |entry| {
        let st = st.clone();
        let obj = &obj;
        let input = input.clone();
        let model = model.clone();
        let requested = requested.clone();
        async move {
            if entry.engine.speaks_openai() {
                let mut body = obj.clone();
                body.insert("model".into(), Value::String(model));
                let raw = match serde_json::to_vec(&body) {
                    Ok(b) => b,
                    Err(e) => return Attempt::Done(Err(ApiError::internal(e.to_string()))),
                };
                let request = RawRequest {
                    method: "POST".into(),
                    path_and_query: "/v1/embeddings".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Bytes::from(raw),
                };
                return relay_full(&st, &entry, request, "embeddings_error", Ok).await;
            }
            let req = openai_req::to_embedding_request(&model, input);
            match tokio::time::timeout(st.settings.request_timeout, entry.engine.embeddings(req)).await {
                Err(_) => engine_timeout(&st, &entry),
                Ok(Err(e)) => attempt_err("embeddings_error", e),
                Ok(Ok(r)) => {
                    let data: Vec<Value> = r
                        .vectors
                        .iter()
                        .enumerate()
                        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
                        .collect();
                    let usage = r.usage.unwrap_or_default();
                    let body = json!({
                        "object": "list",
                        "data": data,
                        "model": requested,
                        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
                    });
                    Attempt::Done(Ok(json_response(StatusCode::OK, Bytes::from(body.to_string()))))
                }
            }
        }
    })
    .await
}

/// The JSON request an OpenAI-compatible engine gets for `path`: the client's body
/// with the engine's model name, `n` forced to 1 where the engine cannot take more
/// (`keeps_n` false), and usage asked for on a stream (every supported engine can
/// report it).
fn engine_request(
    entry: &EngineEntry,
    obj: &Map<String, Value>,
    model: &str,
    stream: bool,
    keeps_n: bool,
    path: &str,
) -> Result<RawRequest, ApiError> {
    let mut body = obj.clone();
    body.insert("model".into(), Value::String(model.to_owned()));
    if !keeps_n
        && body
            .get("n")
            .is_some_and(|n| n != &json!(1) && !n.is_null())
    {
        tracing::warn!(engine = %entry.id, "`n` is only supported by vLLM; forced to 1");
        body.insert("n".into(), json!(1));
    }
    if stream && !body.contains_key("stream_options") {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let raw = serde_json::to_vec(&body)
        .map_err(|e| ApiError::internal(format!("cannot encode the request: {e}")))?;
    Ok(RawRequest {
        method: "POST".into(),
        path_and_query: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(raw),
    })
}
