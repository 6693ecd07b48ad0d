//! The audit log under pressure, in a real proxy with `security.db` on disk: automatic
//! retention (age and size cap) into compressed archives that `verify` still checks,
//! the low-disk warning, and a database that refuses writes (the proxy refuses
//! requests with `503 audit_unavailable` instead of serving them unaudited, keeps the
//! queued records and recovers by itself).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{vllm, Harness};
use flm_core::security::{AuditEvent, AuditFilter, AuditRow, AuditSeverity};
use flm_proxy::RetentionTiming;
use serde_json::Value;
use sqlx::{ConnectOptions, Connection};

const FAST: RetentionTiming = RetentionTiming {
    first: Duration::from_millis(100),
    every: Duration::from_millis(300),
};

fn old_event(i: usize, days: i64) -> AuditEvent {
    AuditEvent {
        request_id: format!("old-{i}"),
        api_key_id: None,
        endpoint: "/v1/chat/completions".into(),
        status: 200,
        latency_ms: Some(3),
        created_at: Utc::now() - chrono::Duration::days(days),
        event_type: Some("auth_success".into()),
        severity: AuditSeverity::Low,
        ip: Some("127.0.0.1".into()),
        details: Some(r#"{"method":"POST","engine":"vllm","model":"test-model"}"#.into()),
    }
}

async fn all_rows(h: &Harness) -> Vec<AuditRow> {
    h.manager.guard().flush().await;
    h.store
        .audit()
        .list(&AuditFilter {
            limit: Some(1_000_000),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

async fn wait_for<F, Fut>(what: &str, bound: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn models(h: &Harness) -> (u16, String, String) {
    let r = h
        .http
        .get(format!("{}/v1/models", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code, rid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_proxy_archives_old_rows_and_verify_still_covers_them() {
    let (_engine, h) = vllm().await;
    let audit = h.store.audit();
    let old: Vec<AuditEvent> = (0..300).map(|i| old_event(i, 9)).collect();
    audit.append_batch(&old).await.unwrap();
    assert_eq!(models(&h).await.0, 200);
    let dir = h._dir.path().join("archive");
    h.manager.start_audit_retention(dir.clone(), FAST);

    // Rows older than 7 days leave the live table by themselves.
    wait_for("old rows archived", Duration::from_secs(10), || async {
        audit.storage().await.unwrap().archived_through_id >= 300
    })
    .await;
    let st = audit.storage().await.unwrap();
    assert_eq!(st.archived_through_id, 300, "{st:?}");
    assert!(all_rows(&h).await.iter().all(|r| r.id > 300));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl.gz"))
        .collect();
    assert_eq!(files, vec!["audit-000000000001-000000000300.jsonl.gz"]);
    let report = audit.verify().await.unwrap();
    assert!(report.ok && report.rows_checked >= 301, "{report:?}");

    // The size cap: 1 MiB of pages in use at most; fresh rows beyond it are archived
    // early, oldest first, and the chain still verifies end to end.
    h.store
        .settings()
        .set("audit.max_db_mb", "1")
        .await
        .unwrap();
    let fresh: Vec<AuditEvent> = (0..6000).map(|i| old_event(i, 0)).collect();
    for chunk in fresh.chunks(1000) {
        audit.append_batch(chunk).await.unwrap();
    }
    assert!(audit.storage().await.unwrap().db_used_bytes > 1024 * 1024);
    wait_for("size cap applied", Duration::from_secs(10), || async {
        audit.storage().await.unwrap().db_used_bytes <= 1024 * 1024
    })
    .await;
    let st = audit.storage().await.unwrap();
    assert!(
        st.archived_through_id > 300 && st.archive_files >= 2,
        "{st:?}"
    );
    assert_eq!(models(&h).await.0, 200);
    let report = audit.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_space_is_warned_in_the_audit_log() {
    let (_engine, h) = vllm().await;
    // A threshold no test machine reaches (1 TiB free): the warning fires.
    h.store
        .settings()
        .set("audit.min_free_disk_mb", "1048576")
        .await
        .unwrap();
    h.manager
        .start_audit_retention(h._dir.path().join("archive"), FAST);
    let audit = h.store.audit();
    let low = || async {
        audit
            .list(&AuditFilter {
                event_type: Some("disk_space_low".into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    };
    wait_for(
        "disk_space_low recorded",
        Duration::from_secs(10),
        || async { !low().await.is_empty() },
    )
    .await;
    let rows = low().await;
    let details: Value = serde_json::from_str(rows[0].details.as_deref().unwrap()).unwrap();
    assert_eq!(rows[0].severity, "high");
    assert!(details["free_bytes"].as_u64().unwrap() > 0, "{details}");
    assert_eq!(details["threshold_bytes"], 1_048_576u64 * 1024 * 1024);
    // Once per episode, not once per pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(low().await.len(), 1);
    h.stop().await;
}

/// Someone holds security.db's write lock for longer than the store's busy timeout
/// (5 s): audit writes fail. Requests admitted before are kept and written later; new
/// requests are refused with 503 audit_unavailable (never served unaudited); when the
/// lock goes, the proxy recovers by itself and records the outage in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_audit_writes_refuse_requests_and_recover_without_losing_records() {
    let (_engine, h) = vllm().await;
    let (status, _, before) = models(&h).await;
    assert_eq!(status, 200);
    h.manager.guard().flush().await;

    let mut lock = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(h._dir.path().join("security.db"))
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    // Admitted while the writer is still waiting for the lock: kept, written later.
    let (status, _, admitted) = models(&h).await;
    assert_eq!(status, 200);

    let started = Instant::now();
    let mut served_while_failing = Vec::new();
    let mut refused = 0;
    loop {
        let (status, code, rid) = models(&h).await;
        if status == 503 {
            assert_eq!(code, "audit_unavailable");
            refused += 1;
            if refused >= 5 {
                break;
            }
            continue;
        }
        assert_eq!(status, 200);
        served_while_failing.push(rid);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never refused while audit writes failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = h.manager.guard().audit_stats();
    assert!(stats.unavailable.load(Ordering::SeqCst));
    assert!(stats.write_failures.load(Ordering::SeqCst) >= 1);

    sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    let recovered = Instant::now();
    wait_for("serving again", Duration::from_secs(10), || async {
        models(&h).await.0 == 200
    })
    .await;
    println!(
        "recovered {:?} after the lock was released",
        recovered.elapsed()
    );

    let rows = all_rows(&h).await;
    let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    for rid in [&before, &admitted]
        .into_iter()
        .chain(&served_while_failing)
    {
        assert!(
            ids.contains(&rid.as_str()),
            "request {rid} was served but not audited"
        );
    }
    let outage = rows
        .iter()
        .find(|r| r.event_type.as_deref() == Some("audit_unavailable"))
        .expect("the outage is recorded");
    let details: Value = serde_json::from_str(outage.details.as_deref().unwrap()).unwrap();
    assert!(
        details["refused_requests"].as_u64().unwrap() >= 5,
        "{details}"
    );
    assert_eq!(stats.dropped.load(Ordering::SeqCst), 0);
    assert!(!stats.unavailable.load(Ordering::SeqCst));
    assert!(h.store.audit().verify().await.unwrap().ok);
    h.stop().await;
}
