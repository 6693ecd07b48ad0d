//! Proxy configuration and handles (spec 30-proxy §2).

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Default HTTP port of the proxy. Not 8080: that is llama-server's default.
pub const DEFAULT_PROXY_PORT: u16 = 8780;

/// TLS strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMode {
    /// Plain HTTP.
    #[default]
    LocalHttp,
    /// Self-signed certificate, HTTPS on port+1.
    DevSelfsigned,
    /// ACME certificate, HTTPS on port+1.
    HttpsAcme,
    /// Certificate signed by a local root CA, HTTPS on port+1.
    PackagedCa,
}

impl ProxyMode {
    /// Slug (`local-http`, …).
    pub fn slug(self) -> &'static str {
        match self {
            ProxyMode::LocalHttp => "local-http",
            ProxyMode::DevSelfsigned => "dev-selfsigned",
            ProxyMode::HttpsAcme => "https-acme",
            ProxyMode::PackagedCa => "packaged-ca",
        }
    }
}

/// Outbound path of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    /// OS routing.
    #[default]
    Direct,
    /// Through Tor's SOCKS5 port.
    Tor,
    /// Through a SOCKS5 proxy.
    Socks5,
}

/// Egress settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EgressConfig {
    /// Mode.
    pub mode: EgressMode,
    /// `host:port` of the SOCKS5 endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks5_endpoint: Option<String>,
    /// Fall back to direct when the SOCKS endpoint is down.
    #[serde(default)]
    pub fail_open: bool,
}

/// Tor's default SOCKS5 port on this machine.
pub const TOR_DEFAULT_ENDPOINT: &str = "127.0.0.1:9050";

impl EgressMode {
    /// Slug (`direct`, `tor`, `socks5`).
    pub fn slug(self) -> &'static str {
        match self {
            EgressMode::Direct => "direct",
            EgressMode::Tor => "tor",
            EgressMode::Socks5 => "socks5",
        }
    }
}

impl EgressConfig {
    /// The SOCKS5 `host:port` to use: the configured one, Tor's default for `tor`,
    /// none for `direct`.
    pub fn endpoint(&self) -> Option<String> {
        match self.mode {
            EgressMode::Direct => None,
            EgressMode::Tor => Some(
                self.socks5_endpoint
                    .clone()
                    .unwrap_or_else(|| TOR_DEFAULT_ENDPOINT.to_owned()),
            ),
            EgressMode::Socks5 => self.socks5_endpoint.clone(),
        }
    }

    /// How status output shows the path: `direct`, `tor://127.0.0.1:9050`,
    /// `socks5://host:port`.
    pub fn display_url(&self) -> String {
        match self.endpoint() {
            Some(ep) => format!("{}://{ep}", self.mode.slug()),
            None => "direct".to_owned(),
        }
    }

    /// Checks the mode/endpoint combination and the `host:port` syntax.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: String| -> CoreError { ProxyError::InvalidConfig(m).into() };
        match (self.mode, &self.socks5_endpoint) {
            (EgressMode::Direct, Some(_)) => {
                return Err(bad(
                    "--socks5-endpoint needs --egress-mode tor or socks5".into()
                ))
            }
            (EgressMode::Socks5, None) => {
                return Err(bad(
                    "--egress-mode socks5 needs --socks5-endpoint host:port".into(),
                ))
            }
            _ => {}
        }
        if let Some(ep) = &self.socks5_endpoint {
            let ok = ep
                .rsplit_once(':')
                .filter(|(host, port)| {
                    !host.is_empty()
                        && !host.contains('/')
                        && port.parse::<u16>().is_ok_and(|p| p != 0)
                })
                .is_some();
            if !ok {
                return Err(bad(format!(
                    "invalid SOCKS5 endpoint `{ep}`: expected host:port, e.g. 127.0.0.1:9050"
                )));
            }
        }
        Ok(())
    }
}

