//! Issuance ([`obtain`]), the fallback of spec 30-proxy §10.4 step 1
//! ([`obtain_or_reuse`]), and renewal checks.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flm_tls::{CertBundle, San};
use instant_acme::{AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus};

use crate::account::{self, account_path};
use crate::client::{map_acme_error, problem_detail, AcmeHttp};
use crate::config::{AcmeConfig, Challenge};
use crate::dns::{challenge_record_name, effective_propagation_wait};
use crate::error::{AcmeError, Result};
use crate::fs;
use crate::http01::Http01Responder;

/// First delay between order polls; pebble and Let's Encrypt usually validate within a
/// second or two.
const POLL_INITIAL: Duration = Duration::from_millis(250);
/// Longest delay between polls: with ×1.5 backoff the delay reaches this after ~7 polls;
/// more would waste a large part of the 90 s bound sleeping.
const POLL_MAX: Duration = Duration::from_secs(5);
/// Bound on withdrawing DNS records after the issuance (runs after the main bound).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The chain and key as written to the state directory, checked by
    /// [`flm_tls::load_bundle`].
    pub bundle: CertBundle,
    /// The names in the certificate (normalised; the first names the files).
    pub domains: Vec<String>,
    /// The ACME account URL used.
    pub account_url: String,
    /// Whether the account came from the state directory (`false`: newly registered).
    pub account_reused: bool,
}

/// What [`obtain_or_reuse`] did.
#[derive(Debug)]
pub enum Obtained {
    /// A new certificate was issued.
    Issued(IssuedCert),
    /// Issuance failed; the existing, unexpired certificate for the same names is kept
    /// (spec 30-proxy §10.4 step 1). `error` says why issuance failed, for
    /// `ProxyHandle.last_error`.
    Reused {
        /// The existing certificate.
        bundle: CertBundle,
        /// Why issuance failed.
        error: AcmeError,
    },
}

impl Obtained {
    /// The certificate to serve, whichever way it was obtained.
    pub fn bundle(&self) -> &CertBundle {
        match self {
            Obtained::Issued(i) => &i.bundle,
            Obtained::Reused { bundle, .. } => bundle,
        }
    }
}

/// Whether `bundle` should be renewed at `now`: 20 days or less of validity left (or not
/// valid yet), spec 30-proxy §10.3. Same rule as [`CertBundle::needs_renewal`], so every
/// TLS mode renews on one schedule.
pub fn needs_renewal(bundle: &CertBundle, now: DateTime<Utc>) -> bool {
    bundle.needs_renewal(now)
}

/// Where the certificate and key for `domain` (the first domain of a config) are
/// stored: `acme-{domain}.crt` and `acme-{domain}.key`, with a wildcard's `*` written
/// as `_` (`acme-_.example.com.crt`; `_` cannot occur in a validated host name, so no
/// other domain maps to the same file).
pub fn cert_paths(state_dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let slug = domain
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .replace('*', "_");
    (
        state_dir.join(format!("acme-{slug}.crt")),
        state_dir.join(format!("acme-{slug}.key")),
    )
}

/// The certificate already in the state directory for `config`'s domains, if it is
/// valid at `now` (not expired, key matches) and names every domain. Does not look at
/// the renewal threshold; see [`needs_renewal`].
pub fn existing_certificate(config: &AcmeConfig, now: DateTime<Utc>) -> Option<CertBundle> {
    let domains = config.validate().ok()?;
    existing_for(&config.state_dir, &domains, now)
}

fn existing_for(state_dir: &Path, domains: &[String], now: DateTime<Utc>) -> Option<CertBundle> {
    let first = domains.first()?;
    let (cert, key) = cert_paths(state_dir, first);
    if !cert.exists() {
        return None;
    }
    let bundle = match flm_tls::load_bundle_at(&cert, &key, now) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(file = %cert.display(), error = %e, "existing ACME certificate is not usable");
            return None;
        }
    };
    let wanted: Option<Vec<San>> = domains.iter().map(|d| San::dns(d).ok()).collect();
    match wanted {
        Some(w) if bundle.covers(&w) => Some(bundle),
        _ => {
            tracing::info!(file = %cert.display(), "existing ACME certificate does not name every requested domain");
            None
        }
    }
}

