//! [`AcmeConfig`]: what to ask for, from whom, and how to prove control; plus its
//! validation and the directory selection from the environment (spec 20-cli §4.3/§5).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::dns::DnsProvider;
use crate::error::{AcmeError, Result};

/// Let's Encrypt production directory (`FLM_ACME_USE_PROD=true`).
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging directory: the default, so that experiments never burn the
/// production rate limits (5 duplicate certificates per week).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Environment variable selecting any ACME directory; wins over `FLM_ACME_USE_PROD`.
pub const ENV_DIRECTORY: &str = "FLM_ACME_DIRECTORY";
/// Environment variable selecting Let's Encrypt production when `true`.
pub const ENV_USE_PROD: &str = "FLM_ACME_USE_PROD";
/// Default bound on one whole issuance (challenge → validation → certificate), spec
/// 30-proxy §10.3.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound on the DNS propagation wait, spec 30-proxy §10.3.
pub const MAX_PROPAGATION_WAIT: Duration = Duration::from_secs(120);
/// Let's Encrypt's limit on names per certificate.
pub const MAX_DOMAINS: usize = 100;

/// How control of the domains is proven.
pub enum Challenge {
    /// HTTP-01: the ACME server fetches `http://{domain}/.well-known/acme-challenge/{token}`
    /// on port 80; the answers come from an [`Http01Responder`](crate::Http01Responder).
    Http01,
    /// DNS-01: a TXT record `_acme-challenge.{domain}` is created through the provider.
    /// The only way to get wildcard certificates.
    Dns01(Box<dyn DnsProvider>),
}

impl Challenge {
    /// `http-01` or `dns-01`, as the CLI spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::Dns01(_) => "dns-01",
        }
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::Http01 => f.write_str("Http01"),
            Challenge::Dns01(p) => f.debug_tuple("Dns01").field(p).finish(),
        }
    }
}

/// Everything one issuance needs.
#[derive(Debug)]
pub struct AcmeConfig {
    /// ACME directory URL (`https://…`); see [`directory_url_from_env`].
    pub directory_url: String,
    /// Account contact, sent as `mailto:`; CAs use it for expiry and incident mail.
    pub contact_email: String,
    /// Names for the certificate. The first one names the files
    /// (`acme-{first}.crt`/`.key`) and the `certificates` row. `*.example.com` needs
    /// [`Challenge::Dns01`].
    pub domains: Vec<String>,
    /// How control of the domains is proven.
    pub challenge: Challenge,
    /// Directory for the account credentials and the certificate files (created 0700).
    pub state_dir: PathBuf,
    /// Bound on the whole issuance ([`DEFAULT_TIMEOUT`], 90 s).
    pub timeout: Duration,
    /// Extra PEM trust root(s) for the ACME server's own HTTPS (tests: pebble's
    /// self-made certificate). `None` trusts the public web PKI only.
    pub root_ca_pem: Option<Vec<u8>>,
    /// Proxy for every request to the ACME server, e.g. `socks5h://127.0.0.1:9050`
    /// (Tor: names resolved by the proxy) or `socks5://host:port`. `None` = direct
    /// (the usual `HTTPS_PROXY` environment variables still apply). The HTTP-01/DNS-01
    /// validation itself is done by the CA and does not use it.
    pub proxy: Option<String>,
}

impl AcmeConfig {
    /// A config with the default timeout and the public web PKI.
    pub fn new(
        directory_url: impl Into<String>,
        contact_email: impl Into<String>,
        domains: Vec<String>,
        challenge: Challenge,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        AcmeConfig {
            directory_url: directory_url.into(),
            contact_email: contact_email.into(),
            domains,
            challenge,
            state_dir: state_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            root_ca_pem: None,
            proxy: None,
        }
    }

