//! API keys: format, hashing and verification (DESIGN.md §3.2).
//!
//! A key is a high-entropy token, not a password: `flm_<id>_<secret>` where `id` is 16
//! lower-case hex characters and `secret` 32 characters of `[A-Za-z0-9]` (≈190 random
//! bits). Only the SHA-256 digest of the whole key is stored. Verification looks the
//! key up by its id (O(1)) and compares fixed-size digests in constant time. A slow
//! KDF (Argon2) is deliberately not used on the request path: with this much entropy
//! it adds no security, and it would turn every bad key into a CPU denial of service.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::CoreError;
use crate::key_scope::{is_expired, KeyBudget, KeyScope, RouteClass};

/// Prefix of every plaintext key.
pub const KEY_PREFIX: &str = "flm_";
/// Prefix of key ids as shown to users (`key_<16 hex>`).
pub const KEY_ID_PREFIX: &str = "key_";
const ID_HEX_LEN: usize = 16;
const SECRET_LEN: usize = 32;

/// SHA-256 digest of a plaintext key.
pub type KeyDigest = [u8; 32];

/// A stored key: metadata plus the digest, never the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// `key_<16 hex>`.
    pub id: String,
    /// Free text, not unique.
    pub label: String,
    /// SHA-256 of the plaintext key.
    pub digest: KeyDigest,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time; `None` while active.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Models and routes the key may use (unscoped: everything).
    pub scope: KeyScope,
    /// When the key stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Token budgets (none: unlimited).
    pub budget: KeyBudget,
}

/// What `flm api-keys list` shows: never the digest or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyMetadata {
    /// Key id.
    pub id: String,
    /// Label.
    pub label: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the key is revoked.
    pub revoked: bool,
    /// Model ids or patterns the key may use; absent: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Route classes the key may call; absent: every route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RouteClass>>,
    /// When the key stops working; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the key is expired (at the time of listing).
    #[serde(default)]
    pub expired: bool,
    /// Tokens per minute; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_tokens: Option<u64>,
}

impl From<&ApiKeyRecord> for ApiKeyMetadata {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            label: r.label.clone(),
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            revoked: r.revoked_at.is_some(),
            models: r.scope.models().map(<[String]>::to_vec),
            routes: r.scope.routes().map(<[RouteClass]>::to_vec),
            expires_at: r.expires_at,
            expired: is_expired(r.expires_at, Utc::now()),
            tpm: r.budget.tpm,
            monthly_tokens: r.budget.monthly_tokens,
        }
    }
}

/// A freshly created key: the plaintext exists only here, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewApiKey {
    /// Metadata of the key.
    #[serde(flatten)]
    pub metadata: ApiKeyMetadata,
    /// The plaintext key, shown exactly once.
    pub key: String,
    /// For rotation: the key this one replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_key_id: Option<String>,
}

/// Generates a new key: returns the record to store and the plaintext to show once.
pub fn generate(label: &str, now: DateTime<Utc>) -> Result<(ApiKeyRecord, String), CoreError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 200 {
        return Err(CoreError::InvalidInput(
            "a key label is required (1-200 characters)".into(),
        ));
    }
    let mut rng = rand::rng();
    let id_bytes: [u8; ID_HEX_LEN / 2] = rng.random();
    let id_hex = hex::encode(id_bytes);
    let secret = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
    let plain = format!("{KEY_PREFIX}{id_hex}_{secret}");
    let record = ApiKeyRecord {
        id: format!("{KEY_ID_PREFIX}{id_hex}"),
        label: label.to_owned(),
        digest: digest(&plain),
        created_at: now,
        revoked_at: None,
        scope: KeyScope::unscoped(),
        expires_at: None,
        budget: KeyBudget::default(),
    };
    Ok((record, plain))
}

/// SHA-256 of a plaintext key.
pub fn digest(plain: &str) -> KeyDigest {
    Sha256::digest(plain.as_bytes()).into()
}

/// The key id (`key_<hex>`) embedded in a plaintext key, if it has the FLM shape.
pub fn key_id_of(plain: &str) -> Option<&str> {
    let rest = plain.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(id)
}

/// Why a request failed authentication (audit `details.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailure {
    /// No `Authorization` header.
    MissingAuthorizationHeader,
    /// Not `Bearer <token>`.
    InvalidAuthorizationFormat,
    /// Unknown, malformed or revoked key.
    InvalidOrRevokedApiKey,
    /// A valid key past its expiry (answered exactly like a revoked key).
    ExpiredApiKey,
}

impl AuthFailure {
    /// The reason string of spec 40-security §12.2.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::MissingAuthorizationHeader => "missing_authorization_header",
            AuthFailure::InvalidAuthorizationFormat => "invalid_authorization_format",
            AuthFailure::InvalidOrRevokedApiKey => "invalid_or_revoked_api_key",
            AuthFailure::ExpiredApiKey => "expired_api_key",
        }
    }
}

/// What an authenticated key may do: its id, scope and expiry. Shared (`Arc`) by the
/// key table and the requests that used the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// `key_<16 hex>`.
    pub id: String,
    /// Models and routes the key may use.
    pub scope: KeyScope,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Token budgets.
    pub budget: KeyBudget,
}

