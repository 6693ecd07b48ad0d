//! The HTTP server loop: hyper directly (not `axum::serve`) for the knobs a public
//! endpoint needs — TCP_NODELAY on every connection, a header read timeout against
//! slow-loris clients, and a graceful shutdown that lets in-flight requests and
//! streams finish within a bound.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1 connection settings shared by the plain and TLS listeners: keep-alive, and
/// a header read timeout against slow-loris clients.
fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    b
}

/// Counts a connection while it is open.
struct Open(Option<Arc<AtomicU32>>);

impl Open {
    fn new(c: Option<Arc<AtomicU32>>) -> Self {
        if let Some(c) = &c {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Self(c)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
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

/// Serves `app` on `listener` until `shutdown` turns true, then waits at most `grace`
/// for open connections to finish. `conns` counts open connections (resource
/// protection).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conns: Option<Arc<AtomicU32>>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let open = Open::new(conns.clone());
                let conn = http1_builder().serve_connection(TokioIo::new(stream), with_peer(&app, peer));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
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

/// How long a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Like [`serve`], but every connection is TLS (rustls) first.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conns: Option<Arc<AtomicU32>>,
) {
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = with_peer(&app, peer);
                let graceful = graceful.clone();
                let open = Open::new(conns.clone());
                // The handshake runs in its own task so a slow client cannot stall
                // the accept loop.
                tokio::spawn(async move {
                    let _open = open;
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