/// Tries to issue a certificate; if that fails, keeps the existing unexpired
/// certificate for the same domains (spec 30-proxy §10.4, step 1).
///
/// Errors only when issuance failed **and** no usable certificate exists; the caller
/// then continues with step 2 (`dev-selfsigned`). Call it when
/// [`needs_renewal`] says so (or when there is no certificate); it always contacts the
/// CA.
pub async fn obtain_or_reuse(config: &AcmeConfig, responder: &Http01Responder) -> Result<Obtained> {
    match obtain(config, responder).await {
        Ok(issued) => Ok(Obtained::Issued(issued)),
        Err(error) => {
            // A config error is the caller's bug, not an ACME outage: never mask it.
            if matches!(error, AcmeError::InvalidConfig { .. }) {
                return Err(error);
            }
            match existing_certificate(config, Utc::now()) {
                Some(bundle) => {
                    tracing::warn!(
                        error = %error,
                        not_after = %bundle.not_after,
                        "ACME issuance failed; keeping the existing certificate"
                    );
                    Ok(Obtained::Reused { bundle, error })
                }
                None => Err(error),
            }
        }
    }
}

/// Obtains a certificate for `config.domains` from the ACME server.
///
/// Flow: fetch the directory → load or register the account (stored 0600 in
/// `state_dir`) → new order → for each pending authorization publish the HTTP-01 answer
/// in `responder` or the DNS-01 TXT record through the provider → (DNS-01: propagation
/// wait) → tell the server the challenges are ready → poll the order with capped
/// exponential backoff → finalize with a CSR for a fresh ECDSA P-256 key → download the
/// chain → write `acme-{domain}.crt` (0644) and `.key` (0600) atomically → load them
/// back with [`flm_tls::load_bundle`].
///
/// Bounded by `config.timeout`, plus the DNS provider's propagation wait for DNS-01
/// (spec 30-proxy §10.3 gives 90 s to challenge → certificate and up to 120 s to
/// propagation). Challenge answers are withdrawn whatever the outcome, including a
/// timeout; withdrawing DNS records has its own 30 s bound.
///
/// `responder` is only used for [`Challenge::Http01`]; the proxy must be serving
/// [`http01_router`](crate::http01_router) for it on the HTTP port while this runs.
///
/// Run one issuance per `state_dir` at a time (the proxy's renewal task is the only
/// caller): two concurrent first runs would each register an account.
pub async fn obtain(config: &AcmeConfig, responder: &Http01Responder) -> Result<IssuedCert> {
    let domains = config.validate()?;
    fs::ensure_private_dir(&config.state_dir)?;
    let propagation = match &config.challenge {
        Challenge::Dns01(p) => effective_propagation_wait(p.as_ref()),
        Challenge::Http01 => Duration::ZERO,
    };
    let bound = config.timeout + propagation;
    let http = AcmeHttp::new(
        config.root_ca_pem.as_deref(),
        config.proxy.as_deref(),
        bound,
    )?;
    let progress = Progress::default();
    tracing::info!(
        directory = %config.directory_url,
        domains = %domains.join(","),
        challenge = config.challenge.kind(),
        "requesting ACME certificate"
    );

    let outcome = tokio::time::timeout(
        bound,
        run(config, &domains, responder, &http, &progress, propagation),
    )
    .await;

    cleanup(config, responder, &progress).await;

    match outcome {
        Ok(Ok(issued)) => {
            tracing::info!(
                domains = %issued.domains.join(","),
                not_after = %issued.bundle.not_after,
                file = %issued.bundle.cert_path.display(),
                "ACME certificate issued"
            );
            Ok(issued)
        }
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => {
            let stage = progress.stage();
            Err(match stage {
                Stage::Directory => AcmeError::DirectoryUnreachable {
                    url: config.directory_url.clone(),
                    cause: format!("no complete answer within {}s", bound.as_secs()),
                },
                _ => AcmeError::Timeout {
                    after: bound,
                    stage: stage.describe(),
                },
            })
        }
    }
}

// === progress shared with the clean-up ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    #[default]
    Directory,
    Account,
    Order,
    Challenges,
    Propagation,
    Validation,
    Finalize,
    Download,
    Store,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Directory => "fetching the ACME directory",
            Stage::Account => "registering or loading the ACME account",
            Stage::Order => "creating the order",
            Stage::Challenges => "publishing the challenge answers",
            Stage::Propagation => "waiting for DNS propagation",
            Stage::Validation => "waiting for the ACME server to validate the challenges",
            Stage::Finalize => "finalizing the order",
            Stage::Download => "waiting for the certificate",
            Stage::Store => "storing the certificate",
        }
    }
}

/// What the issuance has done so far, readable after its future was dropped (timeout),
/// so that published answers are always withdrawn.
#[derive(Default)]
struct Progress {
    inner: Mutex<ProgressInner>,
}

#[derive(Default)]
struct ProgressInner {
    stage: Stage,
    http_tokens: Vec<String>,
    dns_records: Vec<(String, String)>,
}

