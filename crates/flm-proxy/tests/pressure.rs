//! The defence when its inputs go wrong while the proxy runs, over real sockets with
//! `security.db` on disk: a policy row that disappears or turns invalid (fail closed,
//! picked up by the poll alone), a policy that cannot be read at all (the last good
//! policy stays in force), a full audit queue (503), and a banned client refused
//! before its request body is read.
//!
//! Client addresses other than 127.0.0.1 come from `X-Forwarded-For`, believed because
//! the policy trusts the loopback peer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{vllm, Harness};
use flm_core::security::BlockRow;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn models_as(h: &Harness, ip: &str) -> (u16, String) {
    let r = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&h.key)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

fn sqlite3(h: &Harness, sql: &str) {
    let out = std::process::Command::new("sqlite3")
        .arg(h._dir.path().join("security.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls (the proxy's own 2 s policy poll, no explicit reload) until `ip` gets `want`.
async fn until(h: &Harness, ip: &str, want: (u16, &str), what: &str) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got = models_as(h, ip).await;
        if (got.0, got.1.as_str()) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_row_that_disappears_or_turns_invalid_while_running_fails_closed() {
    let (_engine, h) = vllm().await;
    h.set_policy(&json!({"ip_whitelist": ["10.0.0.0/8"], "trusted_proxy_ips": ["127.0.0.1"]}))
        .await;
    assert_eq!(models_as(&h, "10.1.2.3").await.0, 200);

    // The row is deleted by hand: not "no policy, allow everything" but closed.
    sqlite3(&h, "DELETE FROM security_policies WHERE id = 'default'");
    until(&h, "10.1.2.3", (403, "forbidden"), "missing row").await;
    let health = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "/health stays up");
    // Stored again: open again, by the poll alone.
    h.store
        .policy()
        .save(
            &json!({"ip_whitelist": ["10.0.0.0/8"], "trusted_proxy_ips": ["127.0.0.1"]})
                .to_string(),
        )
        .await
        .unwrap();
    until(&h, "10.1.2.3", (200, ""), "row restored").await;
    assert_eq!(models_as(&h, "192.0.2.1").await, (403, "forbidden".into()));

    // A row that is valid JSON but not a valid policy, written behind FLM's back.
    sqlite3(
        &h,
        r#"UPDATE security_policies SET policy_json = '{"rate_limit":{"rpm":-5}}', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','+1 second') WHERE id = 'default'"#,
    );
    until(&h, "10.1.2.3", (403, "forbidden"), "invalid row").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_cannot_be_read_keeps_the_last_good_one_in_force() {
    let (_engine, h) = vllm().await;
    h.set_policy(&json!({"ip_whitelist": ["10.0.0.0/8"], "trusted_proxy_ips": ["127.0.0.1"]}))
        .await;
    assert_eq!(models_as(&h, "10.1.2.3").await.0, 200);
    assert_eq!(models_as(&h, "192.0.2.1").await.0, 403);
    // Every read of the policy now fails with a database error.
    sqlite3(
        &h,
        "ALTER TABLE security_policies RENAME TO security_policies_gone",
    );
    let err = h.manager.reload_security().await;
    assert!(err.is_err(), "the read error is reported: {err:?}");
    // Several polls later the allow list is still enforced: the default (open) policy
    // never took over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(models_as(&h, "192.0.2.1").await, (403, "forbidden".into()));
    assert_eq!(models_as(&h, "10.1.2.3").await.0, 200);
    sqlite3(
        &h,
        "ALTER TABLE security_policies_gone RENAME TO security_policies",
    );
    h.manager.reload_security().await.unwrap();
    assert_eq!(models_as(&h, "192.0.2.1").await.0, 403);
    h.stop().await;
}

/// A banned address announces a large body and sends none of it (or trickles it): the
/// `403` comes at once, so the proxy never waited for (read) the body. The same
/// request from an address in good standing is left waiting for its body, which shows
/// the test would see a proxy that reads first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_client_is_refused_before_its_body_is_read() {
    let (engine, h) = vllm().await;
    h.set_policy(&json!({"trusted_proxy_ips": ["127.0.0.1"], "ip_blocklist": {"enabled": true}}))
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
    let chats_before = engine.control().chat_requests();
    let addr = h.base.trim_start_matches("http://").to_owned();
    let head = |ip: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nX-Forwarded-For: {ip}\r\nContent-Length: 5000000\r\n\r\n{{\"model\":",
            h.key
        )
    };

    // Banned: 403 without the body, well before any request timeout (5 s here).
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head("203.0.113.7").as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("the banned client got no answer without sending its body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("ip_blocked"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Trickling the body changes nothing: the connection is done with.
    let mut closed = false;
    for _ in 0..20 {
        if s.write_all(&[b' '; 1024]).await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the proxy kept reading a banned client's body");

    // In good standing: the proxy waits for the body (no answer within 1 s).
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head("198.51.100.2").as_bytes()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
            .await
            .is_err(),
        "an honest request is answered only once its body has arrived"
    );
    drop(s);
    assert_eq!(engine.control().chat_requests(), chats_before);
    h.stop().await;
}

/// A reload that read the table just before a change must not store its stale copy
/// over the newer policy a forced reload applied after the change: once
/// `reload_security` returns, the stored policy is the one in force, whatever other
/// reloads (the poll, another CLI process) run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrent_reload_never_brings_back_an_older_policy() {
    let (_engine, h) = vllm().await;
    let h = std::sync::Arc::new(h);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut racers = Vec::new();
    for _ in 0..3 {
        let (h, stop) = (h.clone(), stop.clone());
        racers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                h.manager.reload_security().await.unwrap();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rounds = 0;
    for i in 0..150u32 {
        if Instant::now() > deadline {
            break;
        }
        let limit = 1000 + i;
        h.set_policy(&json!({"rate_limit": {"rpm": limit, "burst": limit}}))
            .await;
        let r = h
            .http
            .get(format!("{}/v1/models", h.base))
            .bearer_auth(&h.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["x-ratelimit-limit"],
            limit.to_string().as_str(),
            "round {i}: an older policy came back"
        );
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in racers {
        r.await.unwrap();
    }
    assert!(rounds >= 20, "only {rounds} rounds ran");
}
