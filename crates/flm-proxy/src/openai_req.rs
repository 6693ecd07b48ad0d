//! Validation of OpenAI request bodies (spec 30-proxy §4.1, §4.5, §5.2) and their
//! translation for engines that do not speak OpenAI (Ollama).
//!
//! Validation runs on the parsed JSON object in place: values are normalised
//! (temperature clamped to 0–2) so the same object can be relayed byte-compatible to
//! OpenAI-compatible engines.

use flm_core::{Attachment, ChatMessage, ChatRequest, EmbeddingRequest, Role, ToolCall};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Chat parameters known to FLM; anything else is `unsupported_parameter`.
const CHAT_KEYS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "metadata",
    "store",
    "service_tier",
    "modalities",
    "prediction",
    "functions",
    "function_call",
    // Common engine extras (llama.cpp, vLLM, LM Studio, Ollama's OpenAI layer).
    "top_k",
    "min_p",
    "repeat_penalty",
    "repetition_penalty",
    "keep_alive",
    "think",
];

/// What the proxy needs from a validated chat request.
#[derive(Debug, Clone)]
pub struct ChatParams {
    /// Requested model (canonical id or bare name).
    pub model: String,
    /// Streaming requested.
    pub stream: bool,
}

/// Validates the `model` field (spec 30-proxy §4.1).
pub fn model_field(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        None | Some(Value::Null) => Err(ApiError::bad_request(
            "invalid_model",
            "`model` is required: use flm://{engine_id}/{model} (see GET /v1/models)",
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ApiError::bad_request(
            "invalid_model",
            "`model` is empty: use flm://{engine_id}/{model} (see GET /v1/models)",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_model_field",
            "`model` must be a string such as flm://{engine_id}/{model}",
        )),
    }
}

/// Validates a chat request in place.
pub fn validate_chat(body: &mut Map<String, Value>) -> Result<ChatParams, ApiError> {
    if let Some(key) = body.keys().find(|k| !CHAT_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            format!("unsupported parameter `{key}`"),
        ));
    }
    let model = model_field(body)?;
    validate_messages(body.get("messages"))?;
    let stream = validate_sampling(body, &["max_tokens", "max_completion_tokens"])?;
    Ok(ChatParams { model, stream })
}

/// Checks the sampling parameters shared by chat and text completions (temperature
/// clamped in place) and returns the `stream` flag.
fn validate_sampling(
    body: &mut Map<String, Value>,
    max_token_keys: &[&str],
) -> Result<bool, ApiError> {
    if let Some(t) = body.get_mut("temperature") {
        match t {
            Value::Null => {}
            Value::Number(n) => {
                let v = n.as_f64().unwrap_or(1.0);
                if !(0.0..=2.0).contains(&v) {
                    tracing::warn!(
                        temperature = v,
                        "temperature out of range; clamped to 0.0-2.0"
                    );
                    *t = Value::from(v.clamp(0.0, 2.0));
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_temperature",
                    "`temperature` must be a number from 0.0 to 2.0",
                ))
            }
        }
    }
    for key in max_token_keys {
        match body.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_max_tokens",
                    format!("`{key}` must be a positive integer"),
                ))
            }
        }
    }
    match body.get("stop") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_stop",
                "`stop` must be a string or an array of strings",
            ))
        }
    }
    for key in ["top_p", "presence_penalty", "frequency_penalty"] {
        if let Some(v) = body.get(key) {
            if !(v.is_null() || v.is_number()) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("`{key}` must be a number"),
                ));
            }
        }
    }
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (1..=128).contains(&v)) => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`n` must be an integer from 1 to 128",
            ))
        }
    }
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "`stream` must be true or false",
        )),
    }
}

/// Text completion parameters known to FLM (OpenAI's legacy `/v1/completions` plus
/// the engines' common sampling extras); anything else is `unsupported_parameter`.
const COMPLETION_KEYS: &[&str] = &[
    "model",
    "prompt",
    "suffix",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "echo",
    "best_of",
    "user",
    "seed",
    // Common engine extras (llama.cpp, vLLM, LM Studio, Ollama's OpenAI layer).
    "top_k",
    "min_p",
    "repeat_penalty",
    "repetition_penalty",
];

