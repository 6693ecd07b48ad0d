//! The running emulator and its control handle.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{self, AppState};
use crate::{Behavior, EmulatedKind, EmulatorOptions};

/// How long [`Emulator::shutdown`] waits for in-flight requests before giving up on them.
/// Every handler and stream also watches the shutdown signal, so this is only a backstop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Locks a mutex, ignoring poisoning: the guarded values are plain records that stay
/// valid even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl ControlInner ===

/// State shared between the control handle and the server.
#[derive(Debug, Default)]
pub(crate) struct ControlInner {
    behavior: Mutex<Behavior>,
    requests: AtomicU64,
    chat_requests: AtomicU64,
    /// Streamed responses whose body is still alive (not finished, not dropped).
    pub(crate) open_streams: AtomicU64,
    /// Streamed responses dropped before they ended (the client went away).
    pub(crate) cancelled_streams: AtomicU64,
    last_chat_body: Mutex<Option<Value>>,
    last_headers: Mutex<Option<HeaderMap>>,
    /// Requests per route path, newest last (at most [`KEPT_PER_ROUTE`] each).
    by_route: Mutex<HashMap<String, RouteLog>>,
    /// Headers added to every response (e.g. `Set-Cookie`, to test that a proxy drops it).
    extra_response_headers: Mutex<Vec<(HeaderName, HeaderValue)>>,
    /// Models that served a request (Ollama `/api/ps`).
    loaded: Mutex<BTreeSet<String>>,
    /// Ollama: answer tool calls without `id`, as builds before ids were added do.
    pub(crate) no_tool_call_ids: AtomicBool,
}

impl ControlInner {
    pub(crate) fn behavior(&self) -> Behavior {
        lock(&self.behavior).clone()
    }

    pub(crate) fn record_request(&self, headers: &HeaderMap) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        *lock(&self.last_headers) = Some(headers.clone());
    }

    pub(crate) fn record_route(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) {
        let mut routes = lock(&self.by_route);
        let log = routes.entry(path.to_owned()).or_default();
        log.count += 1;
        if log.recent.len() == KEPT_PER_ROUTE {
            log.recent.pop_front();
        }
        log.recent.push_back(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: headers.clone(),
        });
    }

    pub(crate) fn extra_response_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        lock(&self.extra_response_headers).clone()
    }

    pub(crate) fn record_chat(&self, body: Option<Value>) {
        self.chat_requests.fetch_add(1, Ordering::SeqCst);
        if let Some(body) = body {
            *lock(&self.last_chat_body) = Some(body);
        }
    }

    pub(crate) fn mark_loaded(&self, model: &str) {
        lock(&self.loaded).insert(model.to_owned());
    }

    pub(crate) fn loaded(&self) -> Vec<String> {
        lock(&self.loaded).iter().cloned().collect()
    }
}

// === impl RecordedRequest ===

/// How many requests [`EmulatorControl::requests_on`] keeps per route: enough for any
/// test, and a soak run cannot grow memory without bound.
pub const KEPT_PER_ROUTE: usize = 64;

#[derive(Debug, Default)]
struct RouteLog {
    count: u64,
    recent: VecDeque<RecordedRequest>,
}

/// One request as the emulated engine received it, before any gate or behaviour.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path as received (still percent-encoded).
    pub path: String,
    /// Query string, when there was one.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
}

// === impl EmulatorControl ===

/// Thread-safe handle to steer a running [`Emulator`] and observe what it received.
/// Cloning is cheap (an `Arc`).
#[derive(Debug, Clone)]
pub struct EmulatorControl {
    inner: Arc<ControlInner>,
}

impl EmulatorControl {
    /// Sets the behaviour for subsequent requests.
    pub fn set_behavior(&self, b: Behavior) {
        *lock(&self.inner.behavior) = b;
    }

    /// The current behaviour.
    pub fn behavior(&self) -> Behavior {
        self.inner.behavior()
    }

    /// Total HTTP requests received on any route, including refused ones (`Host` guard,
    /// unknown routes).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Requests received on chat routes (`POST /api/chat`, `POST /v1/chat/completions`,
    /// LM Studio `POST /api/v0/chat/completions`), whatever the behaviour.
    pub fn chat_requests(&self) -> u64 {
        self.inner.chat_requests.load(Ordering::SeqCst)
    }

