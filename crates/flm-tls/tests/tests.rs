//! `flm-tls` end to end: real key generation, real files, real TLS handshakes on
//! loopback between a tokio-rustls server using our `ServerConfig` and rustls clients
//! (and `curl` when it is installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use flm_tls::trust::{
    self, CommandStatus, FileOp, TrustOptions, TrustOutcome, TrustStatus, TrustStore,
};
use flm_tls::{
    create_local_ca, ensure_local_ca, ensure_self_signed, issue_server_cert, load_bundle,
    load_bundle_at, rustls_server_config, CertBundle, CertMode, CertificateRecord,
    ReloadableResolver, San, TlsError,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{client::TlsStream, TlsAcceptor, TlsConnector};

// === helpers ===

fn lan(s: &str) -> San {
    San::parse(s).unwrap()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn first_der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .unwrap()
}

fn parse<R>(der: &[u8], f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> R) -> R {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    f(&c)
}

/// A TLS server on `bind` answering every HTTP/1.1 request with `200 ok` (keep-alive).
async fn spawn_server(bind: IpAddr, config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        buf.clear();
                        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
                        if tls.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn client_config(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Connects to `addr` presenting `name` as the server name (SNI / verification name).
async fn connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(
        StdDuration::from_secs(10),
        TlsConnector::from(client_config(roots)).connect(name, tcp),
    )
    .await
    .expect("handshake timed out")
}

/// One request over an established connection; returns the body.
async fn get(tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"\r\n\r\nok") {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    let s = String::from_utf8(buf).unwrap();
    assert!(s.starts_with("HTTP/1.1 200"), "{s}");
    s.rsplit("\r\n\r\n").next().unwrap().to_owned()
}

fn peer_fingerprint(tls: &TlsStream<TcpStream>) -> String {
    let (_, conn) = tls.get_ref();
    flm_tls::sha256_fingerprint(&conn.peer_certificates().unwrap()[0])
}

/// Asserts a full handshake + request works and returns the served fingerprint.
async fn assert_handshake_ok(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    name: &str,
) -> String {
    let mut tls = connect(addr, roots, name)
        .await
        .unwrap_or_else(|e| panic!("handshake as `{name}` failed: {e}"));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get(&mut tls).await, "ok");
    peer_fingerprint(&tls)
}

async fn assert_handshake_fails(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    name: &str,
    expected: &str,
) {
    match connect(addr, roots, name).await {
        Ok(_) => panic!("handshake as `{name}` should fail with {expected}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("invalid peer certificate") && msg.contains(expected),
                "expected {expected}, got: {msg}"
            );
        }
    }
}

// === dev-selfsigned: generate, reuse, rotate ===

