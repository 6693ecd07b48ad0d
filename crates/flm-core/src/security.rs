//! Security storage: the repository ports of `security.db` and their plain data types.
//!
//! Everything here is storage-shaped (rows, filters, reports); the decisions — when to
//! block, how to score, what a valid policy is — live elsewhere (`flm-guard`, the
//! proxy). Adapters (`flm-store`) implement the traits; composition roots hand them
//! around as `Arc<dyn Trait>`.
//!
//! ## The audit hash chain
//!
//! Audit rows are tamper-evident (spec 40-security §12.3): every row stores
//! `prev_hash` (the `hash` of the row before it; [`AUDIT_GENESIS_HASH`] for the very
//! first row) and `hash = lower_hex(SHA-256(prev_hash ‖ canonical))`, where `prev_hash`
//! is its 64 ASCII hex characters and `canonical` is the compact JSON array
//!
//! ```text
//! [id, request_id, api_key_id, endpoint, status, latency_ms, created_at,
//!  event_type, severity, ip, details]
//! ```
//!
//! with every value exactly as stored (integers as JSON numbers, text as JSON strings,
//! NULL as `null`, `created_at` as its stored RFC 3339 text). [`AuditRow::compute_hash`]
//! implements it, so an exported row set (JSON) or an archive file can be re-verified
//! by anyone. Editing a field breaks that row's hash; deleting a row breaks the next
//! row's `prev_hash` and leaves an id gap; truncating the tail is caught by the chain
//! head the store keeps beside the table. The chain is unkeyed: it detects accidental
//! or naive tampering, not someone who rewrites every later row *and* the head.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RepoError;

/// `prev_hash` of the first audit row ever written: 64 zeros.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// The stored security policy (`security_policies`, id `default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The policy document as stored (spec 40-security §3); not validated on read.
    pub policy_json: String,
    /// Last change; polled for hot reload. Strictly increases with every save.
    pub updated_at: DateTime<Utc>,
}

/// The global security policy (`security.db` → `security_policies`).
#[async_trait]
pub trait PolicyRepository: Send + Sync {
    /// The `default` policy row, if it exists. The caller fails closed on `None`.
    async fn load(&self) -> Result<Option<StoredPolicy>, RepoError>;
    /// Replaces the whole document in one statement (creating the row if missing) and
    /// returns the new `updated_at`. The caller validates `policy_json` first.
    async fn save(&self, policy_json: &str) -> Result<DateTime<Utc>, RepoError>;
}

// ---------------------------------------------------------------------------------------
// IP blocklist
// ---------------------------------------------------------------------------------------

/// One IP's record in `ip_blocklist` (spec 40-security §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRow {
    /// Client address (text, as the guard formats it).
    pub ip: String,
    /// Failures counted for the IP.
    pub failure_count: u32,
    /// First failure of the current window.
    pub first_failure_at: DateTime<Utc>,
    /// End of the current or last temporary block.
    pub blocked_until: Option<DateTime<Utc>>,
    /// Permanent block: released only by `flm security ip-blocklist unblock`.
    pub permanent: bool,
    /// Last failure or refused attempt.
    pub last_attempt: DateTime<Utc>,
}

/// The persisted IP blocklist (`security.db` → `ip_blocklist`).
#[async_trait]
pub trait BlocklistRepository: Send + Sync {
    /// Every row, ordered by IP.
    async fn load_all(&self) -> Result<Vec<BlockRow>, RepoError>;
    /// Inserts or replaces each row (by IP), all in one transaction.
    async fn upsert_many(&self, rows: &[BlockRow]) -> Result<(), RepoError>;
    /// Removes one IP (temporary or permanent); returns whether it was listed.
    async fn remove(&self, ip: &str) -> Result<bool, RepoError>;
    /// Removes every non-permanent row; returns how many.
    async fn clear_temporary(&self) -> Result<u64, RepoError>;
}

// ---------------------------------------------------------------------------------------
// Intrusion attempts, anomalies, resource alerts
// ---------------------------------------------------------------------------------------

