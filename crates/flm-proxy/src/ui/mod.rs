//! The app server: the React app (`ui/dist`, embedded) and its JSON API (`/api/v1`),
//! on a loopback listener of the daemon, never on a proxy port.
//!
//! Security of the app (see docs/guides/ui.md):
//! - loopback only; the `Host` must name the loopback address and this port (a web
//!   page that rebinds its own name to 127.0.0.1 gets `421 misdirected_host`);
//! - login by a one-time code (`flm ui` asks the admin API for it) exchanged at
//!   `/login` for an `HttpOnly; SameSite=Strict` session cookie;
//! - every `/api/v1` call needs that session; every non-GET call also needs the
//!   session's CSRF token in `X-FLM-CSRF`, and a present `Origin` must be the app's;
//! - a strict Content-Security-Policy and no-sniff / no-referrer / no-framing on every
//!   response.
//!
//! The composition root calls [`start`] with the routers of other app API modules
//! (paths relative to `/api/v1`); they are mounted behind the same guard.

pub mod api;
mod assets;
mod chat;
pub mod events;
pub mod session;
pub mod types;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flm_core::ports::ChangeMarkers;
use flm_core::services::{ConfigService, EngineService, KeyService};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use events::{EventBus, UiEvent};
pub use session::{Session, SessionTiming, Sessions};

use crate::manager::ProxyManager;
use crate::ui_api::{with_request_id, UiError};

/// Name of the session cookie.
pub const COOKIE: &str = "flm_session";
/// Header carrying the session's CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-flm-csrf";
/// The app's Content-Security-Policy: no inline script or style, nothing foreign.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the app's handlers use; built by the composition root.
#[derive(Clone)]
pub struct UiDeps {
    /// The daemon's proxies.
    pub manager: ProxyManager,
    /// Settings.
    pub config: ConfigService,
    /// Engines.
    pub engines: EngineService,
    /// API keys.
    pub keys: KeyService,
    /// Policy and blocklist (warnings, ban events); `None` without `security.db`.
    pub security: Option<crate::defence::SecurityDeps>,
    /// Change markers of keys, policy and blocklist (events for changes made by
    /// other processes).
    pub changes: Option<Arc<dyn ChangeMarkers>>,
    /// The daemon's own in-memory API key, used by the chat relay so that the
    /// browser never holds a key.
    pub relay_key: Option<String>,
    /// Code and session lifetimes.
    pub timing: SessionTiming,
}

/// Shared by the handlers.
pub struct UiState {
    pub(crate) deps: UiDeps,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) events: EventBus,
    port: u16,
}

/// A running app server: what the admin API and the daemon need from it.
#[derive(Clone)]
pub struct UiHandle {
    /// Codes and sessions.
    pub sessions: Arc<Sessions>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The live event bus.
    pub events: EventBus,
}

impl UiHandle {
    /// A new one-time login code and the URL that redeems it.
    pub fn login_link(&self) -> (String, String) {
        let code = self.sessions.issue_code(Instant::now());
        let url = format!("{}/login?code={code}", self.url);
        (code, url)
    }

    /// Whether a browser session (or a pending code) keeps the daemon up.
    pub fn in_use(&self) -> bool {
        self.sessions.in_use(Instant::now())
    }
}

/// Binds the app's loopback listener: `127.0.0.1:<port>`, or a random free port
/// when `port` is 0 or taken (the caller publishes the real URL).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    if port != 0 {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                tracing::warn!(port, error = %e, "app port unavailable; using a random loopback port");
            }
        }
    }
    TcpListener::bind(("127.0.0.1", 0)).await
}

