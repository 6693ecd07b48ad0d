//! The Responses ↔ chat completions mapping: a validated `/v1/responses` request
//! becomes a chat completions body (sent through the chat route's own path), and a
//! `chat.completion` becomes a `response` object.
//!
//! Mapped: `input` (a string, or `message` items with `input_text` / `output_text` /
//! `input_image` parts, `function_call`, `function_call_output`), `instructions` (the
//! first system message), function `tools` and `tool_choice`, `max_output_tokens`
//! (`max_tokens`), `temperature`, `top_p`, `parallel_tool_calls`, `text.format`
//! (`response_format`), `reasoning.effort` (`reasoning_effort`), `user`. Accepted but
//! not acted on (echoed where the Responses object has them): `metadata`,
//! `truncation`, `include`, `service_tier`, `prompt_cache_key`, `safety_identifier`,
//! `top_logprobs`, `stream_options`, `max_tool_calls`, `text.verbosity`. `reasoning`
//! input items are dropped. Refused: `background: true`, `conversation`, `prompt`,
//! hosted tools (web search, file search, …), `input_file` and `file_id` images.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::openai_req;

/// Top-level fields the bridge knows; anything else is `unsupported_parameter`.
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "store",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "text",
    "reasoning",
    "metadata",
    "user",
    "truncation",
    "include",
    "background",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "conversation",
    "prompt",
];

/// A validated `/v1/responses` request.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// The model as the client named it.
    pub model: String,
    pub stream: bool,
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub instructions: Option<String>,
    /// This turn's input items, normalised (a string input is one user message).
    pub input: Vec<Value>,
    /// Chat completions parameters mapped from the Responses ones.
    pub chat_params: Map<String, Value>,
    /// Fields echoed on the response object.
    pub echo: Map<String, Value>,
}

fn invalid(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, msg)
}

/// A fresh id with `prefix` (`resp`, `msg`, `fc`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Validates a `/v1/responses` body.
pub(crate) fn parse(obj: &Map<String, Value>) -> Result<Parsed, ApiError> {
    if let Some(key) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(
            "unsupported_parameter",
            format!("unsupported parameter `{key}` on /v1/responses"),
        ));
    }
    for key in ["conversation", "prompt"] {
        if obj.get(key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                "unsupported_parameter",
                format!("`{key}` is not supported by FLM's /v1/responses: send the turns as `input` or chain them with `previous_response_id`"),
            ));
        }
    }
    if obj.get("background") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "unsupported_parameter",
            "`background: true` is not supported by FLM's /v1/responses: send the request in the foreground (stream it for long answers)",
        ));
    }
    let model = openai_req::model_field(obj)?;
    let flag = |key: &str, default: bool| match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(
            "invalid_request",
            format!("`{key}` must be true or false"),
        )),
    };
    let stream = flag("stream", false)?;
    let store = flag("store", true)?;
    let opt_string = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            "invalid_request",
            format!("`{key}` must be a string"),
        )),
    };
    let instructions = opt_string("instructions")?;
    let previous_response_id = opt_string("previous_response_id")?;
    let input = normalise_input(obj.get("input"))?;

    let mut chat = Map::new();
    let mut echo = Map::new();
    if let Some(tools) = obj.get("tools").filter(|v| !v.is_null()) {
        chat.insert("tools".into(), chat_tools(tools)?);
        echo.insert("tools".into(), tools.clone());
    }
    if let Some(choice) = obj.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), chat_tool_choice(choice)?);
        echo.insert("tool_choice".into(), choice.clone());
    }
    match obj.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
            chat.insert("max_tokens".into(), v.clone());
            echo.insert("max_output_tokens".into(), v.clone());
        }
        Some(_) => {
            return Err(invalid(
                "invalid_max_tokens",
                "`max_output_tokens` must be a positive integer",
            ))
        }
    }
    for key in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
            echo.insert(key.into(), v.clone());
        }
    }
    if let Some(text) = obj.get("text").filter(|v| !v.is_null()) {
        if let Some(format) = response_format(text)? {
            chat.insert("response_format".into(), format);
        }
        echo.insert("text".into(), text.clone());
    }
    if let Some(r) = obj.get("reasoning").filter(|v| !v.is_null()) {
        if let Some(effort) = r.get("effort").filter(|v| v.is_string()) {
            chat.insert("reasoning_effort".into(), effort.clone());
        }
        echo.insert("reasoning".into(), r.clone());
    }
    for key in ["metadata", "truncation", "service_tier", "prompt_cache_key"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            echo.insert(key.into(), v.clone());
        }
    }
    Ok(Parsed {
        model,
        stream,
        store,
        previous_response_id,
        instructions,
        input,
        chat_params: chat,
        echo,
    })
}

