//! # flm-core — the domain of FLM
//!
//! FLM puts one OpenAI-compatible endpoint in front of the LLM engines a person already
//! runs (Ollama, vLLM, LM Studio, llama.cpp's `llama-server`, any OpenAI-compatible
//! server). This crate holds what every other part agrees on:
//!
//! - **types**: [`EngineKind`], [`EngineState`] and its five [`EngineStatus`]es,
//!   [`ModelInfo`] with canonical [`ModelId`]s (`flm://{engine_id}/{model}`), chat and
//!   embedding requests and responses;
//! - **ports** ([`ports`]): the traits adapters implement — [`ports::LlmEngine`] for
//!   engines, [`ports::EngineProber`] for detection probes, the repository traits for
//!   storage — always used as `Arc<dyn Trait>`;
//! - **services** ([`services`]): the business rules — detection with its cache and
//!   status classification, model listing over every engine, configuration keys and
//!   their validation.
//!
//! The crate does no I/O of its own: no HTTP server or client, no SQL driver, no
//! environment or file access. That keeps the rules testable with plain values and lets
//! the CLI, the proxy daemon and the desktop backend share them. `docs/ARCHITECTURE.md`
//! records the layering; `tests/layering.rs` in `flm-cli` enforces it.

pub mod alerts;
pub mod chat;
pub mod config;
pub mod engine;
pub mod error;
pub mod firewall;
pub mod health;
pub mod ids;
pub mod key_scope;
pub mod keys;
pub mod ports;
pub mod profiles;
pub mod proxy;
pub mod security;
pub mod services;
pub mod upstream;
pub mod usage;

pub use chat::{
    Attachment, ChatMessage, ChatRequest, ChatResponse, ChatStream, ChatStreamChunk,
    EmbeddingRequest, EmbeddingResponse, Role, ToolCall, Usage,
};
pub use engine::{
    EngineCapabilities, EngineKind, EngineSource, EngineState, EngineStatus, EngineTarget,
    ModelInfo,
};
pub use error::{CoreError, EngineError, FieldProblem, RepoError};
pub use ids::{EngineId, ModelId, MODEL_ID_SCHEME};

/// Response header every FLM server sets. Detection refuses any endpoint that carries
/// it, so FLM never reports its own proxy as an engine.
pub const FLM_SERVER_HEADER: &str = "x-flm-server";

/// Version of the JSON envelope printed by the CLI and returned over IPC.
pub const ENVELOPE_VERSION: &str = "1.0";
