//! [`ApiKeyRepository`] on `security.db` → `api_keys`.
//!
//! Only the SHA-256 digest of a key is stored (column `hash`, 64 lower-case hex
//! characters, DESIGN.md §3.2); the plaintext never reaches this module.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::key_scope::{KeyBudget, KeyScope};
use flm_core::keys::{ApiKeyRecord, KeyDigest};
use flm_core::ports::ApiKeyRepository;
use flm_core::RepoError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::db::Db;
use crate::time::{format_ts, parse_ts};

/// API keys stored in `security.db`.
pub(crate) struct SqliteApiKeys {
    pub(crate) db: Arc<Db>,
}

impl SqliteApiKeys {
    /// A row as a record; `None` (with a warning) for a row that must never be
    /// accepted as a key.
    fn record(&self, op: &str, row: &SqliteRow) -> Result<Option<ApiKeyRecord>, RepoError> {
        let db = &self.db;
        let id: String = row.try_get("id").map_err(|e| db.err(op, e))?;
        let label: String = row.try_get("label").map_err(|e| db.err(op, e))?;
        let hash: String = row.try_get("hash").map_err(|e| db.err(op, e))?;
        let created: String = row.try_get("created_at").map_err(|e| db.err(op, e))?;
        let revoked: Option<String> = row.try_get("revoked_at").map_err(|e| db.err(op, e))?;
        let models: Option<String> = row.try_get("models").map_err(|e| db.err(op, e))?;
        let routes: Option<String> = row.try_get("routes").map_err(|e| db.err(op, e))?;
        let expires: Option<String> = row.try_get("expires_at").map_err(|e| db.err(op, e))?;
        let tpm: Option<i64> = row.try_get("tpm").map_err(|e| db.err(op, e))?;
        let monthly: Option<i64> = row.try_get("monthly_tokens").map_err(|e| db.err(op, e))?;
        let Some(digest) = digest_from_hex(&hash) else {
            // Never log the stored value: it might be a legacy hash or, worse, a
            // plaintext key written by something else.
            tracing::warn!(
                %id, hash_len = hash.len(),
                path = %db.path.display(),
                "skipping API key whose stored hash is not a 64-hex SHA-256 digest; revoke it and create a new key"
            );
            return Ok(None);
        };
        let Some(created_at) = parse_ts(&created) else {
            tracing::warn!(%id, %created, path = %db.path.display(), "skipping API key with an unreadable created_at");
            return Ok(None);
        };
        // An unreadable revocation time must not turn a revoked key active again:
        // such a row is skipped (so the key is not accepted), never returned as active.
        let revoked_at: Option<DateTime<Utc>> = match revoked.as_deref() {
            None => None,
            Some(raw) => match parse_ts(raw) {
                Some(t) => Some(t),
                None => {
                    tracing::warn!(%id, revoked_at = %raw, path = %db.path.display(), "skipping API key with an unreadable revoked_at");
                    return Ok(None);
                }
            },
        };
        // Scope and expiry fail closed too: a key whose limits cannot be read is not
        // accepted at all (rather than accepted without limits).
        let scope = match scope_from_columns(models.as_deref(), routes.as_deref()) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(%id, %why, path = %db.path.display(), "skipping API key with an unreadable scope; fix it with `flm api-keys update` or revoke it");
                return Ok(None);
            }
        };
        let expires_at: Option<DateTime<Utc>> = match expires.as_deref() {
            None => None,
            Some(raw) => match parse_ts(raw) {
                Some(t) => Some(t),
                None => {
                    tracing::warn!(%id, expires_at = %raw, path = %db.path.display(), "skipping API key with an unreadable expires_at");
                    return Ok(None);
                }
            },
        };
        let positive = |v: Option<i64>| v.map(|n| u64::try_from(n).ok().filter(|n| *n > 0));
        let budget = match (positive(tpm), positive(monthly)) {
            (Some(None), _) | (_, Some(None)) => {
                tracing::warn!(%id, path = %db.path.display(), "skipping API key with a token budget below 1; fix it with `flm api-keys update` or revoke it");
                return Ok(None);
            }
            (t, m) => KeyBudget {
                tpm: t.flatten(),
                monthly_tokens: m.flatten(),
            },
        };
        Ok(Some(ApiKeyRecord {
            id,
            label,
            digest,
            created_at,
            revoked_at,
            scope,
            expires_at,
            budget,
        }))
    }

    /// Maps a failed insert, explaining which unique constraint a duplicate hit.
    fn insert_error(&self, key: &ApiKeyRecord, e: sqlx::Error) -> RepoError {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                // SQLite names the column: `UNIQUE constraint failed: api_keys.hash`.
                return if db.message().contains("api_keys.hash") {
                    RepoError::Validation(
                        "an API key with the same digest already exists; generate a new key".into(),
                    )
                } else {
                    RepoError::Validation(format!(
                        "an API key with id `{}` already exists; generate a new key",
                        key.id
                    ))
                };
            }
        }
        self.db.err("storing an API key", e)
    }
}

