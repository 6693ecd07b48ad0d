//! HTTPS modes end to end: real certificates, real rustls handshakes, the HTTP port
//! redirecting with HSTS, and `curl --cacert`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use flm_core::proxy::{ProxyConfig, ProxyMode};
use flm_proxy::StopTarget;

/// A port whose successor is free too (TLS modes use port and port+1).
fn free_pair() -> u16 {
    for _ in 0..50 {
        let p = common::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

async fn start(h: &common::Harness, mode: ProxyMode) -> flm_core::proxy::ProxyHandle {
    let port = free_pair();
    h.manager
        .start(ProxyConfig {
            mode,
            port,
            ..ProxyConfig::default()
        })
        .await
        .unwrap()
}

fn client_trusting(pem_path: &str) -> reqwest::Client {
    let pem = std::fs::read(pem_path).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_selfsigned_serves_https_and_redirects_http() {
    let h = common::harness(&[]).await;
    let handle = start(&h, ProxyMode::DevSelfsigned).await;
    let https = handle.https_port.expect("https port");
    assert_eq!(https, handle.port + 1);
    let tls = handle.tls.clone().expect("tls info");
    assert_eq!(
        handle.endpoints.localhost,
        format!("https://localhost:{https}")
    );
    assert!(tls.fingerprint_sha256.contains(':'));

    let client = client_trusting(&tls.trust_cert_path);
    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{https}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        let r = client
            .get(format!("https://{host}:{https}/v1/models"))
            .bearer_auth(&h.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // Without trusting the certificate the handshake fails.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(untrusting
        .get(format!("https://localhost:{https}/health"))
        .send()
        .await
        .is_err());

    // Plain HTTP only redirects, with HSTS; the API is never served in clear text.
    let r = client
        .get(format!("http://127.0.0.1:{}/v1/models?x=1", handle.port))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://127.0.0.1:{https}/v1/models?x=1")
    );
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));

    // The certificate is reused on the next start.
    h.manager.stop(&StopTarget::default()).await.unwrap();
    let again = start(&h, ProxyMode::DevSelfsigned).await;
    assert_eq!(
        again.tls.unwrap().fingerprint_sha256,
        tls.fingerprint_sha256
    );

    // curl --cacert works too (when curl is installed).
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--cacert", &tls.trust_cert_path])
            .arg(format!(
                "https://localhost:{}/health",
                again.https_port.unwrap()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_ca_chain_verifies_with_only_the_root() {
    let h = common::harness(&[]).await;
    let handle = start(&h, ProxyMode::PackagedCa).await;
    let https = handle.https_port.unwrap();
    let tls = handle.tls.clone().unwrap();
    assert_ne!(
        tls.trust_cert_path, tls.cert_path,
        "clients trust the CA, not the leaf"
    );
    let client = client_trusting(&tls.trust_cert_path);
    let r = client
        .get(format!("https://localhost:{https}/v1/models"))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A port already taken for port+1 fails cleanly with PROXY_PORT_IN_USE.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    let err = h
        .manager
        .start(ProxyConfig {
            mode: ProxyMode::PackagedCa,
            port: taken - 1,
            ..ProxyConfig::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), "PROXY_PORT_IN_USE" | "PROXY_ALREADY_RUNNING"),
        "{err}"
    );
    h.stop().await;
}
