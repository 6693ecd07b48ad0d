//! Shared server plumbing: state, the middleware stack, behaviours and native error shapes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::emulator::ControlInner;
use crate::{lmstudio, ollama, vllm, Behavior, EmulatedKind, EmulatedModel, EmulatorOptions};

/// Request bodies may carry base64 images; 64 MiB is far above anything a test sends.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) type Shared = Arc<AppState>;

/// Result of a handler: the error side is an already-shaped native error response.
pub(crate) type HandlerResult = Result<Response, Response>;

// === impl AppState ===

/// Everything a handler needs. Built once per emulator.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) kind: EmulatedKind,
    pub(crate) models: Vec<EmulatedModel>,
    pub(crate) chunk_delay: Duration,
    pub(crate) stream_padding: usize,
    pub(crate) api_key: Option<String>,
    pub(crate) control: Arc<ControlInner>,
    /// Unix time the emulator started; used as `created` / `modified_at`.
    pub(crate) created: i64,
    /// Whether the server listens on loopback (activates Ollama's `Host` guard).
    pub(crate) loopback: bool,
    /// The machine's host name, which Ollama's `Host` guard also accepts.
    pub(crate) hostname: Option<String>,
    shutdown: watch::Receiver<bool>,
    seq: AtomicU64,
}

impl AppState {
    pub(crate) fn new(
        kind: EmulatedKind,
        opts: &EmulatorOptions,
        addr: SocketAddr,
        control: Arc<ControlInner>,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        let models = opts
            .models
            .iter()
            .cloned()
            .map(|mut m| {
                if kind == EmulatedKind::Ollama {
                    m.name = ollama::full_name(&m.name);
                }
                m
            })
            .collect();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        Arc::new(AppState {
            kind,
            models,
            chunk_delay: opts.chunk_delay,
            stream_padding: opts.stream_padding,
            api_key: opts.api_key.clone(),
            control,
            created: chrono::Utc::now().timestamp(),
            loopback: addr.ip().is_loopback(),
            hostname,
            shutdown,
            seq: AtomicU64::new(0),
        })
    }

    /// Finds a served model by the name a client sent (Ollama adds the default tag).
    pub(crate) fn find_model(&self, name: &str) -> Option<&EmulatedModel> {
        let wanted = match self.kind {
            EmulatedKind::Ollama => ollama::full_name(name),
            _ => name.to_owned(),
        };
        self.models.iter().find(|m| m.name == wanted)
    }

    /// A per-emulator sequence number, for ids.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Resolves when the emulator shuts down (or its owner is gone).
    pub(crate) async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which also means shutdown.
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Sleeps `d`; returns `false` if the emulator shut down first.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.wait_shutdown() => false,
        }
    }
}

// === routing ===

/// What a path is, for deciding which behaviours apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteClass {
    /// Identity / liveness probes: exempt from `StatusError`.
    Probe,
    /// Model listings and metadata.
    Listing,
    Chat,
    Embeddings,
    /// Other known routes (metrics, load).
    Other,
    /// Not a route of this engine: answered by the engine's fallback.
    Unknown,
}

impl RouteClass {
    fn is_api(self) -> bool {
        !matches!(self, Self::Probe | Self::Unknown)
    }
}

fn classify(kind: EmulatedKind, path: &str) -> RouteClass {
    match kind {
        EmulatedKind::Ollama => ollama::classify(path),
        EmulatedKind::LmStudio => lmstudio::classify(path),
        EmulatedKind::Vllm => vllm::classify(path),
    }
}

