//! Engine routing: which engines are offered, which models they serve, and how a
//! requested model resolves to engines.
//!
//! A background monitor re-detects engines every `proxy.engine_check_interval_secs`
//! (and at once when a request finds an engine dead) and swaps in a new immutable
//! [`Routes`] table; requests read the current table without locking. A connection
//! failure marks an engine down immediately, so it stops being offered before the
//! next check; the next good check brings it back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use flm_core::health::{status_name, HealthObservation};
use flm_core::key_scope::KeyScope;
use flm_core::ports::LlmEngine;
use flm_core::services::EngineService;
use flm_core::{EngineId, EngineKind, ModelId, ModelInfo, MODEL_ID_SCHEME};
use serde_json::json;
use tokio::sync::{watch, Notify};

use crate::error::ApiError;

/// One routable engine.
pub struct EngineEntry {
    /// Engine id.
    pub id: EngineId,
    /// Kind.
    pub kind: EngineKind,
    /// Adapter.
    pub engine: Arc<dyn LlmEngine>,
    /// Models it serves.
    pub models: Vec<ModelInfo>,
    down: AtomicBool,
}

impl EngineEntry {
    /// Whether a request found it dead since the last check.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// An immutable routing table.
#[derive(Default)]
pub struct Routes {
    entries: Vec<Arc<EngineEntry>>,
    by_model: HashMap<String, Vec<usize>>,
    /// Pre-rendered `GET /v1/models` body (all models of all engines).
    models_json: Bytes,
}

/// A resolved model: candidate engines in priority order and the engine-side name.
pub struct Resolved {
    /// Engines to try, best first.
    pub candidates: Vec<Arc<EngineEntry>>,
    /// The engine's own model name.
    pub model: String,
}

impl Routes {
    fn build(entries: Vec<Arc<EngineEntry>>) -> Self {
        let mut by_model: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for m in &e.models {
                by_model.entry(m.name.clone()).or_default().push(i);
            }
        }
        let models_json = models_body(&entries, |_, _| true);
        Self {
            entries,
            by_model,
            models_json,
        }
    }

    /// Body of `GET /v1/models`, without engines found dead since the last check.
    pub fn models_json(&self) -> Bytes {
        if self.entries.iter().any(|e| e.is_down()) {
            return models_body(&self.entries, |e, _| !e.is_down());
        }
        self.models_json.clone()
    }

    /// Body of `GET /v1/models` for a key: only the models its scope allows.
    pub fn models_json_for(&self, scope: &KeyScope) -> Bytes {
        if scope.models().is_none() {
            return self.models_json();
        }
        models_body(&self.entries, |e, m| {
            !e.is_down() && scope.allows_model(e.id.as_str(), &m.name)
        })
    }

    /// An offered engine by id.
    pub fn engine(&self, id: &str) -> Option<Arc<EngineEntry>> {
        self.entries
            .iter()
            .find(|e| e.id.as_str() == id && !e.is_down())
            .cloned()
    }

