//! Normalisation of engine error bodies (reference `engine-apis.md` §5.9), shared by
//! the engine adapters and the proxy's byte-level relay.

use serde_json::Value;

/// Extracts the message of an upstream error body, whatever its shape: a plain
/// string, `{"error":"…"}`, `{"error":{"message":…}}`, vLLM's flat
/// `{"object":"error","message":…}` or FastAPI's `{"detail":…}`. `None` for an
/// empty body.
pub fn upstream_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(trimmed) else {
        return Some(one_line(trimmed, 300));
    };
    let msg = match &v {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => match map.get("error") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(e)) => e.get("message").and_then(Value::as_str).map(str::to_owned),
            _ => map
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    map.get("detail").map(|d| match d {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                }),
        },
        _ => None,
    };
    Some(one_line(&msg.unwrap_or_else(|| trimmed.to_owned()), 300))
}

/// The top-level `error` of a JSON body that otherwise looks like success (LM Studio
/// answers HTTP 200 with `{"error":…}`).
pub fn embedded_error(v: &Value) -> Option<String> {
    match v.get("error")? {
        Value::String(s) => Some(s.clone()),
        Value::Object(e) => Some(
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        ),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Collapses whitespace and truncates to `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_error_shapes() {
        let cases: [(&str, &str); 6] = [
            (r#"{"error":"model 'x' not found"}"#, "model 'x' not found"),
            (
                r#"{"error":{"message":"The model `x` does not exist.","code":404}}"#,
                "The model `x` does not exist.",
            ),
            (r#"{"object":"error","message":"flat"}"#, "flat"),
            (r#"{"detail":"Not Found"}"#, "Not Found"),
            ("404 page not found", "404 page not found"),
            (r#""plain""#, "plain"),
        ];
        for (body, want) in cases {
            assert_eq!(upstream_message(body.as_bytes()).unwrap(), want);
        }
        assert_eq!(upstream_message(b"  "), None);
    }
}
