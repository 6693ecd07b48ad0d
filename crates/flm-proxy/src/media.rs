//! The audio and image routes: `POST /v1/audio/transcriptions`,
//! `/v1/audio/translations` (multipart uploads), `/v1/audio/speech` (binary audio
//! answer) and `/v1/images/generations` (JSON).
//!
//! They sit behind the same layers as chat (defence, API keys and their route scopes —
//! class `audio` or `images` —, audit, metrics); this module reads the request,
//! picks an engine whose capabilities include the modality
//! ([`EngineCapabilities::transcription`], [`EngineCapabilities::audio_outputs`],
//! [`EngineCapabilities::image_generation`]) and relays the exchange.
//!
//! Uploads are streamed: the small text fields are read first (the `model` decides the
//! engine), then the file goes to the engine chunk by chunk under a new multipart
//! boundary, counted against [`upload_limit`] as it passes. When a client sends the
//! file before `model`, the file is held until `model` arrives, still within the limit.
//! Because the body is read once, an upload is not retried on another engine.
//!
//! whisper.cpp's server is reached at its `/inference` path with the OpenAI fields it
//! understands (`file`, `language`, `prompt`, `temperature`, `response_format` — same
//! values —, and `translate=true` for translations); `model` and fields it does not
//! know are left out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::{Body, BodyDataStream};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use flm_core::ports::{RawBody, RawRequest, RawResponse};
use flm_core::upstream::upstream_message;
use flm_core::{EngineCapabilities, EngineError, EngineKind};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::app::{KeyAccess, SharedState};
use crate::defence::ClientIp;
use crate::error::ApiError;
use crate::multipart::{self, Event, PartHead, Reader, Writer};
use crate::request_id::RequestId;
use crate::routing::EngineEntry;

/// Largest audio upload (OpenAI's and Whisper's limit), unless `proxy.max_body_bytes`
/// is larger.
pub const AUDIO_UPLOAD_LIMIT: usize = 25 * 1024 * 1024;
/// Largest text field of an upload.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// `response_format` values of the OpenAI transcription API (whisper.cpp takes the
/// same ones).
const RESPONSE_FORMATS: [&str; 5] = ["json", "text", "srt", "verbose_json", "vtt"];
/// OpenAI upload fields whisper.cpp's server does not know: not sent to it.
const WHISPER_DROPPED: [&str; 5] = [
    "model",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "stream",
    "chunking_strategy",
];

/// whisper.cpp's inference route (a server started without `--inference-path`).
const WHISPER_INFERENCE_PATH: &str = "/inference";

/// The limit an upload is held to.
pub(crate) fn upload_limit(st: &SharedState) -> usize {
    AUDIO_UPLOAD_LIMIT.max(st.settings.max_body_bytes)
}

/// The body size the anomaly detector weighs: an audio upload up to
/// [`AUDIO_UPLOAD_LIMIT`] is what the route is for, not an oversized body.
pub(crate) fn anomaly_body_bytes(path: &str, declared: u64) -> u64 {
    if path.starts_with("/v1/audio/") && declared <= AUDIO_UPLOAD_LIMIT as u64 {
        0
    } else {
        declared
    }
}

/// What a route asks of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modality {
    Transcription,
    Translation,
    Speech,
    ImageGeneration,
}

impl Modality {
    fn path(self) -> &'static str {
        match self {
            Modality::Transcription => "/v1/audio/transcriptions",
            Modality::Translation => "/v1/audio/translations",
            Modality::Speech => "/v1/audio/speech",
            Modality::ImageGeneration => "/v1/images/generations",
        }
    }

    fn supported_by(self, caps: &EngineCapabilities) -> bool {
        match self {
            Modality::Transcription | Modality::Translation => caps.transcription,
            Modality::Speech => caps.audio_outputs,
            Modality::ImageGeneration => caps.image_generation,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Modality::Transcription => "speech-to-text",
            Modality::Translation => "speech translation",
            Modality::Speech => "text-to-speech",
            Modality::ImageGeneration => "image generation",
        }
    }

    /// Error code of engine failures on this route.
    fn error_code(self) -> &'static str {
        match self {
            Modality::Transcription | Modality::Translation => "transcription_error",
            Modality::Speech => "speech_error",
            Modality::ImageGeneration => "image_generation_error",
        }
    }

    /// The engine kinds that serve it, for error messages.
    fn served_by(self) -> &'static str {
        match self {
            Modality::Transcription | Modality::Translation => {
                "whisper.cpp (`whispercpp`), vLLM with a Whisper-family model, or an OpenAI-compatible server (`openai`)"
            }
            Modality::Speech | Modality::ImageGeneration => {
                "an OpenAI-compatible server that implements it (`openai`, e.g. LocalAI or vLLM-Omni)"
            }
        }
    }
}