    /// Checks the config without contacting anyone and returns the normalised
    /// (lower-case, de-duplicated, order-preserving) domain list.
    ///
    /// Errors are [`AcmeError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<Vec<String>> {
        validate_directory_url(&self.directory_url)?;
        validate_email(&self.contact_email)?;
        if self.timeout.is_zero() {
            return Err(AcmeError::config("timeout", "must be greater than zero"));
        }
        if self.domains.is_empty() {
            return Err(AcmeError::config(
                "domains",
                "at least one domain is required",
            ));
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(AcmeError::config(
                "domains",
                format!(
                    "{} names requested; an ACME certificate holds at most {MAX_DOMAINS}",
                    self.domains.len()
                ),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(self.domains.len());
        for d in &self.domains {
            let d = normalize_domain(d)?;
            if d.starts_with("*.") && !matches!(self.challenge, Challenge::Dns01(_)) {
                return Err(AcmeError::config(
                    "domains",
                    format!(
                        "`{d}` is a wildcard; wildcard certificates require the `dns-01` \
                         challenge (`http-01` cannot prove control of every subdomain)"
                    ),
                ));
            }
            if !out.contains(&d) {
                out.push(d);
            }
        }
        if let Some(pem) = &self.root_ca_pem {
            if reqwest::Certificate::from_pem_bundle(pem).map_or(true, |v| v.is_empty()) {
                return Err(AcmeError::config(
                    "root_ca_pem",
                    "holds no PEM `CERTIFICATE` section",
                ));
            }
        }
        if let Some(p) = &self.proxy {
            validate_proxy_url(p)?;
        }
        Ok(out)
    }
}

/// `socks5://`, `socks5h://`, `http://` or `https://` with a host and a port.
fn validate_proxy_url(s: &str) -> Result<()> {
    let url = url::Url::parse(s)
        .map_err(|e| AcmeError::config("proxy", format!("`{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "socks5" | "socks5h" | "http" | "https") {
        return Err(AcmeError::config(
            "proxy",
            format!("`{s}`: expected socks5h://host:port, socks5://host:port or http://host:port"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) || url.port_or_known_default().is_none() {
        return Err(AcmeError::config(
            "proxy",
            format!("`{s}` needs a host and a port"),
        ));
    }
    Ok(())
}

/// The ACME directory from the environment, per spec 20-cli §5: `FLM_ACME_DIRECTORY`
/// (if set and not empty) wins; else `FLM_ACME_USE_PROD=true` (or `1`, any case)
/// selects [`LETS_ENCRYPT_PRODUCTION`]; else [`LETS_ENCRYPT_STAGING`].
///
/// `lookup` reads one variable (`|k| std::env::var(k).ok()` in binaries, a map in
/// tests), so tests never touch the process environment.
pub fn directory_url_from_env(lookup: impl Fn(&str) -> Option<String>) -> String {
    if let Some(url) = lookup(ENV_DIRECTORY) {
        let url = url.trim();
        if !url.is_empty() {
            return url.to_owned();
        }
    }
    let prod = lookup(ENV_USE_PROD)
        .map(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("true") || v == "1"
        })
        .unwrap_or(false);
    if prod {
        LETS_ENCRYPT_PRODUCTION.to_owned()
    } else {
        LETS_ENCRYPT_STAGING.to_owned()
    }
}

/// RFC 8555 §6.1: ACME runs over HTTPS only.
fn validate_directory_url(s: &str) -> Result<()> {
    let url = url::Url::parse(s)
        .map_err(|e| AcmeError::config("directory_url", format!("`{s}` is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(AcmeError::config(
            "directory_url",
            format!("`{s}` must use `https://` (ACME requires TLS)"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(AcmeError::config(
            "directory_url",
            format!("`{s}` has no host"),
        ));
    }
    Ok(())
}

/// An RFC 5322 `addr-spec` restricted to what CAs accept: a dot-atom local part (no
/// quoted strings, no comments) and a fully qualified domain.
pub fn validate_email(s: &str) -> Result<()> {
    let bad = |reason: &str| AcmeError::config("contact_email", format!("`{s}` {reason}"));
    if s.len() > 254 {
        return Err(bad("is longer than 254 characters"));
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(bad("is not an email address (no `@`)"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad(
            "has a local part (before `@`) that is empty or over 64 characters",
        ));
    }
    const ATEXT_SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    let atom_ok = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(&b))
    };
    if !local.split('.').all(atom_ok) {
        return Err(bad(
            "has an invalid local part (letters, digits and !#$%&'*+/=?^_`{|}~- only, \
             dots only between characters)",
        ));
    }
    if domain.starts_with("*.") || !is_fqdn(domain) {
        return Err(bad(
            "has an invalid domain after `@` (a fully qualified domain is required)",
        ));
    }
    Ok(())
}

/// Lower-cases `d`, strips one trailing dot, and checks it is a fully qualified domain
/// name, optionally with a leading `*.` wildcard label.
pub fn normalize_domain(d: &str) -> Result<String> {
    let lower = d.trim().to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let base = name.strip_prefix("*.").unwrap_or(name);
    if base.contains('*') {
        return Err(AcmeError::config(
            "domains",
            format!(
                "`{d}`: a wildcard is only allowed as the whole leftmost label (`*.example.com`)"
            ),
        ));
    }
    if !is_fqdn(base) {
        return Err(AcmeError::config(
            "domains",
            format!(
                "`{d}` is not a fully qualified domain name (at least two labels of 1-63 \
                 letters, digits or inner `-`, 253 characters at most, not an IP address)"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// LDH labels, at least two of them, a non-numeric top-level label (so that IPv4
/// addresses are rejected), 253 characters at most.
fn is_fqdn(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn directory_from_env_precedence() {
        assert_eq!(directory_url_from_env(env(&[])), LETS_ENCRYPT_STAGING);
        assert_eq!(
            directory_url_from_env(env(&[(ENV_USE_PROD, "true")])),
            LETS_ENCRYPT_PRODUCTION
        );
        assert_eq!(
            directory_url_from_env(env(&[(ENV_USE_PROD, "TRUE")])),
            LETS_ENCRYPT_PRODUCTION
        );
        assert_eq!(
            directory_url_from_env(env(&[(ENV_USE_PROD, "1")])),
            LETS_ENCRYPT_PRODUCTION
        );
        assert_eq!(
            directory_url_from_env(env(&[(ENV_USE_PROD, "false")])),
            LETS_ENCRYPT_STAGING
        );
        assert_eq!(
            directory_url_from_env(env(&[(ENV_USE_PROD, "yes-please")])),
            LETS_ENCRYPT_STAGING
        );
        assert_eq!(
            directory_url_from_env(env(&[
                (ENV_USE_PROD, "true"),
                (ENV_DIRECTORY, "https://acme.internal/dir")
            ])),
            "https://acme.internal/dir"
        );
        assert_eq!(
            directory_url_from_env(env(&[(ENV_DIRECTORY, "  "), (ENV_USE_PROD, "true")])),
            LETS_ENCRYPT_PRODUCTION,
            "an empty FLM_ACME_DIRECTORY counts as unset"
        );
    }

    #[test]
    fn emails() {
        for ok in [
            "admin@example.com",
            "first.last+flm@sub.example.co.uk",
            "a!#$%&'*+/=?^_`{|}~-z@example.org",
            "x@xn--bcher-kva.example",
        ] {
            assert!(validate_email(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            "admin",
            "@example.com",
            "admin@",
            "admin@localhost",
            "admin@127.0.0.1",
            ".admin@example.com",
            "ad..min@example.com",
            "admin.@example.com",
            "ad min@example.com",
            "\"quoted\"@example.com",
            "a,b@example.com",
            "admin@exa_mple.com",
            "admin@-example.com",
            "admin@*.example.com",
        ] {
            let err = validate_email(bad).expect_err(bad);
            assert!(
                err.to_string().contains("contact_email"),
                "error names the field: {err}"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(validate_email(&long_local).is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("API.Example.COM.").expect("valid"),
            "api.example.com"
        );
        assert_eq!(
            normalize_domain("*.example.com").expect("valid"),
            "*.example.com"
        );
        for bad in [
            "",
            "localhost",
            "example",
            "1.2.3.4",
            "exa mple.com",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "*.com",
            "a.*.example.com",
            "*example.com",
            "**.example.com",
            "_acme.example.com",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(normalize_domain(&long_label).is_err());
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        assert!(long_name.len() > 253);
        assert!(normalize_domain(&long_name).is_err());
    }

    fn cfg(domains: &[&str], challenge: Challenge) -> AcmeConfig {
        AcmeConfig::new(
            LETS_ENCRYPT_STAGING,
            "admin@example.com",
            domains.iter().map(|d| (*d).to_owned()).collect(),
            challenge,
            "/tmp/unused",
        )
    }

    #[test]
    fn wildcard_requires_dns01() {
        let err = cfg(&["*.example.com"], Challenge::Http01)
            .validate()
            .expect_err("wildcard over http-01");
        let msg = err.to_string();
        assert!(msg.contains("`*.example.com` is a wildcard"), "{msg}");
        assert!(msg.contains("dns-01"), "{msg}");

        let dns = crate::HookDnsProvider::new("/bin/true");
        let ok = cfg(
            &["*.Example.com", "example.com", "EXAMPLE.com"],
            Challenge::Dns01(Box::new(dns)),
        )
        .validate()
        .expect("wildcard over dns-01");
        assert_eq!(
            ok,
            vec!["*.example.com", "example.com"],
            "normalised, de-duplicated"
        );
    }

    #[test]
    fn other_fields() {
        let mut c = cfg(&["a.example.com"], Challenge::Http01);
        c.directory_url = "http://acme.example.com/dir".into();
        assert!(c
            .validate()
            .expect_err("http")
            .to_string()
            .contains("https://"));
        c.directory_url = "not a url".into();
        assert!(c.validate().is_err());
        c.directory_url = LETS_ENCRYPT_STAGING.into();
        c.timeout = Duration::ZERO;
        assert!(c
            .validate()
            .expect_err("zero timeout")
            .to_string()
            .contains("timeout"));
        c.timeout = DEFAULT_TIMEOUT;
        c.root_ca_pem = Some(b"garbage".to_vec());
        assert!(c
            .validate()
            .expect_err("root")
            .to_string()
            .contains("root_ca_pem"));
        c.root_ca_pem = None;
        c.proxy = Some("ftp://127.0.0.1:21".into());
        assert!(c
            .validate()
            .expect_err("proxy scheme")
            .to_string()
            .contains("proxy"));
        c.proxy = Some("socks5h://127.0.0.1:9050".into());
        assert!(c.validate().is_ok());
        c.proxy = None;
        c.domains.clear();
        assert!(c.validate().is_err());
        c.domains = (0..101).map(|i| format!("h{i}.example.com")).collect();
        assert!(c.validate().is_err());
    }
}