    /// Ids of every offered engine.
    pub fn engine_ids(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| !e.is_down())
            .map(|e| e.id.to_string())
            .collect()
    }

    /// Resolves `model` for a key with `scope`: [`Routes::resolve_any`], keeping only
    /// the engines on which the scope allows the model. A model the key may not use
    /// is `403 model_not_allowed` — also when it does not exist, so a scoped key
    /// learns nothing about models outside its scope.
    pub fn resolve(&self, model: &str, scope: &KeyScope) -> Result<Resolved, ApiError> {
        if scope.models().is_none() {
            return self.resolve_any(model);
        }
        if let Some(id) = model
            .strip_prefix(MODEL_ID_SCHEME)
            .and_then(|_| ModelId::parse(model).ok())
        {
            if !scope.allows_model(id.engine_id.as_str(), &id.model) {
                return Err(model_not_allowed(model));
            }
            return self.resolve_any(model);
        }
        match self.resolve_any(model) {
            Ok(mut r) => {
                r.candidates
                    .retain(|e| scope.allows_model(e.id.as_str(), &r.model));
                if r.candidates.is_empty() {
                    return Err(model_not_allowed(model));
                }
                Ok(r)
            }
            // A malformed `flm://` id stays a 400; a bare name that is served nowhere
            // is a 404 only if the key could use it somewhere.
            Err(e) if e.code == "model_not_found" => {
                let could = scope.models().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        !p.starts_with(MODEL_ID_SCHEME) && flm_core::key_scope::glob_match(p, model)
                    })
                });
                Err(if could { e } else { model_not_allowed(model) })
            }
            Err(e) => Err(e),
        }
    }

    /// Resolves `model`: a canonical `flm://{engine}/{model}` id pins one engine; a
    /// bare name resolves to every offered engine serving it, in priority order
    /// (configured endpoints first, then detection order), for fail-over.
    pub fn resolve_any(&self, model: &str) -> Result<Resolved, ApiError> {
        if model.starts_with(MODEL_ID_SCHEME) {
            let id = ModelId::parse(model).map_err(|e| {
                let code = if model.trim_start_matches(MODEL_ID_SCHEME).starts_with('/') {
                    "invalid_engine_id"
                } else if model.ends_with('/')
                    || !model.trim_start_matches(MODEL_ID_SCHEME).contains('/')
                {
                    "invalid_model_name"
                } else {
                    "invalid_model"
                };
                ApiError::bad_request(code, e.to_string())
            })?;
            let entry = self.engine(id.engine_id.as_str()).ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "engine_not_found",
                    "invalid_request_error",
                    format!(
                        "engine `{}` is not available; available engines: {}",
                        id.engine_id,
                        list_or_none(&self.engine_ids())
                    ),
                )
            })?;
            return Ok(Resolved {
                candidates: vec![entry],
                model: id.model,
            });
        }
        let candidates: Vec<Arc<EngineEntry>> = self
            .by_model
            .get(model)
            .map(|idx| {
                idx.iter()
                    .map(|i| self.entries[*i].clone())
                    .filter(|e| !e.is_down())
                    .collect()
            })
            .unwrap_or_default();
        if candidates.is_empty() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "model_not_found",
                "invalid_request_error",
                format!(
                    "model `{model}` is not served by any available engine; use an id from GET /v1/models (flm://{{engine_id}}/{{model}})"
                ),
            ));
        }
        Ok(Resolved {
            candidates,
            model: model.to_owned(),
        })
    }
}

/// The `GET /v1/models` body of the models of `entries` that `keep` keeps.
fn models_body(
    entries: &[Arc<EngineEntry>],
    keep: impl Fn(&EngineEntry, &ModelInfo) -> bool,
) -> Bytes {
    let mut data = Vec::new();
    for e in entries {
        for m in e.models.iter().filter(|m| keep(e, m)) {
            data.push(json!({
                "id": m.id.to_string(),
                "object": "model",
                "created": 0,
                "owned_by": e.id.as_str(),
                "flm": {
                    "engine_id": e.id.as_str(),
                    "engine_kind": e.kind.slug(),
                    "name": m.name,
                    "context_length": m.context_length,
                    "chat": m.supports_chat,
                    "embeddings": m.supports_embeddings,
                    "vision": m.vision,
                    "audio_inputs": m.audio_inputs,
                    "tools": m.tools,
                    "reasoning": m.reasoning,
                }
            }));
        }
    }
    Bytes::from(json!({"object": "list", "data": data}).to_string())
}

/// 403 `model_not_allowed`: the key's scope does not include the model.
pub(crate) fn model_not_allowed(model: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "model_not_allowed",
        "access_denied",
        format!(
            "this API key may not use model `{model}`; GET /v1/models lists the models it may use"
        ),
    )
}