/// Serves `state.kind`'s API on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Shared,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let behavior = middleware::from_fn_with_state(Arc::clone(&state), behavior_layer);
    // Layers run top (outermost) to bottom:
    // 1. body limit: images in chat bodies exceed axum's 2 MB default;
    // 2. `record_layer`: counts every request and captures chat bodies, before anything can
    //    refuse or stall the request ("0 requests reached the engine" assertions);
    // 3. the engine's own gate (Ollama `Host` guard, vLLM API key, engine headers), which
    //    the real engines apply before routing;
    // 4. `behavior_layer`: the failure injection, closest to the handlers.
    let routes = match state.kind {
        EmulatedKind::Ollama => {
            ollama::routes()
                .layer(behavior)
                .layer(middleware::from_fn_with_state(
                    Arc::clone(&state),
                    ollama::guard,
                ))
        }
        EmulatedKind::LmStudio => lmstudio::routes()
            .layer(behavior)
            .layer(middleware::from_fn(lmstudio::guard)),
        EmulatedKind::Vllm => vllm::routes()
            .layer(behavior)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                vllm::guard,
            )),
    };
    let app = routes
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_layer,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    // Streaming tests measure per-chunk timing: disable Nagle on every accepted socket.
    let listener = listener.tap_io(|tcp| {
        // Failing to set the option only affects latency, never correctness.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|down| *down).await;
        })
        .await
}

fn is_chat_route(kind: EmulatedKind, method: &Method, path: &str) -> bool {
    method == Method::POST && classify(kind, path) == RouteClass::Chat
}

async fn record_layer(State(st): State<Shared>, req: Request, next: Next) -> Response {
    st.control.record_request(req.headers());
    st.control.record_route(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    );
    let extra = st.control.extra_response_headers();
    if extra.is_empty() {
        return record_chat_layer(st, req, next).await;
    }
    let mut resp = record_chat_layer(st, req, next).await;
    for (name, value) in extra {
        resp.headers_mut().append(name, value);
    }
    resp
}

