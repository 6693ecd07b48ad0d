//! OpenAI-shaped errors (spec 30-proxy §9): `{"error":{code,message,type,request_id}}`.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension and
//! the outermost middleware renders the body, adding the request id. That keeps the
//! request id in exactly one place.

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

    /// JSON body with the request id.
    pub fn body(&self, request_id: &str) -> String {
        serde_json::json!({"error": {
            "code": self.code,
            "message": self.message,
            "type": self.kind,
            "request_id": request_id,
        }})
        .to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}
