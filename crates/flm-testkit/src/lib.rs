//! Engine emulators for FLM tests (dev-only).
//!
//! Ollama, LM Studio and vLLM cannot be installed on the test machines, so FLM's engine
//! adapters, detection probes and streaming relay are tested against these emulators.
//! Each one is a real axum HTTP server on loopback that follows
//! `shared/reference/engine-apis.md`: identity probes, model listing shapes, NDJSON and SSE
//! framing, native error shapes and quirks (Ollama's `Host` guard, LM Studio's
//! 200-with-error bodies, vLLM's integer error `code`).
//!
//! Main types:
//! - [`Emulator`]: a running server. [`Emulator::start`] binds (port 0 = ephemeral), and the
//!   server shuts down on drop or on [`Emulator::shutdown`].
//! - [`EmulatorControl`]: a cheap, thread-safe handle to switch the [`Behavior`] (hang,
//!   delay, malformed JSON, loading, failures mid-stream, error statuses) and to read what
//!   the engine received (request counts, last chat body, last headers).
//! - [`EmulatedModel`] / [`EmulatorOptions`]: the served models and their capabilities.
//!
//! Replies are deterministic (`Hello from <kind> <model>: you said …`), streamed in one
//! chunk per word, with usage counted in words. Embeddings are 8-dimensional unit vectors
//! derived from an FNV-1a hash of the input text.
//!
//! Design choice: the emulators synthesise responses from the request instead of replaying
//! recorded fixtures. Replayed fixtures cannot react to the requested model, `stream`,
//! `n`, `stream_options` or `max_tokens`, and the tests need exactly those reactions; the
//! wire shapes are instead pinned by this crate's own tests against the reference.
//!
//! This crate depends on no other FLM crate, so any FLM crate can use it as a
//! dev-dependency without cycles. The `flm-emulator` binary wraps the same library for
//! manual runs and cross-process tests.

mod chat;
mod emulator;
mod fake;
mod form;
pub mod llama;
mod lmstudio;
pub mod media;
mod ollama;
mod openai;
mod responses;
mod server;
mod stream;
mod vllm;
pub mod whisper;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

pub use emulator::{Emulator, EmulatorControl, RecordedRequest, KEPT_PER_ROUTE};
pub use form::FormPart;

/// `http` types used in the public API (for [`EmulatorControl::last_headers`]).
pub use axum::http;

/// Name of the model served when [`EmulatorOptions::default`] is used.
pub const DEFAULT_MODEL: &str = "test-model";

/// Context length reported for models whose [`EmulatedModel::context_length`] is `None`,
/// where the engine's API always carries one (vLLM `max_model_len`, LM Studio
/// `max_context_length`, Ollama `model_info`).
pub const DEFAULT_CONTEXT_LENGTH: u64 = 8192;

/// Dimension of the deterministic embedding vectors.
pub const EMBEDDING_DIMS: usize = 8;

// === impl EmulatedKind ===

/// Which engine an [`Emulator`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmulatedKind {
    /// Ollama (native `/api/*` with NDJSON, plus `/v1/*`).
    Ollama,
    /// LM Studio server mode (`/v1/*`, `/api/v0/*`, `/api/v1/*`).
    LmStudio,
    /// vLLM's OpenAI-compatible server.
    Vllm,
}

impl EmulatedKind {
    /// All kinds, for table-driven tests.
    pub const ALL: [EmulatedKind; 3] = [Self::Ollama, Self::LmStudio, Self::Vllm];

    /// The engine's real default port (11434, 1234, 8000).
    pub fn default_port(self) -> u16 {
        match self {
            Self::Ollama => 11434,
            Self::LmStudio => 1234,
            Self::Vllm => 8000,
        }
    }

    /// Lower-case name: `ollama`, `lmstudio` or `vllm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ollama => "ollama",
            Self::LmStudio => "lmstudio",
            Self::Vllm => "vllm",
        }
    }
}

impl fmt::Display for EmulatedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown engine kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown engine kind `{}` (expected `ollama`, `lmstudio` or `vllm`)",
            self.0
        )
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for EmulatedKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ollama" => Ok(Self::Ollama),
            "lmstudio" | "lm-studio" | "lm_studio" => Ok(Self::LmStudio),
            "vllm" => Ok(Self::Vllm),
            _ => Err(UnknownKind(s.to_owned())),
        }
    }
}

// === impl EmulatedModel ===

/// One model served by an emulator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmulatedModel {
    /// Model name. Ollama appends `:latest` when the name has no tag.
    pub name: String,
    /// Training / maximum context length; [`DEFAULT_CONTEXT_LENGTH`] is reported where the
    /// engine always reports one.
    pub context_length: Option<u64>,
    /// An embedding model (embeddings only, no chat).
    pub embedding: bool,
    /// Accepts images.
    pub vision: bool,
    /// Trained for tool use.
    pub tools: bool,
    /// Accepts audio input.
    pub audio: bool,
    /// A reasoning ("thinking") model.
    pub thinking: bool,
    /// Fill-in-the-middle (Ollama's `insert` capability: `suffix` accepted).
    pub insert: bool,
    /// A speech-recognition (Whisper-family) model: vLLM serves
    /// `/v1/audio/transcriptions` and `/v1/audio/translations` with it.
    pub transcription: bool,
}

