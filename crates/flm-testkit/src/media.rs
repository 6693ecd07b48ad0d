//! An image-generation and text-to-speech server following the OpenAI API shape, as
//! LocalAI and vLLM-Omni expose it: `GET /v1/models`, `POST /v1/images/generations`
//! (JSON in, `{"created","data":[{"b64_json"}]}` out) and `POST /v1/audio/speech` (JSON
//! in, binary audio out, streamed). FLM reaches such servers as engines of kind
//! `openai` (configured explicitly).
//!
//! Errors use OpenAI's shape `{"error":{"message","type","param","code"}}`.

#![expect(
    clippy::result_large_err,
    reason = "handlers fail with a ready-made error `Response`, as in the engine emulators"
)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The image model served.
pub const IMAGE_MODEL: &str = "tiny-image";
/// The text-to-speech model served.
pub const SPEECH_MODEL: &str = "tiny-tts";
/// Sample rate of the generated speech (16-bit mono PCM).
pub const SPEECH_SAMPLE_RATE: u32 = 16_000;
/// Samples of generated speech per input word.
pub const SAMPLES_PER_WORD: usize = 1_600;

/// A 1×1 transparent PNG, base64.
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[derive(Default)]
struct Seen {
    bodies: Vec<(String, Value)>,
}

struct St {
    seen: Mutex<Seen>,
    created: i64,
}

type Shared = Arc<St>;

/// A running media server; stops on drop.
pub struct MediaServer {
    addr: SocketAddr,
    state: Shared,
    stop: watch::Sender<bool>,
}

impl MediaServer {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(St {
            seen: Mutex::new(Seen::default()),
            created: chrono::Utc::now().timestamp(),
        });
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/images/generations", post(images))
            .route("/v1/audio/speech", post(speech))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found", None, "not_found") })
            .with_state(Arc::clone(&state));
        let (stop, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(Self { addr, state, stop })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// JSON bodies received on `path`, oldest first.
    pub fn bodies_on(&self, path: &str) -> Vec<Value> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bodies
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn error(status: StatusCode, message: &str, param: Option<&str>, code: &str) -> Response {
    (
        status,
        Json(json!({"error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }})),
    )
        .into_response()
}

async fn models(State(st): State<Shared>) -> Response {
    let card =
        |id: &str| json!({"id": id, "object": "model", "created": st.created, "owned_by": "local"});
    Json(json!({"object": "list", "data": [card(IMAGE_MODEL), card(SPEECH_MODEL)]})).into_response()
}

fn parse(st: &St, path: &str, body: &[u8]) -> Result<Value, Response> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
            None,
            "invalid_json",
        )
    })?;
    st.seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .bodies
        .push((path.to_owned(), v.clone()));
    Ok(v)
}

fn check_model(v: &Value, want: &str) -> Result<(), Response> {
    match v.get("model").and_then(Value::as_str) {
        Some(m) if m == want => Ok(()),
        Some(m) => Err(error(
            StatusCode::NOT_FOUND,
            &format!("The model `{m}` does not exist"),
            Some("model"),
            "model_not_found",
        )),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            Some("model"),
            "missing_model",
        )),
    }
}

async fn images(State(st): State<Shared>, body: Bytes) -> Response {
    let run = || -> Result<Response, Response> {
        let v = parse(&st, "/v1/images/generations", &body)?;
        check_model(&v, IMAGE_MODEL)?;
        if v.get("prompt")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "prompt is required",
                Some("prompt"),
                "missing_prompt",
            ));
        }
        if v.get("response_format").and_then(Value::as_str) == Some("url") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "response_format `url` is not supported by this server; use b64_json",
                Some("response_format"),
                "unsupported_response_format",
            ));
        }
        let n = v.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 4);
        let data: Vec<Value> = (0..n)
            .map(|_| json!({"b64_json": PNG_B64, "revised_prompt": null}))
            .collect();
        Ok(Json(json!({"created": chrono::Utc::now().timestamp(), "data": data})).into_response())
    };
    run().unwrap_or_else(|e| e)
}

/// A WAV header for `samples` 16-bit mono samples.
fn wav_header(samples: usize) -> Vec<u8> {
    let data_len = u32::try_from(samples * 2).unwrap_or(u32::MAX);
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&SPEECH_SAMPLE_RATE.to_le_bytes());
    h.extend_from_slice(&(SPEECH_SAMPLE_RATE * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

async fn speech(State(st): State<Shared>, body: Bytes) -> Response {
    let run = || -> Result<Response, Response> {
        let v = parse(&st, "/v1/audio/speech", &body)?;
        check_model(&v, SPEECH_MODEL)?;
        let input = v.get("input").and_then(Value::as_str).unwrap_or_default();
        if input.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "input is required",
                Some("input"),
                "missing_input",
            ));
        }
        if v.get("voice").and_then(Value::as_str).is_none() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "voice is required",
                Some("voice"),
                "missing_voice",
            ));
        }
        let format = v
            .get("response_format")
            .and_then(Value::as_str)
            .unwrap_or("wav");
        let (with_header, content_type) = match format {
            "wav" => (true, "audio/wav"),
            "pcm" => (false, "audio/pcm"),
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "response_format `{other}` is not supported by this server; use wav or pcm"
                    ),
                    Some("response_format"),
                    "unsupported_response_format",
                ))
            }
        };
        // One chunk per word: a quiet square wave, sent as it is "synthesised".
        let words = input.split_whitespace().count().max(1);
        let mut chunks: Vec<Result<Bytes, io::Error>> = Vec::new();
        if with_header {
            chunks.push(Ok(Bytes::from(wav_header(words * SAMPLES_PER_WORD))));
        }
        for w in 0..words {
            let chunk: Vec<u8> = (0..SAMPLES_PER_WORD)
                .flat_map(|i| {
                    let s: i16 = if (i / 20 + w) % 2 == 0 { 800 } else { -800 };
                    s.to_le_bytes()
                })
                .collect();
            chunks.push(Ok(Bytes::from(chunk)));
        }
        let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(resp)
    };
    run().unwrap_or_else(|e| e)
}
