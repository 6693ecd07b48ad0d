//! [`PolicyRepository`] on `security.db` → `security_policies` (row `default`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::security::{PolicyRepository, StoredPolicy};
use flm_core::RepoError;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// The security policy stored in `security.db`.
pub(crate) struct SqlitePolicy {
    pub(crate) db: Arc<Db>,
}

#[async_trait]
impl PolicyRepository for SqlitePolicy {
    async fn load(&self) -> Result<Option<StoredPolicy>, RepoError> {
        const OP: &str = "reading the security policy";
        let db = &self.db;
        let Some(row) = sqlx::query(
            "SELECT policy_json, updated_at FROM security_policies WHERE id = 'default'",
        )
        .fetch_optional(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?
        else {
            return Ok(None);
        };
        let policy_json: String = row.try_get(0).map_err(|e| db.err(OP, e))?;
        let raw: String = row.try_get(1).map_err(|e| db.err(OP, e))?;
        let updated_at = parse_ts(&raw).ok_or_else(|| {
            RepoError::Database(format!(
                "{OP}: `security_policies.updated_at` of `{}` is unreadable ({raw:?}); save the policy again or restore a backup",
                db.path.display()
            ))
        })?;
        Ok(Some(StoredPolicy {
            policy_json,
            updated_at,
        }))
    }

    async fn save(&self, policy_json: &str) -> Result<DateTime<Utc>, RepoError> {
        const OP: &str = "saving the security policy";
        let db = &self.db;
        db.ensure_writable()?;
        // `updated_at` is what the proxy polls, so it must change with every save even
        // when two saves fall in the same millisecond: at least 1 ms after the old one.
        let raw: String = sqlx::query_scalar(
            "INSERT INTO security_policies (id, policy_json, updated_at) VALUES ('default', ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET policy_json = excluded.policy_json, \
             updated_at = max(excluded.updated_at, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', \
                 security_policies.updated_at, '+0.001 seconds'), excluded.updated_at)) \
             RETURNING updated_at",
        )
        .bind(policy_json)
        .bind(format_ts(&Utc::now()))
        .fetch_one(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        parse_ts(&raw).ok_or_else(|| {
            RepoError::Database(format!(
                "{OP}: stored an unreadable `updated_at` ({raw:?}) in `{}`; run `flm check`",
                db.path.display()
            ))
        })
    }
}