#[test]
fn self_signed_generate_reuse_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let t0 = Utc::now();
    let b1 = ensure_self_signed(&dir, &[lan("192.168.1.20"), lan("0.0.0.0")], t0).unwrap();

    assert_eq!(b1.cert_path, dir.join("dev-cert.pem"));
    assert_eq!(b1.key_path, dir.join("dev-key.pem"));
    assert_eq!(
        b1.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["localhost", "127.0.0.1", "192.168.1.20", "::1"]
    );
    let validity = b1.not_after - t0;
    assert!(
        (validity - Duration::days(90)).num_seconds().abs() <= 1,
        "{validity}"
    );
    assert!(b1.not_before <= t0 - Duration::minutes(59));
    assert_eq!(b1.sha256_fingerprint.len(), 95);
    assert!(b1
        .sha256_fingerprint
        .chars()
        .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    assert_eq!(std::fs::read_to_string(&b1.cert_path).unwrap(), b1.cert_pem);
    assert!(
        !format!("{b1:?}").contains("PRIVATE KEY"),
        "Debug must not print the key"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&b1.key_path), 0o600);
    }
    // Self-signed, not a CA (webpki rejects a CA as end entity), server auth.
    let der = first_der(&b1.cert_pem);
    parse(&der, |c| {
        assert_eq!(c.issuer(), c.subject());
        assert!(c.basic_constraints().unwrap().is_some_and(|b| !b.value.ca));
        assert!(c.extended_key_usage().unwrap().unwrap().value.server_auth);
    });

    // Reused: later but > 20 days left, same or fewer SANs.
    let b2 = ensure_self_signed(&dir, &[lan("192.168.1.20")], t0 + Duration::days(69)).unwrap();
    assert_eq!(b2.sha256_fingerprint, b1.sha256_fingerprint);
    let b2 = ensure_self_signed(&dir, &[], t0 + Duration::days(1)).unwrap();
    assert_eq!(b2.sha256_fingerprint, b1.sha256_fingerprint);
    assert_eq!(b2.key_pem, b1.key_pem);

    // A key file with loose permissions is tightened on reuse.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&b1.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_self_signed(&dir, &[], t0).unwrap();
        assert_eq!(mode(&b1.key_path), 0o600);
    }

    // Rotated: 20 days left is not enough.
    let t70 = t0 + Duration::days(70);
    let b3 = ensure_self_signed(&dir, &[lan("192.168.1.20")], t70).unwrap();
    assert_ne!(b3.sha256_fingerprint, b1.sha256_fingerprint);
    assert_ne!(b3.key_pem, b1.key_pem, "rotation must use a new key");
    assert!(b3.not_after > b1.not_after);
    #[cfg(unix)]
    assert_eq!(mode(&b3.key_path), 0o600);

    // Rotated: a SAN the certificate does not have.
    let b4 = ensure_self_signed(&dir, &[lan("10.1.2.3"), lan("flm.lan")], t70).unwrap();
    assert_ne!(b4.sha256_fingerprint, b3.sha256_fingerprint);
    assert!(b4.covers(&[lan("10.1.2.3"), lan("FLM.lan"), lan("::1")]));
    // …and now stable again with the new SANs.
    let b5 = ensure_self_signed(&dir, &[lan("flm.lan")], t70 + Duration::days(1)).unwrap();
    assert_eq!(b5.sha256_fingerprint, b4.sha256_fingerprint);

    // Damaged files are replaced, not fatal.
    std::fs::write(&b5.cert_path, "garbage").unwrap();
    let b6 = ensure_self_signed(&dir, &[], t70).unwrap();
    assert_ne!(b6.sha256_fingerprint, b5.sha256_fingerprint);
    load_bundle_at(&b6.cert_path, &b6.key_path, t70).unwrap();

    // Only the two files remain (no temporary files).
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dev-cert.pem", "dev-key.pem"]);
}

// === packaged-ca: the CA and its server certificates ===