/// What to start (spec 30-proxy §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// TLS mode.
    #[serde(default)]
    pub mode: ProxyMode,
    /// HTTP port (TLS modes also use port+1).
    pub port: u16,
    /// Listen address.
    pub listen_addr: String,
    /// Egress.
    #[serde(default)]
    pub egress: EgressConfig,
    /// ACME account contact (required for `https-acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    /// Domain of the ACME certificate (required for `https-acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_domain: Option<String>,
    /// ACME challenge kind.
    #[serde(default)]
    pub acme_challenge: AcmeChallenge,
    /// DNS-01 hook program (`<hook> set|remove <fqdn> <value>`); required for
    /// `dns-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_hook: Option<String>,
    /// Seconds to wait after the DNS-01 records are set (≤ 120; `None` = the hook
    /// default, 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_propagation_wait_secs: Option<u64>,
}

/// Upper bound of `--dns-propagation-wait` (spec 30-proxy §10.3).
pub const MAX_DNS_PROPAGATION_WAIT_SECS: u64 = 120;

/// ACME challenge kinds (spec 30-proxy §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AcmeChallenge {
    /// HTTP-01 on the HTTP port.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// DNS-01 through a hook program (`dns_hook`); the only way to get a wildcard.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            mode: ProxyMode::LocalHttp,
            port: DEFAULT_PROXY_PORT,
            listen_addr: "127.0.0.1".into(),
            egress: EgressConfig::default(),
            acme_email: None,
            acme_domain: None,
            acme_challenge: AcmeChallenge::Http01,
            dns_hook: None,
            dns_propagation_wait_secs: None,
        }
    }
}

impl ProxyConfig {
    /// Validates the configuration (port range, address syntax, mode support).
    pub fn validate(&self) -> Result<std::net::IpAddr, CoreError> {
        if self.port == 0 {
            return Err(ProxyError::InvalidConfig(
                "invalid port 0: choose a port from 1 to 65535".into(),
            )
            .into());
        }
        let ip: std::net::IpAddr = self.listen_addr.parse().map_err(|_| {
            CoreError::from(ProxyError::InvalidConfig(format!(
                "invalid bind address `{}`: expected an IPv4 or IPv6 address such as 127.0.0.1 or 0.0.0.0",
                self.listen_addr
            )))
        })?;
        if self.mode != ProxyMode::LocalHttp && self.port == u16::MAX {
            return Err(ProxyError::InvalidConfig(
                "TLS modes also use port+1; choose a port below 65535".into(),
            )
            .into());
        }
        self.egress.validate()?;
        if self.mode == ProxyMode::HttpsAcme {
            let missing = |what: &str, flag: &str| -> CoreError {
                ProxyError::InvalidConfig(format!("https-acme needs {what}: pass {flag}")).into()
            };
            let email = self
                .acme_email
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .ok_or_else(|| missing("a contact email", "--acme-email you@example.com"))?;
            if !email.contains('@') || email.contains(char::is_whitespace) {
                return Err(ProxyError::InvalidConfig(format!(
                    "invalid --acme-email `{email}`: expected an address like you@example.com"
                ))
                .into());
            }
            let domain = self
                .acme_domain
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| missing("a domain", "--acme-domain api.example.com"))?;
            let dns01 = self.acme_challenge == AcmeChallenge::Dns01;
            if domain.starts_with('*') && !dns01 {
                return Err(ProxyError::InvalidConfig(format!(
                    "--acme-domain `{domain}` is a wildcard: wildcard certificates need --challenge dns-01 with --dns-hook <command> (http-01 cannot prove control of every subdomain)"
                ))
                .into());
            }
            if dns01
                && self
                    .dns_hook
                    .as_deref()
                    .map(str::trim)
                    .is_none_or(str::is_empty)
            {
                return Err(ProxyError::InvalidConfig(
                    "--challenge dns-01 needs --dns-hook <command> (called as `<command> set|remove <fqdn> <value>` to publish the _acme-challenge TXT record)".into(),
                )
                .into());
            }
        }
        if self.mode != ProxyMode::HttpsAcme || self.acme_challenge != AcmeChallenge::Dns01 {
            if self.dns_hook.is_some() {
                return Err(ProxyError::InvalidConfig(
                    "--dns-hook is only used with --mode https-acme --challenge dns-01".into(),
                )
                .into());
            }
            if self.dns_propagation_wait_secs.is_some() {
                return Err(ProxyError::InvalidConfig(
                    "--dns-propagation-wait is only used with --mode https-acme --challenge dns-01"
                        .into(),
                )
                .into());
            }
        }
        if let Some(w) = self.dns_propagation_wait_secs {
            if w > MAX_DNS_PROPAGATION_WAIT_SECS {
                return Err(ProxyError::InvalidConfig(format!(
                    "--dns-propagation-wait {w} is too long: at most {MAX_DNS_PROPAGATION_WAIT_SECS} seconds"
                ))
                .into());
            }
        }
        Ok(ip)
    }
}