impl Progress {
    fn with<R>(&self, f: impl FnOnce(&mut ProgressInner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
    fn set(&self, stage: Stage) {
        self.with(|p| p.stage = stage);
    }
    fn stage(&self) -> Stage {
        self.with(|p| p.stage)
    }
}

async fn cleanup(config: &AcmeConfig, responder: &Http01Responder, progress: &Progress) {
    let (tokens, records) = progress.with(|p| {
        (
            std::mem::take(&mut p.http_tokens),
            std::mem::take(&mut p.dns_records),
        )
    });
    for t in &tokens {
        responder.remove(t);
    }
    let Challenge::Dns01(provider) = &config.challenge else {
        return;
    };
    if records.is_empty() {
        return;
    }
    let work = async {
        for (name, value) in &records {
            if let Err(e) = provider.remove_txt(name, value).await {
                tracing::warn!(record = %name, error = %e, "cannot remove ACME DNS-01 TXT record; remove it by hand");
            }
        }
    };
    if tokio::time::timeout(CLEANUP_TIMEOUT, work).await.is_err() {
        tracing::warn!(
            records = %records.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(","),
            "removing ACME DNS-01 TXT records timed out; remove them by hand"
        );
    }
}

// === the flow ===

async fn run(
    config: &AcmeConfig,
    domains: &[String],
    responder: &Http01Responder,
    http: &AcmeHttp,
    progress: &Progress,
    propagation: Duration,
) -> Result<IssuedCert> {
    progress.set(Stage::Directory);
    http.probe_directory(&config.directory_url).await?;

    progress.set(Stage::Account);
    let loaded = account::load_or_create(
        http,
        &config.state_dir,
        &config.directory_url,
        &config.contact_email,
    )
    .await?;
    let mut account = loaded.account;
    let mut account_reused = loaded.reused;

    progress.set(Stage::Order);
    let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
        Ok(o) => o,
        // The stored account is gone (CA reset, deactivated elsewhere): register anew.
        Err(instant_acme::Error::Api(p))
            if p.r#type.as_deref().is_some_and(|t| {
                t.ends_with(":accountDoesNotExist") || t.ends_with(":unauthorized")
            }) && account_reused =>
        {
            tracing::warn!(problem = %p, "stored ACME account rejected; registering a new one");
            let path = account_path(&config.state_dir, &config.directory_url);
            account =
                account::create(http, &path, &config.directory_url, &config.contact_email).await?;
            account_reused = false;
            account
                .new_order(&NewOrder::new(&identifiers))
                .await
                .map_err(map_acme_error)?
        }
        Err(e) => return Err(map_acme_error(e)),
    };

    progress.set(Stage::Challenges);
    let pending = publish_answers(config, responder, progress, &mut order).await?;

    if !pending.is_empty() && !propagation.is_zero() {
        progress.set(Stage::Propagation);
        tracing::info!(
            seconds = propagation.as_secs(),
            "waiting for DNS propagation"
        );
        tokio::time::sleep(propagation).await;
    }

    progress.set(Stage::Validation);
    set_ready(config, &mut order, &pending).await?;
    wait_ready(&mut order).await?;

    progress.set(Stage::Finalize);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AcmeError::Protocol(format!("cannot generate the certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())
        .map_err(|e| AcmeError::Protocol(format!("cannot build the CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Protocol(format!("cannot sign the CSR: {e}")))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(map_acme_error)?;

    progress.set(Stage::Download);
    let chain_pem = download(&mut order).await?;

    progress.set(Stage::Store);
    let first = domains
        .first()
        .ok_or_else(|| AcmeError::config("domains", "at least one domain is required"))?;
    let (cert_path, key_path) = cert_paths(&config.state_dir, first);
    // Key first: if the process dies in between, the pair mismatches and is rejected
    // by `load_bundle` (never a new certificate with a missing key).
    fs::write_atomic(&key_path, key.serialize_pem().as_bytes(), fs::SECRET_MODE)?;
    fs::write_atomic(&cert_path, chain_pem.as_bytes(), fs::PUBLIC_MODE)?;
    let bundle = flm_tls::load_bundle(&cert_path, &key_path)?;

    Ok(IssuedCert {
        bundle,
        domains: domains.to_vec(),
        account_url: account.id().to_owned(),
        account_reused,
    })
}

/// A challenge that was answered and must be announced as ready.
struct PendingChallenge {
    domain: String,
}

/// Publishes the answer of every pending authorization; authorizations the server
/// already holds as valid (reused from an earlier order) need nothing.
async fn publish_answers(
    config: &AcmeConfig,
    responder: &Http01Responder,
    progress: &Progress,
    order: &mut Order,
) -> Result<Vec<PendingChallenge>> {
    let kind = match &config.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::Dns01(_) => ChallengeType::Dns01,
    };
    let mut pending = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(map_acme_error)?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::ChallengeFailed {
                    domain,
                    reason: format!(
                        "the authorization is {other:?} before any challenge was tried"
                    ),
                })
            }
        }
        let challenge =
            authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::ChallengeFailed {
                    domain: domain.clone(),
                    reason: format!(
                        "the ACME server offers no `{}` challenge for it",
                        config.challenge.kind()
                    ),
                })?;
        let key_auth = challenge.key_authorization();
        match &config.challenge {
            Challenge::Http01 => {
                responder.insert(challenge.token.clone(), key_auth.as_str());
                progress.with(|p| p.http_tokens.push(challenge.token.clone()));
            }
            Challenge::Dns01(provider) => {
                let name = challenge_record_name(&domain);
                let value = key_auth.dns_value();
                provider
                    .set_txt(&name, &value)
                    .await
                    .map_err(|e| AcmeError::ChallengeFailed {
                        domain: domain.clone(),
                        reason: format!("DNS provider could not create TXT `{name}`: {e}"),
                    })?;
                progress.with(|p| p.dns_records.push((name, value)));
            }
        }
        pending.push(PendingChallenge { domain });
    }
    Ok(pending)
}

