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
    /// pebble-challtestsrv's management API (`/set-txt`, `/clear-txt`).
    challtestsrv_url: String,
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
        Self::start_on(http01_port, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// The same, with pebble's ACME and management APIs on `host`.
    async fn start_on(http01_port: u16, host: std::net::IpAddr) -> Pebble {
        let dir = TempDir::new().unwrap();
        let now = chrono::Utc::now();
        let ca = flm_tls::ensure_local_ca(&dir.path().join("ca"), now).unwrap();
        let leaf = flm_tls::issue_server_cert(&ca, &[flm_tls::San::Ip(host)], now).unwrap();
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
            "listenAddress": std::net::SocketAddr::new(host, listen).to_string(),
            "managementListenAddress": std::net::SocketAddr::new(host, mgmt).to_string(),
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
            directory_url: format!("https://{}/dir", std::net::SocketAddr::new(host, listen)),
            management_url: format!("https://{}", std::net::SocketAddr::new(host, mgmt)),
            challtestsrv_url: format!("http://127.0.0.1:{cts_mgmt}"),
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
        changes: None,
        security: None,
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

/// DNS-01 through the proxy: the documented `--dns-hook` contract implemented with curl
/// against challtestsrv; a wildcard `*.<domain>` gets `*.<domain>` + `<domain>`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_acme_dns01_wildcard_through_a_hook() {
    use std::os::unix::fs::PermissionsExt;
    let port = port_pair();
    // pebble validates HTTP-01 on an unused port: only DNS-01 can succeed.
    let pebble = Pebble::start(free_port()).await;
    let s = setup(AcmeDeps {
        directory_url: Some(pebble.directory_url.clone()),
        root_ca_pem: Some(pebble.https_root_pem.clone()),
    })
    .await;
    let log = pebble.dir.path().join("hook.log");
    let hook = pebble.dir.path().join("dns-hook.sh");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
set -eu
echo "$1 $2 $3" >> '{log}'
case "$1" in
  set)    curl -sSf -X POST -d "{{\"host\":\"$2\",\"value\":\"$3\"}}" '{mgmt}/set-txt' ;;
  remove) curl -sSf -X POST -d "{{\"host\":\"$2\"}}" '{mgmt}/clear-txt' ;;
  *)      echo "unknown verb $1" >&2; exit 2 ;;