/// `input` as a list of items; a string is one user message.
fn normalise_input(input: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let items = match input {
        None | Some(Value::Null) => {
            return Err(invalid(
                "invalid_input",
                "`input` is required: a string or an array of input items",
            ))
        }
        Some(Value::String(s)) => {
            return Ok(vec![
                json!({"type": "message", "role": "user", "content": s}),
            ])
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(invalid("invalid_input", "`input` must not be empty"))
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(invalid(
                "invalid_input",
                "`input` must be a string or an array of input items",
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(invalid(
                "invalid_input",
                format!("input[{i}] must be an object"),
            ));
        };
        let kind = match o.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None if o.contains_key("role") => "message",
            _ => {
                return Err(invalid(
                    "invalid_input",
                    format!(
                        "input[{i}] needs a `type` (message, function_call, function_call_output)"
                    ),
                ))
            }
        };
        let need_str = |field: &str| {
            o.get(field).and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    "invalid_input",
                    format!("input[{i}] ({kind}) needs a string `{field}`"),
                )
            })
        };
        match kind {
            "message" => {
                match o.get("role").and_then(Value::as_str) {
                    Some("user" | "assistant" | "system" | "developer") => {}
                    _ => {
                        return Err(invalid(
                            "invalid_input",
                            format!("input[{i}].role must be user, assistant, system or developer"),
                        ))
                    }
                }
                check_content(i, o.get("content"))?;
                let mut m = o.clone();
                m.insert("type".into(), json!("message"));
                out.push(Value::Object(m));
            }
            "function_call" => {
                need_str("call_id")?;
                need_str("name")?;
                need_str("arguments")?;
                out.push(item.clone());
            }
            "function_call_output" => {
                need_str("call_id")?;
                match o.get("output") {
                    Some(Value::String(_) | Value::Array(_)) => {}
                    _ => {
                        return Err(invalid(
                            "invalid_input",
                            format!("input[{i}] (function_call_output) needs an `output` string"),
                        ))
                    }
                }
                out.push(item.clone());
            }
            // Reasoning of earlier turns: engines take none back.
            "reasoning" => {}
            other => {
                return Err(invalid(
                    "invalid_input",
                    format!("input[{i}]: item type `{other}` is not supported by FLM's Responses bridge (supported: message, function_call, function_call_output)"),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(invalid(
            "invalid_input",
            "`input` holds no message or function call item",
        ));
    }
    Ok(out)
}

fn check_content(i: usize, content: Option<&Value>) -> Result<(), ApiError> {
    let parts = match content {
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(p)) => p,
        _ => {
            return Err(invalid(
                "invalid_input",
                format!("input[{i}].content must be a string or an array of content parts"),
            ))
        }
    };
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text" | "refusal") => {
                let field = if p.get("type").and_then(Value::as_str) == Some("refusal") {
                    "refusal"
                } else {
                    "text"
                };
                if !p.get(field).is_some_and(Value::is_string) {
                    return Err(invalid(
                        "invalid_input",
                        format!("input[{i}].content[{j}] needs a string `{field}`"),
                    ));
                }
            }
            Some("input_image") => {
                if image_url(p).is_none() {
                    return Err(invalid(
                        "invalid_input",
                        format!("input[{i}].content[{j}]: an input_image needs `image_url` (a URL or data URL); `file_id` is not supported"),
                    ));
                }
            }
            Some(other) => {
                return Err(invalid(
                    "invalid_input",
                    format!("input[{i}].content[{j}]: part type `{other}` is not supported (input_text, output_text, input_image)"),
                ))
            }
            None => {
                return Err(invalid(
                    "invalid_input",
                    format!("input[{i}].content[{j}] needs a `type`"),
                ))
            }
        }
    }
    Ok(())
}

fn image_url(part: &Value) -> Option<&str> {
    match part.get("image_url")? {
        Value::String(s) => Some(s),
        v => v.get("url")?.as_str(),
    }
}