/// The engines among `candidates` that can serve `modality`; a precise 400 when none
/// can.
fn capable(
    candidates: Vec<Arc<EngineEntry>>,
    modality: Modality,
    model: &str,
) -> Result<Vec<Arc<EngineEntry>>, ApiError> {
    let first = candidates.first().cloned();
    let able: Vec<_> = candidates
        .into_iter()
        .filter(|e| modality.supported_by(&e.engine.capabilities()))
        .collect();
    match (able.is_empty(), first) {
        (false, _) => Ok(able),
        (true, Some(entry)) => Err(ApiError::bad_request(
            "unsupported_modality",
            format!(
                "model `{model}` is served by engine `{}` ({}), which does not offer {} (POST {}); it is served by {}",
                entry.id,
                entry.kind.display_name(),
                modality.what(),
                modality.path(),
                modality.served_by()
            ),
        )),
        (true, None) => Err(ApiError::internal("no engine to try")),
    }
}

/// Tags the answer with the engine and model that gave it (usage metering).
fn served(mut resp: Response, entry: &EngineEntry, model: &str) -> Response {
    resp.extensions_mut().insert(crate::telemetry::Served {
        engine_id: entry.id.to_string(),
        model: flm_core::ModelId::new(entry.id.clone(), model).to_string(),
        kind: entry.kind.slug(),
    });
    resp
}

fn unreachable(modality: Modality, entry: &EngineEntry) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "engine_unreachable",
        "server_error",
        format!(
            "engine `{}` ({}) cannot be reached for POST {}",
            entry.id,
            entry.kind.display_name(),
            modality.path()
        ),
    )
}

fn timed_out(st: &SharedState, entry: &EngineEntry) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "timeout_error",
        format!(
            "engine `{}` did not answer within {} s (proxy.request_timeout_secs)",
            entry.id,
            st.settings.request_timeout.as_secs()
        ),
    )
}

fn upstream_error(modality: Modality, status: u16, body: &[u8], entry: &EngineEntry) -> ApiError {
    let msg = upstream_message(body).unwrap_or_else(|| "empty body".into());
    ApiError::engine(
        modality.error_code(),
        &EngineError::Api {
            status_code: Some(status),
            message: format!("engine `{}` answered HTTP {status}: {msg}", entry.id),
        },
    )
}

fn header_of<'a>(resp: &'a RawResponse, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn collect(body: RawBody) -> Result<Bytes, EngineError> {
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(buf))
}

/// The engine's answer for the client: a success is streamed back as it comes, with
/// its content type; a failure becomes an OpenAI-shaped error.
async fn answer(
    st: &SharedState,
    modality: Modality,
    entry: &EngineEntry,
    resp: RawResponse,
) -> Result<Response, ApiError> {
    let status = resp.status;
    if !(200..300).contains(&status) {
        let body = tokio::time::timeout(st.settings.request_timeout, collect(resp.body))
            .await
            .map_err(|_| timed_out(st, entry))?
            .map_err(|e| ApiError::engine(modality.error_code(), &e))?;
        return Err(upstream_error(modality, status, &body, entry));
    }
    // The API never serves HTML: whisper.cpp labels its plain-text answers
    // (`response_format=text`) `text/html`.
    let content_type = match header_of(&resp, "content-type") {
        Some(v) if v.trim_start().to_ascii_lowercase().starts_with("text/html") => {
            HeaderValue::from_static("text/plain; charset=utf-8")
        }
        Some(v) => {
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("application/octet-stream"))
        }
        None => HeaderValue::from_static("application/octet-stream"),
    };
    let body = resp
        .body
        .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    let mut out = Response::new(Body::from_stream(body));
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(out)
}

// === uploads: transcriptions and translations ===

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    req: Request,
) -> Result<Response, ApiError> {
    upload(st, rid, access, ip, req, Modality::Transcription).await
}

/// `POST /v1/audio/translations`.
pub async fn translations(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    req: Request,
) -> Result<Response, ApiError> {
    upload(st, rid, access, ip, req, Modality::Translation).await
}