fn list_or_none(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// The live routing table plus its monitor.
pub struct Router {
    routes: ArcSwap<Routes>,
    recheck: Notify,
    ready: watch::Sender<bool>,
}

impl Router {
    /// An empty router, not ready until the first check completes.
    pub fn new() -> Arc<Self> {
        let (ready, _) = watch::channel(false);
        Arc::new(Self {
            routes: ArcSwap::from_pointee(Routes::default()),
            recheck: Notify::new(),
            ready,
        })
    }

    /// The current table; waits (bounded) for the first check after start.
    pub async fn routes(&self, max_wait: Duration) -> Arc<Routes> {
        if !*self.ready.borrow() {
            let mut rx = self.ready.subscribe();
            let _ = tokio::time::timeout(max_wait, rx.wait_for(|r| *r)).await;
        }
        self.routes.load_full()
    }

    /// The current table, without waiting for the first check.
    pub fn current(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Marks an engine dead after a connection failure and asks for a re-check.
    pub fn mark_down(&self, entry: &EngineEntry) {
        if !entry.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(engine = %entry.id, "engine unreachable; no longer offered until it answers again");
        }
        self.recheck.notify_one();
    }

    /// Asks the monitor for a check now, without judging the engine: used where a
    /// failure may have been provoked by the client (the pass-through).
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Runs one check: detect engines, list their models, swap the table; then hands
    /// what it found to `health` (the engine health history), if any.
    pub async fn refresh(
        &self,
        engines: &EngineService,
        list_timeout: Duration,
        health: Option<&crate::telemetry::HealthWriter>,
    ) {
        match engines.check_engines(true).await {
            Ok((states, running)) => {
                let lists =
                    futures::future::join_all(
                        running.iter().map(|(_, adapter)| {
                            let adapter = adapter.clone();
                            async move {
                                tokio::time::timeout(list_timeout, adapter.list_models()).await
                            }
                        }),
                    )
                    .await;
                let mut failed: HashMap<EngineId, String> = HashMap::new();
                let entries: Vec<Arc<EngineEntry>> = running
                    .into_iter()
                    .zip(lists)
                    .filter_map(|((state, engine), models)| match models {
                        Ok(Ok(models)) => Some(Arc::new(EngineEntry {
                            id: state.id,
                            kind: state.kind,
                            engine,
                            models,
                            down: AtomicBool::new(false),
                        })),
                        Ok(Err(e)) => {
                            tracing::warn!(engine = %state.id, error = %e, "engine did not list its models; not offered");
                            failed.insert(state.id, format!("could not list models: {e}"));
                            None
                        }
                        Err(_) => {
                            tracing::warn!(engine = %state.id, "engine model listing timed out; not offered");
                            failed.insert(state.id, "model listing timed out".into());
                            None
                        }
                    })
                    .collect();
                let routes = Arc::new(Routes::build(entries));
                self.routes.store(routes.clone());
                self.ready.send_replace(true);
                if let Some(health) = health {
                    health.record(observations(&states, &failed, &routes)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "engine check failed; keeping the previous routing table");
                self.ready.send_replace(true);
            }
        }
    }

    /// Re-checks engines until `shutdown` turns true.
    pub async fn monitor(
        self: Arc<Self>,
        engines: EngineService,
        interval: Duration,
        list_timeout: Duration,
        health: Option<Arc<crate::telemetry::HealthWriter>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            self.refresh(&engines, list_timeout, health.as_deref())
                .await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.recheck.notified() => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// What one check found, per engine and per offered model, for the health history.
fn observations(
    states: &[flm_core::EngineState],
    failed: &HashMap<EngineId, String>,
    routes: &Routes,
) -> Vec<HealthObservation> {
    let mut out = Vec::new();
    for state in states {
        let (status, error) = match failed.get(&state.id) {
            Some(e) => ("down", Some(e.clone())),
            None => (
                status_name(&state.status),
                state.status.reason().map(str::to_owned),
            ),
        };
        let latency_ms = state.status.latency_ms();
        out.push(HealthObservation {
            engine_id: state.id.to_string(),
            model: None,
            status,
            latency_ms,
            error,
        });
        if let Some(entry) = routes.entries.iter().find(|e| e.id == state.id) {
            out.extend(entry.models.iter().map(|m| HealthObservation {
                engine_id: state.id.to_string(),
                model: Some(m.id.to_string()),
                status,
                latency_ms,
                error: None,
            }));
        }
    }
    out
}
