//! Engine-neutral view of a chat request and the deterministic reply planned for it.

use serde_json::{json, Value};

use crate::fake;

/// What the emulators need to know about a chat request, whatever its dialect.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChatInput {
    /// The `model` field as sent (empty when absent).
    pub(crate) model: String,
    pub(crate) has_messages: bool,
    pub(crate) last_user: String,
    pub(crate) last_role: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: Option<u64>,
    /// Function names of `tools`, in order.
    pub(crate) tool_names: Vec<String>,
    pub(crate) tool_choice_none: bool,
    pub(crate) has_image: bool,
    /// An `image_url` part with an `http(s)://` URL.
    pub(crate) has_remote_image: bool,
}

/// The text of a message `content`: a string, or the `text` parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn image_urls(content: &Value) -> Vec<String> {
    let Some(parts) = content.as_array() else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
        .map(|p| match p.get("image_url") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None => String::new(),
        })
        .collect()
}

impl ChatInput {
    /// Reads an OpenAI-style (or Ollama native: `images`, `options.num_predict`) request.
    pub(crate) fn parse(body: &Value) -> Self {
        let mut input = ChatInput {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            ..Self::default()
        };
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        input.has_messages = !messages.is_empty();
        let mut words = 0;
        for m in &messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            let content = m.get("content").cloned().unwrap_or(Value::Null);
            let text = content_text(&content);
            words += fake::count_words(&text) + 1;
            for url in image_urls(&content) {
                input.has_image = true;
                if url.starts_with("http://") || url.starts_with("https://") {
                    input.has_remote_image = true;
                }
            }
            if m.get("images")
                .and_then(Value::as_array)
                .is_some_and(|i| !i.is_empty())
            {
                input.has_image = true;
            }
            if role == "user" {
                input.last_user = text;
            }
            input.last_role = role.to_owned();
        }
        input.prompt_tokens = words.max(1);
        input.max_tokens = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64))
            .or_else(|| {
                body.pointer("/options/num_predict")
                    .and_then(Value::as_i64)
                    .and_then(|n| u64::try_from(n).ok())
            });
        input.tool_names = body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        input.tool_choice_none = body.get("tool_choice").and_then(Value::as_str) == Some("none");
        input
    }
}

/// The reply input for a legacy text completion prompt (`/v1/completions`).
pub(crate) fn prompt_input(model: &str, prompt: &str, max_tokens: Option<u64>) -> ChatInput {
    ChatInput {
        model: model.to_owned(),
        has_messages: true,
        last_user: prompt.to_owned(),
        last_role: "user".to_owned(),
        prompt_tokens: fake::count_words(prompt).max(1),
        max_tokens,
        ..ChatInput::default()
    }
}

/// The prompts of a `/v1/completions` request: a string or an array of strings (token
/// arrays are read as their ids).
pub(crate) fn completion_prompts(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.iter().all(Value::is_u64) => Some(vec![items
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" ")]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Array(t) if t.iter().all(Value::is_u64) => {
                    Some(t.iter().map(Value::to_string).collect::<Vec<_>>().join(" "))
                }
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A planned tool call.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    /// A JSON object (Ollama sends it as is; OpenAI dialects as a string).
    pub(crate) arguments: Value,
}

/// The deterministic reply to one chat request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Content pieces, one per streamed chunk.
    pub(crate) pieces: Vec<String>,
    pub(crate) reasoning: Option<String>,
    pub(crate) tool_call: Option<ToolCall>,
    /// OpenAI finish reason: `stop`, `length` or `tool_calls`.
    pub(crate) finish: &'static str,
    pub(crate) prompt_tokens: u64,
    /// Per choice.
    pub(crate) completion_tokens: u64,
}

impl Reply {
    pub(crate) fn content(&self) -> String {
        self.pieces.concat()
    }
}

/// Plans the reply. A tool is called when tools are offered, the last message is the
/// user's, and it mentions the tool's function name (the first such tool wins); the call's
/// arguments are `{"query": <last user message>}`. Otherwise the reply is
/// `Hello from <kind> <model>: you said …`, cut to `max_tokens` pieces (`length`).
pub(crate) fn plan(kind: &str, model: &str, input: &ChatInput, reasoning: bool) -> Reply {
    let reasoning = reasoning.then(|| "The user greeted me; I will answer politely.".to_owned());
    let tool = (!input.tool_choice_none && input.last_role == "user")
        .then(|| {
            input
                .tool_names
                .iter()
                .find(|name| input.last_user.contains(name.as_str()))
        })
        .flatten();
    if let Some(name) = tool {
        return Reply {
            pieces: Vec::new(),
            reasoning,
            tool_call: Some(ToolCall {
                id: format!("call_{}", fake::alnum_id(&input.last_user, 8)),
                name: name.clone(),
                arguments: json!({ "query": input.last_user }),
            }),
            finish: "tool_calls",
            prompt_tokens: input.prompt_tokens,
            completion_tokens: 5,
        };
    }
    let mut pieces = fake::reply_pieces(kind, model, &input.last_user);
    let mut finish = "stop";
    if let Some(max) = input.max_tokens {
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        if max < pieces.len() {
            pieces.truncate(max);
            finish = "length";
        }
    }
    let completion_tokens = pieces.len() as u64;
    Reply {
        pieces,
        reasoning,
        tool_call: None,
        finish,
        prompt_tokens: input.prompt_tokens,
        completion_tokens,
    }
}

/// Input texts of an embeddings request: a string or an array of strings.
pub(crate) fn embedding_inputs(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_request() {
        let body = json!({
            "model": "m",
            "max_tokens": 3,
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]
        });
        let input = ChatInput::parse(&body);
        assert_eq!(input.model, "m");
        assert_eq!(input.last_user, "look at");
        assert!(input.has_image && input.has_remote_image);
        assert_eq!(input.tool_names, vec!["get_weather"]);
        let reply = plan("vllm", "m", &input, false);
        assert_eq!(reply.finish, "length");
        assert_eq!(reply.pieces.len(), 3);
    }

    #[test]
    fn calls_a_tool_named_by_the_user() {
        let body = json!({
            "messages": [{"role": "user", "content": "use get_weather for Tokyo"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]
        });
        let reply = plan("ollama", "m", &ChatInput::parse(&body), false);
        let call = reply.tool_call.expect("a tool call");
        assert_eq!(call.name, "get_weather");
        assert_eq!(reply.finish, "tool_calls");
    }
}
