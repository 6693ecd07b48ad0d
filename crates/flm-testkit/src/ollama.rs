//! Ollama emulator: native `/api/*` (NDJSON streaming) and the OpenAI-compatible `/v1/*`.
//!
//! Quirks reproduced: `GET /` answers `Ollama is running`; `stream` defaults to `true` on
//! `/api/chat`; the `Host` guard refuses non-local `Host` headers with an empty 403 when
//! listening on loopback; unknown routes answer gin's `404 page not found` text; no
//! `Server` header.

#![expect(
    clippy::result_large_err,
    reason = "handlers fail with a ready-made native error `Response`; boxing it would only \
              add noise on the cold error path of a test emulator"
)]

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Map, Value};

use crate::chat::{self, ChatInput, Reply};
use crate::openai::{self, Flavor, MID_STREAM_ERROR};
use crate::server::{
    json_response, native_error, parse_object, text_response, HandlerResult, RouteClass, Shared,
};
use crate::stream::{self, ndjson_frame, StreamPlan, NDJSON};
use crate::{fake, Behavior, EmulatedKind, EmulatedModel, EMBEDDING_DIMS};

/// Ollama's queue-full message (two spaces after the full stop, as upstream).
pub(crate) const SERVER_BUSY: &str =
    "server busy, please try again.  maximum pending requests exceeded";

const KIND: EmulatedKind = EmulatedKind::Ollama;
const V1_CHAT: &str = "/v1/chat/completions";
const V1_EMBEDDINGS: &str = "/v1/embeddings";
const V1_COMPLETIONS: &str = "/v1/completions";

/// `name` with the default `:latest` tag when it has none (`[namespace/]model[:tag]`).
pub(crate) fn full_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

pub(crate) fn classify(path: &str) -> RouteClass {
    match path {
        "/" | "/api/version" => RouteClass::Probe,
        "/api/tags" | "/api/show" | "/api/ps" | "/v1/models" => RouteClass::Listing,
        "/api/chat" | V1_CHAT | V1_COMPLETIONS => RouteClass::Chat,
        "/api/embed" | "/api/embeddings" | V1_EMBEDDINGS => RouteClass::Embeddings,
        p if p.starts_with("/v1/models/") => RouteClass::Listing,
        _ => RouteClass::Unknown,
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(root_handler))
        .route("/api/version", get(version_handler))
        .route("/api/tags", get(tags_handler))
        .route("/api/show", post(show_handler))
        .route("/api/ps", get(ps_handler))
        .route("/api/chat", post(chat_handler))
        .route("/api/embed", post(embed_handler))
        .route("/api/embeddings", post(legacy_embeddings_handler))
        .route("/v1/models", get(v1_models_handler))
        .route("/v1/models/{*model}", get(v1_model_handler))
        .route(V1_CHAT, post(v1_chat_handler))
        .route(V1_COMPLETIONS, post(v1_completions_handler))
        .route(V1_EMBEDDINGS, post(v1_embeddings_handler))
        .fallback(not_found_handler)
        .method_not_allowed_fallback(not_found_handler)
}

// === Host guard ===

/// Strips the port from a `Host` value the way Go's `net.SplitHostPort` does (bracketed
/// IPv6 included); a value it cannot split is used whole.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.split_once(':') {
        Some((h, port)) if !port.contains(':') => h,
        _ => host,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        // fc00::/7, unique local addresses (Go's `IsPrivate`).
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Ollama's `allowedHost`: local names, loopback/private/unspecified IPs and the machine's
/// own host name.
fn host_allowed(host: &str, hostname: Option<&str>) -> bool {
    let host = host_without_port(host).to_ascii_lowercase();
    if host.is_empty() || host == "localhost" || Some(host.as_str()) == hostname {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback() || ip.is_unspecified() || is_private(ip);
    }
    [".localhost", ".local", ".internal"]
        .iter()
        .any(|tld| host.ends_with(tld))
}