esac
"#,
            log = log.display(),
            mgmt = pebble.challtestsrv_url
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = "wild.flm-proxy.test";
    let mut c = acme_config(port, &format!("*.{base}"));
    c.acme_challenge = flm_core::proxy::AcmeChallenge::Dns01;
    c.dns_hook = Some(hook.display().to_string());
    c.dns_propagation_wait_secs = Some(0);
    let h = s
        .manager
        .start(c)
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}\n{}", pebble.logs()));
    assert_eq!(h.mode, ProxyMode::HttpsAcme, "{:?}", h.last_error);
    assert!(h.last_error.is_none(), "{:?}", h.last_error);
    let tls = h.tls.clone().unwrap();
    for n in [format!("*.{base}"), base.to_owned()] {
        assert!(tls.sans.contains(&n), "{n} in {:?}", tls.sans);
    }
    assert_eq!(
        h.endpoints.external.as_deref(),
        Some(format!("https://{base}:{}", port + 1).as_str())
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let sets = calls
        .lines()
        .filter(|l| l.starts_with("set _acme-challenge."))
        .count();
    let removes = calls.lines().filter(|l| l.starts_with("remove ")).count();
    assert_eq!((sets, removes), (2, 2), "{calls}");

    // HTTPS verifies with pebble's root for a name under the wildcard and the base.
    let root = pebble.issuer_root_pem().await;
    let sub = format!("api.{base}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .resolve(&sub, addr)
        .resolve(base, addr)
        .build()
        .unwrap();
    for host in [sub.as_str(), base] {
        let r = client
            .get(format!("https://{host}:{}/health", port + 1))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(r.status(), 200);
    }
    s.manager.stop(&StopTarget::default()).await.unwrap();
}

/// The fingerprint of the certificate the HTTPS port serves now (new handshake).
async fn served_fingerprint(port: u16, root: &[u8], domain: &str) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
        .resolve(domain, format!("127.0.0.1:{port}").parse().unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{domain}:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    flm_tls::sha256_fingerprint(info.peer_certificate().unwrap())
}

/// Renewal: a certificate inside the renewal window is re-issued and served without a
/// restart; two failed renewals in a row become an `AcmeError` in `last_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_acme_renews_in_place_and_counts_failures() {
    let port = port_pair();
    let pebble = Pebble::start(port).await;
    let s = setup(AcmeDeps {
        directory_url: Some(pebble.directory_url.clone()),
        root_ca_pem: Some(pebble.https_root_pem.clone()),
    })
    .await;
    // Every certificate is "within the window" (pebble's are valid for years).
    s.manager.set_acme_renewal(flm_proxy::RenewTiming {
        check_every: Duration::from_millis(700),
        renew_before: chrono::Duration::days(100 * 365),
        ..flm_proxy::RenewTiming::default()
    });
    let domain = "renew.flm-proxy.test";
    let h = s
        .manager
        .start(acme_config(port, domain))
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}\n{}", pebble.logs()));
    assert_eq!(h.mode, ProxyMode::HttpsAcme, "{:?}", h.last_error);
    let first = h.tls.unwrap().fingerprint_sha256;
    let root = pebble.issuer_root_pem().await;
    assert_eq!(served_fingerprint(port + 1, &root, domain).await, first);
    let deadline = Instant::now() + Duration::from_secs(30);
    let renewed = loop {
        let st = s.manager.status();
        let fp = st[0].tls.as_ref().unwrap().fingerprint_sha256.clone();
        if fp != first {
            assert!(st[0].last_error.is_none(), "{:?}", st[0].last_error);
            break fp;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal: {:?}\n{}",
            st[0].last_error,
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Same listener, new handshake: the new certificate, the one the handle reports
    // (retried in case a further renewal lands in between).
    let mut attempts = 0;
    loop {
        let before = s.manager.status()[0]
            .tls
            .clone()
            .unwrap()
            .fingerprint_sha256;
        let served = served_fingerprint(port + 1, &root, domain).await;
        let after = s.manager.status()[0]
            .tls
            .clone()
            .unwrap()
            .fingerprint_sha256;
        assert_ne!(served, first);
        if before == after && served == after {
            break;
        }
        attempts += 1;
        assert!(
            attempts < 10,
            "served {served}, reported {after}, renewed {renewed}"
        );
    }

    // The CA goes away: failures are counted, the certificate stays.
    drop(pebble);
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        let st = s.manager.status();
        if let Some(e) = st[0]
            .last_error
            .clone()
            .filter(|e| e.starts_with("AcmeError"))
        {
            assert_eq!(st[0].mode, ProxyMode::HttpsAcme);
            break e;
        }
        assert!(Instant::now() < deadline, "{:?}", st[0].last_error);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(err.contains("times in a row"), "{err}");
    assert!(err.contains("keeping the certificate"), "{err}");
    let still = served_fingerprint(port + 1, &root, domain).await;
    assert_ne!(still, first, "the renewed certificate is kept");
    s.manager.stop(&StopTarget::default()).await.unwrap();
}

/// This machine's non-loopback address (so that "direct" and "through SOCKS" differ).
fn lan_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// ACME traffic through a SOCKS5 egress: pebble on the LAN address, reached through
/// Debian's `microsocks`, whose log shows the connection to pebble's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_acme_goes_through_the_socks5_egress() {
    use tokio::io::AsyncBufReadExt;
    let Some(lan) = lan_ip() else {
        eprintln!("skipped: no non-loopback address");
        return;
    };
    let port = port_pair();
    let pebble = Pebble::start_on(port, lan).await;
    let socks_port = free_port();
    let mut socks = tokio::process::Command::new("microsocks")
        .args(["-i", "127.0.0.1", "-p", &socks_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("microsocks is installed (Debian package microsocks)");
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for out in [
        Box::new(socks.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(socks.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.lock().unwrap().push(l);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", socks_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "microsocks did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = setup(AcmeDeps {
        directory_url: Some(pebble.directory_url.clone()),
        root_ca_pem: Some(pebble.https_root_pem.clone()),
    })
    .await;
    let mut c = acme_config(port, "socks.flm-proxy.test");
    c.egress = flm_core::proxy::EgressConfig {
        mode: flm_core::proxy::EgressMode::Socks5,
        socks5_endpoint: Some(format!("127.0.0.1:{socks_port}")),
        fail_open: false,
    };
    let h = s
        .manager
        .start(c)
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}\n{}", pebble.logs()));
    assert_eq!(h.mode, ProxyMode::HttpsAcme, "{:?}", h.last_error);
    assert!(h.last_error.is_none(), "{:?}", h.last_error);
    let directory = pebble
        .directory_url
        .trim_start_matches("https://")
        .trim_end_matches("/dir")
        .to_owned();
    let lines = log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("connected to {directory}"))),
        "microsocks did not carry the ACME traffic to {directory}: {lines:?}"
    );
    s.manager.stop(&StopTarget::default()).await.unwrap();
    socks.kill().await.unwrap();
}

/// An HTTPS server on loopback that answers every request with 500 (`hang`: accepts
/// and never answers). Returns its port and the PEM to trust.
async fn bad_directory(hang: bool, dir: &std::path::Path) -> (u16, Vec<u8>) {
    let now = chrono::Utc::now();
    let b = flm_tls::ensure_self_signed(dir, &flm_tls::server_sans(&[]), now).unwrap();
    let pem = std::fs::read(&b.cert_path).unwrap();
    let resolver = flm_tls::ReloadableResolver::new(&b).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(resolver.server_config().unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            if hang {
                held.push(c);
                continue;
            }
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut t) = acceptor.accept(c).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = t.read(&mut buf).await;
                let _ = t
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops")
                    .await;
                let _ = t.shutdown().await;
            });
        }
    });
    (port, pem)
}

