//! The HTTP client under `instant-acme`: the workspace's `reqwest` (rustls + ring).
//!
//! `instant-acme`'s own client is `hyper-rustls` with the platform verifier, which would
//! add a second TLS client stack (and `aws-lc-rs` by default) for a handful of requests.
//! `reqwest` is already in the build, takes an extra trust root for pebble in one call,
//! and has connect/request timeouts.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use serde::Deserialize;

use crate::error::{chain, AcmeError, Result};

/// Bound on establishing one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one request/response. ACME responses are small; 30 s tolerates a slow CA
/// under load while leaving room for retries within the 90 s issuance bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A transport-level failure (no HTTP response), kept typed inside
/// `instant_acme::Error::Other` so it maps to [`AcmeError::Network`].
#[derive(Debug, thiserror::Error)]
#[error("`{method} {url}`: {cause}")]
pub(crate) struct TransportError {
    method: http::Method,
    url: String,
    cause: String,
}

/// `reqwest` behind `instant_acme::HttpClient`.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: reqwest::Client,
}

impl AcmeHttp {
    /// A client trusting the web PKI plus `extra_roots_pem`, if any, going through
    /// `proxy` when set.
    pub(crate) fn new(
        extra_roots_pem: Option<&[u8]>,
        proxy: Option<&str>,
        request_timeout: Duration,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            // ACME servers answer 201 + `Location`; nothing legitimate redirects, and
            // following one would silently send signed requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(REQUEST_TIMEOUT.min(request_timeout));
        if let Some(p) = proxy {
            let p = reqwest::Proxy::all(p).map_err(|e| AcmeError::config("proxy", chain(&e)))?;
            builder = builder.proxy(p);
        }
        if let Some(pem) = extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| AcmeError::config("root_ca_pem", chain(&e)))?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| AcmeError::config("root_ca_pem", chain(&e)))?;
        Ok(AcmeHttp { client })
    }

    /// Fetches and checks the ACME directory (RFC 8555 §7.1.1), so that an unreachable
    /// or wrong URL is reported as such before anything else happens.
    pub(crate) async fn probe_directory(&self, url: &str) -> Result<()> {
        let unreachable = |cause: String| AcmeError::DirectoryUnreachable {
            url: url.to_owned(),
            cause,
        };
        let rsp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable(chain(&e.without_url())))?;
        let status = rsp.status();
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let body = rsp
            .bytes()
            .await
            .map_err(|e| unreachable(chain(&e.without_url())))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Directory {
            new_nonce: Option<String>,
            new_account: Option<String>,
            new_order: Option<String>,
        }
        let dir: Directory = serde_json::from_slice(&body).map_err(|e| {
            unreachable(format!(
                "not an ACME directory (the body is not the expected JSON: {e})"
            ))
        })?;
        for (field, v) in [
            ("newNonce", &dir.new_nonce),
            ("newAccount", &dir.new_account),
            ("newOrder", &dir.new_order),
        ] {
            if v.as_deref().is_none_or(str::is_empty) {
                return Err(unreachable(format!(
                    "not an ACME directory (no `{field}` URL)"
                )));
            }
        }
        Ok(())
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let url = parts.uri.to_string();
            let transport = |e: reqwest::Error| {
                instant_acme::Error::Other(Box::new(TransportError {
                    method: parts.method.clone(),
                    url: url.clone(),
                    cause: chain(&e.without_url()),
                }))
            };
            let rsp = client
                .request(parts.method.clone(), &url)
                .headers(parts.headers.clone())
                .body(body)
                .send()
                .await
                .map_err(transport)?;
            let status = rsp.status();
            let headers = rsp.headers().clone();
            let bytes = rsp.bytes().await.map_err(transport)?;
            let mut out = http::Response::new(());
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            let (parts, ()) = out.into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(bytes),
            })
        })
    }
}

/// Maps an `instant-acme` error to ours. Problem documents become
/// [`AcmeError::Rejected`], transport failures [`AcmeError::Network`], the rest
/// [`AcmeError::Protocol`].
pub(crate) fn map_acme_error(e: instant_acme::Error) -> AcmeError {
    match e {
        instant_acme::Error::Api(p) => rejected(&p),
        instant_acme::Error::Other(inner) => match inner.downcast::<TransportError>() {
            Ok(t) => AcmeError::Network {
                cause: t.to_string(),
            },
            Err(other) => AcmeError::Protocol(chain(other.as_ref())),
        },
        other => AcmeError::Protocol(chain(&other)),
    }
}

/// [`AcmeError::Rejected`] from a problem document.
pub(crate) fn rejected(p: &instant_acme::Problem) -> AcmeError {
    AcmeError::Rejected {
        problem_type: p.r#type.clone().unwrap_or_else(|| "unknown".to_owned()),
        detail: problem_detail(p),
        status: p.status,
    }
}

/// The `detail` of a problem with its subproblems appended.
pub(crate) fn problem_detail(p: &instant_acme::Problem) -> String {
    let mut out = p
        .detail
        .clone()
        .unwrap_or_else(|| "no detail given".to_owned());
    for sp in &p.subproblems {
        out.push_str("; ");
        out.push_str(&sp.to_string());
    }
    out
}
