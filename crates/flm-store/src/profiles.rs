//! [`ProfileRepository`] on `security.db` → `model_profiles`, `api_prompts`
//! (migration `20261206024500_model_profiles_and_prompts`; triggers bump the
//! `profiles` change marker on every write).

use std::sync::Arc;

use async_trait::async_trait;
use flm_core::profiles::{ModelProfile, ProfileRepository, PromptScope, PromptTemplate};
use flm_core::RepoError;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// Model profiles and prompt templates.
pub(crate) struct SqliteProfiles {
    pub(crate) db: Arc<Db>,
}

#[async_trait]
impl ProfileRepository for SqliteProfiles {
    async fn list_profiles(&self) -> Result<Vec<ModelProfile>, RepoError> {
        const OP: &str = "listing model profiles";
        let db = &self.db;
        let rows = sqlx::query(
            "SELECT id, engine_id, model_id, label, parameters_json, version, updated_at FROM model_profiles ORDER BY label",
        )
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(|e| db.err(OP, e))?;
            let params: String = row.try_get("parameters_json").map_err(|e| db.err(OP, e))?;
            let updated: String = row.try_get("updated_at").map_err(|e| db.err(OP, e))?;
            let parameters = serde_json::from_str::<serde_json::Value>(&params)
                .ok()
                .and_then(|v| match v {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                });
            match (parameters, parse_ts(&updated)) {
                (Some(parameters), Some(updated_at)) => out.push(ModelProfile {
                    id,
                    engine_id: row.try_get("engine_id").map_err(|e| db.err(OP, e))?,
                    model_id: row.try_get("model_id").map_err(|e| db.err(OP, e))?,
                    label: row.try_get("label").map_err(|e| db.err(OP, e))?,
                    parameters,
                    version: row.try_get("version").map_err(|e| db.err(OP, e))?,
                    updated_at,
                }),
                _ => {
                    tracing::warn!(%id, path = %db.path.display(), "skipping an unreadable row of model_profiles")
                }
            }
        }
        Ok(out)
    }

    async fn save_profile(&self, p: &ModelProfile) -> Result<(), RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let params = serde_json::to_string(&p.parameters)
            .map_err(|e| RepoError::Validation(format!("unencodable parameters: {e}")))?;
        let res = sqlx::query(
            "INSERT INTO model_profiles (id, engine_id, model_id, label, parameters_json, version, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET engine_id = excluded.engine_id, model_id = excluded.model_id,
               label = excluded.label, parameters_json = excluded.parameters_json,
               version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(&p.id)
        .bind(&p.engine_id)
        .bind(&p.model_id)
        .bind(&p.label)
        .bind(params)
        .bind(p.version)
        .bind(format_ts(&p.updated_at))
        .execute(&db.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(RepoError::Validation(format!(
                    "a model profile named `{}` already exists; choose another label",
                    p.label
                )))
            }
            Err(e) => Err(db.err("saving a model profile", e)),
        }
    }

    async fn delete_profile(&self, id: &str) -> Result<bool, RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let done = sqlx::query("DELETE FROM model_profiles WHERE id = ?")
            .bind(id)
            .execute(&db.pool)
            .await
            .map_err(|e| db.err("deleting a model profile", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_prompts(&self) -> Result<Vec<PromptTemplate>, RepoError> {
        const OP: &str = "listing prompt templates";
        let db = &self.db;
        let rows = sqlx::query(
            "SELECT api_id, template_text, version, updated_at FROM api_prompts ORDER BY api_id",
        )
        .fetch_all(&db.pool)
        .await
        .map_err(|e| db.err(OP, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let api_id: String = row.try_get("api_id").map_err(|e| db.err(OP, e))?;
            let updated: String = row.try_get("updated_at").map_err(|e| db.err(OP, e))?;
            match (PromptScope::from_api_id(&api_id), parse_ts(&updated)) {
                (Ok(scope), Some(updated_at)) => out.push(PromptTemplate {
                    scope,
                    template_text: row.try_get("template_text").map_err(|e| db.err(OP, e))?,
                    version: row.try_get("version").map_err(|e| db.err(OP, e))?,
                    updated_at,
                }),
                _ => {
                    tracing::warn!(%api_id, path = %db.path.display(), "skipping an unreadable row of api_prompts")
                }
            }
        }
        Ok(out)
    }

    async fn set_prompt(&self, p: &PromptTemplate) -> Result<(), RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        sqlx::query(
            "INSERT INTO api_prompts (api_id, template_text, version, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(api_id) DO UPDATE SET template_text = excluded.template_text,
               version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(p.scope.api_id())
        .bind(&p.template_text)
        .bind(p.version)
        .bind(format_ts(&p.updated_at))
        .execute(&db.pool)
        .await
        .map_err(|e| db.err("saving a prompt template", e))?;
        Ok(())
    }

    async fn delete_prompt(&self, scope: &PromptScope) -> Result<bool, RepoError> {
        let db = &self.db;
        db.ensure_writable()?;
        let done = sqlx::query("DELETE FROM api_prompts WHERE api_id = ?")
            .bind(scope.api_id())
            .execute(&db.pool)
            .await
            .map_err(|e| db.err("deleting a prompt template", e))?;
        Ok(done.rows_affected() > 0)
    }
}
