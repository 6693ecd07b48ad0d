//! [`RateLimitStateRepository`] on `security.db` → `rate_limit_states`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::security::{RateLimitStateRepository, RateLimitStateRow};
use flm_core::RepoError;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Rate-limit windows stored in `security.db`.
pub(crate) struct SqliteRateLimitStates {
    pub(crate) db: Arc<Db>,
}

#[async_trait]
impl RateLimitStateRepository for SqliteRateLimitStates {
    async fn upsert_many(&self, rows: &[RateLimitStateRow]) -> Result<(), RepoError> {
        const OP: &str = "saving rate-limit windows";
        let db = &self.db;
        db.ensure_writable()?;
        if rows.iter().any(|r| r.key.trim().is_empty()) {
            return Err(RepoError::Validation(
                "a rate-limit window needs a key (api_key_id or ip:<address>)".into(),
            ));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db.err(OP, e))?;
        for r in rows {
            sqlx::query(
                "INSERT INTO rate_limit_states (api_key_id, requests_count, reset_at) VALUES (?, ?, ?) \
                 ON CONFLICT (api_key_id) DO UPDATE SET requests_count = excluded.requests_count, \
                 reset_at = excluded.reset_at",
            )
            .bind(&r.key)
            .bind(r.requests_count)
            .bind(format_ts(&r.reset_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        }
        tx.commit().await.map_err(|e| db.err(OP, e))
    }

    async fn load_all(&self) -> Result<Vec<RateLimitStateRow>, RepoError> {
        const OP: &str = "reading rate-limit windows";
        let db = &self.db;
        let rows = sqlx::query(
            "SELECT api_key_id, requests_count, reset_at FROM rate_limit_states ORDER BY api_key_id",
        )
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| db.err(OP, e))?;
            let requests_count: i64 = row.try_get(1).map_err(|e| db.err(OP, e))?;
            let raw: String = row.try_get(2).map_err(|e| db.err(OP, e))?;
            let Some(reset_at) = parse_ts(&raw) else {
                tracing::warn!(%key, reset_at = %raw, "skipping rate-limit window with an unreadable reset_at");
                continue;
            };
            out.push(RateLimitStateRow {
                key,
                requests_count,
                reset_at,
            });
        }
        Ok(out)
    }

    async fn delete_expired(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let done = sqlx::query("DELETE FROM rate_limit_states WHERE reset_at < ?")
            .bind(format_ts(&before))
            .execute(&db.pool)
            .await
            .map_err(|e| db.err("deleting expired rate-limit windows", e))?;
        Ok(done.rows_affected())
    }
}
