//! The security rules shared by `flm security …` and the app's security screens: the
//! policy and its allow list, the IP blocklist, and reading the audit log and the
//! detection records. Interfaces only translate arguments and results.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, FieldProblem};
use crate::ports::Clock;
use crate::security::{
    AnomalyRow, AuditFilter, AuditPage, AuditPageRequest, AuditRepository, AuditRow, BlockRow,
    BlocklistRepository, EventPageQuery, IntrusionRow, PolicyRepository, RateLimitStateRepository,
    RateLimitStateRow, SecurityEventRepository, VerifyReport,
};

/// What a valid policy and a valid address are: implemented by the guard (the crate
/// that enforces them), so that what is saved is exactly what the proxy accepts.
pub trait PolicyRules: Send + Sync {
    /// Validates a policy document (JSON text): the normalised document as compact
    /// JSON text, or every problem found with its field path.
    fn validate(&self, policy_json: &str) -> Result<String, Vec<FieldProblem>>;
    /// The canonical text of an IP address (IPv4-mapped IPv6 folded to IPv4) or of a
    /// CIDR range (host bits cleared; a full-length prefix becomes the address), or
    /// why `raw` is neither.
    fn canonical_address(&self, raw: &str) -> Result<String, String>;
}

/// The stored policy as a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// The document; a JSON string holding the raw text when what is stored does not
    /// parse as JSON.
    pub policy: Value,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Why the stored text is not a JSON document, if it is not.
    pub problem: Option<String>,
}

/// Current state of one blocklist row.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Blocked until `blocked_until`, which is in the future.
    Temporary,
    /// Blocked until unblocked.
    Permanent,
    /// Not blocked now: failures are being counted (or a block has expired).
    Counting,
}

impl BlockKind {
    /// The state of `row` at `now`.
    pub fn of(row: &BlockRow, now: DateTime<Utc>) -> Self {
        if row.permanent {
            BlockKind::Permanent
        } else if row.blocked_until.is_some_and(|u| u > now) {
            BlockKind::Temporary
        } else {
            BlockKind::Counting
        }
    }
}

/// Result of clearing the temporary blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedBlocks {
    /// Rows removed.
    pub removed: u64,
    /// Rows left (permanent blocks).
    pub remaining: usize,
}

/// Counts for the security dashboard cards.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySummary {
    /// IPs blocked now (temporary blocks in force and permanent ones).
    pub blocked_ips: u64,
    /// Audit rows of the last 24 hours.
    pub audit_last_24h: u64,
    /// Intrusion attempts of the last 24 hours.
    pub intrusions_last_24h: u64,
    /// Anomalies of the last 24 hours.
    pub anomalies_last_24h: u64,
}

/// Largest page of the keyset views.
pub const MAX_PAGE: u32 = 500;

/// Ports of [`SecurityService`].
#[derive(Clone)]
pub struct SecurityServiceParts {
    /// `security_policies`.
    pub policy: Arc<dyn PolicyRepository>,
    /// `ip_blocklist`.
    pub blocklist: Arc<dyn BlocklistRepository>,
    /// `audit_logs`.
    pub audit: Arc<dyn AuditRepository>,
    /// Intrusion attempts and anomalies.
    pub events: Arc<dyn SecurityEventRepository>,
    /// Persisted rate-limit windows.
    pub rate_limits: Arc<dyn RateLimitStateRepository>,
    /// Policy and address validation.
    pub rules: Arc<dyn PolicyRules>,
    /// Now.
    pub clock: Arc<dyn Clock>,
}

/// The security policy, allow list, blocklist and security records.
#[derive(Clone)]
pub struct SecurityService {
    p: SecurityServiceParts,
}

fn invalid_address(raw: &str, why: &str) -> CoreError {
    CoreError::InvalidInput(format!(
        "`{raw}` is not an IP address or CIDR range ({why}); e.g. 192.168.1.0/24 or 10.0.0.1"
    ))
}

