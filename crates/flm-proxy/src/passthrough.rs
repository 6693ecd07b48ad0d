//! `ANY /engine/{engine_id}/{*path}`: an engine's own API, on that engine's detected
//! address only.
//!
//! Any API key can reach it, so it is bounded like chat and read-only by default:
//! - `proxy.passthrough` (`read-only` by default, `full`, `off`) decides what may be
//!   reached; read-only allows, per engine kind, the routes that read (model lists,
//!   info, health) or run inference, and refuses everything that changes or fetches
//!   models or server state, and anything unknown, with `403 passthrough_forbidden`;
//! - the path is checked in its decoded form and forwarded in exactly that form, so the
//!   engine sees what the allow list matched, and a request FLM cannot build is a
//!   `400 invalid_path` of the client, never an engine failure;
//! - the engine's answer head must arrive within `proxy.request_timeout_secs`; a
//!   streamed body (SSE, NDJSON) is bounded by `proxy.stream_timeout_secs`, any other
//!   body by `proxy.request_timeout_secs`, counted from when the request was sent;
//! - a transport failure never marks the engine down by itself: it asks the monitor
//!   for an immediate re-check, which alone decides whether the engine still answers;
//! - the client's credentials (`Authorization`, `Cookie`…) are never forwarded and
//!   the engine's `Set-Cookie` is never returned.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use flm_core::config::PassthroughMode;
use flm_core::ports::{RawBody, RawRequest};
use flm_core::{EngineError, EngineKind};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::app::SharedState;
use crate::error::ApiError;
use crate::handlers::read_body;

/// Request headers never forwarded to an engine: hop-by-hop ones, and credentials
/// meant for FLM (the client's FLM key must not leak to the engine, whatever header a
/// client library puts it in).
const DROP_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "origin",
];

/// Response headers not passed back: hop-by-hop ones, those the proxy sets itself, and
/// cookies (an engine's session must not become the client's).
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "set-cookie",
    "set-cookie2",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "server",
];

/// Allowed routes of one engine kind in `read-only` mode.
struct AllowList {
    /// `GET`/`HEAD` routes.
    read: &'static [&'static str],
    /// `POST` routes (inference, and reads that take a body such as Ollama's show).
    post: &'static [&'static str],
}

/// A route ending in `/*` matches any sub-path of one or more segments (a model name).
fn route_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty()),
        None => pattern == path,
    }
}

/// Ollama: listing, show, version, running models, inference. Not `/api/pull`,
/// `/api/push`, `/api/create`, `/api/copy`, `DELETE /api/delete`, `/api/blobs/*`.
const OLLAMA: AllowList = AllowList {
    read: &[
        "/api/version",
        "/api/tags",
        "/api/ps",
        "/v1/models",
        "/v1/models/*",
    ],
    post: &[
        "/api/show",
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/audio/transcriptions",
    ],
};

/// llama.cpp: health, props, models, metrics, LoRA listing, inference. Not `POST
/// /props`, `/slots` (the listing shows other users' prompts; the actions save,
/// restore and erase caches), `POST /lora-adapters`, router-mode model loading,
/// downloads and deletion.
const LLAMA_CPP: AllowList = AllowList {
    read: &[
        "/health",
        "/v1/health",
        "/props",
        "/models",
        "/v1/models",
        "/metrics",
        "/lora-adapters",
        "/api/tags",
    ],
    post: &[
        "/completion",
        "/completions",
        "/v1/completions",
        "/chat/completions",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/infill",
        "/embedding",
        "/embeddings",
        "/v1/embeddings",
        "/rerank",
        "/reranking",
        "/v1/rerank",
        "/v1/reranking",
        "/tokenize",
        "/detokenize",
        "/apply-template",
        "/api/show",
        "/api/chat",
        "/audio/transcriptions",
        "/v1/audio/transcriptions",
    ],
};

/// vLLM: health, version, models, metrics, load, inference, pooling. Not profiling,
/// cache resets, sleep/wake, LoRA load/unload, weight updates, stored responses.
const VLLM: AllowList = AllowList {
    read: &[
        "/health",
        "/ping",
        "/version",
        "/v1/models",
        "/metrics",
        "/load",
    ],
    post: &[
        "/ping",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/tokenize",
        "/detokenize",
        "/pooling",
        "/classify",
        "/score",
        "/v1/score",
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
    ],
};

