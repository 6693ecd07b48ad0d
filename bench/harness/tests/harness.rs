//! The harness against itself: the fake engine in-process on port 0, driven by the
//! load generator, streaming and not.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside `#[test]` fns fail loudly"
)]

use std::time::Duration;

use flm_bench::load::{self, LoadConfig};
use flm_bench::upstream;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn start_upstream() -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(upstream::serve(listener, async {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

fn config(url: &str, stream: bool) -> LoadConfig {
    LoadConfig {
        url: url.to_owned(),
        key: "test-key".to_owned(),
        model: upstream::MODEL_ID.to_owned(),
        concurrency: 4,
        requests: Some(50),
        duration: Some(Duration::from_secs(30)),
        stream,
        warmup: 8,
        timeout: Duration::from_secs(10),
        label: Some("test".to_owned()),
        api: load::Api::Chat,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_runs_50_requests_without_errors_streaming_and_not() {
    let (url, _stop) = start_upstream().await;
    for stream in [false, true] {
        let report = load::run(config(&url, stream)).await.expect("load run");
        assert_eq!(report.requests, 50, "{report:?}");
        assert_eq!(report.errors, 0, "{report:?}");
        assert_eq!(report.non_2xx, 0, "{report:?}");
        assert_eq!(report.reconnects, 0, "keep-alive must hold: {report:?}");
        assert!(report.rps > 0.0 && report.p50_us > 0.0, "{report:?}");
        assert!(
            report.p50_us <= report.p90_us && report.p90_us <= report.p99_us,
            "{report:?}"
        );
        if stream {
            let ttfb = report.ttfb_p50_us.expect("streams report TTFB");
            assert!(ttfb > 0.0 && ttfb <= report.p50_us, "{report:?}");
        } else {
            assert_eq!(report.ttfb_p50_us, None, "{report:?}");
        }
    }
}

/// A server that answers 401 to everything, like the proxy without a valid key.
async fn start_unauthorized() -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_req| async {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                Ok::<_, std::convert::Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn non_2xx_and_dead_servers_are_counted_not_hidden() {
    let mut cfg = config(&start_unauthorized().await, false);
    cfg.requests = Some(5);
    cfg.warmup = 0;
    let report = load::run(cfg.clone()).await.expect("load run");
    assert_eq!(
        (report.requests, report.errors, report.non_2xx),
        (5, 0, 5),
        "{report:?}"
    );
    assert_eq!(report.rps, 0.0, "{report:?}");

    // A port nobody listens on: every attempt is an error, and the run still ends.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    cfg.url = dead;
    let report = load::run(cfg).await.expect("load run");
    assert_eq!((report.requests, report.errors), (5, 5), "{report:?}");
    assert_eq!(report.rps, 0.0, "{report:?}");
}
