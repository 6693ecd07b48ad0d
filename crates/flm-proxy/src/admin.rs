//! The daemon's admin API (spec 30-proxy §12): loopback only, bearer token, and a
//! `Host` check so a web page cannot reach it through DNS rebinding.
//!
//! Bad tokens are counted per address and, past [`MAX_FAILURES`] in a row, refused
//! for [`BLOCK_FOR`] without being compared. The right token is checked first and
//! always accepted: every local process shares the loopback address, so a lockout
//! that applied to it would let any of them shut the real CLI out.

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
use subtle::ConstantTimeEq;

use crate::manager::{ProxyManager, StopTarget};

/// Admin authentication failures tolerated per address before a temporary block.
pub const MAX_FAILURES: u32 = 5;
/// How long bad tokens from a blocked address are refused without a comparison.
pub const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at most (loopback has 2^24 of them).
const MAX_TRACKED: usize = 4096;

struct AdminState {
    manager: ProxyManager,
    access: Access,
    started_at: String,
    ui: Option<crate::ui::UiHandle>,
}

/// Who may use the admin API: the token, the expected `Host` port, and the count of
/// bad tokens per address.
struct Access {
    token: String,
    port: u16,
    failures: Mutex<HashMap<std::net::IpAddr, (u32, Option<Instant>)>>,
}

/// Builds the admin router.
pub fn router(manager: ProxyManager, token: String, port: u16) -> axum::Router {
    router_with_ui(manager, token, port, None)
}

/// The admin router of a daemon that also serves the app: adds
/// `POST /admin/ui/login-code` (a one-time login link for `flm ui`).
pub fn router_with_ui(
    manager: ProxyManager,
    token: String,
    port: u16,
    ui: Option<crate::ui::UiHandle>,
) -> axum::Router {
    let state = Arc::new(AdminState {
        manager,
        access: Access {
            token,
            port,
            failures: Mutex::new(HashMap::new()),
        },
        started_at: chrono::Utc::now().to_rfc3339(),
        ui,
    });
    axum::Router::new()
        .route("/admin/health", get(health))
        .route("/admin/status", get(status))
        .route("/admin/start", post(start))
        .route("/admin/stop", post(stop))
        .route("/admin/reload-keys", post(reload_keys))
        .route("/admin/reload-security", post(reload_security))
        .route("/admin/reload", post(reload))
        .route("/admin/ui/login-code", post(ui_login_code))
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
    match check(&st.access, peer, &req, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal,
    }
}

/// The guard's decision: loopback peer, then the `Host`, then the token.
// The refusal is returned as is by the middleware: boxing it would only add a move.
#[allow(clippy::result_large_err)]
fn check(st: &Access, peer: SocketAddr, req: &Request, now: Instant) -> Result<(), Response> {
    if !peer.ip().is_loopback() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API only answers loopback clients",
        ));
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
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "unexpected Host header",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    // `ct_eq` on slices of different lengths returns false at once; the token's length
    // (64) is public.
    if bool::from(presented.ct_eq(st.token.as_bytes())) {
        if let Ok(mut f) = st.failures.lock() {
            f.remove(&peer.ip());
        }
        return Ok(());
    }
    let Ok(mut f) = st.failures.lock() else {
        return Err(bad_token());
    };
    if let Some((_, Some(until))) = f.get(&peer.ip()) {
        if *until > now {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "ip_blocked",
                "too many bad admin tokens from this address; try again later",
            );
            let secs = until.duration_since(now).as_secs().max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            return Err(resp);
        }
    }
    if f.len() >= MAX_TRACKED && !f.contains_key(&peer.ip()) {
        f.retain(|_, (_, until)| until.is_some_and(|u| u > now));
    }
    if f.len() < MAX_TRACKED || f.contains_key(&peer.ip()) {
        let e = f.entry(peer.ip()).or_insert((0, None));
        e.0 += 1;
        e.1 = None;
        if e.0 > MAX_FAILURES {
            e.1 = Some(now + BLOCK_FOR);
            e.0 = 0;
            tracing::warn!(ip = %peer.ip(), "admin API: too many bad tokens; refusing bad tokens from this address for 60 s (the right token still works)");
        }
    }
    Err(bad_token())
}

fn bad_token() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_admin_token",
        "invalid admin token",
    )
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
        "app_in_use": st.ui.as_ref().is_some_and(|u| u.in_use()),
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

async fn ui_login_code(State(st): State<Arc<AdminState>>) -> Response {
    match &st.ui {
        Some(ui) => {
            let (code, url) = ui.login_link();
            Json(json!({"code": code, "url": url})).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "ui_unavailable",
            "this daemon does not serve the app",
        ),
    }
}

