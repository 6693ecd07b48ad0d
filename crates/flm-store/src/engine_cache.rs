//! [`EngineCacheRepository`] on `config.db` → `engines_cache` + `engines_cache_meta`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use flm_core::ports::{CachedDetection, EngineCacheRepository};
use flm_core::{EngineState, RepoError};
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Cache of the last detection run stored in `config.db`.
pub(crate) struct SqliteEngineCache {
    pub(crate) db: Arc<Db>,
}

#[async_trait]
impl EngineCacheRepository for SqliteEngineCache {
    async fn load(&self) -> Result<Option<CachedDetection>, RepoError> {
        const OP: &str = "reading the detection cache";
        let db = &self.db;
        // One read transaction: a concurrent `store` cannot mix two runs.
        let mut tx = db.pool.begin().await.map_err(|e| db.err(OP, e))?;
        let meta: Option<String> =
            sqlx::query_scalar("SELECT detected_at FROM engines_cache_meta WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db.err(OP, e))?;
        let Some(raw) = meta else {
            return Ok(None);
        };
        let Some(detected_at) = parse_ts(&raw) else {
            tracing::warn!(detected_at = %raw, "detection cache has an unreadable timestamp; ignoring the cache");
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT engine_id, state_json FROM engines_cache ORDER BY position, engine_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db.err(OP, e))?;
        tx.commit().await.map_err(|e| db.err(OP, e))?;

        let mut engines = Vec::with_capacity(rows.len());
        for row in rows {
            let engine_id: String = row.try_get("engine_id").map_err(|e| db.err(OP, e))?;
            let json: String = row.try_get("state_json").map_err(|e| db.err(OP, e))?;
            match serde_json::from_str::<EngineState>(&json) {
                Ok(state) => engines.push(state),
                Err(e) => {
                    tracing::warn!(%engine_id, error = %e, "skipping an unreadable engine in the detection cache");
                }
            }
        }
        Ok(Some(CachedDetection {
            detected_at,
            engines,
        }))
    }

    async fn store(&self, run: &CachedDetection) -> Result<(), RepoError> {
        const OP: &str = "storing the detection cache";
        let db = &self.db;
        db.ensure_writable()?;
        let mut seen = HashSet::new();
        let mut rows = Vec::with_capacity(run.engines.len());
        for engine in &run.engines {
            if !seen.insert(engine.id.as_str()) {
                return Err(RepoError::Validation(format!(
                    "detection run lists engine `{}` twice; not cached",
                    engine.id
                )));
            }
            let json = serde_json::to_string(engine).map_err(|e| {
                RepoError::Validation(format!("cannot serialise engine `{}`: {e}", engine.id))
            })?;
            rows.push((engine.id.as_str(), json));
        }
        let at = format_ts(&run.detected_at);

        let mut tx = db.pool.begin().await.map_err(|e| db.err(OP, e))?;
        sqlx::query("DELETE FROM engines_cache")
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        for (position, (id, json)) in (0_i64..).zip(rows) {
            sqlx::query(
                "INSERT INTO engines_cache (engine_id, state_json, cached_at, position) VALUES (?, ?, ?, ?)",
            )
            .bind(id)
            .bind(json)
            .bind(&at)
            .bind(position)
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        }
        sqlx::query(
            "INSERT INTO engines_cache_meta (id, detected_at) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET detected_at = excluded.detected_at",
        )
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(|e| db.err(OP, e))?;
        tx.commit().await.map_err(|e| db.err(OP, e))
    }

    async fn clear(&self) -> Result<(), RepoError> {
        const OP: &str = "clearing the detection cache";
        let db = &self.db;
        db.ensure_writable()?;
        let mut tx = db.pool.begin().await.map_err(|e| db.err(OP, e))?;
        sqlx::query("DELETE FROM engines_cache")
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        sqlx::query("DELETE FROM engines_cache_meta")
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        tx.commit().await.map_err(|e| db.err(OP, e))
    }
}