/// `allowedHostsMiddleware`: active only when listening on loopback.
pub(crate) async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if st.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !host_allowed(host, st.hostname.as_deref()) {
            return StatusCode::FORBIDDEN.into_response();
        }
        if req.method() == Method::OPTIONS {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
    next.run(req).await
}

// === probes and listings ===

async fn root_handler() -> Response {
    text_response(StatusCode::OK, "Ollama is running")
}

async fn not_found_handler() -> Response {
    text_response(StatusCode::NOT_FOUND, "404 page not found")
}

async fn version_handler() -> Response {
    json_response(StatusCode::OK, &json!({"version": "0.12.6"}))
}

fn family(m: &EmulatedModel) -> &'static str {
    if m.embedding {
        "bert"
    } else {
        "llama"
    }
}

fn size(m: &EmulatedModel) -> u64 {
    if m.embedding {
        274_302_450
    } else {
        2_019_393_189
    }
}

fn digest(m: &EmulatedModel) -> String {
    fake::hex_id(&m.name, 64)
}

fn details(m: &EmulatedModel, with_lengths: bool) -> Value {
    let (parameter_size, quantization) = if m.embedding {
        ("137M", "F16")
    } else {
        ("3.2B", "Q4_K_M")
    };
    let mut d = Map::new();
    d.insert("parent_model".into(), json!(""));
    d.insert("format".into(), json!("gguf"));
    d.insert("family".into(), json!(family(m)));
    d.insert("families".into(), json!([family(m)]));
    d.insert("parameter_size".into(), json!(parameter_size));
    d.insert("quantization_level".into(), json!(quantization));
    if with_lengths {
        if let Some(ctx) = m.context_length {
            d.insert("context_length".into(), json!(ctx));
        }
        if m.embedding {
            d.insert("embedding_length".into(), json!(EMBEDDING_DIMS));
        }
    }
    Value::Object(d)
}

async fn tags_handler(State(st): State<Shared>) -> Response {
    let models: Vec<Value> = st
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "modified_at": fake::rfc3339(st.created),
                "size": size(m),
                "digest": digest(m),
                "details": details(m, true),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

fn capabilities(m: &EmulatedModel) -> Vec<&'static str> {
    if m.embedding {
        return vec!["embedding"];
    }
    let mut caps = vec!["completion"];
    for (on, cap) in [
        (m.tools, "tools"),
        (m.vision, "vision"),
        (m.thinking, "thinking"),
        (m.audio, "audio"),
        (m.insert, "insert"),
    ] {
        if on {
            caps.push(cap);
        }
    }
    caps
}

fn model_not_found(path: &str, name: &str) -> Response {
    native_error(
        KIND,
        path,
        StatusCode::NOT_FOUND,
        &format!("model '{name}' not found"),
    )
}

fn bad_request(path: &str, msg: &str) -> Response {
    native_error(KIND, path, StatusCode::BAD_REQUEST, msg)
}

/// gin's `ShouldBindJSON` errors: `missing request body` for an empty body, the decoder's
/// message otherwise.
fn parse_body(path: &str, bytes: &[u8]) -> Result<Value, Response> {
    parse_object(bytes).map_err(|e| match e {
        None => bad_request(path, "missing request body"),
        Some(msg) => bad_request(path, &msg),
    })
}

/// The `model` field, required by every Ollama route that takes one.
fn required_model<'a>(path: &str, body: &'a Value, keys: &[&str]) -> Result<&'a str, Response> {
    keys.iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_request(path, "model is required"))
}

async fn show_handler(State(st): State<Shared>, body: Bytes) -> Response {
    show(&st, &body).unwrap_or_else(|e| e)
}