/// Builds the app router for a listener on `port`. `extra` are other app API
/// routers (paths relative to `/api/v1`, state applied), mounted behind the guard.
pub fn router(deps: UiDeps, port: u16, extra: Vec<Router>) -> (Router, UiHandle) {
    let sessions = Arc::new(Sessions::new(deps.timing));
    let events = EventBus::new();
    let state = Arc::new(UiState {
        deps,
        sessions: sessions.clone(),
        events: events.clone(),
        port,
    });
    let mut api = api::routes().with_state(state.clone());
    for r in extra {
        api = api.merge(r);
    }
    let api = api
        .fallback(|| async { UiError::not_found("not_found", "no such app API endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), api_guard));
    let app = Router::new()
        .route("/login", get(login))
        .fallback(spa)
        .with_state(state.clone())
        .nest("/api/v1", api)
        .layer(middleware::from_fn_with_state(state, host_check))
        .layer(middleware::from_fn(with_request_id))
        .layer(middleware::from_fn(security_headers));
    let handle = UiHandle {
        sessions,
        url: format!("http://127.0.0.1:{port}"),
        events,
    };
    (app, handle)
}

/// Starts the app server on `listener` (and the event watchers) until `shutdown`
/// turns true. This is the composition root's entry point.
pub fn start(
    listener: TcpListener,
    deps: UiDeps,
    extra: Vec<Router>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(UiHandle, JoinHandle<std::io::Result<()>>)> {
    let port = listener.local_addr()?.port();
    let watch_deps = deps.clone();
    let (app, handle) = router(deps, port, extra);
    events::spawn_watchers(&watch_deps, &handle.events, shutdown.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { crate::stopped(&mut shutdown).await })
            .await
    });
    tracing::info!(url = %handle.url, "app server listening");
    Ok((handle, task))
}

fn allowed_host(host: &str, port: u16) -> bool {
    host == format!("127.0.0.1:{port}")
        || host == format!("localhost:{port}")
        || host == format!("[::1]:{port}")
}

fn allowed_origin(origin: &str, port: u16) -> bool {
    origin == format!("http://127.0.0.1:{port}") || origin == format!("http://localhost:{port}")
}

/// DNS rebinding: a page served under another name that resolves to 127.0.0.1
/// sends its own name in `Host`.
async fn host_check(State(st): State<Arc<UiState>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| allowed_host(h, st.port));
    if !ok {
        return UiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_host",
            "this address only answers as 127.0.0.1 or localhost",
        )
        .into_response();
    }
    next.run(req).await
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("flm_session="))
}

/// The `/api/v1` guard: Origin, then session, then CSRF for state changes.
async fn api_guard(State(st): State<Arc<UiState>>, mut req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|o| allowed_origin(o, st.port)) {
            return UiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin_refused",
                "requests from other sites are refused",
            )
            .into_response();
        }
    }
    let session =
        session_cookie(req.headers()).and_then(|id| st.sessions.touch(id, Instant::now()));
    let Some(session) = session else {
        return UiError::new(
            StatusCode::UNAUTHORIZED,
            "session_required",
            "not logged in, or the session ended; run `flm ui` to log in",
        )
        .into_response();
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if !bool::from(presented.ct_eq(session.csrf_token.as_bytes())) {
            return UiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "missing or wrong X-FLM-CSRF header; reload the app",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Security headers on every response; the hashed assets are cached for a year.
async fn security_headers(req: Request, next: Next) -> Response {
    let immutable = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    if let Some(rid) = resp.extensions_mut().remove::<chat::RelayedRequestId>() {
        resp.headers_mut().insert("x-request-id", rid.0);
    }
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if immutable && resp.status() == StatusCode::OK {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    resp
}

const LOGIN_FAILED: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>FLM: login link expired</title></head><body><h1>This login link cannot be used</h1><p>Login links work once, within 60 seconds. Run <code>flm ui</code> again to open the app.</p></body></html>";

/// `GET /login?code=…`: the code becomes a session cookie, and a redirect removes
/// the code from the address bar.
async fn login(
    State(st): State<Arc<UiState>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let code = q.get("code").map(String::as_str).unwrap_or_default();
    let Some(session) = st.sessions.redeem(code, Instant::now()) else {
        tracing::warn!("app login refused: unknown, used or expired code");
        return (StatusCode::UNAUTHORIZED, Html(LOGIN_FAILED)).into_response();
    };
    tracing::info!("app login");
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", session.id);
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            h.insert(header::SET_COOKIE, v);
        }
        Err(e) => return UiError::internal(e).into_response(),
    }
    resp
}

/// The app's files; other GETs that accept HTML get `index.html` (client routes).
async fn spa(method: Method, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() || path == "index.html" {
        return assets::index();
    }
    if let Some(f) = assets::file(path) {
        return f;
    }
    if path.starts_with("assets/") || path.starts_with("api/") {
        return not_found();
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        assets::index()
    } else {
        not_found()
    }
}
