//! OpenAI-shaped errors (spec 30-proxy §9): `{"error":{code,message,type,request_id}}`.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension and
//! the outermost middleware renders the body, adding the request id. That keeps the
//! request id in exactly one place.
//!
//! Rendering is also the boundary where internal addresses are removed: engine errors
//! name the engine's URL (useful in the proxy's log), but a client must never learn
//! where the engines live, so [`scrub_addresses`] runs on every message sent out.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flm_core::EngineError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`invalid_model`, `invalid_api_key`…).
    pub code: &'static str,
    /// English message.
    pub message: String,
    /// OpenAI error type.
    pub kind: &'static str,
}

impl ApiError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            kind,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            "invalid_request_error",
            message,
        )
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "invalid_request_error",
            message,
        )
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "authentication_error",
            message,
        )
    }

    /// 500 `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "server_error",
            message,
        )
    }

    /// An engine failure on `route_code` (`chat_error`, `embeddings_error`): the
    /// engine's own 4xx statuses are kept (the request was wrong for that engine);
    /// everything else is a 500 (spec 30-proxy §9.2).
    pub fn engine(route_code: &'static str, e: &EngineError) -> Self {
        match e {
            EngineError::Api {
                status_code: Some(s @ 400..=499),
                message,
            } if *s != 401 && *s != 403 && *s != 429 => Self::new(
                StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_REQUEST),
                route_code,
                "invalid_request_error",
                message.clone(),
            ),
            EngineError::Timeout(m) => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "timeout_error",
                m.clone(),
            ),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                route_code,
                "server_error",
                other.to_string(),
            ),
        }
    }

    /// JSON body with the request id; internal addresses are removed from the message.
    pub fn body(&self, request_id: &str) -> String {
        serde_json::json!({"error": {
            "code": self.code,
            "message": scrub_addresses(&self.message),
            "type": self.kind,
            "request_id": request_id,
        }})
        .to_string()
    }
}

/// What an address is replaced with in messages sent to clients.
pub const ADDRESS_PLACEHOLDER: &str = "<engine address>";

const URL_SCHEMES: [&str; 6] = [
    "http://",
    "https://",
    "ws://",
    "wss://",
    "socks5://",
    "socks5h://",
];

/// Removes network addresses from a message meant for a client: URLs (`http://…`,
/// `https://…`, `socks5h://…`), and `host:port` where the host is an IP literal,
/// `localhost` or a dotted name (`gpu-box.lan:8000`). Model names such as
/// `llama3.2:latest` or `qwen2.5:7b` are left alone: their tag is not a port, or
/// their last label is not a name.
pub fn scrub_addresses(msg: &str) -> Cow<'_, str> {
    let bytes = msg.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Addresses are ASCII: only ASCII starts are candidates (and slicing there is
        // always on a character boundary).
        let boundary = bytes[i].is_ascii() && (i == 0 || !is_host_byte(bytes[i - 1]));
        let found = if boundary {
            url_at(msg, i).or_else(|| host_port_at(msg, i))
        } else {
            None
        };
        match found {
            Some(end) => {
                let o = out.get_or_insert_with(|| String::with_capacity(msg.len()));
                o.push_str(&msg[copied..i]);
                o.push_str(ADDRESS_PLACEHOLDER);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(msg),
        Some(mut o) => {
            o.push_str(&msg[copied..]);
            Cow::Owned(o)
        }
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'
}

/// End of a URL starting at `i`, without trailing punctuation of the sentence.
fn url_at(msg: &str, i: usize) -> Option<usize> {
    let rest = &msg[i..];
    let scheme = URL_SCHEMES.iter().find(|s| {
        rest.len() >= s.len() && rest.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
    })?;
    let mut end = i + scheme.len();
    let b = msg.as_bytes();
    while end < b.len()
        && !b[end].is_ascii_whitespace()
        && !matches!(b[end], b'"' | b'\'' | b'`' | b'<' | b'>')
    {
        end += 1;
    }
    while end > i + scheme.len() && matches!(b[end - 1], b':' | b'.' | b',' | b';' | b')') {
        end -= 1;
    }
    Some(end)
}

/// End of `host:port` (or of a bracketed IPv6 literal) starting at `i`.
fn host_port_at(msg: &str, i: usize) -> Option<usize> {
    let b = msg.as_bytes();
    if b[i] == b'[' {
        let close = i + msg[i..].find(']')?;
        let inner = &msg[i + 1..close];
        if inner.contains(':') && inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(port_end(b, close + 1).unwrap_or(close + 1));
        }
        return None;
    }
    let mut end = i;
    while end < b.len() && is_host_byte(b[end]) {
        end += 1;
    }
    let host = &msg[i..end];
    let is_host = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::Ipv4Addr>().is_ok()
        || (host.contains('.')
            && host
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic())));
    if !is_host {
        return None;
    }
    port_end(b, end)
}

/// With `:` and 1–5 digits at `at`, the index after the digits.
fn port_end(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b':') {
        return None;
    }
    let mut end = at + 1;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    let digits = end - at - 1;
    let boundary = b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
    ((1..=5).contains(&digits) && boundary).then_some(end)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_scrubbed_and_model_names_kept() {
        let cases = [
            (
                "cannot connect to http://127.0.0.1:11434/api/tags: Connection refused (os error 111)",
                "cannot connect to <engine address>: Connection refused (os error 111)",
            ),
            (
                "invalid engine URL HTTPS://gpu-box.lan:8000/a b: invalid uri character",
                "invalid engine URL <engine address> b: invalid uri character",
            ),
            ("request to http://[::1]:8000/v1 failed", "request to <engine address> failed"),
            ("é→http://127.0.0.1:1/ü ok", "é→<engine address> ok"),
            ("tcp connect error: 10.0.0.5:8000.", "tcp connect error: <engine address>."),
            ("peer [fd00::1]:80 and localhost:1234", "peer <engine address> and <engine address>"),
            ("via gpu-box.lan:8000 (socks5h://tor.internal:9050)", "via <engine address> (<engine address>)"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub_addresses(input), want, "{input}");
        }
        for kept in [
            "model `llama3.2:latest` is not served",
            "model `qwen2.5:7b` or `phi3:14` or `llama3.2:1`",
            "flm://ollama-default/llama3.2:latest",
            "the request body exceeds 10485760 bytes (proxy.max_body_bytes)",
            "at 12:30:45, address 203.0.113.9 is banned",
        ] {
            assert!(matches!(scrub_addresses(kept), Cow::Borrowed(_)), "{kept}");
        }
    }

    #[test]
    fn rendered_bodies_never_carry_addresses() {
        let e = ApiError::engine(
            "chat_error",
            &EngineError::Network(
                "cannot connect to http://127.0.0.1:9/v1/chat/completions: refused".into(),
            ),
        );
        let body = e.body("r1");
        assert!(!body.contains("127.0.0.1"), "{body}");
        assert!(body.contains("<engine address>"), "{body}");
    }
}
