//! The HTTP server loop: hyper directly (not `axum::serve`) for the knobs a public
//! endpoint needs — TCP_NODELAY on every connection, a header read timeout against
//! slow-loris clients, and a graceful shutdown that lets in-flight requests and
//! streams finish within a bound.
//!
//! Connections are also kept from crowding out honest clients ([`Connections`]):
//! - each client address (IPv4 address, IPv6 /64) holds at most
//!   `proxy.max_connections_per_ip` connections; more are closed at accept, before
//!   TLS, so they cost no handshake;
//! - sockets that have not sent a first request yet (TLS handshake, headers) are
//!   *pending*: they are bounded globally ([`MAX_PENDING`]) and the oldest is closed
//!   when a new one arrives at the bound, so many addresses holding idle sockets cannot
//!   exhaust file descriptors or lock out new clients;
//! - resource protection's connection figure counts requests in progress only (from
//!   the request head to the end of the response body), never idle sockets;
//! - a write that makes no progress for `proxy.send_timeout_secs` fails the
//!   connection ([`TimedIo`]). hyper polls a response body only when it can write, so
//!   without it a client that stops reading would keep its stream, and the engine
//!   request behind it, alive until the streaming ceiling.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tower::Layer;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};

/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections that have not sent a first request yet, all addresses together. Low
/// enough to stay far below a service's usual 1024 file descriptors, high enough
/// that honest clients (who send their request right after connecting) are never the
/// oldest pending ones under attack.
pub const MAX_PENDING: usize = 512;

/// HTTP/1 connection settings shared by the plain and TLS listeners: keep-alive, and
/// a header read timeout against slow-loris clients (it also closes keep-alive
/// connections that stay idle that long).
fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    b
}

/// Connection limits of one proxy.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections per client address (IPv6: per /64).
    pub per_ip: u32,
    /// Connections without a first request yet, all addresses together.
    pub max_pending: usize,
    /// A write that makes no progress this long fails the connection.
    pub send_timeout: Duration,
}

impl ConnLimits {
    /// The limits the settings ask for.
    pub fn of(s: &flm_core::config::ProxySettings) -> Self {
        Self {
            per_ip: s.max_connections_per_ip,
            max_pending: MAX_PENDING,
            send_timeout: s.send_timeout,
        }
    }
}

/// Addresses exempt from the per-address cap (trusted reverse proxies, whose one
/// address carries many clients).
pub type Exempt = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The client address a connection counts against: IPv4 addresses one by one, IPv6
/// per /64 (what one subscriber usually gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IpKey {
    V4(u32),
    V6(u64),
}

fn ip_key(ip: IpAddr) -> IpKey {
    match ip {
        IpAddr::V4(a) => IpKey::V4(u32::from(a)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => IpKey::V4(u32::from(a)),
            None => IpKey::V6((u128::from(a) >> 64) as u64),
        },
    }
}

#[derive(Default)]
struct Table {
    per_ip: HashMap<IpKey, u32>,
    /// Pending connections by arrival; sending on the channel closes one.
    pending: BTreeMap<u64, oneshot::Sender<()>>,
    next_id: u64,
}