impl EmulatedModel {
    /// A chat model with no extra capability.
    pub fn chat(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// An embedding model.
    pub fn embedding(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            embedding: true,
            ..Self::default()
        }
    }

    /// A speech-recognition model (vLLM's audio routes accept it; no chat).
    pub fn asr(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            transcription: true,
            ..Self::default()
        }
    }

    /// Sets the context length.
    pub fn with_context_length(mut self, n: u64) -> Self {
        self.context_length = Some(n);
        self
    }

    /// Marks the model as vision-capable.
    pub fn with_vision(mut self) -> Self {
        self.vision = true;
        self
    }

    /// Marks the model as fill-in-the-middle capable (Ollama `insert`).
    pub fn with_insert(mut self) -> Self {
        self.insert = true;
        self
    }

    /// Marks the model as tool-capable.
    pub fn with_tools(mut self) -> Self {
        self.tools = true;
        self
    }

    /// Marks the model as audio-capable.
    pub fn with_audio(mut self) -> Self {
        self.audio = true;
        self
    }

    /// Marks the model as a thinking model.
    pub fn with_thinking(mut self) -> Self {
        self.thinking = true;
        self
    }

    pub(crate) fn ctx(&self) -> u64 {
        self.context_length.unwrap_or(DEFAULT_CONTEXT_LENGTH)
    }
}

// === impl EmulatorOptions ===

/// How to start an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Served models. Defaults to one chat model named [`DEFAULT_MODEL`].
    pub models: Vec<EmulatedModel>,
    /// Port to bind; `0` (the default) picks an ephemeral port.
    pub port: u16,
    /// Address to bind; defaults to `127.0.0.1`. Ollama's `Host` guard is active only when
    /// this is a loopback address, as in the real engine.
    pub bind: IpAddr,
    /// Pause between two streamed chunks; defaults to zero.
    pub chunk_delay: Duration,
    /// Streamed chat replies repeat their first content chunk this many extra times
    /// (after the first one), for long streams in cancellation and slow-client tests;
    /// defaults to zero.
    pub stream_padding: usize,
    /// vLLM only: when set, `/v1/*` requires `Authorization: Bearer <key>` (401
    /// `{"error":"Unauthorized"}` otherwise). Ollama and LM Studio ignore it.
    pub api_key: Option<String>,
    /// Behaviour at start; change it later with [`EmulatorControl::set_behavior`].
    pub behavior: Behavior,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            models: vec![EmulatedModel::chat(DEFAULT_MODEL)],
            port: 0,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            chunk_delay: Duration::ZERO,
            stream_padding: 0,
            api_key: None,
            behavior: Behavior::Normal,
        }
    }
}

impl EmulatorOptions {
    /// Default options serving `models`.
    pub fn with_models(models: impl IntoIterator<Item = EmulatedModel>) -> Self {
        Self {
            models: models.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Sets the pause between streamed chunks.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Sets [`EmulatorOptions::stream_padding`].
    pub fn stream_padding(mut self, extra_chunks: usize) -> Self {
        self.stream_padding = extra_chunks;
        self
    }
}

// === impl Behavior ===

/// How the emulated engine misbehaves. Read once when a request arrives, so a change
/// applies to subsequent requests only.
///
/// "Probe" routes are the identity/liveness endpoints (Ollama `GET|HEAD /` and
/// `/api/version`, vLLM `/health` and `/version`); "API" routes are every other known
/// route (listings, show, chat, embeddings, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Answer normally.
    #[default]
    Normal,
    /// Accept the connection and never answer, on every route (until shutdown).
    Hang,
    /// Answer normally after this delay, on every route.
    Delay(Duration),
    /// Every JSON response becomes `200` with a truncated (invalid) JSON body; streamed
    /// chat keeps its framing but each event/line carries truncated JSON.
    MalformedJson,
    /// The engine is still loading. vLLM: `/health` 503 with an empty body, every other
    /// route 503 with the nested error. Ollama: probes and listings OK, chat and
    /// embeddings 503 `server busy, please try again.  maximum pending requests exceeded`.
    /// LM Studio: no model loaded (listings say `not-loaded`), chat and embeddings answer
    /// 400 `{"error":"No models loaded. …"}`.
    Loading,
    /// Streaming chat emits `after_chunks` chunks (NDJSON lines or SSE events, counted from
    /// the first) then the engine's mid-stream error form and closes: Ollama native an
    /// NDJSON `{"error":"…"}` line; SSE routes a `data: {"error":{…}}` event (vLLM then
    /// sends `data: [DONE]` as the real server does; Ollama and LM Studio close without
    /// it). Non-streaming requests are unaffected.
    FailMidStream {
        /// Chunks sent before the error.
        after_chunks: usize,
    },
    /// Streaming chat emits `after_chunks` chunks then aborts the connection without a
    /// terminator (no `[DONE]`, no final chunk of the chunked encoding). Non-streaming chat
    /// sends half of its JSON body, then aborts the same way.
    DropMidStream {
        /// Chunks sent before the connection is dropped.
        after_chunks: usize,
    },
    /// Every API route (not the probes, not unknown routes) answers this status with the
    /// engine's native error shape.
    StatusError(u16),
    /// Requests on this exact path (e.g. `/api/ps`) are accepted and never answered
    /// (until shutdown); every other route answers normally, so health checks still
    /// pass.
    HangOn(String),
}