/// A scored request to record in `intrusion_attempts` (spec 40-security §7, §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIntrusion {
    /// Client address.
    pub ip: String,
    /// Pattern name (`sql_injection`, `path_traversal`, `honeypot_access`…).
    pub pattern: String,
    /// Points added by this request.
    pub score: i64,
    /// Request path (never the body).
    pub request_path: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A stored intrusion attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntrusionRow {
    /// Generated id (`int_<16 hex>`).
    pub id: String,
    /// Client address.
    pub ip: String,
    /// Pattern name.
    pub pattern: String,
    /// Points added.
    pub score: i64,
    /// Request path.
    pub request_path: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// Filter of `flm security intrusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntrusionFilter {
    /// Only this client address.
    pub ip: Option<String>,
    /// Only rows with at least this score.
    pub min_score: Option<i64>,
    /// Page size (CLI default 100).
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

impl Default for IntrusionFilter {
    fn default() -> Self {
        Self {
            ip: None,
            min_score: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// A detected anomaly to record in `anomaly_detections` (spec 40-security §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAnomaly {
    /// Client address.
    pub ip: String,
    /// Anomaly kind (`request_flood`, `oversized_body`…).
    pub anomaly_type: String,
    /// Points added.
    pub score: i64,
    /// JSON text with the specifics.
    pub details: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A stored anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyRow {
    /// Generated id (`ano_<16 hex>`).
    pub id: String,
    /// Client address.
    pub ip: String,
    /// Anomaly kind.
    pub anomaly_type: String,
    /// Points added.
    pub score: i64,
    /// JSON text with the specifics.
    pub details: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// Filter of `flm security anomaly`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyFilter {
    /// Only this client address.
    pub ip: Option<String>,
    /// Only this anomaly kind.
    pub anomaly_type: Option<String>,
    /// Page size (CLI default 100).
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

impl Default for AnomalyFilter {
    fn default() -> Self {
        Self {
            ip: None,
            anomaly_type: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// What a resource alert is about (`resource_alerts.alert_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceAlertKind {
    /// CPU usage, percent.
    Cpu,
    /// Memory usage, percent.
    Memory,
    /// Concurrent connections.
    Connections,
}

impl ResourceAlertKind {
    /// The stored name: `cpu`, `memory` or `connections`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceAlertKind::Cpu => "cpu",
            ResourceAlertKind::Memory => "memory",
            ResourceAlertKind::Connections => "connections",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(ResourceAlertKind::Cpu),
            "memory" => Some(ResourceAlertKind::Memory),
            "connections" => Some(ResourceAlertKind::Connections),
            _ => None,
        }
    }
}

/// A resource alert to record in `resource_alerts` (spec 40-security §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewResourceAlert {
    /// What crossed its threshold.
    pub alert_type: ResourceAlertKind,
    /// Measured value.
    pub value: f64,
    /// Threshold it crossed.
    pub threshold: f64,
    /// When it was measured.
    pub created_at: DateTime<Utc>,
}

/// A stored resource alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceAlertRow {
    /// Generated id (`res_<16 hex>`).
    pub id: String,
    /// What crossed its threshold.
    pub alert_type: ResourceAlertKind,
    /// Measured value.
    pub value: f64,
    /// Threshold it crossed.
    pub threshold: f64,
    /// When it was measured.
    pub created_at: DateTime<Utc>,
}

/// Intrusion attempts, anomaly detections and resource alerts (`security.db`).
/// Lists are newest first.
#[async_trait]
pub trait SecurityEventRepository: Send + Sync {
    /// Stores an intrusion attempt; returns its generated id.
    async fn insert_intrusion(&self, event: &NewIntrusion) -> Result<String, RepoError>;
    /// Stores an anomaly; returns its generated id.
    async fn insert_anomaly(&self, event: &NewAnomaly) -> Result<String, RepoError>;
    /// Stores a resource alert; returns its generated id.
    async fn insert_resource_alert(&self, event: &NewResourceAlert) -> Result<String, RepoError>;
    /// A page of intrusion attempts, newest first.
    async fn list_intrusions(
        &self,
        filter: &IntrusionFilter,
    ) -> Result<Vec<IntrusionRow>, RepoError>;
    /// A page of anomalies, newest first.
    async fn list_anomalies(&self, filter: &AnomalyFilter) -> Result<Vec<AnomalyRow>, RepoError>;
    /// A page of resource alerts, newest first.
    async fn list_resource_alerts(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ResourceAlertRow>, RepoError>;
    /// A keyset page of intrusion attempts, newest first (`kind` = pattern).
    async fn intrusion_page(&self, q: &EventPageQuery) -> Result<Vec<IntrusionRow>, RepoError>;
    /// A keyset page of anomalies, newest first (`kind` = anomaly type).
    async fn anomaly_page(&self, q: &EventPageQuery) -> Result<Vec<AnomalyRow>, RepoError>;
    /// How many intrusion attempts and anomalies were recorded at or after `since`.
    async fn count_since(&self, since: DateTime<Utc>) -> Result<(u64, u64), RepoError>;
    /// Deletes intrusion, anomaly and resource-alert rows created before `cutoff`
    /// (these are detection data, not the audit log); returns how many.
    async fn prune_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError>;
}

/// Where the previous page of intrusion attempts or anomalies ended: the last row
/// shown. The next page holds the rows after it in the list order (newest first,
/// ties in insertion order, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCursor {
    /// `created_at` of the last row shown.
    pub created_at: DateTime<Utc>,
    /// Id of the last row shown.
    pub id: String,
}

/// A keyset page request of the app's intrusion and anomaly views.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPageQuery {
    /// Only this client address.
    pub ip: Option<String>,
    /// Only this kind: the pattern of an intrusion, the type of an anomaly.
    pub kind: Option<String>,
    /// Only rows with at least this score.
    pub min_score: Option<i64>,
    /// Only rows created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this row (`None`: from the newest).
    pub after: Option<EventCursor>,
    /// Rows at most.
    pub limit: u32,
}

// ---------------------------------------------------------------------------------------
// Rate-limit windows
// ---------------------------------------------------------------------------------------

/// A persisted rate-limit window (`rate_limit_states`, spec 40-security §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitStateRow {
    /// `api_key_id`, or `ip:<address>` for per-IP windows. Serialised as `api_key_id`
    /// like the column and the CLI output.
    #[serde(rename = "api_key_id")]
    pub key: String,
    /// Requests counted in the window.
    pub requests_count: i64,
    /// When the window resets.
    pub reset_at: DateTime<Utc>,
}

/// Rate-limit windows that survive restarts (`security.db` → `rate_limit_states`).
#[async_trait]
pub trait RateLimitStateRepository: Send + Sync {
    /// Inserts or replaces each row (by key), all in one transaction.
    async fn upsert_many(&self, rows: &[RateLimitStateRow]) -> Result<(), RepoError>;
    /// Every row, ordered by key.
    async fn load_all(&self) -> Result<Vec<RateLimitStateRow>, RepoError>;
    /// Deletes rows whose window reset before `before`; returns how many.
    async fn delete_expired(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
}

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// How a certificate was obtained (`certificates.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CertificateMode {
    /// Issued by an ACME CA.
    #[serde(rename = "acme")]
    Acme,
    /// Self-signed (`dev-selfsigned`).
    #[serde(rename = "self-signed")]
    SelfSigned,
    /// Signed by the packaged root CA.
    #[serde(rename = "packaged-ca")]
    PackagedCa,
}

impl CertificateMode {
    /// The stored name: `acme`, `self-signed` or `packaged-ca`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateMode::Acme => "acme",
            CertificateMode::SelfSigned => "self-signed",
            CertificateMode::PackagedCa => "packaged-ca",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "acme" => Some(CertificateMode::Acme),
            "self-signed" => Some(CertificateMode::SelfSigned),
            "packaged-ca" => Some(CertificateMode::PackagedCa),
            _ => None,
        }
    }
}