/// A directory answering 500, or hanging, falls back to dev-selfsigned within the
/// issuance bound, with the reason in `last_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_hanging_directory_falls_back_with_the_reason() {
    let tmp = TempDir::new().unwrap();
    let bound = Duration::from_secs(3);
    for (hang, want) in [(false, "HTTP 500"), (true, "timed out")] {
        let (dport, pem) = bad_directory(hang, &tmp.path().join(format!("srv-{hang}"))).await;
        let s = setup(AcmeDeps {
            directory_url: Some(format!("https://127.0.0.1:{dport}/dir")),
            root_ca_pem: Some(pem),
        })
        .await;
        s.manager.set_acme_renewal(flm_proxy::RenewTiming {
            issuance_timeout: bound,
            ..flm_proxy::RenewTiming::default()
        });
        let port = port_pair();
        let started = Instant::now();
        let h = s
            .manager
            .start(acme_config(port, "api.flm-proxy.test"))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took < bound + Duration::from_secs(5),
            "hang={hang}: {took:?}"
        );
        assert_eq!(h.mode, ProxyMode::DevSelfsigned);
        let err = h.last_error.clone().unwrap();
        eprintln!("hang={hang}: {took:?}: {err}");
        assert!(
            err.contains("dev-selfsigned")
                && err.contains(&dport.to_string())
                && err.contains(want),
            "hang={hang}: {err}"
        );
        s.manager.stop(&StopTarget::default()).await.unwrap();
    }
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
    assert!(e.to_string().contains("wildcard"), "{e}");
    c.acme_domain = Some("api.flm-proxy.test".into());
    c.acme_challenge = flm_core::proxy::AcmeChallenge::Dns01;
    let e = s.manager.start(c.clone()).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG");
    assert!(e.to_string().contains("--dns-hook"), "{e}");
    // A hook path that does not exist is named.
    c.dns_hook = Some("/nonexistent/flm-hook".into());
    let e = s.manager.start(c.clone()).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG");
    assert!(e.to_string().contains("/nonexistent/flm-hook"), "{e}");
    c.dns_hook = Some("/bin/true".into());
    c.dns_propagation_wait_secs = Some(121);
    let e = s.manager.start(c).await.unwrap_err();
    assert_eq!(e.code(), "PROXY_INVALID_CONFIG");
    assert!(e.to_string().contains("120"), "{e}");
    assert!(s.manager.status().is_empty());
    let _ = Arc::new(());
}
