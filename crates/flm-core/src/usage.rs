//! Usage aggregates: what the proxy counts per minute, key, model and engine, and the
//! fixed-bucket histograms that let p50/p95 be computed over any range by summing
//! buckets (no raw latencies are kept).

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, RepoError};

/// Upper bounds (inclusive, milliseconds) of the histogram buckets; one more bucket
/// holds everything slower than the last bound. Roughly logarithmic, finer where a
/// local engine answers (tens of ms to a few seconds). Changing them invalidates
/// stored rows: add a migration.
pub const BUCKET_BOUNDS_MS: [u64; 24] = [
    1, 2, 5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000,
    7_500, 10_000, 20_000, 30_000, 60_000, 120_000,
];

/// Number of buckets of a [`Histogram`].
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// Counts of durations per fixed bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram(pub [u64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Self([0; BUCKETS])
    }
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, ms: u64) {
        let i = BUCKET_BOUNDS_MS.partition_point(|b| *b < ms);
        self.0[i] += 1;
    }

    /// Adds another histogram's counts.
    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Number of durations counted.
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q`-quantile (`0.5` = p50) in ms, interpolated linearly inside its bucket;
    /// `None` when empty. Values in the overflow bucket report the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0_u64;
        for (i, n) in self.0.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BUCKET_BOUNDS_MS[i - 1] } as f64;
                let Some(hi) = BUCKET_BOUNDS_MS.get(i).map(|b| *b as f64) else {
                    return Some(lo);
                };
                let within = (rank - seen as f64) / *n as f64;
                return Some(lo + (hi - lo) * within);
            }
            seen += n;
        }
        BUCKET_BOUNDS_MS.last().map(|b| *b as f64)
    }
}

/// What happened in one minute for one key, model and engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Requests that completed (or were cut off) in the minute.
    pub requests: u64,
    /// Of which failed: HTTP status ≥ 400, or an error in the stream.
    pub errors: u64,
    /// Prompt tokens, as the engine reported them.
    pub tokens_in: u64,
    /// Completion tokens, as the engine reported them.
    pub tokens_out: u64,
    /// Requests whose engine reported no token usage (counted as 0 tokens).
    pub tokens_unknown: u64,
    /// Whole-request latency.
    pub latency: Histogram,
    /// Time to the first streamed byte (streaming requests only).
    pub ttft: Histogram,
}

impl UsageCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &UsageCounts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.tokens_unknown += o.tokens_unknown;
        self.latency.add(&o.latency);
        self.ttft.add(&o.ttft);
    }
}

/// The identity of an aggregate row. Empty strings stand for "none": a request with
/// no key (open policy), or one refused before a model/engine was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// Start of the minute, Unix seconds (a multiple of 60).
    pub minute: i64,
    /// API key id (`key_…`), or empty.
    pub key_id: String,
    /// Canonical model id (`flm://engine/model`), or empty.
    pub model: String,
    /// Engine id, or empty.
    pub engine_id: String,
}

/// One finished request, as the proxy observed it.
#[derive(Debug, Clone, Default)]
pub struct RequestOutcome {
    /// API key id, if the request carried one.
    pub key_id: Option<String>,
    /// Canonical model id, once routed.
    pub model: Option<String>,
    /// Engine id, once routed.
    pub engine_id: Option<String>,
    /// Failed (status ≥ 400 or a stream error).
    pub error: bool,
    /// `(prompt, completion)` tokens, when the engine reported usage.
    pub tokens: Option<(u64, u64)>,
    /// Whole-request latency.
    pub latency_ms: u64,
    /// Time to the first streamed byte.
    pub ttft_ms: Option<u64>,
}

impl RequestOutcome {
    /// Adds this outcome to `counts`.
    pub fn add_to(&self, counts: &mut UsageCounts) {
        counts.requests += 1;
        counts.errors += u64::from(self.error);
        match self.tokens {
            Some((i, o)) => {
                counts.tokens_in += i;
                counts.tokens_out += o;
            }
            None => counts.tokens_unknown += 1,
        }
        counts.latency.record(self.latency_ms);
        if let Some(t) = self.ttft_ms {
            counts.ttft.record(t);
        }
    }
}

