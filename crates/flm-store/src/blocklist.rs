//! [`BlocklistRepository`] on `security.db` → `ip_blocklist`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::security::{BlockRow, BlocklistRepository};
use flm_core::RepoError;
use sqlx::Row;

use crate::changes::{blocklist_generation, OwnWrites};
use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// The IP blocklist stored in `security.db`.
pub(crate) struct SqliteBlocklist {
    pub(crate) db: Arc<Db>,
    /// Set for the proxy's own writer ([`crate::Store::proxy_blocklist`]): the
    /// generations its writes add are counted there, so the proxy's change poll does
    /// not take them for outside changes.
    pub(crate) own: Option<OwnWrites>,
}

/// An open write transaction; for the proxy's writer, also the held count of its
/// own generations and the generation the transaction started from.
struct Write<'a> {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    own: Option<(tokio::sync::MutexGuard<'a, u64>, u64)>,
}

impl SqliteBlocklist {
    /// Starts a `BEGIN IMMEDIATE` transaction. The proxy's writer takes the
    /// [`OwnWrites`] lock first and keeps it until its count matches what it
    /// committed, so a change poll never sees one without the other.
    async fn begin(&self, op: &str) -> Result<Write<'_>, RepoError> {
        let db = &self.db;
        let guard = match &self.own {
            Some(o) => Some(o.lock().await),
            None => None,
        };
        let mut tx = db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db.err(op, e))?;
        let own = match guard {
            Some(g) => Some((
                g,
                blocklist_generation(&mut tx)
                    .await
                    .map_err(|e| db.err(op, e))?,
            )),
            None => None,
        };
        Ok(Write { tx, own })
    }

    /// Commits; the proxy's writer adds the generations its writes made.
    async fn commit(&self, op: &str, mut w: Write<'_>) -> Result<(), RepoError> {
        let db = &self.db;
        let after = match &w.own {
            Some(_) => blocklist_generation(&mut w.tx)
                .await
                .map_err(|e| db.err(op, e))?,
            None => 0,
        };
        w.tx.commit().await.map_err(|e| db.err(op, e))?;
        if let Some((mut count, before)) = w.own {
            *count = count.wrapping_add(after.wrapping_sub(before));
        }
        Ok(())
    }
}

#[async_trait]
impl BlocklistRepository for SqliteBlocklist {
    async fn load_all(&self) -> Result<Vec<BlockRow>, RepoError> {
        const OP: &str = "reading the IP blocklist";
        let db = &self.db;
        let rows = sqlx::query(
            "SELECT ip, failure_count, first_failure_at, blocked_until, permanent_block, last_attempt \
             FROM ip_blocklist ORDER BY ip",
        )
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let ip: String = row.try_get(0).map_err(|e| db.err(OP, e))?;
            let failures: i64 = row.try_get(1).map_err(|e| db.err(OP, e))?;
            let first: String = row.try_get(2).map_err(|e| db.err(OP, e))?;
            let until: Option<String> = row.try_get(3).map_err(|e| db.err(OP, e))?;
            let permanent: i64 = row.try_get(4).map_err(|e| db.err(OP, e))?;
            let last: String = row.try_get(5).map_err(|e| db.err(OP, e))?;
            let permanent = permanent != 0;
            let (first_ts, last_ts) = (parse_ts(&first), parse_ts(&last));
            let until_ts = until.as_deref().map(parse_ts);
            let unreadable =
                first_ts.is_none() || last_ts.is_none() || matches!(until_ts, Some(None));
            if unreadable && !permanent {
                tracing::warn!(%ip, path = %db.path.display(), "skipping IP blocklist row with unreadable timestamps");
                continue;
            }
            if unreadable {
                // Never lose a permanent block over a bad timestamp.
                tracing::warn!(%ip, path = %db.path.display(), "permanent IP block has unreadable timestamps; keeping it");
            }
            out.push(BlockRow {
                ip,
                failure_count: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
                first_failure_at: first_ts.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
                blocked_until: until_ts.flatten(),
                permanent,
                last_attempt: last_ts.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    async fn upsert_many(&self, rows: &[BlockRow]) -> Result<(), RepoError> {
        const OP: &str = "saving the IP blocklist";
        let db = &self.db;
        db.ensure_writable()?;
        if let Some(bad) = rows.iter().find(|r| r.ip.trim().is_empty()) {
            return Err(RepoError::Validation(format!(
                "an IP blocklist row needs an address (got {:?})",
                bad.ip
            )));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let now = format_ts(&Utc::now());
        let mut w = self.begin(OP).await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO ip_blocklist (ip, failure_count, first_failure_at, blocked_until, \
                 permanent_block, last_attempt, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT (ip) DO UPDATE SET failure_count = excluded.failure_count, \
                 first_failure_at = excluded.first_failure_at, blocked_until = excluded.blocked_until, \
                 permanent_block = excluded.permanent_block, last_attempt = excluded.last_attempt, \
                 updated_at = excluded.updated_at",
            )
            .bind(&r.ip)
            .bind(i64::from(r.failure_count))
            .bind(format_ts(&r.first_failure_at))
            .bind(r.blocked_until.as_ref().map(format_ts))
            .bind(i64::from(r.permanent))
            .bind(format_ts(&r.last_attempt))
            .bind(&now)
            .execute(&mut *w.tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        }
        self.commit(OP, w).await
    }

    async fn remove(&self, ip: &str) -> Result<bool, RepoError> {
        const OP: &str = "unblocking an IP";
        let db = &self.db;
        db.ensure_writable()?;
        let mut w = self.begin(OP).await?;
        let done = sqlx::query("DELETE FROM ip_blocklist WHERE ip = ?")
            .bind(ip)
            .execute(&mut *w.tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        self.commit(OP, w).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn clear_temporary(&self) -> Result<u64, RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        const OP: &str = "clearing temporary IP blocks";
        let mut w = self.begin(OP).await?;
        let done = sqlx::query("DELETE FROM ip_blocklist WHERE permanent_block = 0")
            .execute(&mut *w.tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        self.commit(OP, w).await?;
        Ok(done.rows_affected())
    }
}
