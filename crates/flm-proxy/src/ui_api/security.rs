//! The app's security endpoints (`/api/v1/keys`, `/api/v1/security/*`): keys, the
//! policy and its allow list, the IP blocklist, and the audit log, intrusion and
//! anomaly records with keyset pagination. Handlers translate HTTP to the core
//! services ([`KeyService`], [`SecurityService`]) and back; the rules live there.
//! Authentication (session, CSRF, Host/Origin) is the UI server's guard around this
//! router.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use flm_core::keys::ApiKeyMetadata;
use flm_core::security::{
    audit_csv_header, AnomalyRow, AuditDirection, AuditPageRequest, AuditQuery, AuditRow,
    AuditSeverity, BlockRow, EventCursor, EventPageQuery, IntrusionRow,
};
use flm_core::services::{BlockKind, KeyService, SecurityService, SecuritySummary};
use flm_core::CoreError;
use serde_json::Value;

use super::error::{FieldError, UiError};

mod types;

pub use types::{
    AllowEntryRequest, AllowEntryView, AllowList, AnomalyView, AuditParams, AuditView, BlockList,
    BlockRequest, BlockView, Cleared, CreateKeyRequest, EventParams, IntrusionView, KeyCreated,
    KeyList, KeyRotated, KeyView, Page, PolicyView, PutPolicyRequest, VerifyView,
};

/// A change the app's live views care about; the UI server turns it into an event of
/// `/api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityChange {
    /// A key was created, revoked or rotated.
    Keys,
    /// The policy (or its allow list) was saved.
    Policy,
    /// An address or range was blocked by hand.
    Ban {
        /// Address or CIDR range.
        ip: String,
        /// End of a temporary block.
        until: Option<DateTime<Utc>>,
        /// Blocked until unblocked.
        permanent: bool,
    },
    /// An address or range was unblocked (`ip` = `*` after clearing the temporary
    /// blocks).
    Unblock {
        /// Address or CIDR range.
        ip: String,
    },
}

/// Receives [`SecurityChange`]s.
pub type ChangeSink = Arc<dyn Fn(SecurityChange) + Send + Sync>;

/// What the security endpoints need.
#[derive(Clone)]
pub struct SecurityApiDeps {
    /// API keys.
    pub keys: KeyService,
    /// Policy, allow list, blocklist, audit and detection records.
    pub security: SecurityService,
    /// Told of every change made through these endpoints (live views).
    pub on_change: Option<ChangeSink>,
}

impl SecurityApiDeps {
    /// Deps without a change sink.
    pub fn new(keys: KeyService, security: SecurityService) -> Self {
        Self {
            keys,
            security,
            on_change: None,
        }
    }

    /// The same, telling `sink` of every change.
    #[must_use]
    pub fn with_change_sink(mut self, sink: ChangeSink) -> Self {
        self.on_change = Some(sink);
        self
    }

    fn changed(&self, change: SecurityChange) {
        if let Some(sink) = &self.on_change {
            sink(change);
        }
    }
}

type Deps = State<Arc<SecurityApiDeps>>;

/// The router, paths relative to `/api/v1`, state applied.
pub fn router(deps: SecurityApiDeps) -> Router {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/security/policy", get(get_policy).put(put_policy))
        .route("/security/allowlist", get(allowlist).post(allowlist_add))
        .route("/security/allowlist/{entry}", delete(allowlist_remove))
        .route("/security/blocklist", get(blocklist).post(block))
        .route("/security/blocklist/clear-temporary", post(clear_temporary))
        .route("/security/blocklist/{ip}", delete(unblock))
        .route("/security/audit", get(audit))
        .route("/security/audit/verify", post(verify))
        .route("/security/audit/export", get(export))
        .route("/security/intrusions", get(intrusions))
        .route("/security/anomalies", get(anomalies))
        .route("/security/summary", get(summary))
        .with_state(Arc::new(deps))
}

// ---------------------------------------------------------------------------------------
// errors and extraction
// ---------------------------------------------------------------------------------------

