//! The OpenAI-compatible adapter, shared by vLLM, LM Studio, llama.cpp and generic
//! OpenAI-compatible servers. Kind-specific differences are limited to model metadata
//! (where each engine exposes context length and capabilities).

use std::time::Duration;

use async_trait::async_trait;
use flm_core::ports::LlmEngine;
use flm_core::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, ChatStreamChunk, EmbeddingRequest,
    EmbeddingResponse, EngineCapabilities, EngineError, EngineId, EngineKind, ModelInfo, Role,
    Usage,
};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::http::{
    embedded_error, one_line, read_body, send_json, send_stream, status_error, HttpClient,
};
use crate::sse::{frames, Frame, Framing};

/// Adapter for an OpenAI-compatible engine.
pub struct OpenAiCompatEngine {
    id: EngineId,
    kind: EngineKind,
    base_url: String,
    client: HttpClient,
    timeout: Duration,
}

impl OpenAiCompatEngine {
    /// An adapter for the engine at `base_url` (without `/v1`).
    pub fn new(
        id: EngineId,
        kind: EngineKind,
        base_url: &str,
        client: HttpClient,
        timeout: Duration,
    ) -> Self {
        Self {
            id,
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            timeout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn get_json(&self, path: &str) -> Result<Value, EngineError> {
        let url = self.url(path);
        send_json(self.client.raw().get(&url).timeout(self.timeout), &url).await
    }

    fn model(&self, name: &str) -> ModelInfo {
        ModelInfo::basic(&self.id, self.kind, name)
    }

    /// `/v1/models` items as basic model infos, with the context length fields the
    /// engines add (vLLM `max_model_len`, llama.cpp `meta.n_ctx` / `n_ctx_train`).
    fn parse_v1_models(&self, v: &Value) -> Result<Vec<ModelInfo>, EngineError> {
        let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
            EngineError::InvalidResponse(format!("{} has no `data` array", self.url("/v1/models")))
        })?;
        let mut out = Vec::with_capacity(data.len());
        for item in data {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                continue;
            };
            let mut m = self.model(id);
            m.context_length = item
                .get("max_model_len")
                .and_then(Value::as_u64)
                .or_else(|| item.pointer("/meta/n_ctx").and_then(Value::as_u64))
                .or_else(|| item.pointer("/meta/n_ctx_train").and_then(Value::as_u64));
            m.size_bytes = item.pointer("/meta/size").and_then(Value::as_u64);
            apply_name_hints(&mut m);
            out.push(m);
        }
        Ok(out)
    }

    async fn list_lmstudio(&self) -> Result<Vec<ModelInfo>, EngineError> {
        // The rich v0 list (0.3.6+) tells type, state and context; fall back to /v1.
        let Ok(v) = self.get_json("/api/v0/models").await else {
            return self.parse_v1_models(&self.get_json("/v1/models").await?);
        };
        let Some(data) = v.get("data").and_then(Value::as_array) else {
            return self.parse_v1_models(&self.get_json("/v1/models").await?);
        };
        let mut out = Vec::with_capacity(data.len());
        for item in data {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                continue;
            };
            let mut m = self.model(id);
            let ty = item.get("type").and_then(Value::as_str).unwrap_or("llm");
            if ty == "embeddings" || ty == "embedding" {
                m.supports_embeddings = true;
                m.supports_chat = false;
                m.supports_streaming = false;
            }
            m.vision = ty == "vlm";
            // The v0 type is LM Studio's own word on images; it documents no audio input.
            m.modalities_known = true;
            m.tools = item
                .get("capabilities")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|x| x.as_str() == Some("tool_use")));
            m.loaded = item
                .get("state")
                .and_then(Value::as_str)
                .map(|s| s == "loaded");
            m.context_length = item
                .get("loaded_context_length")
                .and_then(Value::as_u64)
                .or_else(|| item.get("max_context_length").and_then(Value::as_u64));
            out.push(m);
        }
        Ok(out)
    }

    async fn list_llamacpp(&self) -> Result<Vec<ModelInfo>, EngineError> {
        let (models, props) = futures::join!(self.get_json("/v1/models"), self.get_json("/props"));
        let v = models?;
        let mut out = self.parse_v1_models(&v)?;
        // `/props` tells what the single loaded model can take; it is optional.
        let props = props.ok();
        let vision = props
            .as_ref()
            .and_then(|p| p.pointer("/modalities/vision"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let audio = props
            .as_ref()
            .and_then(|p| p.pointer("/modalities/audio"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let runtime_ctx = props
            .as_ref()
            .and_then(|p| p.pointer("/default_generation_settings/n_ctx"))
            .and_then(Value::as_u64);
        let multimodal = v.get("models").and_then(Value::as_array).is_some_and(|ms| {
            ms.iter().any(|m| {
                m.get("capabilities")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.iter().any(|x| x.as_str() == Some("multimodal")))
            })
        });
        // `/props` modalities (or the router's capabilities) are the server's own report.
        let known = props
            .as_ref()
            .is_some_and(|p| p.get("modalities").is_some_and(Value::is_object))
            || v.get("models").and_then(Value::as_array).is_some_and(|ms| {
                ms.iter()
                    .any(|m| m.get("capabilities").is_some_and(Value::is_array))
            });
        for m in &mut out {
            m.vision = vision || multimodal;
            m.audio_inputs = audio;
            m.modalities_known = known;
            if runtime_ctx.is_some() {
                m.context_length = runtime_ctx;
            }
            // A llama-server runs one model, either for chat or (with --embeddings) for
            // embeddings; its metadata does not say which, so both are offered and
            // the engine's own error explains a mismatch.
            m.supports_embeddings = true;
        }
        Ok(out)
    }

    fn chat_body(&self, req: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        for (k, v) in &req.extra {
            body.insert(k.clone(), v.clone());
        }
        body.insert("model".into(), json!(req.model));
        body.insert(
            "messages".into(),
            Value::Array(req.messages.iter().map(openai_message).collect()),
        );
        if let Some(t) = req.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(n) = req.max_tokens {
            body.insert("max_tokens".into(), json!(n));
        }
        if !req.stop.is_empty() {
            body.insert("stop".into(), json!(req.stop));
        }
        if let Some(p) = req.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(s) = req.seed {
            body.insert("seed".into(), json!(s));
        }
        if let Some(p) = req.frequency_penalty {
            body.insert("frequency_penalty".into(), json!(p));
        }
        if let Some(p) = req.presence_penalty {
            body.insert("presence_penalty".into(), json!(p));
        }
        body.insert("stream".into(), json!(stream));
        if stream && !body.contains_key("stream_options") {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }
}

/// Capability hints derived from a model name (spec 10-engines §5).
pub(crate) fn apply_name_hints(m: &mut ModelInfo) {
    let n = m.name.to_ascii_lowercase();
    let embed = [
        "embed",
        "bge-",
        "/bge",
        "e5-",
        "gte-",
        "minilm",
        "nomic-embed",
    ]
    .iter()
    .any(|k| n.contains(k));
    if embed {
        m.supports_embeddings = true;
        m.supports_chat = false;
        m.supports_streaming = false;
    }
    if [
        "llava",
        "vision",
        "-vl",
        "vl-",
        "gemma3",
        "pixtral",
        "qwen2.5-vl",
    ]
    .iter()
    .any(|k| n.contains(k))
    {
        m.vision = true;
    }
    if ["r1", "qwq", "think", "reason", "gpt-oss"]
        .iter()
        .any(|k| n.contains(k))
    {
        m.reasoning = true;
    }
    if n.contains("whisper") {
        m.audio_inputs = true;
        m.supports_chat = false;
    }
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn openai_message(m: &ChatMessage) -> Value {
    if m.attachments.is_empty() {
        return json!({"role": role_str(m.role), "content": m.content});
    }
    let mut parts = vec![json!({"type": "text", "text": m.content})];
    for a in &m.attachments {
        parts.push(match a.mime_type.strip_prefix("audio/") {
            Some(format) => json!({
                "type": "input_audio",
                "input_audio": {"data": a.data_base64, "format": format}
            }),
            None => json!({
                "type": "image_url",
                "image_url": {"url": format!("data:{};base64,{}", a.mime_type, a.data_base64)}
            }),
        });
    }
    json!({"role": role_str(m.role), "content": parts})
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "system" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        "tool" => Some(Role::Tool),
        _ => None,
    }
}

/// Usage from an OpenAI `usage` object.
pub(crate) fn parse_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    if u.is_null() {
        return None;
    }
    let p = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let c = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut usage = Usage::new(p, c);
    if let Some(t) = u.get("total_tokens").and_then(Value::as_u64) {
        usage.total_tokens = t;
    }
    Some(usage)
}

/// One OpenAI `chat.completion.chunk` as a [`ChatStreamChunk`].
pub(crate) fn parse_chunk(v: &Value) -> ChatStreamChunk {
    let choice = v.pointer("/choices/0");
    let delta = choice.and_then(|c| c.get("delta"));
    ChatStreamChunk {
        role: delta
            .and_then(|d| d.get("role"))
            .and_then(Value::as_str)
            .and_then(parse_role),
        delta: delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        reasoning: delta
            .and_then(|d| d.get("reasoning_content").or_else(|| d.get("reasoning")))
            .and_then(Value::as_str)
            .map(str::to_owned),
        tool_calls: Vec::new(),
        finish_reason: choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        usage: parse_usage(v),
    }
}

#[async_trait]
impl LlmEngine for OpenAiCompatEngine {
    fn id(&self) -> &EngineId {
        &self.id
    }

    fn kind(&self) -> EngineKind {
        self.kind
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn capabilities(&self) -> EngineCapabilities {
        self.kind.default_capabilities()
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, EngineError> {
        match self.kind {
            EngineKind::LmStudio => self.list_lmstudio().await,
            EngineKind::LlamaCpp => self.list_llamacpp().await,
            _ => self.parse_v1_models(&self.get_json("/v1/models").await?),
        }
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, EngineError> {
        let url = self.url("/v1/chat/completions");
        let body = self.chat_body(&request, false);
        let v = send_json(
            self.client
                .raw()
                .post(&url)
                .timeout(self.timeout)
                .json(&body),
            &url,
        )
        .await?;
        let choice = v.pointer("/choices/0").ok_or_else(|| {
            EngineError::InvalidResponse(format!("{url} answered without `choices`"))
        })?;
        let content = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(ChatResponse {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&request.model)
                .to_owned(),
            message: ChatMessage::text(Role::Assistant, content),
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            usage: parse_usage(&v),
        })
    }

    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, EngineError> {
        let url = self.url("/v1/chat/completions");
        let body = self.chat_body(&request, true);
        // No overall timeout: a long answer may stream for minutes. Only the wait for
        // the response head is bounded (see `send_stream`).
        let resp =
            send_stream(self.client.raw().post(&url).json(&body), &url, self.timeout).await?;
        let status = resp.status().as_u16();
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !(200..300).contains(&status) || !is_sse {
            let bytes = read_body(resp, &url, self.timeout).await?;
            if (200..300).contains(&status) {
                // LM Studio answers 200 + JSON error instead of a stream.
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    if let Some(msg) = embedded_error(&v) {
                        return Err(EngineError::Api {
                            status_code: Some(status),
                            message: format!(
                                "{url} answered with an error: {}",
                                one_line(&msg, 300)
                            ),
                        });
                    }
                }
                return Err(EngineError::InvalidResponse(format!(
                    "{url} did not answer with an event stream"
                )));
            }
            return Err(status_error(status, &bytes, &url));
        }
        let frames = frames(Box::pin(resp.bytes_stream()), Framing::Sse, url.clone());
        Ok(Box::pin(openai_chunks(frames, url)))
    }

    fn speaks_openai(&self) -> bool {
        true
    }

    async fn relay(
        &self,
        request: flm_core::ports::RawRequest,
    ) -> Result<flm_core::ports::RawResponse, EngineError> {
        crate::relay::relay(&self.client, &self.base_url, request).await
    }

    async fn relay_stream(
        &self,
        request: flm_core::ports::RawRequest,
        body: flm_core::ports::RawBody,
    ) -> Result<flm_core::ports::RawResponse, EngineError> {
        crate::relay::relay_stream(&self.client, &self.base_url, request, body).await
    }

    async fn embeddings(
        &self,
        request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, EngineError> {
        let url = self.url("/v1/embeddings");
        let body = json!({"model": request.model, "input": request.input});
        let v = send_json(
            self.client
                .raw()
                .post(&url)
                .timeout(self.timeout)
                .json(&body),
            &url,
        )
        .await?;
        parse_openai_embeddings(&v, &request, &url)
    }
}

/// Parses an OpenAI embeddings list, ordering vectors by `index`.
pub(crate) fn parse_openai_embeddings(
    v: &Value,
    request: &EmbeddingRequest,
    url: &str,
) -> Result<EmbeddingResponse, EngineError> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
        EngineError::InvalidResponse(format!("{url} answered without a `data` array"))
    })?;
    let mut indexed: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
    for (pos, item) in data.iter().enumerate() {
        let idx = item
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let vec = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                EngineError::InvalidResponse(format!("{url}: item {pos} has no `embedding` array"))
            })?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| {
                EngineError::InvalidResponse(format!("{url}: item {pos} has non-numeric values"))
            })?;
        indexed.push((idx, vec));
    }
    indexed.sort_by_key(|(i, _)| *i);
    if indexed.len() != request.input.len() {
        return Err(EngineError::InvalidResponse(format!(
            "{url} returned {} vectors for {} inputs",
            indexed.len(),
            request.input.len()
        )));
    }
    Ok(EmbeddingResponse {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&request.model)
            .to_owned(),
        vectors: indexed.into_iter().map(|(_, v)| v).collect(),
        usage: parse_usage(v),
    })
}

