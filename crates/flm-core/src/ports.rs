//! Ports: the traits adapters implement. Services hold them as `Arc<dyn Trait>`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chat::{ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse};
use crate::engine::{EngineCapabilities, EngineKind, EngineState, EngineTarget, ModelInfo};
use crate::error::{EngineError, RepoError};
use crate::ids::EngineId;

/// One engine instance FLM can send requests to.
///
/// Streaming and non-streaming chat are separate operations; all wire-format
/// translation (Ollama NDJSON, OpenAI SSE) stays inside the adapter.
#[async_trait]
pub trait LlmEngine: Send + Sync {
    /// Engine id.
    fn id(&self) -> &EngineId;
    /// Engine kind.
    fn kind(&self) -> EngineKind;
    /// API base URL.
    fn base_url(&self) -> &str;
    /// Capabilities of the engine as a whole.
    fn capabilities(&self) -> EngineCapabilities;
    /// Models the engine serves, ids normalised to `flm://{engine_id}/{model}`.
    async fn list_models(&self) -> Result<Vec<ModelInfo>, EngineError>;
    /// Non-streaming chat completion.
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, EngineError>;
    /// Streaming chat completion. Errors before the first chunk are returned here;
    /// errors after it arrive as the stream's last item.
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, EngineError>;
    /// Embeddings, one vector per input.
    async fn embeddings(&self, request: EmbeddingRequest)
        -> Result<EmbeddingResponse, EngineError>;

    /// Whether the engine speaks the OpenAI API natively, so that OpenAI requests can
    /// be relayed byte for byte with [`LlmEngine::relay`] instead of being translated.
    fn speaks_openai(&self) -> bool {
        false
    }

    /// Sends a raw HTTP request to the engine and returns the response unparsed, its
    /// body streamed as it arrives. No overall timeout is applied: callers bound it.
    async fn relay(&self, request: RawRequest) -> Result<RawResponse, EngineError> {
        let _ = request;
        Err(EngineError::Unsupported(format!(
            "engine `{}` does not support raw requests",
            self.id()
        )))
    }

    /// Like [`LlmEngine::relay`], but the request body is a stream sent as it arrives
    /// (`request.body` is ignored): an upload (multipart audio) goes to the engine
    /// without being buffered whole. The body stream failing aborts the request.
    async fn relay_stream(
        &self,
        request: RawRequest,
        body: RawBody,
    ) -> Result<RawResponse, EngineError> {
        let _ = (request, body);
        Err(EngineError::Unsupported(format!(
            "engine `{}` does not support streamed uploads",
            self.id()
        )))
    }
}

/// Builds engine adapters for detected targets (the engine registry).
pub trait EngineFactory: Send + Sync {
    /// An adapter for `target`, using `request_timeout` for non-streaming calls.
    fn build(&self, target: &EngineTarget, request_timeout: Duration) -> Arc<dyn LlmEngine>;
}

/// What one API probe of a target found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    /// Nothing answers (connection refused, host unreachable, DNS failure…).
    Unreachable {
        /// What failed.
        reason: String,
    },
    /// Something accepted the connection but did not answer in time.
    TimedOut {
        /// What timed out.
        reason: String,
    },
    /// Something answers, but it is not the expected kind of engine.
    WrongIdentity {
        /// What it is instead (`llama.cpp`, `an FLM proxy`, `an unknown HTTP server`…).
        found: String,
    },
    /// It is the expected engine, but its answer is not well-formed.
    BadResponse {
        /// What was wrong.
        reason: String,
    },
    /// It is the expected engine and it answered.
    Answered {
        /// Latency of the model-listing request.
        latency_ms: u64,
        /// Engine version, when it tells.
        version: Option<String>,
        /// Number of models listed.
        model_count: usize,
        /// A warning sign (429/503, loading, no model loaded…), if any.
        warning: Option<String>,
        /// Capabilities of the engine.
        capabilities: EngineCapabilities,
    },
}

/// Detection probes (HTTP identity checks and binary discovery).
#[async_trait]
pub trait EngineProber: Send + Sync {
    /// Probes the target's API; never takes longer than `timeout`.
    async fn probe(&self, target: &EngineTarget, timeout: Duration) -> ProbeOutcome;
    /// Path of an installed binary of this kind, if one is found (file-system only).
    fn find_binary(&self, kind: EngineKind) -> Option<String>;
}

/// Source of the current time, injected so rules with durations are testable.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One row of the `settings` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingRow {
    /// `<category>.<name>` key.
    pub key: String,
    /// Stored value.
    pub value: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Key/value settings (`config.db` → `settings`).
#[async_trait]
pub trait SettingsRepository: Send + Sync {
    /// The stored value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<SettingRow>, RepoError>;
    /// Inserts or replaces `key`.
    async fn set(&self, key: &str, value: &str) -> Result<(), RepoError>;
    /// Deletes `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, RepoError>;
    /// Every stored setting, ordered by key.
    async fn list(&self) -> Result<Vec<SettingRow>, RepoError>;
}

/// A detection run as cached in `engines_cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedDetection {
    /// When the run finished.
    pub detected_at: DateTime<Utc>,
    /// Engines found by that run.
    pub engines: Vec<EngineState>,
}