/// Certificate metadata (`certificates`); the PEM files stay on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRow {
    /// Caller-chosen id (e.g. the domain or the mode).
    pub id: String,
    /// Certificate chain file.
    pub cert_path: String,
    /// Private key file.
    pub key_path: String,
    /// How it was obtained.
    pub mode: CertificateMode,
    /// Domain it is for.
    pub domain: Option<String>,
    /// `notAfter`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Certificate metadata (`security.db` → `certificates`).
#[async_trait]
pub trait CertificateRepository: Send + Sync {
    /// Inserts or replaces the row with this id.
    async fn upsert(&self, row: &CertificateRow) -> Result<(), RepoError>;
    /// Every row, ordered by id.
    async fn list(&self) -> Result<Vec<CertificateRow>, RepoError>;
}

// ---------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------

/// Severity of an audit event (spec 40-security §12.2).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSeverity {
    /// Routine (successful requests).
    Low,
    /// Worth a look (auth failures, anomalies, honeypot hits).
    Medium,
    /// Acted upon (blocks, intrusions, resource alerts, 5xx).
    High,
    /// Needs attention now.
    Critical,
}

impl AuditSeverity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSeverity::Low => "low",
            AuditSeverity::Medium => "medium",
            AuditSeverity::High => "high",
            AuditSeverity::Critical => "critical",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(AuditSeverity::Low),
            "medium" => Some(AuditSeverity::Medium),
            "high" => Some(AuditSeverity::High),
            "critical" => Some(AuditSeverity::Critical),
            _ => None,
        }
    }
}

