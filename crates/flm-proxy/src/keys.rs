//! API-key verification on the request path: the in-memory [`KeyTable`] first, then
//! — only for a well-formed `flm_<id>_<secret>` whose id the table does not know —
//! one indexed read of the store, so a key created a moment ago (by another process)
//! works at once instead of after the next reload.
//!
//! The fallback must not let random key ids hammer the database: ids found missing
//! (or revoked, or with another secret) are remembered for [`MISS_TTL`] (at most
//! [`MAX_MISSES`] of them), and at most [`LOOKUPS_PER_SECOND`] reads happen per
//! second whatever the traffic; past that budget an unknown id is refused as before
//! (the change poll adds new keys to the table within a fraction of a second anyway).
//! A reload of the key table forgets the misses, since a key may have appeared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use flm_core::keys::{AuthFailure, KeyGrant, KeyTable};
use flm_core::ports::ApiKeyRepository;

/// How long an id found missing is not looked up again.
pub(crate) const MISS_TTL: Duration = Duration::from_secs(60);
/// Ids remembered as missing at most.
pub(crate) const MAX_MISSES: usize = 10_000;
/// Store reads for unknown ids per second, at most.
pub(crate) const LOOKUPS_PER_SECOND: u32 = 20;

/// The key table plus the bounded store fallback.
pub(crate) struct KeyLookup {
    table: Arc<ArcSwap<KeyTable>>,
    repo: Arc<dyn ApiKeyRepository>,
    state: Mutex<Bounds>,
    budgets: Arc<crate::budget::Budgets>,
}

struct Bounds {
    misses: HashMap<String, Instant>,
    window: Instant,
    used: u32,
}

impl KeyLookup {
    pub(crate) fn new(table: Arc<ArcSwap<KeyTable>>, repo: Arc<dyn ApiKeyRepository>) -> Self {
        Self {
            table,
            budgets: Arc::new(crate::budget::Budgets::new(repo.clone())),
            repo,
            state: Mutex::new(Bounds {
                misses: HashMap::new(),
                window: Instant::now(),
                used: 0,
            }),
        }
    }

    /// Verifies an `Authorization` header value at this instant (expiry included);
    /// returns what the key may do.
    pub(crate) async fn verify(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<KeyGrant>, AuthFailure> {
        let now = chrono::Utc::now();
        let (failure, unknown) = {
            let table = self.table.load();
            match table.authorize(authorization, now) {
                Ok(grant) => return Ok(grant.clone()),
                Err(f) => (f, table.unknown_key(authorization)),
            }
        };
        let Some((token, id)) = unknown else {
            return Err(failure);
        };
        if !self.may_look_up(&id) {
            return Err(failure);
        }
        match self.repo.get(&id).await {
            Ok(Some(record)) if flm_core::keys::matches(&record, token) => {
                self.table.rcu(|t| {
                    let mut t = KeyTable::clone(t);
                    t.insert_record(&record);
                    t
                });
                tracing::info!(api_key_id = %record.id, "API key found in the store before the next reload");
                if flm_core::key_scope::is_expired(record.expires_at, now) {
                    return Err(AuthFailure::ExpiredApiKey);
                }
                Ok(Arc::new(KeyGrant {
                    id: record.id,
                    scope: record.scope,
                    expires_at: record.expires_at,
                    budget: record.budget,
                }))
            }
            Ok(_) => {
                self.remember_miss(id);
                Err(failure)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not look up an unknown API key id");
                Err(failure)
            }
        }
    }

    /// Whether `id` may be read from the store now (not a recent miss, budget left).
    fn may_look_up(&self, id: &str) -> bool {
        let Ok(mut b) = self.state.lock() else {
            return false;
        };
        let now = Instant::now();
        if b.misses.get(id).is_some_and(|t| now < *t + MISS_TTL) {
            return false;
        }
        if now.duration_since(b.window) >= Duration::from_secs(1) {
            b.window = now;
            b.used = 0;
        }
        if b.used >= LOOKUPS_PER_SECOND {
            return false;
        }
        b.used += 1;
        true
    }

    fn remember_miss(&self, id: String) {
        let Ok(mut b) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        if b.misses.len() >= MAX_MISSES {
            b.misses.retain(|_, t| now < *t + MISS_TTL);
        }
        // Still full of fresh misses: the per-second budget alone bounds the reads.
        if b.misses.len() < MAX_MISSES {
            b.misses.insert(id, now);
        }
    }

    /// Forgets the misses (after a reload of the key table: a key may have appeared)
    /// and the in-memory monthly token counts (a rotation carries them to a new key).
    pub(crate) fn forget_misses(&self) {
        if let Ok(mut b) = self.state.lock() {
            b.misses.clear();
        }
        self.budgets.forget_months();
    }

    /// The token budgets of the keys.
    pub(crate) fn budgets(&self) -> &Arc<crate::budget::Budgets> {
        &self.budgets
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use flm_core::keys::ApiKeyRecord;
    use flm_core::RepoError;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A key store that counts its reads.
    #[derive(Default)]
    struct Counting {
        keys: Mutex<Vec<ApiKeyRecord>>,
        reads: AtomicU32,
    }

    #[async_trait]
    impl ApiKeyRepository for Counting {
        async fn list(&self) -> Result<Vec<ApiKeyRecord>, RepoError> {
            Ok(self.keys.lock().unwrap().clone())
        }
        async fn insert(&self, key: &ApiKeyRecord) -> Result<(), RepoError> {
            self.keys.lock().unwrap().push(key.clone());
            Ok(())
        }
        async fn revoke(&self, _: &str, _: DateTime<Utc>) -> Result<bool, RepoError> {
            Ok(false)
        }
        async fn rotate(
            &self,
            _: &str,
            _: &ApiKeyRecord,
            _: DateTime<Utc>,
        ) -> Result<bool, RepoError> {
            Ok(false)
        }
        async fn fingerprint(&self) -> Result<String, RepoError> {
            Ok(String::new())
        }
        async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, RepoError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .keys
                .lock()
                .unwrap()
                .iter()
                .find(|k| k.id == id)
                .cloned())
        }
    }

