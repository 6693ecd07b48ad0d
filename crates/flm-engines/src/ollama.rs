//! Ollama's native API: `/api/tags` + `/api/show` for models, `/api/chat` (NDJSON
//! streams translated to chunks), `/api/embed`.

use std::time::Duration;

use async_trait::async_trait;
use flm_core::ports::LlmEngine;
use flm_core::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, ChatStreamChunk, EmbeddingRequest,
    EmbeddingResponse, EngineCapabilities, EngineError, EngineId, EngineKind, ModelInfo, Role,
    ToolCall, Usage,
};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::http::{one_line, read_body, send_json, send_stream, status_error, HttpClient};
use crate::sse::{frames, Frame, Framing};

/// Adapter for an Ollama server.
pub struct OllamaEngine {
    id: EngineId,
    base_url: String,
    client: HttpClient,
    timeout: Duration,
}

impl OllamaEngine {
    /// An adapter for the Ollama server at `base_url`.
    pub fn new(id: EngineId, base_url: &str, client: HttpClient, timeout: Duration) -> Self {
        Self {
            id,
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            timeout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn show(&self, name: &str) -> Result<Value, EngineError> {
        let url = self.url("/api/show");
        send_json(
            self.client
                .raw()
                .post(&url)
                .timeout(self.timeout)
                .json(&json!({"model": name})),
            &url,
        )
        .await
    }

    fn chat_body(&self, req: &ChatRequest, stream: bool) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let mut msg = json!({"role": role_str(m.role), "content": m.content});
                if !m.tool_calls.is_empty() {
                    msg["tool_calls"] = Value::Array(
                        m.tool_calls
                            .iter()
                            .enumerate()
                            .map(|(i, c)| native_tool_call(i, c))
                            .collect(),
                    );
                }
                if let Some(name) = &m.tool_name {
                    msg["tool_name"] = json!(name);
                }
                if let Some(id) = &m.tool_call_id {
                    msg["tool_call_id"] = json!(id);
                }
                if !m.attachments.is_empty() {
                    // Ollama wants bare Base64 strings without a `data:` prefix.
                    msg["images"] = Value::Array(
                        m.attachments
                            .iter()
                            .map(|a| Value::String(a.data_base64.clone()))
                            .collect(),
                    );
                }
                msg
            })
            .collect();
        let mut options = Map::new();
        if let Some(t) = req.temperature {
            options.insert("temperature".into(), json!(t));
        }
        if let Some(n) = req.max_tokens {
            options.insert("num_predict".into(), json!(n));
        }
        if !req.stop.is_empty() {
            options.insert("stop".into(), json!(req.stop));
        }
        if let Some(p) = req.top_p {
            options.insert("top_p".into(), json!(p));
        }
        if let Some(s) = req.seed {
            options.insert("seed".into(), json!(s));
        }
        if let Some(p) = req.frequency_penalty {
            options.insert("frequency_penalty".into(), json!(p));
        }
        if let Some(p) = req.presence_penalty {
            options.insert("presence_penalty".into(), json!(p));
        }
        let mut body = json!({"model": req.model, "messages": messages, "stream": stream});
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        for key in ["tools", "format", "keep_alive", "think"] {
            if let Some(v) = req.extra.get(key) {
                body[key] = v.clone();
            }
        }
        body
    }
}

/// A call in Ollama's form: `arguments` is a JSON object, not a string. The proxy
/// checked that the arguments parse; anything else is passed on as the string it is.
fn native_tool_call(index: usize, c: &ToolCall) -> Value {
    let arguments = serde_json::from_str::<Value>(&c.arguments)
        .unwrap_or_else(|_| Value::String(c.arguments.clone()));
    let mut call = json!({"function": {"index": index, "name": c.name, "arguments": arguments}});
    if !c.id.is_empty() {
        call["id"] = json!(c.id);
    }
    call
}

