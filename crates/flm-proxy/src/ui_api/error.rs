//! The app API's error envelope:
//! `{"error":{"code","message","request_id","fields"?}}` with an `x-request-id` header.
//!
//! Handlers return [`UiError`] without knowing the request id; [`with_request_id`] (the
//! outermost layer of the app API) gives every request an id and writes it into the
//! header and into every error body, so the app can always show one.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request_id::{new_request_id, RequestId};

/// One invalid field of a request body: `path` as `rate_limit.rpm`, `ip_whitelist[2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// An app API error: status, stable code (the app translates it), English message.
#[derive(Debug, Clone)]
pub struct UiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl UiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// `422` with the fields that failed validation.
    pub fn invalid(
        code: &'static str,
        message: impl Into<String>,
        fields: Vec<FieldError>,
    ) -> Self {
        Self {
            fields,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of ours: logged with its cause, shown to the app without internals.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "app API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "FLM could not complete this request; the daemon log has the cause",
        )
    }

    fn body(&self, request_id: &str) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if !self.fields.is_empty() {
            error["fields"] = serde_json::json!(self.fields);
        }
        serde_json::json!({ "error": error })
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for UiError {}

impl IntoResponse for UiError {
    /// Rendered without an id here; [`with_request_id`] re-renders it with the
    /// request's id. The error travels in the response extensions for that.
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body("-"))).into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

/// Outermost app-API layer: a request id for every request (extension + header) and in
/// every error body.
pub async fn with_request_id(mut req: Request, next: Next) -> Response {
    let rid = new_request_id();
    req.extensions_mut().insert(rid.clone());
    let mut resp = next.run(req).await;
    if let Some(err) = resp.extensions_mut().remove::<UiError>() {
        resp = (err.status, axum::Json(err.body(&rid.0))).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&rid.0) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The id [`with_request_id`] gave this request (for logs and audit records).
pub fn request_id_of(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map_or_else(|| "-".to_owned(), |r| r.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    #[tokio::test]
    async fn errors_carry_the_request_id_in_body_and_header() {
        let app = Router::new()
            .route(
                "/x",
                get(|| async {
                    UiError::invalid(
                        "invalid_policy",
                        "bad",
                        vec![FieldError {
                            path: "rate_limit.rpm".into(),
                            message: "must be at least 1".into(),
                        }],
                    )
                }),
            )
            .layer(axum::middleware::from_fn(with_request_id));
        let resp = tower::ServiceExt::oneshot(
            app,
            axum::http::Request::get("/x")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["request_id"], rid.as_str());
        assert_eq!(v["error"]["code"], "invalid_policy");
        assert_eq!(v["error"]["fields"][0]["path"], "rate_limit.rpm");
    }
}
