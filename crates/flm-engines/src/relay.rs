//! Raw HTTP exchange with an engine, for the proxy's byte-level relay and the
//! `/engine/{id}/*` pass-through: the request goes out as given, the response comes
//! back unparsed with its body streamed as it arrives.

use flm_core::ports::{RawRequest, RawResponse};
use flm_core::EngineError;
use futures::StreamExt;

use crate::http::{transport_error, HttpClient};

/// Response headers that describe the connection, not the content.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends `req` to `base_url` and returns the streamed response.
pub async fn relay(
    client: &HttpClient,
    base_url: &str,
    req: RawRequest,
) -> Result<RawResponse, EngineError> {
    let url = format!("{base_url}{}", req.path_and_query);
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
        EngineError::Unsupported(format!("HTTP method `{}` is not supported", req.method))
    })?;
    let mut rb = client.raw().request(method, &url);
    for (k, v) in &req.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if !req.body.is_empty() {
        rb = rb.body(req.body);
    }
    let resp = rb.send().await.map_err(|e| transport_error(&e, &url))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let body = resp.bytes_stream().map(move |r| {
        r.map_err(|e| {
            EngineError::Network(format!(
                "the answer of {url} broke off: {}",
                crate::http::root_cause(&e)
            ))
        })
    });
    Ok(RawResponse {
        status,
        headers,
        body: Box::pin(body),
    })
}
