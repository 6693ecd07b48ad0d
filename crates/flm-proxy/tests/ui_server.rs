//! The app server end to end over real sockets: login by one-time code, the session
//! cookie, the CSRF / Origin / Host guard, the security headers, the embedded app,
//! live events, and that the public proxy port serves none of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::Duration;

use flm_core::ports::SystemClock;
use flm_core::proxy::ProxyConfig;
use flm_core::services::{ConfigService, KeyService};
use flm_core::EngineKind;
use flm_engines::HttpClient;
use flm_proxy::ui::{SessionTiming, UiDeps, UiHandle, CSP};
use flm_proxy::{ProxyDeps, ProxyManager};
use flm_store::{Store, StorePaths};
use flm_testkit::llama::TinyModel;
use futures::StreamExt;
use serde_json::{json, Value};
use tempfile::TempDir;

use common::{egress_engines, engine_service, free_port, llama, security_deps};

struct Ui {
    _dir: TempDir,
    store: Store,
    manager: ProxyManager,
    handle: UiHandle,
    base: String,
    port: u16,
    proxy_base: String,
    http: reqwest::Client,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn ui(timing: SessionTiming, extra: Vec<axum::Router>) -> Ui {
    ui_with(timing, extra, &[], false).await
}

/// With engines, and (`relay`) the daemon's in-memory key for the chat relay.
async fn ui_with(
    timing: SessionTiming,
    extra: Vec<axum::Router>,
    endpoints: &[(EngineKind, String, &str)],
    relay: bool,
) -> Ui {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let config = ConfigService::new(store.settings(), "config.db");
    for (k, v) in [
        ("engine.probe_default_ports", "false"),
        ("engine.detect_timeout_ms", "500"),
        ("proxy.shutdown_grace_secs", "1"),
        ("proxy.engine_check_interval_secs", "1"),
    ] {
        config.set(k, v).await.unwrap();
    }
    let engines = engine_service(&store, &config, HttpClient::new().unwrap());
    for (kind, url, id) in endpoints {
        engines.add_endpoint(*kind, url, Some(id)).await.unwrap();
    }
    let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
    let deps = ProxyDeps {
        engines: engines.clone(),
        config: config.clone(),
        keys: store.api_keys(),
        changes: Some(store.change_markers()),
        security: Some(security_deps(&store)),
        certs_dir: dir.path().join("certs"),
        egress_engines: Some(egress_engines(store.clone(), config.clone())),
        acme: flm_proxy::AcmeDeps::default(),
        certificates: Some(store.certificates()),
        audit: Some(store.audit()),
    };
    let manager = ProxyManager::new(deps.clone());
    let relay_key = if relay {
        let (_, k) = flm_core::keys::generate("local cli", chrono::Utc::now()).unwrap();
        manager.add_ephemeral_key("key_local-cli", &k).unwrap();
        Some(k)
    } else {
        None
    };
    let proxy_port = free_port();
    manager
        .start(ProxyConfig {
            port: proxy_port,
            ..ProxyConfig::default()
        })
        .await
        .unwrap();
    let listener = flm_proxy::ui::bind(0).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (handle, _task) = flm_proxy::ui::start(
        listener,
        UiDeps {
            manager: manager.clone(),
            config,
            engines,
            keys,
            security: deps.security.clone(),
            changes: deps.changes.clone(),
            relay_key,
            timing,
        },
        extra,
        stop_rx,
    )
    .unwrap();
    Ui {
        _dir: dir,
        store: store.clone(),
        manager,
        handle,
        base: format!("http://127.0.0.1:{port}"),
        port,
        proxy_base: format!("http://127.0.0.1:{proxy_port}"),
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        _stop: stop,
    }
}

/// Logs in with a fresh code: (cookie header value, csrf token).
async fn login(u: &Ui) -> (String, String) {
    let (_, url) = u.handle.login_link();
    let r = u.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let s: Value = u
        .http
        .get(format!("{}/api/v1/session", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (cookie, s["csrf_token"].as_str().unwrap().to_owned())
}

async fn error_code(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(
        v["error"]["request_id"].as_str(),
        rid.as_deref(),
        "error envelope carries the request id: {v}"
    );
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_owned(),
        v,
    )
}

#[tokio::test]
async fn a_login_code_gives_a_strict_cookie_once_and_only_in_time() {
    let u = ui(
        SessionTiming {
            code_ttl: Duration::from_millis(400),
            ..SessionTiming::default()
        },
        vec![],
    )
    .await;
    let (code, url) = u.handle.login_link();
    assert_eq!(code.len(), 64, "256-bit code");
    assert_eq!(url, format!("{}/login?code={code}", u.base));
    let r = u.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(
        attrs[0].starts_with("flm_session=") && attrs[0].len() == 12 + 64,
        "{set}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&a), "{a} missing in {set}");
    }
    assert!(
        !set.to_ascii_lowercase().contains("secure"),
        "loopback http: no Secure"
    );
    // Used code: refused with the "run flm ui again" page.
    let again = u.http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.text().await.unwrap().contains("flm ui"));
    // Expired code.
    let (_, late) = u.handle.login_link();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(u.http.get(&late).send().await.unwrap().status(), 401);
    // Made-up and missing codes.
    for q in [
        "/login?code=00",
        "/login",
        &format!("/login?code={}", "a".repeat(64)),
    ] {
        let r = u.http.get(format!("{}{q}", u.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{q}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    // The cookie works.
    let cookie = attrs[0];
    let r = u
        .http
        .get(format!("{}/api/v1/session", u.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["csrf_token"].as_str().unwrap().len(), 64);
    assert_eq!(s["theme"], "system");
    assert!(s["expires_at"].as_str().unwrap().ends_with("+00:00"));
}

#[tokio::test]
async fn the_api_refuses_no_session_no_csrf_other_origins_and_other_hosts() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let api = |p: &str| format!("{}/api/v1{p}", u.base);
    // No cookie, a made-up cookie.
    for cookie in [None, Some(format!("flm_session={}", "b".repeat(64)))] {
        let mut rb = u.http.get(api("/dashboard"));
        if let Some(c) = &cookie {
            rb = rb.header("cookie", c);
        }
        let (status, code, _) = error_code(rb.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "session_required"));
    }
    let (cookie, csrf) = login(&u).await;
    let put = |csrf: Option<&str>, origin: Option<&str>| {
        let mut rb = u
            .http
            .put(api("/config/ui.theme"))
            .header("cookie", &cookie)
            .json(&json!({"value": "dark"}));
        if let Some(c) = csrf {
            rb = rb.header("x-flm-csrf", c);
        }
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        rb
    };
    let (status, code, _) = error_code(put(None, None).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "csrf_failed"));
    let (status, code, _) =
        error_code(put(Some(&"0".repeat(64)), None).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "csrf_failed"));
    for evil in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{}", u.port + 1),
    ] {
        let (status, code, _) =
            error_code(put(Some(&csrf), Some(evil)).send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "cross_origin_refused"),
            "{evil}"
        );
    }
    // DNS rebinding: the right cookie and token under another name.
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1",
        &format!("127.0.0.1:{}", u.port + 1),
    ] {
        let r = put(Some(&csrf), None)
            .header("host", host)
            .send()
            .await
            .unwrap();
        let (status, code, _) = error_code(r).await;
        assert_eq!((status, code.as_str()), (421, "misdirected_host"), "{host}");
    }
    // Nothing above changed the setting; the real call does.
    let origin = u.base.clone();
    let r = put(Some(&csrf), Some(&origin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"], "dark");
    let r = put(Some(&csrf), None)
        .header("host", format!("localhost:{}", u.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Validation errors come from the core, field by field.
    let r = u
        .http
        .put(api("/config/proxy.port"))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .json(&json!({"value": "70000"}))
        .send()
        .await
        .unwrap();
    let (status, code, v) = error_code(r).await;
    assert_eq!((status, code.as_str()), (422, "invalid_setting"));
    assert_eq!(v["error"]["fields"][0]["path"], "proxy.port");
    // Logout ends the session.
    let r = u
        .http
        .post(api("/logout"))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = u
        .http
        .get(api("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn sessions_end_after_the_idle_and_absolute_limits() {
    let u = ui(
        SessionTiming {
            idle: Duration::from_millis(600),
            absolute: Duration::from_millis(1500),
            ..SessionTiming::default()
        },
        vec![],
    )
    .await;
    let get = |c: &str| {
        u.http
            .get(format!("{}/api/v1/session", u.base))
            .header("cookie", c.to_owned())
            .send()
    };
    let (idle_cookie, _) = login(&u).await;
    let (busy_cookie, _) = login(&u).await;
    // The busy one is used every 300 ms: it outlives the idle limit, not the absolute.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(&busy_cookie).await.unwrap().status(), 200);
    }
    assert_eq!(get(&idle_cookie).await.unwrap().status(), 401);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        get(&busy_cookie).await.unwrap();
    }
    assert_eq!(get(&busy_cookie).await.unwrap().status(), 401);
}

#[tokio::test]
async fn every_response_has_the_security_headers_and_the_app_is_served() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let (cookie, _) = login(&u).await;
    for (path, with_cookie) in [
        ("/", false),
        ("/security/events", false),
        ("/login?code=x", false),
        ("/api/v1/session", true),
        ("/api/v1/session", false),
        ("/assets/app-1a2b3c.js", false),
        ("/nope.js", false),
    ] {
        let mut rb = u
            .http
            .get(format!("{}{path}", u.base))
            .header("accept", "text/html");
        if with_cookie {
            rb = rb.header("cookie", &cookie);
        }
        let r = rb.send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    assert!(CSP.contains("script-src 'self';") && !CSP.contains("unsafe"));
    let r = u.http.get(format!("{}/", u.base)).send().await.unwrap();
    let embedded = r.status() == 200;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    if embedded {
        // Client routes get index.html; hashed assets are cached for good.
        let spa = u
            .http
            .get(format!("{}/security/events", u.base))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(spa.status(), 200);
        assert_eq!(spa.text().await.unwrap(), body);
        let a = u
            .http
            .get(format!("{}{}", u.base, {
                // The first hashed script the built index.html references.
                let at = body
                    .find("/assets/")
                    .expect("index.html references an asset");
                let end = body[at..].find('"').expect("quoted asset path");
                body[at..at + end].to_owned()
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 200);
        assert!(a.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript"));
        assert_eq!(
            a.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    } else {
        // Built without ui/dist: an error page that says how to build the app.
        assert!(body.contains("npm run build"), "{body}");
    }
    // Unknown assets and non-HTML requests are 404, not index.html.
    let r = u
        .http
        .get(format!("{}/assets/missing.js", u.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = u
        .http
        .get(format!("{}/security/events", u.base))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_public_proxy_port_serves_no_app_path() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let (cookie, _) = login(&u).await;
    for path in [
        "/",
        "/login",
        "/login?code=abc",
        "/assets/x.js",
        "/api/v1/session",
        "/api/v1/dashboard",
        "/admin/ui/login-code",
        "/admin/status",
    ] {
        let r = u
            .http
            .get(format!("{}{path}", u.proxy_base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    let r = u
        .http
        .post(format!("{}/admin/ui/login-code", u.proxy_base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn extra_routers_are_mounted_behind_the_same_guard() {
    let extra = axum::Router::new().route(
        "/extra/ping",
        axum::routing::post(|| async { axum::Json(json!({"pong": true})) }),
    );
    let u = ui(SessionTiming::default(), vec![extra]).await;
    let url = format!("{}/api/v1/extra/ping", u.base);
    assert_eq!(u.http.post(&url).send().await.unwrap().status(), 401);
    let (cookie, csrf) = login(&u).await;
    let r = u
        .http
        .post(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = u
        .http
        .post(&url)
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let r = u
        .http
        .get(format!("{}/api/v1/missing", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn dashboard_and_proxy_control_with_a_live_proxy_event() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let (cookie, csrf) = login(&u).await;
    let d: Value = u
        .http
        .get(format!("{}/api/v1/dashboard", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["proxy"]["running"], true);
    assert_eq!(d["proxy"]["mode"], "local-http");
    assert_eq!(d["key_count"], 0);
    let codes: Vec<&str> = d["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"no_api_key"), "{d}");
    assert_eq!(d["warnings"][0]["fix_route"], "/api-setup#keys");
    for e in d["endpoints"].as_array().unwrap() {
        assert!(!e["url"].as_str().unwrap().contains("0.0.0.0"), "{e}");
    }
    assert_eq!(d["endpoints"][0]["scope"], "this_pc");
    // Live: a proxy event within 1 s of a stop.
    let events = u
        .http
        .get(format!("{}/api/v1/events", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut body = events.bytes_stream();
    let stop_at = std::time::Instant::now();
    let v: Value = u
        .http
        .post(format!("{}/api/v1/proxy/stop", u.base))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["running"], false);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: proxy\ndata: {\"running\":false}") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no proxy event within 1 s: {seen:?}");
    assert!(stop_at.elapsed() < Duration::from_secs(2));
    assert!(u.manager.status().is_empty());
    // Start again from the app, on a port it chooses.
    let port = free_port();
    let v: Value = u
        .http
        .post(format!("{}/api/v1/proxy/start", u.base))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .json(&json!({"port": port}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["port"], port);
    let r = u
        .http
        .post(format!("{}/api/v1/proxy/start", u.base))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .json(&json!({"listen": "not-an-ip"}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (422, "invalid_proxy_config"));
    let cfg: Value = u
        .http
        .get(format!("{}/api/v1/config", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ui_port = cfg["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "ui.port")
        .unwrap();
    assert_eq!(ui_port["default"], "8782");
    assert_eq!(ui_port["kind"], "int");
    u.manager.stop(&Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_tester_relays_to_the_proxy_streaming_without_a_key_in_the_browser() {
    let chat = llama(TinyModel::Chat);
    let u = ui_with(
        SessionTiming::default(),
        vec![],
        &[(EngineKind::LlamaCpp, chat.base_url(), "llama")],
        true,
    )
    .await;
    let (cookie, csrf) = login(&u).await;
    let post = |body: Value| {
        u.http
            .post(format!("{}/api/v1/chat/completions", u.base))
            .header("cookie", &cookie)
            .header("x-flm-csrf", &csrf)
            .json(&body)
    };
    // Full answer.
    let r = post(json!({"model": "flm://llama/tiny-llama", "max_tokens": 8,
        "messages": [{"role": "user", "content": "Hello"}]}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(!rid.is_empty());
    // Streaming: SSE chunks arrive before the end, as the proxy sends them.
    let r = post(
        json!({"model": "flm://llama/tiny-llama", "max_tokens": 24, "stream": true,
        "messages": [{"role": "user", "content": "Count to ten"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut s = r.bytes_stream();
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(c) = s.next().await {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    assert!(chunks > 2, "streamed in {chunks} chunks: {text}");
    assert!(text.contains("chat.completion.chunk") && text.trim_end().ends_with("data: [DONE]"));
    // The proxy's errors come back as they are.
    let r =
        post(json!({"model": "flm://nosuch/m", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    // Without CSRF: refused before any relay.
    let r = u
        .http
        .post(format!("{}/api/v1/chat/completions", u.base))
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Stopped proxy: 409 proxy_not_running.
    u.manager.stop(&Default::default()).await.unwrap();
    let r = post(json!({"model": "flm://llama/tiny-llama", "messages": []}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "proxy_not_running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_going_down_is_a_live_event() {
    use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
    let emu = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([EmulatedModel::chat("m")]),
    )
    .await
    .unwrap();
    let u = ui_with(
        SessionTiming::default(),
        vec![],
        &[(EngineKind::Vllm, emu.base_url(), "v")],
        false,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while u.manager.offered_engines() != vec!["v".to_owned()] {
        assert!(std::time::Instant::now() < deadline, "engine never offered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (cookie, _) = login(&u).await;
    let events = u
        .http
        .get(format!("{}/api/v1/events", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let mut body = events.bytes_stream();
    drop(emu);
    // The monitor re-checks every second; the event follows its next check.
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: engine\ndata: {\"engine_id\":\"v\",\"status\":\"down\"}") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no engine event: {seen:?}");
    u.manager.stop(&Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_by_the_proxy_itself_is_a_live_event() {
    let u = ui(SessionTiming::default(), vec![]).await;
    security_deps(&u.store)
        .policy
        .save(r#"{"trusted_proxy_ips":["127.0.0.1"],"ip_blocklist":{"enabled":true}}"#)
        .await
        .unwrap();
    u.manager.reload_security().await.unwrap();
    let (cookie, _) = login(&u).await;
    let events = u
        .http
        .get(format!("{}/api/v1/events", u.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let mut body = events.bytes_stream();
    // A brute-force client behind a trusted reverse proxy.
    let mut banned = false;
    for _ in 0..30 {
        let r = u
            .http
            .get(format!("{}/v1/models", u.proxy_base))
            .bearer_auth("flm-wrong")
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .unwrap();
        if r.status() == 403 {
            banned = true;
            break;
        }
    }
    assert!(banned, "the client was never banned");
    let t = std::time::Instant::now();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: ban") && seen.contains("198.51.100.7") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no ban event within 1 s: {seen:?}");
    assert!(t.elapsed() < Duration::from_secs(1));
    u.manager.stop(&Default::default()).await.unwrap();
}

/// `POST` with the session's cookie and CSRF token.
async fn post_json(u: &Ui, cookie: &str, csrf: &str, path: &str, body: Value) -> reqwest::Response {
    u.http
        .post(format!("{}/api/v1{path}", u.base))
        .header("cookie", cookie)
        .header("x-flm-csrf", csrf)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn errors_of_the_core_services_have_lower_case_codes_and_the_status_of_their_kind() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let (cookie, csrf) = login(&u).await;
    let running_port: u16 = u.proxy_base.rsplit(':').next().unwrap().parse().unwrap();

    // A proxy already runs on that port: a conflict with the current state.
    let r = post_json(
        &u,
        &cookie,
        &csrf,
        "/proxy/start",
        json!({"port": running_port}),
    )
    .await;
    let (status, code, v) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "proxy_already_running"),
        "{v}"
    );

    // Another program holds the port: a conflict too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let r = post_json(
        &u,
        &cookie,
        &csrf,
        "/proxy/start",
        json!({"port": taken_port}),
    )
    .await;
    let (status, code, v) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "proxy_port_in_use"), "{v}");

    // An address of no interface of this machine: a validation error, with fields.
    let r = post_json(
        &u,
        &cookie,
        &csrf,
        "/proxy/start",
        json!({"port": free_port(), "listen": "203.0.113.1"}),
    )
    .await;
    let (status, code, v) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "invalid_proxy_config"),
        "{v}"
    );
    assert!(
        v["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("203.0.113.1"),
        "{v}"
    );

    u.manager.stop(&Default::default()).await.unwrap();
}

#[tokio::test]
async fn the_session_language_is_null_until_the_user_chooses_one() {
    let u = ui(SessionTiming::default(), vec![]).await;
    let (cookie, csrf) = login(&u).await;
    let session = || async {
        u.http
            .get(format!("{}/api/v1/session", u.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // `preferred_language` has a built-in default (`en`), but nobody chose it: the app
    // must pick the browser's language instead.
    let s = session().await;
    assert_eq!(s["language"], Value::Null, "{s}");
    assert_eq!(s["theme"], "system", "{s}");
    let r = u
        .http
        .put(format!("{}/api/v1/config/preferred_language", u.base))
        .header("cookie", &cookie)
        .header("x-flm-csrf", &csrf)
        .json(&json!({"value": "ja"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(session().await["language"], "ja");
    // Choosing the default value is a choice too.
    ConfigService::new(u.store.settings(), "config.db")
        .set("preferred_language", "en")
        .await
        .unwrap();
    assert_eq!(session().await["language"], "en");
}
