//! `flm ui` end to end: it starts the daemon (no proxy needed), prints a one-time
//! login URL that a cookie-keeping client follows into a session; the daemon's
//! event stream reports a block made by a separate `flm` process within a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{http_client, Env};
use futures::StreamExt;
use serde_json::Value;

/// Follows the login URL; returns the cookie.
async fn follow(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303, "{url}");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn flm_ui_prints_a_login_url_that_opens_a_session_without_a_proxy() {
    let env = Env::new();
    let _guard = env.guard();
    let out = env.flm(&["ui", "--no-open", "--format", "json"]).await.ok();
    let url = out["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("/login?code="));
    let state = env.state().expect("daemon state file");
    let app_url = state["ui_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{app_url}/login?code=")),
        "{url} vs {app_url}"
    );
    assert_eq!(out["opened_with"], Value::Null);

    let http = http_client();
    let cookie = follow(&http, &url).await;
    let s: Value = http
        .get(format!("{app_url}/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["csrf_token"].as_str().unwrap().len(), 64, "{s}");
    // No language chosen yet: the app follows the browser's.
    assert_eq!(s["language"], Value::Null, "{s}");
    // The code was used: following it again fails.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    // No proxy runs; the dashboard says so.
    let d: Value = http
        .get(format!("{app_url}/api/v1/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["proxy"]["running"], false, "{d}");

    // A second `flm ui` reuses the same daemon.
    let again = env.flm(&["ui", "--no-open", "--format", "json"]).await.ok();
    assert!(again["url"].as_str().unwrap().starts_with(app_url));
    assert_eq!(env.state().unwrap()["pid"], state["pid"]);

    // Live: a block added by a separate process shows within 1 s.
    let events = http
        .get(format!("{app_url}/api/v1/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut body = events.bytes_stream();
    let t0 = Instant::now();
    env.flm(&[
        "security",
        "ip-blocklist",
        "add",
        "203.0.113.9",
        "--format",
        "json",
    ])
    .await
    .ok();
    let cli_time = t0.elapsed();
    let t1 = Instant::now();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: ban\ndata: {") && seen.contains("203.0.113.9") {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no ban event within 1 s of the CLI ({cli_time:?} for the CLI itself): {seen:?}"
    );
    assert!(t1.elapsed() < Duration::from_secs(1));

    // `flm proxy start/stop` work as usual; the daemon stays for the app, and the
    // stop does not wait for an exit that will not come.
    let port = common::free_port().to_string();
    env.flm(&["proxy", "start", "--port", &port, "--format", "json"])
        .await
        .ok();
    let t = Instant::now();
    let stopped = env.flm(&["proxy", "stop", "--format", "json"]).await.ok();
    assert_eq!(stopped["stopped"].as_array().unwrap().len(), 1, "{stopped}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stop took {:?}",
        t.elapsed()
    );
    let pid = state["pid"].as_u64().unwrap() as u32;
    assert!(
        flm_cli::process::pid_alive(pid),
        "the daemon stays for the app"
    );
    let r = http
        .get(format!("{app_url}/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Logged out and no proxy: the daemon exits after its idle time as before (not
    // waited for here: IDLE_EXIT is a minute); the guard stops it.
}
