//! Alerts and the run-time log level, end to end through the real daemon: intrusion
//! attempts sent over real sockets to a running proxy make the `alert_rules` fire on
//! the app's live stream (`/api/v1/events`) and in the audit log, once per cool-down;
//! a disabled rule stays silent; rules changed through the app apply without a
//! restart; `log.level` changed by `flm config set` turns the daemon's debug lines on
//! and off within about a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{free_port, http_client, AppSession, Env};
use futures::StreamExt;
use serde_json::{json, Value};

/// A client whose requests come from `source` (another loopback address), so that
/// the proxy's per-address scores of one part of the test do not affect another.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The app's live stream, parsed into `(kind, data)` events.
struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buf: String,
}

impl Events {
    /// Events that arrive within `within`.
    async fn collect(&mut self, within: Duration) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, self.body.next()).await {
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = Value::Null;
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event: ") {
                        kind = k.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap_or(Value::Null);
                    }
                }
                if !kind.is_empty() {
                    out.push((kind, data));
                }
            }
        }
        out
    }

    /// The first `alert` event within `within`, with everything seen before it.
    async fn alert(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let got = self.collect(Duration::from_millis(200)).await;
            if let Some((_, d)) = got.into_iter().find(|(k, _)| k == "alert") {
                return Some(d);
            }
        }
        None
    }
}

