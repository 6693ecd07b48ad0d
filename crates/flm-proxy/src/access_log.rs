//! The access log: one structured event per request, at INFO on the target
//! [`TARGET`] (`flm::access`), emitted when the response body ends or the client
//! goes away. The daemon's JSON subscriber writes it to `logs/proxy.log` with the
//! other lines, so `log.level` / `RUST_LOG` apply to it; `log.access` turns it off
//! ([`set_enabled`], applied live by the daemon).
//!
//! Fields: `request_id`, `client_ip` (as the defence resolved it, trusted-proxy
//! aware), `api_key_id` (the key id, never the key), `route` (path, no query),
//! `method`, `engine_id`, `model`, `status`, `error_code`, `duration_ms`, `ttft_ms`
//! (streams: time to the first body byte), `input_tokens`, `output_tokens` (from the
//! engine's `usage`, when it sent one). Unknown fields are left out.
//!
//! The same facts feed the request metrics of `GET /metrics` ([`crate::metrics`]),
//! which are recorded whether the access event is written or not.
//!
//! Cost: one small allocation for the state and a scan of each body chunk for a
//! `usage` object; when the event is disabled (setting off, or the level filters it
//! out) the per-request strings only the log line needs are not copied.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// The tracing target of the access events.
pub const TARGET: &str = "flm::access";

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the access log on or off (the `log.access` setting; default on).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether an access event would be written now.
fn active() -> bool {
    ENABLED.load(Ordering::Relaxed) && tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// What is known of a request before its response body is sent.
struct Entry {
    request_id: String,
    method: Method,
    route: String,
    client_ip: Option<IpAddr>,
    api_key_id: Option<String>,
    engine_id: Option<String>,
    engine_kind: Option<&'static str>,
    model: Option<String>,
    status: u16,
    error_code: Option<&'static str>,
    stream: bool,
    ttft: Option<Duration>,
    tokens: Option<(u64, u64)>,
    /// Whether the access event is written for this request.
    log: bool,
}

/// Wraps `resp` so that its access event is written and its metrics recorded when
/// the body ends (or is dropped).
pub(crate) fn wrap(
    resp: Response,
    request_id: &str,
    method: Method,
    route: String,
    started: Instant,
    error_code: Option<&'static str>,
) -> Response {
    let log = active();
    let served = resp.extensions().get::<crate::telemetry::Served>();
    let mut engine_id = served.map(|s| s.engine_id.clone());
    let model = served.map(|s| s.model.clone());
    let engine_kind = served.map(|s| s.kind);
    if engine_id.is_none() {
        // The pass-through names its engine in the path.
        engine_id = route
            .strip_prefix("/engine/")
            .and_then(|rest| rest.split('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
    }
    let entry = Entry {
        request_id: if log {
            request_id.to_owned()
        } else {
            String::new()
        },
        method,
        route,
        client_ip: resp
            .extensions()
            .get::<crate::defence::ClientIp>()
            .map(|c| c.0)
            .filter(|_| log),
        api_key_id: resp
            .extensions()
            .get::<crate::app::KeyId>()
            .filter(|k| log && !k.0.is_empty())
            .map(|k| k.0.clone()),
        engine_id,
        engine_kind,
        model,
        status: resp.status().as_u16(),
        error_code,
        stream: resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")),
        ttft: None,
        tokens: None,
        log,
    };
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Logged {
            inner: body,
            entry: Some(Box::new(entry)),
            started,
        }),
    )
}

/// A response body that writes its request's access event when it ends or is dropped.
struct Logged {
    inner: Body,
    entry: Option<Box<Entry>>,
    started: Instant,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Logged {
    fn observe(&mut self, data: &[u8]) {
        let started = self.started;
        let Some(e) = self.entry.as_mut() else {
            return;
        };
        if e.stream {
            if e.ttft.is_none() {
                e.ttft = Some(started.elapsed());
            }
            if e.error_code.is_none()
                && (crate::telemetry::find(data, b"data: {\"error\"").is_some()
                    || crate::telemetry::find(data, b"event: response.failed").is_some())
            {
                e.error_code = Some("stream_error");
            }
        }
        if let Some(t) = crate::telemetry::usage_tokens(data) {
            e.tokens = Some(t);
        }
    }

    fn finish(&mut self, client_gone: bool) {
        let Some(e) = self.entry.take() else {
            return;
        };
        let error_code = e
            .error_code
            .or(client_gone.then_some("client_disconnected"));
        let duration = self.started.elapsed();
        crate::metrics::record(&crate::metrics::Facts {
            method: e.method.as_str(),
            route: &e.route,
            engine_id: e.engine_id.as_deref(),
            engine_kind: e.engine_kind,
            model: e.model.as_deref(),
            status: e.status,
            error_code,
            duration,
            ttft: e.ttft,
            tokens: e.tokens,
        });
        if !e.log {
            return;
        }
        tracing::info!(
            target: TARGET,
            request_id = %e.request_id,
            client_ip = e.client_ip.map(tracing::field::display),
            api_key_id = e.api_key_id.as_deref(),
            route = %e.route,
            method = %e.method,
            engine_id = e.engine_id.as_deref(),
            model = e.model.as_deref(),
            status = e.status,
            error_code,
            duration_ms = ms(duration),
            ttft_ms = e.ttft.map(ms),
            input_tokens = e.tokens.map(|t| t.0),
            output_tokens = e.tokens.map(|t| t.1),
            "request"
        );
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the server stopped).
        let gone = !self.inner.is_end_stream();
        self.finish(gone);
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.observe(data);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(e) = self.entry.as_mut() {
                    e.error_code.get_or_insert("stream_error");
                }
                self.finish(false);
            }
            Poll::Ready(None) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