/// Maps SSE frames of an OpenAI chat stream to chunks. `[DONE]` ends the stream; an
/// error event or a stream that ends before any `finish_reason` yields an `Err` last.
fn openai_chunks(
    frames: impl futures::Stream<Item = Result<Frame, EngineError>> + Send + 'static,
    url: String,
) -> impl futures::Stream<Item = Result<ChatStreamChunk, EngineError>> + Send {
    struct St<F> {
        frames: F,
        finished: bool,
        done: bool,
        url: String,
    }
    let st = St {
        frames: Box::pin(frames),
        finished: false,
        done: false,
        url,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let item = match st.frames.next().await {
            None if st.finished => None,
            None => Some(Err(EngineError::Network(format!(
                "the stream from {} ended before the answer was complete",
                st.url
            )))),
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(Frame::Error(payload))) => {
                let msg = crate::http::upstream_message(payload.as_bytes())
                    .unwrap_or_else(|| "unknown error".into());
                Some(Err(EngineError::Api {
                    status_code: None,
                    message: format!("engine error mid-stream: {msg}"),
                }))
            }
            Some(Ok(Frame::Data(payload))) if payload.trim() == "[DONE]" => None,
            Some(Ok(Frame::Data(payload))) => Some(chunk_from_payload(&payload, &st.url)),
        };
        match &item {
            Some(Ok(chunk)) => st.finished |= chunk.finish_reason.is_some(),
            _ => st.done = true,
        }
        item.map(|i| (i, st))
    })
}

fn chunk_from_payload(payload: &str, url: &str) -> Result<ChatStreamChunk, EngineError> {
    let v: Value = serde_json::from_str(payload).map_err(|e| {
        EngineError::InvalidResponse(format!(
            "invalid JSON in the stream from {url} ({e}): {}",
            one_line(payload, 120)
        ))
    })?;
    if let Some(msg) = embedded_error(&v) {
        return Err(EngineError::Api {
            status_code: None,
            message: format!("engine error mid-stream: {}", one_line(&msg, 300)),
        });
    }
    Ok(parse_chunk(&v))
}
