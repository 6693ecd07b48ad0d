//! The HTTP client shared by all adapters, and upstream error normalisation.

use std::error::Error as _;
use std::time::Duration;

use flm_core::EngineError;
use serde_json::Value;

/// Shared `reqwest` client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client for engine traffic: TCP_NODELAY, bounded connect time, no redirects,
    /// and no system proxy (engines are local; egress proxies are explicit).
    pub fn new() -> Result<Self, EngineError> {
        let inner = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("flm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Network(format!("cannot create the HTTP client: {e}")))?;
        Ok(Self { inner })
    }

    /// The underlying client.
    pub fn raw(&self) -> &reqwest::Client {
        &self.inner
    }
}

/// Maps a transport error to an [`EngineError`], naming the URL and the root cause.
pub fn transport_error(e: &reqwest::Error, url: &str) -> EngineError {
    let cause = root_cause(e);
    if e.is_timeout() {
        EngineError::Timeout(format!("{url} did not answer in time"))
    } else if e.is_connect() {
        EngineError::Network(format!("cannot connect to {url}: {cause}"))
    } else if e.is_decode() || e.is_body() {
        EngineError::Network(format!("reading the answer of {url} failed: {cause}"))
    } else {
        EngineError::Network(format!("request to {url} failed: {cause}"))
    }
}

/// Innermost error message (e.g. `Connection refused (os error 111)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let msg = cur.to_string();
    if msg.is_empty() {
        e.to_string()
    } else {
        msg
    }
}

/// Whether `e` is a connection failure (nothing listening), as opposed to a timeout.
pub fn is_connect_error(e: &reqwest::Error) -> bool {
    e.is_connect() && !e.is_timeout() && e.source().is_some()
}

/// Extracts the message of an upstream error body, whatever its shape
/// (reference §5.9): a plain string, `{"error":"…"}`, `{"error":{"message":…}}`,
/// vLLM's flat `{"object":"error","message":…}` or FastAPI's `{"detail":…}`.
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

/// The top-level `error` of a JSON body that otherwise looks like success.
/// LM Studio answers HTTP 200 with `{"error":…}` for unknown routes and failures.
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

/// Builds the error for a non-success HTTP answer.
pub fn status_error(status: u16, body: &[u8], url: &str) -> EngineError {
    let detail = upstream_message(body).unwrap_or_else(|| "empty body".to_owned());
    EngineError::Api {
        status_code: Some(status),
        message: format!("{url} answered HTTP {status}: {detail}"),
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

/// Sends a request and reads a JSON answer, turning every failure into a precise
/// [`EngineError`]: transport errors, non-2xx statuses (with the engine's message),
/// 2xx bodies that are not JSON, and 2xx bodies that carry an `error`.
pub async fn send_json(rb: reqwest::RequestBuilder, url: &str) -> Result<Value, EngineError> {
    let resp = rb.send().await.map_err(|e| transport_error(&e, url))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| transport_error(&e, url))?;
    if !(200..300).contains(&status) {
        return Err(status_error(status, &body, url));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        EngineError::InvalidResponse(format!(
            "{url} returned invalid JSON ({e}): {}",
            one_line(&String::from_utf8_lossy(&body), 120)
        ))
    })?;
    if let Some(msg) = embedded_error(&v) {
        return Err(EngineError::Api {
            status_code: Some(status),
            message: format!("{url} answered with an error: {}", one_line(&msg, 300)),
        });
    }
    Ok(v)
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