/// The shape of a completion `prompt` (OpenAI: a string, strings, tokens, or token
/// arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptShape {
    /// One string.
    Text,
    /// An array of strings.
    Texts,
    /// An array of token ids, or an array of such arrays.
    Tokens,
}

/// What the proxy needs from a validated text completion request.
#[derive(Debug, Clone)]
pub struct CompletionParams {
    /// Requested model (canonical id or bare name).
    pub model: String,
    /// Streaming requested.
    pub stream: bool,
    /// Fill-in-the-middle: the text after the insertion point.
    pub suffix: Option<String>,
    /// Shape of `prompt`.
    pub prompt: PromptShape,
}

/// Validates a `/v1/completions` request in place.
pub fn validate_completion(body: &mut Map<String, Value>) -> Result<CompletionParams, ApiError> {
    if let Some(key) = body.keys().find(|k| !COMPLETION_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            format!("unsupported parameter `{key}` on /v1/completions"),
        ));
    }
    let model = model_field(body)?;
    let bad = |why: &str| ApiError::bad_request("invalid_prompt", why.to_owned());
    let is_token = |v: &Value| v.as_u64().is_some_and(|t| t <= u64::from(u32::MAX));
    let prompt = match body.get("prompt") {
        None | Some(Value::Null) => {
            return Err(bad(
                "`prompt` is required: a string, an array of strings or an array of token ids",
            ))
        }
        Some(Value::String(_)) => PromptShape::Text,
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("`prompt` must not be empty")),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => PromptShape::Texts,
        Some(Value::Array(a)) if a.iter().all(is_token) => PromptShape::Tokens,
        Some(Value::Array(a))
            if a.iter().all(|p| {
                p.as_array()
                    .is_some_and(|t| !t.is_empty() && t.iter().all(is_token))
            }) =>
        {
            PromptShape::Tokens
        }
        Some(_) => return Err(bad(
            "`prompt` must be a string, an array of strings, an array of token ids or an array of token id arrays",
        )),
    };
    let suffix = match body.get("suffix") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_suffix",
                "`suffix` must be a string (the text after the insertion point)",
            ))
        }
    };
    let stream = validate_sampling(body, &["max_tokens"])?;
    for key in ["logprobs", "best_of", "seed"] {
        if let Some(v) = body.get(key) {
            if !(v.is_null() || v.is_i64() || v.is_u64()) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("`{key}` must be an integer"),
                ));
            }
        }
    }
    if let Some(v) = body.get("echo") {
        if !(v.is_null() || v.is_boolean()) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`echo` must be true or false",
            ));
        }
    }
    Ok(CompletionParams {
        model,
        stream,
        suffix,
        prompt,
    })
}

fn validate_messages(messages: Option<&Value>) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid_messages", why);
    let list = match messages {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(bad("`messages` must not be empty".into())),
        None | Some(Value::Null) => return Err(bad("`messages` is required".into())),
        Some(_) => return Err(bad("`messages` must be an array of message objects".into())),
    };
    for (i, m) in list.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(bad(format!("messages[{i}] must be an object")));
        };
        match obj.get("role").and_then(Value::as_str) {
            Some("system" | "user" | "assistant" | "tool" | "developer" | "function") => {}
            Some(r) => {
                return Err(bad(format!(
                "messages[{i}].role `{r}` is not one of system, user, assistant, tool, developer"
            )))
            }
            None => return Err(bad(format!("messages[{i}].role is required"))),
        }
        match obj.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if p.get("type").and_then(Value::as_str).is_none() {
                        return Err(bad(format!("messages[{i}].content[{j}] needs a `type`")));
                    }
                }
            }
            Some(_) => {
                return Err(bad(format!(
                    "messages[{i}].content must be a string or an array of parts"
                )))
            }
        }
    }
    Ok(())
}

/// Validates an embeddings request; returns the model and the inputs.
pub fn validate_embeddings(body: &Map<String, Value>) -> Result<(String, Vec<String>), ApiError> {
    let model = model_field(body)?;
    let bad = |why: &str| ApiError::bad_request("invalid_input", why.to_owned());
    let input = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("`input` must be a string or an array of strings (token arrays are not supported)"))?,
        Some(Value::Array(_)) => return Err(bad("`input` must not be empty")),
        _ => return Err(bad("`input` is required: a string or an array of strings")),
    };
    Ok((model, input))
}

