//! The defence in a real proxy, over real sockets, with `security.db` on disk: policy
//! hot reload and fail-closed, the allow list behind trusted proxies, bans refused
//! before the engine (flood), intrusion and honeypot scoring into a persisted ban,
//! rate limits, resource protection and the audit log of every request.
//!
//! Client addresses other than 127.0.0.1 come from `X-Forwarded-For`, believed only
//! because the policy trusts the loopback peer — the same path a reverse proxy uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{vllm, Harness};
use flm_core::security::{AuditFilter, BlockRow, IntrusionFilter};
use serde_json::{json, Value};

fn chat_body() -> Value {
    json!({"model": "flm://vllm/test-model", "messages": [{"role": "user", "content": "hi"}]})
}

/// `GET /v1/models` as `ip` (through the trusted loopback proxy).
async fn models_as(h: &Harness, ip: &str) -> reqwest::Response {
    h.http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&h.key)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

async fn audit(h: &Harness) -> Vec<flm_core::security::AuditRow> {
    h.manager.guard().flush().await;
    h.store
        .audit()
        .list(&AuditFilter {
            limit: Some(100_000),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_live_and_unusable_policies_fail_closed() {
    let (_engine, h) = vllm().await;
    let r = models_as(&h, "10.1.2.3").await;
    assert_eq!(r.status(), 200);
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(r.headers()[name], value, "{name}");
    }
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(r.headers().contains_key("permissions-policy"));

    // An allow list without trusted proxies: the peer (127.0.0.1) is the client, and
    // a forged X-Forwarded-For changes nothing.
    h.set_policy(&json!({"ip_whitelist": ["10.0.0.0/8"]})).await;
    assert_eq!(
        code(models_as(&h, "10.1.2.3").await).await,
        (403, "forbidden".into())
    );
    // Trusting the loopback peer: the right-most untrusted address is the client.
    h.set_policy(&json!({"ip_whitelist": ["10.0.0.0/8"], "trusted_proxy_ips": ["127.0.0.1"]}))
        .await;
    assert_eq!(models_as(&h, "10.1.2.3").await.status(), 200);
    assert_eq!(
        code(models_as(&h, "10.1.2.3, 192.0.2.9").await).await,
        (403, "forbidden".into()),
        "the client-chosen left-most entry is not believed"
    );

    // A policy that is not valid JSON closes everything but /health …
    sqlx_exec(&h, "UPDATE security_policies SET policy_json = '{broken', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','+1 second') WHERE id = 'default'").await;
    h.manager.reload_security().await.unwrap();
    let (status, code_) = code(models_as(&h, "10.1.2.3").await).await;
    assert_eq!((status, code_.as_str()), (403, "forbidden"));
    let health = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // … and a fixed policy is picked up by the poll alone (no explicit reload).
    h.store.policy().save("{}").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if models_as(&h, "10.1.2.3").await.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poll never applied the policy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.stop().await;
}

async fn sqlx_exec(h: &Harness, sql: &str) {
    let path = h._dir.path().join("security.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg(sql)
        .output()
        .expect("sqlite3 is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 10,000 requests from a banned address while an honest client keeps working: not
/// one of the attacker's requests reaches the engine, the honest client's all do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_a_banned_ip_never_reaches_the_engine() {
    let (engine, h) = vllm().await;
    h.set_policy(&json!({
        "trusted_proxy_ips": ["127.0.0.1"],
        "ip_blocklist": {"enabled": true},
        "intrusion_detection": {"enabled": true},
        "anomaly_detection": {"enabled": true, "request_rate_threshold": 100000},
        "ip_rate_limit": {"enabled": true, "rpm": 1000000},
        "resource_protection": {"enabled": true, "cpu_threshold": 100, "memory_threshold": 100},
    }))
    .await;
    let now = chrono::Utc::now();
    h.store
        .blocklist()
        .upsert_many(&[BlockRow {
            ip: "203.0.113.7".into(),
            failure_count: 0,
            first_failure_at: now,
            blocked_until: None,
            permanent: true,
            last_attempt: now,
        }])
        .await
        .unwrap();
    h.manager.reload_security().await.unwrap();
    assert_eq!(models_as(&h, "198.51.100.2").await.status(), 200);
    let chats_before = engine.control().chat_requests();

    const FLOOD: u64 = 10_000;
    const WORKERS: u64 = 25;
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let mut attackers = Vec::new();
    for _ in 0..WORKERS {
        let (http, base, refused, other) = (
            h.http.clone(),
            h.base.clone(),
            refused.clone(),
            other.clone(),
        );
        attackers.push(tokio::spawn(async move {
            for _ in 0..FLOOD / WORKERS {
                let r = http
                    .post(format!("{base}/v1/chat/completions"))
                    .header("x-forwarded-for", "203.0.113.7")
                    .header("authorization", "Bearer whatever")
                    .json(&chat_body())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 403 => refused.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let honest = {
        let (http, base, key, done) = (h.http.clone(), h.base.clone(), h.key.clone(), done.clone());
        tokio::spawn(async move {
            let (mut ok, mut total) = (0u64, 0u64);
            // Bounded: the flood ends first, or 2 minutes pass.
            while !done.load(Ordering::Relaxed) && total < 20_000 {
                let r = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .header("x-forwarded-for", "198.51.100.2")
                    .json(&chat_body())
                    .send()
                    .await;
                total += 1;
                if r.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            (ok, total)
        })
    };
    for a in attackers {
        tokio::time::timeout(Duration::from_secs(120), a)
            .await
            .expect("flood bounded")
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (ok, total) = honest.await.unwrap();
    let elapsed = started.elapsed();
    let flood = (FLOOD / WORKERS) * WORKERS;
    assert_eq!(
        refused.load(Ordering::Relaxed),
        flood,
        "every flood request refused"
    );
    assert_eq!(other.load(Ordering::Relaxed), 0);
    let chats = engine.control().chat_requests() - chats_before;
    assert_eq!(
        chats, ok,
        "only the honest client's requests reached the engine"
    );
    assert!(
        total >= 10,
        "the honest client ran during the flood ({total})"
    );
    assert!(
        ok as f64 >= 0.999 * total as f64,
        "honest success {ok}/{total}"
    );
    eprintln!(
        "flood: {flood} refused in {elapsed:?} ({:.0}/s); honest {ok}/{total} ok; engine saw {chats} chats",
        flood as f64 / elapsed.as_secs_f64()
    );
    // The refusals are counted, and summarised in the audit log rather than one row
    // each.
    let g = h.manager.guard();
    assert!(g.stats.refused_blocked.load(Ordering::Relaxed) >= flood);
    let rows = audit(&h).await;
    let blocked: Vec<_> = rows
        .iter()
        .filter(|r| r.ip.as_deref() == Some("203.0.113.7"))
        .collect();
    assert!(
        !blocked.is_empty() && blocked.len() < 100,
        "{}",
        blocked.len()
    );
    assert!(blocked
        .iter()
        .all(|r| r.event_type.as_deref() == Some("ip_blocked")));
    assert_eq!(g.audit_stats().dropped.load(Ordering::Relaxed), 0);
    assert!(h.store.audit().verify().await.unwrap().ok);
    h.stop().await;
}

/// Honeypots answer like unknown routes but score; attacks in the URL add up to a
/// ban, which is in `security.db` at once. Prompt content is never scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_and_honeypots_score_up_to_a_persisted_ban() {
    let (engine, h) = vllm().await;
    h.set_policy(&json!({"trusted_proxy_ips": ["127.0.0.1"], "intrusion_detection": {"enabled": true}, "ip_blocklist": {"enabled": true}}))
        .await;
    let get_as = |path: &str, ip: &str| {
        h.http
            .get(format!("{}{path}", h.base))
            .bearer_auth(&h.key)
            .header("x-forwarded-for", ip)
            .header("user-agent", "test-client/1.0")
            .send()
    };
    // A prompt full of SQL, shell and paths is content: not inspected.
    let r = h
        .post("/v1/chat/completions")
        .header("x-forwarded-for", "198.51.100.20")
        .header("user-agent", "test-client/1.0")
        .json(&json!({"model": "flm://vllm/test-model", "messages": [{"role": "user", "content": "SELECT * FROM users WHERE name = '' OR 1=1 --; cat ../../etc/passwd; <script>alert(1)</script>"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let attacker = "192.0.2.50";
    let (status, c) = code(get_as("/wp-admin", attacker).await.unwrap()).await;
    assert_eq!(
        (status, c.as_str()),
        (404, "not_found"),
        "honeypots look like any unknown route"
    );
    // A non-content field carrying an injection is scored (the request itself goes on).
    let r = h
        .post("/v1/chat/completions")
        .header("x-forwarded-for", attacker)
        .header("user-agent", "test-client/1.0")
        .json(
            &json!({"model": "x' OR '1'='1' --", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown model");
    let chats = engine.control().chat_requests();
    let mut banned_after = None;
    for i in 1..=10 {
        let (status, c) = code(
            get_as("/v1/models?file=..%2f..%2f..%2fetc%2fpasswd", attacker)
                .await
                .unwrap(),
        )
        .await;
        if status == 403 {
            assert_eq!(c, "ip_blocked");
            banned_after = Some(i);
            break;
        }
        assert_eq!(status, 200, "scored, not yet blocked");
    }
    assert!(banned_after.is_some(), "the score never reached a ban");
    // Banned everywhere now, even with a clean request and a valid key; others are fine.
    let (status, c) = code(get_as("/v1/models", attacker).await.unwrap()).await;
    assert_eq!((status, c.as_str()), (403, "ip_blocked"));
    assert_eq!(
        get_as("/v1/models", "198.51.100.21")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(engine.control().chat_requests(), chats);

    // The ban is on disk without waiting for a periodic sync.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rows = h.store.blocklist().load_all().await.unwrap();
        if let Some(r) = rows.iter().find(|r| r.ip == attacker) {
            assert!(r.blocked_until.unwrap() > chrono::Utc::now());
            break;
        }
        assert!(Instant::now() < deadline, "ban not persisted: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = audit(&h).await;
    let events = |t: &str| {
        rows.iter()
            .filter(|r| r.event_type.as_deref() == Some(t) && r.ip.as_deref() == Some(attacker))
            .count()
    };
    assert_eq!(events("honeypot"), 1);
    assert_eq!(events("intrusion"), 1, "one block decision");
    assert!(events("ip_blocked") >= 1);
    let attempts = h
        .store
        .security_events()
        .list_intrusions(&IntrusionFilter {
            ip: Some(attacker.into()),
            limit: 100,
            ..IntrusionFilter::default()
        })
        .await
        .unwrap();
    let patterns: Vec<&str> = attempts.iter().map(|a| a.pattern.as_str()).collect();
    assert!(patterns.contains(&"honeypot_access"), "{patterns:?}");
    assert!(patterns.contains(&"path_traversal"), "{patterns:?}");
    assert!(patterns.contains(&"sql_injection"), "{patterns:?}");
    let clean = h
        .store
        .security_events()
        .list_intrusions(&IntrusionFilter {
            ip: Some("198.51.100.20".into()),
            limit: 100,
            ..IntrusionFilter::default()
        })
        .await
        .unwrap();
    assert!(clean.is_empty(), "prompt content was scored: {clean:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_ip_and_per_key() {
    let (_engine, h) = vllm().await;
    h.set_policy(&json!({"trusted_proxy_ips": ["127.0.0.1"], "ip_rate_limit": {"enabled": true, "rpm": 4, "burst": 4}}))
        .await;
    for _ in 0..4 {
        assert_eq!(models_as(&h, "198.51.100.30").await.status(), 200);
    }
    let r = models_as(&h, "198.51.100.30").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(code(r).await.1, "rate_limit_exceeded");
    assert_eq!(models_as(&h, "198.51.100.31").await.status(), 200, "per IP");

    h.set_policy(&json!({"rate_limit": {"rpm": 2, "burst": 2}}))
        .await;
    let r = models_as(&h, "198.51.100.30").await;
    assert_eq!(r.status(), 200, "the IP limit is off again");
    assert_eq!(r.headers()["x-ratelimit-limit"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "1");
    assert!(r.headers().contains_key("x-ratelimit-reset"));
    assert_eq!(models_as(&h, "198.51.100.30").await.status(), 200);
    let r = models_as(&h, "198.51.100.99").await;
    assert_eq!(r.status(), 429, "per key, whatever the address");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let rows = audit(&h).await;
    assert!(rows
        .iter()
        .any(|r| r.event_type.as_deref() == Some("rate_limit") && r.status == 429));
    h.stop().await;
}

/// Above the memory threshold, or with more requests in progress than allowed, new
/// requests get `503 resource_throttle`; one alert per episode is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_protection_refuses_new_requests_with_503() {
    let (_engine, h) = vllm().await;
    h.set_policy(&json!({"resource_protection": {"enabled": true, "memory_threshold": 1}}))
        .await;
    let r = models_as(&h, "-").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(code(r).await.1, "resource_throttle");
    assert_eq!(models_as(&h, "-").await.status(), 503);
    let health = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "/health is never throttled");

    h.set_policy(&json!({"resource_protection": {"enabled": true, "memory_threshold": 100, "cpu_threshold": 100}}))

        .await;
    assert_eq!(models_as(&h, "-").await.status(), 200);
    // 100 requests in progress (headers sent, body still awaited) reach the cap of
    // 100: the next request is refused, and admitted again once they are gone. Idle
    // sockets do not count (tests/dos.rs).
    let addr = h.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        h.key
    );
    let mut busy = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, c) = code(models_as(&h, "-").await).await;
    assert_eq!((status, c.as_str()), (503, "resource_throttle"));
    drop(busy);
    let deadline = Instant::now() + Duration::from_secs(5);
    while models_as(&h, "-").await.status() != 200 {
        assert!(Instant::now() < deadline, "connections never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.manager.guard().flush().await;
    let alerts = h
        .store
        .security_events()
        .list_resource_alerts(100, 0)
        .await
        .unwrap();
    let kinds: Vec<String> = alerts
        .iter()
        .map(|a| format!("{:?}", a.alert_type))
        .collect();
    assert!(kinds.iter().any(|k| k == "Memory"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "Connections"), "{kinds:?}");
    h.stop().await;
}

/// Every request is in the audit log with its status, key id and client address,
/// and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_audited() {
    let (_engine, h) = vllm().await;
    let before = audit(&h).await.len();
    assert_eq!(models_as(&h, "-").await.status(), 200);
    let (s, _) = h.chat(chat_body()).await;
    assert_eq!(s, 200);
    let r = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth("flm_0123456789abcdef_wrongwrongwrongwrongwrongwrongwr")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h.http.get(format!("{}/nope", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let rows = audit(&h).await;
    assert_eq!(rows.len() - before, 4, "{rows:#?}");
    let by_endpoint = |e: &str| rows.iter().find(|r| r.endpoint == e).unwrap();
    let chat = by_endpoint("/v1/chat/completions");
    assert_eq!(chat.event_type.as_deref(), Some("auth_success"));
    assert_eq!(chat.status, 200);
    assert!(chat.api_key_id.is_some());
    assert_eq!(chat.ip.as_deref(), Some("127.0.0.1"));
    let failure = rows
        .iter()
        .find(|r| r.event_type.as_deref() == Some("auth_failure"))
        .unwrap();
    assert_eq!(failure.severity, "medium");
    assert!(failure
        .details
        .as_deref()
        .unwrap()
        .contains("invalid_or_revoked_api_key"));
    assert_eq!(by_endpoint("/nope").status, 404);
    assert!(h.store.audit().verify().await.unwrap().ok);
    // The counters, behind a key.
    let r = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let written: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("flm_proxy_audit_written_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(written >= 4, "{text}");
    assert!(text.contains("# TYPE flm_proxy_intrusions_detected counter"));
    h.stop().await;
}
