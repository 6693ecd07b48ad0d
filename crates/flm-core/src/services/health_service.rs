//! Engine health history (`flm engines health-history`,
//! `GET /api/v1/engines/health-history`): samples and their summary.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use serde::Serialize;

use crate::error::CoreError;
use crate::health::{HealthLogRepository, HealthQuery, HealthSample, HEALTH_RETENTION_DAYS};
use crate::ports::Clock;

/// Largest `hours` accepted (the retention).
pub const MAX_HISTORY_HOURS: u32 = (HEALTH_RETENTION_DAYS as u32) * 24;
/// Largest `limit` accepted.
pub const MAX_HISTORY_LIMIT: u32 = 10_000;

/// Summary of one engine (and model) over the window.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSummary {
    /// Engine id.
    pub engine_id: String,
    /// Model, for per-model samples.
    pub model: Option<String>,
    /// Samples in the window.
    pub samples: u64,
    /// Share of `healthy` samples (0..1).
    pub success_rate: f64,
    /// Mean latency of the samples that have one.
    pub avg_latency_ms: Option<f64>,
    /// Mean error rate of the samples (share of failed checks, 0..1).
    pub error_rate: f64,
}

/// Samples (newest first, at most `limit`) and the summary over the whole window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthHistory {
    /// Samples.
    pub samples: Vec<HealthSample>,
    /// One entry per engine and model.
    pub summary: Vec<HealthSummary>,
}

/// Reads the engine health history.
#[derive(Clone)]
pub struct HealthHistoryService {
    repo: Arc<dyn HealthLogRepository>,
    clock: Arc<dyn Clock>,
}

impl HealthHistoryService {
    /// A service over the health log.
    pub fn new(repo: Arc<dyn HealthLogRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { repo, clock }
    }

    /// The last `hours` of samples (at most `limit`), optionally of one engine and/or
    /// model, with the summary.
    pub async fn history(
        &self,
        hours: u32,
        limit: u32,
        engine_id: Option<&str>,
        model: Option<&str>,
    ) -> Result<HealthHistory, CoreError> {
        if hours == 0 || hours > MAX_HISTORY_HOURS {
            return Err(CoreError::InvalidInput(format!(
                "hours must be between 1 and {MAX_HISTORY_HOURS} (samples are kept {HEALTH_RETENTION_DAYS} days), got {hours}"
            )));
        }
        if limit == 0 || limit > MAX_HISTORY_LIMIT {
            return Err(CoreError::InvalidInput(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}, got {limit}"
            )));
        }
        let nonempty = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let query = HealthQuery {
            since: self.clock.now() - Duration::hours(i64::from(hours)),
            engine_id: nonempty(engine_id),
            model: nonempty(model),
            limit,
        };
        let (samples, counts) =
            futures::future::try_join(self.repo.list(&query), self.repo.counts(&query)).await?;
        #[derive(Default)]
        struct Acc {
            samples: u64,
            healthy: u64,
            lat_n: u64,
            lat_sum: u64,
            err_sum: f64,
        }
        let mut acc: BTreeMap<(String, Option<String>), Acc> = BTreeMap::new();
        for c in counts {
            let a = acc.entry((c.engine_id, c.model)).or_default();
            a.samples += c.samples;
            if c.status == "healthy" {
                a.healthy += c.samples;
            }
            a.lat_n += c.latency_samples;
            a.lat_sum += c.latency_sum_ms;
            a.err_sum += c.error_rate_sum;
        }
        let summary = acc
            .into_iter()
            .filter(|(_, a)| a.samples > 0)
            .map(|((engine_id, model), a)| HealthSummary {
                engine_id,
                model,
                samples: a.samples,
                success_rate: a.healthy as f64 / a.samples as f64,
                avg_latency_ms: (a.lat_n > 0)
                    .then(|| (a.lat_sum as f64 / a.lat_n as f64 * 10.0).round() / 10.0),
                error_rate: (a.err_sum / a.samples as f64).clamp(0.0, 1.0),
            })
            .collect();
        Ok(HealthHistory { samples, summary })
    }
}