/// `message.tool_calls` of an Ollama answer as [`ToolCall`]s: arguments (an object)
/// become JSON text; calls without an `id` (older Ollama) get a generated `call_…` one.
fn parse_tool_calls(message: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            let name = f.get("name").and_then(Value::as_str)?.to_owned();
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => "{}".to_owned(),
                Some(v) => v.to_string(),
            };
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(new_call_id);
            Some(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// A fresh `call_…` id for a tool call Ollama sent without one (24 hex digits; each
/// `RandomState` is seeded with fresh randomness, the counter keeps ids apart anyway).
fn new_call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    format!("call_{:016x}{:08x}", h.finish(), n & 0xffff_ffff)
}

/// OpenAI's finish reason for an Ollama answer: Ollama says `stop` even when the turn
/// ended with tool calls.
fn finish_reason(v: &Value, has_calls: bool) -> String {
    match v.get("done_reason").and_then(Value::as_str) {
        Some("length") => "length".to_owned(),
        _ if has_calls => "tool_calls".to_owned(),
        Some(r) => r.to_owned(),
        None => "stop".to_owned(),
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

/// Usage from Ollama's `prompt_eval_count` / `eval_count` (either may be absent).
fn ollama_usage(v: &Value) -> Option<Usage> {
    let p = v.get("prompt_eval_count").and_then(Value::as_u64);
    let c = v.get("eval_count").and_then(Value::as_u64);
    if p.is_none() && c.is_none() {
        return None;
    }
    Some(Usage::new(p.unwrap_or(0), c.unwrap_or(0)))
}

/// Explains Ollama's empty 403, which comes from its Host-header guard.
fn explain(e: EngineError) -> EngineError {
    match e {
        EngineError::Api {
            status_code: Some(403),
            message,
        } if message.ends_with("empty body") => EngineError::Api {
            status_code: Some(403),
            message: format!(
                "{message} (Ollama refuses requests whose Host header is not a local name; \
                 address it by IP or localhost)"
            ),
        },
        other => other,
    }
}

#[async_trait]
impl LlmEngine for OllamaEngine {
    fn id(&self) -> &EngineId {
        &self.id
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Ollama
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn capabilities(&self) -> EngineCapabilities {
        EngineKind::Ollama.default_capabilities()
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, EngineError> {
        let url = self.url("/api/tags");
        let tags = send_json(self.client.raw().get(&url).timeout(self.timeout), &url)
            .await
            .map_err(explain)?;
        let items = tags
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| EngineError::InvalidResponse(format!("{url} has no `models` array")))?;
        let names: Vec<String> = items
            .iter()
            .filter_map(|m| {
                m.get("model")
                    .or_else(|| m.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        // `/api/show` holds context length and capabilities; ask for all models at once.
        let shows = futures::future::join_all(names.iter().map(|n| self.show(n))).await;
        let mut out = Vec::with_capacity(names.len());
        for ((name, item), show) in names.iter().zip(items).zip(shows) {
            let mut m = ModelInfo::basic(&self.id, EngineKind::Ollama, name);
            m.size_bytes = item.get("size").and_then(Value::as_u64);
            m.context_length = item
                .pointer("/details/context_length")
                .and_then(Value::as_u64);
            match show {
                Ok(show) => {
                    if let Some(arch) = show
                        .pointer("/model_info/general.architecture")
                        .and_then(Value::as_str)
                    {
                        let key = format!("{arch}.context_length");
                        if let Some(ctx) = show
                            .get("model_info")
                            .and_then(|mi| mi.get(&key))
                            .and_then(Value::as_u64)
                        {
                            m.context_length = Some(ctx);
                        }
                    }
                    if let Some(caps) = show.get("capabilities").and_then(Value::as_array) {
                        let has = |c: &str| caps.iter().any(|x| x.as_str() == Some(c));
                        m.supports_chat = has("completion");
                        m.supports_streaming = m.supports_chat;
                        m.supports_embeddings = has("embedding");
                        m.vision = has("vision");
                        m.tools = has("tools");
                        m.reasoning = has("thinking");
                        m.audio_inputs = has("audio");
                        m.modalities_known = true;
                    } else {
                        crate::openai::apply_name_hints(&mut m);
                    }
                }
                Err(e) => {
                    tracing::debug!(model = %name, error = %e, "ollama /api/show failed; using name hints");
                    crate::openai::apply_name_hints(&mut m);
                }
            }
            out.push(m);
        }
        Ok(out)
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, EngineError> {
        let url = self.url("/api/chat");
        let v = send_json(
            self.client
                .raw()
                .post(&url)
                .timeout(self.timeout)
                .json(&self.chat_body(&request, false)),
            &url,
        )
        .await
        .map_err(explain)?;
        let content = v
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                EngineError::InvalidResponse(format!("{url} answered without `message.content`"))
            })?;
        let mut message = ChatMessage::text(Role::Assistant, content);
        message.tool_calls = parse_tool_calls(v.get("message"));
        Ok(ChatResponse {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&request.model)
                .to_owned(),
            finish_reason: Some(finish_reason(&v, !message.tool_calls.is_empty())),
            message,
            usage: ollama_usage(&v),
        })
    }

    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, EngineError> {
        let url = self.url("/api/chat");
        // Only the wait for the response head is bounded (it includes loading a cold
        // model); the NDJSON body may stream for as long as the answer takes.
        let resp = send_stream(
            self.client
                .raw()
                .post(&url)
                .json(&self.chat_body(&request, true)),
            &url,
            self.timeout,
        )
        .await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = read_body(resp, &url, self.timeout).await?;
            return Err(explain(status_error(status, &bytes, &url)));
        }
        let frames = frames(Box::pin(resp.bytes_stream()), Framing::Ndjson, url.clone());
        Ok(Box::pin(ndjson_chunks(frames, url)))
    }

    async fn relay(
        &self,
        request: flm_core::ports::RawRequest,
    ) -> Result<flm_core::ports::RawResponse, EngineError> {
        crate::relay::relay(&self.client, &self.base_url, request).await
    }

    async fn embeddings(
        &self,
        request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, EngineError> {
        let url = self.url("/api/embed");
        let v = send_json(
            self.client
                .raw()
                .post(&url)
                .timeout(self.timeout)
                .json(&json!({"model": request.model, "input": request.input})),
            &url,
        )
        .await
        .map_err(explain)?;
        let rows = v
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                EngineError::InvalidResponse(format!("{url} answered without `embeddings`"))
            })?;
        let vectors = rows
            .iter()
            .map(|r| {
                r.as_array().and_then(|xs| {
                    xs.iter()
                        .map(|x| x.as_f64().map(|f| f as f32))
                        .collect::<Option<Vec<f32>>>()
                })
            })
            .collect::<Option<Vec<Vec<f32>>>>()
            .ok_or_else(|| {
                EngineError::InvalidResponse(format!("{url} returned non-numeric embeddings"))
            })?;
        if vectors.len() != request.input.len() {
            return Err(EngineError::InvalidResponse(format!(
                "{url} returned {} vectors for {} inputs",
                vectors.len(),
                request.input.len()
            )));
        }
        Ok(EmbeddingResponse {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&request.model)
                .to_owned(),
            vectors,
            usage: v
                .get("prompt_eval_count")
                .and_then(Value::as_u64)
                .map(|p| Usage::new(p, 0)),
        })
    }
}

/// Translates Ollama NDJSON lines into chunks: the first carries the role, `done:true`
/// carries `finish_reason` and usage, an `{"error":…}` line becomes the last `Err`.
fn ndjson_chunks(
    frames: impl futures::Stream<Item = Result<Frame, EngineError>> + Send + 'static,
    url: String,
) -> impl futures::Stream<Item = Result<ChatStreamChunk, EngineError>> + Send {
    struct St<F> {
        frames: F,
        first: bool,
        done: bool,
        saw_calls: bool,
        url: String,
    }
    let st = St {
        frames: Box::pin(frames),
        first: true,
        done: false,
        saw_calls: false,
        url,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let item = match st.frames.next().await {
            None => Err(EngineError::Network(format!(
                "the stream from {} ended before `done`",
                st.url
            ))),
            Some(Err(e)) => Err(e),
            Some(Ok(Frame::Error(p) | Frame::Data(p))) => match serde_json::from_str::<Value>(&p) {
                Err(e) => Err(EngineError::InvalidResponse(format!(
                    "invalid NDJSON line from {} ({e}): {}",
                    st.url,
                    one_line(&p, 120)
                ))),
                Ok(v) => {
                    if let Some(msg) = v.get("error").and_then(Value::as_str) {
                        Err(EngineError::Api {
                            status_code: None,
                            message: format!("engine error mid-stream: {}", one_line(msg, 300)),
                        })
                    } else {
                        let done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
                        let tool_calls = parse_tool_calls(v.get("message"));
                        st.saw_calls |= !tool_calls.is_empty();
                        let chunk = ChatStreamChunk {
                            role: st.first.then_some(Role::Assistant),
                            delta: v
                                .pointer("/message/content")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            reasoning: v
                                .pointer("/message/thinking")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned),
                            tool_calls,
                            finish_reason: done.then(|| finish_reason(&v, st.saw_calls)),
                            usage: if done { ollama_usage(&v) } else { None },
                        };
                        st.first = false;
                        if done {
                            st.done = true;
                        }
                        Ok(chunk)
                    }
                }
            },
        };
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> OllamaEngine {
        OllamaEngine::new(
            EngineId::parse("ollama-test").unwrap(),
            "http://127.0.0.1:1",
            HttpClient::new().unwrap(),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn tool_calls_and_results_take_ollamas_form() {
        let mut asked = ChatMessage::text(Role::Assistant, "");
        asked.tool_calls = vec![
            ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
            ToolCall {
                id: String::new(),
                name: "now".into(),
                arguments: "{}".into(),
            },
        ];
        let mut result = ChatMessage::text(Role::Tool, "18 °C");
        result.tool_call_id = Some("call_1".into());
        result.tool_name = Some("get_weather".into());
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![asked, result],
            ..ChatRequest::default()
        };
        let body = engine().chat_body(&req, false);
        assert_eq!(
            body["messages"][0]["tool_calls"],
            json!([
                {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"index": 1, "name": "now", "arguments": {}}},
            ])
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "tool", "content": "18 °C", "tool_name": "get_weather", "tool_call_id": "call_1"})
        );
    }

    #[test]
    fn answers_with_tool_calls_become_openai_calls() {
        let msg = json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}},
            {"function": {"index": 1, "name": "g", "arguments": {}}},
            {"function": {"arguments": {}}},
        ]});
        let calls = parse_tool_calls(Some(&msg));
        assert_eq!(calls.len(), 2, "a call without a name is dropped");
        assert_eq!(calls[0].id, "call_x");
        assert_eq!(calls[0].name, "f");
        assert_eq!(calls[0].arguments, r#"{"a":1}"#);
        assert!(calls[1].id.starts_with("call_") && calls[1].id.len() > 10);
        assert_eq!(calls[1].arguments, "{}");
        assert_ne!(
            parse_tool_calls(Some(&msg))[1].id,
            calls[1].id,
            "generated ids differ"
        );
        assert!(parse_tool_calls(Some(&json!({"content": "hi"}))).is_empty());
    }

    #[test]
    fn finish_reason_says_tool_calls() {
        assert_eq!(
            finish_reason(&json!({"done_reason": "stop"}), true),
            "tool_calls"
        );
        assert_eq!(
            finish_reason(&json!({"done_reason": "stop"}), false),
            "stop"
        );
        assert_eq!(
            finish_reason(&json!({"done_reason": "length"}), true),
            "length"
        );
        assert_eq!(finish_reason(&json!({}), false), "stop");
    }

    #[tokio::test]
    async fn streamed_tool_calls_reach_the_chunks() {
        let lines = vec![
            Ok(Frame::Data(
                r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"f","arguments":{"q":"x"}}}]},"done":false}"#
                    .to_owned(),
            )),
            Ok(Frame::Data(
                r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":3}"#
                    .to_owned(),
            )),
        ];
        let chunks: Vec<_> = ndjson_chunks(futures::stream::iter(lines), "u".into())
            .collect()
            .await;
        let first = chunks[0].as_ref().unwrap();
        assert_eq!(first.tool_calls.len(), 1);
        assert_eq!(first.tool_calls[0].arguments, r#"{"q":"x"}"#);
        let last = chunks[1].as_ref().unwrap();
        assert_eq!(last.finish_reason.as_deref(), Some("tool_calls"));
    }
}
