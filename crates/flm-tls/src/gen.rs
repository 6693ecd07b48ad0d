//! Shared pieces of certificate generation: validity windows, serials, leaf parameters,
//! storing a pair and deciding whether a stored pair can be reused.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::bundle::{bundle_from_pem, read_pair, CertBundle};
use crate::error::{Result, TlsError};
use crate::fs::{self, CERT_MODE, KEY_MODE};
use crate::san::San;
use crate::{BACKDATE_MINUTES, LEAF_VALIDITY_DAYS, ORGANIZATION};

pub(crate) fn to_offset(t: DateTime<Utc>) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| TlsError::Generate(format!("time {t} out of range: {e}")))
}

/// 128 random bits, top bit cleared so the DER INTEGER stays positive and ≤ 20 bytes.
pub(crate) fn random_serial() -> SerialNumber {
    let mut b = rand::random::<[u8; 16]>();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// A validity window `[now - BACKDATE_MINUTES, now + days]`.
///
/// The start is backdated a little so a client whose clock is a few minutes behind the
/// server's does not reject a certificate that was just created.
pub(crate) fn set_validity(
    params: &mut CertificateParams,
    now: DateTime<Utc>,
    days: i64,
) -> Result<()> {
    params.not_before = to_offset(now - Duration::minutes(BACKDATE_MINUTES))?;
    params.not_after = to_offset(now + Duration::days(days))?;
    Ok(())
}

pub(crate) fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// Parameters of a TLS server certificate (not a CA, server-auth only).
///
/// `CA:FALSE` is explicit: rustls/webpki reject an end-entity certificate that claims to
/// be a CA, even when it is the self-signed trust anchor itself.
pub(crate) fn server_params(
    common_name: &str,
    sans: &[San],
    now: DateTime<Utc>,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys sign; `keyEncipherment` is for RSA key transport and does not apply.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, LEAF_VALIDITY_DAYS)?;
    Ok(params)
}

/// A fresh ECDSA P-256 key: small, fast handshakes, accepted by every current client.
pub(crate) fn new_key() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// Stores a freshly generated pair (key first, then certificate; each atomically) and
/// returns the checked bundle.
///
/// The two renames are not one atomic step. A crash between them leaves a new key next
/// to the old certificate; the next start sees the mismatch and generates a new pair,
/// so the state heals itself.
pub(crate) fn store_pair(
    cert_pem: &str,
    key_pem: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertBundle> {
    fs::write_atomic(key_path, key_pem.as_bytes(), KEY_MODE)?;
    fs::write_atomic(cert_path, cert_pem.as_bytes(), CERT_MODE)?;
    bundle_from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), cert_path, key_path)
}

/// The stored pair at `cert_path`/`key_path` if it can be kept at `now`: readable,
/// matching, more than `RENEW_BEFORE_DAYS` of validity left, naming every SAN in
/// `wanted`, and passing `extra` (e.g. "signed by the current CA"). Otherwise `None`,
/// with the reason logged.
pub(crate) fn reusable(
    cert_path: &Path,
    key_path: &Path,
    wanted: &[San],
    now: DateTime<Utc>,
    extra: impl Fn(&CertBundle) -> Option<&'static str>,
) -> Option<CertBundle> {
    if !cert_path.exists() && !key_path.exists() {
        return None;
    }
    let reason = match read_pair(cert_path, key_path) {
        Err(e) => {
            tracing::warn!(error = %e, "stored certificate unusable; generating a new one");
            return None;
        }
        Ok(b) if b.needs_renewal(now) => "fewer than the renewal threshold of days left",
        Ok(b) if !b.covers(wanted) => "does not name every requested address",
        Ok(b) => match extra(&b) {
            Some(r) => r,
            None => {
                // Someone may have copied the key with looser permissions; tighten.
                if let Err(e) = fs::set_mode(key_path, KEY_MODE) {
                    tracing::warn!(error = %e, "cannot restrict key file permissions");
                }
                return Some(b);
            }
        },
    };
    tracing::info!(cert = %cert_path.display(), reason, "rotating certificate");
    None
}
