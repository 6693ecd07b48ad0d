//! # flm-proxy — FLM's OpenAI-compatible proxy, as a library
//!
//! One endpoint in front of every engine FLM detects:
//!
//! - `GET /health` (public), `GET /v1/models` (every model of every healthy engine,
//!   ids `flm://{engine_id}/{model}`), `POST /v1/chat/completions` (full and
//!   streaming), `POST /v1/responses` and `GET|DELETE /v1/responses/{id}`
//!   (module `responses`: relayed to vLLM, bridged to the chat path elsewhere, with a
//!   bounded per-key store for `previous_response_id`), `POST /v1/embeddings`,
//!   `ANY /engine/{engine_id}/*` (the engine's own
//!   API, only on its detected address); everything else is a JSON 404. Errors have
//!   the OpenAI shape with a request id; every response carries `x-request-id`.
//! - **Relay, not translate, where possible**: engines that speak OpenAI (vLLM,
//!   LM Studio, llama.cpp, generic) get the client's JSON with only `model`
//!   rewritten, and their SSE bytes come back chunk by chunk, unparsed. Ollama's
//!   NDJSON is translated to OpenAI SSE. Streams always end with `data: [DONE]`, with
//!   an error event first when the engine breaks off.
//! - **Routing** ([`routing`]): canonical ids pin an engine; bare model names resolve
//!   to the engines serving them, with fail-over before the first byte. A monitor
//!   re-checks engines in the background; dead engines stop being offered at once.
//! - **Keys**: `Authorization: Bearer flm_…` checked against an in-memory table of
//!   SHA-256 digests (O(1), constant-time), swapped atomically when keys change.
//! - [`ProxyManager`] hosts instances; [`admin`] is the daemon's loopback admin API;
//!   [`state_file`] is how CLI invocations find the daemon.
//!
//! - **TLS modes**: `dev-selfsigned` and `packaged-ca` (certificates from `flm-tls`),
//!   `https-acme` (`flm-acme`, HTTP-01 answered on the HTTP port before the redirect;
//!   fallback: reuse the existing certificate → dev-selfsigned with `last_error`;
//!   renewal checked every 24 h and recorded in `certificates`).
//! - **Egress** ([`egress`]): with Tor/SOCKS5, the endpoint must complete a SOCKS5
//!   handshake at start (3 attempts) or the start fails (unless fail-open); engines on
//!   other hosts are then reached through it (`socks5h`), loopback engines directly.
//!
//! Besides `flm-core`, the crate uses `flm-tls` and `flm-acme` for certificates;
//! composition roots hand it the services (engines, keys, audit, certificates).

pub mod access_log;
mod acme_mode;
pub mod admin;
pub mod alert_watch;
mod app;
mod audit;
mod budget;
mod completions;
pub mod defence;
pub mod egress;
pub mod error;
mod handlers;
mod keys;
pub mod manager;
mod media;
mod media_fetch;
mod metrics;
mod multimodal;
mod multipart;
mod openai_req;
mod passthrough;
pub mod policy_rules;
pub(crate) mod profiles;
mod relay;
mod request_id;
mod resources;
mod responses;
pub mod retention;
pub mod routing;
mod server;
pub mod state_file;
pub mod telemetry;
mod tls_mode;
pub mod ui;
pub mod ui_api;

pub use acme_mode::{AcmeDeps, RenewTiming};
pub use audit::AuditStats;
pub use defence::{DefenceStats, Guard, SecurityDeps};
pub use manager::{EgressEngines, ProxyDeps, ProxyManager, ReloadOutcome, StopTarget};
pub use retention::RetentionTiming;

/// Resolves when a shutdown flag turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