/// Why reading an upload stopped.
#[derive(Debug, Clone)]
enum UploadError {
    TooLarge(usize),
    Read(String),
    Malformed(String),
    Timeout,
}

impl UploadError {
    fn api(&self) -> ApiError {
        match self {
            UploadError::TooLarge(limit) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "invalid_request_error",
                format!("the upload exceeds {limit} bytes (25 MiB, or proxy.max_body_bytes when larger)"),
            ),
            UploadError::Read(e) => ApiError::bad_request(
                "file_read_error",
                format!("could not read the upload: {e}"),
            ),
            UploadError::Malformed(e) => ApiError::bad_request(
                "invalid_multipart",
                format!("the multipart/form-data body is malformed: {e}"),
            ),
            UploadError::Timeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "timeout_error",
                "the upload was not received in time",
            ),
        }
    }
}

/// The client's multipart body, read event by event and counted against the limit.
struct Source {
    input: BodyDataStream,
    reader: Reader,
    read: usize,
    limit: usize,
    ended: bool,
}

impl Source {
    async fn next(&mut self) -> Result<Event, UploadError> {
        loop {
            if let Some(e) = self
                .reader
                .next_event()
                .map_err(|m| UploadError::Malformed(m.0))?
            {
                return Ok(e);
            }
            if self.ended {
                return Err(UploadError::Malformed(
                    "the body ended before the closing boundary".into(),
                ));
            }
            match self.input.next().await {
                Some(Ok(chunk)) => {
                    self.read += chunk.len();
                    if self.read > self.limit {
                        return Err(UploadError::TooLarge(self.limit));
                    }
                    self.reader.push(&chunk);
                }
                Some(Err(e)) => return Err(UploadError::Read(e.to_string())),
                None => self.ended = true,
            }
        }
    }
}

/// One part held in memory.
struct Held {
    head: PartHead,
    data: Vec<Bytes>,
}

/// What was read before the file is streamed.
struct Head {
    fields: Vec<Held>,
    /// The file part, whole when it came before `model`.
    file: Option<Held>,
    /// Whether the file's content is still to be read from the source.
    file_streaming: bool,
    /// The closing boundary was read.
    complete: bool,
}

impl Head {
    fn text(&self, name: &str) -> Option<String> {
        self.fields.iter().find(|f| f.head.name == name).map(|f| {
            let bytes: Vec<u8> = f.data.iter().flat_map(|b| b.iter().copied()).collect();
            String::from_utf8_lossy(&bytes).trim().to_owned()
        })
    }
}

async fn read_head(src: &mut Source) -> Result<Head, UploadError> {
    let mut head = Head {
        fields: Vec::new(),
        file: None,
        file_streaming: false,
        complete: false,
    };
    loop {
        match src.next().await? {
            Event::End => {
                head.complete = true;
                return Ok(head);
            }
            Event::Part(h) if h.name == "file" && head.file.is_none() => {
                let model_known = head.fields.iter().any(|f| f.head.name == "model");
                if model_known {
                    head.file = Some(Held {
                        head: h,
                        data: Vec::new(),
                    });
                    head.file_streaming = true;
                    return Ok(head);
                }
                let data = read_part(src, usize::MAX).await?;
                head.file = Some(Held { head: h, data });
            }
            Event::Part(h) => {
                let data = read_part(src, MAX_FIELD_BYTES).await.map_err(|e| match e {
                    UploadError::TooLarge(_) => UploadError::Malformed(format!(
                        "the field `{}` exceeds {MAX_FIELD_BYTES} bytes",
                        h.name
                    )),
                    e => e,
                })?;
                head.fields.push(Held { head: h, data });
            }
            Event::Data(_) | Event::PartEnd => {
                return Err(UploadError::Malformed("unexpected part content".into()))
            }
        }
    }
}

/// The rest of the current part (its content was not read yet), at most `max` bytes.
async fn read_part(src: &mut Source, max: usize) -> Result<Vec<Bytes>, UploadError> {
    let mut data = Vec::new();
    let mut len = 0usize;
    loop {
        match src.next().await? {
            Event::Data(d) => {
                len += d.len();
                if len > max {
                    return Err(UploadError::TooLarge(max));
                }
                data.push(d);
            }
            Event::PartEnd => return Ok(data),
            _ => return Err(UploadError::Malformed("a part has no end".into())),
        }
    }
}

