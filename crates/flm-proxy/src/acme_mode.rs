//! `https-acme` (spec 30-proxy §10.3/§10.4): the certificate comes from an ACME CA
//! through `flm-acme`, answered over HTTP-01 on the proxy's HTTP port. Fallback order:
//! a fresh certificate → the existing unexpired one (`flm_acme::obtain_or_reuse`) →
//! `dev-selfsigned` with the ACME error in `last_error` → error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flm_acme::{AcmeConfig, AcmeError, Challenge, Http01Responder, Obtained};
use flm_core::proxy::{AcmeChallenge, ProxyConfig, ProxyError, ProxyMode, TlsInfo};
use flm_core::CoreError;
use flm_tls::{CertBundle, ReloadableResolver};
use tokio::sync::watch;

use crate::tls_mode::TlsSetup;

/// Where ACME certificates come from; filled by the composition root.
#[derive(Clone, Debug, Default)]
pub struct AcmeDeps {
    /// ACME directory; `None` = from the environment (`FLM_ACME_DIRECTORY`, else
    /// `FLM_ACME_USE_PROD=true` → production, else Let's Encrypt staging).
    pub directory_url: Option<String>,
    /// Extra trust root for the ACME server's own HTTPS (a private or test CA such as
    /// pebble's).
    pub root_ca_pem: Option<Vec<u8>>,
}

/// How often the certificate is checked for renewal (spec 30-proxy §10.3).
const RENEW_CHECK: Duration = Duration::from_secs(24 * 3600);

fn invalid(msg: String) -> CoreError {
    ProxyError::InvalidConfig(msg).into()
}

/// The `flm-acme` configuration for `config`; DNS-01 is refused unless built with
/// `dns01-preview` (and, even then, is not wired to DNS profiles yet).
pub fn acme_config(
    deps: &AcmeDeps,
    config: &ProxyConfig,
    certs_dir: &Path,
) -> Result<AcmeConfig, CoreError> {
    if config.acme_challenge == AcmeChallenge::Dns01 {
        return Err(invalid(if cfg!(feature = "dns01-preview") {
            "the dns-01 challenge needs a DNS credential profile, which the proxy cannot use yet; use --challenge http-01".into()
        } else {
            "the dns-01 challenge is not available in this build (it needs the dns01-preview feature); use --challenge http-01".into()
        }));
    }
    let email = config.acme_email.as_deref().unwrap_or_default().trim();
    let domain = config.acme_domain.as_deref().unwrap_or_default().trim();
    let directory = deps
        .directory_url
        .clone()
        .unwrap_or_else(|| flm_acme::directory_url_from_env(|k| std::env::var(k).ok()));
    let mut c = AcmeConfig::new(
        directory,
        email,
        vec![domain.to_owned()],
        Challenge::Http01,
        acme_dir(certs_dir),
    );
    c.root_ca_pem = deps.root_ca_pem.clone();
    c.validate()
        .map_err(|e| invalid(format!("invalid https-acme settings: {e}")))?;
    Ok(c)
}

/// `<certs>/acme`: ACME account, certificates and keys.
pub fn acme_dir(certs_dir: &Path) -> PathBuf {
    certs_dir.join("acme")
}

/// What the handle reports for an ACME certificate.
pub fn info(b: &CertBundle) -> TlsInfo {
    TlsInfo {
        cert_path: b.cert_path.display().to_string(),
        fingerprint_sha256: b.sha256_fingerprint.clone(),
        not_after: b.not_after.to_rfc3339(),
        // Issued by a public CA: clients already trust it.
        trust_cert_path: String::new(),
        sans: b.sans.iter().map(ToString::to_string).collect(),
    }
}

/// The outcome of the start sequence.
pub struct Started {
    /// Certificate material.
    pub tls: TlsSetup,
    /// `https-acme`, or `dev-selfsigned` after a fallback.
    pub mode: ProxyMode,
    /// Why ACME did not deliver, when it did not.
    pub last_error: Option<String>,
    /// Expiry of the ACME certificate in use (`None` after a fallback).
    pub acme_not_after: Option<DateTime<Utc>>,
    /// The ACME certificate in use (`None` after a fallback).
    pub acme_bundle: Option<CertBundle>,
}

