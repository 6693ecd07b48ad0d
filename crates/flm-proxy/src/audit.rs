//! The audit writer (DESIGN.md §3.5): requests and security events go into a bounded
//! queue; one task drains it and writes batches, so the request path never waits on
//! the disk.
//!
//! When the queue is full the proxy sheds new requests with `503` before doing any
//! work for them ([`AuditSink::refusal`]), so records are not lost silently; an event
//! that still finds the queue full (a race between that check and the send) is counted
//! in [`AuditStats::dropped`] and logged.
//!
//! When the database refuses a write (a full disk, an I/O error, a lock held too long)
//! the batch is kept and retried with a growing pause (at most [`RETRY_MAX`]); while it
//! fails the proxy refuses new requests with `503 audit_unavailable` instead of
//! serving requests it cannot record. Records of requests already admitted wait in the
//! bounded queue; nothing is dropped. The first successful write ends the refusals by
//! itself and records an `audit_unavailable` event saying for how long and how many
//! requests were refused. A store opened read-only (safe mode after a failed
//! migration) can never be written: its records are counted as dropped and the proxy
//! keeps serving (`flm check` reports the safe mode).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use flm_core::security::{
    AuditEvent, AuditRepository, AuditSeverity, NewAnomaly, NewIntrusion, NewResourceAlert,
    SecurityEventRepository,
};
use flm_core::RepoError;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Records waiting at most. At ~300 bytes each this bounds the queue to a few MiB.
pub const QUEUE_CAPACITY: usize = 8192;
/// Rows written per transaction at most.
const BATCH: usize = 512;
/// Under light load the writer waits this long after the first record of a batch:
/// one transaction and one task wake-up per request would add latency to every
/// request on a small machine. Records become visible (and flushes are acknowledged)
/// at most this much later.
const LINGER: Duration = Duration::from_millis(100);
/// First pause before a failed batch is written again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two attempts: how long the proxy may keep refusing after the
/// disk has space again.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

/// One thing to record.
#[derive(Debug)]
pub(crate) enum Record {
    Audit(AuditEvent),
    Intrusion(NewIntrusion),
    Anomaly(NewAnomaly),
    Resource(NewResourceAlert),
    /// Acknowledged once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Counters, for `/admin/status` and tests.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Rows written.
    pub written: AtomicU64,
    /// Requests refused with 503 because the queue was full.
    pub shed: AtomicU64,
    /// Records that found the queue full after all, or that a read-only store can
    /// never take.
    pub dropped: AtomicU64,
    /// Failed write attempts (each is retried; none is dropped).
    pub write_failures: AtomicU64,
    /// Requests refused with `503 audit_unavailable` because writes were failing.
    pub refused_unavailable: AtomicU64,
    /// Whether writes are failing now (the proxy refuses new requests meanwhile).
    pub unavailable: AtomicBool,
}

/// Marks a refusal that is not recorded one by one: the audit log could not take it.
/// Such refusals are counted and summed up in one event once writes succeed again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unrecorded;

/// Where the proxy sends audit records.
pub(crate) struct AuditSink {
    tx: mpsc::Sender<Record>,
    rx: Mutex<Option<mpsc::Receiver<Record>>>,
    pub(crate) stats: Arc<AuditStats>,
}

