//! Reading facts out of an X.509 certificate (expiry, SANs, fingerprint, CA flag).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::san::San;

/// SHA-256 fingerprint of a DER certificate, as upper-case hex pairs joined by `:`
/// (`AA:BB:…`), the form browsers and `openssl x509 -fingerprint -sha256` show.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// What this crate needs to know about a certificate.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub sans: Vec<San>,
    pub fingerprint: String,
    pub is_ca: bool,
    /// DER `SubjectPublicKeyInfo`, compared with the private key's public half.
    pub spki: Vec<u8>,
    /// Serial number as upper-case hex (used to name the CA to `certutil`).
    pub serial_hex: String,
}

fn ts(t: i64) -> DateTime<Utc> {
    // Out-of-range timestamps cannot come out of a parsed `ASN1Time`; clamp anyway.
    DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Parses a DER certificate. The error string is the parser's message.
pub(crate) fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut sans = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(San::Dns(d.to_ascii_lowercase())),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(San::ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    sans.sort();
    sans.dedup();
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca);
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: ts(validity.not_before.timestamp()),
        not_after: ts(validity.not_after.timestamp()),
        sans,
        fingerprint: sha256_fingerprint(der),
        is_ca,
        spki: cert.public_key().raw.to_vec(),
        serial_hex: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
    })
}

/// Whether `der` carries a valid signature made by the key of `issuer_der`.
pub(crate) fn is_signed_by(der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(der),
        X509Certificate::from_der(issuer_der),
    ) else {
        return false;
    };
    cert.issuer() == issuer.subject() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Whether the first certificate of `bundle` is self-signed (verifies with its own key).
pub(crate) fn is_signed_by_self(bundle: &crate::CertBundle) -> bool {
    bundle
        .chain_der()
        .ok()
        .and_then(|c| c.first().map(|d| is_signed_by(d, d)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        let f = sha256_fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
    }
}