/// How the fields of an upload are sent to one engine.
struct FieldMap {
    whisper: bool,
    engine_model: String,
}

impl FieldMap {
    /// Whether a part is sent to the engine (`model` is, with the engine's name).
    fn keep(&self, name: &str) -> bool {
        !(self.whisper && WHISPER_DROPPED.contains(&name))
    }
}

async fn upload(
    st: SharedState,
    rid: RequestId,
    access: KeyAccess,
    ip: Option<Extension<ClientIp>>,
    req: Request,
    modality: Modality,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = multipart::form_boundary(content_type) else {
        return Err(ApiError::bad_request(
            "invalid_content_type",
            format!(
                "POST {} takes multipart/form-data (with a boundary) carrying a `file` and a `model` field, not `{}`",
                modality.path(),
                flm_core::upstream::one_line(if content_type.is_empty() { "no Content-Type" } else { content_type }, 80)
            ),
        ));
    };
    let limit = upload_limit(&st);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(UploadError::TooLarge(limit).api());
    }
    let mut src = Source {
        input: body.into_data_stream(),
        reader: Reader::new(&boundary),
        read: 0,
        limit,
        ended: false,
    };
    let head = match tokio::time::timeout(st.settings.request_timeout, read_head(&mut src)).await {
        Err(_) => return Err(UploadError::Timeout.api()),
        Ok(r) => r.map_err(|e| e.api())?,
    };
    let Some(model) = head.text("model").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "missing_model",
            format!(
                "POST {} needs a `model` field (e.g. `whisper-1` or `flm://{{engine_id}}/{{model}}`; see GET /v1/models)",
                modality.path()
            ),
        ));
    };
    let Some(file) = head.file.as_ref() else {
        return Err(ApiError::bad_request(
            "missing_file",
            format!(
                "POST {} needs a `file` part with the audio",
                modality.path()
            ),
        ));
    };
    // (A streamed file's size is only known as it passes.)
    if !head.file_streaming && file.data.iter().all(Bytes::is_empty) {
        return Err(ApiError::bad_request(
            "missing_file",
            "the `file` part is empty",
        ));
    }
    if let Some(t) = head.text("temperature") {
        if t.parse::<f32>().map_or(true, |v| !v.is_finite()) {
            return Err(ApiError::bad_request(
                "invalid_temperature",
                format!(
                    "`temperature` must be a number, not `{}`",
                    flm_core::upstream::one_line(&t, 40)
                ),
            ));
        }
    }
    if let Some(f) = head.text("response_format") {
        if !RESPONSE_FORMATS.contains(&f.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_response_format",
                format!(
                    "`response_format` must be one of {}, not `{}`",
                    RESPONSE_FORMATS.join(", "),
                    flm_core::upstream::one_line(&f, 40)
                ),
            ));
        }
    }
    if let Some(Extension(ClientIp(ip))) = ip {
        // The defence sees the non-content fields only (never the prompt or the audio).
        let mut seen = Map::new();
        for name in ["model", "response_format", "language", "temperature"] {
            if let Some(v) = head.text(name) {
                seen.insert(name.into(), Value::String(v));
            }
        }
        st.guard.inspect_body(
            st.exposed,
            ip,
            &rid.0,
            modality.path(),
            &Value::Object(seen),
        )?;
    }
    let routes = st.router.routes(st.first_check_wait).await;
    let resolved = routes.resolve(&model, &access.0.scope)?;
    let engine_model = resolved.model.clone();
    let candidates = capable(resolved.candidates, modality, &model)?;
    let Some(entry) = candidates.into_iter().next() else {
        return Err(ApiError::internal("no engine to try"));
    };
    tracing::debug!(request_id = %rid.0, engine = %entry.id, model = %model, streaming = head.file_streaming, "audio upload");
    let map = FieldMap {
        whisper: entry.kind == EngineKind::WhisperCpp,
        engine_model: engine_model.clone(),
    };
    let writer = Writer::new(format!("flm-{}", rid.0));
    let request = RawRequest {
        method: "POST".into(),
        path_and_query: if map.whisper {
            WHISPER_INFERENCE_PATH.into()
        } else {
            modality.path().into()
        },
        headers: vec![("content-type".into(), writer.content_type())],
        body: Bytes::new(),
    };
    let failure: Arc<Mutex<Option<UploadError>>> = Arc::new(Mutex::new(None));
    let outbound = outbound_body(head, src, writer, map, modality, failure.clone());
    let sent = tokio::time::timeout(
        st.settings.request_timeout,
        entry.engine.relay_stream(request, outbound),
    )
    .await;
    let upload_failure = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(e) = upload_failure {
        return Ok(served(
            axum::response::IntoResponse::into_response(e.api()),
            &entry,
            &engine_model,
        ));
    }
    let result = match sent {
        Err(_) => Err(timed_out(&st, &entry)),
        Ok(Err(EngineError::Network(e))) => {
            tracing::warn!(engine = %entry.id, error = %e, "engine unreachable for an audio upload");
            st.router.mark_down(&entry);
            Err(unreachable(modality, &entry))
        }
        Ok(Err(e)) => Err(ApiError::engine(modality.error_code(), &e)),
        Ok(Ok(resp)) => answer(&st, modality, &entry, resp).await,
    };
    Ok(served(
        result.unwrap_or_else(axum::response::IntoResponse::into_response),
        &entry,
        &engine_model,
    ))
}

