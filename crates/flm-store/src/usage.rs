//! [`UsageRepository`] on `config.db` → `usage_minutes`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use flm_core::usage::{Histogram, UsageCounts, UsageGroupBy, UsageKey, UsageRepository, BUCKETS};
use flm_core::RepoError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::db::Db;

/// Minute aggregates stored in `config.db`.
pub(crate) struct SqliteUsage {
    pub(crate) db: Arc<Db>,
}

const COUNTERS: [&str; 5] = [
    "requests",
    "errors",
    "tokens_in",
    "tokens_out",
    "tokens_unknown",
];

/// Every counter column, histograms included, in [`counts_of`] order.
fn columns() -> &'static [String] {
    static COLS: OnceLock<Vec<String>> = OnceLock::new();
    COLS.get_or_init(|| {
        let mut c: Vec<String> = COUNTERS.iter().map(|s| (*s).to_owned()).collect();
        c.extend((0..BUCKETS).map(|i| format!("lat_{i:02}")));
        c.extend((0..BUCKETS).map(|i| format!("ttft_{i:02}")));
        c
    })
}

fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let cols = columns();
        let marks = vec!["?"; cols.len() + 4].join(", ");
        let sets: Vec<String> = cols
            .iter()
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect();
        format!(
            "INSERT INTO usage_minutes (minute, key_id, model, engine_id, {}) VALUES ({marks}) \
             ON CONFLICT (minute, key_id, model, engine_id) DO UPDATE SET {}",
            cols.join(", "),
            sets.join(", ")
        )
    })
}

fn sums() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        columns()
            .iter()
            .map(|c| format!("SUM({c}) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn values(c: &UsageCounts) -> impl Iterator<Item = u64> + '_ {
    [
        c.requests,
        c.errors,
        c.tokens_in,
        c.tokens_out,
        c.tokens_unknown,
    ]
    .into_iter()
    .chain(c.latency.0.iter().copied())
    .chain(c.ttft.0.iter().copied())
}

fn get(row: &SqliteRow, col: &str) -> Result<u64, sqlx::Error> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.unwrap_or(0).max(0).unsigned_abs())
}

fn counts_of(row: &SqliteRow, with_hist: bool) -> Result<UsageCounts, sqlx::Error> {
    let mut c = UsageCounts {
        requests: get(row, "requests")?,
        errors: get(row, "errors")?,
        tokens_in: get(row, "tokens_in")?,
        tokens_out: get(row, "tokens_out")?,
        tokens_unknown: get(row, "tokens_unknown")?,
        latency: Histogram::default(),
        ttft: Histogram::default(),
    };
    if with_hist {
        for i in 0..BUCKETS {
            c.latency.0[i] = get(row, &format!("lat_{i:02}"))?;
            c.ttft.0[i] = get(row, &format!("ttft_{i:02}"))?;
        }
    }
    Ok(c)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageRepository for SqliteUsage {
    async fn upsert(&self, rows: &HashMap<UsageKey, UsageCounts>) -> Result<(), RepoError> {
        const OP: &str = "writing usage aggregates";
        if rows.is_empty() {
            return Ok(());
        }
        let db = &self.db;
        db.ensure_writable()?;
        let mut tx = db.pool.begin().await.map_err(|e| db.err(OP, e))?;
        for (k, c) in rows {
            let mut q = sqlx::query(upsert_sql())
                .bind(k.minute)
                .bind(&k.key_id)
                .bind(&k.model)
                .bind(&k.engine_id);
            for v in values(c) {
                q = q.bind(to_i64(v));
            }
            q.execute(&mut *tx).await.map_err(|e| db.err(OP, e))?;
        }
        tx.commit().await.map_err(|e| db.err(OP, e))
    }

    async fn prune(&self, before: i64) -> Result<u64, RepoError> {
        const OP: &str = "pruning usage aggregates";
        let db = &self.db;
        db.ensure_writable()?;
        let r = sqlx::query("DELETE FROM usage_minutes WHERE minute < ?")
            .bind(before)
            .execute(&db.pool)
            .await
            .map_err(|e| db.err(OP, e))?;
        Ok(r.rows_affected())
    }

    async fn groups(
        &self,
        from: i64,
        to: i64,
        by: UsageGroupBy,
    ) -> Result<Vec<(String, UsageCounts)>, RepoError> {
        const OP: &str = "reading usage aggregates";
        let col = match by {
            UsageGroupBy::Key => "key_id",
            UsageGroupBy::Model => "model",
            UsageGroupBy::Engine => "engine_id",
        };
        let db = &self.db;
        let sql = format!(
            "SELECT {col} AS grp, {} FROM usage_minutes WHERE minute >= ? AND minute < ? GROUP BY {col} ORDER BY {col}",
            sums()
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(&db.pool)
            .await
            .map_err(|e| db.err(OP, e))?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("grp")?, counts_of(r, true)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db.err(OP, e))
    }

    async fn series(
        &self,
        from: i64,
        to: i64,
        bucket_secs: i64,
    ) -> Result<Vec<(i64, UsageCounts)>, RepoError> {
        const OP: &str = "reading the usage series";
        let db = &self.db;
        let bucket = bucket_secs.max(60);
        let rows = sqlx::query(
            "SELECT (minute / ?1) * ?1 AS at, SUM(requests) AS requests, SUM(errors) AS errors, \
             SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out, \
             SUM(tokens_unknown) AS tokens_unknown \
             FROM usage_minutes WHERE minute >= ?2 AND minute < ?3 GROUP BY at ORDER BY at",
        )
        .bind(bucket)
        .bind(from)
        .bind(to)
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("at")?, counts_of(r, false)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db.err(OP, e))
    }
}
