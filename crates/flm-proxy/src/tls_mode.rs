//! HTTPS modes (`dev-selfsigned`, `packaged-ca`): certificate material from `flm-tls`,
//! the HTTP port turned into a redirect to HTTPS, and renewal without downtime.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flm_core::proxy::{ProxyError, ProxyMode, TlsInfo};
use flm_core::CoreError;
use flm_tls::{CertBundle, ReloadableResolver, San};
use tokio::sync::watch;

/// HSTS sent on redirects (spec 30-proxy §10.2).
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// How often certificates are re-checked for renewal.
const RENEW_CHECK: Duration = Duration::from_secs(24 * 3600);

/// Certificate material of a running TLS instance.
pub struct TlsSetup {
    /// Hot-swappable certificate.
    pub resolver: Arc<ReloadableResolver>,
    /// What the handle reports.
    pub info: TlsInfo,
    /// The private key file of the certificate in `info.cert_path` (for
    /// `flm proxy reload`).
    pub key_path: std::path::PathBuf,
}

fn tls_err(mode: ProxyMode, e: &flm_tls::TlsError) -> CoreError {
    ProxyError::InvalidConfig(format!(
        "cannot prepare the {} certificate: {e}",
        mode.slug()
    ))
    .into()
}

/// SANs: loopback names, the bind address and this machine's LAN address.
fn sans(bind: IpAddr, lan: Option<IpAddr>) -> Vec<San> {
    let mut extra = Vec::new();
    if !bind.is_unspecified() && !bind.is_loopback() {
        extra.push(San::Ip(bind));
    }
    if let Some(l) = lan {
        extra.push(San::Ip(l));
    }
    if let Ok(h) = std::env::var("HOSTNAME") {
        if let Ok(s) = San::parse(&h) {
            extra.push(s);
        }
    }
    flm_tls::server_sans(&extra)
}

/// Issues (or reuses) the certificate for `mode`.
pub fn issue(
    mode: ProxyMode,
    certs_dir: &Path,
    bind: IpAddr,
    lan: Option<IpAddr>,
) -> Result<(CertBundle, String), CoreError> {
    let now = chrono::Utc::now();
    let sans = sans(bind, lan);
    match mode {
        ProxyMode::DevSelfsigned => {
            let b = flm_tls::ensure_self_signed(certs_dir, &sans, now)
                .map_err(|e| tls_err(mode, &e))?;
            let trust = b.cert_path.display().to_string();
            Ok((b, trust))
        }
        ProxyMode::PackagedCa => {
            let ca = flm_tls::ensure_local_ca(certs_dir, now).map_err(|e| tls_err(mode, &e))?;
            let b = flm_tls::issue_server_cert(&ca, &sans, now).map_err(|e| tls_err(mode, &e))?;
            Ok((b, ca.cert_path().display().to_string()))
        }
        other => Err(ProxyError::InvalidConfig(format!(
            "mode `{}` has no local certificate",
            other.slug()
        ))
        .into()),
    }
}

fn info(b: &CertBundle, trust: String) -> TlsInfo {
    TlsInfo {
        cert_path: b.cert_path.display().to_string(),
        fingerprint_sha256: b.sha256_fingerprint.clone(),
        not_after: b.not_after.to_rfc3339(),
        trust_cert_path: trust,
        sans: b.sans.iter().map(ToString::to_string).collect(),
    }
}

/// Prepares certificates and the resolver for a TLS mode.
pub fn setup(
    mode: ProxyMode,
    certs_dir: &Path,
    bind: IpAddr,
    lan: Option<IpAddr>,
) -> Result<TlsSetup, CoreError> {
    let (bundle, trust) = issue(mode, certs_dir, bind, lan)?;
    let resolver = ReloadableResolver::new(&bundle).map_err(|e| tls_err(mode, &e))?;
    Ok(TlsSetup {
        resolver,
        info: info(&bundle, trust),
        key_path: bundle.key_path.clone(),
    })
}

/// Re-issues the certificate when it nears expiry and swaps it in; runs until
/// `shutdown`. Connections in flight keep their certificate; new handshakes get the
/// new one.
pub async fn renew_loop(
    mode: ProxyMode,
    certs_dir: std::path::PathBuf,
    bind: IpAddr,
    lan: Option<IpAddr>,
    resolver: Arc<ReloadableResolver>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW_CHECK) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        let dir = certs_dir.clone();
        let issued = tokio::task::spawn_blocking(move || issue(mode, &dir, bind, lan)).await;
        match issued {
            Ok(Ok((b, _))) if b.sha256_fingerprint != resolver.fingerprint() => {
                match resolver.reload(&b) {
                    Ok(()) => {
                        tracing::info!(fingerprint = %b.sha256_fingerprint, "certificate renewed")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewed certificate refused; keeping the current one")
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "certificate renewal failed; keeping the current one")
            }
            Err(e) => tracing::warn!(error = %e, "certificate renewal task failed"),
        }
    }
}

/// The HTTP port of a TLS mode: every request is redirected (301) to HTTPS, with HSTS,
/// so keys never travel in clear text by mistake.
pub fn redirect_app(https_port: u16) -> axum::Router {
    axum::Router::new().fallback(move |req: Request| async move { redirect(&req, https_port) })
}

fn redirect(req: &Request, https_port: u16) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(strip_port)
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{host}:{https_port}{path}");
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    r.headers_mut().insert(
        header::HeaderName::from_static(flm_core::FLM_SERVER_HEADER),
        HeaderValue::from_static(concat!("flm/", env!("CARGO_PKG_VERSION"))),
    );
    r
}

/// `host:port` → `host`, keeping IPv6 brackets.
fn strip_port(h: &str) -> &str {
    if let Some(end) = h.find(']') {
        return &h[..=end];
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("localhost:8780"), "localhost");
        assert_eq!(strip_port("[::1]:8780"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
