//! The ACME account: created once per directory, stored 0600 in the state directory,
//! reused for every later issuance and renewal.
//!
//! One file per directory URL (`acme-account-<hash>.json`): an account exists on one
//! CA only, so switching between staging and production must not reuse (and then
//! fail with) the other's credentials, and switching back must find the old account.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use instant_acme::{Account, AccountCredentials, NewAccount};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{map_acme_error, AcmeHttp};
use crate::error::{AcmeError, Result};
use crate::fs;

/// The account file for `directory_url` in `state_dir`.
pub fn account_path(state_dir: &Path, directory_url: &str) -> PathBuf {
    let digest = Sha256::digest(directory_url.as_bytes());
    state_dir.join(format!("acme-account-{}.json", hex::encode(&digest[..6])))
}

/// What is stored: the `instant-acme` credentials (account URL + PKCS#8 key) plus what
/// a human needs to recognise the file.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    contact_email: String,
    account_url: String,
    created_at: DateTime<Utc>,
    credentials: AccountCredentials,
}

/// A usable account and whether it came from the state directory.
pub(crate) struct LoadedAccount {
    pub(crate) account: Account,
    pub(crate) reused: bool,
}

/// Loads the stored account for `directory_url`, or registers a new one (agreeing to
/// the CA's terms of service) and stores it.
///
/// A stored account whose contact differs from `contact_email` gets its contact
/// updated. An unreadable or corrupt file is replaced by a new account (logged): the
/// account holds no certificates, so losing it costs one registration.
pub(crate) async fn load_or_create(
    http: &AcmeHttp,
    state_dir: &Path,
    directory_url: &str,
    contact_email: &str,
) -> Result<LoadedAccount> {
    let path = account_path(state_dir, directory_url);
    if let Some(stored) = read_stored(&path) {
        let account_url = stored.account_url.clone();
        let previous_email = stored.contact_email.clone();
        let account = Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(stored.credentials)
            .await
            .map_err(map_acme_error)?;
        if previous_email != contact_email {
            let contact = mailto(contact_email);
            account
                .update_contacts(&[contact.as_str()])
                .await
                .map_err(map_acme_error)?;
            let stored = read_stored(&path);
            if let Some(mut s) = stored {
                s.contact_email = contact_email.to_owned();
                write_stored(&path, &s)?;
            }
            tracing::info!(account = %account_url, "updated ACME account contact");
        }
        tracing::debug!(account = %account_url, "reusing ACME account");
        return Ok(LoadedAccount {
            account,
            reused: true,
        });
    }
    let account = create(http, &path, directory_url, contact_email).await?;
    Ok(LoadedAccount {
        account,
        reused: false,
    })
}

/// Registers a new account and stores it at `path` (replacing any previous file).
pub(crate) async fn create(
    http: &AcmeHttp,
    path: &Path,
    directory_url: &str,
    contact_email: &str,
) -> Result<Account> {
    let contact = mailto(contact_email);
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &[contact.as_str()],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory_url.to_owned(),
            None,
        )
        .await
        .map_err(map_acme_error)?;
    let stored = StoredAccount {
        directory_url: directory_url.to_owned(),
        contact_email: contact_email.to_owned(),
        account_url: account.id().to_owned(),
        created_at: Utc::now(),
        credentials,
    };
    write_stored(path, &stored)?;
    tracing::info!(account = %account.id(), file = %path.display(), "registered ACME account");
    Ok(account)
}

fn mailto(email: &str) -> String {
    format!("mailto:{email}")
}

fn read_stored(path: &Path) -> Option<StoredAccount> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read ACME account file; registering a new account");
            return None;
        }
    };
    match serde_json::from_slice::<StoredAccount>(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "corrupt ACME account file; registering a new account");
            None
        }
    }
}

fn write_stored(path: &Path, stored: &StoredAccount) -> Result<()> {
    let json = serde_json::to_vec_pretty(stored)
        .map_err(|e| AcmeError::Protocol(format!("cannot serialise account credentials: {e}")))?;
    fs::write_atomic(path, &json, fs::SECRET_MODE)
}
