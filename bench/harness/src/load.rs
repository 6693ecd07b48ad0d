//! The closed-loop load generator.
//!
//! `concurrency` workers each own one keep-alive HTTP/1 connection and send the next
//! request as soon as the previous response has been read to its end. A run is
//! bounded by a total request count, a duration, or both (whichever comes first),
//! and every request by a timeout, so no loop here can run forever.
//!
//! Timing: the clock starts once the connection is ready to send (connecting is not
//! part of a request's latency) and stops when the last body byte has arrived; for
//! streams, time to first byte (TTFB) stops at the first non-empty body frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// The chat path, appended to the base URL.
const CHAT_PATH: &str = "/v1/chat/completions";
/// The Responses path (`--api responses`).
const RESPONSES_PATH: &str = "/v1/responses";
/// The event that ends a successful Responses stream.
const COMPLETED: &[u8] = b"event: response.completed";

/// Which OpenAI API the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// `POST /v1/chat/completions`; streams end with `data: [DONE]`.
    #[default]
    Chat,
    /// `POST /v1/responses` (same prompt as `input`); streams end with a
    /// `response.completed` event.
    Responses,
}

/// Pause after a failed connect, so a dead server costs errors, not a hot spin.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL, `http://host:port` (a trailing `/v1` is accepted).
    pub url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// The `model` of every request.
    pub model: String,
    /// Number of connections, each with one request in flight.
    pub concurrency: usize,
    /// Stop after this many measured requests in total.
    pub requests: Option<u64>,
    /// Stop sending new requests after this long.
    pub duration: Option<Duration>,
    /// Ask for `"stream": true`, measure TTFB and check for `[DONE]`.
    pub stream: bool,
    /// Requests sent before measuring (spread over the workers), not recorded.
    pub warmup: u64,
    /// Limit for one request, connect included.
    pub timeout: Duration,
    /// Copied into the report, to tell runs apart in a results file.
    pub label: Option<String>,
    /// Chat completions or Responses.
    pub api: Api,
}

/// The result of one run, printed as one JSON line.
///
/// `requests` counts every measured attempt; `rps` and the percentiles count only
/// those that succeeded (2xx, body read to its end, and for streams `[DONE]` last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The `--label` of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether requests asked for a stream.
    pub stream: bool,
    /// Number of connections.
    pub concurrency: usize,
    /// Measured attempts.
    pub requests: u64,
    /// Connect, I/O, timeout and protocol failures (a stream without `[DONE]` too).
    pub errors: u64,
    /// Complete responses whose status was not 2xx.
    pub non_2xx: u64,
    /// Connections opened again after the first one of a worker (errors, or the
    /// server closing keep-alive connections).
    pub reconnects: u64,
    /// Wall time of the measured phase.
    pub duration_s: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Full latency percentiles, microseconds (for streams: until the end of stream).
    pub p50_us: f64,
    /// See `p50_us`.
    pub p90_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// Time to first body byte, streams only.
    pub ttfb_p50_us: Option<f64>,
    /// See `ttfb_p50_us`.
    pub ttfb_p99_us: Option<f64>,
}

/// What every request of a run shares: prebuilt header values and body.
struct Target {
    addr: String,
    host: HeaderValue,
    authorization: HeaderValue,
    body: Bytes,
    stream: bool,
    timeout: Duration,
    api: Api,
}

impl Target {
    fn new(cfg: &LoadConfig) -> anyhow::Result<Self> {
        let base = cfg.url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let uri: Uri = base
            .parse()
            .with_context(|| format!("bad `--url` {:?}", cfg.url))?;
        if uri.scheme_str() != Some("http") {
            bail!("`--url` must start with http:// (got {:?})", cfg.url);
        }
        if !matches!(uri.path(), "" | "/") {
            bail!(
                "`--url` must be a base URL such as http://127.0.0.1:8080 (got {:?})",
                cfg.url
            );
        }
        let authority = uri.authority().context("`--url` has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        let prompt = "Say hello in one short sentence.";
        let body = serde_json::to_vec(&match cfg.api {
            Api::Chat => serde_json::json!({
                "model": cfg.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 32,
                "stream": cfg.stream,
            }),
            Api::Responses => serde_json::json!({
                "model": cfg.model,
                "input": prompt,
                "max_output_tokens": 32,
                "stream": cfg.stream,
            }),
        })?;
        Ok(Self {
            addr: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str())?,
            authorization: HeaderValue::from_str(&format!("Bearer {}", cfg.key))
                .context("`--key` is not a valid header value")?,
            body: Bytes::from(body),
            stream: cfg.stream,
            timeout: cfg.timeout,
            api: cfg.api,
        })
    }

    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::from_static(match self.api {
            Api::Chat => CHAT_PATH,
            Api::Responses => RESPONSES_PATH,
        });
        let headers = req.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(req)
    }
}

