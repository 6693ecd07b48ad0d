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
use flm_core::proxy::ProxyError;
use flm_core::{CoreError, EngineError, RepoError};
use serde::Serialize;

use crate::request_id::{new_request_id, RequestId};

/// One invalid field of a request body: `path` as `rate_limit.rpm`, `ip_whitelist[2]`
/// (`$` for the request as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong: `code` is stable and lower-case (the app translates it),
/// `message` is English for logs and the details view.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// Only on `422` validation errors: every invalid field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
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

    fn body(&self, request_id: &str) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.clone(),
                request_id: request_id.to_owned(),
                fields: self.fields.clone(),
            },
        }
    }
}

/// A core service's error in the app's terms: the status that says what kind of
/// failure it is and the lower-case form of the core's stable code (`KEY_NOT_FOUND`
/// → `key_not_found`), so the app needs one table of codes. Handlers that know more
/// (which field, a more precise code) map the variants they care about first.
impl From<CoreError> for UiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        let status = match &e {
            CoreError::InvalidPolicy(problems) => {
                let fields = problems
                    .iter()
                    .map(|p| FieldError {
                        path: p.field.clone(),
                        message: p.message.clone(),
                    })
                    .collect();
                return Self::invalid("invalid_policy", message, fields);
            }
            CoreError::InvalidInput(_)
            | CoreError::Repo(RepoError::Validation(_))
            | CoreError::Proxy(ProxyError::InvalidConfig(_)) => {
                // The core does not say which field; `$` stands for the request.
                let fields = vec![FieldError {
                    path: "$".into(),
                    message: message.clone(),
                }];
                return Self::invalid(lower_code(&e), message, fields);
            }
            CoreError::Repo(
                RepoError::MigrationFailed(_) | RepoError::Io(_) | RepoError::Database(_),
            )
            | CoreError::Proxy(ProxyError::Daemon(_)) => return Self::internal(e),
            CoreError::Repo(RepoError::ReadOnlyMode(_)) => S::SERVICE_UNAVAILABLE,
            CoreError::Repo(RepoError::NotFound(_))
            | CoreError::KeyNotFound(_)
            | CoreError::ConfigNotSet(_)
            | CoreError::Engine(EngineError::NotFound(_)) => S::NOT_FOUND,
            CoreError::Conflict(_)
            | CoreError::Proxy(
                ProxyError::AlreadyRunning(_)
                | ProxyError::PortInUse(_)
                | ProxyError::NotRunning(_),
            )
            | CoreError::Engine(EngineError::Unsupported(_)) => S::CONFLICT,
            CoreError::Engine(EngineError::Timeout(_)) => S::GATEWAY_TIMEOUT,
            CoreError::Engine(_) => S::BAD_GATEWAY,
            // `CoreError` is non-exhaustive: a new kind is a failure until mapped.
            _ => return Self::internal(e),
        };
        Self::new(status, lower_code(&e), message)
    }
}

/// The core's stable code in lower case, as a `'static` string (the set is closed).
fn lower_code(e: &CoreError) -> &'static str {
    match e.code() {
        "ENGINE_NOT_FOUND" => "engine_not_found",
        "ENGINE_NETWORK_ERROR" => "engine_network_error",
        "ENGINE_API_ERROR" => "engine_api_error",
        "ENGINE_TIMEOUT" => "engine_timeout",
        "ENGINE_UNSUPPORTED" => "engine_unsupported",
        "NOT_FOUND" => "not_found",
        "INVALID_ARGUMENT" => "invalid_argument",
        "READ_ONLY_MODE" => "read_only_mode",
        "CONFIG_NOT_SET" => "config_not_set",
        "ALREADY_EXISTS" => "already_exists",
        "API_KEY_NOT_FOUND" => "key_not_found",
        "PROXY_ALREADY_RUNNING" => "proxy_already_running",
        "PROXY_PORT_IN_USE" => "proxy_port_in_use",
        "PROXY_INVALID_CONFIG" => "invalid_proxy_config",
        "PROXY_NOT_RUNNING" => "proxy_not_running",
        "POLICY_INVALID" => "invalid_policy",
        _ => "internal_error",
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

    #[test]
    fn core_errors_keep_their_code_in_lower_case_with_the_status_of_their_kind() {
        let m = || "m".to_owned();
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (EngineError::NotFound(m()).into(), 404, "engine_not_found"),
            (
                EngineError::Network(m()).into(),
                502,
                "engine_network_error",
            ),
            (
                EngineError::Api {
                    status_code: None,
                    message: m(),
                }
                .into(),
                502,
                "engine_api_error",
            ),
            (EngineError::Timeout(m()).into(), 504, "engine_timeout"),
            (
                EngineError::Unsupported(m()).into(),
                409,
                "engine_unsupported",
            ),
            (RepoError::NotFound(m()).into(), 404, "not_found"),
            (RepoError::Validation(m()).into(), 422, "invalid_argument"),
            (RepoError::ReadOnlyMode(m()).into(), 503, "read_only_mode"),
            (RepoError::Database(m()).into(), 500, "internal_error"),
            (CoreError::ConfigNotSet(m()), 404, "config_not_set"),
            (CoreError::InvalidInput(m()), 422, "invalid_argument"),
            (CoreError::Conflict(m()), 409, "already_exists"),
            (CoreError::KeyNotFound(m()), 404, "key_not_found"),
            (
                ProxyError::AlreadyRunning(m()).into(),
                409,
                "proxy_already_running",
            ),
            (ProxyError::PortInUse(m()).into(), 409, "proxy_port_in_use"),
            (
                ProxyError::InvalidConfig(m()).into(),
                422,
                "invalid_proxy_config",
            ),
            (ProxyError::NotRunning(m()).into(), 409, "proxy_not_running"),
            (ProxyError::Daemon(m()).into(), 500, "internal_error"),
            (CoreError::InvalidPolicy(vec![]), 422, "invalid_policy"),
        ];
        for (e, status, code) in cases {
            let what = format!("{e:?}");
            let u = UiError::from(e);
            assert_eq!((u.status.as_u16(), u.code), (status, code), "{what}");
            assert_eq!(u.code, u.code.to_lowercase());
            if status == 422 {
                assert!(!u.fields.is_empty() || code == "invalid_policy", "{what}");
            }
        }
    }
}