    fn bearer(k: &str) -> Vec<u8> {
        format!("Bearer {k}").into_bytes()
    }

    #[tokio::test]
    async fn a_key_stored_after_the_last_reload_is_accepted_at_once() {
        let repo = Arc::new(Counting::default());
        let table = Arc::new(ArcSwap::from_pointee(KeyTable::default()));
        let lookup = KeyLookup::new(table.clone(), repo.clone());
        let (rec, plain) = flm_core::keys::generate("new", Utc::now()).unwrap();
        repo.insert(&rec).await.unwrap();
        assert_eq!(
            lookup.verify(Some(&bearer(&plain))).await.unwrap().id,
            rec.id
        );
        // Now in the table: no further read.
        assert_eq!(
            lookup.verify(Some(&bearer(&plain))).await.unwrap().id,
            rec.id
        );
        assert_eq!(repo.reads.load(Ordering::SeqCst), 1);
        // Same id, wrong secret: refused without a read (the id is known).
        let last = if plain.ends_with('a') { 'b' } else { 'a' };
        let forged = format!("{}{last}", &plain[..plain.len() - 1]);
        assert!(lookup.verify(Some(&bearer(&forged))).await.is_err());
        assert_eq!(repo.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn random_key_ids_cannot_hammer_the_store() {
        let repo = Arc::new(Counting::default());
        let lookup = KeyLookup::new(
            Arc::new(ArcSwap::from_pointee(KeyTable::default())),
            repo.clone(),
        );
        let started = Instant::now();
        let mut keys = Vec::new();
        for _ in 0..500 {
            keys.push(flm_core::keys::generate("x", Utc::now()).unwrap().1);
        }
        for k in &keys {
            assert_eq!(
                lookup.verify(Some(&bearer(k))).await.unwrap_err(),
                AuthFailure::InvalidOrRevokedApiKey
            );
        }
        let reads = repo.reads.load(Ordering::SeqCst);
        let seconds = u32::try_from(started.elapsed().as_secs()).unwrap() + 1;
        assert!(
            reads <= LOOKUPS_PER_SECOND * seconds,
            "{reads} reads in {seconds} s"
        );
        // The same missing id again, even in a new second: remembered, not read again.
        let first = &keys[0];
        tokio::time::sleep(Duration::from_millis(1100)).await;
        lookup.verify(Some(&bearer(first))).await.unwrap_err();
        assert_eq!(repo.reads.load(Ordering::SeqCst), reads);
        // A reload forgets the misses.
        lookup.forget_misses();
        lookup.verify(Some(&bearer(first))).await.unwrap_err();
        assert_eq!(repo.reads.load(Ordering::SeqCst), reads + 1);
        // Malformed keys never reach the store.
        for bad in ["flm_nothex_x", "sk-123", ""] {
            lookup.verify(Some(&bearer(bad))).await.unwrap_err();
        }
        lookup.verify(None).await.unwrap_err();
        assert_eq!(repo.reads.load(Ordering::SeqCst), reads + 1);
    }
}
