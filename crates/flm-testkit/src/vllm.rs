//! vLLM emulator: the OpenAI-compatible server (FastAPI / uvicorn).
//!
//! Quirks reproduced: `/health` answers an empty body; errors are nested with an integer
//! `code` and a Python-ish `type`; unknown routes answer FastAPI's `{"detail":"Not Found"}`;
//! `model` is optional (the first served model); `n` is honoured; `--api-key` guards only
//! `/v1/*` with a flat `{"error":"Unauthorized"}`; responses carry `server: uvicorn`.

#![expect(
    clippy::result_large_err,
    reason = "handlers fail with a ready-made native error `Response`; boxing it would only \
              add noise on the cold error path of a test emulator"
)]

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::chat::{self, ChatInput};
use crate::openai::{self, Flavor};
use crate::responses::V1_RESPONSES;
use crate::server::{json_response, native_error, parse_object, HandlerResult, RouteClass, Shared};
use crate::{fake, stream, Behavior, EmulatedKind, EmulatedModel};

const KIND: EmulatedKind = EmulatedKind::Vllm;
const V1_CHAT: &str = "/v1/chat/completions";
const V1_EMBEDDINGS: &str = "/v1/embeddings";
const V1_COMPLETIONS: &str = "/v1/completions";
const V1_TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";
const V1_TRANSLATIONS: &str = "/v1/audio/translations";

pub(crate) fn classify(path: &str) -> RouteClass {
    match path {
        "/health" | "/version" | "/ping" => RouteClass::Probe,
        "/v1/models" => RouteClass::Listing,
        V1_CHAT | V1_COMPLETIONS | V1_RESPONSES => RouteClass::Chat,
        V1_EMBEDDINGS => RouteClass::Embeddings,
        "/metrics" | "/load" | V1_TRANSCRIPTIONS | V1_TRANSLATIONS => RouteClass::Other,
        _ => RouteClass::Unknown,
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/health", get(empty_ok_handler))
        .route("/ping", get(empty_ok_handler).post(empty_ok_handler))
        .route("/version", get(version_handler))
        .route("/load", get(load_handler))
        .route("/metrics", get(metrics_handler))
        .route("/v1/models", get(models_handler))
        .route(V1_CHAT, post(chat_handler))
        .route(V1_COMPLETIONS, post(completions_handler))
        .route(V1_RESPONSES, post(responses_handler))
        .route(V1_EMBEDDINGS, post(embeddings_handler))
        .route(V1_TRANSCRIPTIONS, post(transcriptions_handler))
        .route(V1_TRANSLATIONS, post(translations_handler))
        .fallback(not_found_handler)
        .method_not_allowed_fallback(method_not_allowed_handler)
}

/// uvicorn's `server` header, and the `--api-key` check that only covers `/v1/*`.
pub(crate) async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let mut resp = match &st.api_key {
        Some(key) if req.uri().path().starts_with("/v1") => {
            let expected = format!("Bearer {key}");
            let authorized = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
            if authorized {
                next.run(req).await
            } else {
                json_response(StatusCode::UNAUTHORIZED, &json!({"error": "Unauthorized"}))
            }
        }
        _ => next.run(req).await,
    };
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("uvicorn"));
    resp
}

async fn empty_ok_handler() -> Response {
    StatusCode::OK.into_response()
}

async fn not_found_handler() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"}))
}

async fn method_not_allowed_handler() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"detail": "Method Not Allowed"}),
    )
}

async fn version_handler() -> Response {
    json_response(StatusCode::OK, &json!({"version": "0.11.0"}))
}

async fn load_handler() -> Response {
    json_response(StatusCode::OK, &json!({"server_load": 0}))
}