fn role(r: &str) -> Role {
    match r {
        "system" | "developer" => Role::System,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        _ => Role::User,
    }
}

/// Translates a validated OpenAI chat body into a [`ChatRequest`] for `model`.
pub fn to_chat_request(body: &Map<String, Value>, model: &str) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::new();
    // Function names of earlier calls by id: Ollama keys tool results by `tool_name`.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut msg = ChatMessage::text(
            role(m.get("role").and_then(Value::as_str).unwrap_or("user")),
            "",
        );
        msg.tool_calls = tool_calls(i, m.get("tool_calls"))?;
        for c in &msg.tool_calls {
            call_names.push((c.id.clone(), c.name.clone()));
        }
        if msg.role == Role::Tool {
            msg.tool_call_id = m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            msg.tool_name = msg
                .tool_call_id
                .as_deref()
                .and_then(|id| call_names.iter().rev().find(|(c, _)| c == id))
                .map(|(_, name)| name.clone())
                // The legacy `function` role names the function itself.
                .or_else(|| m.get("name").and_then(Value::as_str).map(str::to_owned));
        }
        match m.get("content") {
            Some(Value::String(s)) => msg.content = s.clone(),
            Some(Value::Array(parts)) => {
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("text" | "input_text") => {
                            if let Some(t) = p.get("text").and_then(Value::as_str) {
                                msg.content.push_str(t);
                            }
                        }
                        Some("image_url" | "input_image") => msg.attachments.push(image_part(p)?),
                        // Ollama's native API takes audio as media next to images, as its
                        // own OpenAI layer does (checked by `multimodal::prepare`).
                        Some("input_audio") => msg.attachments.push(audio_part(p)?),
                        Some(other) => {
                            return Err(ApiError::new(
                                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                                "unsupported_modalities",
                                "invalid_request_error",
                                format!(
                                "content parts of type `{other}` are not supported by this engine"
                            ),
                            ))
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
        messages.push(msg);
    }
    let num = |k: &str| body.get(k).and_then(Value::as_f64);
    let stop = match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut extra = Map::new();
    if let Some(t) = body.get("tools").filter(|t| !t.is_null()) {
        // Ollama has no `tool_choice`: `none` is honoured by not offering the tools,
        // `auto` is what it does anyway; forcing a call cannot be done, so it is refused
        // rather than silently ignored.
        match body.get("tool_choice") {
            None | Some(Value::Null) => {
                extra.insert("tools".into(), t.clone());
            }
            Some(Value::String(c)) if c == "auto" => {
                extra.insert("tools".into(), t.clone());
            }
            Some(Value::String(c)) if c == "none" => {}
            Some(other) => {
                let what = match other {
                    Value::String(c) => format!("`{c}`"),
                    _ => "naming a function".to_owned(),
                };
                return Err(ApiError::bad_request(
                    "unsupported_parameter",
                    format!(
                        "tool_choice {what} is not supported by this engine: Ollama cannot force \
                         a tool call (use `auto`, `none`, or leave tool_choice out)"
                    ),
                ));
            }
        }
    }
    match body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            extra.insert("format".into(), Value::from("json"));
        }
        Some("json_schema") => {
            if let Some(schema) = body
                .get("response_format")
                .and_then(|f| f.pointer("/json_schema/schema"))
            {
                extra.insert("format".into(), schema.clone());
            }
        }
        _ => {}
    }
    for k in ["logit_bias", "n"] {
        if body
            .get(k)
            .is_some_and(|v| !v.is_null() && v != &Value::from(1))
        {
            tracing::warn!(
                parameter = k,
                "parameter not supported by this engine; ignored"
            );
        }
    }
    Ok(ChatRequest {
        model: model.to_owned(),
        messages,
        temperature: num("temperature"),
        max_tokens: body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64),
        stop,
        top_p: num("top_p"),
        seed: body.get("seed").and_then(Value::as_i64),
        frequency_penalty: num("frequency_penalty"),
        presence_penalty: num("presence_penalty"),
        extra,
    })
}