/// An audit event to append (spec 40-security §12.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Request id (correlates with the JSON log lines).
    pub request_id: String,
    /// Authenticated key id, if any (never the key itself).
    pub api_key_id: Option<String>,
    /// Request path or logical endpoint.
    pub endpoint: String,
    /// HTTP status.
    pub status: u16,
    /// Total latency.
    pub latency_ms: Option<u64>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// `auth_success`, `auth_failure`, `ip_blocked`, `intrusion`…; `None` for plain
    /// server errors.
    pub event_type: Option<String>,
    /// Severity.
    pub severity: AuditSeverity,
    /// Client address.
    pub ip: Option<String>,
    /// JSON text (reason, scores, engine id, error type…). Stored as given.
    pub details: Option<String>,
}

/// An audit row exactly as stored, with its chain hashes. `created_at` and `severity`
/// stay text so that the row can be re-hashed byte for byte ([`AuditRow::compute_hash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Sequence number (1, 2, 3… without gaps in the chain).
    pub id: i64,
    /// Request id.
    pub request_id: String,
    /// Key id.
    pub api_key_id: Option<String>,
    /// Endpoint.
    pub endpoint: String,
    /// HTTP status.
    pub status: i64,
    /// Latency.
    pub latency_ms: Option<i64>,
    /// Stored RFC 3339 text (`2026-11-25T10:00:00.123Z`).
    pub created_at: String,
    /// Event type.
    pub event_type: Option<String>,
    /// Stored severity name.
    pub severity: String,
    /// Client address.
    pub ip: Option<String>,
    /// JSON text.
    pub details: Option<String>,
    /// Hash of the previous row ([`AUDIT_GENESIS_HASH`] for the first row ever).
    pub prev_hash: String,
    /// `SHA-256(prev_hash ‖ canonical)` as 64 lower-case hex characters.
    pub hash: String,
}

impl AuditRow {
    /// The canonical serialisation covered by the hash (see the module docs).
    pub fn canonical(&self) -> String {
        // A tuple serialises as the same compact JSON array as `json!([..])` would,
        // without copying every field into a `Value` first (this runs once per
        // request on the audit writer).
        serde_json::to_string(&(
            self.id,
            &self.request_id,
            &self.api_key_id,
            &self.endpoint,
            self.status,
            self.latency_ms,
            &self.created_at,
            &self.event_type,
            &self.severity,
            &self.ip,
            &self.details,
        ))
        .unwrap_or_default()
    }

    /// `lower_hex(SHA-256(prev_hash ‖ canonical))` from this row's `prev_hash` and fields
    /// (ignores the stored `hash`).
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical().as_bytes());
        hex::encode(h.finalize())
    }
}

/// Columns of an audit export in CSV, in [`AuditRow::csv_record`] order.
pub const AUDIT_CSV_COLUMNS: [&str; 13] = [
    "id",
    "request_id",
    "api_key_id",
    "endpoint",
    "status",
    "latency_ms",
    "created_at",
    "event_type",
    "severity",
    "ip",
    "details",
    "prev_hash",
    "hash",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, quote, CR/LF or edge
/// spaces; quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The CSV header line of an audit export, with its CRLF.
pub fn audit_csv_header() -> String {
    let mut out = AUDIT_CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    out
}

impl AuditRow {
    /// The row as one CSV record of [`AUDIT_CSV_COLUMNS`], with its CRLF.
    pub fn csv_record(&self) -> String {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let cells = [
            self.id.to_string(),
            self.request_id.clone(),
            o(&self.api_key_id),
            self.endpoint.clone(),
            self.status.to_string(),
            self.latency_ms.map(|v| v.to_string()).unwrap_or_default(),
            self.created_at.clone(),
            o(&self.event_type),
            self.severity.clone(),
            o(&self.ip),
            o(&self.details),
            self.prev_hash.clone(),
            self.hash.clone(),
        ];
        let mut out = cells
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",");
        out.push_str("\r\n");
        out
    }
}

