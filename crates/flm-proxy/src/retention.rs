//! Automatic audit retention (spec 40-security §12.3; docs/guides/audit.md).
//!
//! While a proxy runs, one task checks the audit log every [`RetentionTiming::every`]
//! (first shortly after start):
//!
//! - rows older than `audit.retention_days` (7) move into compressed archive files in
//!   `<data dir>/archive` ([`AuditRepository::archive`]); `flm security audit-logs
//!   verify` still checks them;
//! - above `audit.max_db_mb` (2048) of pages in use, the oldest rows move early;
//! - below `audit.min_free_disk_mb` (1024) of free space on the database's file system
//!   it warns: a log line, an audit event `disk_space_low` (once per episode, and once
//!   an hour while it lasts), and `flm check` shows the same warning.
//!
//! Settings are read on every pass, so `flm config set` applies without a restart.
//! Nothing here is on the request path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use flm_core::security::{ArchiveSelection, AuditEvent, AuditRepository, AuditSeverity};
use flm_core::services::ConfigService;
use tokio::sync::watch;

/// When the retention task runs.
#[derive(Debug, Clone, Copy)]
pub struct RetentionTiming {
    /// Delay before the first pass (lets the proxy finish starting).
    pub first: Duration,
    /// Pause between passes.
    pub every: Duration,
}

impl Default for RetentionTiming {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            every: Duration::from_secs(60),
        }
    }
}

/// A low-disk warning is repeated at most this often while it lasts.
const WARN_AGAIN: Duration = Duration::from_secs(3600);

const MIB: u64 = 1024 * 1024;

async fn setting(config: &ConfigService, key: &str, default: u64) -> u64 {
    match config.get(key).await {
        Ok(e) => e.value.parse().unwrap_or(default),
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot read a setting; using its default");
            default
        }
    }
}

/// Runs until `shutdown` turns true.
pub(crate) async fn run(
    audit: Arc<dyn AuditRepository>,
    config: ConfigService,
    archive_dir: PathBuf,
    timing: RetentionTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = timing.first;
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        pause = timing.every;
        pass(audit.as_ref(), &config, &archive_dir, &mut warned).await;
    }
}

async fn pass(
    audit: &dyn AuditRepository,
    config: &ConfigService,
    archive_dir: &std::path::Path,
    warned: &mut Option<Instant>,
) {
    let days = setting(config, "audit.retention_days", 7).await;
    let cap_mb = setting(config, "audit.max_db_mb", 2048).await;
    let min_free_mb = setting(config, "audit.min_free_disk_mb", 1024).await;
    let selection = ArchiveSelection {
        older_than: Some(Utc::now() - chrono::Duration::days(i64::try_from(days).unwrap_or(7))),
        max_db_bytes: (cap_mb > 0).then(|| cap_mb.saturating_mul(MIB)),
    };
    match audit.archive(&selection, archive_dir).await {
        Ok(r) if r.rows_archived > 0 => tracing::info!(
            rows = r.rows_archived,
            files = r.files.len(),
            archived_through_id = r.archived_through_id.unwrap_or(0),
            dir = %archive_dir.display(),
            "audit retention: archived old audit events"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "audit retention: archiving failed; retrying on the next pass")
        }
    }

    let storage = match audit.storage().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "audit retention: cannot measure the database");
            return;
        }
    };
    let Some(free) = storage.disk_free_bytes else {
        return;
    };
    let threshold = min_free_mb.saturating_mul(MIB);
    if free >= threshold {
        if warned.take().is_some() {
            tracing::info!(
                free_mb = free / MIB,
                "free disk space for security.db is back above the warning threshold"
            );
        }
        return;
    }
    if warned.is_some_and(|t| t.elapsed() < WARN_AGAIN) {
        return;
    }
    *warned = Some(Instant::now());
    tracing::warn!(
        free_mb = free / MIB,
        threshold_mb = min_free_mb,
        db_used_mb = storage.db_used_bytes / MIB,
        "disk space for security.db is low: when it runs out the proxy refuses requests (503 audit_unavailable); free space or lower audit.retention_days / audit.max_db_mb"
    );
    let details = serde_json::json!({
        "free_bytes": free,
        "total_bytes": storage.disk_total_bytes,
        "threshold_bytes": threshold,
        "db_used_bytes": storage.db_used_bytes,
        "live_rows": storage.live_rows,
    });
    let event = AuditEvent {
        request_id: String::new(),
        api_key_id: None,
        endpoint: "-".into(),
        status: 0,
        latency_ms: None,
        created_at: Utc::now(),
        event_type: Some("disk_space_low".into()),
        severity: AuditSeverity::High,
        ip: None,
        details: Some(details.to_string()),
    };
    if let Err(e) = audit.append_batch(&[event]).await {
        tracing::warn!(error = %e, "cannot record the low-disk event");
    }
}
