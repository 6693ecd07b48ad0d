//! `flm api-keys create|list|revoke|rotate`.

use std::sync::Arc;

use crate::error::CoreError;
use crate::keys::{self, ApiKeyMetadata, NewApiKey};
use crate::ports::{ApiKeyRepository, Clock};

/// Creates, lists, revokes and rotates API keys. Plaintext keys exist only in the
/// value returned by `create` / `rotate`.
#[derive(Clone)]
pub struct KeyService {
    repo: Arc<dyn ApiKeyRepository>,
    clock: Arc<dyn Clock>,
}

impl KeyService {
    /// A service over `repo`.
    pub fn new(repo: Arc<dyn ApiKeyRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { repo, clock }
    }

    /// Creates a key; the plaintext is in the result only.
    pub async fn create(&self, label: &str) -> Result<NewApiKey, CoreError> {
        let (record, plain) = keys::generate(label, self.clock.now())?;
        self.repo.insert(&record).await?;
        Ok(NewApiKey {
            metadata: ApiKeyMetadata::from(&record),
            key: plain,
            old_key_id: None,
        })
    }

    /// Metadata of every key.
    pub async fn list(&self) -> Result<Vec<ApiKeyMetadata>, CoreError> {
        Ok(self
            .repo
            .list()
            .await?
            .iter()
            .map(ApiKeyMetadata::from)
            .collect())
    }

    /// Whether at least one key is active.
    pub async fn has_active_key(&self) -> Result<bool, CoreError> {
        Ok(self
            .repo
            .list()
            .await?
            .iter()
            .any(|k| k.revoked_at.is_none()))
    }

    /// Revokes a key at once.
    pub async fn revoke(&self, id: &str) -> Result<ApiKeyMetadata, CoreError> {
        if !self.repo.revoke(id, self.clock.now()).await? {
            return Err(self.not_found(id).await);
        }
        self.find(id).await
    }

    /// Revokes a key and creates its replacement (label copied unless given).
    pub async fn rotate(&self, id: &str, label: Option<&str>) -> Result<NewApiKey, CoreError> {
        let keys = self.repo.list().await?;
        let Some(old) = keys.iter().find(|k| k.id == id && k.revoked_at.is_none()) else {
            return Err(self.not_found(id).await);
        };
        let now = self.clock.now();
        let (record, plain) = keys::generate(label.unwrap_or(&old.label), now)?;
        if !self.repo.rotate(id, &record, now).await? {
            return Err(self.not_found(id).await);
        }
        Ok(NewApiKey {
            metadata: ApiKeyMetadata::from(&record),
            key: plain,
            old_key_id: Some(old.id.clone()),
        })
    }

    async fn find(&self, id: &str) -> Result<ApiKeyMetadata, CoreError> {
        self.list()
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| CoreError::KeyNotFound(format!("no API key `{id}`")))
    }

    async fn not_found(&self, id: &str) -> CoreError {
        let revoked = self
            .repo
            .list()
            .await
            .ok()
            .and_then(|ks| ks.into_iter().find(|k| k.id == id))
            .is_some_and(|k| k.revoked_at.is_some());
        if revoked {
            CoreError::InvalidInput(format!("API key `{id}` is already revoked"))
        } else {
            CoreError::KeyNotFound(format!(
                "no API key `{id}`; `flm api-keys list` shows the ids"
            ))
        }
    }
}