/// A running proxy instance (spec 30-proxy §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyHandle {
    /// Handle id.
    pub id: String,
    /// Process id of the process serving it.
    pub pid: u32,
    /// HTTP port.
    pub port: u16,
    /// HTTPS port (TLS modes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
    /// Mode.
    pub mode: ProxyMode,
    /// Listen address.
    pub listen_addr: String,
    /// Domain of the ACME certificate (`https-acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_domain: Option<String>,
    /// Egress.
    pub egress: EgressConfig,
    /// Whether it serves.
    pub running: bool,
    /// Last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// URLs a person can use (never a wildcard address).
    pub endpoints: ProxyEndpoints,
    /// Certificate in use (TLS modes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
}

/// The certificate a TLS-mode proxy serves, and how a client can trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// Server certificate file (PEM).
    pub cert_path: String,
    /// SHA-256 fingerprint of the server certificate (`AA:BB:…`).
    pub fingerprint_sha256: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// The certificate clients must trust: the self-signed certificate itself, or the
    /// local root CA for `packaged-ca`.
    pub trust_cert_path: String,
    /// Subject alternative names covered.
    pub sans: Vec<String>,
}

/// User-facing URLs of a proxy (spec 30-proxy §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProxyEndpoints {
    /// This machine.
    pub localhost: String,
    /// The same network, when listening beyond loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_network: Option<String>,
    /// The internet, with an ACME domain: `https://{domain}:{https_port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
}

/// Proxy lifecycle errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// A proxy already runs on this port.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The port (or port+1) is taken.
    #[error("{0}")]
    PortInUse(String),
    /// Invalid configuration.
    #[error("{0}")]
    InvalidConfig(String),
    /// No such running proxy.
    #[error("{0}")]
    NotRunning(String),
    /// The daemon could not be started or reached.
    #[error("{0}")]
    Daemon(String),
}

impl ProxyError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::AlreadyRunning(_) => "PROXY_ALREADY_RUNNING",
            ProxyError::PortInUse(_) => "PROXY_PORT_IN_USE",
            ProxyError::InvalidConfig(_) => "PROXY_INVALID_CONFIG",
            ProxyError::NotRunning(_) => "PROXY_NOT_RUNNING",
            ProxyError::Daemon(_) => "PROXY_DAEMON_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_without_dns_fields_still_parses() {
        let old = r#"{"mode":"https-acme","port":8780,"listen_addr":"127.0.0.1",
            "acme_email":"ops@example.com","acme_domain":"api.example.com",
            "acme_challenge":"http-01"}"#;
        let c: ProxyConfig = serde_json::from_str(old).expect("old JSON");
        assert_eq!(c.dns_hook, None);
        assert_eq!(c.dns_propagation_wait_secs, None);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn dns01_and_wildcard_rules() {
        let mut c = ProxyConfig {
            mode: ProxyMode::HttpsAcme,
            acme_email: Some("ops@example.com".into()),
            acme_domain: Some("*.example.com".into()),
            ..ProxyConfig::default()
        };
        let e = c.validate().expect_err("wildcard over http-01").to_string();
        assert!(
            e.contains("wildcard") && e.contains("--challenge dns-01"),
            "{e}"
        );
        c.acme_challenge = AcmeChallenge::Dns01;
        let e = c.validate().expect_err("no hook").to_string();
        assert!(e.contains("--dns-hook"), "{e}");
        c.dns_hook = Some("/usr/local/bin/hook".into());
        assert!(c.validate().is_ok());
        c.dns_propagation_wait_secs = Some(121);
        assert!(c.validate().is_err());
        c.dns_propagation_wait_secs = Some(120);
        assert!(c.validate().is_ok());
        c.mode = ProxyMode::LocalHttp;
        assert!(c.validate().is_err(), "--dns-hook without https-acme");
    }
}
