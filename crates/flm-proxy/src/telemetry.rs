//! Usage metering and engine health history, written by the proxy itself.
//!
//! - **Usage**: a route layer on `/v1/chat/completions`, `/v1/completions`,
//!   `POST /v1/responses` and `/v1/embeddings` notes when the request started, wraps the response body, and
//!   when the body ends (or the client goes away) adds one [`RequestOutcome`] to an
//!   in-memory table keyed by minute × key × model × engine. The table is sharded by thread, so the request
//!   path takes one short, almost never contended lock. A background task writes the
//!   table every [`FLUSH_EVERY`] in one transaction (summing into existing rows) and
//!   once more when the proxy stops; rows older than [`USAGE_RETENTION_DAYS`] are
//!   pruned hourly. Token counts come from the engine's `usage` object in the
//!   response (for streams, the last event carrying one); none → counted as unknown.
//! - **Health**: the engine monitor hands every check to [`HealthWriter`], which
//!   stores a sample per engine (and per model) on a status change or at most once a
//!   minute (models: every 10 minutes), and prunes samples older than 30 days.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use flm_core::health::{
    HealthLogRepository, HealthObservation, HealthSampler, HEALTH_RETENTION_DAYS,
};
use flm_core::usage::{RequestOutcome, UsageCounts, UsageKey, UsageRepository};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;

use crate::app::{KeyId, SharedState};

/// How often the usage table is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How long usage minutes are kept.
pub const USAGE_RETENTION_DAYS: i64 = 35;
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows kept in memory when the store refuses writes, beyond which new minutes are
/// dropped (with a warning) rather than growing without bound.
const MAX_PENDING_ROWS: usize = 100_000;
const SHARDS: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which engine and model answered: set by the handlers on the response.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Engine id.
    pub(crate) engine_id: String,
    /// Canonical model id.
    pub(crate) model: String,
    /// Engine kind slug (`vllm`, `ollama`, …).
    pub(crate) kind: &'static str,
}

/// The in-memory usage table of one manager (shared by its proxy instances).
pub struct UsageMeter {
    shards: Box<[Mutex<HashMap<UsageKey, UsageCounts>>]>,
    repo: Arc<dyn UsageRepository>,
    /// Serialises flushes (the periodic one and the one at stop).
    flushing: tokio::sync::Mutex<()>,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl UsageMeter {
    /// A meter writing to `repo`.
    pub fn new(repo: Arc<dyn UsageRepository>) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            repo,
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// Counts one finished request in the current minute.
    pub fn record(&self, outcome: &RequestOutcome) {
        let key = UsageKey {
            minute: Utc::now().timestamp().div_euclid(60) * 60,
            key_id: outcome.key_id.clone().unwrap_or_default(),
            model: outcome.model.clone().unwrap_or_default(),
            engine_id: outcome.engine_id.clone().unwrap_or_default(),
        };
        let mut shard = lock(&self.shards[shard_index()]);
        outcome.add_to(shard.entry(key).or_default());
    }

    fn take(&self) -> HashMap<UsageKey, UsageCounts> {
        let mut all: HashMap<UsageKey, UsageCounts> = HashMap::new();
        for s in self.shards.iter() {
            let taken = std::mem::take(&mut *lock(s));
            for (k, c) in taken {
                all.entry(k).or_default().add(&c);
            }
        }
        all
    }

    /// Writes everything counted so far in one transaction. On failure the rows
    /// stay in memory for the next flush (up to a bound).
    pub async fn flush(&self) {
        let _one = self.flushing.lock().await;
        let rows = self.take();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.repo.upsert(&rows).await {
            let n = rows.len();
            let mut back = lock(&self.shards[0]);
            if back.len() + n > MAX_PENDING_ROWS {
                tracing::warn!(error = %e, rows = n, "usage aggregates could not be written and are dropped");
                return;
            }
            tracing::warn!(error = %e, rows = n, "usage aggregates could not be written; retrying at the next flush");
            for (k, c) in rows {
                back.entry(k).or_default().add(&c);
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] and prunes hourly until `stop`, then flushes
    /// once more.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::stopped(&mut stop) => break,
            }
            self.flush().await;
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let before = Utc::now().timestamp() - USAGE_RETENTION_DAYS * 86_400;
                match self.repo.prune(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned old usage aggregates"),
                    Err(e) => tracing::warn!(error = %e, "could not prune usage aggregates"),
                }
            }
        }
        self.flush().await;
    }
}