fn show(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let path = "/api/show";
    let body = parse_body(path, bytes)?;
    let name = required_model(path, &body, &["model", "name"])?;
    let m = st
        .find_model(name)
        .ok_or_else(|| model_not_found(path, name))?;
    let arch = family(m);
    let embedding_length = if m.embedding { EMBEDDING_DIMS } else { 3072 };
    let mut info = Map::new();
    info.insert("general.architecture".into(), json!(arch));
    info.insert("general.parameter_count".into(), json!(3_212_749_888_u64));
    info.insert(format!("{arch}.context_length"), json!(m.ctx()));
    info.insert(format!("{arch}.embedding_length"), json!(embedding_length));
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "license": "",
            "modelfile": format!("# Modelfile generated by \"ollama show\"\nFROM {}\n", m.name),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(m, false),
            "model_info": info,
            "capabilities": capabilities(m),
            "modified_at": fake::rfc3339(st.created),
        }),
    ))
}

async fn ps_handler(State(st): State<Shared>) -> Response {
    let expires = fake::rfc3339(chrono::Utc::now().timestamp() + 300);
    let models: Vec<Value> = st
        .control
        .loaded()
        .iter()
        .filter_map(|name| st.find_model(name))
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "size": size(m),
                "digest": digest(m),
                "details": details(m, false),
                "expires_at": expires,
                "size_vram": size(m),
                // Ollama allocates its default runtime context, not the training length.
                "context_length": m.ctx().min(4096),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

fn owned_by(name: &str) -> &str {
    name.rsplit_once('/').map_or("library", |(ns, _)| ns)
}

fn v1_model(st: &Shared, m: &EmulatedModel) -> Value {
    json!({"id": m.name, "object": "model", "created": st.created, "owned_by": owned_by(&m.name)})
}

async fn v1_models_handler(State(st): State<Shared>) -> Response {
    let data: Vec<Value> = st.models.iter().map(|m| v1_model(&st, m)).collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

async fn v1_model_handler(State(st): State<Shared>, Path(name): Path<String>) -> Response {
    match st.find_model(&name) {
        Some(m) => json_response(StatusCode::OK, &v1_model(&st, m)),
        None => native_error(
            KIND,
            "/v1/models",
            StatusCode::NOT_FOUND,
            &format!("model \"{name}\" not found"),
        ),
    }
}

// === chat ===

/// Checks shared by both chat dialects; returns the served model.
fn chat_model<'a>(
    st: &'a Shared,
    path: &str,
    input: &ChatInput,
    tools: bool,
) -> Result<&'a EmulatedModel, Response> {
    if input.model.is_empty() {
        return Err(bad_request(path, "model is required"));
    }
    let m = st
        .find_model(&input.model)
        .ok_or_else(|| model_not_found(path, &input.model))?;
    if m.embedding {
        return Err(bad_request(
            path,
            &format!("\"{}\" does not support chat", input.model),
        ));
    }
    if tools && !m.tools {
        return Err(bad_request(
            path,
            &format!("\"{}\" does not support tools", input.model),
        ));
    }
    Ok(m)
}

/// `think` is a bool or a level (`"low"`, `"medium"`, `"high"`, `"max"`).
fn wants_thinking(body: &Value) -> bool {
    match body.get("think") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty() && s != "false",
        _ => false,
    }
}

/// Final-line statistics, all durations in nanoseconds.
fn stats(reply: &Reply) -> Map<String, Value> {
    const LOAD_NS: u64 = 1_000_000;
    let prompt_ns = reply.prompt_tokens * 1_000_000;
    let eval_ns = reply.completion_tokens * 10_000_000;
    let mut m = Map::new();
    m.insert(
        "total_duration".into(),
        json!(LOAD_NS + prompt_ns + eval_ns),
    );
    m.insert("load_duration".into(), json!(LOAD_NS));
    m.insert("prompt_eval_count".into(), json!(reply.prompt_tokens));
    m.insert("prompt_eval_duration".into(), json!(prompt_ns));
    m.insert("eval_count".into(), json!(reply.completion_tokens));
    m.insert("eval_duration".into(), json!(eval_ns));
    m
}