/// Filter of `flm security audit-logs` and of exports. All conditions are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Only this severity.
    pub severity: Option<AuditSeverity>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this client address.
    pub ip: Option<String>,
    /// Only rows created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Page size: `list` defaults to 100, `export` to everything.
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: u32,
}

/// What the app's audit view asks for: the filters of `flm security audit-logs`, a key
/// id and a text search. All conditions are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this severity.
    pub severity: Option<AuditSeverity>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this client address.
    pub ip: Option<String>,
    /// Only this key id.
    pub api_key_id: Option<String>,
    /// Only rows created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only rows whose endpoint, request id or client address contains this text
    /// (case-insensitive for ASCII).
    pub text: Option<String>,
}

/// Direction of an audit page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditDirection {
    /// Newest first, rows with ids below the cursor (the app's view).
    #[default]
    NewestFirst,
    /// Oldest first, rows with ids above the cursor (exports).
    OldestFirst,
}

/// A keyset page request over the live audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPageRequest {
    /// Which rows.
    pub query: AuditQuery,
    /// Order, and on which side of `cursor` the page lies.
    pub direction: AuditDirection,
    /// Exclusive id bound (`None`: from the newest, or the oldest, row).
    pub cursor: Option<i64>,
    /// Rows at most.
    pub limit: u32,
}

/// One keyset page of audit rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The rows, in the requested order.
    pub rows: Vec<AuditRow>,
    /// Where the next page starts (exclusive id bound), `None` at the end. A text or
    /// key-id search (or severity and event type together) without an address reads
    /// a bounded id range per page, so a page can hold fewer rows than asked for (even
    /// none) and still have a next one.
    pub next_cursor: Option<i64>,
}

/// Result of verifying an audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Rows examined (verification stops at the first problem).
    pub rows_checked: u64,
    /// Whether the chain is intact.
    pub ok: bool,
    /// The first row found wrong (for missing rows: the first missing id).
    pub first_bad_id: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
}

/// Which audit rows an archive run moves out of the live table. Rows always leave as
/// the oldest contiguous run (the live chain keeps one start); a row goes when either
/// condition selects it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSelection {
    /// Rows created before this time (the spec's retention: 7 days).
    pub older_than: Option<DateTime<Utc>>,
    /// The size cap: move the oldest rows until the live database holds at most this
    /// many bytes of pages in use (an estimate from the rows' share of the file).
    pub max_db_bytes: Option<u64>,
}

/// Result of moving old audit rows into compressed archive files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Rows moved by this call (0 when nothing was selected).
    pub rows_archived: u64,
    /// Every row up to this id is now archived (`None` if nothing ever was).
    pub archived_through_id: Option<i64>,
    /// Hash of the last archived row: the live chain continues from it.
    pub boundary_hash: String,
    /// The directory of the archive files.
    pub archive_dir: PathBuf,
    /// Archive files written by this call (`audit-<first id>-<last id>.jsonl.gz`).
    pub files: Vec<PathBuf>,
}

/// How much the live audit log and its database hold (for retention and status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStorage {
    /// Rows in the live table.
    pub live_rows: u64,
    /// Bytes of database pages in use (the file minus its free pages).
    pub db_used_bytes: u64,
    /// Every row up to this id is archived (0: none).
    pub archived_through_id: i64,
    /// Archive files recorded so far.
    pub archive_files: u64,
    /// Free bytes (for this user) on the file system of the database, if known.
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system, if known.
    pub disk_total_bytes: Option<u64>,
}

