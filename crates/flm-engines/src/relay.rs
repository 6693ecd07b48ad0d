//! Raw HTTP exchange with an engine, for the proxy's byte-level relay and the
//! `/engine/{id}/*` pass-through: the request goes out as given, the response comes
//! back unparsed with its body streamed as it arrives.

use flm_core::ports::{RawBody, RawRequest, RawResponse};
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
    if let Some(fast) = client.fast_for(base_url) {
        return relay_hyper(fast, base_url, req).await;
    }
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
    Ok(raw_response(resp, url))
}

/// Sends `req` to `base_url` with `body` streamed as the request body (chunked), and
/// returns the streamed response. `req.body` is ignored.
pub async fn relay_stream(
    client: &HttpClient,
    base_url: &str,
    req: RawRequest,
    body: RawBody,
) -> Result<RawResponse, EngineError> {
    let url = format!("{base_url}{}", req.path_and_query);
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
        EngineError::Unsupported(format!("HTTP method `{}` is not supported", req.method))
    })?;
    let mut rb = client.raw().request(method, &url);
    for (k, v) in &req.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| transport_error(&e, &url))?;
    Ok(raw_response(resp, url))
}

/// The hot path: hyper's pooled client, no URL re-parsing beyond `http::Uri`.
async fn relay_hyper(
    client: &crate::http::FastClient,
    base_url: &str,
    req: RawRequest,
) -> Result<RawResponse, EngineError> {
    let url = format!("{base_url}{}", req.path_and_query);
    // A request that cannot be built is the caller's mistake, not a sign that the
    // engine is unreachable: never a network error (which would take the engine out of
    // routing), and the message does not name the engine's address.
    let uri: hyper::Uri = url.parse().map_err(|e| {
        EngineError::Unsupported(format!("the request path is not a valid URI: {e}"))
    })?;
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(uri)
        .header("user-agent", concat!("flm/", env!("CARGO_PKG_VERSION")));
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(http_body_util::Full::new(req.body))
        .map_err(|e| EngineError::Unsupported(format!("cannot build the request: {e}")))?;
    let resp = client.request(request).await.map_err(|e| {
        let cause = crate::http::root_cause(&e);
        if e.is_connect() {
            EngineError::Network(format!("cannot connect to {url}: {cause}"))
        } else {
            EngineError::Network(format!("request to {url} failed: {cause}"))
        }
    })?;
    let (parts, body) = resp.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let body = http_body_util::BodyDataStream::new(body).map(move |r| {
        r.map_err(|e| {
            EngineError::Network(format!(
                "the answer of {url} broke off: {}",
                crate::http::root_cause(&e)
            ))
        })
    });
    Ok(RawResponse {
        status: parts.status.as_u16(),
        headers,
        body: Box::pin(body),
    })
}

/// The engine's answer as relayed: status, end-to-end headers, the body streamed
/// (a break names `url`).
fn raw_response(resp: reqwest::Response, url: String) -> RawResponse {
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
    RawResponse {
        status,
        headers,
        body: Box::pin(body),
    }
}