impl KeyGrant {
    /// A grant without scope or expiry (keys that are never stored).
    pub fn unscoped(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            scope: KeyScope::unscoped(),
            expires_at: None,
            budget: KeyBudget::default(),
        }
    }
}

/// In-memory table of active keys, built from the store and swapped atomically by the
/// proxy when keys change. Lookups are O(1) by id; digests compare in constant time.
/// Scopes and expiry travel with each entry, so enforcing them costs no store read.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    by_hex_id: HashMap<String, (Arc<KeyGrant>, KeyDigest)>,
}

impl KeyTable {
    /// A table of the active (non-revoked) keys among `records`.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a ApiKeyRecord>) -> Self {
        let by_hex_id = records
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .filter_map(|r| {
                r.id.strip_prefix(KEY_ID_PREFIX)
                    .map(|hex| (hex.to_owned(), (Arc::new(grant_of(r)), r.digest)))
            })
            .collect();
        Self { by_hex_id }
    }

    /// Adds (or replaces) an active stored key; a revoked one is ignored.
    pub fn insert_record(&mut self, r: &ApiKeyRecord) {
        if r.revoked_at.is_some() {
            return;
        }
        if let Some(hex) = r.id.strip_prefix(KEY_ID_PREFIX) {
            self.by_hex_id
                .insert(hex.to_owned(), (Arc::new(grant_of(r)), r.digest));
        }
    }

    /// Adds an extra active key (e.g. the daemon's local CLI key, never stored).
    pub fn insert(&mut self, id: &str, plain: &str) -> Result<(), CoreError> {
        let hex = key_id_of(plain)
            .ok_or_else(|| CoreError::InvalidInput("not an FLM key".into()))?
            .to_owned();
        self.by_hex_id
            .insert(hex, (Arc::new(KeyGrant::unscoped(id)), digest(plain)));
        Ok(())
    }

    /// Number of active keys.
    pub fn len(&self) -> usize {
        self.by_hex_id.len()
    }

    /// Whether there is no active key.
    pub fn is_empty(&self) -> bool {
        self.by_hex_id.is_empty()
    }

    /// The FLM-shaped key of an `Authorization` header and its id (`key_<hex>`) when
    /// this table has no key with that id: the only case in which looking the key up
    /// in the store can change the answer.
    pub fn unknown_key<'a>(&self, authorization: Option<&'a [u8]>) -> Option<(&'a str, String)> {
        let token = bearer(authorization?).ok()?;
        let hex = key_id_of(token)?;
        (!self.by_hex_id.contains_key(hex)).then(|| (token, format!("{KEY_ID_PREFIX}{hex}")))
    }

    /// Verifies an `Authorization` header value; returns the key id. Ignores expiry:
    /// requests go through [`KeyTable::authorize`].
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<&str, AuthFailure> {
        self.lookup(authorization).map(|g| g.id.as_str())
    }

    /// Verifies an `Authorization` header value at `now`: the key's grant, or why it
    /// is refused (a key past its expiry: [`AuthFailure::ExpiredApiKey`], only once
    /// its secret matched).
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<&Arc<KeyGrant>, AuthFailure> {
        let grant = self.lookup(authorization)?;
        if is_expired(grant.expires_at, now) {
            return Err(AuthFailure::ExpiredApiKey);
        }
        Ok(grant)
    }

    fn lookup(&self, authorization: Option<&[u8]>) -> Result<&Arc<KeyGrant>, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::MissingAuthorizationHeader)?;
        let token = bearer(header)?;
        let hex = key_id_of(token).ok_or(AuthFailure::InvalidOrRevokedApiKey)?;
        let (grant, stored) = self
            .by_hex_id
            .get(hex)
            .ok_or(AuthFailure::InvalidOrRevokedApiKey)?;
        if bool::from(digest(token).ct_eq(stored)) {
            Ok(grant)
        } else {
            Err(AuthFailure::InvalidOrRevokedApiKey)
        }
    }
}

fn grant_of(r: &ApiKeyRecord) -> KeyGrant {
    KeyGrant {
        id: r.id.clone(),
        scope: r.scope.clone(),
        expires_at: r.expires_at,
        budget: r.budget,
    }
}

/// The token of a `Bearer <token>` header value.
fn bearer(header: &[u8]) -> Result<&str, AuthFailure> {
    let token = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))
        .ok_or(AuthFailure::InvalidAuthorizationFormat)?;
    Ok(std::str::from_utf8(token)
        .map_err(|_| AuthFailure::InvalidOrRevokedApiKey)?
        .trim())
}