/// The `tool_calls` of `messages[i]` (OpenAI form: `arguments` is JSON text, which must
/// parse, since Ollama takes it as an object).
fn tool_calls(i: usize, v: Option<&Value>) -> Result<Vec<ToolCall>, ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid_tool_calls", why);
    let calls = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(format!("messages[{i}].tool_calls must be an array"))),
    };
    let mut out = Vec::with_capacity(calls.len());
    for (j, c) in calls.iter().enumerate() {
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "messages[{i}].tool_calls[{j}].function.name is required"
                ))
            })?;
        let arguments = match c.pointer("/function/arguments") {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(_)) => s.clone(),
                Ok(_) => {
                    return Err(ApiError::bad_request(
                        "invalid_tool_arguments",
                        format!(
                            "messages[{i}].tool_calls[{j}].function.arguments must be a \
                                 JSON object (as text)"
                        ),
                    ))
                }
                Err(e) => {
                    return Err(ApiError::bad_request(
                        "invalid_tool_arguments",
                        format!(
                            "messages[{i}].tool_calls[{j}].function.arguments is not valid \
                                 JSON ({e})"
                        ),
                    ))
                }
            },
            // Some clients send the object itself; it is what Ollama wants anyway.
            Some(v @ Value::Object(_)) => v.to_string(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_tool_arguments",
                    format!(
                        "messages[{i}].tool_calls[{j}].function.arguments must be a JSON string"
                    ),
                ))
            }
        };
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        out.push(ToolCall {
            id,
            name: name.to_owned(),
            arguments,
        });
    }
    Ok(out)
}

fn image_part(p: &Value) -> Result<Attachment, ApiError> {
    let url = p
        .pointer("/image_url/url")
        .or_else(|| p.get("image_url"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_media_url", "image part without `image_url.url`")
        })?;
    let rest = url.strip_prefix("data:").ok_or_else(|| {
        ApiError::bad_request(
            "invalid_media_url",
            "this engine only accepts images as data: URLs (data:image/png;base64,…)",
        )
    })?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| ApiError::bad_request("invalid_media_url", "malformed data: URL"))?;
    let mime = meta.strip_suffix(";base64").ok_or_else(|| {
        ApiError::bad_request("invalid_media_url", "data: URLs must be Base64 encoded")
    })?;
    if !matches!(
        mime,
        "image/png" | "image/jpeg" | "image/jpg" | "image/webp" | ""
    ) {
        return Err(ApiError::bad_request(
            "unsupported_mime_type",
            format!("image type `{mime}` is not allowed: use PNG, JPEG or WebP"),
        ));
    }
    let valid_b64 = data
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'));
    if data.is_empty() || !valid_b64 {
        return Err(ApiError::bad_request(
            "invalid_media_url",
            "the image is not valid Base64",
        ));
    }
    Ok(Attachment {
        mime_type: if mime.is_empty() {
            "image/png".into()
        } else {
            mime.into()
        },
        data_base64: data.to_owned(),
    })
}

fn audio_part(p: &Value) -> Result<Attachment, ApiError> {
    let data = p
        .pointer("/input_audio/data")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_input_audio",
                "audio part without `input_audio.data`",
            )
        })?;
    let format = p
        .pointer("/input_audio/format")
        .and_then(Value::as_str)
        .unwrap_or("wav");
    Ok(Attachment {
        mime_type: format!("audio/{format}"),
        data_base64: data.to_owned(),
    })
}