async fn reload_keys(State(st): State<Arc<AdminState>>) -> Response {
    match st.manager.reload_keys().await {
        Ok(n) => Json(json!({"keys": n})).into_response(),
        Err(e) => core_error(&e),
    }
}

/// `POST /admin/reload` with `{port?, handle_id?}`: `flm proxy reload`.
async fn reload(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let target: StopTarget = if body.is_empty() {
        StopTarget::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("invalid reload request: {e}"),
                )
            }
        }
    };
    match st.manager.reload(&target).await {
        Ok(r) => Json(json!({"reloaded": r})).into_response(),
        Err(e) => core_error(&e),
    }
}

async fn reload_security(State(st): State<Arc<AdminState>>) -> Response {
    match st.manager.reload_security().await {
        Ok(()) => Json(json!({"reloaded": true})).into_response(),
        Err(e) => core_error(&e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn access() -> Access {
        Access {
            token: TOKEN.into(),
            port: 4000,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn req(host: &str, token: Option<&str>) -> Request {
        let mut b = Request::builder()
            .uri("/admin/health")
            .header(header::HOST, host);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    fn status(r: Result<(), Response>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(resp) => resp.status().as_u16(),
        }
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn only_loopback_peers_with_the_right_host_and_token_get_in() {
        let a = access();
        let now = Instant::now();
        let lo = peer("127.0.0.1");
        assert_eq!(
            status(check(&a, lo, &req("127.0.0.1:4000", Some(TOKEN)), now)),
            200
        );
        assert_eq!(
            status(check(&a, peer("::1"), &req("[::1]:4000", Some(TOKEN)), now)),
            200
        );
        assert_eq!(
            status(check(&a, lo, &req("localhost:4000", Some(TOKEN)), now)),
            200
        );
        // Not loopback: refused even with the right token and Host.
        for ip in ["192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "fd00::2"] {
            assert_eq!(
                status(check(
                    &a,
                    peer(ip),
                    &req("127.0.0.1:4000", Some(TOKEN)),
                    now
                )),
                403,
                "{ip}"
            );
        }
        // DNS rebinding: a page's own Host name, or another port.
        for host in ["evil.example:4000", "127.0.0.1:4001", "127.0.0.1", ""] {
            assert_eq!(
                status(check(&a, lo, &req(host, Some(TOKEN)), now)),
                403,
                "{host}"
            );
        }
        // Wrong, truncated, missing token.
        assert_eq!(
            status(check(
                &a,
                lo,
                &req("127.0.0.1:4000", Some(&TOKEN[1..])),
                now
            )),
            401
        );
        assert_eq!(
            status(check(
                &a,
                lo,
                &req("127.0.0.1:4000", Some(&TOKEN.replace('0', "1"))),
                now
            )),
            401
        );
        assert_eq!(
            status(check(&a, lo, &req("127.0.0.1:4000", None), now)),
            401
        );
    }

    #[test]
    fn bad_tokens_lock_out_bad_tokens_only() {
        let a = access();
        let now = Instant::now();
        let lo = peer("127.0.0.1");
        let bad = || req("127.0.0.1:4000", Some("nope"));
        for _ in 0..=MAX_FAILURES {
            assert_eq!(status(check(&a, lo, &bad(), now)), 401);
        }
        // Locked: bad tokens are refused without a comparison...
        let r = check(&a, lo, &bad(), now).unwrap_err();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        // ...but the right token always works, and clears the count.
        assert_eq!(
            status(check(&a, lo, &req("127.0.0.1:4000", Some(TOKEN)), now)),
            200
        );
        assert_eq!(status(check(&a, lo, &bad(), now)), 401);
        // A lockout ends after BLOCK_FOR.
        for _ in 0..=MAX_FAILURES {
            check(&a, lo, &bad(), now).unwrap_err();
        }
        assert_eq!(
            status(check(&a, lo, &bad(), now + Duration::from_secs(1))),
            429
        );
        assert_eq!(
            status(check(
                &a,
                lo,
                &bad(),
                now + BLOCK_FOR + Duration::from_secs(1)
            )),
            401
        );
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let a = access();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = std::net::Ipv4Addr::from(0x7f00_0000 | i);
            let p = SocketAddr::new(ip.into(), 1);
            check(&a, p, &req("127.0.0.1:4000", Some("bad")), now).unwrap_err();
        }
        assert!(a.failures.lock().unwrap().len() <= MAX_TRACKED);
    }
}