#[test]
fn local_ca_is_created_once_and_issues_server_certs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let t0 = Utc::now();
    let ca = ensure_local_ca(&dir, t0).unwrap();
    assert_eq!(ca.cert_path(), dir.join("flm-ca.crt"));
    assert_eq!(ca.key_path(), dir.join("flm-ca.key"));
    #[cfg(unix)]
    assert_eq!(mode(ca.key_path()), 0o600);
    assert!(!format!("{ca:?}").contains("PRIVATE"));
    assert!(
        (ca.remaining(t0) - Duration::days(3650))
            .num_seconds()
            .abs()
            <= 1
    );
    parse(ca.cert_der(), |c| {
        assert_eq!(c.issuer(), c.subject());
        let cn = c
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(cn, "FLM Local CA");
        let bc = c.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(!ku.digital_signature());
    });

    // Loaded, not recreated.
    let again = ensure_local_ca(&dir, t0 + Duration::days(400)).unwrap();
    assert_eq!(again.sha256_fingerprint(), ca.sha256_fingerprint());

    // Server certificate: signed by the CA, all SANs, reused, rotated.
    let s1 = issue_server_cert(&ca, &[lan("192.168.1.20")], t0).unwrap();
    assert_eq!(s1.cert_path, dir.join("server.pem"));
    assert_eq!(s1.key_path, dir.join("server.key"));
    #[cfg(unix)]
    assert_eq!(mode(&s1.key_path), 0o600);
    assert!(s1.covers(&[
        lan("localhost"),
        lan("127.0.0.1"),
        lan("::1"),
        lan("192.168.1.20")
    ]));
    assert!((s1.not_after - t0 - Duration::days(90)).num_seconds().abs() <= 1);
    let leaf = first_der(&s1.cert_pem);
    parse(&leaf, |c| {
        parse(ca.cert_der(), |issuer| {
            assert_eq!(c.issuer(), issuer.subject());
            c.verify_signature(Some(issuer.public_key())).unwrap();
        });
        assert!(c.basic_constraints().unwrap().is_some_and(|b| !b.value.ca));
        assert!(c.extended_key_usage().unwrap().unwrap().value.server_auth);
        assert!(c
            .extensions()
            .iter()
            .any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER));
    });
    let s2 = issue_server_cert(&again, &[lan("192.168.1.20")], t0 + Duration::days(60)).unwrap();
    assert_eq!(s2.sha256_fingerprint, s1.sha256_fingerprint);
    let s3 = issue_server_cert(&ca, &[lan("192.168.1.20")], t0 + Duration::days(71)).unwrap();
    assert_ne!(s3.sha256_fingerprint, s1.sha256_fingerprint);
    let s4 = issue_server_cert(&ca, &[lan("192.168.7.7")], t0 + Duration::days(71)).unwrap();
    assert_ne!(s4.sha256_fingerprint, s3.sha256_fingerprint);

    // A new CA: the old server certificate is no longer acceptable.
    let ca2 = create_local_ca(&dir, t0).unwrap();
    assert_ne!(ca2.sha256_fingerprint(), ca.sha256_fingerprint());
    let s5 = issue_server_cert(&ca2, &[lan("192.168.7.7")], t0 + Duration::days(71)).unwrap();
    assert_ne!(s5.sha256_fingerprint, s4.sha256_fingerprint);

    // The CA is never replaced silently.
    std::fs::remove_file(ca2.key_path()).unwrap();
    match ensure_local_ca(&dir, t0) {
        Err(e @ TlsError::CaIncomplete { .. }) => {
            assert!(e.to_string().contains("flm-ca.key"), "{e}")
        }
        other => panic!("expected CaIncomplete, got {other:?}"),
    }
    // A server key is not a CA key.
    std::fs::copy(&s5.key_path, ca2.key_path()).unwrap();
    assert!(matches!(
        ensure_local_ca(&dir, t0),
        Err(TlsError::KeyMismatch { .. })
    ));
    // A server certificate is not a CA.
    assert!(matches!(
        flm_tls::load_local_ca(&s5.cert_path, &s5.key_path, t0),
        Err(TlsError::NotACa { .. })
    ));
    // Expired CA.
    let old = tempfile::tempdir().unwrap();
    let expired = create_local_ca(old.path(), t0 - Duration::days(3700)).unwrap();
    assert!(matches!(
        ensure_local_ca(old.path(), t0),
        Err(TlsError::Expired { .. })
    ));
    // A server certificate never outlives its CA.
    let late = issue_server_cert(&expired, &[], t0 - Duration::days(60)).unwrap();
    assert_eq!(late.not_after, expired.not_after());
}

// === load_bundle errors ===