/// An [`EmbeddingRequest`] for `model`.
pub fn to_embedding_request(model: &str, input: Vec<String>) -> EmbeddingRequest {
    EmbeddingRequest {
        model: model.to_owned(),
        input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn chat_validation_codes() {
        let ok = json!({"model":"flm://a/b","messages":[{"role":"user","content":"hi"}]});
        assert!(validate_chat(&mut obj(ok.clone())).is_ok());
        let cases = [
            (
                json!({"messages":[{"role":"user","content":"x"}]}),
                "invalid_model",
            ),
            (
                json!({"model":5,"messages":[{"role":"user","content":"x"}]}),
                "invalid_model_field",
            ),
            (json!({"model":"m","messages":[]}), "invalid_messages"),
            (json!({"model":"m","messages":"hi"}), "invalid_messages"),
            (
                json!({"model":"m","messages":[{"role":"bot","content":"x"}]}),
                "invalid_messages",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}),
                "invalid_temperature",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}),
                "invalid_max_tokens",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"stop":5}),
                "invalid_stop",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"}],"frobnicate":1}),
                "unsupported_parameter",
            ),
        ];
        for (body, code) in cases {
            let err = validate_chat(&mut obj(body.clone())).unwrap_err();
            assert_eq!(err.code, code, "{body}");
        }
    }

    #[test]
    fn completion_validation_codes() {
        for ok in [
            json!({"model":"m","prompt":"def f(","suffix":"return 1","max_tokens":4,"stream":true}),
            json!({"model":"m","prompt":["a","b"]}),
            json!({"model":"m","prompt":[1,2,3]}),
            json!({"model":"m","prompt":[[1,2],[3]],"echo":false,"logprobs":2}),
        ] {
            validate_completion(&mut obj(ok.clone())).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        let p =
            validate_completion(&mut obj(json!({"model":"m","prompt":[1],"suffix":"x"}))).unwrap();
        assert_eq!(
            (p.prompt, p.suffix.as_deref()),
            (PromptShape::Tokens, Some("x"))
        );
        let cases = [
            (json!({"prompt":"x"}), "invalid_model"),
            (json!({"model":"m"}), "invalid_prompt"),
            (json!({"model":"m","prompt":5}), "invalid_prompt"),
            (json!({"model":"m","prompt":[]}), "invalid_prompt"),
            (json!({"model":"m","prompt":["a",1]}), "invalid_prompt"),
            (json!({"model":"m","prompt":[-1]}), "invalid_prompt"),
            (json!({"model":"m","prompt":{"a":1}}), "invalid_prompt"),
            (
                json!({"model":"m","prompt":"x","suffix":3}),
                "invalid_suffix",
            ),
            (
                json!({"model":"m","prompt":"x","stream":"yes"}),
                "invalid_request",
            ),
            (
                json!({"model":"m","prompt":"x","max_tokens":"9"}),
                "invalid_max_tokens",
            ),
            (
                json!({"model":"m","prompt":"x","max_tokens":0}),
                "invalid_max_tokens",
            ),
            (
                json!({"model":"m","prompt":"x","temperature":"hot"}),
                "invalid_temperature",
            ),
            (json!({"model":"m","prompt":"x","stop":[1]}), "invalid_stop"),
            (
                json!({"model":"m","prompt":"x","echo":1}),
                "invalid_request",
            ),
            (
                json!({"model":"m","prompt":"x","messages":[]}),
                "unsupported_parameter",
            ),
        ];
        for (body, code) in cases {
            let err = validate_completion(&mut obj(body.clone())).unwrap_err();
            assert_eq!(err.code, code, "{body}");
        }
    }

    #[test]
    fn temperature_is_clamped() {
        let mut b =
            obj(json!({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":7}));
        validate_chat(&mut b).unwrap();
        assert_eq!(b["temperature"], json!(2.0));
    }

    #[test]
    fn embeddings_input_shapes() {
        assert_eq!(
            validate_embeddings(&obj(json!({"model":"m","input":"a"})))
                .unwrap()
                .1,
            vec!["a"]
        );
        assert_eq!(
            validate_embeddings(&obj(json!({"model":"m","input":["a","b"]})))
                .unwrap()
                .1
                .len(),
            2
        );
        for bad in [
            json!({"model":"m"}),
            json!({"model":"m","input":[]}),
            json!({"model":"m","input":[[1,2]]}),
        ] {
            assert_eq!(
                validate_embeddings(&obj(bad)).unwrap_err().code,
                "invalid_input"
            );
        }
    }

    #[test]
    fn images_become_attachments() {
        let b = obj(json!({"model":"m","messages":[{"role":"user","content":[
            {"type":"text","text":"what is this?"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}));
        let r = to_chat_request(&b, "m").unwrap();
        assert_eq!(r.messages[0].content, "what is this?");
        assert_eq!(r.messages[0].attachments[0].mime_type, "image/png");
        let bad = obj(json!({"model":"m","messages":[{"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/gif;base64,R0lG"}}]}]}));
        assert_eq!(
            to_chat_request(&bad, "m").unwrap_err().code,
            "unsupported_mime_type"
        );
    }
}
