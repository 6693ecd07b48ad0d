//! [`CertBundle`]: a certificate chain with its key, and loading one from PEM files.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, TlsError};
use crate::inspect::{inspect, CertInfo};
use crate::san::San;
use crate::{fs, RENEW_BEFORE_DAYS};

/// A server certificate (chain) and its private key, as PEM, with the facts the proxy
/// needs about it.
///
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// The chain as PEM: the server certificate first, then any intermediates.
    pub cert_pem: String,
    /// The private key as PEM (PKCS#8). Secret.
    pub key_pem: String,
    /// Where `cert_pem` is stored.
    pub cert_path: PathBuf,
    /// Where `key_pem` is stored (mode 0600 on Unix).
    pub key_path: PathBuf,
    /// Start of validity of the server certificate.
    pub not_before: DateTime<Utc>,
    /// End of validity of the server certificate.
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the server certificate's DER, `AA:BB:…`.
    pub sha256_fingerprint: String,
    /// The subject alternative names in the server certificate (sorted).
    pub sans: Vec<San>,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("sha256_fingerprint", &self.sha256_fingerprint)
            .field("sans", &self.sans)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl CertBundle {
    /// Validity left at `now` (negative once expired).
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        self.not_after - now
    }

    /// Whether the certificate should be replaced at `now`: fewer than
    /// [`RENEW_BEFORE_DAYS`] days left, or not valid yet. The proxy checks this at start
    /// and on its daily renewal tick.
    pub fn needs_renewal(&self, now: DateTime<Utc>) -> bool {
        now < self.not_before || self.remaining(now) <= Duration::days(RENEW_BEFORE_DAYS)
    }

    /// Whether the certificate has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.not_after
    }

    /// Whether the certificate names every SAN in `wanted`.
    pub fn covers(&self, wanted: &[San]) -> bool {
        crate::san::covers(&self.sans, wanted)
    }

    /// The chain as DER, server certificate first.
    pub fn chain_der(&self) -> Result<Vec<CertificateDer<'static>>> {
        parse_chain(self.cert_pem.as_bytes(), &self.cert_path)
    }

    /// The private key as DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        parse_key(self.key_pem.as_bytes(), &self.key_path)
    }
}

/// Loads and checks a certificate chain and its key from PEM files, at the current time.
///
/// See [`load_bundle_at`].
pub fn load_bundle(cert_path: &Path, key_path: &Path) -> Result<CertBundle> {
    load_bundle_at(cert_path, key_path, Utc::now())
}

/// Loads and checks a certificate chain and its key from PEM files.
///
/// Checks, each with its own [`TlsError`] variant naming the file: both files readable
/// ([`TlsError::Unreadable`]), PEM ([`TlsError::NotPem`]), at least one certificate
/// ([`TlsError::EmptyChain`]) and a key ([`TlsError::NoPrivateKey`]), parseable
/// ([`TlsError::InvalidCertificate`], [`TlsError::InvalidKey`]), the key belongs to the
/// first certificate ([`TlsError::KeyMismatch`]), and that certificate is valid at `now`
/// ([`TlsError::Expired`], [`TlsError::NotYetValid`]).
pub fn load_bundle_at(cert_path: &Path, key_path: &Path, now: DateTime<Utc>) -> Result<CertBundle> {
    let bundle = read_pair(cert_path, key_path)?;
    if now >= bundle.not_after {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            not_after: bundle.not_after,
        });
    }
    if now < bundle.not_before {
        return Err(TlsError::NotYetValid {
            path: cert_path.to_path_buf(),
            not_before: bundle.not_before,
        });
    }
    Ok(bundle)
}

/// Everything of [`load_bundle_at`] except the validity-period check.
pub(crate) fn read_pair(cert_path: &Path, key_path: &Path) -> Result<CertBundle> {
    let cert_bytes = fs::read(cert_path)?;
    let key_bytes = fs::read(key_path)?;
    bundle_from_pem(&cert_bytes, &key_bytes, cert_path, key_path)
}

/// Builds a checked bundle from PEM bytes; `cert_path`/`key_path` are where they live.
pub(crate) fn bundle_from_pem(
    cert_bytes: &[u8],
    key_bytes: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertBundle> {
    let chain = parse_chain(cert_bytes, cert_path)?;
    let key = parse_key(key_bytes, key_path)?;
    let info = leaf_info(&chain, cert_path)?;
    check_key_matches(&info, key, cert_path, key_path)?;
    Ok(CertBundle {
        cert_pem: String::from_utf8_lossy(cert_bytes).into_owned(),
        key_pem: String::from_utf8_lossy(key_bytes).into_owned(),
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.fingerprint,
        sans: info.sans,
    })
}

pub(crate) fn leaf_info(chain: &[CertificateDer<'_>], path: &Path) -> Result<CertInfo> {
    let leaf = chain.first().ok_or_else(|| TlsError::EmptyChain {
        path: path.to_path_buf(),
    })?;
    inspect(leaf).map_err(|reason| TlsError::InvalidCertificate {
        path: path.to_path_buf(),
        reason,
    })
}

/// Whether `bytes` holds at least one PEM section of any kind.
fn has_pem_section(bytes: &[u8]) -> bool {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).any(|s| s.is_ok())
}

pub(crate) fn parse_chain(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        match item {
            Ok(c) => chain.push(c),
            Err(e) => {
                return Err(TlsError::InvalidCertificate {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
    }
    if chain.is_empty() {
        if has_pem_section(bytes) {
            return Err(TlsError::EmptyChain {
                path: path.to_path_buf(),
            });
        }
        return Err(TlsError::NotPem {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

pub(crate) fn parse_key(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(k) => Ok(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            if has_pem_section(bytes) {
                Err(TlsError::NoPrivateKey {
                    path: path.to_path_buf(),
                })
            } else {
                Err(TlsError::NotPem {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(e) => Err(TlsError::InvalidKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Compares the key's public half with the certificate's `SubjectPublicKeyInfo`.
fn check_key_matches(
    info: &CertInfo,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<()> {
    let provider = crate::server::provider();
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::InvalidKey {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    match signing.public_key() {
        Some(spki) if spki.as_ref() == info.spki.as_slice() => Ok(()),
        Some(_) => Err(TlsError::KeyMismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }),
        None => {
            // The provider cannot derive the public key for this algorithm; rustls then
            // accepts the pair too (`CertifiedKey::from_der`). A wrong key would fail
            // every handshake, which is loud enough.
            tracing::debug!(key = %key_path.display(), "cannot check key/certificate match for this key type");
            Ok(())
        }
    }
}