/// `message.tool_calls`: arguments as an object; `id` only on newer builds.
fn native_tool_calls(st: &Shared, reply: &Reply) -> Option<Value> {
    let with_id = !st
        .control
        .no_tool_call_ids
        .load(std::sync::atomic::Ordering::SeqCst);
    reply.tool_call.as_ref().map(|tc| {
        let mut call = json!({
            "function": {"index": 0, "name": tc.name, "arguments": tc.arguments},
        });
        if with_id {
            call["id"] = json!(tc.id);
        }
        json!([call])
    })
}

fn chat_line(model: &str, message: Value, done: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("model".into(), json!(model));
    m.insert("created_at".into(), json!(fake::now_rfc3339()));
    m.insert("message".into(), message);
    m.insert("done".into(), json!(done));
    m
}

fn done_line(model: &str, message: Value, done_reason: &str, reply: Option<&Reply>) -> Value {
    let mut m = chat_line(model, message, true);
    m.insert("done_reason".into(), json!(done_reason));
    if let Some(reply) = reply {
        m.extend(stats(reply));
    }
    Value::Object(m)
}

/// Ollama decodes `messages[].tool_calls[].function.arguments` into a map: anything but
/// a JSON object (such as OpenAI's JSON text) fails the request with Go's decode error.
fn check_tool_calls(path: &str, body: &Value) -> Result<(), Response> {
    let messages = body.get("messages").and_then(Value::as_array);
    for m in messages.into_iter().flatten() {
        let calls = m.get("tool_calls").and_then(Value::as_array);
        for c in calls.into_iter().flatten() {
            match c.pointer("/function/arguments") {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(v) => {
                    return Err(bad_request(
                        path,
                        &format!(
                            "json: cannot unmarshal {} into Go struct field \
                             ToolCallFunction.messages.tool_calls.function.arguments of type \
                             api.ToolCallFunctionArguments",
                            go_type(v)
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

async fn chat_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    native_chat(&st, &behavior, &body).unwrap_or_else(|e| e)
}

fn native_chat(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let path = "/api/chat";
    let body = parse_body(path, bytes)?;
    check_tool_calls(path, &body)?;
    let input = ChatInput::parse(&body);
    let m = chat_model(st, path, &input, !input.tool_names.is_empty())?;
    let think = wants_thinking(&body);
    if think && !m.thinking {
        return Err(bad_request(
            path,
            &format!("\"{}\" does not support thinking", input.model),
        ));
    }
    st.control.mark_loaded(&m.name);
    let echo = input.model.as_str();
    let empty = json!({"role": "assistant", "content": ""});
    if !input.has_messages {
        // A request without messages only loads the model.
        return Ok(json_response(
            StatusCode::OK,
            &done_line(echo, empty, "load", None),
        ));
    }
    let reply = chat::plan(KIND.as_str(), &m.name, &input, think);
    // Ollama reports `stop` even when the turn ended with tool calls.
    let done_reason = if reply.finish == "length" {
        "length"
    } else {
        "stop"
    };
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(true) {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(reply.content()));
        if let Some(r) = &reply.reasoning {
            message.insert("thinking".into(), json!(r));
        }
        if let Some(calls) = native_tool_calls(st, &reply) {
            message.insert("tool_calls".into(), calls);
        }
        let full = done_line(echo, Value::Object(message), done_reason, Some(&reply));
        return Ok(stream::json_or_drop(behavior, &full));
    }
    let mut frames = Vec::new();
    if let Some(r) = &reply.reasoning {
        let message = json!({"role": "assistant", "content": "", "thinking": r});
        frames.push(ndjson_frame(&Value::Object(chat_line(
            echo, message, false,
        ))));
    }
    for piece in &reply.pieces {
        let message = json!({"role": "assistant", "content": piece});
        frames.push(ndjson_frame(&Value::Object(chat_line(
            echo, message, false,
        ))));
    }
    if let Some(calls) = native_tool_calls(st, &reply) {
        let message = json!({"role": "assistant", "content": "", "tool_calls": calls});
        frames.push(ndjson_frame(&Value::Object(chat_line(
            echo, message, false,
        ))));
    }
    let terminal = frames.len();
    frames.push(ndjson_frame(&done_line(
        echo,
        empty,
        done_reason,
        Some(&reply),
    )));
    let plan = StreamPlan {
        content_type: NDJSON,
        frames,
        terminal,
        error_frame: ndjson_frame(&json!({ "error": MID_STREAM_ERROR })),
        after_error: Vec::new(),
    };
    Ok(stream::respond(st, behavior, plan))
}

async fn v1_chat_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    v1_chat(&st, &behavior, &body).unwrap_or_else(|e| e)
}

fn v1_chat(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(V1_CHAT, bytes)?;
    let input = ChatInput::parse(&body);
    let m = chat_model(st, V1_CHAT, &input, !input.tool_names.is_empty())?;
    if input.has_remote_image {
        return Err(bad_request(
            V1_CHAT,
            "image URLs are not currently supported, please use base64 encoded data instead",
        ));
    }
    st.control.mark_loaded(&m.name);
    let effort = body
        .get("reasoning_effort")
        .or_else(|| body.pointer("/reasoning/effort"))
        .and_then(Value::as_str);
    let reasoning = m.thinking && effort.is_some_and(|e| e != "none");
    let reply = chat::plan(KIND.as_str(), &m.name, &input, reasoning);
    let flavor = Flavor {
        kind: KIND,
        path: V1_CHAT,
        // Ollama's ids are `chatcmpl-<0..999>`, deliberately not unique.
        id: format!("chatcmpl-{}", st.next_seq() % 1000),
        created: chrono::Utc::now().timestamp(),
        model: input.model.clone(),
        fingerprint: Some("fp_ollama".to_owned()),
        reasoning_field: "reasoning",
        n: 1,
        include_usage: openai::include_usage(&body),
    };
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        Ok(stream::respond(st, behavior, flavor.stream(&reply)))
    } else {
        Ok(stream::json_or_drop(behavior, &flavor.full(&reply)))
    }
}

async fn v1_completions_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    v1_completions(&st, &behavior, &body).unwrap_or_else(|e| e)
}

/// The Go JSON type name used in decoder errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "string",
    }
}

/// `openai.CompletionRequest`: `prompt` is a Go `string` (no arrays), `suffix` becomes
/// the generate request's `suffix`, which needs the `insert` capability.
fn v1_completions(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let path = V1_COMPLETIONS;
    let body = parse_body(path, bytes)?;
    let prompt = match body.get("prompt") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad_request(
                path,
                &format!(
                    "json: cannot unmarshal {} into Go struct field CompletionRequest.prompt of type string",
                    go_type(other)
                ),
            ))
        }
    };
    let name = required_model(path, &body, &["model"])?;
    let m = st
        .find_model(name)
        .ok_or_else(|| model_not_found(path, name))?;
    if m.embedding {
        return Err(bad_request(
            path,
            &format!("\"{name}\" does not support generate"),
        ));
    }
    let suffix = body.get("suffix").and_then(Value::as_str).unwrap_or("");
    if !suffix.is_empty() && !m.insert {
        return Err(bad_request(
            path,
            &format!("\"{name}\" does not support insert"),
        ));
    }
    st.control.mark_loaded(&m.name);
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    let reply = chat::plan(
        KIND.as_str(),
        &m.name,
        &chat::prompt_input(name, &prompt, max_tokens),
        false,
    );
    let flavor = Flavor {
        kind: KIND,
        path,
        id: format!("cmpl-{}", st.next_seq() % 1000),
        created: chrono::Utc::now().timestamp(),
        model: name.to_owned(),
        fingerprint: Some("fp_ollama".to_owned()),
        reasoning_field: "reasoning",
        n: 1,
        include_usage: openai::include_usage(&body),
    };
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        Ok(stream::respond(
            st,
            behavior,
            flavor.completion_stream(&[reply]),
        ))
    } else {
        Ok(stream::json_or_drop(
            behavior,
            &flavor.completion_full(&[reply]),
        ))
    }
}

