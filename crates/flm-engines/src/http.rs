//! The HTTP client shared by all adapters, and upstream error normalisation.

use std::error::Error as _;
use std::time::Duration;

use flm_core::proxy::{EgressConfig, EgressMode};
pub use flm_core::upstream::{embedded_error, one_line, upstream_message};
use flm_core::EngineError;
use serde_json::Value;

/// Plain-HTTP hyper client used by the proxy's hot path ([`crate::relay`]).
pub type FastClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// Shared HTTP clients. Cheap to clone.
///
/// `reqwest` serves the adapters (detection, listing, typed chat); the raw relay on
/// the proxy's hot path uses hyper's pooled client directly for `http://` engines,
/// which measurably cuts the per-request cost (no URL re-parsing, no redirect or
/// middleware machinery).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    fast: Option<FastClient>,
    /// With a SOCKS egress, the hyper fast path (which connects directly) serves only
    /// loopback engines.
    fast_loopback_only: bool,
}

/// CONNECT timeout through Tor/SOCKS5 (spec 30-proxy §11).
pub const SOCKS_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`): such engines
/// never go through Tor/SOCKS (spec 30-proxy §11).
pub fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| is_loopback_host(u.host()))
}

fn is_loopback_host(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("flm/", env!("CARGO_PKG_VERSION")))
}

fn fast_client() -> FastClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

impl HttpClient {
    /// A client for engine traffic: TCP_NODELAY, bounded connect time, no redirects,
    /// and no system proxy (engines are local; egress proxies are explicit).
    pub fn new() -> Result<Self, EngineError> {
        let inner = base_builder()
            .build()
            .map_err(|e| EngineError::Network(format!("cannot create the HTTP client: {e}")))?;
        Ok(Self {
            inner,
            fast: Some(fast_client()),
            fast_loopback_only: false,
        })
    }

    /// A client whose outbound traffic follows `egress` (spec 30-proxy §11): with
    /// `tor`/`socks5`, every non-loopback request goes through the SOCKS5 endpoint as
    /// `socks5h` (the proxy resolves host names: no DNS leak), with a 20 s connect
    /// timeout; loopback engines stay direct. `direct` is [`HttpClient::new`]. Whether
    /// the endpoint answers is not checked here (see the proxy's start checks).
    pub fn with_egress(egress: &EgressConfig) -> Result<Self, EngineError> {
        let endpoint = match (egress.mode, egress.endpoint()) {
            (EgressMode::Direct, _) => return Self::new(),
            (_, Some(ep)) => ep,
            (mode, None) => {
                return Err(EngineError::Network(format!(
                    "egress mode {} needs a SOCKS5 endpoint (host:port)",
                    mode.slug()
                )))
            }
        };
        let proxy_url = url::Url::parse(&format!("socks5h://{endpoint}")).map_err(|e| {
            EngineError::Network(format!("invalid SOCKS5 endpoint `{endpoint}`: {e}"))
        })?;
        let proxy = reqwest::Proxy::custom(move |u| {
            (!is_loopback_host(u.host())).then(|| proxy_url.clone())
        });
        let inner = base_builder()
            .proxy(proxy)
            .connect_timeout(SOCKS_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| EngineError::Network(format!("cannot create the HTTP client: {e}")))?;
        Ok(Self {
            inner,
            fast: Some(fast_client()),
            fast_loopback_only: true,
        })
    }

    /// Wraps a client configured elsewhere: an egress proxy, or a DNS override that
    /// points a name at a test server. The caller chooses its settings; those of
    /// [`HttpClient::new`] (no redirects, no system proxy, TCP_NODELAY) are advised.
    /// With such a client every request, the relay included, goes through it.
    pub fn from_reqwest(inner: reqwest::Client) -> Self {
        Self {
            inner,
            fast: None,
            fast_loopback_only: false,
        }
    }

    /// The hyper client for plain-HTTP relays, when enabled.
    pub fn fast(&self) -> Option<&FastClient> {
        self.fast.as_ref()
    }

    /// The hyper client for a plain-HTTP relay to `base_url`, when it may be used:
    /// never for `https://`, and with a SOCKS egress only for loopback engines (the
    /// fast path connects directly).
    pub fn fast_for(&self, base_url: &str) -> Option<&FastClient> {
        if !base_url.starts_with("http://")
            || (self.fast_loopback_only && !is_loopback_url(base_url))
        {
            return None;
        }
        self.fast.as_ref()
    }

    /// The underlying client.
    pub fn raw(&self) -> &reqwest::Client {
        &self.inner
    }
}