#[test]
fn load_bundle_reports_precise_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let a = ensure_self_signed(&tmp.path().join("a"), &[], now).unwrap();
    let b = ensure_self_signed(&tmp.path().join("b"), &[], now).unwrap();

    // The good case.
    let ok = load_bundle(&a.cert_path, &a.key_path).unwrap();
    assert_eq!(ok, a);

    let missing = tmp.path().join("nope.pem");
    match load_bundle(&missing, &a.key_path) {
        Err(e @ TlsError::Unreadable { .. }) => {
            let TlsError::Unreadable { path, source } = &e else {
                unreachable!()
            };
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("nope.pem"), "{e}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }

    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, b"\x00\x01 this is not pem at all").unwrap();
    match load_bundle(&garbage, &a.key_path) {
        Err(e @ TlsError::NotPem { .. }) => assert!(e.to_string().contains("garbage.pem"), "{e}"),
        other => panic!("expected NotPem, got {other:?}"),
    }
    match load_bundle(&a.cert_path, &garbage) {
        Err(TlsError::NotPem { path }) => assert_eq!(path, garbage),
        other => panic!("expected NotPem for the key, got {other:?}"),
    }

    // Key file given as the certificate: PEM, but no certificate in it.
    match load_bundle(&a.key_path, &a.key_path) {
        Err(e @ TlsError::EmptyChain { .. }) => {
            assert!(e.to_string().contains("dev-key.pem"), "{e}")
        }
        other => panic!("expected EmptyChain, got {other:?}"),
    }
    // Certificate given as the key.
    assert!(matches!(
        load_bundle(&a.cert_path, &a.cert_path),
        Err(TlsError::NoPrivateKey { .. })
    ));

    // A CERTIFICATE section whose content is not X.509.
    let bogus = tmp.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(matches!(
        load_bundle(&bogus, &a.key_path),
        Err(TlsError::InvalidCertificate { .. })
    ));

    match load_bundle(&a.cert_path, &b.key_path) {
        Err(e @ TlsError::KeyMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("a/dev-cert.pem") && msg.contains("b/dev-key.pem"),
                "{msg}"
            );
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }

    // Expired: generated with a validity window entirely in the past.
    let past = now - Duration::days(200);
    let old = ensure_self_signed(&tmp.path().join("old"), &[], past).unwrap();
    match load_bundle(&old.cert_path, &old.key_path) {
        Err(e @ TlsError::Expired { .. }) => {
            let TlsError::Expired { not_after, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*not_after, old.not_after);
            assert!(e.to_string().contains("expired at"), "{e}");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // Not valid yet.
    let future =
        ensure_self_signed(&tmp.path().join("future"), &[], now + Duration::days(5)).unwrap();
    assert!(matches!(
        load_bundle(&future.cert_path, &future.key_path),
        Err(TlsError::NotYetValid { .. })
    ));

    // A hand-made bundle with the wrong key is refused by the server config too.
    let mut mixed: CertBundle = a.clone();
    mixed.key_pem = b.key_pem.clone();
    assert!(matches!(
        rustls_server_config(&mixed),
        Err(TlsError::KeyMismatch { .. })
    ));
}

// === real handshakes ===

#[tokio::test]
async fn self_signed_handshake_trusting_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = ensure_self_signed(tmp.path(), &[], Utc::now()).unwrap();
    let addr = spawn_server(
        "127.0.0.1".parse().unwrap(),
        rustls_server_config(&bundle).unwrap(),
    )
    .await;
    let trusted = [first_der(&bundle.cert_pem)];

    for name in ["localhost", "127.0.0.1"] {
        let fp = assert_handshake_ok(addr, &trusted, name).await;
        assert_eq!(fp, bundle.sha256_fingerprint);
    }
    assert_handshake_fails(addr, &[], "localhost", "UnknownIssuer").await;
    assert_handshake_fails(addr, &trusted, "example.com", "not valid for name").await;
}

#[tokio::test]
async fn packaged_ca_handshake_trusting_only_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let ca = ensure_local_ca(tmp.path(), now).unwrap();
    let bundle = issue_server_cert(&ca, &[], now).unwrap();
    let config = rustls_server_config(&bundle).unwrap();
    let addr = spawn_server("127.0.0.1".parse().unwrap(), config.clone()).await;
    let trusted = [ca.cert_der().clone()];

    for name in ["localhost", "127.0.0.1"] {
        let fp = assert_handshake_ok(addr, &trusted, name).await;
        assert_eq!(fp, bundle.sha256_fingerprint);
    }
    assert_handshake_fails(addr, &[], "localhost", "UnknownIssuer").await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = ensure_local_ca(other.path(), now).unwrap();
    // Every FLM CA has the same subject, so the other CA is found by name and its key
    // fails the signature check.
    assert_handshake_fails(
        addr,
        &[other_ca.cert_der().clone()],
        "localhost",
        "BadSignature",
    )
    .await;

    // ::1 is a SAN too; only testable where IPv6 loopback exists.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let addr6 = spawn_server("::1".parse().unwrap(), config).await;
        assert_handshake_ok(addr6, &trusted, "::1").await;
    } else {
        eprintln!("note: no IPv6 loopback here; skipped the `::1` handshake");
    }
}