/// Route layer: meters one request (see the module docs).
pub(crate) async fn meter(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let Some(meter) = st.usage.clone() else {
        return next.run(req).await;
    };
    let key_id = req.extensions().get::<KeyId>().map(|k| k.0.clone());
    let start = Instant::now();
    let resp = next.run(req).await;
    let served = resp.extensions().get::<Served>().cloned();
    let stream = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let outcome = RequestOutcome {
        key_id: key_id.filter(|k| !k.is_empty()),
        error: resp.status().as_u16() >= 400,
        engine_id: served.as_ref().map(|s| s.engine_id.clone()),
        model: served.map(|s| s.model),
        ..RequestOutcome::default()
    };
    let (parts, body) = resp.into_parts();
    let body = Body::new(Metered {
        inner: body,
        meter: Some(meter),
        outcome,
        start,
        stream,
    });
    Response::from_parts(parts, body)
}

/// A response body that records its request's outcome when it ends or is dropped.
struct Metered {
    inner: Body,
    meter: Option<Arc<UsageMeter>>,
    outcome: RequestOutcome,
    start: Instant,
    stream: bool,
}

impl Metered {
    fn observe(&mut self, data: &[u8]) {
        if self.stream {
            if self.outcome.ttft_ms.is_none() {
                self.outcome.ttft_ms = Some(elapsed_ms(self.start));
            }
            if find(data, b"data: {\"error\"").is_some()
                || find(data, b"event: response.failed").is_some()
            {
                self.outcome.error = true;
            }
        }
        if let Some(t) = usage_tokens(data) {
            self.outcome.tokens = Some(t);
        }
    }

    fn finish(&mut self) {
        if let Some(meter) = self.meter.take() {
            self.outcome.latency_ms = elapsed_ms(self.start);
            meter.record(&self.outcome);
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    self.observe(&data);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.outcome.error = true;
                self.finish();
            }
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Last position of `needle` in `hay` (usage sits at the end of a body).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The integer after `"name":` at the last occurrence of `"name"`, when it is
/// complete in `hay` (a number cut by a chunk boundary is not trusted).
fn number_after(hay: &[u8], name: &[u8]) -> Option<u64> {
    let mut i = find(hay, name)? + name.len();
    let skip_ws = |i: &mut usize| {
        while hay.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if hay.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip_ws(&mut i);
    let start = i;
    while hay.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start || i >= hay.len() {
        return None;
    }
    std::str::from_utf8(&hay[start..i]).ok()?.parse().ok()
}

/// `(prompt_tokens, completion_tokens)` of an OpenAI `usage` object in `data`; a
/// Responses `usage` (`input_tokens`, `output_tokens`) counts the same.
pub(crate) fn usage_tokens(data: &[u8]) -> Option<(u64, u64)> {
    find(data, b"_tokens\"")?;
    let mut prompt = number_after(data, b"\"prompt_tokens\"");
    let mut completion = number_after(data, b"\"completion_tokens\"");
    if prompt.is_none() && completion.is_none() {
        prompt = number_after(data, b"\"input_tokens\"");
        completion = number_after(data, b"\"output_tokens\"");
    }
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some((prompt.unwrap_or(0), completion.unwrap_or(0)))
}

/// Writes engine health samples for the monitor(s) of one manager.
pub struct HealthWriter {
    repo: Arc<dyn HealthLogRepository>,
    sampler: Mutex<HealthSampler>,
    last_prune: Mutex<Option<Instant>>,
}

impl HealthWriter {
    /// A writer to `repo`.
    pub fn new(repo: Arc<dyn HealthLogRepository>) -> Arc<Self> {
        Arc::new(Self {
            repo,
            sampler: Mutex::new(HealthSampler::new()),
            last_prune: Mutex::new(None),
        })
    }

    /// Records what one engine check found (only what is due, see [`HealthSampler`]).
    pub async fn record(&self, observed: Vec<HealthObservation>) {
        let samples = lock(&self.sampler).observe(Utc::now(), observed);
        if !samples.is_empty() {
            if let Err(e) = self.repo.insert(&samples).await {
                tracing::warn!(error = %e, samples = samples.len(), "could not store engine health samples");
            }
        }
        let due = {
            let mut last = lock(&self.last_prune);
            let due = last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let before = Utc::now() - chrono::Duration::days(HEALTH_RETENTION_DAYS);
            match self.repo.prune(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old engine health samples"),
                Err(e) => tracing::warn!(error = %e, "could not prune engine health samples"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_bodies_and_stream_events() {
        let body = br#"{"choices":[],"usage":{"prompt_tokens": 12,"completion_tokens":7,"total_tokens":19}}"#;
        assert_eq!(usage_tokens(body), Some((12, 7)));
        let emb = br#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(usage_tokens(emb), Some((4, 0)));
        let resp = br#"{"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"total_tokens":12}}"#;
        assert_eq!(usage_tokens(resp), Some((9, 3)));
        assert_eq!(
            usage_tokens(b"data: {\"choices\":[{\"delta\":{}}]}\n\n"),
            None
        );
        // A number cut at the end of a chunk is not trusted.
        assert_eq!(
            number_after(b"\"prompt_tokens\":12", b"\"prompt_tokens\""),
            None
        );
    }
}
