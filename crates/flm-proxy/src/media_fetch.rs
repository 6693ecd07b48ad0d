//! Fetching a remote image for a client (`image_url` with an `http(s)` URL), guarded
//! against server-side request forgery.
//!
//! - Only `http` and `https`, no credentials in the URL.
//! - The host is judged by [`flm_guard::ssrf::check`] under the policy's `media_fetch`
//!   section. An IP literal (every spelling the WHATWG URL parser accepts —
//!   `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]` — is normalised before it is
//!   judged) is checked directly; a name is resolved *here*, every address it
//!   resolves to must pass, and the connection goes to those checked addresses only
//!   (the HTTP client is handed them through its resolver: no second lookup, so DNS
//!   rebinding cannot slip in a private address).
//! - Redirects are followed by hand, at most `max_redirects`, each hop judged again.
//! - Bounded in time (the caller's deadline), per-image bytes (before and while
//!   reading) and content: the `Content-Type` must be PNG, JPEG or WebP *and* the first
//!   bytes must be one of those formats (the sniffed type is what the engine gets).
//! - With a SOCKS5 egress (Tor or custom) the fetch goes through it with the name
//!   resolved by the SOCKS server (`socks5h`, no DNS leak): literal addresses are still
//!   judged, and local-looking names (`localhost`, `*.internal`, single labels…) are
//!   refused, but what a name resolves to on the SOCKS server's side cannot be seen.
//!
//! Error messages never name the address a host resolved to, and a host that does not
//! resolve gets the same answer as one that resolves to a forbidden address, so the
//! proxy cannot be used as an oracle to map internal names.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flm_guard::ssrf;
use flm_guard::MediaFetchPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a fetch failed; mapped to `400` codes by [`crate::multimodal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// Not an `http(s)` URL, or malformed.
    #[error("{0}")]
    BadUrl(String),
    /// The host is not allowed (or does not resolve): `image_url_forbidden`.
    #[error("the image URL's host is not allowed: it does not resolve, or it resolves to a loopback, private, link-local, metadata or otherwise non-public address (an administrator can allow addresses in the security policy's `media_fetch` section)")]
    Forbidden,
    /// The server could not be reached or answered badly: `image_fetch_failed`.
    #[error("{0}")]
    Failed(String),
    /// Over the per-image or per-request byte limit: `image_too_large`.
    #[error("{0}")]
    TooLarge(String),
    /// Not a PNG, JPEG or WebP image: `unsupported_image_type`.
    #[error("{0}")]
    NotImage(String),
}

/// A fetched image.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Sniffed MIME type.
    pub mime: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Resolves names for the HTTP client and lets through only names whose every
/// address passes the guard.
struct GuardedResolver {
    allow_private: bool,
    allowed: Vec<flm_guard::IpNet>,
    /// Set when a name was refused (or did not resolve), to tell that apart from
    /// other connection failures.
    refused: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("host not allowed")]
struct Refused;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let allowed = self.allowed.clone();
        let refused = self.refused.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(a) => a.collect(),
                Err(_) => Vec::new(),
            };
            let bad = addrs
                .iter()
                .find_map(|a| ssrf::check(a.ip(), allow_private, &allowed).err());
            if addrs.is_empty() || bad.is_some() {
                refused.store(true, Ordering::SeqCst);
                // The log names the class, never the address (it may be internal).
                tracing::warn!(
                    refused = bad.map_or("unresolved", ssrf::AddrClass::as_str),
                    "remote image refused by the fetch guard"
                );
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL's scheme, credentials and literal host; returns it parsed.
fn check_url(url: &Url, policy: &MediaFetchPolicy, via_socks: bool) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(
            "only http:// and https:// image URLs (or data: URLs) are accepted".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::BadUrl(
            "image URLs must not carry credentials".into(),
        ));
    }
    // The URL parser has already normalised IPv4 spellings (`2130706433`, `0x7f.1`)
    // to dotted form and IPv6 to its canonical bracketed form.
    let Some(host) = url.host_str() else {
        return Err(FetchError::BadUrl("the image URL has no host".into()));
    };
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return literal(ip, policy);
    }
    if via_socks && ssrf::is_local_name(host) && !policy.allow_private {
        return Err(FetchError::Forbidden);
    }
    Ok(())
}

fn literal(ip: IpAddr, policy: &MediaFetchPolicy) -> Result<(), FetchError> {
    ssrf::check(ip, policy.allow_private, &policy.allowed_cidrs).map_err(|class| {
        tracing::warn!(
            refused = class.as_str(),
            "remote image refused by the fetch guard"
        );
        FetchError::Forbidden
    })
}

/// The HTTP client of one fetch: no redirects (followed by hand), no environment
/// proxies, the guarded resolver (direct) or the SOCKS5 egress (`socks5h`).
fn client(
    policy: &MediaFetchPolicy,
    socks: Option<&str>,
    refused: Arc<AtomicBool>,
) -> Result<reqwest::Client, FetchError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .user_agent(concat!("flm/", env!("CARGO_PKG_VERSION"), " (image fetch)"))
        .connect_timeout(Duration::from_secs(u64::from(policy.timeout_secs)))
        .tcp_nodelay(true);
    match socks {
        Some(ep) => {
            let proxy = reqwest::Proxy::all(format!("socks5h://{ep}"))
                .map_err(|e| FetchError::Failed(format!("egress unusable: {e}")))?;
            b = b.proxy(proxy);
        }
        None => {
            b = b.dns_resolver(Arc::new(GuardedResolver {
                allow_private: policy.allow_private,
                allowed: policy.allowed_cidrs.clone(),
                refused,
            }));
        }
    }
    b.build()
        .map_err(|e| FetchError::Failed(format!("cannot build the HTTP client: {e}")))
}

/// Allowed image types by their first bytes.
pub(crate) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Fetches one image. `remaining` is what is left of the request's byte budget
/// (`max_total_bytes`); the caller bounds the time.
pub(crate) async fn fetch_image(
    url: &str,
    policy: &MediaFetchPolicy,
    socks: Option<&str>,
    remaining: u64,
) -> Result<Fetched, FetchError> {
    let mut url = Url::parse(url)
        .map_err(|e| FetchError::BadUrl(format!("the image URL is not a valid URL: {e}")))?;
    let refused = Arc::new(AtomicBool::new(false));
    let http = client(policy, socks, refused.clone())?;
    let per_image = u64::from(policy.max_image_bytes);
    let cap = per_image.min(remaining);
    let too_large = |n: Option<u64>| {
        let what = if remaining < per_image {
            format!(
                "the images of this request exceed {} bytes in total (media_fetch.max_total_bytes)",
                policy.max_total_bytes
            )
        } else {
            format!(
                "the image exceeds {} bytes (media_fetch.max_image_bytes)",
                policy.max_image_bytes
            )
        };
        FetchError::TooLarge(match n {
            Some(n) => format!("{what}: the server announced {n} bytes"),
            None => what,
        })
    };
    let mut hops = 0u32;
    let mut resp = loop {
        check_url(&url, policy, socks.is_some())?;
        let sent = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "image/png, image/jpeg, image/webp")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(_) if refused.load(Ordering::SeqCst) => return Err(FetchError::Forbidden),
            Err(e) if e.is_timeout() => {
                return Err(FetchError::Failed(
                    "the image server did not answer in time".into(),
                ))
            }
            Err(e) if e.is_connect() => {
                return Err(FetchError::Failed(
                    "could not connect to the image server".into(),
                ))
            }
            Err(_) => {
                return Err(FetchError::Failed(
                    "the image request failed before an answer arrived".into(),
                ))
            }
        };
        if resp.status().is_redirection() {
            let Some(loc) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Err(FetchError::Failed(format!(
                    "the image server answered HTTP {} without a Location",
                    resp.status().as_u16()
                )));
            };
            hops += 1;
            if hops > policy.max_redirects {
                return Err(FetchError::Failed(format!(
                    "the image URL redirects more than {} times (media_fetch.max_redirects)",
                    policy.max_redirects
                )));
            }
            url = url.join(loc).map_err(|_| {
                FetchError::Failed("the image server redirected to an invalid URL".into())
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(FetchError::Forbidden);
            }
            continue;
        }
        break resp;
    };
    if !resp.status().is_success() {
        return Err(FetchError::Failed(format!(
            "the image server answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    let declared = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        declared.as_str(),
        "image/png" | "image/jpeg" | "image/jpg" | "image/webp"
    ) {
        return Err(FetchError::NotImage(if declared.is_empty() {
            "the image server sent no Content-Type: only PNG, JPEG and WebP images are accepted"
                .into()
        } else {
            format!(
                "the image URL serves `{declared}`: only PNG, JPEG and WebP images are accepted"
            )
        }));
    }
    if let Some(n) = resp.content_length() {
        if n > cap {
            return Err(too_large(Some(n)));
        }
    }
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (bytes.len() + c.len()) as u64 > cap {
                    return Err(too_large(None));
                }
                bytes.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(FetchError::Failed(
                    "the image download was interrupted".into(),
                ))
            }
        }
    }
    let mime = sniff(&bytes).ok_or_else(|| {
        FetchError::NotImage(
            "the image URL's content is not a PNG, JPEG or WebP image (its first bytes say otherwise)"
                .into(),
        )
    })?;
    Ok(Fetched { mime, bytes })
}

/// Standard Base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"<html>"), None);
    }

    #[test]
    fn literal_spellings_are_judged_after_normalisation() {
        let p = MediaFetchPolicy::default();
        for u in [
            "http://127.0.0.1/x.png",
            "http://2130706433/x.png",
            "http://0x7f.1/x.png",
            "http://0177.0.0.1/x.png",
            "http://127.1/x.png",
            "http://[::1]/x.png",
            "http://[::ffff:127.0.0.1]/x.png",
            "http://[::ffff:7f00:1]/x.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://100.64.1.1/",
        ] {
            let url = Url::parse(u).unwrap();
            assert_eq!(
                check_url(&url, &p, false),
                Err(FetchError::Forbidden),
                "{u}"
            );
        }
        for u in [
            "file:///etc/passwd",
            "gopher://example.com/",
            "http://u:p@example.com/",
        ] {
            let url = Url::parse(u).unwrap();
            assert!(
                matches!(check_url(&url, &p, false), Err(FetchError::BadUrl(_))),
                "{u}"
            );
        }
        let url = Url::parse("http://localhost/x.png").unwrap();
        assert_eq!(check_url(&url, &p, true), Err(FetchError::Forbidden));
        assert_eq!(
            check_url(&url, &p, false),
            Ok(()),
            "resolved and judged later"
        );
        assert_eq!(
            check_url(&Url::parse("https://example.com/a.png").unwrap(), &p, true),
            Ok(())
        );
    }
}