fn core_error(e: CoreError) -> UiError {
    match e {
        CoreError::InvalidPolicy(problems) => UiError::invalid(
            "invalid_policy",
            "the security policy is not valid; nothing was changed",
            problems
                .into_iter()
                .map(|p| FieldError {
                    path: p.field,
                    message: p.message,
                })
                .collect(),
        ),
        other => other.into(),
    }
}

fn field(code: &'static str, path: &str, message: impl Into<String>) -> UiError {
    let message = message.into();
    UiError::invalid(
        code,
        message.clone(),
        vec![FieldError {
            path: path.to_owned(),
            message,
        }],
    )
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, UiError> {
    r.map(|Json(v)| v)
        .map_err(|e| UiError::bad_request("invalid_body", e.body_text()))
}

fn query<T>(r: Result<Query<T>, QueryRejection>) -> Result<T, UiError> {
    r.map(|Query(v)| v)
        .map_err(|e| UiError::bad_request("invalid_query", e.body_text()))
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A JSON text column as a value: the document when it parses, else the text.
fn json_text(raw: Option<&str>) -> Option<Value> {
    raw.map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned())))
}

// ---------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------

impl From<&ApiKeyMetadata> for KeyView {
    fn from(k: &ApiKeyMetadata) -> Self {
        Self {
            id: k.id.clone(),
            label: k.label.clone(),
            created_at: ts(&k.created_at),
            last_used_at: None,
            revoked_at: k.revoked_at.as_ref().map(ts),
            models: k.models.clone(),
            routes: k.routes.clone(),
            expires_at: k.expires_at.as_ref().map(ts),
            expired: k.expired,
            tpm: k.tpm,
            monthly_tokens: k.monthly_tokens,
        }
    }
}

fn key_error(e: CoreError) -> UiError {
    match e {
        CoreError::KeyNotFound(m) => UiError::not_found("key_not_found", m),
        CoreError::InvalidInput(m) if m.contains("already revoked") => {
            UiError::new(StatusCode::CONFLICT, "key_revoked", m)
        }
        CoreError::InvalidInput(m) if m.contains("expired at") => {
            UiError::new(StatusCode::CONFLICT, "key_expired", m)
        }
        CoreError::InvalidInput(m) => field("invalid_label", "label", m),
        other => core_error(other),
    }
}

