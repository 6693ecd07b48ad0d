//! Engine federation: detection with its cache, configured endpoints, model listing.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;

use crate::config::EngineSettings;
use crate::engine::{EngineKind, EngineSource, EngineState, EngineTarget, ModelInfo};
use crate::error::{CoreError, EngineError, RepoError};
use crate::ids::{EngineId, ModelId};
use crate::ports::{
    CachedDetection, Clock, EndpointRepository, EngineCacheRepository, EngineEndpoint,
    EngineFactory, EngineProber, LlmEngine,
};
use crate::services::config_service::ConfigService;
use crate::services::detection::{classify, DetectionThresholds};

/// What `detect` should do.
#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    /// Only engines whose kind slug or id equals this.
    pub filter: Option<String>,
    /// Ignore the cache and detect again.
    pub fresh: bool,
}

/// Result of a detection.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionReport {
    /// Engines found.
    pub engines: Vec<EngineState>,
    /// Whether the result came from the cache.
    pub cached: bool,
    /// When the detection ran.
    pub detected_at: DateTime<Utc>,
}

/// Per-engine failure while listing models.
#[derive(Debug, Clone, Serialize)]
pub struct ModelListingError {
    /// Engine that failed.
    pub engine_id: EngineId,
    /// Error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Models of every running engine.
#[derive(Debug, Clone, Serialize)]
pub struct ModelListing {
    /// Models, grouped by engine in detection order.
    pub models: Vec<ModelInfo>,
    /// Engines that could not list their models.
    pub errors: Vec<ModelListingError>,
}

/// Running engines with their adapters, in detection order.
pub type RunningEngines = Vec<(EngineState, Arc<dyn LlmEngine>)>;

/// The adapters an [`EngineService`] works with.
pub struct EngineServiceParts {
    /// Detection probes.
    pub prober: Arc<dyn EngineProber>,
    /// Adapter registry.
    pub factory: Arc<dyn EngineFactory>,
    /// Detection cache.
    pub cache: Arc<dyn EngineCacheRepository>,
    /// Configured endpoints.
    pub endpoints: Arc<dyn EndpointRepository>,
    /// Settings.
    pub config: ConfigService,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Default addresses of each kind (from the environment, spec 10-engines §4.1).
    pub default_targets: Vec<EngineTarget>,
}

/// Detects engines, manages endpoints and lists models.
#[derive(Clone)]
pub struct EngineService {
    parts: Arc<EngineServiceParts>,
}

impl EngineService {
    /// A service over these adapters.
    pub fn new(parts: EngineServiceParts) -> Self {
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Detects engines (or returns the cached result when it is still fresh).
    pub async fn detect(&self, opts: &DetectOptions) -> Result<DetectionReport, CoreError> {
        let settings = self.parts.config.engine_settings().await?;
        let targets = self.targets(&settings).await?;
        if let Some(f) = &opts.filter {
            check_filter(f, &targets)?;
        }
        let previous = self.parts.cache.load().await?;
        let now = self.parts.clock.now();
        if !opts.fresh {
            if let Some(prev) = &previous {
                let age = now.signed_duration_since(prev.detected_at);
                let fresh_enough = age >= chrono::Duration::zero()
                    && age.to_std().is_ok_and(|a| a < settings.cache_ttl);
                if fresh_enough {
                    return Ok(DetectionReport {
                        engines: filtered(&prev.engines, opts.filter.as_deref()),
                        cached: true,
                        detected_at: prev.detected_at,
                    });
                }
            }
        }
        let engines = self
            .run_detection(&targets, previous.as_ref(), &settings)
            .await;
        let run = CachedDetection {
            detected_at: self.parts.clock.now(),
            engines,
        };
        if let Err(e) = self.parts.cache.store(&run).await {
            // A read-only store still detects; it just cannot remember.
            if !matches!(e, RepoError::ReadOnlyMode(_)) {
                return Err(e.into());
            }
            tracing::warn!(error = %e, "detection cache not updated");
        }
        Ok(DetectionReport {
            engines: filtered(&run.engines, opts.filter.as_deref()),
            cached: false,
            detected_at: run.detected_at,
        })
    }

    async fn run_detection(
        &self,
        targets: &[EngineTarget],
        previous: Option<&CachedDetection>,
        settings: &EngineSettings,
    ) -> Vec<EngineState> {
        let thresholds = DetectionThresholds {
            health_latency_threshold_ms: settings.health_latency_threshold_ms,
        };
        let probes = targets.iter().map(|t| async move {
            let binary = match t.source {
                EngineSource::Default => self.parts.prober.find_binary(t.kind),
                EngineSource::Configured => None,
            };
            let outcome = self.parts.prober.probe(t, settings.detect_timeout).await;
            let prev = previous.and_then(|p| p.engines.iter().find(|e| e.id == t.id));
            let classified = classify(
                &outcome,
                t.source,
                binary.is_some(),
                prev.map(|p| (&p.status, p.recent_degraded.as_slice())),
                thresholds,
            )?;
            let (version, model_count, capabilities) = match &outcome {
                crate::ports::ProbeOutcome::Answered {
                    version,
                    model_count,
                    capabilities,
                    ..
                } => (version.clone(), Some(*model_count), capabilities.clone()),
                _ => (None, None, t.kind.default_capabilities()),
            };
            Some(EngineState {
                id: t.id.clone(),
                kind: t.kind,
                name: t.kind.display_name().to_owned(),
                version,
                status: classified.status,
                base_url: Some(t.base_url.clone()),
                binary_path: binary,
                source: t.source,
                capabilities,
                model_count,
                recent_degraded: classified.recent_degraded,
                checked_at: self.parts.clock.now(),
            })
        });
        join_all(probes).await.into_iter().flatten().collect()
    }

    /// Every address detection probes: configured endpoints first, then default
    /// addresses not already covered by an endpoint.
    pub async fn targets(&self, settings: &EngineSettings) -> Result<Vec<EngineTarget>, CoreError> {
        let endpoints = self.parts.endpoints.list().await?;
        let mut targets: Vec<EngineTarget> = endpoints
            .iter()
            .map(|e| EngineTarget {
                id: e.id.clone(),
                kind: e.kind,
                base_url: e.base_url.clone(),
                source: EngineSource::Configured,
            })
            .collect();
        if settings.probe_default_ports {
            let covered: HashSet<String> = endpoints.iter().map(|e| e.base_url.clone()).collect();
            let ids: HashSet<EngineId> = endpoints.iter().map(|e| e.id.clone()).collect();
            targets.extend(
                self.parts
                    .default_targets
                    .iter()
                    .filter(|t| !covered.contains(&t.base_url) && !ids.contains(&t.id))
                    .cloned(),
            );
        }
        Ok(targets)
    }

    /// Configured endpoints.
    pub async fn list_endpoints(&self) -> Result<Vec<EngineEndpoint>, CoreError> {
        Ok(self.parts.endpoints.list().await?)
    }

    /// Adds an endpoint. Without an id, `<kind>-<n>` with the smallest free `n` is used.
    pub async fn add_endpoint(
        &self,
        kind: EngineKind,
        url: &str,
        id: Option<&str>,
    ) -> Result<EngineEndpoint, CoreError> {
        let base_url = normalise_base_url(url)?;
        let existing = self.parts.endpoints.list().await?;
        if let Some(dup) = existing.iter().find(|e| e.base_url == base_url) {
            return Err(CoreError::Conflict(format!(
                "{base_url} is already configured as engine `{}`",
                dup.id
            )));
        }
        let id = match id {
            Some(raw) => {
                let id = EngineId::parse(raw)?;
                if existing.iter().any(|e| e.id == id) {
                    return Err(CoreError::Conflict(format!(
                        "an engine with id `{id}` already exists; remove it first or choose another --id"
                    )));
                }
                id
            }
            None => {
                let mut n = 1;
                loop {
                    let candidate = EngineId::parse(&format!("{}-{n}", kind.slug()))?;
                    if !existing.iter().any(|e| e.id == candidate) {
                        break candidate;
                    }
                    n += 1;
                }
            }
        };
        let endpoint = EngineEndpoint {
            id,
            kind,
            base_url,
            created_at: self.parts.clock.now(),
        };
        self.parts.endpoints.add(&endpoint).await?;
        self.invalidate_cache().await;
        Ok(endpoint)
    }

    /// Removes an endpoint.
    pub async fn remove_endpoint(&self, id: &str) -> Result<(), CoreError> {
        let id = EngineId::parse(id)?;
        if !self.parts.endpoints.remove(&id).await? {
            let known: Vec<String> = self
                .parts
                .endpoints
                .list()
                .await?
                .into_iter()
                .map(|e| e.id.to_string())
                .collect();
            return Err(EngineError::NotFound(format!(
                "no configured engine endpoint `{id}`{}",
                if known.is_empty() {
                    " (none are configured)".to_owned()
                } else {
                    format!("; configured: {}", known.join(", "))
                }
            ))
            .into());
        }
        self.invalidate_cache().await;
        Ok(())
    }

    async fn invalidate_cache(&self) {
        if let Err(e) = self.parts.cache.clear().await {
            tracing::warn!(error = %e, "could not clear the detection cache");
        }
    }

    /// An adapter for a detected, running engine.
    pub async fn engine(&self, id: &EngineId) -> Result<Arc<dyn LlmEngine>, CoreError> {
        let report = self.detect(&DetectOptions::default()).await?;
        let state = report
            .engines
            .iter()
            .find(|e| &e.id == id)
            .ok_or_else(|| engine_not_found(id, &report.engines))?;
        self.adapter_for(state).await
    }

    /// An adapter for the engine of a canonical model id.
    pub async fn engine_for_model(&self, model: &ModelId) -> Result<Arc<dyn LlmEngine>, CoreError> {
        self.engine(&model.engine_id).await
    }

    /// Detects engines (bypassing the cache when `fresh`) and returns adapters for the
    /// running ones, in detection order — what the proxy routes to.
    pub async fn running_engines(&self, fresh: bool) -> Result<RunningEngines, CoreError> {
        Ok(self.check_engines(fresh).await?.1)
    }

    /// Like [`Self::running_engines`], plus the state of every engine detection
    /// found, running or not (what the health history records).
    pub async fn check_engines(
        &self,
        fresh: bool,
    ) -> Result<(Vec<EngineState>, RunningEngines), CoreError> {
        let report = self
            .detect(&DetectOptions {
                filter: None,
                fresh,
            })
            .await?;
        let mut out = Vec::new();
        for state in &report.engines {
            if state.status.is_running() {
                let adapter = self.adapter_for(state).await?;
                out.push((state.clone(), adapter));
            }
        }
        Ok((report.engines, out))
    }

    /// The engine settings currently in force.
    pub async fn settings(&self) -> Result<EngineSettings, CoreError> {
        self.parts.config.engine_settings().await
    }

    async fn adapter_for(&self, state: &EngineState) -> Result<Arc<dyn LlmEngine>, CoreError> {
        if !state.status.is_running() {
            return Err(EngineError::Network(format!(
                "engine `{}` is not running ({}{})",
                state.id,
                state.status.name(),
                state
                    .status
                    .reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ))
            .into());
        }
        let base_url = state.base_url.clone().ok_or_else(|| {
            EngineError::NotFound(format!("engine `{}` has no known address", state.id))
        })?;
        let settings = self.parts.config.engine_settings().await?;
        Ok(self.parts.factory.build(
            &EngineTarget {
                id: state.id.clone(),
                kind: state.kind,
                base_url,
                source: state.source,
            },
            settings.request_timeout,
        ))
    }

    /// Models of every running engine (or of one engine, by id).
    pub async fn list_models(&self, engine: Option<&str>) -> Result<ModelListing, CoreError> {
        let report = self.detect(&DetectOptions::default()).await?;
        let selected: Vec<&EngineState> = match engine {
            Some(raw) => {
                let id = EngineId::parse(raw)?;
                let state = report
                    .engines
                    .iter()
                    .find(|e| e.id == id)
                    .ok_or_else(|| engine_not_found(&id, &report.engines))?;
                vec![state]
            }
            None => report
                .engines
                .iter()
                .filter(|e| e.status.is_running())
                .collect(),
        };
        let calls = selected.iter().map(|state| async move {
            let adapter = self.adapter_for(state).await?;
            Ok::<_, CoreError>(adapter.list_models().await?)
        });
        let results = join_all(calls).await;
        let mut listing = ModelListing {
            models: Vec::new(),
            errors: Vec::new(),
        };
        for (state, result) in selected.iter().zip(results) {
            match result {
                Ok(models) => listing.models.extend(models),
                // With one engine asked for by name, its failure is the command's failure.
                Err(e) if engine.is_some() => return Err(e),
                Err(e) => listing.errors.push(ModelListingError {
                    engine_id: state.id.clone(),
                    code: e.code().to_owned(),
                    message: e.to_string(),
                }),
            }
        }
        Ok(listing)
    }
}

fn filtered(engines: &[EngineState], filter: Option<&str>) -> Vec<EngineState> {
    match filter {
        None => engines.to_vec(),
        Some(f) => engines
            .iter()
            .filter(|e| matches_filter(f, e.kind, &e.id))
            .cloned()
            .collect(),
    }
}

fn matches_filter(filter: &str, kind: EngineKind, id: &EngineId) -> bool {
    id.as_str() == filter || filter.parse::<EngineKind>().is_ok_and(|k| k == kind)
}

fn check_filter(filter: &str, targets: &[EngineTarget]) -> Result<(), CoreError> {
    if filter.parse::<EngineKind>().is_ok() || targets.iter().any(|t| t.id.as_str() == filter) {
        return Ok(());
    }
    let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    Err(EngineError::NotFound(format!(
        "`{filter}` is neither an engine kind (ollama, vllm, lmstudio, llamacpp, openai, whispercpp) nor a known engine id ({})",
        ids.join(", ")
    ))
    .into())
}

fn engine_not_found(id: &EngineId, engines: &[EngineState]) -> CoreError {
    let found: Vec<&str> = engines.iter().map(|e| e.id.as_str()).collect();
    EngineError::NotFound(format!(
        "engine `{id}` was not detected{}; run `flm engines detect --fresh`",
        if found.is_empty() {
            " (no engines were found)".to_owned()
        } else {
            format!(" (found: {})", found.join(", "))
        }
    ))
    .into()
}

/// Normalises a user-supplied engine URL: `http`/`https` only, host required, no
/// query, fragment or credentials, no trailing `/`. A URL without a scheme gets
/// `http://`.
pub fn normalise_base_url(raw: &str) -> Result<String, CoreError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let bad = |why: &str| CoreError::InvalidInput(format!("invalid engine URL `{raw}`: {why}"));
    let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("a host is required"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not supported"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("remove the query string or fragment"));
    }
    let mut s = url.to_string();
    while s.ends_with('/') {
        s.pop();
    }
    // An OpenAI-style base often ends in /v1; FLM adds API paths itself.
    if let Some(stripped) = s.strip_suffix("/v1") {
        s = stripped.to_owned();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::normalise_base_url;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(
            normalise_base_url("localhost:8000").unwrap(),
            "http://localhost:8000"
        );
        assert_eq!(
            normalise_base_url("http://10.0.0.5:8000/v1/").unwrap(),
            "http://10.0.0.5:8000"
        );
        assert_eq!(
            normalise_base_url("https://gpu.lan/").unwrap(),
            "https://gpu.lan"
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h",
            "http://h/?q=1",
            "::::",
        ] {
            assert!(normalise_base_url(bad).is_err(), "{bad}");
        }
    }
}
