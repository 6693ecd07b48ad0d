//! `dev-selfsigned`: one self-signed server certificate that clients trust directly.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::bundle::CertBundle;
use crate::error::Result;
use crate::san::{server_sans, San};
use crate::{fs, gen, DEV_CERT_FILE, DEV_KEY_FILE, SELF_SIGNED_COMMON_NAME};

/// Returns the `dev-selfsigned` certificate stored in `dir`, creating or rotating it
/// when needed.
///
/// The certificate names `localhost`, `127.0.0.1`, `::1` and every SAN in `sans` (give
/// the bind address and the machine's LAN addresses; `0.0.0.0`/`::` are ignored). It is
/// valid for [`crate::LEAF_VALIDITY_DAYS`] days and stored as `dir/dev-cert.pem` and
/// `dir/dev-key.pem` (`dir` 0700, key 0600, each written atomically).
///
/// The stored pair is reused while it has more than [`crate::RENEW_BEFORE_DAYS`] days
/// left and already names every requested SAN; otherwise a new key and certificate
/// replace it. A stored pair that cannot be read or whose key does not match is
/// replaced too (with a warning): it is our own generated material, nothing to keep.
pub fn ensure_self_signed(dir: &Path, sans: &[San], now: DateTime<Utc>) -> Result<CertBundle> {
    let wanted = server_sans(sans);
    let cert_path = dir.join(DEV_CERT_FILE);
    let key_path = dir.join(DEV_KEY_FILE);
    fs::ensure_private_dir(dir)?;
    if let Some(b) = gen::reusable(&cert_path, &key_path, &wanted, now, |b| {
        // Only reuse a certificate that really is self-signed (not, say, a server
        // certificate someone copied over the file).
        (!crate::inspect::is_signed_by_self(b)).then_some("not self-signed")
    }) {
        tracing::debug!(fingerprint = %b.sha256_fingerprint, "reusing self-signed certificate");
        return Ok(b);
    }
    let key = gen::new_key()?;
    let params = gen::server_params(SELF_SIGNED_COMMON_NAME, &wanted, now)?;
    let cert = params.self_signed(&key)?;
    let bundle = gen::store_pair(&cert.pem(), &key.serialize_pem(), &cert_path, &key_path)?;
    tracing::info!(
        cert = %cert_path.display(),
        fingerprint = %bundle.sha256_fingerprint,
        not_after = %bundle.not_after,
        "created self-signed certificate"
    );
    Ok(bundle)
}
