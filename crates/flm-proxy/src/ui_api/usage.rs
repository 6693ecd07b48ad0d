//! `GET /api/v1/usage` and `GET /api/v1/engines/health-history` (paths relative to
//! `/api/v1`): thin handlers over [`UsageService`] and [`HealthHistoryService`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Json;
use flm_core::health::HealthLogRepository;
use flm_core::ports::{ApiKeyRepository, Clock, SystemClock};
use flm_core::services::{HealthHistoryService, UsageReport, UsageService};
use flm_core::usage::{UsageGroupBy, UsageRange, UsageRepository};
use flm_core::CoreError;
use serde::Serialize;

use super::error::UiError;

/// What the usage routes read.
#[derive(Clone)]
pub struct UsageApiDeps {
    usage: UsageService,
    health: HealthHistoryService,
}

impl UsageApiDeps {
    /// Over the store's usage aggregates, health log and API keys (for key labels),
    /// e.g. `UsageApiDeps::new(store.usage(), store.health_log(), store.api_keys())`.
    pub fn new(
        usage: Arc<dyn UsageRepository>,
        health: Arc<dyn HealthLogRepository>,
        keys: Arc<dyn ApiKeyRepository>,
    ) -> Self {
        Self::with_clock(usage, health, keys, Arc::new(SystemClock))
    }

    /// The same with another clock.
    pub fn with_clock(
        usage: Arc<dyn UsageRepository>,
        health: Arc<dyn HealthLogRepository>,
        keys: Arc<dyn ApiKeyRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            usage: UsageService::new(usage, Some(keys), clock.clone()),
            health: HealthHistoryService::new(health, clock),
        }
    }
}

/// The routes, state applied.
pub fn router(deps: UsageApiDeps) -> axum::Router {
    axum::Router::new()
        .route("/usage", get(usage))
        .route("/engines/health-history", get(health_history))
        .with_state(Arc::new(deps))
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

async fn usage(
    State(deps): State<Arc<UsageApiDeps>>,
    Query(q): Params,
) -> Result<Json<UsageReport>, UiError> {
    let range: UsageRange = param(&q, "range")
        .unwrap_or("24h")
        .parse()
        .map_err(|e: CoreError| UiError::bad_request("invalid_range", e.to_string()))?;
    let by: UsageGroupBy = param(&q, "group_by")
        .unwrap_or("model")
        .parse()
        .map_err(|e: CoreError| UiError::bad_request("invalid_group_by", e.to_string()))?;
    deps.usage
        .report(range, by)
        .await
        .map(Json)
        .map_err(UiError::internal)
}

/// One health check of an engine (or one of its models).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SampleView {
    pub at: String,
    pub engine_id: String,
    pub model: Option<String>,
    pub status: String,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

/// `GET /engines/health-history`: samples, newest first, and the window's summary.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HistoryView {
    pub samples: Vec<SampleView>,
    pub summary: Vec<flm_core::services::HealthSummary>,
}

fn number(q: &HashMap<String, String>, name: &str, default: u32) -> Result<u32, UiError> {
    match param(q, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            UiError::bad_request(
                if name == "hours" {
                    "invalid_hours"
                } else {
                    "invalid_limit"
                },
                format!("`{name}` must be a positive whole number, got `{v}`"),
            )
        }),
    }
}

async fn health_history(
    State(deps): State<Arc<UsageApiDeps>>,
    Query(q): Params,
) -> Result<Json<HistoryView>, UiError> {
    let hours = number(&q, "hours", 24)?;
    let limit = number(&q, "limit", 100)?;
    let h = deps
        .health
        .history(hours, limit, param(&q, "engine_id"), param(&q, "model"))
        .await
        .map_err(|e| match e {
            CoreError::InvalidInput(m) => UiError::bad_request(
                if m.starts_with("hours") {
                    "invalid_hours"
                } else {
                    "invalid_limit"
                },
                m,
            ),
            other => UiError::internal(other),
        })?;
    Ok(Json(HistoryView {
        samples: h
            .samples
            .into_iter()
            .map(|s| SampleView {
                at: s.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                engine_id: s.engine_id,
                model: s.model,
                status: s.status,
                latency_ms: s.latency_ms,
                error: s.error,
            })
            .collect(),
        summary: h.summary,
    }))
}