// === embeddings ===

fn embedding_model<'a>(
    st: &'a Shared,
    path: &str,
    name: &str,
) -> Result<&'a EmulatedModel, Response> {
    let m = st
        .find_model(name)
        .ok_or_else(|| model_not_found(path, name))?;
    if !m.embedding {
        return Err(bad_request(
            path,
            &format!("\"{name}\" does not support embeddings"),
        ));
    }
    st.control.mark_loaded(&m.name);
    Ok(m)
}

async fn embed_handler(State(st): State<Shared>, body: Bytes) -> Response {
    embed(&st, &body).unwrap_or_else(|e| e)
}

fn embed(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let path = "/api/embed";
    let body = parse_body(path, bytes)?;
    let name = required_model(path, &body, &["model"])?;
    embedding_model(st, path, name)?;
    let inputs = match body.get("input") {
        None => Vec::new(),
        input => {
            chat::embedding_inputs(input).ok_or_else(|| bad_request(path, "invalid input type"))?
        }
    };
    let vectors: Vec<Vec<f64>> = inputs.iter().map(|t| fake::embedding(t)).collect();
    let tokens: u64 = inputs.iter().map(|t| fake::count_words(t)).sum();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "model": name,
            "embeddings": vectors,
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": tokens,
        }),
    ))
}

