//! `flm chat --responses`: the same message sent to `POST /v1/responses` (the OpenAI
//! Responses API) instead of chat completions, and its answers and events read back.

use serde_json::{json, Value};

use crate::cli::ChatArgs;
use crate::output::CliError;

/// The Responses request body for the prompt (and `data:` URL images).
pub(crate) fn body(args: &ChatArgs, images: &[String]) -> Value {
    let input = if images.is_empty() {
        json!(args.prompt)
    } else {
        let mut parts = vec![json!({"type": "input_text", "text": args.prompt})];
        parts.extend(
            images
                .iter()
                .map(|url| json!({"type": "input_image", "image_url": url})),
        );
        json!([{"role": "user", "content": parts}])
    };
    let mut body = json!({"model": args.model, "input": input, "stream": args.stream});
    if let Some(t) = args.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = args.max_tokens {
        body["max_output_tokens"] = json!(n);
    }
    body
}

/// The text of a `response` object: its `output_text` parts, in order.
pub(crate) fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().into_iter().flatten())
        .filter(|part| part["type"] == "output_text")
        .filter_map(|part| part["text"].as_str())
        .collect()
}

/// One Responses stream event: `Ok(Some(text))` to print, `Ok(None)` for nothing,
/// `Err` when the response failed. `done` is set on the final event.
pub(crate) fn event(v: &Value, done: &mut bool) -> Result<Option<String>, CliError> {
    match v["type"].as_str() {
        Some("response.output_text.delta") => Ok(v["delta"].as_str().map(str::to_owned)),
        Some("response.completed" | "response.incomplete") => {
            *done = true;
            Ok(None)
        }
        Some("error") => Err(CliError::remote(
            v["code"].as_str().unwrap_or("PROXY_ERROR"),
            v["message"].as_str().unwrap_or("the response failed"),
            1,
        )),
        Some("response.failed") => Err(CliError::remote(
            v["response"]["error"]["code"]
                .as_str()
                .unwrap_or("PROXY_ERROR"),
            v["response"]["error"]["message"]
                .as_str()
                .unwrap_or("the response failed"),
            1,
        )),
        _ => Ok(None),
    }
}