impl AuditSink {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            stats: Arc::new(AuditStats::default()),
        }
    }

    /// Starts the writer (once; later calls do nothing). Without repositories the
    /// records are drained and discarded (a proxy built without a store).
    pub(crate) fn start(
        &self,
        audit: Option<Arc<dyn AuditRepository>>,
        events: Option<Arc<dyn SecurityEventRepository>>,
    ) {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        tokio::spawn(writer(rx, audit, events, self.stats.clone()));
    }

    /// Whether a new request must be shed.
    pub(crate) fn is_full(&self) -> bool {
        self.tx.capacity() == 0
    }

    /// The `503` for a new request when the audit log cannot take its record: writes
    /// failing (`audit_unavailable`) or the queue full (`resource_throttle`).
    pub(crate) fn refusal(&self) -> Option<Response> {
        let (code, message, retry, counter) = if self.stats.unavailable.load(Ordering::Relaxed) {
            (
                "audit_unavailable",
                "the audit log cannot be written (see the proxy log); requests are refused until it can",
                "5",
                &self.stats.refused_unavailable,
            )
        } else if self.is_full() {
            (
                "resource_throttle",
                "the audit log is behind; retry shortly",
                "1",
                &self.stats.shed,
            )
        } else {
            return None;
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "server_error",
            message,
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
        resp.extensions_mut().insert(Unrecorded);
        Some(resp)
    }

    pub(crate) fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per 1,000 drops: the log must not become the next bottleneck.
                if n % 1000 == 1 {
                    tracing::error!(
                        dropped_total = n,
                        record = kind(&r),
                        "audit queue full: record dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Waits (bounded) until everything queued so far is written.
    pub(crate) async fn flush(&self, bound: Duration) {
        let (ack, done) = oneshot::channel();
        if tokio::time::timeout(bound, self.tx.send(Record::Flush(ack)))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(bound, done).await;
        }
    }
}

fn kind(r: &Record) -> &'static str {
    match r {
        Record::Audit(_) => "audit",
        Record::Intrusion(_) => "intrusion",
        Record::Anomaly(_) => "anomaly",
        Record::Resource(_) => "resource_alert",
        Record::Flush(_) => "flush",
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Record>,
    audit: Option<Arc<dyn AuditRepository>>,
    events: Option<Arc<dyn SecurityEventRepository>>,
    stats: Arc<AuditStats>,
) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut rows: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut others: Vec<Record> = Vec::new();
    loop {
        buf.clear();
        if rx.recv_many(&mut buf, BATCH).await == 0 {
            return;
        }
        // Light load: let records accumulate without waking this task for each one
        // (a wake-up per request costs every request a futex and a context switch).
        // Under load the queue is never idle, so there is no pause at all.
        let flushing = buf.iter().any(|r| matches!(r, Record::Flush(_)));
        if buf.len() < BATCH / 4 && !flushing {
            tokio::time::sleep(LINGER).await;
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => buf.push(r),
                    Err(_) => break,
                }
            }
        }
        let mut acks = Vec::new();
        for r in buf.drain(..) {
            match r {
                Record::Audit(e) => rows.push(e),
                Record::Flush(ack) => acks.push(ack),
                other => others.push(other),
            }
        }
        write_all(
            audit.as_deref(),
            events.as_deref(),
            &mut rows,
            &mut others,
            &stats,
        )
        .await;
        for a in acks {
            let _ = a.send(());
        }
    }
}