async fn metrics_handler(State(st): State<Shared>) -> Response {
    let model = st.models.first().map_or("", |m| m.name.as_str());
    let body = format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"{model}\"}} 0.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"{model}\"}} 0.0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"{model}\"}} 0.0\n"
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn model_card(st: &Shared, m: &EmulatedModel) -> Value {
    json!({
        "id": m.name,
        "object": "model",
        "created": st.created,
        "owned_by": "vllm",
        "root": m.name,
        "parent": null,
        "max_model_len": m.ctx(),
        "permission": [{
            "id": format!("modelperm-{}", fake::hex_id(&m.name, 32)),
            "object": "model_permission",
            "created": st.created,
            "allow_create_engine": false,
            "allow_sampling": true,
            "allow_logprobs": true,
            "allow_search_indices": false,
            "allow_view": true,
            "allow_fine_tuning": false,
            "organization": "*",
            "group": null,
            "is_blocking": false,
        }],
    })
}

async fn models_handler(State(st): State<Shared>) -> Response {
    let data: Vec<Value> = st.models.iter().map(|m| model_card(&st, m)).collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn bad_request(path: &str, msg: &str) -> Response {
    native_error(KIND, path, StatusCode::BAD_REQUEST, msg)
}

/// FastAPI request validation failures become 400 `BadRequestError` in vLLM.
fn parse_body(path: &str, bytes: &[u8]) -> Result<Value, Response> {
    parse_object(bytes).map_err(|e| {
        let detail = e.unwrap_or_else(|| "Expecting value: line 1 column 1 (char 0)".to_owned());
        bad_request(
            path,
            &format!(
                "[{{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', 'ctx': {{'error': '{detail}'}}}}]"
            ),
        )
    })
}

/// `serving_engine._check_model`: `model` may be omitted (first served model); an unknown
/// one is a 404.
fn served_model<'a>(
    st: &'a Shared,
    path: &str,
    body: &Value,
) -> Result<&'a EmulatedModel, Response> {
    match body.get("model").and_then(Value::as_str) {
        None | Some("") => st.models.first().ok_or_else(|| {
            native_error(
                KIND,
                path,
                StatusCode::NOT_FOUND,
                "The model `` does not exist.",
            )
        }),
        Some(name) => st.find_model(name).ok_or_else(|| {
            native_error(
                KIND,
                path,
                StatusCode::NOT_FOUND,
                &format!("The model `{name}` does not exist."),
            )
        }),
    }
}

async fn transcriptions_handler(
    State(st): State<Shared>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    audio(&st, V1_TRANSCRIPTIONS, &headers, &body).unwrap_or_else(|e| e)
}

async fn translations_handler(
    State(st): State<Shared>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    audio(&st, V1_TRANSLATIONS, &headers, &body).unwrap_or_else(|e| e)
}

