//! LM Studio emulator: `/v1/*` (OpenAI-compatible), `/api/v0/*` and `/api/v1/models`.
//!
//! Quirks reproduced: every response carries `X-Powered-By: Express`; unknown routes and
//! methods answer **200** `{"error":"Unexpected endpoint or method. (GET /foo)"}`;
//! `/v1/models` items have no `created`; an unknown model is a 400 `model_not_found`;
//! with nothing loaded (`Behavior::Loading`) chat answers the flat "No models loaded"
//! error; images sent to a non-vision model are refused.

#![expect(
    clippy::result_large_err,
    reason = "handlers fail with a ready-made native error `Response`; boxing it would only \
              add noise on the cold error path of a test emulator"
)]

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::chat::{self, ChatInput};
use crate::openai::{self, Flavor};
use crate::server::{json_response, native_error, parse_object, HandlerResult, RouteClass, Shared};
use crate::{fake, stream, Behavior, EmulatedKind, EmulatedModel};

/// The error LM Studio gives when no model is loaded and JIT loading is off or failed.
pub(crate) const NO_MODELS_LOADED: &str =
    "No models loaded. Please load a model in the developer page or use the 'lms load' command.";

const KIND: EmulatedKind = EmulatedKind::LmStudio;
const V1_CHAT: &str = "/v1/chat/completions";
const V1_EMBEDDINGS: &str = "/v1/embeddings";
const V1_COMPLETIONS: &str = "/v1/completions";

/// Context length LM Studio loads models with by default.
const LOADED_CONTEXT: u64 = 4096;

pub(crate) fn classify(path: &str) -> RouteClass {
    match path {
        "/v1/models" | "/api/v0/models" | "/api/v1/models" => RouteClass::Listing,
        V1_CHAT | "/api/v0/chat/completions" | V1_COMPLETIONS | "/api/v0/completions" => {
            RouteClass::Chat
        }
        V1_EMBEDDINGS | "/api/v0/embeddings" => RouteClass::Embeddings,
        p if p.starts_with("/api/v0/models/") => RouteClass::Listing,
        _ => RouteClass::Unknown,
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/models", get(v1_models_handler))
        .route("/api/v0/models", get(v0_models_handler))
        .route("/api/v0/models/{*id}", get(v0_model_handler))
        .route("/api/v1/models", get(api_v1_models_handler))
        .route(V1_CHAT, post(chat_handler))
        .route("/api/v0/chat/completions", post(chat_handler))
        .route(V1_COMPLETIONS, post(completions_handler))
        .route("/api/v0/completions", post(completions_handler))
        .route(V1_EMBEDDINGS, post(embeddings_handler))
        .route("/api/v0/embeddings", post(embeddings_handler))
        .fallback(unexpected_endpoint_handler)
        .method_not_allowed_fallback(unexpected_endpoint_handler)
}

/// Express adds `X-Powered-By` to every response.
pub(crate) async fn guard(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert("x-powered-by", HeaderValue::from_static("Express"));
    resp
}

async fn unexpected_endpoint_handler(req: Request) -> Response {
    let msg = format!(
        "Unexpected endpoint or method. ({} {})",
        req.method(),
        req.uri().path()
    );
    json_response(StatusCode::OK, &json!({ "error": msg }))
}

fn is_loaded(behavior: &Behavior) -> bool {
    *behavior != Behavior::Loading
}

fn publisher(m: &EmulatedModel) -> &str {
    m.name
        .split_once('/')
        .map_or("lmstudio-community", |(p, _)| p)
}

fn arch(m: &EmulatedModel) -> &'static str {
    if m.embedding {
        "nomic-bert"
    } else {
        "llama"
    }
}

async fn v1_models_handler(State(st): State<Shared>) -> Response {
    // JIT loading is on by default, so every downloaded model is listed, loaded or not.
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|m| json!({"id": m.name, "object": "model", "owned_by": "organization_owner"}))
        .collect();
    json_response(StatusCode::OK, &json!({"data": data, "object": "list"}))
}

fn v0_entry(m: &EmulatedModel, loaded: bool) -> Value {
    let ty = if m.embedding {
        "embeddings"
    } else if m.vision {
        "vlm"
    } else {
        "llm"
    };
    let mut entry = json!({
        "id": m.name,
        "object": "model",
        "type": ty,
        "publisher": publisher(m),
        "arch": arch(m),
        "compatibility_type": "gguf",
        "quantization": if m.embedding { "Q4_0" } else { "Q4_K_M" },
        "state": if loaded { "loaded" } else { "not-loaded" },
        "max_context_length": m.ctx(),
        "capabilities": if m.tools { json!(["tool_use"]) } else { json!([]) },
    });
    if loaded {
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(
                "loaded_context_length".into(),
                json!(m.ctx().min(LOADED_CONTEXT)),
            );
        }
    }
    entry
}

async fn v0_models_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
) -> Response {
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|m| v0_entry(m, is_loaded(&behavior)))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

async fn v0_model_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    Path(id): Path<String>,
) -> Response {
    match st.find_model(&id) {
        Some(m) => json_response(StatusCode::OK, &v0_entry(m, is_loaded(&behavior))),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("Model \"{id}\" not found") }),
        ),
    }
}