/// The audit log (`security.db` → `audit_logs`), append-only and hash-chained. There
/// is deliberately no delete: rows leave the live table only by archiving.
#[async_trait]
pub trait AuditRepository: Send + Sync {
    /// Appends the events in order, in one transaction, extending the hash chain.
    async fn append_batch(&self, events: &[AuditEvent]) -> Result<(), RepoError>;
    /// A page of rows matching `filter`, newest first (default limit 100).
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, RepoError>;
    /// Rows matching `filter`, oldest first (default: all), with their hashes.
    async fn export(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, RepoError>;
    /// A keyset page of live rows (see [`AuditPage`] for text searches).
    async fn page(&self, request: &AuditPageRequest) -> Result<AuditPage, RepoError>;
    /// How many live rows were created at or after `since`.
    async fn count_since(&self, since: DateTime<Utc>) -> Result<u64, RepoError>;
    /// Verifies the whole chain: every archive file recorded in the store (each must
    /// exist, link to the one before and end at its recorded boundary hash), then the
    /// live table (every hash, every link, no gap, and the stored head).
    async fn verify(&self) -> Result<VerifyReport, RepoError>;
    /// Moves the oldest rows selected by `selection` into new gzip-compressed archive
    /// files in `archive_dir` (created 0700; files 0600). Rows that do not verify are
    /// never moved, so evidence is never moved away.
    async fn archive(
        &self,
        selection: &ArchiveSelection,
        archive_dir: &std::path::Path,
    ) -> Result<ArchiveReport, RepoError>;
    /// Sizes, for the retention task and status.
    async fn storage(&self) -> Result<AuditStorage, RepoError>;
}

// ---------------------------------------------------------------------------------------
// Backups and `flm check`
// ---------------------------------------------------------------------------------------

/// Result of `flm security backup create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The new backup file (`security.db.bak.<yyyymmddThhmmssZ>`).
    #[serde(rename = "backup_path")]
    pub path: PathBuf,
    /// Backups in the directory after rotation (at most 3).
    pub total_backups: usize,
}

/// Result of `flm security backup restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInfo {
    /// The database file that was replaced.
    pub restored_path: PathBuf,
    /// Migrations applied on top of the backup's schema.
    pub migrations_applied: usize,
}

/// Outcome of one check, and of a whole report (the worst of its checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, but deserves attention.
    Warning,
    /// Broken; `flm check` exits 1.
    Error,
}

/// One line of `flm check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    /// Stable name (`security_db.integrity`, `security_db.policy`…).
    pub name: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was found, in words.
    pub message: String,
}

/// Output of `flm check` (spec 20-cli §4.15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Worst status of all checks (`ok` when there are none).
    pub status: CheckStatus,
    /// Every check, in the order run.
    pub checks: Vec<CheckItem>,
}

impl Default for CheckReport {
    fn default() -> Self {
        Self {
            status: CheckStatus::Ok,
            checks: Vec::new(),
        }
    }
}

impl CheckReport {
    /// Adds a check and updates the overall status.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        status: CheckStatus,
        message: impl Into<String>,
    ) {
        self.status = self.status.max(status);
        self.checks.push(CheckItem {
            name: name.into(),
            status,
            message: message.into(),
        });
    }

    /// The check called `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&CheckItem> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            id: 1,
            request_id: "req-1".into(),
            api_key_id: None,
            endpoint: "/v1/chat/completions".into(),
            status: 200,
            latency_ms: Some(12),
            created_at: "2026-11-25T10:00:00.123Z".into(),
            event_type: Some("auth_success".into()),
            severity: "low".into(),
            ip: Some("127.0.0.1".into()),
            details: Some(r#"{"a":"\"x\""}"#.into()),
            prev_hash: AUDIT_GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn canonical_form_and_hash_are_stable() {
        let r = row();
        assert_eq!(
            r.canonical(),
            r#"[1,"req-1",null,"/v1/chat/completions",200,12,"2026-11-25T10:00:00.123Z","auth_success","low","127.0.0.1","{\"a\":\"\\\"x\\\"\"}"]"#
        );
        let h = r.compute_hash();
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Every field is covered, including the link to the previous row.
        let mut other = r.clone();
        other.details = Some("{}".into());
        assert_ne!(other.compute_hash(), h);
        let mut other = r.clone();
        other.prev_hash = "1".repeat(64);
        assert_ne!(other.compute_hash(), h);
        let mut other = r.clone();
        other.id = 2;
        assert_ne!(other.compute_hash(), h);
        // No ambiguity between a NULL and the text "null".
        let mut a = r.clone();
        a.ip = None;
        let mut b = r;
        b.ip = Some("null".into());
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field(r#"{"a":"b"}"#), r#""{""a"":""b""}""#);
        assert_eq!(csv_field("x\ny"), "\"x\ny\"");
        assert_eq!(csv_field(" pad"), "\" pad\"");
        assert_eq!(csv_field(""), "");
        assert!(row().csv_record().ends_with("\r\n"));
        assert!(audit_csv_header().starts_with("id,request_id,"));
    }

    #[test]
    fn names_round_trip_and_report_status_is_the_worst() {
        for s in [
            AuditSeverity::Low,
            AuditSeverity::Medium,
            AuditSeverity::High,
            AuditSeverity::Critical,
        ] {
            assert_eq!(AuditSeverity::parse(s.as_str()), Some(s));
        }
        for m in [
            CertificateMode::Acme,
            CertificateMode::SelfSigned,
            CertificateMode::PackagedCa,
        ] {
            assert_eq!(CertificateMode::parse(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_value(m).ok(),
                Some(serde_json::Value::String(m.as_str().into()))
            );
        }
        for k in [
            ResourceAlertKind::Cpu,
            ResourceAlertKind::Memory,
            ResourceAlertKind::Connections,
        ] {
            assert_eq!(ResourceAlertKind::parse(k.as_str()), Some(k));
        }
        let mut r = CheckReport::default();
        assert_eq!(r.status, CheckStatus::Ok);
        r.push("a", CheckStatus::Warning, "w");
        r.push("b", CheckStatus::Ok, "fine");
        assert_eq!(r.status, CheckStatus::Warning);
        r.push("c", CheckStatus::Error, "bad");
        r.push("d", CheckStatus::Ok, "fine");
        assert_eq!(r.status, CheckStatus::Error);
        assert_eq!(r.get("c").map(|c| c.status), Some(CheckStatus::Error));
        assert_eq!(
            serde_json::to_value(&r)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_owned)),
            Some("error".to_owned())
        );
    }
}

