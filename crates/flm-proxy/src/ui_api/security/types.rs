//! Response bodies of the security endpoints (the shapes of the app's
//! `ui/src/api/types.ts`, snake_case as serialised).

use flm_core::services::BlockKind;
use serde::Serialize;
use serde_json::Value;

/// An API key, never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub id: String,
    pub label: String,
    pub created_at: String,
    /// Not recorded by the store: always `null`.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// `GET /keys`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// `POST /keys`: the secret, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCreated {
    pub key: KeyView,
    pub secret: String,
}

/// `POST /keys/{id}/rotate`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRotated {
    pub key: KeyView,
    pub secret: String,
    pub revoked_id: String,
}

/// `GET|PUT /security/policy`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// `null` when no policy is stored.
    pub policy: Option<Value>,
    pub updated_at: Option<String>,
    /// Why the stored text is not a JSON document, if it is not.
    pub problem: Option<String>,
}

/// One allow-list entry.
#[derive(Debug, Clone, Serialize)]
pub struct AllowEntryView {
    pub entry: String,
    /// The policy stores no dates: always `null`.
    pub added_at: Option<String>,
}

/// `GET|POST|DELETE /security/allowlist`.
#[derive(Debug, Clone, Serialize)]
pub struct AllowList {
    pub entries: Vec<AllowEntryView>,
}

/// One blocklist row.
#[derive(Debug, Clone, Serialize)]
pub struct BlockView {
    pub ip: String,
    pub kind: BlockKind,
    pub blocked_until: Option<String>,
    pub failure_count: u32,
    /// Not recorded by the store: always `null`.
    pub reason: Option<String>,
    pub first_failure_at: Option<String>,
    pub last_failure_at: Option<String>,
}

/// `GET /security/blocklist`.
#[derive(Debug, Clone, Serialize)]
pub struct BlockList {
    pub entries: Vec<BlockView>,
}

/// `POST /security/blocklist/clear-temporary`.
#[derive(Debug, Clone, Serialize)]
pub struct Cleared {
    pub cleared: u64,
}

/// A keyset page: `next_cursor` is `null` at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    /// `request` for plain server-error rows (no event type stored).
    pub event_type: String,
    pub severity: String,
    pub ip: Option<String>,
    pub key_id: Option<String>,
    pub method: Option<String>,
    pub endpoint: Option<String>,
    pub status: Option<i64>,
    pub latency_ms: Option<i64>,
    pub request_id: Option<String>,
    pub details: Option<Value>,
}

/// One intrusion attempt.
#[derive(Debug, Clone, Serialize)]
pub struct IntrusionView {
    /// `int_<16 hex>`.
    pub id: String,
    pub at: String,
    pub ip: String,
    pub pattern: String,
    pub score: i64,
    pub method: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    /// Not recorded for intrusions: always `null`.
    pub request_id: Option<String>,
}

/// One anomaly.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyView {
    /// `ano_<16 hex>`.
    pub id: String,
    pub at: String,
    pub ip: String,
    pub kind: String,
    pub score: i64,
    pub details: Option<Value>,
}

/// `POST /security/audit/verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyView {
    pub ok: bool,
    pub checked: u64,
    pub first_bad_id: Option<i64>,
    pub message: String,
}