async fn list_keys(State(d): Deps) -> Result<Json<KeyList>, UiError> {
    let keys = d.keys.list().await.map_err(key_error)?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

async fn create_key(
    State(d): Deps,
    req: Result<Json<CreateKeyRequest>, JsonRejection>,
) -> Result<Response, UiError> {
    let req = body(req)?;
    // Each limit on its own first, so that a problem names its field.
    if let Err(e) = flm_core::key_scope::KeyScope::new(req.models.clone(), None) {
        return Err(field("invalid_models", "models", e.to_string()));
    }
    if let Some(Err(e)) = req
        .expires_in
        .as_deref()
        .map(flm_core::key_scope::parse_lifetime)
    {
        return Err(field("invalid_expires_in", "expires_in", e.to_string()));
    }
    if let Err(e) = flm_core::key_scope::KeyBudget::new(req.tpm, None) {
        return Err(field("invalid_tpm", "tpm", e.to_string()));
    }
    if let Err(e) = flm_core::key_scope::KeyBudget::new(None, req.monthly_tokens) {
        return Err(field(
            "invalid_monthly_tokens",
            "monthly_tokens",
            e.to_string(),
        ));
    }
    if req.routes.as_ref().is_some_and(Vec::is_empty) {
        return Err(field(
            "invalid_routes",
            "routes",
            "the route list is empty; give at least one route class, or none for every route",
        ));
    }
    let limits = flm_core::services::KeyLimits {
        models: req.models,
        routes: req
            .routes
            .map(|r| r.iter().map(|c| c.as_str().to_owned()).collect()),
        expires_in: req.expires_in,
        tpm: req.tpm,
        monthly_tokens: req.monthly_tokens,
    };
    let k = d
        .keys
        .create_limited(&req.label, &limits)
        .await
        .map_err(key_error)?;
    d.changed(SecurityChange::Keys);
    tracing::info!(key_id = %k.metadata.id, "API key created from the app");
    let out = KeyCreated {
        key: KeyView::from(&k.metadata),
        secret: k.key,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn revoke_key(State(d): Deps, Path(id): Path<String>) -> Result<Json<KeyView>, UiError> {
    let k = d.keys.revoke(id.trim()).await.map_err(key_error)?;
    d.changed(SecurityChange::Keys);
    tracing::info!(key_id = %k.id, "API key revoked from the app");
    Ok(Json(KeyView::from(&k)))
}

async fn rotate_key(State(d): Deps, Path(id): Path<String>) -> Result<Json<KeyRotated>, UiError> {
    let k = d.keys.rotate(id.trim(), None).await.map_err(key_error)?;
    d.changed(SecurityChange::Keys);
    let revoked = k.old_key_id.clone().unwrap_or_default();
    tracing::info!(key_id = %k.metadata.id, revoked_id = %revoked, "API key rotated from the app");
    Ok(Json(KeyRotated {
        key: KeyView::from(&k.metadata),
        secret: k.key,
        revoked_id: revoked,
    }))
}

// ---------------------------------------------------------------------------------------
// policy and allow list
// ---------------------------------------------------------------------------------------

async fn get_policy(State(d): Deps) -> Result<Json<PolicyView>, UiError> {
    let out = match d.security.policy().await.map_err(core_error)? {
        Some(p) => PolicyView {
            policy: Some(p.policy),
            updated_at: Some(ts(&p.updated_at)),
            problem: p.problem,
        },
        None => PolicyView {
            policy: None,
            updated_at: None,
            problem: None,
        },
    };
    Ok(Json(out))
}

async fn put_policy(
    State(d): Deps,
    req: Result<Json<PutPolicyRequest>, JsonRejection>,
) -> Result<Json<PolicyView>, UiError> {
    let req = body(req)?;
    let saved = d
        .security
        .set_policy(&req.policy.to_string())
        .await
        .map_err(core_error)?;
    d.changed(SecurityChange::Policy);
    Ok(Json(PolicyView {
        policy: Some(saved.policy),
        updated_at: Some(ts(&saved.updated_at)),
        problem: None,
    }))
}

fn allow_entries(list: Vec<String>) -> Json<AllowList> {
    Json(AllowList {
        entries: list
            .into_iter()
            .map(|entry| AllowEntryView {
                entry,
                added_at: None,
            })
            .collect(),
    })
}

async fn allowlist(State(d): Deps) -> Result<Json<AllowList>, UiError> {
    Ok(allow_entries(
        d.security.allowlist().await.map_err(core_error)?,
    ))
}

async fn allowlist_add(
    State(d): Deps,
    req: Result<Json<AllowEntryRequest>, JsonRejection>,
) -> Result<Json<AllowList>, UiError> {
    let req = body(req)?;
    let list = d
        .security
        .allowlist_add(&req.entry)
        .await
        .map_err(|e| match e {
            CoreError::InvalidInput(m) => field("invalid_address", "entry", m),
            other => core_error(other),
        })?;
    d.changed(SecurityChange::Policy);
    Ok(allow_entries(list))
}

async fn allowlist_remove(
    State(d): Deps,
    Path(entry): Path<String>,
) -> Result<Json<AllowList>, UiError> {
    match d
        .security
        .allowlist_remove(&entry)
        .await
        .map_err(core_error)?
    {
        Some(list) => {
            d.changed(SecurityChange::Policy);
            Ok(allow_entries(list))
        }
        None => Err(UiError::not_found(
            "not_in_allowlist",
            format!("`{}` is not in the allow list", entry.trim()),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// blocklist
// ---------------------------------------------------------------------------------------

fn block_view(r: &BlockRow, now: DateTime<Utc>) -> BlockView {
    BlockView {
        ip: r.ip.clone(),
        kind: BlockKind::of(r, now),
        blocked_until: if r.permanent {
            None
        } else {
            r.blocked_until.as_ref().map(ts)
        },
        failure_count: r.failure_count,
        reason: None,
        first_failure_at: Some(ts(&r.first_failure_at)),
        last_failure_at: Some(ts(&r.last_attempt)),
    }
}

/// Longest temporary block accepted from the app: ten years.
const MAX_BLOCK_SECS: i64 = 10 * 366 * 24 * 3600;

async fn blocklist(State(d): Deps) -> Result<Json<BlockList>, UiError> {
    let rows = d.security.blocklist().await.map_err(core_error)?;
    let now = Utc::now();
    Ok(Json(BlockList {
        entries: rows.iter().map(|r| block_view(r, now)).collect(),
    }))
}

async fn block(
    State(d): Deps,
    req: Result<Json<BlockRequest>, JsonRejection>,
) -> Result<Response, UiError> {
    let req = body(req)?;
    let duration = match req.duration_secs {
        None => None,
        Some(s) if (1..=MAX_BLOCK_SECS).contains(&s) => Some(Duration::seconds(s)),
        Some(_) => {
            return Err(field(
                "invalid_duration",
                "duration_secs",
                format!(
                    "must be between 1 and {MAX_BLOCK_SECS} seconds, or null for a permanent block"
                ),
            ))
        }
    };
    let row = d
        .security
        .block(&req.ip, duration)
        .await
        .map_err(|e| match e {
            CoreError::InvalidInput(m) => field("invalid_address", "ip", m),
            other => core_error(other),
        })?;
    if let Some(reason) = req.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        tracing::info!(ip = %row.ip, reason = %reason, "block reason given in the app");
    }
    d.changed(SecurityChange::Ban {
        ip: row.ip.clone(),
        until: row.blocked_until,
        permanent: row.permanent,
    });
    let view = block_view(&row, Utc::now());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn unblock(State(d): Deps, Path(ip): Path<String>) -> Result<StatusCode, UiError> {
    match d.security.unblock(&ip).await.map_err(core_error)? {
        Some(ip) => {
            d.changed(SecurityChange::Unblock { ip });
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(UiError::not_found(
            "not_blocked",
            format!("`{}` is not in the blocklist", ip.trim()),
        )),
    }
}

async fn clear_temporary(State(d): Deps) -> Result<Json<Cleared>, UiError> {
    let c = d.security.clear_temporary().await.map_err(core_error)?;
    if c.removed > 0 {
        d.changed(SecurityChange::Unblock { ip: "*".into() });
    }
    Ok(Json(Cleared { cleared: c.removed }))
}

// ---------------------------------------------------------------------------------------
// cursors and filters
// ---------------------------------------------------------------------------------------

/// Opaque cursors: hex of `a:<id>` (audit) or `e:<created_at>|<id>` (detections).
fn encode_cursor(raw: &str) -> String {
    hex::encode(raw.as_bytes())
}

fn bad_cursor() -> UiError {
    UiError::bad_request(
        "invalid_cursor",
        "the page cursor is not valid here; reload the list from its first page",
    )
}

fn decode_cursor(c: &str, kind: char) -> Result<String, UiError> {
    let bytes = hex::decode(c.trim()).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let mut chars = text.chars();
    if chars.next() != Some(kind) || chars.next() != Some(':') {
        return Err(bad_cursor());
    }
    Ok(chars.as_str().to_owned())
}

fn audit_cursor(c: Option<&str>) -> Result<Option<i64>, UiError> {
    match c.filter(|c| !c.trim().is_empty()) {
        None => Ok(None),
        Some(c) => decode_cursor(c, 'a')?
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(bad_cursor),
    }
}

fn event_cursor(c: Option<&str>) -> Result<Option<EventCursor>, UiError> {
    let Some(c) = c.filter(|c| !c.trim().is_empty()) else {
        return Ok(None);
    };
    let text = decode_cursor(c, 'e')?;
    let (at, id) = text.split_once('|').ok_or_else(bad_cursor)?;
    let created_at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad_cursor())?
        .with_timezone(&Utc);
    Ok(Some(EventCursor {
        created_at,
        id: id.to_owned(),
    }))
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn time_param(path: &str, raw: Option<String>) -> Result<Option<DateTime<Utc>>, UiError> {
    match nonempty(raw) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                field(
                    "invalid_filter",
                    path,
                    format!("`{s}` is not an RFC 3339 time (e.g. 2026-11-25T00:00:00Z)"),
                )
            }),
    }
}

fn ip_param(d: &SecurityApiDeps, raw: Option<String>) -> Result<Option<String>, UiError> {
    match nonempty(raw) {
        None => Ok(None),
        Some(s) => d
            .security
            .canonical_address(&s)
            .map(Some)
            .map_err(|e| field("invalid_filter", "ip", e.to_string())),
    }
}

const DEFAULT_LIMIT: u32 = 50;

fn limit_param(raw: Option<u32>) -> Result<u32, UiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=flm_core::services::security_service::MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(field(
            "invalid_filter",
            "limit",
            format!(
                "must be between 1 and {}",
                flm_core::services::security_service::MAX_PAGE
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------

fn audit_query(d: &SecurityApiDeps, p: &AuditParams) -> Result<AuditQuery, UiError> {
    let severity = match nonempty(p.severity.clone()) {
        None => None,
        Some(s) if s == "all" => None,
        Some(s) => Some(AuditSeverity::parse(&s).ok_or_else(|| {
            field(
                "invalid_filter",
                "severity",
                "must be one of low, medium, high, critical",
            )
        })?),
    };
    let q = AuditQuery {
        severity,
        event_type: nonempty(p.event_type.clone()).filter(|t| t != "all"),
        ip: ip_param(d, p.ip.clone())?,
        api_key_id: nonempty(p.key_id.clone()),
        since: time_param("since", p.since.clone())?,
        until: time_param("until", p.until.clone())?,
        text: nonempty(p.q.clone()),
    };
    if q.text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(field("invalid_filter", "q", "at most 200 characters"));
    }
    Ok(q)
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        let details = json_text(r.details.as_deref());
        let method = details
            .as_ref()
            .and_then(|d| d.get("method"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Self {
            id: r.id,
            at: r.created_at,
            event_type: r.event_type.unwrap_or_else(|| "request".into()),
            severity: r.severity,
            ip: r.ip,
            key_id: r.api_key_id,
            method,
            endpoint: Some(r.endpoint),
            status: Some(r.status),
            latency_ms: r.latency_ms,
            request_id: Some(r.request_id),
            details,
        }
    }
}

async fn audit(
    State(d): Deps,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Page<AuditView>>, UiError> {
    let p = query(params)?;
    let req = AuditPageRequest {
        query: audit_query(&d, &p)?,
        direction: AuditDirection::NewestFirst,
        cursor: audit_cursor(p.cursor.as_deref())?,
        limit: limit_param(p.limit)?,
    };
    let page = d.security.audit_page(&req).await.map_err(core_error)?;
    Ok(Json(Page {
        items: page.rows.into_iter().map(AuditView::from).collect(),
        next_cursor: page.next_cursor.map(|id| encode_cursor(&format!("a:{id}"))),
    }))
}

async fn verify(State(d): Deps) -> Result<Json<VerifyView>, UiError> {
    let r = d.security.verify_audit().await.map_err(core_error)?;
    let message = if r.ok {
        format!("audit chain intact: {} row(s) verified", r.rows_checked)
    } else {
        r.problem
            .clone()
            .unwrap_or_else(|| "the audit chain is broken".into())
    };
    Ok(Json(VerifyView {
        ok: r.ok,
        checked: r.rows_checked,
        first_bad_id: r.first_bad_id,
        message,
    }))
}

/// Rows per read of an export: the response is written page by page, never held.
const EXPORT_PAGE: u32 = 500;

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Jsonl,
    Csv,
}

async fn export(
    State(d): Deps,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, UiError> {
    let p = query(params)?;
    let format = match nonempty(p.format.clone()).as_deref() {
        None | Some("jsonl") => ExportFormat::Jsonl,
        Some("csv") => ExportFormat::Csv,
        Some(_) => return Err(field("invalid_filter", "format", "must be jsonl or csv")),
    };
    let q = audit_query(&d, &p)?;
    let service = d.security.clone();
    // (cursor, first chunk not yet written, finished)
    let state = (None::<i64>, true, false);
    let stream = futures::stream::unfold(state, move |(cursor, first, done)| {
        let service = service.clone();
        let q = q.clone();
        async move {
            if done {
                return None;
            }
            let mut out = String::new();
            if first && format == ExportFormat::Csv {
                out.push_str(&audit_csv_header());
            }
            let req = AuditPageRequest {
                query: q,
                direction: AuditDirection::OldestFirst,
                cursor,
                limit: EXPORT_PAGE,
            };
            match service.audit_page(&req).await {
                Ok(page) => {
                    for r in &page.rows {
                        match format {
                            ExportFormat::Csv => out.push_str(&r.csv_record()),
                            ExportFormat::Jsonl => {
                                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                                out.push('\n');
                            }
                        }
                    }
                    let done = page.next_cursor.is_none();
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(out)),
                        (page.next_cursor, false, done),
                    ))
                }
                Err(e) => {
                    // Headers are gone: end the body early so the download is visibly
                    // incomplete, and log why.
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (None, false, true),
                    ))
                }
            }
        }
    });
    let (ctype, ext) = match format {
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let name = format!("flm-audit-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// intrusions, anomalies, summary
// ---------------------------------------------------------------------------------------

fn event_query(
    d: &SecurityApiDeps,
    p: EventParams,
    kind: Option<String>,
) -> Result<EventPageQuery, UiError> {
    Ok(EventPageQuery {
        ip: ip_param(d, p.ip)?,
        kind: nonempty(kind),
        min_score: p.min_score,
        since: time_param("since", p.since)?,
        until: time_param("until", p.until)?,
        after: event_cursor(p.cursor.as_deref())?,
        limit: limit_param(p.limit)?,
    })
}

fn next_event_cursor(more: bool, last: Option<(&DateTime<Utc>, &str)>) -> Option<String> {
    if !more {
        return None;
    }
    last.map(|(at, id)| encode_cursor(&format!("e:{}|{id}", ts(at))))
}

async fn intrusions(
    State(d): Deps,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Page<IntrusionView>>, UiError> {
    let mut p = query(params)?;
    let kind = p.pattern.take();
    let q = event_query(&d, p, kind)?;
    let (rows, more) = d.security.intrusion_page(&q).await.map_err(core_error)?;
    let next = next_event_cursor(more, rows.last().map(|r| (&r.created_at, r.id.as_str())));
    Ok(Json(Page {
        items: rows.iter().map(intrusion_view).collect(),
        next_cursor: next,
    }))
}

fn intrusion_view(r: &IntrusionRow) -> IntrusionView {
    IntrusionView {
        id: r.id.clone(),
        at: ts(&r.created_at),
        ip: r.ip.clone(),
        pattern: r.pattern.clone(),
        score: r.score,
        method: r.method.clone(),
        path: r.request_path.clone(),
        user_agent: r.user_agent.clone(),
        request_id: None,
    }
}

async fn anomalies(
    State(d): Deps,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Page<AnomalyView>>, UiError> {
    let mut p = query(params)?;
    let kind = p.anomaly_type.take();
    let q = event_query(&d, p, kind)?;
    let (rows, more) = d.security.anomaly_page(&q).await.map_err(core_error)?;
    let next = next_event_cursor(more, rows.last().map(|r| (&r.created_at, r.id.as_str())));
    Ok(Json(Page {
        items: rows.iter().map(anomaly_view).collect(),
        next_cursor: next,
    }))
}

fn anomaly_view(r: &AnomalyRow) -> AnomalyView {
    AnomalyView {
        id: r.id.clone(),
        at: ts(&r.created_at),
        ip: r.ip.clone(),
        kind: r.anomaly_type.clone(),
        score: r.score,
        details: json_text(r.details.as_deref()),
    }
}

async fn summary(State(d): Deps) -> Result<Json<SecuritySummary>, UiError> {
    Ok(Json(d.security.summary().await.map_err(core_error)?))
}
