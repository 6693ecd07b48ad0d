//! [`HealthLogRepository`] on `config.db` → `engine_health_logs`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::health::{HealthCounts, HealthLogRepository, HealthQuery, HealthSample};
use flm_core::RepoError;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// The health history stored in `config.db`.
pub(crate) struct SqliteHealthLog {
    pub(crate) db: Arc<Db>,
}

fn filtered<'a>(head: &str, q: &'a HealthQuery) -> QueryBuilder<'a, Sqlite> {
    let mut b = QueryBuilder::new(head);
    b.push(" WHERE created_at >= ")
        .push_bind(format_ts(&q.since));
    if let Some(e) = &q.engine_id {
        b.push(" AND engine_id = ").push_bind(e.as_str());
    }
    if let Some(m) = &q.model {
        b.push(" AND model_id = ").push_bind(m.as_str());
    }
    b
}

fn sample_of(row: &SqliteRow) -> Result<Option<HealthSample>, sqlx::Error> {
    let raw: String = row.try_get("created_at")?;
    let Some(at) = parse_ts(&raw) else {
        tracing::warn!(created_at = %raw, "skipping a health sample with an unreadable time");
        return Ok(None);
    };
    let latency: Option<i64> = row.try_get("latency_ms")?;
    Ok(Some(HealthSample {
        id: Some(row.try_get("id")?),
        at,
        engine_id: row.try_get("engine_id")?,
        model: row.try_get("model_id")?,
        status: row.try_get("status")?,
        latency_ms: latency.and_then(|l| u64::try_from(l).ok()),
        error: row.try_get("error")?,
        error_rate: row.try_get::<Option<f64>, _>("error_rate")?.unwrap_or(0.0),
    }))
}

#[async_trait]
impl HealthLogRepository for SqliteHealthLog {
    async fn insert(&self, samples: &[HealthSample]) -> Result<(), RepoError> {
        const OP: &str = "writing engine health samples";
        if samples.is_empty() {
            return Ok(());
        }
        let db = &self.db;
        db.ensure_writable()?;
        let mut tx = db.pool.begin().await.map_err(|e| db.err(OP, e))?;
        for s in samples {
            sqlx::query(
                "INSERT INTO engine_health_logs (engine_id, model_id, status, latency_ms, error_rate, error, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&s.engine_id)
            .bind(&s.model)
            .bind(&s.status)
            .bind(s.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
            .bind(s.error_rate)
            .bind(&s.error)
            .bind(format_ts(&s.at))
            .execute(&mut *tx)
            .await
            .map_err(|e| db.err(OP, e))?;
        }
        tx.commit().await.map_err(|e| db.err(OP, e))
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        const OP: &str = "pruning engine health samples";
        let db = &self.db;
        db.ensure_writable()?;
        let r = sqlx::query("DELETE FROM engine_health_logs WHERE created_at < ?")
            .bind(format_ts(&before))
            .execute(&db.pool)
            .await
            .map_err(|e| db.err(OP, e))?;
        Ok(r.rows_affected())
    }

    async fn list(&self, query: &HealthQuery) -> Result<Vec<HealthSample>, RepoError> {
        const OP: &str = "reading engine health samples";
        let db = &self.db;
        let mut b = filtered(
            "SELECT id, engine_id, model_id, status, latency_ms, error_rate, error, created_at FROM engine_health_logs",
            query,
        );
        b.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = b
            .build()
            .fetch_all(&db.pool)
            .await
            .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(s) = sample_of(r).map_err(|e| db.err(OP, e))? {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn counts(&self, query: &HealthQuery) -> Result<Vec<HealthCounts>, RepoError> {
        const OP: &str = "summarising engine health samples";
        let db = &self.db;
        let mut b = filtered(
            "SELECT engine_id, model_id, status, COUNT(*) AS n, COUNT(latency_ms) AS lat_n, \
             COALESCE(SUM(latency_ms), 0) AS lat_sum, COALESCE(SUM(error_rate), 0.0) AS err_sum \
             FROM engine_health_logs",
            query,
        );
        b.push(" GROUP BY engine_id, model_id, status ORDER BY engine_id, model_id, status");
        let rows = b
            .build()
            .fetch_all(&db.pool)
            .await
            .map_err(|e| db.err(OP, e))?;
        rows.iter()
            .map(|r| {
                let n = |c: &str| -> Result<u64, sqlx::Error> {
                    Ok(u64::try_from(r.try_get::<i64, _>(c)?).unwrap_or(0))
                };
                Ok(HealthCounts {
                    engine_id: r.try_get("engine_id")?,
                    model: r.try_get("model_id")?,
                    status: r.try_get("status")?,
                    samples: n("n")?,
                    latency_samples: n("lat_n")?,
                    latency_sum_ms: n("lat_sum")?,
                    error_rate_sum: r.try_get("err_sum")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db.err(OP, e))
    }
}