/// Cache of detection results (`config.db` → `engines_cache`).
#[async_trait]
pub trait EngineCacheRepository: Send + Sync {
    /// The last detection run, if one is cached.
    async fn load(&self) -> Result<Option<CachedDetection>, RepoError>;
    /// Replaces the cache with this run.
    async fn store(&self, run: &CachedDetection) -> Result<(), RepoError>;
    /// Empties the cache.
    async fn clear(&self) -> Result<(), RepoError>;
}

/// An engine endpoint added by the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineEndpoint {
    /// Engine id.
    pub id: EngineId,
    /// Expected kind.
    pub kind: EngineKind,
    /// Normalised base URL.
    pub base_url: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Explicitly configured engine endpoints (`config.db` → `engine_endpoints`).
#[async_trait]
pub trait EndpointRepository: Send + Sync {
    /// All endpoints, ordered by id.
    async fn list(&self) -> Result<Vec<EngineEndpoint>, RepoError>;
    /// Adds an endpoint; the id must be new.
    async fn add(&self, endpoint: &EngineEndpoint) -> Result<(), RepoError>;
    /// Removes an endpoint; returns whether it existed.
    async fn remove(&self, id: &EngineId) -> Result<bool, RepoError>;
}

/// API keys (`security.db` → `api_keys`). Stores digests only.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Every key, active and revoked, oldest first.
    async fn list(&self) -> Result<Vec<crate::keys::ApiKeyRecord>, RepoError>;
    /// Stores a new key.
    async fn insert(&self, key: &crate::keys::ApiKeyRecord) -> Result<(), RepoError>;
    /// Marks a key revoked at `at`; returns `false` when no active key has that id.
    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool, RepoError>;
    /// Revokes `old_id` and stores `new` atomically; `false` when `old_id` is not an
    /// active key (nothing is changed then).
    async fn rotate(
        &self,
        old_id: &str,
        new: &crate::keys::ApiKeyRecord,
        at: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
    /// A cheap fingerprint of the table (e.g. counts and latest timestamps) that
    /// changes whenever a key is added or revoked; the proxy polls it when no
    /// [`ChangeMarkers`] are available.
    async fn fingerprint(&self) -> Result<String, RepoError>;
    /// One key by id (`key_<16 hex>`), active or revoked; `None` when there is none.
    /// The proxy asks for a key id it does not know before refusing the key, so a
    /// key created a moment ago works at once. The default scans [`Self::list`];
    /// stores override it with an indexed lookup.
    async fn get(&self, id: &str) -> Result<Option<crate::keys::ApiKeyRecord>, RepoError> {
        Ok(self.list().await?.into_iter().find(|k| k.id == id))
    }
    /// Replaces the scope and expiry of an active key; `false` when no active key has
    /// that id. The default refuses: stores that keep scopes override it.
    async fn update_access(
        &self,
        id: &str,
        scope: &crate::key_scope::KeyScope,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        let _ = (id, scope, expires_at);
        Err(RepoError::Validation(
            "this key store cannot change the scope of a key".into(),
        ))
    }
    /// Replaces the token budgets of an active key; `false` when no active key has
    /// that id. The default refuses: stores that keep budgets override it.
    async fn update_budget(
        &self,
        id: &str,
        budget: &crate::key_scope::KeyBudget,
    ) -> Result<bool, RepoError> {
        let _ = (id, budget);
        Err(RepoError::Validation(
            "this key store cannot change the budget of a key".into(),
        ))
    }
    /// Tokens counted for `id` in `month` (`YYYY-MM`, UTC); 0 when none. The default
    /// keeps no counts.
    async fn month_tokens(&self, id: &str, month: &str) -> Result<u64, RepoError> {
        let _ = (id, month);
        Ok(0)
    }
    /// Adds token counts `(key id, month, tokens)` to the monthly totals. The default
    /// keeps no counts.
    async fn add_month_tokens(&self, counts: &[(String, String, u64)]) -> Result<(), RepoError> {
        let _ = counts;
        Ok(())
    }
}

/// Generations of the stored state a running proxy mirrors in memory. Each number
/// changes whenever its table changes, whoever wrote it (a CLI command, another
/// process, a hand-written SQL statement); only their changes matter, not their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreGenerations {
    /// `api_keys`: a key created, revoked, rotated or deleted.
    pub api_keys: u64,
    /// `security_policies`: the policy saved or removed.
    pub policy: u64,
    /// `ip_blocklist`, not counting the writes of this process's own proxy (bans
    /// and failure counters it already holds in memory), so that a proxy under
    /// attack does not reload its blocklist after each of its own writes.
    pub blocklist: u64,
    /// `model_profiles` and `api_prompts`: a profile or prompt template saved or
    /// deleted.
    pub profiles: u64,
}

/// A cheap change marker of the stores, polled by the proxy (several times a
/// second) so that changes made outside it take effect without a restart.
#[async_trait]
pub trait ChangeMarkers: Send + Sync {
    /// The current generations.
    async fn generations(&self) -> Result<StoreGenerations, RepoError>;
}

/// A raw HTTP request to an engine (OpenAI relay and `/engine/{id}/*` pass-through).
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// HTTP method (`GET`, `POST`, …).
    pub method: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
    /// Headers to forward (already filtered of hop-by-hop and sensitive ones).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: bytes::Bytes,
}

/// Body of a raw engine response, relayed chunk by chunk.
pub type RawBody =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, EngineError>> + Send>>;

/// A raw HTTP response from an engine.
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Response headers (hop-by-hop ones removed).
    pub headers: Vec<(String, String)>,
    /// Body stream.
    pub body: RawBody,
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}