/// Tells the server each answered challenge is ready (after the DNS wait, so the CA
/// does not look too early).
async fn set_ready(
    config: &AcmeConfig,
    order: &mut Order,
    pending: &[PendingChallenge],
) -> Result<()> {
    let kind = match &config.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::Dns01(_) => ChallengeType::Dns01,
    };
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(map_acme_error)?;
        let domain = authz.identifier().to_string();
        if !pending.iter().any(|p| p.domain == domain) {
            continue;
        }
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            continue;
        };
        challenge.set_ready().await.map_err(|e| match e {
            instant_acme::Error::Api(p) => AcmeError::ChallengeFailed {
                domain: domain.clone(),
                reason: format!(
                    "{} ({})",
                    problem_detail(&p),
                    p.r#type.as_deref().unwrap_or("unknown")
                ),
            },
            other => map_acme_error(other),
        })?;
    }
    Ok(())
}

/// Polls until the order is `ready` (all authorizations valid). On `invalid`, finds
/// the authorization that failed and reports the server's reason.
async fn wait_ready(order: &mut Order) -> Result<()> {
    let mut delay = POLL_INITIAL;
    loop {
        tokio::time::sleep(delay).await;
        let state = order.refresh().await.map_err(map_acme_error)?;
        match state.status {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => return Ok(()),
            OrderStatus::Invalid => return Err(explain_invalid(order).await),
            OrderStatus::Pending => {}
        }
        delay = delay.mul_f32(1.5).min(POLL_MAX);
    }
}

/// The most precise error for an invalid order: the failed challenge's problem, else
/// the failed authorization, else the order's own problem.
async fn explain_invalid(order: &mut Order) -> AcmeError {
    let order_problem = order.state().error.clone();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let authz = match next {
            Ok(a) => a,
            Err(e) => return map_acme_error(e),
        };
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let domain = authz.identifier().to_string();
        let reason = authz
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .map(|p| {
                format!(
                    "{} ({})",
                    problem_detail(p),
                    p.r#type.as_deref().unwrap_or("unknown")
                )
            })
            .unwrap_or_else(|| format!("the authorization is {:?}", authz.status));
        return AcmeError::ChallengeFailed { domain, reason };
    }
    match order_problem {
        Some(p) => crate::client::rejected(&p),
        None => AcmeError::Protocol("the order became invalid without an explanation".to_owned()),
    }
}

/// Polls until the certificate is issued and returns the PEM chain.
async fn download(order: &mut Order) -> Result<String> {
    let mut delay = POLL_INITIAL;
    loop {
        match order.certificate().await {
            Ok(Some(pem)) => return Ok(pem),
            Ok(None) => {}
            Err(instant_acme::Error::Api(p)) => return Err(crate::client::rejected(&p)),
            Err(e) => return Err(map_acme_error(e)),
        }
        tokio::time::sleep(delay).await;
        delay = delay.mul_f32(1.5).min(POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let dir = Path::new("/s");
        assert_eq!(
            cert_paths(dir, "API.example.com"),
            (
                PathBuf::from("/s/acme-api.example.com.crt"),
                PathBuf::from("/s/acme-api.example.com.key")
            )
        );
        assert_eq!(
            cert_paths(dir, "*.example.com").0,
            PathBuf::from("/s/acme-_.example.com.crt")
        );
    }

    #[test]
    fn obtain_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let config = AcmeConfig::new(
            crate::LETS_ENCRYPT_STAGING,
            "a@example.com",
            vec!["a.example.com".to_owned()],
            Challenge::Http01,
            "/nonexistent",
        );
        let responder = Http01Responder::new();
        assert_send(&obtain(&config, &responder));
        assert_send(&obtain_or_reuse(&config, &responder));
    }
}
