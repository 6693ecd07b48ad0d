//! Engine health history: samples the proxy's engine monitor records, and the rule
//! that keeps their number bounded (a sample on every status change, otherwise at
//! most one per minute per engine and model).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::EngineStatus;
use crate::error::RepoError;

/// Minimum spacing of two samples of the same engine and model with the same status.
pub const SAMPLE_SPACING_SECS: i64 = 60;

/// The same for per-model samples (an engine may list dozens of models).
pub const MODEL_SAMPLE_SPACING_SECS: i64 = 600;

/// How long samples are kept.
pub const HEALTH_RETENTION_DAYS: i64 = 30;

/// One health sample (`config.db` → `engine_health_logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Row id (`None` before it is stored).
    pub id: Option<i64>,
    /// When the check ran.
    pub at: DateTime<Utc>,
    /// Engine id.
    pub engine_id: String,
    /// Canonical model id when the sample is about one model.
    pub model: Option<String>,
    /// `healthy`, `degraded`, `down` or `installed_only`.
    pub status: String,
    /// Latency of the check, when the engine answered.
    pub latency_ms: Option<u64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// 1.0 for a failed check, 0.0 otherwise (averaged into the error rate).
    pub error_rate: f64,
}

/// The status name stored for an engine status (the app's vocabulary).
pub fn status_name(status: &EngineStatus) -> &'static str {
    match status {
        EngineStatus::InstalledOnly => "installed_only",
        EngineStatus::RunningHealthy { .. } => "healthy",
        EngineStatus::RunningDegraded { .. } => "degraded",
        EngineStatus::ErrorNetwork { .. } | EngineStatus::ErrorApi { .. } => "down",
    }
}

/// What one check found about one engine (or one of its models).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthObservation {
    /// Engine id.
    pub engine_id: String,
    /// Canonical model id, for a per-model observation.
    pub model: Option<String>,
    /// Status name ([`status_name`], or `down` when the engine could not list its models).
    pub status: &'static str,
    /// Latency of the check.
    pub latency_ms: Option<u64>,
    /// Error text.
    pub error: Option<String>,
}

/// Engine id and model of a series of samples.
type SampleKey = (String, Option<String>);

/// Decides which observations become stored samples. Holds, per engine and model,
/// the last status written and when; pure (no I/O), shared by a manager's monitors.
#[derive(Debug, Default)]
pub struct HealthSampler {
    last: HashMap<SampleKey, (&'static str, DateTime<Utc>)>,
}

impl HealthSampler {
    /// A sampler that has written nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The samples to write for one check at `now`. An engine or model seen before
    /// but missing from `observed` gets one `down` sample ("no longer detected"),
    /// then is forgotten.
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        observed: Vec<HealthObservation>,
    ) -> Vec<HealthSample> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for o in observed {
            let key = (o.engine_id.clone(), o.model.clone());
            seen.insert(key.clone());
            let spacing = Duration::seconds(if o.model.is_some() {
                MODEL_SAMPLE_SPACING_SECS
            } else {
                SAMPLE_SPACING_SECS
            });
            let due = match self.last.get(&key) {
                Some((status, at)) => *status != o.status || now - *at >= spacing,
                None => true,
            };
            if due {
                self.last.insert(key, (o.status, now));
                out.push(sample(now, o));
            }
        }
        let gone: Vec<SampleKey> = self
            .last
            .iter()
            .filter(|(k, (status, _))| !seen.contains(*k) && *status != "down")
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            out.push(sample(
                now,
                HealthObservation {
                    engine_id: key.0.clone(),
                    model: key.1.clone(),
                    status: "down",
                    latency_ms: None,
                    error: Some("no longer detected".into()),
                },
            ));
        }
        self.last.retain(|k, _| seen.contains(k));
        out
    }
}

fn sample(at: DateTime<Utc>, o: HealthObservation) -> HealthSample {
    HealthSample {
        id: None,
        at,
        error_rate: if o.status == "down" { 1.0 } else { 0.0 },
        engine_id: o.engine_id,
        model: o.model,
        status: o.status.to_owned(),
        latency_ms: o.latency_ms,
        error: o.error,
    }
}

/// Which samples to read.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthQuery {
    /// Samples at or after this time.
    pub since: DateTime<Utc>,
    /// Only this engine.
    pub engine_id: Option<String>,
    /// Only this model (canonical id).
    pub model: Option<String>,
    /// At most this many samples, newest first.
    pub limit: u32,
}

/// Per engine, model and status: how many samples and their summed latency.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCounts {
    /// Engine id.
    pub engine_id: String,
    /// Model, when the samples are per model.
    pub model: Option<String>,
    /// Status name.
    pub status: String,
    /// Number of samples.
    pub samples: u64,
    /// Samples that carry a latency.
    pub latency_samples: u64,
    /// Sum of those latencies.
    pub latency_sum_ms: u64,
    /// Sum of the samples' error rates.
    pub error_rate_sum: f64,
}

/// Engine health history (`config.db` → `engine_health_logs`).
#[async_trait]
pub trait HealthLogRepository: Send + Sync {
    /// Stores samples in one transaction.
    async fn insert(&self, samples: &[HealthSample]) -> Result<(), RepoError>;
    /// Deletes samples older than `before`; returns how many.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
    /// Samples matching `query`, newest first.
    async fn list(&self, query: &HealthQuery) -> Result<Vec<HealthSample>, RepoError>;
    /// Counts over every sample matching `query` (its limit is ignored).
    async fn counts(&self, query: &HealthQuery) -> Result<Vec<HealthCounts>, RepoError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(engine: &str, status: &'static str) -> HealthObservation {
        HealthObservation {
            engine_id: engine.into(),
            model: None,
            status,
            latency_ms: Some(3),
            error: None,
        }
    }

    #[test]
    fn writes_on_change_or_once_a_minute() {
        let mut s = HealthSampler::new();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(s.observe(t0, vec![obs("a", "healthy")]).len(), 1);
        let t1 = t0 + Duration::seconds(10);
        assert!(s.observe(t1, vec![obs("a", "healthy")]).is_empty());
        let down = s.observe(t1, vec![obs("a", "down")]);
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].error_rate, 1.0);
        let t2 = t1 + Duration::seconds(59);
        assert!(s.observe(t2, vec![obs("a", "down")]).is_empty());
        let t3 = t1 + Duration::seconds(60);
        assert_eq!(s.observe(t3, vec![obs("a", "down")]).len(), 1);
    }

    #[test]
    fn a_vanished_engine_gets_one_down_sample() {
        let mut s = HealthSampler::new();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        s.observe(t0, vec![obs("a", "healthy"), obs("b", "healthy")]);
        let out = s.observe(t0 + Duration::seconds(5), vec![obs("a", "healthy")]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].engine_id.as_str(), out[0].status.as_str()),
            ("b", "down")
        );
        assert!(s
            .observe(t0 + Duration::seconds(10), vec![obs("a", "healthy")])
            .is_empty());
    }
}