/// Issues (or reuses) the certificate, falling back to `dev-selfsigned`. The HTTP-01
/// route must already be served on the HTTP port.
pub async fn start(
    acme: &AcmeConfig,
    responder: &Http01Responder,
    certs_dir: &Path,
    bind: IpAddr,
    lan: Option<IpAddr>,
) -> Result<Started, CoreError> {
    let resolver_err =
        |e: flm_tls::TlsError| invalid(format!("cannot load the ACME certificate: {e}"));
    match flm_acme::obtain_or_reuse(acme, responder).await {
        Ok(obtained) => {
            let last_error = match &obtained {
                Obtained::Issued(_) => None,
                Obtained::Reused { bundle, error } => Some(format!(
                    "ACME issuance failed ({error}); reusing the certificate valid until {}",
                    bundle.not_after.to_rfc3339()
                )),
            };
            let bundle = obtained.bundle();
            let resolver = ReloadableResolver::new(bundle).map_err(resolver_err)?;
            tracing::info!(not_after = %bundle.not_after, "ACME certificate ready");
            Ok(Started {
                tls: TlsSetup {
                    resolver,
                    info: info(bundle),
                },
                mode: ProxyMode::HttpsAcme,
                last_error,
                acme_not_after: Some(bundle.not_after),
                acme_bundle: Some(bundle.clone()),
            })
        }
        Err(e @ AcmeError::InvalidConfig { .. }) => {
            Err(invalid(format!("invalid https-acme settings: {e}")))
        }
        Err(e) => {
            tracing::warn!(error = %e, "ACME issuance failed; falling back to dev-selfsigned");
            let dir = certs_dir.to_path_buf();
            let fallback = tokio::task::spawn_blocking(move || {
                crate::tls_mode::setup(ProxyMode::DevSelfsigned, &dir, bind, lan)
            })
            .await
            .map_err(|j| invalid(format!("certificate task failed: {j}")))?;
            match fallback {
                Ok(tls) => {
                    let note = format!(
                        "ACME issuance failed ({e}); serving a dev-selfsigned certificate instead (clients must trust {}); ACME is retried every 24 h",
                        tls.info.trust_cert_path
                    );
                    Ok(Started {
                        tls,
                        mode: ProxyMode::DevSelfsigned,
                        last_error: Some(note),
                        acme_not_after: None,
                        acme_bundle: None,
                    })
                }
                Err(e2) => Err(invalid(format!(
                    "ACME issuance failed ({e}) and the dev-selfsigned fallback failed too ({e2}); fix the ACME problem or start with --mode local-http"
                ))),
            }
        }
    }
}

/// What the renewal loop reports to the instance's handle.
pub type Report = Arc<dyn Fn(ProxyMode, Option<String>, Option<&CertBundle>) + Send + Sync>;

/// Every 24 h: renews the ACME certificate when 20 days or less remain, or retries
/// ACME after a fallback; swaps the certificate in without downtime. Runs until
/// `shutdown`.
pub async fn renew_loop(
    acme: AcmeConfig,
    responder: Http01Responder,
    resolver: Arc<ReloadableResolver>,
    mut not_after: Option<DateTime<Utc>>,
    report: Report,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW_CHECK) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        let due = not_after.is_none_or(|t| t - chrono::Duration::days(20) <= Utc::now());
        if !due {
            continue;
        }
        match flm_acme::obtain(&acme, &responder).await {
            Ok(issued) => match resolver.reload(&issued.bundle) {
                Ok(()) => {
                    tracing::info!(not_after = %issued.bundle.not_after, "ACME certificate renewed");
                    not_after = Some(issued.bundle.not_after);
                    report(ProxyMode::HttpsAcme, None, Some(&issued.bundle));
                }
                Err(e) => tracing::warn!(error = %e, "renewed ACME certificate refused"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "ACME renewal failed; keeping the current certificate");
                let mode = if not_after.is_some() {
                    ProxyMode::HttpsAcme
                } else {
                    ProxyMode::DevSelfsigned
                };
                report(mode, Some(format!("ACME renewal failed: {e}")), None);
            }
        }
    }
}