/// vLLM's speech-to-text routes (`serving_transcription.py`): a multipart form with
/// `file` and `model` (optional: the first served model), `language`, `prompt`,
/// `temperature`, `response_format` (`json`, `text`, `verbose_json`). A model that is
/// not a speech-recognition model is refused with 400. The emulated answer names the
/// model and the number of audio bytes received, so a relay can be checked byte-exact.
fn audio(
    st: &Shared,
    path: &'static str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> HandlerResult {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = crate::form::parse(ct, body)
        .map_err(|e| bad_request(path, &format!("There was an error parsing the body: {e}")))?;
    let field = |name: &str| form.iter().find(|p| p.name == name);
    let file = field("file").ok_or_else(|| {
        bad_request(
            path,
            "[{'type': 'missing', 'loc': ('body', 'file'), 'msg': 'Field required', 'input': None}]",
        )
    })?;
    let model_json = match field("model") {
        Some(m) => json!({"model": m.text()}),
        None => json!({}),
    };
    let model = served_model(st, path, &model_json)?;
    if !model.transcription {
        return Err(bad_request(
            path,
            &format!(
                "The model does not support {} API",
                if path == V1_TRANSCRIPTIONS {
                    "Transcriptions"
                } else {
                    "Translations"
                }
            ),
        ));
    }
    let format = field("response_format").map_or_else(|| "json".to_owned(), |f| f.text());
    let verb = if path == V1_TRANSCRIPTIONS {
        "transcribed"
    } else {
        "translated"
    };
    let text = format!(
        "Hello from vllm {}: {verb} {} bytes of {}",
        model.name,
        file.data.len(),
        file.filename.as_deref().unwrap_or("audio")
    );
    match format.as_str() {
        "json" => Ok(json_response(StatusCode::OK, &json!({"text": text}))),
        "verbose_json" => Ok(json_response(
            StatusCode::OK,
            &json!({
                "task": if path == V1_TRANSCRIPTIONS { "transcribe" } else { "translate" },
                "language": field("language").map_or_else(|| "en".to_owned(), |f| f.text()),
                "duration": 1.0,
                "text": text,
                "segments": [],
            }),
        )),
        "text" => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
            text,
        )
            .into_response()),
        other => Err(bad_request(
            path,
            &format!("Currently only support response_format `text`, `json` or `verbose_json`, got `{other}`"),
        )),
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
    let body = parse_body(V1_CHAT, bytes)?;
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(bad_request(
            V1_CHAT,
            "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]",
        ));
    }
    let m = served_model(st, V1_CHAT, &body)?;
    if m.embedding {
        return Err(bad_request(
            V1_CHAT,
            "The model does not support Chat Completions API",
        ));
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if n == 0 {
        return Err(bad_request(V1_CHAT, "n must be at least 1."));
    }
    let input = ChatInput::parse(&body);
    let reply = chat::plan(KIND.as_str(), &m.name, &input, m.thinking);
    let flavor = Flavor {
        kind: KIND,
        path: V1_CHAT,
        id: format!("chatcmpl-{}", fake::hex_id(&st.next_seq().to_string(), 32)),
        created: chrono::Utc::now().timestamp(),
        // vLLM echoes the served name, whichever alias was requested.
        model: m.name.clone(),
        fingerprint: None,
        reasoning_field: "reasoning_content",
        n: usize::try_from(n).unwrap_or(1),
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

/// `serving_completion.create_completion`: `prompt` is required (a string, strings or
/// token ids), `suffix` is refused, `max_tokens` defaults to 16, `n` choices per prompt.
fn completions(st: &Shared, behavior: &Behavior, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(V1_COMPLETIONS, bytes)?;
    let prompts = match body.get("prompt") {
        None | Some(Value::Null) => {
            return Err(bad_request(
                V1_COMPLETIONS,
                "[{'type': 'missing', 'loc': ('body', 'prompt'), 'msg': 'Field required'}]",
            ))
        }
        p => chat::completion_prompts(p).ok_or_else(|| {
            bad_request(
                V1_COMPLETIONS,
                "[{'type': 'string_type', 'loc': ('body', 'prompt', 'str'), 'msg': 'Input should be a valid string'}]",
            )
        })?,
    };
    let m = served_model(st, V1_COMPLETIONS, &body)?;
    if m.embedding {
        return Err(bad_request(
            V1_COMPLETIONS,
            "The model does not support Completions API",
        ));
    }
    if body.get("suffix").is_some_and(|s| !s.is_null()) {
        return Err(bad_request(
            V1_COMPLETIONS,
            "suffix is not currently supported",
        ));
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if n == 0 {
        return Err(bad_request(V1_COMPLETIONS, "n must be at least 1."));
    }
    let max_tokens = Some(body.get("max_tokens").and_then(Value::as_u64).unwrap_or(16));
    let mut replies = Vec::new();
    for p in &prompts {
        let input = chat::prompt_input(&m.name, p, max_tokens);
        let reply = chat::plan(KIND.as_str(), &m.name, &input, false);
        for _ in 0..n {
            replies.push(reply.clone());
        }
    }
    let flavor = Flavor {
        kind: KIND,
        path: V1_COMPLETIONS,
        id: format!("cmpl-{}", fake::hex_id(&st.next_seq().to_string(), 32)),
        created: chrono::Utc::now().timestamp(),
        model: m.name.clone(),
        fingerprint: None,
        reasoning_field: "reasoning_content",
        n: 1,
        include_usage: openai::include_usage(&body),
    };
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        Ok(stream::respond(
            st,
            behavior,
            flavor.completion_stream(&replies),
        ))
    } else {
        Ok(stream::json_or_drop(
            behavior,
            &flavor.completion_full(&replies),
        ))
    }
}

async fn responses_handler(
    State(st): State<Shared>,
    Extension(behavior): Extension<Behavior>,
    body: Bytes,
) -> Response {
    let run = || {
        let body = parse_body(V1_RESPONSES, &body)?;
        let m = served_model(&st, V1_RESPONSES, &body)?;
        crate::responses::vllm_responses(&st, &behavior, &body, m)
    };
    run().unwrap_or_else(|e| e)
}

async fn embeddings_handler(State(st): State<Shared>, body: Bytes) -> Response {
    embeddings(&st, &body).unwrap_or_else(|e| e)
}

fn embeddings(st: &Shared, bytes: &[u8]) -> HandlerResult {
    let body = parse_body(V1_EMBEDDINGS, bytes)?;
    let m = served_model(st, V1_EMBEDDINGS, &body)?;
    if !m.embedding {
        return Err(bad_request(
            V1_EMBEDDINGS,
            "The model does not support Embeddings API",
        ));
    }
    let inputs = chat::embedding_inputs(body.get("input")).ok_or_else(|| {
        bad_request(
            V1_EMBEDDINGS,
            "[{'type': 'missing', 'loc': ('body', 'input'), 'msg': 'Field required'}]",
        )
    })?;
    let mut out = openai::embeddings(&m.name, &inputs, true);
    let now = chrono::Utc::now().timestamp();
    out.insert(
        "id".into(),
        json!(format!(
            "embd-{}",
            fake::hex_id(&st.next_seq().to_string(), 32)
        )),
    );
    out.insert("created".into(), json!(now));
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}