/// LM Studio: model lists and inference. Not model load/unload/download, nor the
/// stateful `/v1/responses` and native `/api/v1/chat` (they reach MCP integrations
/// and earlier conversations).
const LM_STUDIO: AllowList = AllowList {
    read: &[
        "/v1/models",
        "/v1/models/*",
        "/api/v0/models",
        "/api/v0/models/*",
        "/api/v1/models",
    ],
    post: &[
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/api/v0/chat/completions",
        "/api/v0/completions",
        "/api/v0/embeddings",
    ],
};

/// Any other OpenAI-compatible server: the OpenAI routes only.
const OPENAI: AllowList = AllowList {
    read: &["/v1/models", "/v1/models/*"],
    post: &["/v1/chat/completions", "/v1/completions", "/v1/embeddings"],
};

/// whisper.cpp's server: its health check and its inference route (never `/load`,
/// which swaps the model).
const WHISPER_CPP: AllowList = AllowList {
    read: &["/health"],
    post: &["/inference"],
};

fn allow_list(kind: EngineKind) -> &'static AllowList {
    match kind {
        EngineKind::Ollama => &OLLAMA,
        EngineKind::LlamaCpp => &LLAMA_CPP,
        EngineKind::Vllm => &VLLM,
        EngineKind::LmStudio => &LM_STUDIO,
        EngineKind::OpenAi => &OPENAI,
        EngineKind::WhisperCpp => &WHISPER_CPP,
    }
}

/// Whether `method path` is on `kind`'s read-only allow list.
pub fn allowed_read_only(kind: EngineKind, method: &Method, path: &str) -> bool {
    let list = allow_list(kind);
    let routes = if method == Method::GET || method == Method::HEAD {
        list.read
    } else if method == Method::POST {
        list.post
    } else {
        return false;
    };
    routes.iter().any(|r| route_matches(r, path))
}

/// The characters a forwarded path may hold once decoded: RFC 3986 `pchar` without
/// `%`, plus `/`. Engine routes and model names never need more; a space, `<`, `%`,
/// `?`, `#`, `\`, a control or non-ASCII character is refused rather than guessed at.
fn path_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn invalid_path(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_path", message)
}

/// Decodes the raw (percent-encoded) path after `/engine/{id}` and checks it: the
/// result is what the allow list matches and exactly what the engine receives, and it
/// is always a valid URI path.
pub fn canonical_path(raw: &str) -> Result<String, ApiError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 1);
    out.push(b'/');
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(invalid_path(
                    "the path has a malformed percent-escape (expected `%` and two hex digits)",
                ));
            };
            i += 3;
            v
        } else {
            i += 1;
            b[i - 1]
        };
        if !path_char_ok(c) {
            let shown = if c.is_ascii_graphic() {
                format!("`{}`", c as char)
            } else {
                format!("byte 0x{c:02X}")
            };
            return Err(invalid_path(format!(
                "the path contains {shown}, which no engine route uses; allowed: letters, digits and -._~!$&'()*+,;=:@/"
            )));
        }
        out.push(c);
    }
    // Only ASCII was accepted above.
    let path = String::from_utf8(out).map_err(|_| invalid_path("the path is not ASCII"))?;
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return Err(invalid_path(
                "empty path segments (`//`, a trailing `/`) are not allowed",
            ));
        }
        if seg == "." || seg == ".." {
            return Err(invalid_path("path segments `.` and `..` are not allowed"));
        }
    }
    Ok(path)
}