    /// Streamed chat responses still being sent. Drops to zero when a stream ends or
    /// the client goes away (hyper drops the body on a closed connection), which lets
    /// tests prove that a proxy cancels upstream requests.
    pub fn open_streams(&self) -> u64 {
        self.inner.open_streams.load(Ordering::SeqCst)
    }

    /// Streamed chat responses dropped before they ended: the engine's own view of a
    /// cancelled request (the client, or the proxy in front of it, closed the
    /// connection mid-stream). Streams that end normally, fail or are cut by the
    /// emulator itself are not counted. Never reset.
    pub fn cancelled_streams(&self) -> u64 {
        self.inner.cancelled_streams.load(Ordering::SeqCst)
    }

    /// Body of the last chat request whose body was valid JSON.
    pub fn last_chat_body(&self) -> Option<Value> {
        lock(&self.inner.last_chat_body).clone()
    }

    /// Headers of the last request received on any route.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.inner.last_headers).clone()
    }

    /// Requests received on `path` (exact, as received, query excluded), whatever
    /// the method and the answer. Unlike [`EmulatorControl::last_headers`], a request on
    /// another route (a health probe) cannot hide one on this route.
    pub fn route_requests(&self, path: &str) -> u64 {
        lock(&self.inner.by_route).get(path).map_or(0, |l| l.count)
    }

    /// The most recent requests received on `path` (at most [`KEPT_PER_ROUTE`]),
    /// oldest first.
    pub fn requests_on(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.inner.by_route)
            .get(path)
            .map(|l| l.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The last request received on `path`.
    pub fn last_request_on(&self, path: &str) -> Option<RecordedRequest> {
        lock(&self.inner.by_route)
            .get(path)
            .and_then(|l| l.recent.back().cloned())
    }

    /// Adds a header to every subsequent response, on every route (e.g. `Set-Cookie`,
    /// which a proxy must not pass back).
    pub fn add_response_header(&self, name: HeaderName, value: HeaderValue) {
        lock(&self.inner.extra_response_headers).push((name, value));
    }

    /// Ollama only: whether native `/api/chat` tool calls carry an `id` (newer builds;
    /// the default) or not (older builds).
    pub fn set_tool_call_ids(&self, on: bool) {
        self.inner.no_tool_call_ids.store(!on, Ordering::SeqCst);
    }

    /// Resets counters and recorded requests (not the behaviour).
    pub fn reset(&self) {
        self.inner.requests.store(0, Ordering::SeqCst);
        self.inner.chat_requests.store(0, Ordering::SeqCst);
        *lock(&self.inner.last_chat_body) = None;
        *lock(&self.inner.last_headers) = None;
        lock(&self.inner.by_route).clear();
    }
}

// === impl Emulator ===

/// A running emulated engine. The server stops when this value is dropped (without
/// waiting) or on [`Emulator::shutdown`] (waiting for the server task to end).
#[derive(Debug)]
pub struct Emulator {
    kind: EmulatedKind,
    addr: SocketAddr,
    control: EmulatorControl,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Emulator {
    /// Binds `opts.bind:opts.port` and starts serving the `kind` API in a background task.
    ///
    /// Must be called inside a Tokio runtime. Fails when the address cannot be bound.
    pub async fn start(kind: EmulatedKind, opts: EmulatorOptions) -> io::Result<Emulator> {
        let listener = TcpListener::bind(SocketAddr::new(opts.bind, opts.port)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(ControlInner::default());
        *lock(&inner.behavior) = opts.behavior.clone();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = AppState::new(kind, &opts, addr, Arc::clone(&inner), shutdown_rx.clone());
        let task = tokio::spawn(server::serve(listener, state, shutdown_rx));
        Ok(Emulator {
            kind,
            addr,
            control: EmulatorControl { inner },
            shutdown,
            task: Some(task),
        })
    }

    /// The engine kind.
    pub fn kind(&self) -> EmulatedKind {
        self.kind
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`; an unspecified bind address (`0.0.0.0`, `::`) is replaced by the
    /// loopback address so the URL is usable by a client.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// A handle to steer and observe the emulator.
    pub fn control(&self) -> EmulatorControl {
        self.control.clone()
    }

    /// Stops accepting connections, ends hanging requests and streams, and waits (at most
    /// a few seconds) for the server task to finish.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shutdown.send_replace(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "emulator did not shut down in time",
            )),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The server task watches this signal and ends on its own; the listener closes as
        // soon as the task next runs.
        self.shutdown.send_replace(true);
    }
}
