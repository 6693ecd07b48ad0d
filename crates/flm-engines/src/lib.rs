//! # flm-engines — FLM's engine adapters
//!
//! One module per engine family, all implementing [`flm_core::ports::LlmEngine`]:
//!
//! - [`ollama`]: Ollama's native API (`/api/tags`, `/api/show`, `/api/chat` with NDJSON
//!   streams, `/api/embed`);
//! - [`openai`]: the OpenAI-compatible API shared by vLLM, LM Studio, llama.cpp's
//!   `llama-server` and any other OpenAI-compatible server, with per-kind model
//!   metadata (LM Studio `/api/v0/models`, llama.cpp `/props`, vLLM `max_model_len`);
//! - [`whisper`]: whisper.cpp's `whisper-server` (speech-to-text only, reached by
//!   the proxy's audio routes at its `/inference` path);
//! - [`probe`]: detection probes that confirm an engine's *identity* before trusting
//!   it (llama-server answers some Ollama routes; LM Studio answers 200 with error
//!   bodies; FLM's own proxy must never be taken for an engine);
//! - [`discovery`]: installed-binary discovery (file-system only) and the default
//!   addresses of each kind, read from the environment.
//!
//! All adapters share one `reqwest` client ([`http::HttpClient`]) with TCP_NODELAY,
//! no system proxy (engines are local; egress proxies are configured explicitly:
//! [`HttpClient::with_egress`] sends non-loopback traffic through SOCKS5 as `socks5h`)
//! and bounded timeouts. Streams are parsed incrementally ([`sse`]) so every chunk is
//! handed on as soon as it arrives.

pub mod discovery;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod probe;
pub mod relay;
pub mod sse;
pub mod whisper;

use std::sync::Arc;
use std::time::Duration;

use flm_core::ports::{EngineFactory, LlmEngine};
use flm_core::{EngineKind, EngineTarget};

pub use discovery::{default_targets, BinaryFinder};
pub use http::HttpClient;
pub use probe::HttpProber;

/// The engine registry: builds the adapter for a target's kind.
#[derive(Clone)]
pub struct Registry {
    client: HttpClient,
}

impl Registry {
    /// A registry whose adapters share `client`.
    pub fn new(client: HttpClient) -> Self {
        Self { client }
    }
}

impl EngineFactory for Registry {
    fn build(&self, target: &EngineTarget, request_timeout: Duration) -> Arc<dyn LlmEngine> {
        match target.kind {
            EngineKind::Ollama => Arc::new(ollama::OllamaEngine::new(
                target.id.clone(),
                &target.base_url,
                self.client.clone(),
                request_timeout,
            )),
            EngineKind::WhisperCpp => Arc::new(whisper::WhisperEngine::new(
                target.id.clone(),
                &target.base_url,
                self.client.clone(),
                request_timeout,
            )),
            kind => Arc::new(openai::OpenAiCompatEngine::new(
                target.id.clone(),
                kind,
                &target.base_url,
                self.client.clone(),
                request_timeout,
            )),
        }
    }
}