/// Percent-decodes an engine id (ids are plain slugs; anything odd simply matches no
/// engine).
fn decode_id(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the raw request path `/engine/{id}/{rest}` (as the client encoded it).
fn split_raw(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix("/engine/")?.split_once('/')
}

/// `ANY /engine/{engine_id}/{*path}`.
pub async fn passthrough(
    State(st): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    let mode = st.settings.passthrough;
    if mode == PassthroughMode::Off {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "passthrough_disabled",
            "permission_error",
            "the engine pass-through is off (`flm config set proxy.passthrough read-only` or `full` enables it; restart the proxy)",
        ));
    }
    let (raw_id, raw_rest) = split_raw(req.uri().path())
        .ok_or_else(|| invalid_path("expected /engine/{engine_id}/{path}"))?;
    let engine_id = decode_id(raw_id);
    let routes = st.router.routes(st.first_check_wait).await;
    let entry = routes.engine(&engine_id).ok_or_else(|| {
        let ids = routes.engine_ids();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "engine_not_found",
            "invalid_request_error",
            format!(
                "engine `{engine_id}` is not available; available engines: {}",
                if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.join(", ")
                }
            ),
        )
    })?;
    let path = canonical_path(raw_rest)?;
    let method = req.method().clone();
    if mode == PassthroughMode::ReadOnly && !allowed_read_only(entry.kind, &method, &path) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "passthrough_forbidden",
            "permission_error",
            format!(
                "`{method} {path}` is not on the read-only allow list of {} engines; the pass-through allows model lists, engine info and inference only (`flm config set proxy.passthrough full` opens every engine route, for every API key; restart the proxy)",
                entry.kind.slug()
            ),
        ));
    }
    let (parts, body) = req.into_parts();
    let headers = forward_headers(&parts.headers);
    let body = read_body(&st, body).await?;
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let request = RawRequest {
        method: method.to_string(),
        path_and_query: format!("{path}{query}"),
        headers,
        body,
    };
    let started = Instant::now();
    let request_timeout = st.settings.request_timeout;
    let resp = match tokio::time::timeout(request_timeout, entry.engine.relay(request)).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "timeout_error",
                format!(
                    "engine `{}` did not answer within {} s (proxy.request_timeout_secs)",
                    entry.id,
                    request_timeout.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => return Err(relay_error(&st, &entry.id.to_string(), &e)),
        Ok(Ok(r)) => r,
    };
    let streamed = resp.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && (v.starts_with("text/event-stream") || v.starts_with("application/x-ndjson"))
    });
    let (limit, setting) = if streamed {
        (st.settings.stream_timeout, "proxy.stream_timeout_secs")
    } else {
        (request_timeout, "proxy.request_timeout_secs")
    };
    let mut out = Response::new(Body::from_stream(bounded_body(
        resp.body,
        started + limit,
        limit,
        setting,
        entry.id.to_string(),
    )));
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in resp.headers {
        let lower = k.to_ascii_lowercase();
        if DROP_RESPONSE_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        // An absolute redirect would name the engine's address.
        if lower == "location" && v.contains("://") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    Ok(out)
}

/// The client's view of a failed exchange. Only a transport failure can mean the
/// engine is gone, and even then it does not decide alone (a client can provoke a
/// reset): the monitor re-checks the engine at once.
fn relay_error(st: &SharedState, engine: &str, e: &EngineError) -> ApiError {
    tracing::warn!(engine = %engine, error = %e, "engine pass-through failed");
    match e {
        EngineError::Unsupported(m) => ApiError::bad_request("invalid_request", m.clone()),
        EngineError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            "timeout_error",
            format!("engine `{engine}` did not answer in time"),
        ),
        EngineError::Network(m) => {
            st.router.recheck();
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "engine_unreachable",
                "server_error",
                format!("engine `{engine}` could not be reached: {m}"),
            )
        }
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "engine_error",
            "server_error",
            format!("engine `{engine}` failed: {other}"),
        ),
    }
}

/// The engine's body, cut off at `deadline` (the client sees an incomplete answer,
/// and the engine sees its connection dropped).
fn bounded_body(
    body: RawBody,
    deadline: Instant,
    limit: Duration,
    setting: &'static str,
    engine: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct St {
        body: RawBody,
        deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
        done: bool,
    }
    let st = St {
        body,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        done: false,
    };
    futures::stream::unfold(st, move |mut st| {
        let engine = engine.clone();
        async move {
            if st.done {
                return None;
            }
            tokio::select! {
                biased;
                next = st.body.next() => match next {
                    Some(Ok(chunk)) => Some((Ok(chunk), st)),
                    Some(Err(e)) => {
                        st.done = true;
                        Some((Err(std::io::Error::other(e)), st))
                    }
                    None => None,
                },
                () = &mut st.deadline => {
                    st.done = true;
                    tracing::warn!(engine = %engine, limit_secs = limit.as_secs(), setting, "engine pass-through answer cut at its time limit");
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the engine's answer exceeded {} s ({setting})", limit.as_secs()),
                        )),
                        st,
                    ))
                }
            }
        }
    })
}

