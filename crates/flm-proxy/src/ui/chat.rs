//! `POST /api/v1/chat/completions`: the chat tester's requests, relayed to the
//! running proxy on the user's behalf.
//!
//! Why a relay over loopback with the daemon's own key: the browser never holds an
//! API key (none in JS memory, storage or URLs), yet the request takes the proxy's
//! full path (auth, policy, routing, audit under the key id `key_local-cli`), so the
//! tester shows exactly what a real client would get. The key lives only in this
//! process's memory. The response (status, body, SSE chunks as they arrive,
//! `x-request-id`, `x-flm-status`) is passed through unbuffered.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flm_core::proxy::{ProxyHandle, ProxyMode};

use super::UiState;
use crate::ui_api::UiError;

/// Headers of the proxy's answer that reach the app.
const PASSED: [&str; 4] = [
    "content-type",
    "x-request-id",
    "x-flm-status",
    "retry-after",
];

/// The proxy's base URL as seen from this machine, and the root certificate to trust
/// for its HTTPS port.
fn target(h: &ProxyHandle) -> (String, Option<String>) {
    let host = match h.listen_addr.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        },
        _ => "127.0.0.1".to_owned(),
    };
    match (h.mode, h.https_port, &h.tls) {
        (ProxyMode::LocalHttp, _, _) | (_, None, _) | (_, _, None) => {
            (format!("http://{host}:{}", h.port), None)
        }
        (_, Some(p), Some(tls)) => (
            format!("https://{host}:{p}"),
            Some(tls.trust_cert_path.clone()),
        ),
    }
}

fn client(root: Option<&str>) -> Result<reqwest::Client, UiError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5));
    if let Some(path) = root.filter(|p| !p.is_empty()) {
        let pem = std::fs::read(path).map_err(UiError::internal)?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(UiError::internal)?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(UiError::internal)
}

pub(crate) async fn completions(State(st): State<Arc<UiState>>, body: Bytes) -> Response {
    match relay(&st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn relay(st: &UiState, body: Bytes) -> Result<Response, UiError> {
    let Some(handle) = st.deps.manager.status().into_iter().find(|h| h.running) else {
        return Err(UiError::new(
            StatusCode::CONFLICT,
            "proxy_not_running",
            "the server is not running; start it from the dashboard",
        ));
    };
    let Some(key) = st.deps.relay_key.as_deref() else {
        return Err(UiError::new(
            StatusCode::CONFLICT,
            "relay_unavailable",
            "this daemon has no key for the chat tester",
        ));
    };
    let (base, root) = target(&handle);
    let resp = client(root.as_deref())?
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(url = %base, error = %e, "chat relay: the proxy did not answer");
            UiError::new(
                StatusCode::BAD_GATEWAY,
                "relay_failed",
                format!("the server at {base} did not answer"),
            )
        })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = Vec::new();
    for name in PASSED {
        if let Some(v) = resp.headers().get(name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                headers.push((name, v));
            }
        }
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    for (name, v) in headers {
        if name == "x-request-id" {
            // The app's request-id layer sets its own; the outer header layer puts
            // the proxy's back, since that is the id its logs and audit rows carry.
            out.extensions_mut().insert(RelayedRequestId(v.clone()));
        }
        out.headers_mut().insert(name, v);
    }
    Ok(out)
}

/// The proxy's `x-request-id` of a relayed response.
#[derive(Clone)]
pub(crate) struct RelayedRequestId(pub(crate) HeaderValue);
