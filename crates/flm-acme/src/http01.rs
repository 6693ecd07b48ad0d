//! HTTP-01 answers: [`Http01Responder`] and the axum route that serves it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The path prefix the ACME server fetches (RFC 8555 §8.3).
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending HTTP-01 answers: token → key authorization.
///
/// Cheap to clone (shared map). [`obtain`](crate::obtain) inserts an entry when it
/// accepts a challenge and removes it when the issuance ends, whatever the outcome; the
/// proxy's HTTP listener serves [`http01_router`] over the same responder. A token
/// that is not pending gets `404`, so the route reveals nothing between issuances.
#[derive(Clone, Default)]
pub struct Http01Responder {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl std::fmt::Debug for Http01Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http01Responder")
            .field("pending", &self.len())
            .finish()
    }
}

impl Http01Responder {
    /// An empty responder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key authorization for `token`, if a challenge with that token is pending.
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// Publishes `key_authorization` under `token`.
    pub fn insert(&self, token: impl Into<String>, key_authorization: impl Into<String>) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.into(), key_authorization.into());
    }

    /// Withdraws `token`.
    pub fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// Number of pending challenges.
    pub fn len(&self) -> usize {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no challenge is pending (the integrator may close the challenge route).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GET /.well-known/acme-challenge/{token}` answering from `responder`: `200` with the
/// key authorization as `text/plain`, or `404`.
///
/// Mount it on the proxy's plain-HTTP listener (port 80 or the port forwarded from
/// 80), ahead of the HTTP→HTTPS redirect: RFC 8555 §8.3 validation follows redirects
/// only to ports 80/443, and spec 30-proxy §10.2 keeps this the only route served over
/// HTTP in `https-acme` mode.
pub fn http01_router(responder: Http01Responder) -> Router {
    Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            get(http01_challenge_handler),
        )
        .with_state(responder)
}

async fn http01_challenge_handler(
    State(responder): State<Http01Responder>,
    Path(token): Path<String>,
) -> Response {
    match responder.get(&token) {
        Some(key_auth) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            key_auth,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
