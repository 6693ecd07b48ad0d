//! The usage report (`flm usage`, `GET /api/v1/usage`): groups and a time series
//! over the minute aggregates, percentiles from summed histogram buckets.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::CoreError;
use crate::ports::{ApiKeyRepository, Clock};
use crate::usage::{UsageGroupBy, UsageRange, UsageRepository};

/// One group of the report.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageGroup {
    /// Key id, canonical model id or engine id; empty for requests refused before
    /// one was known (no key, not routed).
    pub group: String,
    /// The key's label (groups by key only).
    pub label: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Requests without token usage from the engine.
    pub tokens_unknown: u64,
    /// Median latency.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency.
    pub latency_p95_ms: Option<f64>,
    /// Median time to first token (streams).
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile time to first token (streams).
    pub ttft_p95_ms: Option<f64>,
}

/// One point of the series.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsagePoint {
    /// Start of the bucket.
    pub at: DateTime<Utc>,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
}

/// The report.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// Range covered.
    pub range: UsageRange,
    /// Width of a series bucket.
    pub bucket_secs: i64,
    /// Groups, most requests first.
    pub groups: Vec<UsageGroup>,
    /// Every bucket of the range, oldest first (empty ones as zeros).
    pub series: Vec<UsagePoint>,
}

/// Builds usage reports.
#[derive(Clone)]
pub struct UsageService {
    repo: Arc<dyn UsageRepository>,
    keys: Option<Arc<dyn ApiKeyRepository>>,
    clock: Arc<dyn Clock>,
}

impl UsageService {
    /// A service over the aggregates; `keys` gives labels to key groups.
    pub fn new(
        repo: Arc<dyn UsageRepository>,
        keys: Option<Arc<dyn ApiKeyRepository>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { repo, keys, clock }
    }

    /// The report for the last `range`, grouped `by`.
    pub async fn report(
        &self,
        range: UsageRange,
        by: UsageGroupBy,
    ) -> Result<UsageReport, CoreError> {
        let bucket = range.bucket_secs();
        let now = self.clock.now().timestamp();
        // Whole buckets, the current (partial) one included.
        let to = (now.div_euclid(bucket) + 1) * bucket;
        let from = to - range.secs();
        let (groups, points) = futures::future::try_join(
            self.repo.groups(from, to, by),
            self.repo.series(from, to, bucket),
        )
        .await?;
        let labels: HashMap<String, String> = match (by, &self.keys) {
            (UsageGroupBy::Key, Some(keys)) => keys
                .list()
                .await?
                .into_iter()
                .map(|k| (k.id, k.label))
                .collect(),
            _ => HashMap::new(),
        };
        let mut groups: Vec<UsageGroup> = groups
            .into_iter()
            .map(|(group, c)| UsageGroup {
                label: labels.get(&group).cloned(),
                group,
                requests: c.requests,
                errors: c.errors,
                tokens_in: c.tokens_in,
                tokens_out: c.tokens_out,
                tokens_unknown: c.tokens_unknown,
                latency_p50_ms: c.latency.quantile(0.5).map(round1),
                latency_p95_ms: c.latency.quantile(0.95).map(round1),
                ttft_p50_ms: c.ttft.quantile(0.5).map(round1),
                ttft_p95_ms: c.ttft.quantile(0.95).map(round1),
            })
            .collect();
        groups.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.group.cmp(&b.group)));
        let by_at: HashMap<i64, _> = points.into_iter().collect();
        let series = (0..range.secs() / bucket)
            .filter_map(|i| {
                let at = from + i * bucket;
                let c = by_at.get(&at);
                Some(UsagePoint {
                    at: DateTime::from_timestamp(at, 0)?,
                    requests: c.map_or(0, |c| c.requests),
                    errors: c.map_or(0, |c| c.errors),
                    tokens_in: c.map_or(0, |c| c.tokens_in),
                    tokens_out: c.map_or(0, |c| c.tokens_out),
                })
            })
            .collect();
        Ok(UsageReport {
            range,
            bucket_secs: bucket,
            groups,
            series,
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