/// The open connections of one proxy (all its listeners).
pub struct Connections {
    limits: ConnLimits,
    /// Requests in progress: resource protection's connection figure.
    active: Arc<AtomicU32>,
    exempt: Option<Exempt>,
    table: Mutex<Table>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl Connections {
    /// `active` is the counter resource protection reads.
    pub fn new(limits: ConnLimits, active: Arc<AtomicU32>, exempt: Option<Exempt>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            active,
            exempt,
            table: Mutex::new(Table::default()),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// The table holds plain counts that stay consistent even if a holder panicked.
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections closed at accept because their address was at its cap.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Pending connections closed to make room for new ones.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Registers a new connection from `peer` as pending; `None` when the address is
    /// at its cap. The receiver fires when the connection must close to make room.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<(Slot, oneshot::Receiver<()>)> {
        let key = ip_key(peer);
        let exempt = self.exempt.as_ref().is_some_and(|f| f(peer));
        let mut t = self.lock();
        let n = t.per_ip.entry(key).or_insert(0);
        if *n >= self.limits.per_ip && !exempt {
            drop(t);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        while t.pending.len() >= self.limits.max_pending.max(1) {
            let Some((_, oldest)) = t.pending.pop_first() else {
                break;
            };
            // The receiver may be gone already (the connection is closing).
            let _ = oldest.send(());
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        t.next_id += 1;
        let id = t.next_id;
        let (tx, rx) = oneshot::channel();
        t.pending.insert(id, tx);
        drop(t);
        Some((
            Slot {
                conns: Arc::clone(self),
                key,
                pending: AtomicU64::new(id),
            },
            rx,
        ))
    }
}

/// One admitted connection: counted against its address until dropped, pending until
/// its first request.
struct Slot {
    conns: Arc<Connections>,
    key: IpKey,
    /// Id in the pending pool; 0 once a request arrived.
    pending: AtomicU64,
}

impl Slot {
    fn started(&self) {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let id = self.pending.swap(0, Ordering::Relaxed);
        if id != 0 {
            self.conns.lock().pending.remove(&id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let id = *self.pending.get_mut();
        let mut t = self.conns.lock();
        if id != 0 {
            t.pending.remove(&id);
        }
        if let Some(n) = t.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&self.key);
            }
        }
    }
}

/// Counts a request in progress.
struct Active(Arc<AtomicU32>);

impl Active {
    fn new(c: &Arc<AtomicU32>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(c))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The per-connection service: marks the connection as started on its first request
/// and counts each request until its response body is dropped.
struct Tracked<S> {
    inner: S,
    slot: Slot,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.slot.started();
        let active = Active::new(&self.slot.conns.active);
        TrackedFuture {
            inner: self.inner.call(req),
            active: Some(active),
        }
    }
}

pin_project_lite::pin_project! {
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        active: Option<Active>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let active = this.active.take();
        Poll::Ready(res.map(|r| {
            r.map(|inner| TrackedBody {
                inner,
                _active: active,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted until hyper drops it (sent, or
    /// the connection failed).
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        _active: Option<Active>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail when they make no progress for `timeout`. The timer is
/// armed only when a write is pending, so the common path costs one flag store.
pub(crate) struct TimedIo<T> {
    io: T,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<T> TimedIo<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            timer: None,
            armed: false,
        }
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if p.is_ready() {
            self.armed = false;
            return p;
        }
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = match &mut self.timer {
            Some(t) => t.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its response (proxy.send_timeout_secs)",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(cx, p)
    }
}

/// The app for one connection: every request carries the TCP peer (for the
/// defence's client IP).
fn with_peer(
    app: &axum::Router,
    peer: SocketAddr,
) -> TowerToHyperService<axum::middleware::AddExtension<axum::Router, crate::defence::PeerAddr>> {
    TowerToHyperService::new(axum::Extension(crate::defence::PeerAddr(peer)).layer(app.clone()))
}

/// Accepts the next connection, or `None` when the listener failed (backed off).
async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(c) => Some(c),
        Err(e) => {
            // Out of file descriptors and the like: back off instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

fn refused(peer: SocketAddr, conns: &Connections) {
    tracing::debug!(
        client_ip = %peer.ip(),
        limit = conns.limits.per_ip,
        refused_total = conns.refused(),
        "connection refused: too many open connections from this address (proxy.max_connections_per_ip)"
    );
}

fn evicted(peer: SocketAddr, conns: &Connections) {
    tracing::debug!(
        client_ip = %peer.ip(),
        evicted_total = conns.evicted(),
        "closing a connection that sent no request: too many such connections"
    );
}

/// Serves `app` on `listener` until `shutdown` turns true, then waits at most `grace`
/// for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conns: Arc<Connections>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = accept(&listener) => {
                let Some((stream, peer)) = accepted else { continue };
                let Some((slot, evict)) = conns.admit(peer.ip()) else {
                    refused(peer, &conns);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let io = TimedIo::new(stream, conns.limits.send_timeout);
                let service = Tracked { inner: with_peer(&app, peer), slot };
                let conn = graceful.watch(http1_builder().serve_connection(TokioIo::new(io), service));
                let conns = conns.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        r = conn => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        Ok(()) = evict => evicted(peer, &conns),
                    }
                });
            }
            _ = crate::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish in time; closing them"
        );
    }
}

/// Like [`serve`], but every connection is TLS (rustls) first.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conns: Arc<Connections>,
) {
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    loop {
        tokio::select! {
            accepted = accept(&listener) => {
                let Some((stream, peer)) = accepted else { continue };
                let Some((slot, evict)) = conns.admit(peer.ip()) else {
                    refused(peer, &conns);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let io = TimedIo::new(stream, conns.limits.send_timeout);
                let acceptor = acceptor.clone();
                let service = Tracked { inner: with_peer(&app, peer), slot };
                let graceful = graceful.clone();
                let conns = conns.clone();
                // The handshake runs in its own task so a slow client cannot stall
                // the accept loop.
                tokio::spawn(async move {
                    let work = async move {
                        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = http1_builder().serve_connection(TokioIo::new(tls), service);
                        if let Err(e) = graceful.watch(conn).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    };
                    tokio::select! {
                        () = work => {}
                        Ok(()) = evict => evicted(peer, &conns),
                    }
                });
            }
            _ = crate::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    match std::sync::Arc::try_unwrap(graceful) {
        Ok(g) => {
            if tokio::time::timeout(grace, g.shutdown()).await.is_err() {
                tracing::warn!("in-flight TLS requests did not finish in time; closing them");
            }
        }
        // Connections still mid-handshake hold a reference; give them the grace period.
        Err(_) => tokio::time::sleep(grace.min(Duration::from_secs(1))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(per_ip: u32, max_pending: usize) -> Arc<Connections> {
        Connections::new(
            ConnLimits {
                per_ip,
                max_pending,
                send_timeout: Duration::from_secs(1),
            },
            Arc::new(AtomicU32::new(0)),
            Some(Box::new(|ip: IpAddr| ip == IpAddr::from([10, 0, 0, 9]))),
        )
    }

    #[test]
    fn addresses_are_capped_ipv6_per_64() {
        let c = conns(2, 100);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let s1 = c.admit(a).unwrap();
        let _s2 = c.admit(b).unwrap();
        assert!(c.admit(a).is_none(), "same /64");
        assert!(c.admit(other).is_some(), "another /64");
        // IPv4 and its mapped IPv6 form are one address.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _m1 = c.admit(v4).unwrap();
        let _m2 = c.admit(mapped).unwrap();
        assert!(c.admit(v4).is_none());
        assert_eq!(c.refused(), 2);
        // A closed connection frees its place.
        drop(s1);
        assert!(c.admit(a).is_some());
        // Trusted proxies are exempt.
        let p = IpAddr::from([10, 0, 0, 9]);
        let held: Vec<_> = (0..5).map(|_| c.admit(p).unwrap()).collect();
        assert_eq!(held.len(), 5);
    }

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let c = conns(100, 2);
        let (s1, mut e1) = c.admit(IpAddr::from([192, 0, 2, 1])).unwrap();
        let (s2, mut e2) = c.admit(IpAddr::from([192, 0, 2, 2])).unwrap();
        // s2 sent a request: no longer pending.
        s2.started();
        let (_s3, mut e3) = c.admit(IpAddr::from([192, 0, 2, 3])).unwrap();
        assert!(e1.try_recv().is_err(), "still room");
        let (_s4, _e4) = c.admit(IpAddr::from([192, 0, 2, 4])).unwrap();
        assert_eq!(e1.try_recv(), Ok(()), "the oldest pending one is closed");
        assert!(e2.try_recv().is_err());
        assert!(e3.try_recv().is_err());
        assert_eq!(c.evicted(), 1);
        drop(s1);
        assert_eq!(c.lock().per_ip.len(), 3);
    }

    #[tokio::test]
    async fn a_stuck_write_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = TimedIo::new(server, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let buf = vec![0u8; 4096];
        let err = tokio::io::AsyncWriteExt::write_all(&mut io, &buf)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_does_not_time_out() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = TimedIo::new(server, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut b = [0u8; 64];
            while got < 2048 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                got += client.read(&mut b).await.unwrap();
            }
        });
        tokio::io::AsyncWriteExt::write_all(&mut io, &[1u8; 2048])
            .await
            .unwrap();
        reader.await.unwrap();
    }
}