/// Runs the load and returns the report.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<LoadReport> {
    if cfg.concurrency == 0 {
        bail!("`--concurrency` must be at least 1");
    }
    if cfg.requests.is_none() && cfg.duration.is_none() {
        bail!("give `--requests`, `--duration-secs` or both: every run must be bounded");
    }
    let target = Arc::new(Target::new(&cfg)?);
    let tickets = Arc::new(AtomicU64::new(0));
    // Workers connect and warm up, then all start measuring at once, with the clock.
    let barrier = Arc::new(Barrier::new(cfg.concurrency + 1));
    let warmup_each = cfg.warmup.div_ceil(cfg.concurrency as u64);
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let worker = Worker {
            target: Arc::clone(&target),
            tickets: Arc::clone(&tickets),
            barrier: Arc::clone(&barrier),
            max_requests: cfg.requests,
            duration: cfg.duration,
            warmup: warmup_each,
        };
        workers.push(tokio::spawn(worker.run()));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut total = Tally::default();
    for worker in workers {
        total.merge(worker.await.context("load worker panicked")?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = &total.first_error {
        eprintln!("flm-bench load: {} error(s); first: {e}", total.errors);
    }
    total.latencies.sort_unstable();
    total.ttfbs.sort_unstable();
    let ok = total.latencies.len() as f64;
    Ok(LoadReport {
        label: cfg.label,
        stream: cfg.stream,
        concurrency: cfg.concurrency,
        requests: total.requests,
        errors: total.errors,
        non_2xx: total.non_2xx,
        reconnects: total.reconnects,
        duration_s: round(elapsed, 3),
        rps: if elapsed > 0.0 {
            round(ok / elapsed, 1)
        } else {
            0.0
        },
        p50_us: percentile_us(&total.latencies, 0.50),
        p90_us: percentile_us(&total.latencies, 0.90),
        p99_us: percentile_us(&total.latencies, 0.99),
        ttfb_p50_us: cfg.stream.then(|| percentile_us(&total.ttfbs, 0.50)),
        ttfb_p99_us: cfg.stream.then(|| percentile_us(&total.ttfbs, 0.99)),
    })
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds (0.1 µs).
fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_ns.len()) - 1;
    round(sorted_ns[idx] as f64 / 1000.0, 1)
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

// === impl Tally ===

/// One worker's counts and samples (nanoseconds).
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    non_2xx: u64,
    reconnects: u64,
    latencies: Vec<u64>,
    ttfbs: Vec<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.non_2xx += other.non_2xx;
        self.reconnects += other.reconnects;
        self.latencies.extend(other.latencies);
        self.ttfbs.extend(other.ttfbs);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

// === impl Worker ===

/// What one request ended as.
enum Outcome {
    Ok {
        total: Duration,
        ttfb: Option<Duration>,
    },
    Non2xx,
    /// `connect` tells whether the connection could not even be opened.
    Error {
        message: String,
        connect: bool,
    },
}

struct Worker {
    target: Arc<Target>,
    tickets: Arc<AtomicU64>,
    barrier: Arc<Barrier>,
    max_requests: Option<u64>,
    duration: Option<Duration>,
    warmup: u64,
}

impl Worker {
    async fn run(self) -> Tally {
        let mut conn = Conn::default();
        // Open the connection before the clock starts, even without warm-up.
        let _ = conn.sender(&self.target).await;
        for _ in 0..self.warmup {
            let _ = self.one(&mut conn).await;
        }
        let mut tally = Tally::default();
        // Reconnects during warm-up are not the measured server's steady state.
        conn.reconnects = 0;
        self.barrier.wait().await;
        let deadline = self.duration.map(|d| Instant::now() + d);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if let Some(max) = self.max_requests {
                if self.tickets.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            }
            tally.requests += 1;
            match self.one(&mut conn).await {
                Outcome::Ok { total, ttfb } => {
                    tally.latencies.push(total.as_nanos() as u64);
                    if let Some(t) = ttfb {
                        tally.ttfbs.push(t.as_nanos() as u64);
                    }
                }
                Outcome::Non2xx => tally.non_2xx += 1,
                Outcome::Error { message, connect } => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(message);
                    if connect {
                        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                    }
                }
            }
        }
        tally.reconnects = conn.reconnects;
        tally
    }

    /// Sends one request and reads the whole response, within the timeout.
    async fn one(&self, conn: &mut Conn) -> Outcome {
        let target = &self.target;
        let outcome = tokio::time::timeout(target.timeout, async {
            let sender = match conn.ready(target).await {
                Ok(s) => s,
                Err(e) => {
                    return Outcome::Error {
                        message: format!("connect: {e:#}"),
                        connect: true,
                    };
                }
            };
            match exchange(sender, target).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    conn.drop_connection();
                    Outcome::Error {
                        message: format!("{e:#}"),
                        connect: false,
                    }
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| {
            // The connection may still carry the late response: never reuse it.
            conn.drop_connection();
            Outcome::Error {
                message: format!("timed out after {:?}", target.timeout),
                connect: false,
            }
        })
    }
}

