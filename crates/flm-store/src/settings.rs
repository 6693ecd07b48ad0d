//! [`SettingsRepository`] on `config.db` → `settings`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use flm_core::ports::{SettingRow, SettingsRepository};
use flm_core::RepoError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Key/value settings stored in `config.db`.
pub(crate) struct SqliteSettings {
    pub(crate) db: Arc<Db>,
}

impl SqliteSettings {
    fn row(&self, row: &SqliteRow) -> Result<SettingRow, RepoError> {
        let key: String = row
            .try_get("key")
            .map_err(|e| self.db.err("reading settings", e))?;
        let value: String = row
            .try_get("value")
            .map_err(|e| self.db.err("reading settings", e))?;
        let raw: String = row
            .try_get("updated_at")
            .map_err(|e| self.db.err("reading settings", e))?;
        let updated_at = parse_ts(&raw).ok_or_else(|| {
            RepoError::Database(format!(
                "setting `{key}` in `{}` has an unreadable updated_at `{raw}`; set the key again to repair it",
                self.db.path.display()
            ))
        })?;
        Ok(SettingRow {
            key,
            value,
            updated_at,
        })
    }
}

#[async_trait]
impl SettingsRepository for SqliteSettings {
    async fn get(&self, key: &str) -> Result<Option<SettingRow>, RepoError> {
        let row = sqlx::query("SELECT key, value, updated_at FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.db.err("reading a setting", e))?;
        row.as_ref().map(|r| self.row(r)).transpose()
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.db.ensure_writable()?;
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(format_ts(&Utc::now()))
        .execute(&self.db.pool)
        .await
        .map_err(|e| self.db.err("saving a setting", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, RepoError> {
        self.db.ensure_writable()?;
        let done = sqlx::query("DELETE FROM settings WHERE key = ?")
            .bind(key)
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.err("deleting a setting", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(&self) -> Result<Vec<SettingRow>, RepoError> {
        let rows = sqlx::query("SELECT key, value, updated_at FROM settings ORDER BY key")
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.err("listing settings", e))?;
        rows.iter().map(|r| self.row(r)).collect()
    }
}
