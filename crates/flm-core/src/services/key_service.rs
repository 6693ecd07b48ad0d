//! `flm api-keys create|list|revoke|rotate`.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::error::CoreError;
use crate::key_scope::{parse_lifetime, KeyBudget, KeyScope};
use crate::keys::{self, ApiKeyMetadata, NewApiKey};
use crate::ports::{ApiKeyRepository, Clock};

/// Limits of a new key, as given by a user (validated by [`KeyService::create_limited`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Model ids or patterns; `None`: every model.
    pub models: Option<Vec<String>>,
    /// Route class names; `None`: every route.
    pub routes: Option<Vec<String>>,
    /// Lifetime such as `30d`; `None`: never expires.
    pub expires_in: Option<String>,
    /// Tokens per minute; `None`: no limit.
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC); `None`: no limit.
    pub monthly_tokens: Option<u64>,
}

/// One part of a key's limits in a change: kept, removed (no limit), or replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LimitChange<T> {
    /// Unchanged.
    #[default]
    Keep,
    /// No limit any more.
    Clear,
    /// This limit.
    Set(T),
}

/// A change of a key's limits ([`KeyService::update_limits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimitsChange {
    /// Model ids or patterns.
    pub models: LimitChange<Vec<String>>,
    /// Route class names.
    pub routes: LimitChange<Vec<String>>,
    /// Lifetime from now, such as `30d`.
    pub expires_in: LimitChange<String>,
    /// Tokens per minute.
    pub tpm: LimitChange<u64>,
    /// Tokens per calendar month (UTC).
    pub monthly_tokens: LimitChange<u64>,
}

impl KeyLimitsChange {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.models == LimitChange::Keep
            && self.routes == LimitChange::Keep
            && self.expires_in == LimitChange::Keep
            && self.tpm == LimitChange::Keep
            && self.monthly_tokens == LimitChange::Keep
    }
}

fn changed<T: Clone>(old: Option<T>, change: &LimitChange<T>) -> Option<T> {
    match change {
        LimitChange::Keep => old,
        LimitChange::Clear => None,
        LimitChange::Set(v) => Some(v.clone()),
    }
}

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
        self.create_limited(label, &KeyLimits::default()).await
    }

    /// Creates a key limited to some models and routes, and/or expiring; the
    /// plaintext is in the result only. Every limit is validated before anything is
    /// stored.
    pub async fn create_limited(
        &self,
        label: &str,
        limits: &KeyLimits,
    ) -> Result<NewApiKey, CoreError> {
        let now = self.clock.now();
        let routes = limits
            .routes
            .as_deref()
            .map(KeyScope::parse_routes)
            .transpose()?;
        let scope = KeyScope::new(limits.models.clone(), routes)?;
        let expires_at = expiry(limits.expires_in.as_deref(), now)?;
        let budget = KeyBudget::new(limits.tpm, limits.monthly_tokens)?;
        let (mut record, plain) = keys::generate(label, now)?;
        record.scope = scope;
        record.expires_at = expires_at;
        record.budget = budget;
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

    /// Changes the limits of an active key; returns its metadata afterwards. A
    /// running proxy applies the change like a revocation (within a second).
    pub async fn update_limits(
        &self,
        id: &str,
        change: &KeyLimitsChange,
    ) -> Result<ApiKeyMetadata, CoreError> {
        if change.is_empty() {
            return Err(CoreError::InvalidInput(
                "nothing to change: give --models/--all-models, --routes/--all-routes, --expires-in/--no-expiry, --tpm/--no-tpm or --monthly-tokens/--no-monthly-tokens".into(),
            ));
        }
        let Some(old) = self.repo.get(id).await?.filter(|k| k.revoked_at.is_none()) else {
            return Err(self.not_found(id).await);
        };
        let now = self.clock.now();
        let models = match &change.models {
            LimitChange::Keep => old.scope.models().map(<[String]>::to_vec),
            LimitChange::Clear => None,
            LimitChange::Set(m) => Some(m.clone()),
        };
        let routes = match &change.routes {
            LimitChange::Keep => old.scope.routes().map(<[_]>::to_vec),
            LimitChange::Clear => None,
            LimitChange::Set(r) => Some(KeyScope::parse_routes(r)?),
        };
        let scope = KeyScope::new(models, routes)?;
        let expires_at = match &change.expires_in {
            LimitChange::Keep => old.expires_at,
            LimitChange::Clear => None,
            LimitChange::Set(d) => expiry(Some(d), now)?,
        };
        let budget = KeyBudget::new(
            changed(old.budget.tpm, &change.tpm),
            changed(old.budget.monthly_tokens, &change.monthly_tokens),
        )?;
        if (scope != old.scope || expires_at != old.expires_at)
            && !self.repo.update_access(id, &scope, expires_at).await?
        {
            return Err(self.not_found(id).await);
        }
        if budget != old.budget && !self.repo.update_budget(id, &budget).await? {
            return Err(self.not_found(id).await);
        }
        self.find(id).await
    }

    /// Revokes a key and creates its replacement (label copied unless given). The
    /// new key keeps the old one's scope and its expiry (the same instant: rotation
    /// replaces a secret, it does not extend a lifetime) unless `expires_in` gives a
    /// new lifetime from now.
    pub async fn rotate(&self, id: &str, label: Option<&str>) -> Result<NewApiKey, CoreError> {
        self.rotate_with(id, label, None).await
    }

    /// [`KeyService::rotate`] with an optional new lifetime (`30d`…) for the new key.
    pub async fn rotate_with(
        &self,
        id: &str,
        label: Option<&str>,
        expires_in: Option<&str>,
    ) -> Result<NewApiKey, CoreError> {
        let keys = self.repo.list().await?;
        let Some(old) = keys.iter().find(|k| k.id == id && k.revoked_at.is_none()) else {
            return Err(self.not_found(id).await);
        };
        let now = self.clock.now();
        let expires_at = match expires_in {
            Some(d) => expiry(Some(d), now)?,
            None => old.expires_at,
        };
        if let Some(at) = expires_at.filter(|at| *at <= now) {
            return Err(CoreError::InvalidInput(format!(
                "API key `{id}` expired at {}; give a new lifetime (--expires-in) to rotate it",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let (mut record, plain) = keys::generate(label.unwrap_or(&old.label), now)?;
        record.scope = old.scope.clone();
        record.expires_at = expires_at;
        record.budget = old.budget;
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

/// The expiry instant of a lifetime such as `30d` given at `now`.
fn expiry(
    expires_in: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, CoreError> {
    expires_in
        .map(|d| {
            let d = parse_lifetime(d)?;
            // Milliseconds, as stored: what is shown is what is enforced.
            now.trunc_subsecs(3).checked_add_signed(d).ok_or_else(|| {
                CoreError::InvalidInput("the expiry is out of the representable range".into())
            })
        })
        .transpose()
}