/// The scope stored in the `models` and `routes` columns (JSON arrays of strings, NULL
/// for no limit).
fn scope_from_columns(models: Option<&str>, routes: Option<&str>) -> Result<KeyScope, String> {
    let models: Option<Vec<String>> = models
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("models is not a JSON array of strings: {e}"))?;
    let routes: Option<Vec<String>> = routes
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("routes is not a JSON array of strings: {e}"))?;
    let routes = routes
        .map(|r| KeyScope::parse_routes(&r))
        .transpose()
        .map_err(|e| e.to_string())?;
    KeyScope::new(models, routes).map_err(|e| e.to_string())
}

/// The `models` and `routes` columns of a scope.
fn scope_columns(scope: &KeyScope) -> (Option<String>, Option<String>) {
    let models = scope
        .models()
        .map(|m| serde_json::Value::from(m.to_vec()).to_string());
    let routes = scope.routes().map(|r| {
        serde_json::Value::from(r.iter().map(|c| c.as_str()).collect::<Vec<_>>()).to_string()
    });
    (models, routes)
}

/// Inserts `key` with every column.
async fn insert_row<'e, E>(executor: E, key: &ApiKeyRecord) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let (models, routes) = scope_columns(&key.scope);
    sqlx::query(
        "INSERT INTO api_keys (id, label, hash, created_at, revoked_at, models, routes, expires_at, tpm, monthly_tokens) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(&key.label)
    .bind(digest_to_hex(&key.digest))
    .bind(format_ts(&key.created_at))
    .bind(key.revoked_at.as_ref().map(format_ts))
    .bind(models)
    .bind(routes)
    .bind(key.expires_at.as_ref().map(format_ts))
    .bind(key.budget.tpm.map(budget_column))
    .bind(key.budget.monthly_tokens.map(budget_column))
    .execute(executor)
    .await
    .map(|_| ())
}

const COLUMNS: &str =
    "id, label, hash, created_at, revoked_at, models, routes, expires_at, tpm, monthly_tokens";

