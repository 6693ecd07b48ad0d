//! The daemon's admin API (spec 30-proxy §12): loopback only, bearer token, and a
//! `Host` check so a web page cannot reach it through DNS rebinding.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use flm_core::proxy::ProxyConfig;
use flm_core::CoreError;
use serde_json::json;
use subtle_free::ct_eq;

use crate::manager::{ProxyManager, StopTarget};

/// Admin authentication failures tolerated per address before a temporary block.
const MAX_FAILURES: u32 = 5;
const BLOCK_FOR: Duration = Duration::from_secs(60);

struct AdminState {
    manager: ProxyManager,
    token: String,
    port: u16,
    failures: Mutex<HashMap<std::net::IpAddr, (u32, Option<Instant>)>>,
    started_at: String,
}

/// Builds the admin router.
pub fn router(manager: ProxyManager, token: String, port: u16) -> axum::Router {
    let state = Arc::new(AdminState {
        manager,
        token,
        port,
        failures: Mutex::new(HashMap::new()),
        started_at: chrono::Utc::now().to_rfc3339(),
    });
    axum::Router::new()
        .route("/admin/health", get(health))
        .route("/admin/status", get(status))
        .route("/admin/start", post(start))
        .route("/admin/stop", post(stop))
        .route("/admin/reload-keys", post(reload_keys))
        .route("/admin/reload-security", post(reload_security))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: ProxyManager,
    token: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let app = router(manager, token, port).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::stopped(&mut shutdown).await })
        .await
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn core_error(e: &CoreError) -> Response {
    let status = match e.exit_code() {
        2 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    };
    error(status, e.code(), &e.to_string())
}

async fn guard(
    State(st): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API only answers loopback clients",
        );
    }
    let host_ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            h == format!("127.0.0.1:{}", st.port)
                || h == format!("localhost:{}", st.port)
                || h == format!("[::1]:{}", st.port)
        });
    if !host_ok {
        return error(StatusCode::FORBIDDEN, "forbidden", "unexpected Host header");
    }
    let now = Instant::now();
    if let Ok(f) = st.failures.lock() {
        if let Some((_, Some(until))) = f.get(&peer.ip()) {
            if *until > now {
                return error(
                    StatusCode::FORBIDDEN,
                    "ip_blocked",
                    "too many failed admin authentications; try again later",
                );
            }
        }
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !ct_eq(presented.as_bytes(), st.token.as_bytes()) {
        if let Ok(mut f) = st.failures.lock() {
            let e = f.entry(peer.ip()).or_insert((0, None));
            e.0 += 1;
            if e.0 > MAX_FAILURES {
                e.1 = Some(now + BLOCK_FOR);
                e.0 = 0;
                tracing::warn!(ip = %peer.ip(), "admin API: too many authentication failures; blocked for 60 s");
            }
        }
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "invalid admin token",
        );
    }
    if let Ok(mut f) = st.failures.lock() {
        f.remove(&peer.ip());
    }
    next.run(req).await
}

async fn health() -> Response {
    Json(json!({"status": "ok", "pid": std::process::id()})).into_response()
}

async fn status(State(st): State<Arc<AdminState>>) -> Response {
    let security: serde_json::Map<String, serde_json::Value> = st
        .manager
        .guard()
        .counters()
        .into_iter()
        .map(|(name, _, _, value)| (name.to_owned(), value.into()))
        .collect();
    Json(json!({
        "pid": std::process::id(),
        "started_at": st.started_at,
        "proxies": st.manager.status(),
        "security": security,
    }))
    .into_response()
}

async fn start(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let config: ProxyConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PROXY_INVALID_CONFIG",
                &format!("invalid proxy configuration: {e}"),
            )
        }
    };
    match st.manager.start(config).await {
        Ok(handle) => Json(handle).into_response(),
        Err(e) => core_error(&e),
    }
}

async fn stop(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let target: StopTarget = if body.is_empty() {
        StopTarget::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("invalid stop request: {e}"),
                )
            }
        }
    };
    match st.manager.stop(&target).await {
        Ok(stopped) => Json(json!({"status": "stopped", "stopped": stopped})).into_response(),
        Err(e) => core_error(&e),
    }
}

async fn reload_keys(State(st): State<Arc<AdminState>>) -> Response {
    match st.manager.reload_keys().await {
        Ok(n) => Json(json!({"keys": n})).into_response(),
        Err(e) => core_error(&e),
    }
}

async fn reload_security(State(st): State<Arc<AdminState>>) -> Response {
    match st.manager.reload_security().await {
        Ok(()) => Json(json!({"reloaded": true})).into_response(),
        Err(e) => core_error(&e),
    }
}

/// Constant-time comparison without an extra dependency.
mod subtle_free {
    /// Whether `a == b`, in time independent of where they differ.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