/// Whether `plain` is the key of `record` and `record` is active (constant-time
/// digest comparison).
pub fn matches(record: &ApiKeyRecord, plain: &str) -> bool {
    record.revoked_at.is_none() && bool::from(digest(plain).ct_eq(&record.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_verify() {
        let (rec, plain) = generate("ci", Utc::now()).unwrap();
        assert!(plain.starts_with("flm_"));
        assert_eq!(plain.len(), 4 + 16 + 1 + 32);
        assert_eq!(key_id_of(&plain), rec.id.strip_prefix("key_"));
        let table = KeyTable::new([&rec]);
        let header = format!("Bearer {plain}");
        assert_eq!(table.verify(Some(header.as_bytes())), Ok(rec.id.as_str()));
    }

    #[test]
    fn failures_are_classified() {
        let (rec, plain) = generate("x", Utc::now()).unwrap();
        let table = KeyTable::new([&rec]);
        assert_eq!(
            table.verify(None),
            Err(AuthFailure::MissingAuthorizationHeader)
        );
        assert_eq!(
            table.verify(Some(format!("Basic {plain}").as_bytes())),
            Err(AuthFailure::InvalidAuthorizationFormat)
        );
        assert_eq!(
            table.verify(Some(b"Bearer nope")),
            Err(AuthFailure::InvalidOrRevokedApiKey)
        );
        // Right id, wrong secret.
        let forged = format!(
            "Bearer {}{}",
            &plain[..plain.len() - 1],
            if plain.ends_with('a') { 'b' } else { 'a' }
        );
        assert_eq!(
            table.verify(Some(forged.as_bytes())),
            Err(AuthFailure::InvalidOrRevokedApiKey)
        );
        // Revoked keys are not in the table.
        let revoked = ApiKeyRecord {
            revoked_at: Some(Utc::now()),
            ..rec
        };
        let table = KeyTable::new([&revoked]);
        assert_eq!(
            table.verify(Some(format!("Bearer {plain}").as_bytes())),
            Err(AuthFailure::InvalidOrRevokedApiKey)
        );
    }

    #[test]
    fn unknown_key_ids_are_told_apart_from_wrong_secrets() {
        let (rec, plain) = generate("known", Utc::now()).unwrap();
        let (new_rec, new_plain) = generate("new", Utc::now()).unwrap();
        let table = KeyTable::new([&rec]);
        let header = |k: &str| format!("Bearer {k}");
        // A known id (whatever the secret) never needs a lookup.
        assert_eq!(table.unknown_key(Some(header(&plain).as_bytes())), None);
        let new_header = header(&new_plain);
        let (token, id) = table.unknown_key(Some(new_header.as_bytes())).unwrap();
        assert_eq!(
            (token, id.as_str()),
            (new_plain.as_str(), new_rec.id.as_str())
        );
        assert!(matches(&new_rec, token));
        assert!(!matches(&new_rec, &plain));
        let revoked = ApiKeyRecord {
            revoked_at: Some(Utc::now()),
            ..new_rec
        };
        assert!(!matches(&revoked, &new_plain));
        // Not an FLM key, no header, not Bearer: nothing to look up.
        assert_eq!(table.unknown_key(Some(b"Bearer nope")), None);
        assert_eq!(table.unknown_key(None), None);
        assert_eq!(
            table.unknown_key(Some(format!("Basic {new_plain}").as_bytes())),
            None
        );
    }

    #[test]
    fn expired_keys_are_refused_and_grants_carry_the_scope() {
        let (rec, plain) = generate("x", Utc::now()).unwrap();
        let now = Utc::now();
        let scoped = ApiKeyRecord {
            scope: KeyScope::new(Some(vec!["tiny".into()]), Some(vec![RouteClass::Chat])).unwrap(),
            expires_at: Some(now + chrono::Duration::seconds(10)),
            ..rec
        };
        let table = KeyTable::new([&scoped]);
        let header = format!("Bearer {plain}");
        let g = table.authorize(Some(header.as_bytes()), now).unwrap();
        assert_eq!(g.id, scoped.id);
        assert_eq!(g.scope, scoped.scope);
        assert_eq!(
            table.authorize(Some(header.as_bytes()), now + chrono::Duration::seconds(10)),
            Err(AuthFailure::ExpiredApiKey)
        );
        // A wrong secret never learns that the key expired.
        let forged = format!(
            "Bearer {}{}",
            &plain[..plain.len() - 1],
            if plain.ends_with('a') { 'b' } else { 'a' }
        );
        assert_eq!(
            table.authorize(Some(forged.as_bytes()), now + chrono::Duration::days(1)),
            Err(AuthFailure::InvalidOrRevokedApiKey)
        );
        let meta = ApiKeyMetadata::from(&scoped);
        assert_eq!(meta.models.as_deref(), Some(&["tiny".to_owned()][..]));
        assert_eq!(meta.routes.as_deref(), Some(&[RouteClass::Chat][..]));
        assert!(!meta.expired);
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["routes"], serde_json::json!(["chat"]));
        // Unscoped keys list no scope fields at all.
        let (plain_rec, _) = generate("y", Utc::now()).unwrap();
        let json = serde_json::to_value(ApiKeyMetadata::from(&plain_rec)).unwrap();
        assert!(json.get("models").is_none() && json.get("expires_at").is_none());
    }

    #[test]
    fn labels_are_required() {
        assert!(generate("  ", Utc::now()).is_err());
    }
}