/// Time ranges the usage view offers.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageRange {
    /// The last hour, in 1-minute buckets.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours, in 15-minute buckets.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days, in 1-hour buckets.
    #[serde(rename = "7d")]
    Week,
}

impl UsageRange {
    /// Length in seconds.
    pub fn secs(self) -> i64 {
        match self {
            UsageRange::Hour => 3_600,
            UsageRange::Day => 86_400,
            UsageRange::Week => 7 * 86_400,
        }
    }

    /// Width of one series bucket in seconds.
    pub fn bucket_secs(self) -> i64 {
        match self {
            UsageRange::Hour => 60,
            UsageRange::Day => 900,
            UsageRange::Week => 3_600,
        }
    }

    /// `1h`, `24h` or `7d`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageRange::Hour => "1h",
            UsageRange::Day => "24h",
            UsageRange::Week => "7d",
        }
    }
}

impl FromStr for UsageRange {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.trim() {
            "1h" => Ok(UsageRange::Hour),
            "24h" | "1d" => Ok(UsageRange::Day),
            "7d" => Ok(UsageRange::Week),
            other => Err(CoreError::InvalidInput(format!(
                "invalid range `{other}`: expected 1h, 24h or 7d"
            ))),
        }
    }
}

/// What the usage groups are keyed by.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroupBy {
    /// API key id.
    Key,
    /// Canonical model id.
    Model,
    /// Engine id.
    Engine,
}

impl FromStr for UsageGroupBy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.trim() {
            "key" => Ok(UsageGroupBy::Key),
            "model" => Ok(UsageGroupBy::Model),
            "engine" => Ok(UsageGroupBy::Engine),
            other => Err(CoreError::InvalidInput(format!(
                "invalid grouping `{other}`: expected key, model or engine"
            ))),
        }
    }
}

/// Minute-level usage aggregates (`config.db` → `usage_minutes`).
#[async_trait]
pub trait UsageRepository: Send + Sync {
    /// Adds `rows` to the stored aggregates (summing into existing rows), in one
    /// transaction.
    async fn upsert(&self, rows: &HashMap<UsageKey, UsageCounts>) -> Result<(), RepoError>;
    /// Deletes minutes before `before` (Unix seconds); returns the rows removed.
    async fn prune(&self, before: i64) -> Result<u64, RepoError>;
    /// Sums per group over minutes in `[from, to)` (Unix seconds).
    async fn groups(
        &self,
        from: i64,
        to: i64,
        by: UsageGroupBy,
    ) -> Result<Vec<(String, UsageCounts)>, RepoError>;
    /// Sums per bucket of `bucket_secs` over `[from, to)`: `(bucket start, counts)`
    /// without histograms, in time order, empty buckets left out.
    async fn series(
        &self,
        from: i64,
        to: i64,
        bucket_secs: i64,
    ) -> Result<Vec<(i64, UsageCounts)>, RepoError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in [40, 45, 48, 50, 60, 70, 80, 90, 95, 400] {
            h.record(ms);
        }
        // 4 of 10 in (25, 50], 3 in (50, 75], 2 in (75, 100], 1 in (300, 500].
        let p50 = h.quantile(0.5).unwrap();
        assert!((50.0..=75.0).contains(&p50), "{p50}");
        let p95 = h.quantile(0.95).unwrap();
        assert!((300.0..=500.0).contains(&p95), "{p95}");
        let mut slow = Histogram::default();
        slow.record(1_000_000);
        assert_eq!(slow.quantile(0.5), Some(120_000.0));
        slow.add(&h);
        assert_eq!(slow.count(), 11);
    }

    #[test]
    fn bucket_edges_are_inclusive() {
        let mut h = Histogram::default();
        h.record(0);
        h.record(1);
        h.record(2);
        assert_eq!(h.0[0], 2);
        assert_eq!(h.0[1], 1);
    }

    #[test]
    fn ranges_parse_precisely() {
        assert_eq!("24h".parse::<UsageRange>().unwrap().bucket_secs(), 900);
        assert!("2h".parse::<UsageRange>().is_err());
        assert!("model".parse::<UsageGroupBy>().is_ok());
        assert!("user".parse::<UsageGroupBy>().is_err());
    }
}
