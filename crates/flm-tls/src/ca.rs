//! `packaged-ca`: a local root CA, created once per machine, that signs short-lived
//! server certificates.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;

use crate::bundle::{leaf_info, parse_chain, CertBundle};
use crate::error::{Result, TlsError};
use crate::fs::{self, CERT_MODE, KEY_MODE};
use crate::san::{server_sans, San};
use crate::{
    gen, CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_VALIDITY_DAYS, SERVER_CERT_FILE,
    SERVER_COMMON_NAME, SERVER_KEY_FILE,
};

/// The local root CA: its certificate (public, installed in the OS trust store) and its
/// signing key (private, mode 0600, never leaves the machine).
///
/// `Debug` never prints the key.
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    sha256_fingerprint: String,
    serial_hex: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_after", &self.not_after)
            .field("sha256_fingerprint", &self.sha256_fingerprint)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// The directory holding the CA and the server certificates it issues.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The CA certificate as PEM (what clients and the OS trust store import).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
    /// `dir/flm-ca.crt`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
    /// `dir/flm-ca.key` (0600).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
    /// Start of the CA's validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }
    /// End of the CA's validity (10 years after creation).
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }
    /// SHA-256 fingerprint of the CA certificate, `AA:BB:…` (show it to users who
    /// import the CA by hand, so they can compare).
    pub fn sha256_fingerprint(&self) -> &str {
        &self.sha256_fingerprint
    }
    /// Serial number, upper-case hex (identifies the CA to `certutil -delstore`).
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
    /// Validity left at `now`. The proxy warns at start when this gets short
    /// (spec 70-packaging §3.2: "Root CA expiry warning at application start").
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        self.not_after - now
    }
}

/// Returns the local CA stored in `dir` (`flm-ca.crt`, `flm-ca.key`), creating it when
/// neither file exists.
///
/// An existing CA is never replaced behind the user's back, because every client that
/// trusts the old one would stop trusting the proxy: a half-present CA is
/// [`TlsError::CaIncomplete`], a wrong key [`TlsError::KeyMismatch`], an expired CA
/// [`TlsError::Expired`]. Use [`create_local_ca`] to replace it deliberately.
pub fn ensure_local_ca(dir: &Path, now: DateTime<Utc>) -> Result<LocalCa> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => create_local_ca(dir, now),
        (true, false) => Err(TlsError::CaIncomplete {
            missing: key_path,
            present: cert_path,
        }),
        (false, true) => Err(TlsError::CaIncomplete {
            missing: cert_path,
            present: key_path,
        }),
        (true, true) => load_local_ca(&cert_path, &key_path, now),
    }
}

/// Creates a new local CA in `dir`, replacing any existing one.
///
/// ECDSA P-256, `CN=FLM Local CA, O=FLM`, basic constraints `CA:TRUE, pathlen:0` (it
/// signs server certificates only, never another CA), key usage `keyCertSign` +
/// `cRLSign`, valid [`CA_VALIDITY_DAYS`] days. The new CA must be installed in the OS
/// trust store again ([`crate::trust::install_ca`]).
pub fn create_local_ca(dir: &Path, now: DateTime<Utc>) -> Result<LocalCa> {
    fs::ensure_private_dir(dir)?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let key = gen::new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = gen::dn(CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(gen::random_serial());
    gen::set_validity(&mut params, now, CA_VALIDITY_DAYS)?;
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    fs::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
    fs::write_atomic(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
    let ca = from_pem(cert.pem().as_bytes(), &key_pem, &cert_path, &key_path)?;
    tracing::info!(
        cert = %cert_path.display(),
        fingerprint = %ca.sha256_fingerprint,
        "created local root CA; install it in the OS trust store (`flm security install-ca`)"
    );
    Ok(ca)
}

/// Loads a CA from its certificate and key files and checks it is usable at `now`.
pub fn load_local_ca(cert_path: &Path, key_path: &Path, now: DateTime<Utc>) -> Result<LocalCa> {
    let cert_bytes = fs::read(cert_path)?;
    let key_bytes = fs::read(key_path)?;
    let key_pem = String::from_utf8(key_bytes).map_err(|_| TlsError::NotPem {
        path: key_path.to_path_buf(),
    })?;
    // Classify the key file like `load_bundle` does (not PEM / no key) before handing
    // it to rcgen.
    crate::bundle::parse_key(key_pem.as_bytes(), key_path)?;
    let ca = from_pem(&cert_bytes, &key_pem, cert_path, key_path)?;
    if now >= ca.not_after {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            not_after: ca.not_after,
        });
    }
    if now < ca.not_before {
        return Err(TlsError::NotYetValid {
            path: cert_path.to_path_buf(),
            not_before: ca.not_before,
        });
    }
    Ok(ca)
}