fn forward_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !DROP_REQUEST_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_checked_and_valid_uris() {
        for (raw, want) in [
            ("api/tags", "/api/tags"),
            ("v1/models/llama3.2%3Alatest", "/v1/models/llama3.2:latest"),
            (
                "v1/models/hf.co/org/m:Q4_K_M",
                "/v1/models/hf.co/org/m:Q4_K_M",
            ),
            ("api%2Fdelete", "/api/delete"),
        ] {
            let p = canonical_path(raw).unwrap();
            assert_eq!(p, want);
            assert!(p.parse::<axum::http::Uri>().is_ok(), "{p}");
        }
        for raw in [
            "a%20b",
            "%3C",
            "a%0Ab",
            "a%00",
            "a%7F",
            "%25",
            "a%3Fb",
            "a%23",
            "a%5Cb",
            "%C3%A9",
            "a%2",
            "a%zz",
            "a//b",
            "a/",
            "%2e%2e/api/pull",
            "a/./b",
            "a%2F..%2Fb",
        ] {
            let e = canonical_path(raw).unwrap_err();
            assert_eq!(e.code, "invalid_path", "{raw}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                !e.message.chars().any(char::is_control),
                "{raw}: {}",
                e.message
            );
        }
    }

    #[test]
    fn read_only_allows_reads_and_inference_only() {
        use EngineKind::*;
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        for (kind, m, p) in [
            (Ollama, &get, "/api/tags"),
            (Ollama, &Method::HEAD, "/api/version"),
            (Ollama, &post, "/api/show"),
            (Ollama, &post, "/api/chat"),
            (Ollama, &get, "/v1/models/llama3.2:latest"),
            (LlamaCpp, &get, "/props"),
            (LlamaCpp, &post, "/completion"),
            (LlamaCpp, &post, "/tokenize"),
            (Vllm, &get, "/version"),
            (Vllm, &post, "/v1/completions"),
            (LmStudio, &get, "/api/v0/models/qwen"),
            (OpenAi, &post, "/v1/chat/completions"),
        ] {
            assert!(allowed_read_only(kind, m, p), "{kind:?} {m} {p}");
        }
        for (kind, m, p) in [
            (Ollama, &delete, "/api/delete"),
            (Ollama, &post, "/api/pull"),
            (Ollama, &post, "/api/push"),
            (Ollama, &post, "/api/create"),
            (Ollama, &post, "/api/copy"),
            (Ollama, &post, "/api/blobs/sha256:abc"),
            (Ollama, &get, "/api/tags/x"),
            (Ollama, &get, "/v1/models/"),
            (Ollama, &post, "/api/tags"),
            (LlamaCpp, &post, "/props"),
            (LlamaCpp, &get, "/slots"),
            (LlamaCpp, &post, "/slots/0"),
            (LlamaCpp, &post, "/lora-adapters"),
            (LlamaCpp, &post, "/models/load"),
            (LlamaCpp, &delete, "/models"),
            (Vllm, &post, "/start_profile"),
            (Vllm, &post, "/reset_prefix_cache"),
            (Vllm, &post, "/sleep"),
            (Vllm, &post, "/wake_up"),
            (Vllm, &post, "/v1/load_lora_adapter"),
            (Vllm, &post, "/v1/unload_lora_adapter"),
            (LmStudio, &post, "/api/v1/models/load"),
            (LmStudio, &post, "/api/v1/models/download"),
            (OpenAi, &get, "/anything"),
            (Ollama, &Method::PUT, "/api/chat"),
        ] {
            assert!(!allowed_read_only(kind, m, p), "{kind:?} {m} {p}");
        }
    }
}