/// Maps a transport error to an [`EngineError`], naming the URL and the root cause.
pub fn transport_error(e: &reqwest::Error, url: &str) -> EngineError {
    let cause = root_cause(e);
    if e.is_builder() {
        // The request could not be built (e.g. an invalid URL): nothing reached the
        // engine, so this says nothing about its health.
        EngineError::Unsupported(format!("cannot build the request: {cause}"))
    } else if e.is_timeout() {
        EngineError::Timeout(format!("{url} did not answer in time"))
    } else if e.is_connect() {
        EngineError::Network(format!("cannot connect to {url}: {cause}"))
    } else if e.is_decode() || e.is_body() {
        EngineError::Network(format!("reading the answer of {url} failed: {cause}"))
    } else {
        EngineError::Network(format!("request to {url} failed: {cause}"))
    }
}

/// Innermost error message (e.g. `Connection refused (os error 111)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let msg = cur.to_string();
    if msg.is_empty() {
        e.to_string()
    } else {
        msg
    }
}

/// Whether `e` is a connection failure (nothing listening), as opposed to a timeout.
pub fn is_connect_error(e: &reqwest::Error) -> bool {
    e.is_connect() && !e.is_timeout() && e.source().is_some()
}

/// Builds the error for a non-success HTTP answer.
pub fn status_error(status: u16, body: &[u8], url: &str) -> EngineError {
    let detail = upstream_message(body).unwrap_or_else(|| "empty body".to_owned());
    EngineError::Api {
        status_code: Some(status),
        message: format!("{url} answered HTTP {status}: {detail}"),
    }
}

/// Sends a streaming request. Only the wait for the response head is bounded, by
/// `timeout` like a whole non-streaming call: it covers queueing and a model load,
/// and without a bound an engine that accepts the connection but never answers would
/// hold the stream forever. The body is not bounded here, since a long answer may
/// legitimately stream for minutes (the proxy applies its own ceiling).
pub async fn send_stream(
    rb: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<reqwest::Response, EngineError> {
    match tokio::time::timeout(timeout, rb.send()).await {
        Ok(sent) => sent.map_err(|e| transport_error(&e, url)),
        Err(_) => Err(EngineError::Timeout(format!(
            "{url} did not start answering within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Reads a whole body (an error answer, or a non-stream where a stream was asked),
/// bounded by `timeout`.
pub async fn read_body(
    resp: reqwest::Response,
    url: &str,
    timeout: Duration,
) -> Result<bytes::Bytes, EngineError> {
    match tokio::time::timeout(timeout, resp.bytes()).await {
        Ok(read) => read.map_err(|e| transport_error(&e, url)),
        Err(_) => Err(EngineError::Timeout(format!(
            "{url} did not finish its answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Sends a request and reads a JSON answer, turning every failure into a precise
/// [`EngineError`]: transport errors, non-2xx statuses (with the engine's message),
/// 2xx bodies that are not JSON, and 2xx bodies that carry an `error`.
pub async fn send_json(rb: reqwest::RequestBuilder, url: &str) -> Result<Value, EngineError> {
    let resp = rb.send().await.map_err(|e| transport_error(&e, url))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| transport_error(&e, url))?;
    if !(200..300).contains(&status) {
        return Err(status_error(status, &body, url));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        EngineError::InvalidResponse(format!(
            "{url} returned invalid JSON ({e}): {}",
            one_line(&String::from_utf8_lossy(&body), 120)
        ))
    })?;
    if let Some(msg) = embedded_error(&v) {
        return Err(EngineError::Api {
            status_code: Some(status),
            message: format!("{url} answered with an error: {}", one_line(&msg, 300)),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_engines_are_recognised() {
        for u in [
            "http://127.0.0.1:11434",
            "http://127.0.0.2:8000",
            "http://[::1]:8000",
            "http://localhost:1234",
            "http://LOCALHOST.:1234",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "http://192.0.2.2:8000",
            "http://gpu-box.lan:8000",
            "https://example.com",
            "not a url",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }

    #[test]
    fn socks_egress_keeps_the_fast_path_for_loopback_only() {
        let direct = HttpClient::new().unwrap();
        assert!(direct.fast_for("http://192.0.2.2:8000").is_some());
        assert!(direct.fast_for("https://127.0.0.1:8000").is_none());
        let socks = HttpClient::with_egress(&EgressConfig {
            mode: EgressMode::Socks5,
            socks5_endpoint: Some("127.0.0.1:1080".into()),
            fail_open: false,
        })
        .unwrap();
        assert!(socks.fast_for("http://127.0.0.1:8000").is_some());
        assert!(socks.fast_for("http://192.0.2.2:8000").is_none());
        let tor = HttpClient::with_egress(&EgressConfig {
            mode: EgressMode::Tor,
            ..EgressConfig::default()
        });
        assert!(tor.is_ok());
    }
}