/// A budget as an SQLite integer (values above `i64::MAX` are refused by `KeyBudget`).
fn budget_column(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Refuses records the table must never hold.
fn validate(key: &ApiKeyRecord) -> Result<(), RepoError> {
    if key.id.trim().is_empty() {
        return Err(RepoError::Validation("an API key needs an id".into()));
    }
    if key.label.trim().is_empty() {
        return Err(RepoError::Validation("an API key needs a label".into()));
    }
    Ok(())
}

/// Lower-case hex of a digest (what the `hash` column holds).
fn digest_to_hex(digest: &KeyDigest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses a stored `hash`: exactly 64 hex characters (either case), else `None`.
fn digest_from_hex(raw: &str) -> Option<KeyDigest> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = raw.as_bytes();
    let mut out = [0u8; 32];
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[async_trait]
impl ApiKeyRepository for SqliteApiKeys {
    async fn list(&self) -> Result<Vec<ApiKeyRecord>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, rowid"
        ))
        .fetch_all(&self.db.pool)
        .await
        .map_err(|e| self.db.err("listing API keys", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(k) = self.record("listing API keys", row)? {
                out.push(k);
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, RepoError> {
        const OP: &str = "reading an API key";
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.db.err(OP, e))?;
        match row {
            Some(row) => self.record(OP, &row),
            None => Ok(None),
        }
    }

    async fn insert(&self, key: &ApiKeyRecord) -> Result<(), RepoError> {
        self.db.ensure_writable()?;
        validate(key)?;
        insert_row(&self.db.pool, key)
            .await
            .map_err(|e| self.insert_error(key, e))?;
        Ok(())
    }

    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool, RepoError> {
        self.db.ensure_writable()?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(format_ts(&at))
                .bind(id)
                .execute(&self.db.pool)
                .await
                .map_err(|e| self.db.err("revoking an API key", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate(
        &self,
        old_id: &str,
        new: &ApiKeyRecord,
        at: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        const OP: &str = "rotating an API key";
        let db = &self.db;
        db.ensure_writable()?;
        validate(new)?;
        // IMMEDIATE: take the write lock up front (waiting on the busy timeout) rather
        // than failing to upgrade a read transaction half-way.
        let mut tx = db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db.err(OP, e))?;
        let revoked =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(format_ts(&at))
                .bind(old_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db.err(OP, e))?;
        if revoked.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| db.err(OP, e))?;
            return Ok(false);
        }
        // On any error below, dropping `tx` rolls the revocation back.
        insert_row(&mut *tx, new)
            .await
            .map_err(|e| self.insert_error(new, e))?;
        // The new key inherits the tokens counted this month and before: a rotation
        // must not reset a monthly quota.
        sqlx::query(
            "INSERT INTO api_key_token_usage (api_key_id, month, tokens) \
             SELECT ?, month, tokens FROM api_key_token_usage WHERE api_key_id = ?",
        )
        .bind(&new.id)
        .bind(old_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| db.err(OP, e))?;
        tx.commit().await.map_err(|e| db.err(OP, e))?;
        Ok(true)
    }

    async fn update_access(
        &self,
        id: &str,
        scope: &KeyScope,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        self.db.ensure_writable()?;
        let (models, routes) = scope_columns(scope);
        let done = sqlx::query(
            "UPDATE api_keys SET models = ?, routes = ?, expires_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(models)
        .bind(routes)
        .bind(expires_at.as_ref().map(format_ts))
        .bind(id)
        .execute(&self.db.pool)
        .await
        .map_err(|e| self.db.err("changing the scope of an API key", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_budget(&self, id: &str, budget: &KeyBudget) -> Result<bool, RepoError> {
        self.db.ensure_writable()?;
        let done = sqlx::query(
            "UPDATE api_keys SET tpm = ?, monthly_tokens = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(budget.tpm.map(budget_column))
        .bind(budget.monthly_tokens.map(budget_column))
        .bind(id)
        .execute(&self.db.pool)
        .await
        .map_err(|e| self.db.err("changing the token budget of an API key", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn month_tokens(&self, id: &str, month: &str) -> Result<u64, RepoError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT tokens FROM api_key_token_usage WHERE api_key_id = ? AND month = ?",
        )
        .bind(id)
        .bind(month)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(|e| self.db.err("reading the monthly tokens of an API key", e))?;
        Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    async fn add_month_tokens(&self, counts: &[(String, String, u64)]) -> Result<(), RepoError> {
        const OP: &str = "adding to the monthly tokens of API keys";
        if counts.is_empty() {
            return Ok(());
        }
        self.db.ensure_writable()?;
        let mut tx = self
            .db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.db.err(OP, e))?;
        for (id, month, tokens) in counts {
            sqlx::query(
                "INSERT INTO api_key_token_usage (api_key_id, month, tokens) VALUES (?, ?, ?) \
                 ON CONFLICT (api_key_id, month) DO UPDATE SET tokens = tokens + excluded.tokens, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .bind(id)
            .bind(month)
            .bind(budget_column(*tokens))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db.err(OP, e))?;
        }
        tx.commit().await.map_err(|e| self.db.err(OP, e))?;
        Ok(())
    }

    async fn fingerprint(&self) -> Result<String, RepoError> {
        const OP: &str = "reading the API key fingerprint";
        // Inserts raise the count, revocations the revoked count; neither can be undone
        // through the repository, so every write changes the result. `max(rowid)` also
        // catches a delete followed by an insert made outside FLM. Scope and expiry
        // changes (`update_access`) are caught by the concatenation of those columns
        // (this runs only when the change markers cannot be read).
        let row = sqlx::query(
            "SELECT count(*), count(revoked_at), coalesce(max(rowid), 0), \
             coalesce(max(created_at), ''), coalesce(max(revoked_at), ''), \
             coalesce((SELECT group_concat(id || '=' || coalesce(models, '') || '|' || coalesce(routes, '') || '|' || coalesce(expires_at, '') \
             || '|' || coalesce(tpm, '') || '|' || coalesce(monthly_tokens, ''), ';') \
             FROM api_keys WHERE models IS NOT NULL OR routes IS NOT NULL OR expires_at IS NOT NULL \
             OR tpm IS NOT NULL OR monthly_tokens IS NOT NULL), '') \
             FROM api_keys",
        )
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| self.db.err(OP, e))?;
        let int = |i: usize| row.try_get::<i64, _>(i).map_err(|e| self.db.err(OP, e));
        let text = |i: usize| row.try_get::<String, _>(i).map_err(|e| self.db.err(OP, e));
        Ok(format!(
            "{}/{}/{}/{}/{}/{}",
            int(0)?,
            int(1)?,
            int(2)?,
            text(3)?,
            text(4)?,
            text(5)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = u8::try_from(i * 8).unwrap();
        }
        let hex = digest_to_hex(&d);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("0008101820"));
        assert_eq!(digest_from_hex(&hex), Some(d));
        assert_eq!(digest_from_hex(&hex.to_uppercase()), Some(d));
        assert_eq!(digest_from_hex(&hex[..62]), None);
        assert_eq!(digest_from_hex(&format!("{hex}00")), None);
        assert_eq!(digest_from_hex(&format!("{}zz", &hex[..62])), None);
        assert_eq!(
            digest_from_hex("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            None
        );
        // Multi-byte characters never split into "hex".
        assert_eq!(digest_from_hex(&"é".repeat(32)), None);
    }
}