impl SecurityService {
    /// A service over `parts`.
    pub fn new(parts: SecurityServiceParts) -> Self {
        Self { p: parts }
    }

    // -------------------------------------------------------------------------------
    // policy and allow list
    // -------------------------------------------------------------------------------

    /// The stored policy, `None` when there is none (the proxy then refuses every
    /// request but `/health`).
    pub async fn policy(&self) -> Result<Option<PolicyDocument>, CoreError> {
        let Some(stored) = self.p.policy.load().await? else {
            return Ok(None);
        };
        Ok(Some(
            match serde_json::from_str::<Value>(&stored.policy_json) {
                Ok(policy) => PolicyDocument {
                    policy,
                    updated_at: stored.updated_at,
                    problem: None,
                },
                Err(e) => PolicyDocument {
                    policy: Value::String(stored.policy_json),
                    updated_at: stored.updated_at,
                    problem: Some(format!("the stored policy is not valid JSON ({e})")),
                },
            },
        ))
    }

    /// Validates `policy_json` (every problem reported, nothing saved then) and
    /// replaces the whole policy with its normalised form.
    pub async fn set_policy(&self, policy_json: &str) -> Result<PolicyDocument, CoreError> {
        let normalised = self
            .p
            .rules
            .validate(policy_json)
            .map_err(CoreError::InvalidPolicy)?;
        let updated_at = self.p.policy.save(&normalised).await?;
        let policy = serde_json::from_str(&normalised)
            .map_err(|e| CoreError::InvalidInput(format!("normalised policy: {e}")))?;
        tracing::info!(updated_at = %updated_at, "security policy saved");
        Ok(PolicyDocument {
            policy,
            updated_at,
            problem: None,
        })
    }

    /// The stored policy as an object, for editing one part of it; `{}` (all
    /// defaults) when none is stored.
    async fn policy_object(&self) -> Result<serde_json::Map<String, Value>, CoreError> {
        match self.policy().await? {
            None => Ok(serde_json::Map::new()),
            Some(PolicyDocument {
                policy: Value::Object(m),
                ..
            }) => Ok(m),
            Some(_) => Err(CoreError::InvalidPolicy(vec![FieldProblem {
                field: "$".into(),
                message: "the stored policy is not a JSON object; replace it as a whole first"
                    .into(),
            }])),
        }
    }

    /// The allow list (`ip_whitelist`) of the policy; empty = everyone allowed.
    pub async fn allowlist(&self) -> Result<Vec<String>, CoreError> {
        let m = self.policy_object().await?;
        Ok(entries(&m))
    }