// ---------------------------------------------------------------------------------------
// Dashboard warnings
// ---------------------------------------------------------------------------------------

/// A missing protection the app's dashboard points out, with the app route that fixes it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityWarning {
    /// No active API key: the proxy refuses every client.
    NoApiKey,
    /// No IP allow list while the proxy is reachable from other machines.
    NoAllowList,
    /// No per-key rate limit.
    NoRateLimit,
    /// Listening beyond loopback over plain HTTP.
    ExposedWithoutHttps,
}

impl SecurityWarning {
    /// The app route whose form fixes it.
    pub fn fix_route(self) -> &'static str {
        match self {
            Self::NoApiKey => "/api-setup#keys",
            Self::NoAllowList => "/security/ip-whitelist",
            Self::NoRateLimit => "/api-setup#policy",
            Self::ExposedWithoutHttps => "/setup",
        }
    }
}

/// The facts the warnings are derived from.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExposureFacts {
    /// Active (unrevoked) API keys.
    pub active_keys: usize,
    /// The policy has an IP allow list.
    pub allow_list: bool,
    /// The policy has a per-key rate limit.
    pub rate_limit: bool,
    /// A running proxy listens beyond loopback.
    pub exposed: bool,
    /// Such an exposed proxy serves plain HTTP only.
    pub exposed_plain_http: bool,
}

/// The warnings for these facts, most important first. An allow list matters only
/// once the proxy is reachable from other machines.
pub fn security_warnings(f: &ExposureFacts) -> Vec<SecurityWarning> {
    let mut w = Vec::new();
    if f.active_keys == 0 {
        w.push(SecurityWarning::NoApiKey);
    }
    if f.exposed_plain_http {
        w.push(SecurityWarning::ExposedWithoutHttps);
    }
    if f.exposed && !f.allow_list {
        w.push(SecurityWarning::NoAllowList);
    }
    if !f.rate_limit {
        w.push(SecurityWarning::NoRateLimit);
    }
    w
}

#[cfg(test)]
mod warning_tests {
    use super::*;

    #[test]
    fn warnings_follow_the_facts() {
        let all = security_warnings(&ExposureFacts {
            exposed: true,
            exposed_plain_http: true,
            ..Default::default()
        });
        assert_eq!(
            all,
            vec![
                SecurityWarning::NoApiKey,
                SecurityWarning::ExposedWithoutHttps,
                SecurityWarning::NoAllowList,
                SecurityWarning::NoRateLimit
            ]
        );
        // On loopback an allow list is not needed.
        let local = security_warnings(&ExposureFacts {
            active_keys: 1,
            rate_limit: true,
            ..Default::default()
        });
        assert!(local.is_empty());
        assert_eq!(SecurityWarning::NoApiKey.fix_route(), "/api-setup#keys");
        assert_eq!(
            serde_json::to_value(SecurityWarning::ExposedWithoutHttps).ok(),
            Some(serde_json::json!("exposed_without_https"))
        );
    }
}