async fn open_events(http: &reqwest::Client, app: &str, cookie: &str) -> Events {
    let r = http
        .get(format!("{app}/api/v1/events"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Events {
        body: Box::pin(r.bytes_stream()),
        buf: String::new(),
    }
}

/// An SQL-injection-looking request (20 points; a ban takes 100).
async fn sqli(c: &reqwest::Client, proxy: &str, n: u32) {
    for i in 0..n {
        let r = c
            .get(format!("{proxy}/v1/models?id={i}%27%20or%201%3D1--"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
}

async fn alert_rows(env: &Env) -> Vec<Value> {
    env.flm(&[
        "--format",
        "json",
        "security",
        "audit-logs",
        "list",
        "--event-type",
        "alert",
    ])
    .await
    .ok()
    .as_array()
    .unwrap()
    .clone()
}

#[tokio::test]
async fn intrusions_fire_alerts_on_the_live_stream_and_in_the_audit_log() {
    let env = Env::new();
    let _guard = env.guard();
    // A bad rule is refused field by field, by the CLI…
    let bad = env
        .flm(&[
            "config",
            "set",
            "alert_rules",
            r#"{"rules":[{"id":"x","eventType":"intrusion","severity":"urgent"}]}"#,
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(bad.contains("rules[0].severity"), "{bad}");
    let rules = json!({"rules": [
        {"id": "sqli", "eventType": "intrusion", "severity": "high", "threshold": 2,
         "windowSecs": 60, "cooldownSecs": 300, "enabled": true, "notifyUI": true, "notifyLog": true},
        {"id": "off", "eventType": "intrusion", "severity": "low", "enabled": false,
         "notifyUI": true, "notifyLog": true}
    ]});
    env.flm(&["config", "set", "alert_rules", &rules.to_string()])
        .await
        .ok();
    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"ip_blocklist":{"enabled":true},"intrusion_detection":{"enabled":true}}"#,
    ])
    .await
    .ok();

    let port = free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let AppSession {
        http,
        base: app,
        cookie,
        csrf,
    } = AppSession::open(&env).await;
    let mut events = open_events(&http, &app, &cookie).await;

    // One attempt is below the threshold of 2: no alert.
    let attacker = client_from("127.0.0.2");
    sqli(&attacker, &proxy, 1).await;
    assert!(
        events.alert(Duration::from_millis(2500)).await.is_none(),
        "one attempt must not reach a threshold of 2"
    );
    // The second one fires the rule, within about a second of its record.
    let t = Instant::now();
    sqli(&attacker, &proxy, 1).await;
    let Some(a) = events.alert(Duration::from_secs(5)).await else {
        let i = env
            .flm(&["--format", "json", "security", "intrusion"])
            .await;
        let log = std::fs::read_to_string(env.data_dir().join("logs").join("proxy.log"))
            .unwrap_or_default();
        panic!(
            "no alert event on /api/v1/events; intrusions: {} {}\nlog: {log}",
            i.stdout, i.stderr
        );
    };
    eprintln!("alert after {:?}: {a}", t.elapsed());
    assert_eq!(a["rule_id"], "sqli", "{a}");
    assert_eq!(a["event_type"], "intrusion");
    assert_eq!(a["severity"], "high");
    assert!(a["count"].as_u64().unwrap() >= 2, "{a}");
    assert_eq!(a["window_secs"], 60);
    assert_eq!(a["ip"], "127.0.0.2");
    assert!(a["message"].as_str().unwrap().contains("intrusion"), "{a}");

    // Cool-down: more attempts (still below a ban) give no second alert.
    sqli(&attacker, &proxy, 2).await;
    let later = events.collect(Duration::from_secs(3)).await;
    assert!(
        !later.iter().any(|(k, _)| k == "alert"),
        "a second alert during the cool-down: {later:?}"
    );

    // notifyLog: exactly one `alert` row, with the rule; the disabled rule wrote none.
    let rows = alert_rows(&env).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let details: Value = match &rows[0]["details"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    assert_eq!(details["rule_id"], "sqli", "{details}");
    assert_eq!(rows[0]["ip"], "127.0.0.2");

    // The app's PUT refuses a bad rule with per-field errors…
    let put = |value: String| {
        http.put(format!("{app}/api/v1/config/alert_rules"))
            .header("cookie", &cookie)
            .header("x-flm-csrf", &csrf)
            .json(&json!({ "value": value }))
            .send()
    };
    let r = put(r#"[{"id":"a","eventType":"intruder","severity":"high","threshold":0}]"#.into())
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let paths: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["rules[0].eventType", "rules[0].threshold"],
        "{body}"
    );
    // …and a new rule saved there applies to the running daemon without a restart:
    // the rule that was off is now on (a changed rule starts without a cool-down).
    let on = json!({"rules": [
        {"id": "off", "eventType": "intrusion", "severity": "low", "cooldownSecs": 0,
         "enabled": true, "notifyUI": true, "notifyLog": false}
    ]});
    let r = put(on.to_string()).await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let other = client_from("127.0.0.3");
    sqli(&other, &proxy, 1).await;
    let a = events
        .alert(Duration::from_secs(5))
        .await
        .expect("the re-enabled rule fires");
    assert_eq!(a["rule_id"], "off", "{a}");
    assert_eq!(a["ip"], "127.0.0.3", "{a}");
    // notifyLog is off for it: still one row.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alert_rows(&env).await.len(), 1);
}

fn log_lines(env: &Env) -> String {
    std::fs::read_to_string(env.data_dir().join("logs").join("proxy.log")).unwrap_or_default()
}

#[tokio::test]
async fn log_level_changes_apply_to_a_running_daemon() {
    let env = Env::new();
    let _guard = env.guard();
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = env
        .flm(&["api-keys", "create", "--label", "log"])
        .await
        .ok()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = http_client();
    // Authenticated requests log `authenticated` at debug level only.
    let hit = || {
        let (http, key, proxy) = (http.clone(), key.clone(), proxy.clone());
        async move {
            let r = http
                .get(format!("{proxy}/v1/models"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let debug_lines = |env: &Env| {
        log_lines(env)
            .lines()
            .filter(|l| l.contains("\"authenticated\""))
            .count()
    };
    hit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(debug_lines(&env), 0, "info is the default");

    env.flm(&["config", "set", "log.level", "debug"]).await.ok();
    // Applied within about a second (the daemon says so in its log).
    let t = Instant::now();
    while !log_lines(&env).contains("log level applied") {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "log.level was not applied: {}",
            log_lines(&env)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("log.level applied after {:?}", t.elapsed());
    hit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(debug_lines(&env), 1, "{}", log_lines(&env));

    env.flm(&["config", "set", "log.level", "warn"]).await.ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(debug_lines(&env), 1, "no debug lines at warn");
}