async fn record_chat_layer(st: Shared, req: Request, next: Next) -> Response {
    if !is_chat_route(st.kind, req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        st.control.record_chat(None);
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    st.control
        .record_chat(serde_json::from_slice::<Value>(&bytes).ok());
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn behavior_layer(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let behavior = st.control.behavior();
    req.extensions_mut().insert(behavior.clone());
    let path = req.uri().path().to_owned();
    let class = classify(st.kind, &path);
    match behavior {
        Behavior::Hang => {
            st.wait_shutdown().await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Behavior::Delay(d) => {
            if st.pause(d).await {
                next.run(req).await
            } else {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
        }
        Behavior::HangOn(route) if route == path => {
            st.wait_shutdown().await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Behavior::StatusError(code) if class.is_api() => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!(
                "emulated error: {}",
                status.canonical_reason().unwrap_or("error")
            );
            native_error(st.kind, &path, status, &message)
        }
        Behavior::Loading => match loading_response(&st, &path, class) {
            Some(resp) => resp,
            None => next.run(req).await,
        },
        Behavior::MalformedJson => corrupt(next.run(req).await).await,
        _ => next.run(req).await,
    }
}

/// The "still loading" answer, or `None` when the route answers normally while loading.
fn loading_response(st: &AppState, path: &str, class: RouteClass) -> Option<Response> {
    match st.kind {
        EmulatedKind::Vllm if path == "/health" => {
            Some(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
        EmulatedKind::Vllm => Some(native_error(
            st.kind,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is still loading the model.",
        )),
        EmulatedKind::Ollama if matches!(class, RouteClass::Chat | RouteClass::Embeddings) => {
            Some(native_error(
                st.kind,
                path,
                StatusCode::SERVICE_UNAVAILABLE,
                ollama::SERVER_BUSY,
            ))
        }
        EmulatedKind::LmStudio if matches!(class, RouteClass::Chat | RouteClass::Embeddings) => {
            Some(json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": lmstudio::NO_MODELS_LOADED }),
            ))
        }
        _ => None,
    }
}

// === MalformedJson ===

/// Truncates JSON bodies (status forced to 200) and each streamed JSON payload.
async fn corrupt(resp: Response) -> Response {
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (mut parts, body) = resp.into_parts();
    if content_type.starts_with("application/json") {
        let bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
        parts.status = StatusCode::OK;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(truncate_json(&bytes)));
    }
    if content_type.starts_with("text/event-stream")
        || content_type.starts_with("application/x-ndjson")
    {
        let frames = body.into_data_stream().map(|frame| {
            frame
                .map(|b| corrupt_frame(&b))
                .map_err(|e| io::Error::other(e.to_string()))
        });
        return Response::from_parts(parts, Body::from_stream(frames));
    }
    Response::from_parts(parts, body)
}

/// A strict prefix of a JSON object or array is never valid JSON.
fn truncate_json(b: &[u8]) -> Bytes {
    if b.len() < 4 {
        return Bytes::from_static(b"{\"");
    }
    Bytes::copy_from_slice(&b[..b.len() / 2])
}

/// Each streamed chunk is exactly one frame (see `stream.rs`): keep the framing, cut the
/// JSON.
fn corrupt_frame(b: &[u8]) -> Bytes {
    if let Some(rest) = b.strip_prefix(b"data: ") {
        if rest.starts_with(b"[DONE]") {
            return Bytes::copy_from_slice(b);
        }
        let payload = rest.trim_ascii_end();
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(&truncate_json(payload));
        out.extend_from_slice(b"\n\n");
        return Bytes::from(out);
    }
    let mut out = truncate_json(b.trim_ascii_end()).to_vec();
    out.push(b'\n');
    Bytes::from(out)
}

// === responses and native errors ===

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, Json(body)).into_response()
}

/// vLLM's error `type`: the HTTP reason phrase without spaces, suffixed with `Error`
/// (`BadRequestError`, `NotFoundError`, `InternalServerError`).
fn vllm_error_type(status: StatusCode) -> String {
    let phrase: String = status
        .canonical_reason()
        .unwrap_or(if status.is_client_error() {
            "Bad Request"
        } else {
            "Internal Server Error"
        })
        .split_whitespace()
        .collect();
    if phrase.ends_with("Error") {
        phrase
    } else {
        format!("{phrase}Error")
    }
}

/// The body of the engine's native error for `path`.
pub(crate) fn error_body(kind: EmulatedKind, path: &str, status: StatusCode, msg: &str) -> Value {
    match kind {
        EmulatedKind::Ollama if path.starts_with("/v1/") => {
            let ty = match status.as_u16() {
                400 => "invalid_request_error",
                404 => "not_found_error",
                _ => "api_error",
            };
            json!({"error": {"message": msg, "type": ty, "param": null, "code": null}})
        }
        EmulatedKind::Ollama => json!({ "error": msg }),
        EmulatedKind::Vllm => json!({"error": {
            "message": msg,
            "type": vllm_error_type(status),
            "param": null,
            "code": status.as_u16(),
        }}),
        EmulatedKind::LmStudio => {
            let ty = if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            };
            json!({"error": {"message": msg, "type": ty, "param": null, "code": null}})
        }
    }
}

pub(crate) fn native_error(
    kind: EmulatedKind,
    path: &str,
    status: StatusCode,
    msg: &str,
) -> Response {
    json_response(status, &error_body(kind, path, status, msg))
}

/// Parses a request body as a JSON object, or explains why not (a serde message, or
/// `None` for an empty body).
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Value, Option<String>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(Some("expected a JSON object".to_owned())),
        Err(e) => Err(Some(e.to_string())),
    }
}

/// `text/plain` response.
pub(crate) fn text_response(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_error_types_follow_the_reason_phrase() {
        assert_eq!(vllm_error_type(StatusCode::BAD_REQUEST), "BadRequestError");
        assert_eq!(vllm_error_type(StatusCode::NOT_FOUND), "NotFoundError");
        assert_eq!(
            vllm_error_type(StatusCode::INTERNAL_SERVER_ERROR),
            "InternalServerError"
        );
        assert_eq!(
            vllm_error_type(StatusCode::UNPROCESSABLE_ENTITY),
            "UnprocessableEntityError"
        );
    }

    #[test]
    fn truncated_json_is_invalid() {
        for body in [&b"{}"[..], b"{\"a\":1}", b"[1,2,3]", b"{\"models\":[]}"] {
            let cut = truncate_json(body);
            assert!(serde_json::from_slice::<Value>(&cut).is_err(), "{cut:?}");
        }
        let frame = corrupt_frame(b"data: {\"a\":\"bcd\"}\n\n");
        assert!(frame.starts_with(b"data: {"));
        assert!(frame.ends_with(b"\n\n"));
        assert_eq!(&corrupt_frame(b"data: [DONE]\n\n")[..], b"data: [DONE]\n\n");
    }
}