/// Responses' flat function tools as chat's nested ones.
fn chat_tools(tools: &Value) -> Result<Value, ApiError> {
    let Some(list) = tools.as_array() else {
        return Err(invalid("invalid_tools", "`tools` must be an array"));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(invalid(
                    "unsupported_tool",
                    format!("tools[{i}]: tool type `{other}` is not supported by FLM's Responses bridge; only `function` tools are"),
                ))
            }
            None => {
                return Err(invalid(
                    "invalid_tools",
                    format!("tools[{i}] needs a `type`"),
                ))
            }
        }
        let Some(name) = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return Err(invalid(
                "invalid_tools",
                format!("tools[{i}] needs a `name` (Responses tools are flat: {{\"type\":\"function\",\"name\":…,\"parameters\":…}})"),
            ));
        };
        let mut f = Map::new();
        f.insert("name".into(), json!(name));
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                f.insert(key.into(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(invalid(
                    "invalid_tools",
                    "`tool_choice` of type function needs a `name`",
                )),
            }
        }
        _ => Err(invalid(
            "invalid_tools",
            "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"name\":…}",
        )),
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(text: &Value) -> Result<Option<Value>, ApiError> {
    let bad = |why: &str| invalid("invalid_text_format", why.to_owned());
    let Some(o) = text.as_object() else {
        return Err(bad(
            "`text` must be an object such as {\"format\":{\"type\":\"json_object\"}}",
        ));
    };
    let Some(format) = o.get("format").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(bad(
                    "`text.format` of type json_schema needs a `schema` object",
                ));
            };
            let mut js = Map::new();
            js.insert(
                "name".into(),
                format
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| json!("response")),
            );
            js.insert("schema".into(), schema.clone());
            for key in ["strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    js.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        _ => Err(bad(
            "`text.format.type` must be text, json_object or json_schema",
        )),
    }
}

fn text_of(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            p.get("text")
                .or_else(|| p.get("refusal"))
                .and_then(Value::as_str)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Chat messages for `instructions` and the conversation's items.
pub(crate) fn chat_messages(instructions: Option<&str>, items: &[Value]) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::with_capacity(items.len() + 1);
    if let Some(s) = instructions {
        messages.push(json!({"role": "system", "content": s}));
    }
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("developer") | Some("system") => "system",
                    Some("assistant") => "assistant",
                    _ => "user",
                };
                let content = match item.get("content") {
                    Some(Value::Array(parts)) => {
                        let has_image = parts
                            .iter()
                            .any(|p| p.get("type").and_then(Value::as_str) == Some("input_image"));
                        if has_image && role == "user" {
                            Value::Array(
                                parts
                                    .iter()
                                    .map(|p| match image_url(p) {
                                        Some(url) if p.get("type").and_then(Value::as_str) == Some("input_image") => {
                                            let mut iu = json!({"url": url});
                                            if let Some(d) = p.get("detail").filter(|d| d.is_string()) {
                                                iu["detail"] = d.clone();
                                            }
                                            json!({"type": "image_url", "image_url": iu})
                                        }
                                        _ => json!({"type": "text", "text": text_of(std::slice::from_ref(p))}),
                                    })
                                    .collect(),
                            )
                        } else {
                            Value::String(text_of(parts))
                        }
                    }
                    Some(v) => v.clone(),
                    None => Value::String(String::new()),
                };
                messages.push(json!({"role": role, "content": content}));
            }
            Some("function_call") => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or_default(),
                        "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
                    },
                });
                let last_is_assistant = messages
                    .last()
                    .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
                if last_is_assistant {
                    if let Some(Value::Object(m)) = messages.last_mut() {
                        match m.get_mut("tool_calls") {
                            Some(Value::Array(calls)) => calls.push(call),
                            _ => {
                                m.insert("tool_calls".into(), json!([call]));
                            }
                        }
                    }
                } else {
                    messages
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
                }
            }
            Some("function_call_output") => {
                let output = match item.get("output") {
                    Some(Value::Array(parts)) => Value::String(text_of(parts)),
                    Some(v) => v.clone(),
                    None => Value::String(String::new()),
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or_default(),
                    "content": output,
                }));
            }
            _ => {}
        }
    }
    messages
}

/// The chat completions body for a parsed request over `items` (earlier turns, then
/// this one's input).
pub(crate) fn chat_body(p: &Parsed, items: &[Value]) -> Map<String, Value> {
    let mut body = p.chat_params.clone();
    body.insert("model".into(), json!(p.model));
    body.insert(
        "messages".into(),
        Value::Array(chat_messages(p.instructions.as_deref(), items)),
    );
    if p.stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    body
}

/// The parts of a response object that do not depend on the answer.
#[derive(Debug, Clone)]
pub(crate) struct Shell {
    pub id: String,
    pub created_at: i64,
    pub model: String,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub echo: Map<String, Value>,
}

impl Shell {
    pub(crate) fn new(p: &Parsed) -> Self {
        Self {
            id: new_id("resp"),
            created_at: chrono::Utc::now().timestamp(),
            model: p.model.clone(),
            instructions: p.instructions.clone(),
            previous_response_id: p.previous_response_id.clone(),
            store: p.store,
            echo: p.echo.clone(),
        }
    }

