//! `https-acme` (spec 30-proxy §10.3/§10.4): the certificate comes from an ACME CA
//! through `flm-acme`, answered over HTTP-01 on the proxy's HTTP port or over DNS-01
//! through a hook program (`--dns-hook`). Fallback order:
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

/// ACME timings (spec 30-proxy §10.3: one issuance bounded by 90 s; checked every
/// 24 h, renewed when fewer than 20 days remain).
#[derive(Clone, Copy, Debug)]
pub struct RenewTiming {
    /// Interval between renewal checks.
    pub check_every: Duration,
    /// Renew when the certificate expires within this window.
    pub renew_before: chrono::Duration,
    /// Bound on one issuance (plus the DNS propagation wait).
    pub issuance_timeout: Duration,
}

impl Default for RenewTiming {
    fn default() -> Self {
        RenewTiming {
            check_every: Duration::from_secs(24 * 3600),
            renew_before: chrono::Duration::days(20),
            issuance_timeout: flm_acme::DEFAULT_TIMEOUT,
        }
    }
}

/// Consecutive renewal failures after which `last_error` reports an `AcmeError`
/// (spec 30-proxy §10.3).
pub const FAILURES_FOR_ACME_ERROR: u32 = 2;

fn invalid(msg: String) -> CoreError {
    ProxyError::InvalidConfig(msg).into()
}

/// The `flm-acme` configuration for `config`. DNS-01 publishes its TXT records through
/// the `--dns-hook` program ([`flm_acme::HookDnsProvider`]); a wildcard
/// `*.example.com` asks for `*.example.com` and `example.com` in one certificate.
pub fn acme_config(
    deps: &AcmeDeps,
    config: &ProxyConfig,
    certs_dir: &Path,
) -> Result<AcmeConfig, CoreError> {
    let challenge = match config.acme_challenge {
        AcmeChallenge::Http01 => Challenge::Http01,
        AcmeChallenge::Dns01 => {
            let hook = config
                .dns_hook
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| invalid("--challenge dns-01 needs --dns-hook <command>".into()))?;
            if hook.contains('/') && !Path::new(hook).is_file() {
                return Err(invalid(format!(
                    "--dns-hook `{hook}` does not exist or is not a file"
                )));
            }
            let mut p = flm_acme::HookDnsProvider::new(hook);
            if let Some(w) = config.dns_propagation_wait_secs {
                p = p.with_propagation_wait(Duration::from_secs(w));
            }
            Challenge::Dns01(Box::new(p))
        }
    };
    let email = config.acme_email.as_deref().unwrap_or_default().trim();
    let domain = config.acme_domain.as_deref().unwrap_or_default().trim();
    let directory = deps
        .directory_url
        .clone()
        .unwrap_or_else(|| flm_acme::directory_url_from_env(|k| std::env::var(k).ok()));
    let mut domains = vec![domain.to_owned()];
    if let Some(base) = domain.strip_prefix("*.") {
        domains.push(base.to_owned());
    }
    let mut c = AcmeConfig::new(directory, email, domains, challenge, acme_dir(certs_dir));
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
                    key_path: bundle.key_path.clone(),
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

/// Every `timing.check_every` (24 h): renews the ACME certificate when it expires
/// within `timing.renew_before` (20 days), or retries ACME after a fallback; swaps the
/// certificate in without downtime. From the second consecutive failure on,
/// `last_error` starts with `AcmeError`. Runs until `shutdown`.
pub async fn renew_loop(
    acme: AcmeConfig,
    responder: Http01Responder,
    resolver: Arc<ReloadableResolver>,
    mut not_after: Option<DateTime<Utc>>,
    report: Report,
    timing: RenewTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.check_every) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        let due = not_after.is_none_or(|t| t - timing.renew_before <= Utc::now());
        if !due {
            continue;
        }
        let outcome = match flm_acme::obtain(&acme, &responder).await {
            Ok(issued) => match resolver.reload(&issued.bundle) {
                Ok(()) => Ok(issued.bundle),
                Err(e) => Err(format!("the renewed certificate was refused: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(bundle) => {
                failures = 0;
                tracing::info!(not_after = %bundle.not_after, fingerprint = %bundle.sha256_fingerprint, "ACME certificate renewed");
                not_after = Some(bundle.not_after);
                report(ProxyMode::HttpsAcme, None, Some(&bundle));
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "ACME renewal failed; keeping the current certificate");
                let mode = if not_after.is_some() {
                    ProxyMode::HttpsAcme
                } else {
                    ProxyMode::DevSelfsigned
                };
                let keeping = match not_after {
                    Some(t) => format!("keeping the certificate valid until {}", t.to_rfc3339()),
                    None => "keeping the dev-selfsigned certificate".to_owned(),
                };
                let msg = if failures >= FAILURES_FOR_ACME_ERROR {
                    format!("AcmeError: ACME renewal failed {failures} times in a row (last: {e}); {keeping}")
                } else {
                    format!(
                        "ACME renewal failed: {e}; {keeping}; retrying in {} s",
                        timing.check_every.as_secs()
                    )
                };
                report(mode, Some(msg), None);
            }
        }
    }
}
