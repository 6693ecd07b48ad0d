//! The audit writer (DESIGN.md §3.5): requests and security events go into a bounded
//! queue; one task drains it and writes batches, so the request path never waits on
//! the disk.
//!
//! When the queue is full the proxy sheds new requests with `503` before doing any
//! work for them ([`AuditSink::is_full`]), so records are not lost silently; an event
//! that still finds the queue full (a race between that check and the send) is counted
//! in [`AuditStats::dropped`] and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flm_core::security::{
    AuditEvent, AuditRepository, NewAnomaly, NewIntrusion, NewResourceAlert,
    SecurityEventRepository,
};
use tokio::sync::{mpsc, oneshot};

/// Records waiting at most. At ~300 bytes each this bounds the queue to a few MiB.
pub const QUEUE_CAPACITY: usize = 8192;
/// Rows written per transaction at most.
const BATCH: usize = 512;
/// Under light load the writer waits this long after the first record of a batch:
/// one transaction and one task wake-up per request would add latency to every
/// request on a small machine. Records become visible (and flushes are acknowledged)
/// at most this much later.
const LINGER: Duration = Duration::from_millis(100);
/// Attempts per batch before it is counted as lost (the database may be busy).
const WRITE_ATTEMPTS: u32 = 3;

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
    /// Records that found the queue full after all, or that the database refused
    /// three times.
    pub dropped: AtomicU64,
}

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
                other => {
                    if let Some(ev) = &events {
                        write_event(ev.as_ref(), other, &stats).await;
                    }
                }
            }
        }
        if !rows.is_empty() {
            if let Some(repo) = &audit {
                write_rows(repo.as_ref(), &rows, &stats).await;
            }
            rows.clear();
        }
        for a in acks {
            let _ = a.send(());
        }
    }
}

async fn write_rows(repo: &dyn AuditRepository, rows: &[AuditEvent], stats: &AuditStats) {
    for attempt in 1..=WRITE_ATTEMPTS {
        match repo.append_batch(rows).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, rows = rows.len(), "audit write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => {
                stats
                    .dropped
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, rows = rows.len(), "audit rows could not be written");
            }
        }
    }
}

async fn write_event(repo: &dyn SecurityEventRepository, r: Record, stats: &AuditStats) {
    let result = match &r {
        Record::Intrusion(e) => repo.insert_intrusion(e).await.map(drop),
        Record::Anomaly(e) => repo.insert_anomaly(e).await.map(drop),
        Record::Resource(e) => repo.insert_resource_alert(e).await.map(drop),
        Record::Audit(_) | Record::Flush(_) => Ok(()),
    };
    if let Err(e) = result {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, record = kind(&r), "security event could not be written");
    }
}
