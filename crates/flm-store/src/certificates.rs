//! [`CertificateRepository`] on `security.db` → `certificates`.

use std::sync::Arc;

use async_trait::async_trait;
use flm_core::security::{CertificateMode, CertificateRepository, CertificateRow};
use flm_core::RepoError;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Certificate metadata stored in `security.db`.
pub(crate) struct SqliteCertificates {
    pub(crate) db: Arc<Db>,
}

#[async_trait]
impl CertificateRepository for SqliteCertificates {
    async fn upsert(&self, c: &CertificateRow) -> Result<(), RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        for (what, v) in [
            ("id", &c.id),
            ("cert_path", &c.cert_path),
            ("key_path", &c.key_path),
        ] {
            if v.trim().is_empty() {
                return Err(RepoError::Validation(format!(
                    "a certificate's {what} must not be empty"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO certificates (id, cert_path, key_path, mode, domain, expires_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET cert_path = excluded.cert_path, \
             key_path = excluded.key_path, mode = excluded.mode, domain = excluded.domain, \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(&c.id)
        .bind(&c.cert_path)
        .bind(&c.key_path)
        .bind(c.mode.as_str())
        .bind(&c.domain)
        .bind(c.expires_at.as_ref().map(format_ts))
        .bind(format_ts(&c.updated_at))
        .execute(&db.pool)
        .await
        .map_err(|e| db.err("saving certificate metadata", e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<CertificateRow>, RepoError> {
        const OP: &str = "listing certificates";
        let db = &self.db;
        let rows = sqlx::query(
            "SELECT id, cert_path, key_path, mode, domain, expires_at, updated_at FROM certificates ORDER BY id",
        )
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |i: usize| row.try_get::<String, _>(i).map_err(|e| db.err(OP, e));
            let opt = |i: usize| {
                row.try_get::<Option<String>, _>(i)
                    .map_err(|e| db.err(OP, e))
            };
            let id = get(0)?;
            let mode_raw = get(3)?;
            let Some(mode) = CertificateMode::parse(&mode_raw) else {
                tracing::warn!(%id, mode = %mode_raw, "skipping certificate of an unknown mode");
                continue;
            };
            let expires_raw = opt(5)?;
            let expires_at = match expires_raw.as_deref() {
                None => None,
                Some(raw) => match parse_ts(raw) {
                    Some(t) => Some(t),
                    None => {
                        tracing::warn!(%id, expires_at = %raw, "skipping certificate with an unreadable expires_at");
                        continue;
                    }
                },
            };
            let updated_raw = get(6)?;
            let Some(updated_at) = parse_ts(&updated_raw) else {
                tracing::warn!(%id, updated_at = %updated_raw, "skipping certificate with an unreadable updated_at");
                continue;
            };
            out.push(CertificateRow {
                cert_path: get(1)?,
                key_path: get(2)?,
                mode,
                domain: opt(4)?,
                expires_at,
                updated_at,
                id,
            });
        }
        Ok(out)
    }
}
