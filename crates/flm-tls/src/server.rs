//! The rustls side: a [`ServerConfig`] whose certificate can be swapped while the
//! listener runs.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::bundle::CertBundle;
use crate::error::{Result, TlsError};

/// The only ALPN protocol offered: the proxy speaks HTTP/1.1 (hyper `http1`).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider used everywhere in this crate: `ring`, chosen explicitly so the
/// result does not depend on which provider some other crate installed as the process
/// default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(bundle: &CertBundle) -> Result<Arc<CertifiedKey>> {
    let chain = bundle.chain_der()?;
    let key = bundle.key_der()?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert_path: bundle.cert_path.clone(),
            key_path: bundle.key_path.clone(),
        },
        other => TlsError::from(other),
    })?;
    Ok(Arc::new(ck))
}

/// A `rustls` server configuration serving `bundle`: TLS 1.2 and 1.3 with rustls' safe
/// defaults, no client certificates, ALPN `http/1.1`.
///
/// The certificate is fixed for the life of the config. To renew without restarting
/// the listener use [`ReloadableResolver`] instead.
pub fn rustls_server_config(bundle: &CertBundle) -> Result<Arc<ServerConfig>> {
    ReloadableResolver::new(bundle)?.server_config()
}

struct Current {
    key: Arc<CertifiedKey>,
    fingerprint: String,
    not_after: DateTime<Utc>,
}

/// A [`ResolvesServerCert`] whose certificate is replaced atomically with
/// [`reload`](Self::reload).
///
/// Handshakes read the current certificate lock-free (`arc-swap`); a reload affects
/// every handshake that starts after it, while established connections keep the
/// certificate they negotiated. This is how a renewed certificate (daily renewal tick,
/// ACME renewal, LAN address change) takes effect without closing the listener.
pub struct ReloadableResolver {
    current: ArcSwap<Current>,
}

impl fmt::Debug for ReloadableResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.current.load();
        f.debug_struct("ReloadableResolver")
            .field("fingerprint", &c.fingerprint)
            .field("not_after", &c.not_after)
            .finish()
    }
}

impl ReloadableResolver {
    /// A resolver serving `bundle` (checked: the key must match the certificate).
    pub fn new(bundle: &CertBundle) -> Result<Arc<Self>> {
        Ok(Arc::new(ReloadableResolver {
            current: ArcSwap::from_pointee(Self::current_for(bundle)?),
        }))
    }

    fn current_for(bundle: &CertBundle) -> Result<Current> {
        Ok(Current {
            key: certified_key(bundle)?,
            fingerprint: bundle.sha256_fingerprint.clone(),
            not_after: bundle.not_after,
        })
    }

    /// Serves `bundle` from the next handshake on. On error the old certificate stays.
    pub fn reload(&self, bundle: &CertBundle) -> Result<()> {
        let next = Self::current_for(bundle)?;
        tracing::info!(fingerprint = %next.fingerprint, not_after = %next.not_after, "TLS certificate reloaded");
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Fingerprint (`AA:BB:…`) of the certificate currently served.
    pub fn fingerprint(&self) -> String {
        self.current.load().fingerprint.clone()
    }

    /// Expiry of the certificate currently served.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.current.load().not_after
    }

    /// A server configuration (as [`rustls_server_config`]) that asks this resolver for
    /// its certificate on every handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for ReloadableResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}