/// One request/response on a ready connection.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
) -> anyhow::Result<Outcome> {
    let req = target.request()?;
    let start = Instant::now();
    let resp = sender.send_request(req).await.context("send")?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut ttfb = None;
    let mut tail = Tail::default();
    let mut completed = false;
    let mut edge: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read body")?;
        if let Some(data) = frame.data_ref() {
            if ttfb.is_none() && !data.is_empty() {
                ttfb = Some(start.elapsed());
            }
            if target.stream {
                tail.push(data);
                if target.api == Api::Responses && !completed {
                    // The marker may straddle two frames: keep the end of the last one.
                    let mut joined = std::mem::take(&mut edge);
                    joined.extend_from_slice(data);
                    completed = joined.windows(COMPLETED.len()).any(|w| w == COMPLETED);
                    let keep = joined.len().saturating_sub(COMPLETED.len() - 1);
                    edge = joined.split_off(keep);
                }
            }
        }
    }
    let total = start.elapsed();
    if !status.is_success() {
        return Ok(Outcome::Non2xx);
    }
    match target.api {
        Api::Chat if target.stream && !tail.ends_with_done() => {
            bail!("stream did not end with `data: [DONE]`")
        }
        Api::Responses if target.stream && !completed => {
            bail!("stream had no `response.completed` event")
        }
        _ => {}
    }
    Ok(Outcome::Ok {
        total,
        ttfb: target.stream.then_some(ttfb).flatten(),
    })
}

// === impl Conn ===

/// A worker's connection, opened on demand.
#[derive(Default)]
struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
    opened: u64,
    reconnects: u64,
}

impl Conn {
    /// A connection ready to send: the open one, or a new one if the server closed
    /// it since the last response (that is a reconnect, not an error).
    async fn ready(&mut self, target: &Target) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        for _ in 0..2 {
            let sender = self.sender(target).await?;
            if sender.ready().await.is_ok() {
                break;
            }
            self.sender = None;
        }
        self.sender(target).await
    }

    async fn sender(&mut self, target: &Target) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_some_and(SendRequest::is_closed) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let sender = connect(target).await?;
            self.opened += 1;
            if self.opened > 1 {
                self.reconnects += 1;
            }
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no connection")
    }

    fn drop_connection(&mut self) {
        self.sender = None;
    }
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("connect to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    // Ends when the connection closes; errors surface on the next request instead.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

// === impl Tail ===

/// The last bytes of a stream, to check how it ended without keeping it all.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 32;

    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(Self::KEEP)..];
        self.buf.extend_from_slice(data);
        let excess = self.buf.len().saturating_sub(Self::KEEP);
        self.buf.drain(..excess);
    }

    fn ends_with_done(&self) -> bool {
        self.buf.trim_ascii_end().ends_with(b"data: [DONE]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.50), 50.0);
        assert_eq!(percentile_us(&ns, 0.99), 99.0);
        assert_eq!(percentile_us(&ns, 1.0), 100.0);
        assert_eq!(percentile_us(&[7_500], 0.99), 7.5);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn tail_sees_done_across_frames() {
        let mut t = Tail::default();
        t.push(b"data: {\"x\":1}\n\ndata: [DO");
        assert!(!t.ends_with_done());
        t.push(b"NE]\n\n");
        assert!(t.ends_with_done());
        t.push(b"data: {}\n\n");
        assert!(!t.ends_with_done());
    }

    #[test]
    fn base_url_accepts_trailing_v1_and_rejects_paths() {
        let mut cfg = LoadConfig {
            url: "http://127.0.0.1:9/v1/".into(),
            key: "k".into(),
            model: "m".into(),
            concurrency: 1,
            requests: Some(1),
            duration: None,
            stream: false,
            warmup: 0,
            timeout: Duration::from_secs(1),
            label: None,
            api: Api::Chat,
        };
        assert_eq!(Target::new(&cfg).expect("valid").addr, "127.0.0.1:9");
        cfg.url = "http://127.0.0.1:9/api".into();
        assert!(Target::new(&cfg).is_err());
        cfg.url = "https://127.0.0.1:9".into();
        assert!(Target::new(&cfg).is_err());
    }
}