fn api_v1_entry(m: &EmulatedModel, loaded: bool) -> Value {
    let instances = if loaded {
        json!([{
            "id": m.name,
            "config": {
                "context_length": m.ctx().min(LOADED_CONTEXT),
                "eval_batch_size": 512,
                "parallel": 4,
                "flash_attention": true,
            },
        }])
    } else {
        json!([])
    };
    let mut entry = json!({
        "type": if m.embedding { "embedding" } else { "llm" },
        "publisher": publisher(m),
        "key": m.name,
        "display_name": m.name,
        "architecture": arch(m),
        "quantization": {"name": if m.embedding { "Q4_0" } else { "Q4_K_M" }, "bits_per_weight": 4},
        "size_bytes": if m.embedding { 84_106_624_u64 } else { 2_019_393_189 },
        "params_string": if m.embedding { "137M" } else { "3B" },
        "loaded_instances": instances,
        "max_context_length": m.ctx(),
        "format": "gguf",
    });
    if !m.embedding {
        let mut caps = json!({"vision": m.vision, "trained_for_tool_use": m.tools});
        if m.thinking {
            if let Some(obj) = caps.as_object_mut() {
                obj.insert(
                    "reasoning".into(),
                    json!({"allowed_options": ["off", "on"], "default": "on"}),
                );
            }
        }
        if let Some(obj) = entry.as_object_mut() {
            obj.insert("capabilities".into(), caps);
        }
    }
    entry
}

async fn api_v1_models_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
) -> Response {
    let models: Vec<Value> = st
        .models
        .iter()
        .map(|m| api_v1_entry(m, is_loaded(&behavior)))
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

// === chat and embeddings ===

fn bad_request(msg: &str) -> Response {
    native_error(KIND, V1_CHAT, StatusCode::BAD_REQUEST, msg)
}

fn parse_body(bytes: &[u8]) -> Result<Value, Response> {
    parse_object(bytes).map_err(|e| {
        let msg = e.unwrap_or_else(|| "Unexpected end of JSON input".to_owned());
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("Invalid JSON in request body: {msg}") }),
        )
    })
}

fn invalid_model(st: &Shared, name: &str) -> Response {
    let examples: Vec<&str> = st.models.iter().map(|m| m.name.as_str()).collect();
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {
            "message": format!(
                "Invalid model identifier \"{name}\". Please specify a valid downloaded model (e.g., {}).",
                examples.join(", ")
            ),
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }}),
    )
}

/// The requested model; when `model` is omitted the first model of the wanted type
/// answers, as LM Studio serves whatever is loaded.
fn requested_model<'a>(
    st: &'a Shared,
    body: &Value,
    embedding: bool,
) -> Result<&'a EmulatedModel, Response> {
    match body.get("model").and_then(Value::as_str) {
        None | Some("") => st
            .models
            .iter()
            .find(|m| m.embedding == embedding)
            .ok_or_else(|| {
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": NO_MODELS_LOADED }),
                )
            }),
        Some(name) => st.find_model(name).ok_or_else(|| invalid_model(st, name)),
    }
}

async fn chat_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    chat(&st, &behavior, &body).unwrap_or_else(|e| e)
}

fn chat(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(bytes)?;
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(bad_request("'messages' field is required"));
    }
    let m = requested_model(st, &body, false)?;
    if m.embedding {
        return Err(bad_request(&format!(
            "Model \"{}\" is an embedding model and cannot be used for chat completions.",
            m.name
        )));
    }
    let input = ChatInput::parse(&body);
    if input.has_image && !m.vision {
        return Err(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "Model does not support images. Please use a model that does."}),
        ));
    }
    let reply = chat::plan(KIND.as_str(), &m.name, &input, m.thinking);
    let seq = st.next_seq().to_string();
    let flavor = Flavor {
        kind: KIND,
        path: V1_CHAT,
        id: format!("chatcmpl-{}", fake::alnum_id(&seq, 20)),
        created: chrono::Utc::now().timestamp(),
        model: m.name.clone(),
        fingerprint: Some(m.name.clone()),
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

async fn completions_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    completions(&st, &behavior, &body).unwrap_or_else(|e| e)
}

/// `/v1/completions`: a string `prompt` on an LLM; other fields (`suffix` included) are
/// not part of LM Studio's documented parameters and are ignored.
fn completions(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(bytes)?;
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return Err(bad_request("'prompt' field is required"));
    };
    let m = requested_model(st, &body, false)?;
    if m.embedding {
        return Err(bad_request(&format!(
            "Model \"{}\" is an embedding model and cannot be used for completions.",
            m.name
        )));
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    let input = chat::prompt_input(&m.name, prompt, max_tokens);
    let reply = chat::plan(KIND.as_str(), &m.name, &input, false);
    let seq = st.next_seq().to_string();
    let flavor = Flavor {
        kind: KIND,
        path: V1_COMPLETIONS,
        id: format!("cmpl-{}", fake::alnum_id(&seq, 20)),
        created: chrono::Utc::now().timestamp(),
        model: m.name.clone(),
        fingerprint: Some(m.name.clone()),
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

async fn embeddings_handler(State(st): State<Shared>, body: Bytes) -> Response {
    embeddings(&st, &body).unwrap_or_else(|e| e)
}

fn embeddings(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(bytes)?;
    let m = requested_model(st, &body, true)?;
    if !m.embedding {
        return Err(native_error(
            KIND,
            V1_EMBEDDINGS,
            StatusCode::BAD_REQUEST,
            &format!("Model \"{}\" is not an embedding model.", m.name),
        ));
    }
    let inputs = chat::embedding_inputs(body.get("input")).ok_or_else(|| {
        native_error(
            KIND,
            V1_EMBEDDINGS,
            StatusCode::BAD_REQUEST,
            "'input' field must be a string or an array of strings",
        )
    })?;
    // LM Studio reports zero usage for embeddings.
    let out = openai::embeddings(&m.name, &inputs, false);
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}