async fn legacy_embeddings_handler(State(st): State<Shared>, body: Bytes) -> Response {
    legacy_embeddings(&st, &body).unwrap_or_else(|e| e)
}

fn legacy_embeddings(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let path = "/api/embeddings";
    let body = parse_body(path, bytes)?;
    let name = required_model(path, &body, &["model"])?;
    embedding_model(st, path, name)?;
    let embedding = match body.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => fake::embedding(p),
        _ => Vec::new(),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "embedding": embedding }),
    ))
}

async fn v1_embeddings_handler(State(st): State<Shared>, body: Bytes) -> Response {
    v1_embeddings(&st, &body).unwrap_or_else(|e| e)
}

fn v1_embeddings(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(V1_EMBEDDINGS, bytes)?;
    let name = required_model(V1_EMBEDDINGS, &body, &["model"])?;
    embedding_model(st, V1_EMBEDDINGS, name)?;
    let inputs = chat::embedding_inputs(body.get("input"))
        .ok_or_else(|| bad_request(V1_EMBEDDINGS, "invalid input type"))?;
    let out = openai::embeddings(name, &inputs, true);
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_default_tag() {
        assert_eq!(full_name("llama3.2"), "llama3.2:latest");
        assert_eq!(full_name("llama3.2:1b"), "llama3.2:1b");
        assert_eq!(
            full_name("localhost:5000/ns/m"),
            "localhost:5000/ns/m:latest"
        );
    }

    #[test]
    fn host_guard_follows_ollama() {
        for ok in [
            "",
            "localhost",
            "localhost:11434",
            "127.0.0.1:11434",
            "[::1]:11434",
            "::1",
            "10.1.2.3",
            "192.168.1.10:11434",
            "0.0.0.0",
            "foo.localhost",
            "box.local:11434",
            "svc.internal",
            "MyBox",
        ] {
            assert!(host_allowed(ok, Some("mybox")), "{ok} should be allowed");
        }
        for bad in [
            "example.com",
            "evil.com:11434",
            "8.8.8.8",
            "localhost.evil.com",
        ] {
            assert!(!host_allowed(bad, Some("mybox")), "{bad} should be refused");
        }
    }
}
