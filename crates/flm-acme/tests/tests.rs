//! Integration tests against Debian's real `pebble` and `pebble-challtestsrv`.
//!
//! Needs the `pebble` package (both binaries) and, for the hook test, `curl`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use chrono::Utc;
use flm_acme::{
    account_path, cert_paths, http01_router, needs_renewal, obtain, obtain_or_reuse, AcmeConfig,
    AcmeError, ChallTestSrvDnsProvider, Challenge, HookDnsProvider, Http01Responder, Obtained,
};
use support::{serve, Pebble};

const EMAIL: &str = "ops@example.com";

fn config(pebble: &Pebble, domains: &[&str], challenge: Challenge, state_dir: &Path) -> AcmeConfig {
    let mut c = AcmeConfig::new(
        pebble.directory_url.clone(),
        EMAIL,
        domains.iter().map(|d| (*d).to_owned()).collect(),
        challenge,
        state_dir,
    );
    c.root_ca_pem = Some(pebble.https_root_pem.clone());
    // Well above what pebble needs (about a second), well below a hung test.
    c.timeout = Duration::from_secs(30);
    c
}

/// pebble + an HTTP-01 responder served on the port pebble validates.
async fn pebble_with_responder() -> (Pebble, Http01Responder) {
    let responder = Http01Responder::new();
    let port = serve(http01_router(responder.clone())).await;
    (Pebble::start(port).await, responder)
}

#[cfg(unix)]
#[expect(
    clippy::expect_used,
    reason = "test helper: a missing file fails the test"
)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

// === HTTP-01 ===