/// The body sent to the engine: the held fields (mapped), the file, then the rest of
/// the client's body as it arrives. A failure of the client's body is recorded in
/// `failure` and aborts the engine request.
fn outbound_body(
    head: Head,
    src: Source,
    writer: Writer,
    map: FieldMap,
    modality: Modality,
    failure: Arc<Mutex<Option<UploadError>>>,
) -> RawBody {
    let mut prefix: VecDeque<Bytes> = VecDeque::new();
    if map.whisper && modality == Modality::Translation {
        prefix.push_back(writer.field("translate", "true"));
    }
    for f in &head.fields {
        if !map.keep(&f.head.name) {
            continue;
        }
        if f.head.name == "model" {
            prefix.push_back(writer.field("model", &map.engine_model));
            continue;
        }
        prefix.push_back(writer.part_head(&f.head));
        prefix.extend(f.data.iter().cloned());
        prefix.push_back(Writer::part_end());
    }
    if let Some(file) = &head.file {
        prefix.push_back(writer.part_head(&file.head));
        prefix.extend(file.data.iter().cloned());
        // A streamed file's content and end come from the source.
        if !head.file_streaming {
            prefix.push_back(Writer::part_end());
        }
    }
    if head.complete {
        prefix.push_back(writer.end());
    }
    struct St {
        prefix: VecDeque<Bytes>,
        src: Option<Source>,
        writer: Writer,
        map: FieldMap,
        /// Inside a part that is left out.
        skipping: bool,
        failure: Arc<Mutex<Option<UploadError>>>,
    }
    let st = St {
        prefix,
        src: (!head.complete).then_some(src),
        writer,
        map,
        skipping: false,
        failure,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.prefix.pop_front() {
                return Some((Ok(b), st));
            }
            let src = st.src.as_mut()?;
            match src.next().await {
                Ok(Event::Part(h)) => {
                    // A second `model` is dropped: the engine gets the resolved one.
                    st.skipping = !st.map.keep(&h.name) || h.name == "model";
                    if !st.skipping {
                        return Some((Ok(st.writer.part_head(&h)), st));
                    }
                }
                Ok(Event::Data(d)) => {
                    if !st.skipping {
                        return Some((Ok(d), st));
                    }
                }
                Ok(Event::PartEnd) => {
                    if !std::mem::take(&mut st.skipping) {
                        return Some((Ok(Writer::part_end()), st));
                    }
                }
                Ok(Event::End) => {
                    st.src = None;
                    let end = st.writer.end();
                    return Some((Ok(end), st));
                }
                Err(e) => {
                    let msg = format!("{e:?}");
                    *st.failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    st.src = None;
                    return Some((
                        Err(EngineError::Unsupported(format!(
                            "the client's upload failed: {msg}"
                        ))),
                        st,
                    ));
                }
            }
        }
    }))
}

// === JSON routes: speech and image generation ===

/// `POST /v1/audio/speech`: text-to-speech; the engine's audio is streamed back.
pub async fn speech(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    json_route(st, rid, access, ip, body, Modality::Speech).await
}

/// `POST /v1/images/generations`.
pub async fn image_generations(
    State(st): State<SharedState>,
    Extension(rid): Extension<RequestId>,
    Extension(access): Extension<KeyAccess>,
    ip: Option<Extension<ClientIp>>,
    body: Body,
) -> Result<Response, ApiError> {
    json_route(st, rid, access, ip, body, Modality::ImageGeneration).await
}

