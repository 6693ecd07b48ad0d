//! Rows for the `certificates` table of `security.db` (spec 50-data).
//!
//! This crate does no storage; the proxy integrator upserts these records by `id`.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::bundle::CertBundle;
use crate::ca::LocalCa;

/// The `mode` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertMode {
    /// `dev-selfsigned` (`self-signed` in the table).
    SelfSigned,
    /// `packaged-ca`: the server certificate and the local root CA.
    PackagedCa,
    /// `https-acme`.
    Acme,
}

impl CertMode {
    /// The value stored in the `mode` column.
    pub fn as_str(self) -> &'static str {
        match self {
            CertMode::SelfSigned => "self-signed",
            CertMode::PackagedCa => "packaged-ca",
            CertMode::Acme => "acme",
        }
    }

    /// Parses a `mode` column value.
    pub fn parse(s: &str) -> Option<CertMode> {
        match s {
            "self-signed" => Some(CertMode::SelfSigned),
            "packaged-ca" => Some(CertMode::PackagedCa),
            "acme" => Some(CertMode::Acme),
            _ => None,
        }
    }
}

impl fmt::Display for CertMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `id` of the local root CA's row.
pub const LOCAL_CA_RECORD_ID: &str = "packaged-ca-root";

/// One row of `certificates`: `id`, `cert_path`, `key_path`, `mode`, `domain`,
/// `expires_at`, `updated_at`.
///
/// `id` is a stable slot, not the fingerprint: `self-signed`, `packaged-ca`,
/// `packaged-ca-root` (the CA itself) and `acme:<domain>`. A renewal therefore updates
/// its row in place (upsert), `flm security certificates list` shows one row per
/// certificate the proxy actually uses, and the ACME fallback (spec 30-proxy §10.4,
/// step 1) finds the last certificate for a domain by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Stable slot id (see the type docs).
    pub id: String,
    /// Certificate file.
    pub cert_path: String,
    /// Private key file.
    pub key_path: String,
    /// `self-signed`, `packaged-ca` or `acme`.
    pub mode: CertMode,
    /// ACME domain; `None` for the local modes.
    pub domain: Option<String>,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
    /// When this row was written.
    pub updated_at: DateTime<Utc>,
}

impl CertificateRecord {
    /// The row for a server certificate in `mode` (with its ACME `domain`, if any).
    pub fn from_bundle(
        bundle: &CertBundle,
        mode: CertMode,
        domain: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        CertificateRecord {
            id: record_id(mode, domain),
            cert_path: bundle.cert_path.display().to_string(),
            key_path: bundle.key_path.display().to_string(),
            mode,
            domain: domain.map(str::to_owned),
            expires_at: bundle.not_after,
            updated_at: now,
        }
    }

    /// The row for the local root CA (`id` = [`LOCAL_CA_RECORD_ID`], mode `packaged-ca`),
    /// so `certificates list` shows when the CA itself expires.
    pub fn for_local_ca(ca: &LocalCa, now: DateTime<Utc>) -> Self {
        CertificateRecord {
            id: LOCAL_CA_RECORD_ID.to_owned(),
            cert_path: ca.cert_path().display().to_string(),
            key_path: ca.key_path().display().to_string(),
            mode: CertMode::PackagedCa,
            domain: None,
            expires_at: ca.not_after(),
            updated_at: now,
        }
    }

    /// The `is_expired` column of `certificates list`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// The `id` of the row for `mode` and `domain`.
pub fn record_id(mode: CertMode, domain: Option<&str>) -> String {
    match (mode, domain) {
        (CertMode::Acme, Some(d)) => format!("acme:{}", d.to_ascii_lowercase()),
        (m, _) => m.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_modes() {
        assert_eq!(record_id(CertMode::SelfSigned, None), "self-signed");
        assert_eq!(record_id(CertMode::PackagedCa, None), "packaged-ca");
        assert_eq!(
            record_id(CertMode::Acme, Some("Api.Example.com")),
            "acme:api.example.com"
        );
        for m in [CertMode::SelfSigned, CertMode::PackagedCa, CertMode::Acme] {
            assert_eq!(CertMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(CertMode::parse("dev-selfsigned"), None);
    }
}
