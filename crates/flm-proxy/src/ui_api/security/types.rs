//! Response bodies of the security endpoints (the shapes of the app's
//! `ui/src/api/types.ts`, snake_case as serialised).

use flm_core::key_scope::RouteClass;
use flm_core::services::BlockKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An API key, never its secret.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyView {
    pub id: String,
    pub label: String,
    pub created_at: String,
    /// Not recorded by the store: always `null`.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Model ids or glob patterns the key may use; `null`: every model.
    pub models: Option<Vec<String>>,
    /// Route classes the key may call; `null`: every route.
    pub routes: Option<Vec<RouteClass>>,
    /// When the key stops working; `null`: never.
    pub expires_at: Option<String>,
    /// Whether the key is past its expiry.
    pub expired: bool,
    /// Tokens per minute; `null`: no limit.
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC); `null`: no limit.
    pub monthly_tokens: Option<u64>,
}

/// `GET /keys`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// `POST /keys`: the secret, shown once.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyCreated {
    pub key: KeyView,
    pub secret: String,
}

/// `POST /keys/{id}/rotate`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyRotated {
    pub key: KeyView,
    pub secret: String,
    pub revoked_id: String,
}

/// `GET|PUT /security/policy`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PolicyView {
    /// `null` when no policy is stored.
    pub policy: Option<Value>,
    pub updated_at: Option<String>,
    /// Why the stored text is not a JSON document, if it is not.
    pub problem: Option<String>,
}

/// One allow-list entry.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AllowEntryView {
    pub entry: String,
    /// The policy stores no dates: always `null`.
    pub added_at: Option<String>,
}

/// `GET|POST|DELETE /security/allowlist`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AllowList {
    pub entries: Vec<AllowEntryView>,
}

/// One blocklist row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BlockList {
    pub entries: Vec<BlockView>,
}

/// `POST /security/blocklist/clear-temporary`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Cleared {
    pub cleared: u64,
}

/// A keyset page: `next_cursor` is `null` at the end.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct VerifyView {
    pub ok: bool,
    pub checked: u64,
    pub first_bad_id: Option<i64>,
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// requests
// ---------------------------------------------------------------------------------------

/// `POST /keys`.
#[derive(Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreateKeyRequest {
    pub label: String,
    /// Model ids or glob patterns (`*`, `?`); absent or `null`: every model.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub models: Option<Vec<String>>,
    /// Route classes; absent or `null`: every route.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub routes: Option<Vec<RouteClass>>,
    /// Lifetime such as `30d`, `12h`, `90m`, `45s`; absent or `null`: never expires.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub expires_in: Option<String>,
    /// Tokens per minute; absent or `null`: no limit.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC); absent or `null`: no limit.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub monthly_tokens: Option<u64>,
}

/// `PUT /security/policy`: the whole policy document.
#[derive(Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PutPolicyRequest {
    pub policy: Value,
}

/// `POST /security/allowlist`: an address or CIDR range.
#[derive(Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AllowEntryRequest {
    pub entry: String,
}

/// `POST /security/blocklist`: `duration_secs` `null` = permanent; the reason goes to
/// the daemon log.
#[derive(Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BlockRequest {
    pub ip: String,
    #[serde(default)]
    pub duration_secs: Option<i64>,
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub reason: Option<String>,
}

/// Query of `GET /security/audit` and `/security/audit/export` (empty = no filter).
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
pub struct AuditParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub event_type: Option<String>,
    pub severity: Option<String>,
    pub ip: Option<String>,
    pub key_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub format: Option<String>,
}

/// Query of `GET /security/intrusions` and `/security/anomalies`.
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
pub struct EventParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub ip: Option<String>,
    pub pattern: Option<String>,
    pub anomaly_type: Option<String>,
    pub min_score: Option<i64>,
    pub since: Option<String>,
    pub until: Option<String>,
}