#[tokio::test]
async fn curl_accepts_the_ca_when_installed() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: `curl` not installed; skipped the curl handshake test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let ca = ensure_local_ca(&tmp.path().join("ca"), now).unwrap();
    let bundle = issue_server_cert(&ca, &[], now).unwrap();
    let addr = spawn_server(
        "127.0.0.1".parse().unwrap(),
        rustls_server_config(&bundle).unwrap(),
    )
    .await;
    let port = addr.port();
    let curl = |args: Vec<String>| async move {
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(&args)
            .output()
            .await
            .unwrap()
    };
    let cacert = ca.cert_path().display().to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");
    for url in [
        format!("https://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/"),
    ] {
        let out = curl(vec![
            "--cacert".into(),
            cacert.clone(),
            "--resolve".into(),
            resolve.clone(),
            url.clone(),
        ])
        .await;
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    }
    // Without the CA, curl refuses (exit 60: peer certificate cannot be authenticated).
    let out = curl(vec![
        "--resolve".into(),
        resolve.clone(),
        format!("https://localhost:{port}/"),
    ])
    .await;
    assert!(!out.status.success(), "curl must not trust an unknown CA");

    // dev-selfsigned: curl trusts the certificate itself.
    let dev = ensure_self_signed(&tmp.path().join("dev"), &[], now).unwrap();
    let addr = spawn_server(
        "127.0.0.1".parse().unwrap(),
        rustls_server_config(&dev).unwrap(),
    )
    .await;
    let out = curl(vec![
        "--cacert".into(),
        dev.cert_path.display().to_string(),
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", addr.port()),
        format!("https://localhost:{}/", addr.port()),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[tokio::test]
async fn reloadable_resolver_swaps_certificates_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let a = ensure_self_signed(&tmp.path().join("a"), &[], now).unwrap();
    let b = ensure_self_signed(&tmp.path().join("b"), &[], now).unwrap();
    let resolver = ReloadableResolver::new(&a).unwrap();
    let addr = spawn_server(
        "127.0.0.1".parse().unwrap(),
        resolver.server_config().unwrap(),
    )
    .await;
    let both = [first_der(&a.cert_pem), first_der(&b.cert_pem)];

    let mut before = connect(addr, &both, "localhost").await.unwrap();
    assert_eq!(peer_fingerprint(&before), a.sha256_fingerprint);
    assert_eq!(get(&mut before).await, "ok");

    resolver.reload(&b).unwrap();
    assert_eq!(resolver.fingerprint(), b.sha256_fingerprint);
    assert_eq!(resolver.not_after(), b.not_after);
    assert_eq!(
        assert_handshake_ok(addr, &both, "localhost").await,
        b.sha256_fingerprint
    );
    // The connection made before the swap keeps working with its certificate.
    assert_eq!(get(&mut before).await, "ok");
    assert_eq!(peer_fingerprint(&before), a.sha256_fingerprint);

    // A bad bundle is refused and the current certificate stays.
    let mut mixed = a.clone();
    mixed.key_pem = b.key_pem.clone();
    assert!(resolver.reload(&mixed).is_err());
    assert_eq!(
        assert_handshake_ok(addr, &both, "localhost").await,
        b.sha256_fingerprint
    );
    // A client trusting only the old certificate now fails.
    // (Same subject name as the new one, so: signature mismatch.)
    assert_handshake_fails(addr, &both[..1], "localhost", "BadSignature").await;
}

// === OS trust store (Debian layout in a temporary root) ===

#[test]
fn trust_install_uninstall_debian_layout_in_temp_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let anchors = root.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&anchors).unwrap();
    let installed = anchors.join("flm-ca.crt");
    let now = Utc::now();
    let ca = ensure_local_ca(&tmp.path().join("certs"), now).unwrap();
    let opts = |dry_run| TrustOptions {
        dry_run,
        root: Some(root.clone()),
    };
    let snapshot = || {
        let mut v: Vec<_> = walk(&root);
        v.sort();
        v
    };

    assert_eq!(
        trust::ca_status(ca.cert_path(), opts(false)).unwrap(),
        TrustStatus::NotInstalled
    );

    // Dry run: reports the exact steps, changes nothing.
    let before = snapshot();
    let r = trust::install_ca(ca.cert_path(), opts(true)).unwrap();
    assert_eq!(r.store, TrustStore::Debian);
    assert_eq!(r.outcome, TrustOutcome::Installed);
    assert!(r.dry_run);
    assert_eq!(
        r.file_ops,
        [FileOp::Copy {
            from: ca.cert_path().to_path_buf(),
            to: installed.clone()
        }]
    );
    assert_eq!(r.commands, [vec!["update-ca-certificates".to_owned()]]);
    assert_eq!(r.command_status, CommandStatus::DryRun);
    assert_eq!(
        r.steps().last().unwrap(),
        "run: update-ca-certificates (dry run)"
    );
    assert_eq!(snapshot(), before, "dry run changed the filesystem");

    // Real install (into the temp root): file copied, command skipped (not `/`).
    let r = trust::install_ca(ca.cert_path(), opts(false)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::Installed);
    assert!(
        matches!(r.command_status, CommandStatus::Skipped(_)),
        "{:?}",
        r.command_status
    );
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(ca.cert_path()).unwrap()
    );
    #[cfg(unix)]
    assert_eq!(mode(&installed), 0o644);
    assert_eq!(
        trust::ca_status(ca.cert_path(), opts(false)).unwrap(),
        TrustStatus::Installed
    );

    // Idempotent.
    let r = trust::install_ca(ca.cert_path(), opts(false)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::AlreadyInstalled);
    assert!(r.file_ops.is_empty() && r.commands.is_empty());
    assert_eq!(r.command_status, CommandStatus::NotNeeded);

    // A new CA replaces the old anchor file.
    let other = tempfile::tempdir().unwrap();
    let ca2 = ensure_local_ca(other.path(), now).unwrap();
    assert_eq!(
        trust::ca_status(ca2.cert_path(), opts(false)).unwrap(),
        TrustStatus::Different
    );
    let r = trust::install_ca(ca2.cert_path(), opts(false)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::Replaced);
    assert_eq!(
        trust::ca_status(ca2.cert_path(), opts(false)).unwrap(),
        TrustStatus::Installed
    );

    // Uninstall: dry run changes nothing, then removes, then is a no-op.
    let before = snapshot();
    let r = trust::uninstall_ca(ca2.cert_path(), opts(true)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::Removed);
    assert_eq!(r.file_ops, [FileOp::Remove(installed.clone())]);
    assert_eq!(snapshot(), before);
    let r = trust::uninstall_ca(ca2.cert_path(), opts(false)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::Removed);
    assert!(!installed.exists());
    assert!(matches!(r.command_status, CommandStatus::Skipped(_)));
    let r = trust::uninstall_ca(ca2.cert_path(), opts(false)).unwrap();
    assert_eq!(r.outcome, TrustOutcome::NotInstalled);
    assert_eq!(r.command_status, CommandStatus::NotNeeded);

    // Only CA certificates are accepted.
    let dev = ensure_self_signed(&tmp.path().join("dev"), &[], now).unwrap();
    assert!(matches!(
        trust::install_ca(&dev.cert_path, opts(false)),
        Err(TlsError::NotACa { .. })
    ));
    // No known layout under the root.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        trust::install_ca(
            ca.cert_path(),
            TrustOptions {
                dry_run: true,
                root: Some(empty.path().to_path_buf())
            }
        ),
        Err(TlsError::NoTrustStore { .. })
    ));
}

