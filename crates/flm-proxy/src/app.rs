//! The proxy's axum application: shared state, routes and the middleware stack.
//!
//! Layer order, outermost first, and why:
//! 1. `request_context` — assigns the request id, renders error bodies (with that id)
//!    and stamps `x-request-id`, the FLM identity header and the security headers on
//!    *every* response, including 401s, 403s and 404s;
//! 2. the defence ([`crate::defence::layer`]) — banned IPs, allow list, resources,
//!    intrusion and anomaly detection, per-IP rate limit, and the audit record of
//!    every request; before CORS so that a banned client gets nothing, not even a
//!    preflight answer;
//! 3. CORS — answers preflights before authentication (browsers send no key on them)
//!    and adds the allow headers per the policy's `cors` (read live, so a policy
//!    change applies at once);
//! 4. routes: `/health` is public; `/v1/*` and `/engine/*` sit behind `require_key`
//!    (authentication failures feed the blocklist; then the per-key rate limit);
//!    everything else is a JSON 404.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use flm_core::config::ProxySettings;
use flm_core::FLM_SERVER_HEADER;

use crate::error::ApiError;
use crate::handlers;
use crate::request_id::{new_request_id, RequestId};
use crate::routing::Router;

/// Identity of the authenticated caller.
#[derive(Debug, Clone)]
pub struct KeyId(pub String);

/// What the authenticated caller's key may do (models, routes), for the handlers.
#[derive(Debug, Clone)]
pub struct KeyAccess(pub Arc<flm_core::keys::KeyGrant>);

/// State shared by every request of one proxy instance.
pub struct AppState {
    /// Engine routing.
    pub router: Arc<Router>,
    /// Active API keys: the key table plus a bounded store lookup of key ids it does not know yet.
    pub(crate) key_lookup: Arc<crate::keys::KeyLookup>,
    /// Timeouts and limits.
    pub settings: ProxySettings,
    /// The defence: policy, blocklist, limits, detectors, audit.
    pub guard: Arc<crate::defence::Guard>,
    /// Whether this listener is bound to a non-loopback address (spec 40-security
    /// §11: the abuse protections default to on).
    pub exposed: bool,
    /// How long a request may wait for the first engine check after start.
    pub first_check_wait: Duration,
    /// Usage metering (`None`: not recorded).
    pub usage: Option<Arc<crate::telemetry::UsageMeter>>,
    /// Stored `/v1/responses` answers (`previous_response_id`, `GET /v1/responses/{id}`).
    pub(crate) responses: Arc<crate::responses::ResponseStore>,
    /// The SOCKS5 endpoint remote media is fetched through (the instance's egress);
    /// `None`: direct, with the SSRF guard's own resolution.
    pub media_egress: Option<String>,
    /// Model profiles and prompt templates (shared by the instances of a manager).
    pub(crate) profiles: crate::profiles::SharedProfiles,
}

/// Shared state handle.
pub type SharedState = Arc<AppState>;

/// Builds the application.
pub fn build(state: SharedState) -> axum::Router {
    let protected = axum::Router::new()
        .route("/v1/models", get(handlers::list_models))
        .route("/metrics", get(crate::defence::metrics))
        .route(
            "/v1/chat/completions",
            post(handlers::chat_completions).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/completions",
            post(handlers::completions).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/responses",
            post(crate::responses::create).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/responses/{id}",
            get(crate::responses::retrieve).delete(crate::responses::delete),
        )
        .route(
            "/v1/embeddings",
            post(handlers::embeddings).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/audio/transcriptions",
            post(crate::media::transcriptions).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/audio/translations",
            post(crate::media::translations).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/audio/speech",
            post(crate::media::speech).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/v1/images/generations",
            post(crate::media::image_generations).route_layer(middleware::from_fn_with_state(
                state.clone(),
                crate::telemetry::meter,
            )),
        )
        .route(
            "/engine/{engine_id}/{*path}",
            any(crate::passthrough::passthrough),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    axum::Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::defence::layer,
        ))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn health() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "invalid_request_error",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

static SERVER_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("flm/", env!("CARGO_PKG_VERSION")));

async fn request_context(mut req: Request, next: Next) -> Response {
    let rid = new_request_id();
    req.extensions_mut().insert(rid.clone());
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    let mut error_code = None;
    if let Some(err) = resp.extensions_mut().remove::<ApiError>() {
        error_code = Some(err.code);
        *resp.body_mut() = Body::from(err.body(&rid.0));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(
            resp.status(),
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The body was not (fully) read: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        tracing::info!(request_id = %rid.0, %method, %path, status = resp.status().as_u16(), error_type = err.code, latency_us = started.elapsed().as_micros() as u64, "request failed");
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&rid.0) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    headers.insert(
        HeaderName::from_static(FLM_SERVER_HEADER),
        SERVER_VALUE.clone(),
    );
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    crate::access_log::wrap(resp, &rid.0, method, path, started, error_code)
}

/// Spec 40-security §5: on every response. The API serves JSON only, so the CSP
/// allows nothing at all.
const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_XSS_PROTECTION, "1; mode=block"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'none'; style-src 'none'; img-src 'none'; font-src 'none'; frame-ancestors 'none'; form-action 'none'",
    ),
    (
        HeaderName::from_static("permissions-policy"),
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
    ),
];