    /// The response object with `status`, `output` and `usage`.
    pub(crate) fn object(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Value,
        incomplete: Value,
        error: Value,
    ) -> Value {
        let e = |k: &str, d: Value| self.echo.get(k).cloned().unwrap_or(d);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": e("max_output_tokens", Value::Null),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": e("parallel_tool_calls", json!(true)),
            "previous_response_id": self.previous_response_id,
            "reasoning": e("reasoning", Value::Null),
            "store": self.store,
            "temperature": e("temperature", Value::Null),
            "text": e("text", json!({"format": {"type": "text"}})),
            "tool_choice": e("tool_choice", json!("auto")),
            "tools": e("tools", json!([])),
            "top_p": e("top_p", Value::Null),
            "truncation": e("truncation", json!("disabled")),
            "user": e("user", Value::Null),
            "metadata": e("metadata", json!({})),
            "usage": usage,
        })
    }
}

/// A `message` output item.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    })
}

/// An `output_text` content part.
pub(crate) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `function_call` output item.
pub(crate) fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// Responses `usage` from a chat `usage` object.
pub(crate) fn usage(chat: Option<&Value>) -> Value {
    let Some(u) = chat.filter(|u| u.is_object()) else {
        return Value::Null;
    };
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let input = n("/prompt_tokens");
    let output = n("/completion_tokens");
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input + output,
    })
}

/// `(status, incomplete_details)` for a chat `finish_reason`.
pub(crate) fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The arguments of a chat tool call as a string (Ollama-style engines send an
/// object).
pub(crate) fn arguments_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The response object for a non-streamed `chat.completion`.
pub(crate) fn from_chat(shell: &Shell, chat: &Value) -> Value {
    let choice = chat.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut output = Vec::new();
    let text = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !text.is_empty() || calls.is_empty() {
        output.push(message_item(&new_id("msg"), text, "completed"));
    }
    for c in &calls {
        let call_id = c
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| new_id("call"), str::to_owned);
        output.push(call_item(
            &new_id("fc"),
            &call_id,
            c.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            &arguments_string(c.pointer("/function/arguments")),
            "completed",
        ));
    }
    let (status, incomplete) = status_of(
        choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str),
    );
    shell.object(
        status,
        output,
        usage(chat.get("usage")),
        incomplete,
        Value::Null,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn items_tools_and_formats_map_to_chat() {
        let p = parse(&obj(json!({
            "model": "flm://e/m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "max_output_tokens": 20,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        })))
        .unwrap();
        let body = chat_body(&p, &p.input);
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1], json!({"role": "user", "content": "weather?"}));
        assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        assert_eq!(
            m[4],
            json!({"role": "assistant", "content": "It is sunny."})
        );
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(body["tool_choice"]["function"]["name"], "get_weather");
        assert_eq!(body["max_tokens"], 20);
        assert_eq!(body["response_format"]["json_schema"]["name"], "w");
    }

    #[test]
    fn bad_shapes_get_precise_codes() {
        let code = |v: Value| parse(&obj(v)).unwrap_err().code;
        assert_eq!(code(json!({"model": "m"})), "invalid_input");
        assert_eq!(code(json!({"model": "m", "input": 3})), "invalid_input");
        assert_eq!(
            code(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})),
            "invalid_input"
        );
        assert_eq!(
            code(json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})),
            "unsupported_tool"
        );
        assert_eq!(
            code(json!({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}})),
            "invalid_text_format"
        );
        assert_eq!(
            code(json!({"model": "m", "input": "hi", "max_output_tokens": 0})),
            "invalid_max_tokens"
        );
        assert_eq!(
            code(json!({"model": "m", "input": "hi", "frobnicate": 1})),
            "unsupported_parameter"
        );
        assert_eq!(
            code(json!({"model": "m", "input": "hi", "background": true})),
            "unsupported_parameter"
        );
    }

    #[test]
    fn chat_answers_become_output_items() {
        let p = parse(&obj(json!({"model": "flm://e/m", "input": "hi"}))).unwrap();
        let shell = Shell::new(&p);
        let r = from_chat(
            &shell,
            &json!({
                "choices": [{"message": {"content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
                ]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }),
        );
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"].as_array().unwrap().len(), 1);
        assert_eq!(r["output"][0]["type"], "function_call");
        assert_eq!(r["output"][0]["arguments"], "{\"a\":1}");
        assert_eq!(r["usage"]["total_tokens"], 8);
        let r = from_chat(
            &shell,
            &json!({"choices": [{"message": {"content": "ab"}, "finish_reason": "length"}]}),
        );
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["output"][0]["content"][0]["text"], "ab");
    }
}