/// Checks the fields of a speech or image request that the proxy relies on.
fn validate(obj: &Map<String, Value>, modality: Modality) -> Result<String, ApiError> {
    let model = match obj.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "missing_model",
                format!(
                    "POST {} needs a `model` (see GET /v1/models)",
                    modality.path()
                ),
            ))
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_model_field",
                "`model` must be a non-empty string",
            ))
        }
    };
    let (field, code) = match modality {
        Modality::Speech => ("input", "invalid_input"),
        _ => ("prompt", "invalid_prompt"),
    };
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(model),
        _ => Err(ApiError::bad_request(
            code,
            format!(
                "POST {} needs `{field}` as a non-empty string",
                modality.path()
            ),
        )),
    }
}

async fn json_route(
    st: SharedState,
    rid: RequestId,
    access: KeyAccess,
    ip: Option<Extension<ClientIp>>,
    body: Body,
    modality: Modality,
) -> Result<Response, ApiError> {
    let bytes = crate::handlers::read_body(&st, body).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    if let Some(Extension(ClientIp(ip))) = ip {
        st.guard
            .inspect_body(st.exposed, ip, &rid.0, modality.path(), &value)?;
    }
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body must be a JSON object",
        ));
    };
    let model = validate(&obj, modality)?;
    let routes = st.router.routes(st.first_check_wait).await;
    let resolved = routes.resolve(&model, &access.0.scope)?;
    let engine_model = resolved.model.clone();
    let candidates = capable(resolved.candidates, modality, &model)?;
    let mut body = obj;
    body.insert("model".into(), Value::String(engine_model.clone()));
    let raw = Bytes::from(
        serde_json::to_vec(&body)
            .map_err(|e| ApiError::internal(format!("cannot encode the request: {e}")))?,
    );
    let mut last = None;
    for entry in &candidates {
        let request = RawRequest {
            method: "POST".into(),
            path_and_query: modality.path().into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: raw.clone(),
        };
        let sent =
            tokio::time::timeout(st.settings.request_timeout, entry.engine.relay(request)).await;
        let result = match sent {
            Err(_) => Err(timed_out(&st, entry)),
            Ok(Err(EngineError::Network(e))) => {
                // Nothing reached the client: the next engine may serve it.
                tracing::warn!(engine = %entry.id, error = %e, "engine failed before the first byte; trying the next one");
                st.router.mark_down(entry);
                last = Some(entry.clone());
                continue;
            }
            Ok(Err(e)) => Err(ApiError::engine(modality.error_code(), &e)),
            Ok(Ok(resp)) => answer(&st, modality, entry, resp).await,
        };
        return Ok(served(
            result.unwrap_or_else(axum::response::IntoResponse::into_response),
            entry,
            &engine_model,
        ));
    }
    match last {
        Some(entry) => Ok(served(
            axum::response::IntoResponse::into_response(unreachable(modality, &entry)),
            &entry,
            &engine_model,
        )),
        None => Err(ApiError::internal("no engine to try")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn speech_and_images_need_model_and_text() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            validate(&obj(json!({"prompt": "a cat"})), Modality::ImageGeneration)
                .unwrap_err()
                .code,
            "missing_model"
        );
        assert_eq!(
            validate(&obj(json!({"model": 3, "input": "x"})), Modality::Speech)
                .unwrap_err()
                .code,
            "invalid_model_field"
        );
        assert_eq!(
            validate(&obj(json!({"model": "tts"})), Modality::Speech)
                .unwrap_err()
                .code,
            "invalid_input"
        );
        assert_eq!(
            validate(
                &obj(json!({"model": "m", "prompt": "a cat"})),
                Modality::ImageGeneration
            )
            .unwrap(),
            "m"
        );
    }

    #[test]
    fn whisper_gets_only_fields_it_knows() {
        let m = FieldMap {
            whisper: true,
            engine_model: "whisper-1".into(),
        };
        assert!(!m.keep("model") && !m.keep("timestamp_granularities[]"));
        assert!(m.keep("language") && m.keep("response_format") && m.keep("file"));
        let v = FieldMap {
            whisper: false,
            engine_model: "w".into(),
        };
        assert!(v.keep("model"));
    }
}