fn from_pem(
    cert_bytes: &[u8],
    key_pem: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<LocalCa> {
    let chain = parse_chain(cert_bytes, cert_path)?;
    let info = leaf_info(&chain, cert_path)?;
    if !info.is_ca {
        return Err(TlsError::NotACa {
            path: cert_path.to_path_buf(),
        });
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::InvalidKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if key.subject_public_key_info() != info.spki {
        return Err(TlsError::KeyMismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        });
    }
    let cert_der = chain
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::EmptyChain {
            path: cert_path.to_path_buf(),
        })?;
    let issuer =
        Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| TlsError::InvalidCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(LocalCa {
        dir: cert_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        cert_pem: String::from_utf8_lossy(cert_bytes).into_owned(),
        cert_der,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.fingerprint,
        serial_hex: info.serial_hex,
        issuer,
    })
}

/// Returns the `packaged-ca` server certificate in the CA's directory
/// (`server.pem`/`server.key`), issuing a new one when needed.
///
/// SANs: `localhost`, `127.0.0.1`, `::1` plus `sans` — pass the configured listen
/// address and the machine's actual private (LAN) addresses. Spec 30-proxy §10.5 lists
/// the RFC 1918 *ranges* (`10.0.0.0/8`, …); an X.509 IP-address SAN names one address,
/// not a range (ranges exist only in name constraints, which clients do not use to
/// match a server name), so the concrete addresses are included instead. When the LAN
/// address changes, the SAN check fails and a new certificate is issued at the next
/// start — no new CA import is needed, the CA stays the same.
///
/// Valid [`crate::LEAF_VALIDITY_DAYS`] days (never past the CA's own expiry), reused
/// while more than [`crate::RENEW_BEFORE_DAYS`] days are left, all SANs are covered and
/// it was signed by this CA (a certificate from a previous CA is replaced).
pub fn issue_server_cert(ca: &LocalCa, sans: &[San], now: DateTime<Utc>) -> Result<CertBundle> {
    let wanted = server_sans(sans);
    let cert_path = ca.dir.join(SERVER_CERT_FILE);
    let key_path = ca.dir.join(SERVER_KEY_FILE);
    fs::ensure_private_dir(&ca.dir)?;
    let ca_der = ca.cert_der.clone();
    if let Some(b) = gen::reusable(&cert_path, &key_path, &wanted, now, |b| {
        let signed = b
            .chain_der()
            .ok()
            .and_then(|c| {
                c.first()
                    .map(|leaf| crate::inspect::is_signed_by(leaf, &ca_der))
            })
            .unwrap_or(false);
        (!signed).then_some("not issued by the current local CA")
    }) {
        tracing::debug!(fingerprint = %b.sha256_fingerprint, "reusing server certificate");
        return Ok(b);
    }
    let key = gen::new_key()?;
    let mut params = gen::server_params(SERVER_COMMON_NAME, &wanted, now)?;
    params.use_authority_key_identifier_extension = true;
    let ca_end = gen::to_offset(ca.not_after)?;
    if params.not_after > ca_end {
        params.not_after = ca_end;
    }
    let cert = params.signed_by(&key, &ca.issuer)?;
    let bundle = gen::store_pair(&cert.pem(), &key.serialize_pem(), &cert_path, &key_path)?;
    tracing::info!(
        cert = %cert_path.display(),
        fingerprint = %bundle.sha256_fingerprint,
        not_after = %bundle.not_after,
        "issued server certificate from the local CA"
    );
    Ok(bundle)
}
