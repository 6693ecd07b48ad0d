//! What `flm security certificates list` shows about a certificate file: subject,
//! issuer, SANs, validity, fingerprint, whether it is a CA and self-signed.

use std::path::Path;

use chrono::{DateTime, Utc};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::{leaf_info, parse_chain};
use crate::error::{Result, TlsError};

/// Facts about the first certificate of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject distinguished name (`CN=…`).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject alternative names (DNS names and IP addresses), sorted.
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// SHA-256 fingerprint, `AA:BB:…`.
    pub sha256_fingerprint: String,
    /// A CA certificate (basic constraints `CA:TRUE`).
    pub is_ca: bool,
    /// Signed by its own key.
    pub self_signed: bool,
}

/// Reads the first certificate of the PEM file at `path` (no key needed, no validity
/// check: an expired certificate is described, not refused).
pub fn describe_certificate(path: &Path) -> Result<CertSummary> {
    let bytes = crate::fs::read(path)?;
    let chain = parse_chain(&bytes, path)?;
    let info = leaf_info(&chain, path)?;
    let der = chain.first().ok_or_else(|| TlsError::EmptyChain {
        path: path.to_path_buf(),
    })?;
    let (subject, issuer) = match X509Certificate::from_der(der) {
        Ok((_, c)) => (c.subject().to_string(), c.issuer().to_string()),
        Err(_) => (String::new(), String::new()),
    };
    Ok(CertSummary {
        self_signed: crate::inspect::is_signed_by(der, der),
        subject,
        issuer,
        sans: info.sans.iter().map(ToString::to_string).collect(),
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.fingerprint,
        is_ca: info.is_ca,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    #[test]
    fn describes_a_self_signed_certificate_and_its_ca() {
        let dir = tempfile::TempDir::new().unwrap();
        let now = Utc::now();
        let b = crate::ensure_self_signed(dir.path(), &crate::server_sans(&[]), now).unwrap();
        let d = describe_certificate(&b.cert_path).unwrap();
        assert!(d.self_signed && !d.is_ca);
        assert!(d.subject.contains("CN="), "{}", d.subject);
        assert!(d.sans.iter().any(|s| s == "localhost"), "{:?}", d.sans);
        assert_eq!(d.sha256_fingerprint, b.sha256_fingerprint);
        assert_eq!(d.not_after, b.not_after);
        let ca = crate::ensure_local_ca(&dir.path().join("ca"), now).unwrap();
        let c = describe_certificate(ca.cert_path()).unwrap();
        assert!(c.is_ca && c.self_signed);
        let server = crate::issue_server_cert(&ca, &crate::server_sans(&[]), now).unwrap();
        let s = describe_certificate(&server.cert_path).unwrap();
        assert!(!s.self_signed && !s.is_ca);
        assert_eq!(s.issuer, c.subject);
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "nope").unwrap();
        assert!(describe_certificate(&bad).is_err());
    }
}