/// Writes `others` and `rows` until they are all stored, pausing between attempts;
/// meanwhile [`AuditStats::unavailable`] makes the proxy refuse new requests.
async fn write_all(
    audit: Option<&dyn AuditRepository>,
    events: Option<&dyn SecurityEventRepository>,
    rows: &mut Vec<AuditEvent>,
    others: &mut Vec<Record>,
    stats: &AuditStats,
) {
    let mut pause = RETRY_FIRST;
    let mut failing_since = None;
    loop {
        let result = write_once(audit, events, rows, others, stats).await;
        match result {
            Ok(()) => break,
            // Errors no retry can cure: a read-only store (safe mode), or records the
            // database refuses as invalid. Counted and logged, not retried forever.
            Err(RepoError::ReadOnlyMode(reason) | RepoError::Validation(reason)) => {
                let n = rows.len() + others.len();
                stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!(rows = n, %reason, "audit records cannot be written and are dropped");
                rows.clear();
                others.clear();
                break;
            }
            Err(e) => {
                stats.write_failures.fetch_add(1, Ordering::Relaxed);
                if failing_since.is_none() {
                    failing_since = Some((std::time::Instant::now(), Utc::now()));
                    stats.unavailable.store(true, Ordering::SeqCst);
                    tracing::error!(error = %e, pending = rows.len() + others.len(),
                        "audit write failed: refusing new requests (503 audit_unavailable) until it succeeds; the records are kept and retried");
                } else {
                    tracing::debug!(error = %e, "audit write failed again; retrying");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
    if let Some((started, since)) = failing_since {
        stats.unavailable.store(false, Ordering::SeqCst);
        let refused = stats.refused_unavailable.swap(0, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        tracing::warn!(
            outage_secs = secs,
            refused_requests = refused,
            "audit writes succeed again: serving requests"
        );
        // The outage is itself evidence: it goes into the chain with the next batch.
        rows.push(AuditEvent {
            request_id: String::new(),
            api_key_id: None,
            endpoint: "-".into(),
            status: 503,
            latency_ms: None,
            created_at: Utc::now(),
            event_type: Some("audit_unavailable".into()),
            severity: AuditSeverity::High,
            ip: None,
            details: Some(
                serde_json::json!({
                    "since": since.to_rfc3339(),
                    "outage_secs": (secs * 10.0).round() / 10.0,
                    "refused_requests": refused,
                })
                .to_string(),
            ),
        });
        if let Some(repo) = audit {
            if repo.append_batch(rows).await.is_ok() {
                stats
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                rows.clear();
            }
        }
        // If that failed, the event waits for the next batch like any other row.
    }
}

/// One attempt: security events first (each removed once stored), then the audit rows
/// (cleared once stored).
async fn write_once(
    audit: Option<&dyn AuditRepository>,
    events: Option<&dyn SecurityEventRepository>,
    rows: &mut Vec<AuditEvent>,
    others: &mut Vec<Record>,
    stats: &AuditStats,
) -> Result<(), RepoError> {
    match events {
        Some(repo) => {
            while let Some(r) = others.first() {
                write_event(repo, r).await?;
                others.remove(0);
            }
        }
        None => others.clear(),
    }
    if rows.is_empty() {
        return Ok(());
    }
    if let Some(repo) = audit {
        repo.append_batch(rows).await?;
        stats
            .written
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
    }
    rows.clear();
    Ok(())
}

async fn write_event(repo: &dyn SecurityEventRepository, r: &Record) -> Result<(), RepoError> {
    match r {
        Record::Intrusion(e) => repo.insert_intrusion(e).await.map(drop),
        Record::Anomaly(e) => repo.insert_anomaly(e).await.map(drop),
        Record::Resource(e) => repo.insert_resource_alert(e).await.map(drop),
        Record::Audit(_) | Record::Flush(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use sqlx::{ConnectOptions, Connection};

    use super::*;

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            request_id: format!("req-{i}"),
            api_key_id: None,
            endpoint: "/v1/models".into(),
            status: 200,
            latency_ms: Some(1),
            created_at: Utc::now(),
            event_type: Some("auth_success".into()),
            severity: AuditSeverity::Low,
            ip: Some("127.0.0.1".into()),
            details: None,
        }
    }

    /// The writer is stalled by another process's write lock (within the busy
    /// timeout): the queue fills, new requests get `503 resource_throttle`, nothing is
    /// dropped, and every record is written once the lock goes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_with_503_and_loses_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = flm_store::Store::open(&flm_store::StorePaths::in_dir(dir.path()))
            .await
            .unwrap();
        let mut lock = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("security.db"))
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .unwrap();
        let sink = AuditSink::new();
        sink.start(Some(store.audit()), None);
        assert!(sink.refusal().is_none());
        let mut sent = 0;
        while !sink.is_full() {
            assert!(sent < QUEUE_CAPACITY + 2 * BATCH, "the queue never filled");
            sink.send(Record::Audit(event(sent)));
            sent += 1;
            if sent % BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
        let resp = sink.refusal().expect("a full queue refuses");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(resp.extensions().get::<Unrecorded>().is_some());
        // The error body is rendered from this by the proxy's middleware.
        let err = resp.extensions().get::<ApiError>().expect("an API error");
        assert_eq!(err.code, "resource_throttle");
        assert_eq!(sink.stats.shed.load(Ordering::SeqCst), 1);
        assert_eq!(sink.stats.dropped.load(Ordering::SeqCst), 0);

        sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
        lock.close().await.unwrap();
        sink.flush(Duration::from_secs(20)).await;
        assert_eq!(sink.stats.written.load(Ordering::SeqCst), sent as u64);
        assert_eq!(sink.stats.dropped.load(Ordering::SeqCst), 0);
        assert!(sink.refusal().is_none());
        let report = store.audit().verify().await.unwrap();
        assert!(
            report.ok && report.rows_checked == sent as u64,
            "{report:?}"
        );
        store.close().await;
    }
}