    /// Adds an address or CIDR range to the allow list (no-op when listed); returns
    /// the new list.
    pub async fn allowlist_add(&self, raw: &str) -> Result<Vec<String>, CoreError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(CoreError::InvalidInput(
                "enter an IP address or CIDR range, e.g. 192.168.1.0/24 or 10.0.0.1".into(),
            ));
        }
        let entry = self
            .p
            .rules
            .canonical_address(raw)
            .map_err(|why| invalid_address(raw, &why))?;
        let mut m = self.policy_object().await?;
        let mut list = entries(&m);
        if !list.contains(&entry) {
            list.push(entry);
        }
        m.insert("ip_whitelist".into(), serde_json::json!(list));
        let saved = self.set_policy(&Value::Object(m).to_string()).await?;
        Ok(saved.policy.as_object().map(entries).unwrap_or_default())
    }

    /// Removes an entry (matched in its canonical form) from the allow list; `Ok(None)`
    /// when it is not listed.
    pub async fn allowlist_remove(&self, raw: &str) -> Result<Option<Vec<String>>, CoreError> {
        let raw = raw.trim();
        let wanted = self
            .p
            .rules
            .canonical_address(raw)
            .unwrap_or_else(|_| raw.to_owned());
        let mut m = self.policy_object().await?;
        let list = entries(&m);
        if !list.iter().any(|e| e == &wanted || e == raw) {
            return Ok(None);
        }
        let kept: Vec<String> = list
            .into_iter()
            .filter(|e| e != &wanted && e != raw)
            .collect();
        m.insert("ip_whitelist".into(), serde_json::json!(kept));
        let saved = self.set_policy(&Value::Object(m).to_string()).await?;
        Ok(Some(
            saved.policy.as_object().map(entries).unwrap_or_default(),
        ))
    }

    // -------------------------------------------------------------------------------
    // blocklist
    // -------------------------------------------------------------------------------

    /// The canonical form of an address or range, as the proxy stores it.
    pub fn canonical_address(&self, raw: &str) -> Result<String, CoreError> {
        let raw = raw.trim();
        self.p
            .rules
            .canonical_address(raw)
            .map_err(|why| invalid_address(raw, &why))
    }

    /// Every blocklist row, ordered by address.
    pub async fn blocklist(&self) -> Result<Vec<BlockRow>, CoreError> {
        let mut rows = self.p.blocklist.load_all().await?;
        rows.sort_by(|a, b| a.ip.cmp(&b.ip));
        Ok(rows)
    }

    /// Blocks an address or range for `duration` (`None`: permanently), keeping its
    /// failure count.
    pub async fn block(
        &self,
        raw: &str,
        duration: Option<Duration>,
    ) -> Result<BlockRow, CoreError> {
        let ip = self.canonical_address(raw)?;
        if duration.is_some_and(|d| d <= Duration::zero()) {
            return Err(CoreError::InvalidInput(
                "the block duration must be positive".into(),
            ));
        }
        let now = self.p.clock.now();
        let existing = self
            .p
            .blocklist
            .load_all()
            .await?
            .into_iter()
            .find(|r| r.ip == ip);
        let until =
            match duration {
                None => None,
                Some(d) => Some(now.checked_add_signed(d).ok_or_else(|| {
                    CoreError::InvalidInput("the block duration is too long".into())
                })?),
            };
        let row = BlockRow {
            ip: ip.clone(),
            failure_count: existing.as_ref().map_or(0, |r| r.failure_count),
            first_failure_at: existing.as_ref().map_or(now, |r| r.first_failure_at),
            blocked_until: until,
            permanent: duration.is_none(),
            last_attempt: now,
        };
        self.p
            .blocklist
            .upsert_many(std::slice::from_ref(&row))
            .await?;
        tracing::info!(ip = %ip, permanent = row.permanent, "address blocked by hand");
        Ok(row)
    }

    /// Removes an address or range (temporary or permanent); returns the canonical
    /// form removed, `None` when it was not listed.
    pub async fn unblock(&self, raw: &str) -> Result<Option<String>, CoreError> {
        let raw = raw.trim();
        let ip = self
            .p
            .rules
            .canonical_address(raw)
            .unwrap_or_else(|_| raw.to_owned());
        let mut removed = self.p.blocklist.remove(&ip).await?;
        if !removed && ip != raw {
            removed = self.p.blocklist.remove(raw).await?;
        }
        if removed {
            tracing::info!(ip = %ip, "address unblocked");
        }
        Ok(removed.then_some(ip))
    }

    /// Removes every non-permanent row.
    pub async fn clear_temporary(&self) -> Result<ClearedBlocks, CoreError> {
        let removed = self.p.blocklist.clear_temporary().await?;
        let remaining = self.p.blocklist.load_all().await?.len();
        Ok(ClearedBlocks { removed, remaining })
    }

    // -------------------------------------------------------------------------------
    // audit log and detection records
    // -------------------------------------------------------------------------------

    /// An offset page (`flm security audit-logs list`).
    pub async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, CoreError> {
        Ok(self.p.audit.list(filter).await?)
    }

    /// Every matching row, oldest first (`flm security audit-logs export`).
    pub async fn audit_export(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, CoreError> {
        Ok(self.p.audit.export(filter).await?)
    }

    /// A keyset page; the limit is clamped to 1..=[`MAX_PAGE`].
    pub async fn audit_page(&self, request: &AuditPageRequest) -> Result<AuditPage, CoreError> {
        let mut r = request.clone();
        r.limit = r.limit.clamp(1, MAX_PAGE);
        if let Some(t) = &r.query.text {
            if t.trim().is_empty() {
                r.query.text = None;
            }
        }
        Ok(self.p.audit.page(&r).await?)
    }

    /// Moves old rows into archive files (`flm security audit-logs archive`).
    pub async fn archive_audit(
        &self,
        selection: &crate::security::ArchiveSelection,
        dir: &std::path::Path,
    ) -> Result<crate::security::ArchiveReport, CoreError> {
        Ok(self.p.audit.archive(selection, dir).await?)
    }

    /// Verifies the whole chain, archives included.
    pub async fn verify_audit(&self) -> Result<VerifyReport, CoreError> {
        Ok(self.p.audit.verify().await?)
    }

    /// Intrusion attempts by offset (`flm security intrusion`).
    pub async fn intrusions(
        &self,
        filter: &crate::security::IntrusionFilter,
    ) -> Result<Vec<IntrusionRow>, CoreError> {
        Ok(self.p.events.list_intrusions(filter).await?)
    }

    /// Anomalies by offset (`flm security anomaly`).
    pub async fn anomalies(
        &self,
        filter: &crate::security::AnomalyFilter,
    ) -> Result<Vec<AnomalyRow>, CoreError> {
        Ok(self.p.events.list_anomalies(filter).await?)
    }

    /// A keyset page of intrusion attempts and whether more follow.
    pub async fn intrusion_page(
        &self,
        q: &EventPageQuery,
    ) -> Result<(Vec<IntrusionRow>, bool), CoreError> {
        keyset(q, |q| async move { self.p.events.intrusion_page(&q).await }).await
    }

    /// A keyset page of anomalies and whether more follow.
    pub async fn anomaly_page(
        &self,
        q: &EventPageQuery,
    ) -> Result<(Vec<AnomalyRow>, bool), CoreError> {
        keyset(q, |q| async move { self.p.events.anomaly_page(&q).await }).await
    }

    /// Persisted rate-limit windows ordered by key, only `key`'s when given
    /// (`flm security rate-limits`).
    pub async fn rate_limit_windows(
        &self,
        key: Option<&str>,
    ) -> Result<Vec<RateLimitStateRow>, CoreError> {
        let mut rows = self.p.rate_limits.load_all().await?;
        if let Some(k) = key {
            rows.retain(|r| r.key == k);
        }
        rows.sort_by(|x, y| x.key.cmp(&y.key));
        Ok(rows)
    }

    /// Counts of the security dashboard.
    pub async fn summary(&self) -> Result<SecuritySummary, CoreError> {
        let now = self.p.clock.now();
        let since = now - Duration::hours(24);
        let blocked_ips = self
            .p
            .blocklist
            .load_all()
            .await?
            .iter()
            .filter(|r| BlockKind::of(r, now) != BlockKind::Counting)
            .count() as u64;
        let audit_last_24h = self.p.audit.count_since(since).await?;
        let (intrusions_last_24h, anomalies_last_24h) = self.p.events.count_since(since).await?;
        Ok(SecuritySummary {
            blocked_ips,
            audit_last_24h,
            intrusions_last_24h,
            anomalies_last_24h,
        })
    }
}

/// Asks `fetch` for one row more than the (clamped) limit, to tell whether a next
/// page exists without counting.
async fn keyset<T, F, Fut>(q: &EventPageQuery, fetch: F) -> Result<(Vec<T>, bool), CoreError>
where
    F: FnOnce(EventPageQuery) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, crate::error::RepoError>>,
{
    let limit = q.limit.clamp(1, MAX_PAGE);
    let mut rows = fetch(EventPageQuery {
        limit: limit + 1,
        ..q.clone()
    })
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// The `ip_whitelist` entries of a policy object, as text.
fn entries(m: &serde_json::Map<String, Value>) -> Vec<String> {
    m.get("ip_whitelist")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