fn walk(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.push((p.display().to_string(), Vec::new()));
            out.extend(walk(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

// === certificates table ===

#[test]
fn certificate_records_for_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let now: DateTime<Utc> = Utc::now();
    let dev = ensure_self_signed(tmp.path(), &[], now).unwrap();
    let r = CertificateRecord::from_bundle(&dev, CertMode::SelfSigned, None, now);
    assert_eq!(r.id, "self-signed");
    assert_eq!(r.mode.as_str(), "self-signed");
    assert_eq!(r.cert_path, dev.cert_path.display().to_string());
    assert_eq!(r.key_path, dev.key_path.display().to_string());
    assert_eq!(r.expires_at, dev.not_after);
    assert_eq!(r.updated_at, now);
    assert_eq!(r.domain, None);
    assert!(!r.is_expired(now));
    assert!(r.is_expired(dev.not_after));

    let acme = CertificateRecord::from_bundle(&dev, CertMode::Acme, Some("api.example.com"), now);
    assert_eq!(acme.id, "acme:api.example.com");
    assert_eq!(acme.domain.as_deref(), Some("api.example.com"));

    let ca = ensure_local_ca(&tmp.path().join("ca"), now).unwrap();
    let r = CertificateRecord::for_local_ca(&ca, now);
    assert_eq!(
        (r.id.as_str(), r.mode.as_str()),
        ("packaged-ca-root", "packaged-ca")
    );
    assert_eq!(r.expires_at, ca.not_after());
}