async fn cors(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let policies = state.guard.policies();
    let cors = &policies.raw.cors;
    let allowed = origin.as_ref().and_then(|o| {
        if cors.allowed_origins.is_empty() {
            return Some(HeaderValue::from_static("*"));
        }
        let o_str = o.to_str().ok()?.trim_end_matches('/').to_ascii_lowercase();
        cors.allowed_origins
            .iter()
            .any(|a| a == "*" || *a == o_str || o_str.split("://").nth(1) == Some(a.as_str()))
            .then(|| o.clone())
    });
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        if allowed.is_none() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "access_denied",
                "origin not allowed by the CORS policy",
            )
            .into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        let methods = cors
            .allowed_methods
            .as_ref()
            .map(|m| m.join(", "))
            .and_then(|m| HeaderValue::from_str(&m).ok())
            .unwrap_or(HeaderValue::from_static("GET, POST, OPTIONS"));
        let headers = cors
            .allowed_headers
            .as_ref()
            .map(|m| m.join(", "))
            .and_then(|m| HeaderValue::from_str(&m).ok())
            .unwrap_or(HeaderValue::from_static(
                "authorization, content-type, x-request-id",
            ));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, headers);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        drop(policies);
        next.run(req).await
    };
    if let Some(v) = allowed {
        let h = resp.headers_mut();
        if v != "*" {
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset",
            ),
        );
    }
    resp
}

async fn require_key(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    let result = state
        .key_lookup
        .verify(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
        .await;
    match result {
        Ok(grant) => {
            let id = grant.id.clone();
            tracing::debug!(api_key_id = %id, path = %req.uri().path(), "authenticated");
            let class = flm_core::key_scope::RouteClass::of_path(req.uri().path());
            if let Err(refused) = grant.scope.check_route(class) {
                tracing::info!(api_key_id = %id, path = %req.uri().path(), "route outside the key's scope");
                let mut resp = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "route_not_allowed",
                    "access_denied",
                    refused.message,
                )
                .into_response();
                resp.extensions_mut().insert(KeyId(id));
                return resp;
            }
            let limit = state.guard.key_limit(state.exposed, &id);
            if let Some((d, now)) = limit.filter(|(d, _)| !d.allowed) {
                let mut resp = crate::defence::rate_limited(
                    "rate limit of this API key exceeded (policy `rate_limit`)",
                )
                .into_response();
                crate::defence::rate_headers(resp.headers_mut(), &d, now, true);
                resp.extensions_mut().insert(KeyId(id));
                return resp;
            }
            // Token budgets (`--tpm`, `--monthly-tokens`): checked before, charged
            // once the response body ended.
            let budgets = state.key_lookup.budgets().clone();
            let request_bytes = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            // Reading or deleting a stored response spends no tokens (its body holds
            // the usage of the request that created it).
            let stored_response = class == Some(flm_core::key_scope::RouteClass::Responses)
                && req.method() != Method::POST;
            let admitted = if stored_response {
                Ok(None)
            } else {
                let upload = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/"));
                let sides = crate::budget::Sides::of(class, upload);
                budgets.admit(&grant, class, request_bytes, sides).await
            };
            let charge = match admitted {
                Ok(c) => c,
                Err(mut resp) => {
                    resp.extensions_mut().insert(KeyId(id));
                    return resp;
                }
            };
            req.extensions_mut().insert(KeyId(id.clone()));
            req.extensions_mut().insert(KeyAccess(grant));
            let mut resp = next.run(req).await;
            if let Some((d, now)) = limit {
                crate::defence::rate_headers(resp.headers_mut(), &d, now, false);
            }
            if let Some(charge) = charge {
                resp = crate::budget::settle_when_done(resp, charge, budgets);
            }
            resp.extensions_mut().insert(KeyId(id));
            resp
        }
        Err(failure) => {
            let rid = req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            let ip = req
                .extensions()
                .get::<crate::defence::ClientIp>()
                .map(|c| c.0);
            let cross_site = req
                .extensions()
                .get::<crate::defence::CrossSite>()
                .is_some();
            // Only a presented credential can be a failed guess: a request without
            // `Authorization` is what any `<img>` on any page sends, and counting it
            // would let a page get its visitors banned.
            let presented = !matches!(
                failure,
                flm_core::keys::AuthFailure::MissingAuthorizationHeader
            );
            let shown_ip = ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
            tracing::warn!(request_id = %rid, reason = failure.reason(), client_ip = %shown_ip, cross_site, path = %req.uri().path(), "authentication failed");
            if let Some(ip) = ip.filter(|_| presented) {
                state
                    .guard
                    .auth_failure(state.exposed, ip, cross_site, &rid, req.uri().path());
            }
            let mut resp = ApiError::unauthorized(match failure {
                flm_core::keys::AuthFailure::MissingAuthorizationHeader => {
                    "missing API key: send `Authorization: Bearer <key>` (create one with `flm api-keys create --label <name>`)"
                }
                flm_core::keys::AuthFailure::InvalidAuthorizationFormat => {
                    "invalid Authorization header: expected `Bearer <key>`"
                }
                flm_core::keys::AuthFailure::InvalidOrRevokedApiKey => "invalid or revoked API key",
                flm_core::keys::AuthFailure::ExpiredApiKey => {
                    "this API key has expired (`flm api-keys list` shows its expiry)"
                }
            })
            .into_response();
            resp.extensions_mut()
                .insert(crate::defence::AuthReason(failure.reason()));
            resp
        }
    }
}
