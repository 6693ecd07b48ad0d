//! [`EndpointRepository`] on `config.db` → `engine_endpoints`.

use std::sync::Arc;

use async_trait::async_trait;
use flm_core::ports::{EndpointRepository, EngineEndpoint};
use flm_core::{EngineId, EngineKind, RepoError};
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Engine endpoints configured by the user, stored in `config.db`.
pub(crate) struct SqliteEndpoints {
    pub(crate) db: Arc<Db>,
}

impl SqliteEndpoints {
    /// Explains which unique constraint `endpoint` hit.
    async fn conflict(&self, endpoint: &EngineEndpoint) -> RepoError {
        let existing = sqlx::query(
            "SELECT id, base_url FROM engine_endpoints WHERE id = ? OR base_url = ? ORDER BY id = ? DESC LIMIT 1",
        )
        .bind(endpoint.id.as_str())
        .bind(&endpoint.base_url)
        .bind(endpoint.id.as_str())
        .fetch_optional(&self.db.pool)
        .await;
        let existing = existing.ok().flatten().and_then(|row| {
            let id: String = row.try_get("id").ok()?;
            Some(id)
        });
        match existing {
            Some(id) if id == endpoint.id.as_str() => RepoError::Validation(format!(
                "an engine endpoint with id `{id}` already exists; choose another id or remove it first"
            )),
            Some(id) => RepoError::Validation(format!(
                "engine `{id}` already uses base URL `{}`; remove it first or use that engine",
                endpoint.base_url
            )),
            None => RepoError::Validation(format!(
                "engine endpoint `{}` ({}) conflicts with an existing one",
                endpoint.id, endpoint.base_url
            )),
        }
    }
}

#[async_trait]
impl EndpointRepository for SqliteEndpoints {
    async fn list(&self) -> Result<Vec<EngineEndpoint>, RepoError> {
        const OP: &str = "listing engine endpoints";
        let db = &self.db;
        let rows =
            sqlx::query("SELECT id, kind, base_url, created_at FROM engine_endpoints ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(|e| db.err(OP, e))?;
            let kind: String = row.try_get("kind").map_err(|e| db.err(OP, e))?;
            let base_url: String = row.try_get("base_url").map_err(|e| db.err(OP, e))?;
            let created: String = row.try_get("created_at").map_err(|e| db.err(OP, e))?;
            let parsed = (
                EngineId::parse(&id),
                kind.parse::<EngineKind>(),
                parse_ts(&created),
            );
            match parsed {
                (Ok(id), Ok(kind), Some(created_at)) => out.push(EngineEndpoint {
                    id,
                    kind,
                    base_url,
                    created_at,
                }),
                _ => tracing::warn!(
                    %id, %kind, %base_url, %created,
                    path = %db.path.display(),
                    "skipping an unreadable row of engine_endpoints"
                ),
            }
        }
        Ok(out)
    }

    async fn add(&self, endpoint: &EngineEndpoint) -> Result<(), RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let res = sqlx::query(
            "INSERT INTO engine_endpoints (id, kind, base_url, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(endpoint.id.as_str())
        .bind(endpoint.kind.slug())
        .bind(&endpoint.base_url)
        .bind(format_ts(&endpoint.created_at))
        .execute(&db.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(self.conflict(endpoint).await)
            }
            Err(e) => Err(db.err("adding an engine endpoint", e)),
        }
    }

    async fn remove(&self, id: &EngineId) -> Result<bool, RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let done = sqlx::query("DELETE FROM engine_endpoints WHERE id = ?")
            .bind(id.as_str())
            .execute(&db.pool)
            .await
            .map_err(|e| db.err("removing an engine endpoint", e))?;
        Ok(done.rows_affected() > 0)
    }
}