#[tokio::test]
async fn http01_router_serves_pending_tokens_only() {
    let responder = Http01Responder::new();
    let port = serve(http01_router(responder.clone())).await;
    let client = reqwest::Client::new();
    let url = |t: &str| format!("http://127.0.0.1:{port}/.well-known/acme-challenge/{t}");

    let rsp = client.get(url("tok1")).send().await.expect("GET");
    assert_eq!(rsp.status(), 404, "unknown token");

    responder.insert("tok1", "tok1.thumbprint");
    assert_eq!(responder.get("tok1").as_deref(), Some("tok1.thumbprint"));
    let rsp = client.get(url("tok1")).send().await.expect("GET");
    assert_eq!(rsp.status(), 200);
    assert!(rsp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    assert_eq!(rsp.text().await.expect("body"), "tok1.thumbprint");

    responder.remove("tok1");
    assert!(responder.is_empty());
    let rsp = client.get(url("tok1")).send().await.expect("GET");
    assert_eq!(rsp.status(), 404, "withdrawn token");
}

#[tokio::test]
async fn http01_issuance_end_to_end() {
    let (pebble, responder) = pebble_with_responder().await;
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().join("certs");
    let cfg = config(
        &pebble,
        &["Http01.FLM-acme.test"],
        Challenge::Http01,
        &state_dir,
    );

    let started = Instant::now();
    let issued = obtain(&cfg, &responder)
        .await
        .unwrap_or_else(|e| panic!("issuance failed: {e}\n{}", pebble.logs()));
    eprintln!("http-01 issuance took {:?}", started.elapsed());

    assert_eq!(issued.domains, vec!["http01.flm-acme.test"], "normalised");
    assert!(!issued.account_reused, "first run registers an account");
    assert!(issued.account_url.starts_with("https://127.0.0.1:"));
    let (cert_path, key_path) = cert_paths(&state_dir, "http01.flm-acme.test");
    assert_eq!(issued.bundle.cert_path, cert_path);
    assert_eq!(issued.bundle.key_path, key_path);
    assert_eq!(
        issued.bundle.sans,
        vec![flm_tls::San::Dns("http01.flm-acme.test".into())]
    );
    pebble
        .assert_chain_valid_for(&issued.bundle, "http01.flm-acme.test")
        .await;
    assert!(
        !needs_renewal(&issued.bundle, Utc::now()),
        "fresh certificate"
    );
    assert!(
        needs_renewal(
            &issued.bundle,
            issued.bundle.not_after - chrono::Duration::days(19)
        ),
        "19 days before expiry it is due"
    );
    // The same files load on their own, as the proxy will at the next start.
    let reloaded = flm_tls::load_bundle(&cert_path, &key_path).expect("reload");
    assert_eq!(
        reloaded.sha256_fingerprint,
        issued.bundle.sha256_fingerprint
    );
    assert!(
        responder.is_empty(),
        "challenge answers withdrawn after issuance"
    );

    #[cfg(unix)]
    {
        assert_eq!(mode(&state_dir), 0o700, "state dir");
        assert_eq!(mode(&key_path), 0o600, "certificate key");
        assert_eq!(
            mode(&account_path(&state_dir, &cfg.directory_url)),
            0o600,
            "account"
        );
    }
    let record = flm_tls::CertificateRecord::from_bundle(
        &issued.bundle,
        flm_tls::CertMode::Acme,
        issued.domains.first().map(String::as_str),
        Utc::now(),
    );
    assert_eq!(record.id, "acme:http01.flm-acme.test");
}

#[tokio::test]
async fn account_is_reused_across_issuances() {
    let (pebble, responder) = pebble_with_responder().await;
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["reuse.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );

    let first = obtain(&cfg, &responder)
        .await
        .unwrap_or_else(|e| panic!("first issuance: {e}\n{}", pebble.logs()));
    let account_file = account_path(state.path(), &cfg.directory_url);
    let stored = std::fs::read(&account_file).expect("account file");
    let json: serde_json::Value = serde_json::from_slice(&stored).expect("account JSON");
    assert_eq!(json["account_url"], first.account_url.as_str());
    assert_eq!(json["contact_email"], EMAIL);
    assert!(
        json["credentials"]["key_pkcs8"].is_string(),
        "credentials stored"
    );

    let second = obtain(&cfg, &responder)
        .await
        .unwrap_or_else(|e| panic!("second issuance: {e}\n{}", pebble.logs()));
    assert!(second.account_reused, "stored account used");
    assert_eq!(second.account_url, first.account_url);
    assert_eq!(
        std::fs::read(&account_file).expect("account file"),
        stored,
        "account file untouched"
    );
    assert_ne!(
        second.bundle.sha256_fingerprint, first.bundle.sha256_fingerprint,
        "a new certificate"
    );
    assert_ne!(
        second.bundle.key_pem, first.bundle.key_pem,
        "with a fresh key"
    );
    pebble
        .assert_chain_valid_for(&second.bundle, "reuse.flm-acme.test")
        .await;

    // A different contact updates the stored account instead of registering another.
    let mut cfg2 = config(
        &pebble,
        &["reuse.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    cfg2.contact_email = "new-ops@example.com".into();
    let third = obtain(&cfg2, &responder)
        .await
        .unwrap_or_else(|e| panic!("third issuance: {e}\n{}", pebble.logs()));
    assert_eq!(third.account_url, first.account_url);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&account_file).expect("account file"))
            .expect("account JSON");
    assert_eq!(json["contact_email"], "new-ops@example.com");
}

#[tokio::test]
async fn account_unknown_to_the_server_is_registered_again() {
    let (mut pebble, responder) = pebble_with_responder().await;
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["gone.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    let first = obtain(&cfg, &responder)
        .await
        .unwrap_or_else(|e| panic!("first issuance: {e}\n{}", pebble.logs()));

    pebble.restart_pebble().await; // forgets every account
    let second = obtain(&cfg, &responder)
        .await
        .unwrap_or_else(|e| panic!("issuance after CA reset: {e}\n{}", pebble.logs()));
    assert!(!second.account_reused, "a new account was registered");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(account_path(state.path(), &cfg.directory_url)).expect("account file"),
    )
    .expect("account JSON");
    assert_eq!(
        json["account_url"],
        second.account_url.as_str(),
        "new account stored"
    );
    assert!(!first.account_reused);
}

#[tokio::test]
async fn wrong_http01_answer_is_challenge_failed() {
    // The HTTP port answers every challenge with a wrong key authorization.
    let wrong = Router::new().route(
        "/.well-known/acme-challenge/{token}",
        get(|| async { "not-the-key-authorization" }),
    );
    let port = serve(wrong).await;
    let pebble = Pebble::start(port).await;
    let responder = Http01Responder::new();
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["wrong.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );

    let started = Instant::now();
    let err = obtain(&cfg, &responder)
        .await
        .expect_err("validation must fail");
    eprintln!("wrong answer -> {err}");
    match &err {
        AcmeError::ChallengeFailed { domain, reason } => {
            assert_eq!(domain, "wrong.flm-acme.test");
            assert!(
                reason.contains("urn:ietf:params:acme:error:unauthorized")
                    || reason.contains("key authorization"),
                "reason carries pebble's validation error: {reason}"
            );
        }
        other => panic!("expected ChallengeFailed, got {other:?}\n{}", pebble.logs()),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
    assert!(
        responder.is_empty(),
        "answers withdrawn after a failure too"
    );
    assert!(!err.is_transient());
    assert!(
        !cert_paths(state.path(), "wrong.flm-acme.test").0.exists(),
        "no certificate written"
    );
}

#[tokio::test]
async fn server_refusal_is_rejected_with_the_problem_document() {
    let (pebble, responder) = {
        let responder = Http01Responder::new();
        let port = serve(http01_router(responder.clone())).await;
        (
            Pebble::start_with_blocklist(port, &["blocked.flm-acme.test"]).await,
            responder,
        )
    };
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["blocked.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    let err = obtain(&cfg, &responder)
        .await
        .expect_err("blocked by policy");
    eprintln!("refused -> {err}");
    match &err {
        AcmeError::Rejected {
            problem_type,
            detail,
            ..
        } => {
            assert_eq!(
                problem_type,
                "urn:ietf:params:acme:error:rejectedIdentifier"
            );
            assert!(detail.contains("blocked.flm-acme.test"), "{detail}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn validation_that_never_completes_is_bounded_and_cleaned_up() {
    // The HTTP port accepts the validation request and never answers.
    let hang = Router::new().route(
        "/.well-known/acme-challenge/{token}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            "too late"
        }),
    );
    let port = serve(hang).await;
    let pebble = Pebble::start(port).await;
    let responder = Http01Responder::new();
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        &pebble,
        &["hang.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    cfg.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = obtain(&cfg, &responder).await.expect_err("bounded");
    let took = started.elapsed();
    eprintln!("hanging validation -> {err} (after {took:?})");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    match &err {
        AcmeError::Timeout { after, stage } => {
            assert_eq!(*after, Duration::from_secs(3));
            assert!(stage.contains("validate"), "{stage}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.is_transient());
    assert!(
        responder.is_empty(),
        "answers withdrawn after a timeout too"
    );
}

// === DNS-01 ===

#[tokio::test]
async fn dns01_wildcard_issuance_with_challtestsrv() {
    // Nothing listens for HTTP-01: DNS-01 must not need it.
    let pebble = Pebble::start(support::free_tcp_port()).await;
    let provider = ChallTestSrvDnsProvider::new(pebble.challtestsrv_url.clone()).expect("provider");
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["*.wild.flm-acme.test", "wild.flm-acme.test"],
        Challenge::Dns01(Box::new(provider)),
        state.path(),
    );

    let started = Instant::now();
    let issued = obtain(&cfg, &Http01Responder::new())
        .await
        .unwrap_or_else(|e| panic!("dns-01 issuance failed: {e}\n{}", pebble.logs()));
    eprintln!("dns-01 wildcard issuance took {:?}", started.elapsed());

    let (cert_path, _) = cert_paths(state.path(), "*.wild.flm-acme.test");
    assert_eq!(issued.bundle.cert_path, cert_path);
    assert!(cert_path.ends_with("acme-_.wild.flm-acme.test.crt"));
    pebble
        .assert_chain_valid_for(&issued.bundle, "api.wild.flm-acme.test")
        .await;
    pebble
        .assert_chain_valid_for(&issued.bundle, "wild.flm-acme.test")
        .await;
}

#[cfg(unix)]
#[tokio::test]
async fn dns01_issuance_with_hook_provider() {
    let pebble = Pebble::start(support::free_tcp_port()).await;
    let log = pebble.dir.path().join("hook.log");
    // The documented hook contract, implemented against challtestsrv with curl.
    let hook = support::script(
        &pebble.dir.path().join("dns-hook.sh"),
        &format!(
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
    );
    let provider = HookDnsProvider::new(hook).with_propagation_wait(Duration::from_millis(200));
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["hook.flm-acme.test"],
        Challenge::Dns01(Box::new(provider)),
        state.path(),
    );

    let issued = obtain(&cfg, &Http01Responder::new())
        .await
        .unwrap_or_else(|e| panic!("hook issuance failed: {e}\n{}", pebble.logs()));
    pebble
        .assert_chain_valid_for(&issued.bundle, "hook.flm-acme.test")
        .await;

    let calls = std::fs::read_to_string(&log).expect("hook log");
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "one set, one remove: {calls}");
    let set: Vec<&str> = lines[0].split(' ').collect();
    let remove: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(set[0], "set");
    assert_eq!(set[1], "_acme-challenge.hook.flm-acme.test.");
    assert_eq!(set[2].len(), 43, "base64url SHA-256 TXT value");
    assert_eq!(
        remove,
        vec!["remove", set[1], set[2]],
        "the same record is removed"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn dns_hook_failure_is_challenge_failed() {
    let pebble = Pebble::start(support::free_tcp_port()).await;
    let hook = support::script(
        &pebble.dir.path().join("failing-hook.sh"),
        "#!/bin/sh\necho \"zone flm-acme.test is not managed by this token\" >&2\nexit 3\n",
    );
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["hookfail.flm-acme.test"],
        Challenge::Dns01(Box::new(HookDnsProvider::new(hook))),
        state.path(),
    );
    let started = Instant::now();
    let err = obtain(&cfg, &Http01Responder::new())
        .await
        .expect_err("hook fails");
    eprintln!("failing hook -> {err}");
    match &err {
        AcmeError::ChallengeFailed { domain, reason } => {
            assert_eq!(domain, "hookfail.flm-acme.test");
            assert!(reason.contains("exit status: 3"), "{reason}");
            assert!(
                reason.contains("not managed by this token"),
                "stderr shown: {reason}"
            );
        }
        other => panic!("expected ChallengeFailed, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no propagation wait after a failed hook"
    );
}

// === unreachable / untrusted server ===

#[tokio::test]
async fn unreachable_acme_server_fails_fast_with_url_and_cause() {
    let port = support::free_tcp_port(); // nothing listens there
    let state = tempfile::tempdir().expect("tempdir");
    let url = format!("https://127.0.0.1:{port}/dir");
    let cfg = AcmeConfig::new(
        url.clone(),
        EMAIL,
        vec!["down.flm-acme.test".into()],
        Challenge::Http01,
        state.path(),
    );
    let started = Instant::now();
    let err = obtain(&cfg, &Http01Responder::new())
        .await
        .expect_err("unreachable");
    eprintln!("unreachable -> {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection refused is immediate"
    );
    match &err {
        AcmeError::DirectoryUnreachable { url: u, cause } => {
            assert_eq!(u, &url);
            assert!(
                cause.to_ascii_lowercase().contains("connection refused")
                    || cause.to_ascii_lowercase().contains("connect"),
                "{cause}"
            );
        }
        other => panic!("expected DirectoryUnreachable, got {other:?}"),
    }
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(msg.contains(&url), "message names the URL: {msg}");
}

#[tokio::test]
async fn silent_acme_server_is_bounded_by_the_timeout() {
    // Accepts connections and never answers (not even the TLS handshake).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = AcmeConfig::new(
        format!("https://127.0.0.1:{port}/dir"),
        EMAIL,
        vec!["silent.flm-acme.test".into()],
        Challenge::Http01,
        state.path(),
    );
    cfg.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = obtain(&cfg, &Http01Responder::new())
        .await
        .expect_err("silent server");
    eprintln!("silent -> {err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(
        matches!(
            err,
            AcmeError::DirectoryUnreachable { .. } | AcmeError::Timeout { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn untrusted_acme_server_certificate_is_reported() {
    let pebble = Pebble::start(support::free_tcp_port()).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        &pebble,
        &["untrusted.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    cfg.root_ca_pem = None; // pebble's HTTPS is not in the web PKI
    let err = obtain(&cfg, &Http01Responder::new())
        .await
        .expect_err("untrusted");
    eprintln!("untrusted -> {err}");
    match &err {
        AcmeError::DirectoryUnreachable { cause, .. } => {
            assert!(
                cause.to_ascii_lowercase().contains("certificate"),
                "{cause}"
            );
        }
        other => panic!("expected DirectoryUnreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_config_is_rejected_before_any_network_or_disk_access() {
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().join("never-created");
    let cfg = AcmeConfig::new(
        "https://127.0.0.1:1/dir",
        EMAIL,
        vec!["*.example.com".into()],
        Challenge::Http01,
        &state_dir,
    );
    let err = obtain(&cfg, &Http01Responder::new())
        .await
        .expect_err("wildcard over http-01");
    eprintln!("invalid config -> {err}");
    assert!(
        matches!(
            err,
            AcmeError::InvalidConfig {
                field: "domains",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!state_dir.exists());
    let err = obtain_or_reuse(&cfg, &Http01Responder::new())
        .await
        .expect_err("config errors are never masked by the fallback");
    assert!(matches!(err, AcmeError::InvalidConfig { .. }));
}

// === fallback (spec 30-proxy §10.4 step 1) ===

#[tokio::test]
async fn obtain_or_reuse_falls_back_to_the_existing_valid_certificate() {
    let (pebble, responder) = pebble_with_responder().await;
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &pebble,
        &["fallback.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );

    let first = match obtain_or_reuse(&cfg, &responder).await {
        Ok(Obtained::Issued(i)) => i,
        Ok(other) => panic!("expected Issued, got {other:?}"),
        Err(e) => panic!("issuance failed: {e}\n{}", pebble.logs()),
    };

    // The CA becomes unreachable: the certificate from the first run is kept.
    let mut down = config(
        &pebble,
        &["fallback.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    down.directory_url = format!("https://127.0.0.1:{}/dir", support::free_tcp_port());
    match obtain_or_reuse(&down, &responder).await {
        Ok(Obtained::Reused { bundle, error }) => {
            assert_eq!(bundle.sha256_fingerprint, first.bundle.sha256_fingerprint);
            assert!(
                matches!(error, AcmeError::DirectoryUnreachable { .. }),
                "{error:?}"
            );
        }
        other => panic!("expected Reused, got {other:?}"),
    }

    // A certificate for other names is not a fallback.
    let mut other_names = config(
        &pebble,
        &["fallback.flm-acme.test", "extra.flm-acme.test"],
        Challenge::Http01,
        state.path(),
    );
    other_names.directory_url = down.directory_url.clone();
    let err = obtain_or_reuse(&other_names, &responder)
        .await
        .expect_err("no certificate covers the new names");
    assert!(
        matches!(err, AcmeError::DirectoryUnreachable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn obtain_or_reuse_never_falls_back_to_an_expired_certificate() {
    let state = tempfile::tempdir().expect("tempdir");
    let domain = "expired.flm-acme.test";
    // An expired certificate in the ACME slot for `domain`.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 4, 1);
    let cert = params.self_signed(&key).expect("self-sign");
    let (cert_path, key_path) = cert_paths(state.path(), domain);
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");

    let cfg = AcmeConfig::new(
        format!("https://127.0.0.1:{}/dir", support::free_tcp_port()),
        EMAIL,
        vec![domain.to_owned()],
        Challenge::Http01,
        state.path(),
    );
    assert!(flm_acme::existing_certificate(&cfg, Utc::now()).is_none());
    let err = obtain_or_reuse(&cfg, &Http01Responder::new())
        .await
        .expect_err("expired certificates are not reused");
    assert!(
        matches!(err, AcmeError::DirectoryUnreachable { .. }),
        "{err:?}"
    );
}
