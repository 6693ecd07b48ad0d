//! `https-acme` through the proxy library against Debian's real `pebble` (ACME test
//! CA) and `pebble-challtestsrv` (DNS answering 127.0.0.1) on loopback: HTTP-01 is
//! answered on the proxy's HTTP port, the HTTPS port serves the issued certificate
//! (verified with pebble's root), and an unreachable CA falls back to dev-selfsigned
//! with the ACME error in `last_error`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{egress_engines, engine_service, free_port};
use flm_core::proxy::{ProxyConfig, ProxyMode};
use flm_core::services::ConfigService;
use flm_engines::HttpClient;
use flm_proxy::{AcmeDeps, ProxyDeps, ProxyManager, StopTarget};
use flm_store::{Store, StorePaths};
use tempfile::TempDir;

/// Two free loopback ports `p`, `p+1` (HTTP and HTTPS of a TLS mode).
fn port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

struct Pebble {
    children: Vec<Child>,
    directory_url: String,
    management_url: String,
    /// Trust root of pebble's own HTTPS.
    https_root_pem: Vec<u8>,
    dir: TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// pebble validating HTTP-01 on `http01_port`, resolving every name to 127.0.0.1.
    async fn start(http01_port: u16) -> Pebble {
        let dir = TempDir::new().unwrap();
        let now = chrono::Utc::now();
        let ca = flm_tls::ensure_local_ca(&dir.path().join("ca"), now).unwrap();
        let leaf = flm_tls::issue_server_cert(&ca, &[], now).unwrap();
        let https_root_pem = std::fs::read(ca.cert_path()).unwrap();
        // UDP and TCP both free for the DNS port.
        let dns_port = loop {
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = u.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                break p;
            }
        };
        let (cts_mgmt, listen, mgmt, tls_port) =
            (free_port(), free_port(), free_port(), free_port());
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
        let cts = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{cts_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("cts.log"))
            .stderr(log("cts.err"))
            .spawn()
            .expect("pebble-challtestsrv is installed (Debian package pebble)");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": leaf.cert_path,
            "privateKey": leaf.key_path,
            "httpPort": http01_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble is installed");
        let p = Pebble {
            children: vec![cts, pebble],
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt}"),
            https_root_pem,
            dir,
        };
        let client = p.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if client
                .get(&p.directory_url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                && tokio::net::TcpStream::connect(("127.0.0.1", cts_mgmt))
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                p.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.https_root_pem).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "cts.log", "cts.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The root of pebble's issuance chain.
    async fn issuer_root_pem(&self) -> Vec<u8> {
        let r = self
            .client()
            .get(format!("{}/roots/0", self.management_url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap().to_vec()
    }
}

struct Setup {
    dir: TempDir,
    store: Store,
    manager: ProxyManager,
}

async fn setup(acme: AcmeDeps) -> Setup {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let config = ConfigService::new(store.settings(), "config.db");
    for (k, v) in [
        ("engine.probe_default_ports", "false"),
        ("proxy.shutdown_grace_secs", "1"),
    ] {
        config.set(k, v).await.unwrap();
    }
    let engines = engine_service(&store, &config, HttpClient::new().unwrap());
    let manager = ProxyManager::new(ProxyDeps {
        engines,
        config: config.clone(),
        keys: store.api_keys(),
        cors_origins: Vec::new(),
        certs_dir: dir.path().join("certs"),
        egress_engines: Some(egress_engines(store.clone(), config)),
        acme,
        certificates: Some(store.certificates()),
        audit: Some(store.audit()),
    });
    Setup {
        dir,
        store,
        manager,
    }
}

fn acme_config(port: u16, domain: &str) -> ProxyConfig {
    ProxyConfig {
        mode: ProxyMode::HttpsAcme,
        port,
        acme_email: Some("ops@flm-acme.test".into()),
        acme_domain: Some(domain.into()),
        ..ProxyConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_acme_issues_with_pebble_and_serves_the_certificate() {
    let port = port_pair();
    let pebble = Pebble::start(port).await;
    let s = setup(AcmeDeps {
        directory_url: Some(pebble.directory_url.clone()),
        root_ca_pem: Some(pebble.https_root_pem.clone()),
    })
    .await;
    let domain = "api.flm-proxy.test";
    let started = Instant::now();
    let h = s
        .manager
        .start(acme_config(port, domain))
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}\n{}", pebble.logs()));
    eprintln!("https-acme start took {:?}", started.elapsed());
    assert_eq!(h.mode, ProxyMode::HttpsAcme, "{:?}", h.last_error);
    assert!(h.last_error.is_none(), "{:?}", h.last_error);
    assert_eq!(h.https_port, Some(port + 1));
    assert_eq!(h.acme_domain.as_deref(), Some(domain));
    assert_eq!(
        h.endpoints.external.as_deref(),
        Some(format!("https://{domain}:{}", port + 1).as_str())
    );
    let tls = h.tls.clone().unwrap();
    assert!(tls.sans.iter().any(|n| n == domain), "{:?}", tls.sans);
    // Recorded in security.db → certificates.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = s.store.certificates().list().await.unwrap();
        if let Some(r) = rows.iter().find(|r| r.domain.as_deref() == Some(domain)) {
            assert_eq!(r.mode, flm_core::security::CertificateMode::Acme);
            assert_eq!(r.cert_path, tls.cert_path);
            break;
        }
        assert!(Instant::now() < deadline, "no certificate row: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // pebble (PEBBLE_VA_ALWAYS_VALID off) issued only after fetching the HTTP-01
    // answer from our HTTP port: nothing else serves `port` (see the acme-challenge
    // route check below).

    // HTTPS verifies with pebble's issuing root, for the domain name.
    let root = pebble.issuer_root_pem().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .resolve(domain, format!("127.0.0.1:{}", port + 1).parse().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{domain}:{}/health", port + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // HTTP redirects everything but the challenge route, with HSTS.
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert!(r.headers().contains_key("strict-transport-security"));
    let r = client
        .get(format!(
            "http://127.0.0.1:{port}/.well-known/acme-challenge/unknown"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.manager.stop(&StopTarget::default()).await.unwrap();

    // Pebble gone: the certificate just issued is reused, with the error noted.
    let issued_fp = tls.fingerprint_sha256.clone();
    drop(pebble);
    let h = s.manager.start(acme_config(port, domain)).await.unwrap();
    assert_eq!(h.mode, ProxyMode::HttpsAcme);
    assert_eq!(h.tls.unwrap().fingerprint_sha256, issued_fp);
    let err = h.last_error.unwrap();
    assert!(err.contains("reusing"), "{err}");
    s.manager.stop(&StopTarget::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_acme_server_falls_back_to_dev_selfsigned() {
    let dead = free_port();
    let s = setup(AcmeDeps {
        directory_url: Some(format!("https://127.0.0.1:{dead}/dir")),
        root_ca_pem: None,
    })
    .await;
    let port = port_pair();
    let h = s
        .manager
        .start(acme_config(port, "api.flm-proxy.test"))
        .await
        .unwrap();
    assert_eq!(h.mode, ProxyMode::DevSelfsigned);
    let err = h.last_error.clone().unwrap();
    assert!(
        err.contains("ACME") && err.contains(&dead.to_string()) && err.contains("dev-selfsigned"),
        "{err}"
    );
    assert_eq!(
        s.manager.status()[0].last_error.as_deref(),
        Some(err.as_str())
    );
    // HTTPS works with the self-signed certificate.
    let tls = h.tls.unwrap();
    let pem = std::fs::read(&tls.trust_cert_path).unwrap();
    let r = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/health", port + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.manager.stop(&StopTarget::default()).await.unwrap();
    let _ = &s.dir;
}

#[tokio::test]
async fn https_acme_settings_are_validated() {
    let s = setup(AcmeDeps::default()).await;
    let port = port_pair();
    let mut c = acme_config(port, "api.flm-proxy.test");
    c.acme_email = None;
    let e = s.manager.start(c).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG");
    assert!(e.to_string().contains("--acme-email"), "{e}");
    let mut c = acme_config(port, "*.flm-proxy.test");
    let e = s.manager.start(c.clone()).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG", "{e}");
    c.acme_domain = Some("api.flm-proxy.test".into());
    c.acme_challenge = flm_core::proxy::AcmeChallenge::Dns01;
    let e = s.manager.start(c).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG");
    assert!(e.to_string().contains("dns-01"), "{e}");
    assert!(s.manager.status().is_empty());
    let _ = Arc::new(());
}
