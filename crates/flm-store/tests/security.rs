//! Security repositories, the audit hash chain, archives, backups and `flm check`, on
//! real files in temporary directories.

// clippy's allow-unwrap-in-tests covers `#[test]` functions, not the helpers below.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use flm_core::keys;
use flm_core::security::{
    AnomalyFilter, ArchiveSelection, AuditEvent, AuditFilter, AuditRow, AuditSeverity, BlockRow,
    CertificateMode, CertificateRow, CheckStatus, IntrusionFilter, NewAnomaly, NewIntrusion,
    NewResourceAlert, RateLimitStateRow, ResourceAlertKind, AUDIT_GENESIS_HASH,
};
use flm_core::RepoError;
use flm_store::{Store, StorePaths, BACKUP_PREFIX};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

async fn open(dir: &Path) -> (StorePaths, Store) {
    let paths = StorePaths::in_dir(dir);
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    (paths, store)
}

/// A raw connection, bypassing the store (and its rules), for tampering.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

async fn exec(path: &Path, sql: &str) {
    let mut conn = raw(path).await;
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn event(i: usize, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        request_id: format!("req-{i}"),
        api_key_id: i
            .is_multiple_of(2)
            .then(|| "key_0123456789abcdef".to_owned()),
        endpoint: "/v1/chat/completions".into(),
        status: if i.is_multiple_of(5) { 401 } else { 200 },
        latency_ms: Some(10 + i as u64),
        created_at: at,
        event_type: Some(
            if i.is_multiple_of(5) {
                "auth_failure"
            } else {
                "auth_success"
            }
            .into(),
        ),
        severity: if i.is_multiple_of(5) {
            AuditSeverity::Medium
        } else {
            AuditSeverity::Low
        },
        ip: Some(format!("10.0.0.{}", i % 3)),
        details: Some(format!(r#"{{"n":{i}}}"#)),
    }
}

fn events(range: std::ops::Range<usize>, at: DateTime<Utc>) -> Vec<AuditEvent> {
    range.map(|i| event(i, at)).collect()
}

// ---------------------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_load_save_round_trip_with_increasing_updated_at() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let repo = store.policy();
    let seeded = repo.load().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seeded.policy_json).unwrap(),
        serde_json::json!({"ip_whitelist":[],"cors":{"allowed_origins":[]},"rate_limit":{}})
    );

    let doc = r#"{"ip_whitelist":["10.0.0.0/8"],"rate_limit":{"rpm":60}}"#;
    let t1 = repo.save(doc).await.unwrap();
    let t2 = repo.save(doc).await.unwrap();
    let t3 = repo.save("{}").await.unwrap();
    // Every save moves updated_at, even within one millisecond.
    assert!(
        t1 > seeded.updated_at && t2 > t1 && t3 > t2,
        "{t1} {t2} {t3}"
    );
    let loaded = repo.load().await.unwrap().unwrap();
    assert_eq!(loaded.policy_json, "{}");
    assert_eq!(loaded.updated_at, t3);

    // A missing row is `None` (fail closed is the caller's job); save recreates it.
    store.close().await;
    exec(&paths.security_db, "DELETE FROM security_policies").await;
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.policy().load().await.unwrap(), None);
    store.policy().save(doc).await.unwrap();
    assert_eq!(
        store.policy().load().await.unwrap().unwrap().policy_json,
        doc
    );
    store.close().await;
}

#[tokio::test]
async fn blocklist_upsert_load_remove_clear() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let repo = store.blocklist();
    assert_eq!(repo.load_all().await.unwrap(), vec![]);
    let t = now_ms();
    let temp = |ip: &str, n: u32| BlockRow {
        ip: ip.into(),
        failure_count: n,
        first_failure_at: t,
        blocked_until: Some(t + Duration::minutes(30)),
        permanent: false,
        last_attempt: t + Duration::seconds(5),
    };
    let perm = BlockRow {
        ip: "2001:db8::1".into(),
        failure_count: 20,
        first_failure_at: t,
        blocked_until: None,
        permanent: true,
        last_attempt: t,
    };
    repo.upsert_many(&[temp("10.0.0.2", 5), perm.clone(), temp("10.0.0.1", 6)])
        .await
        .unwrap();
    assert_eq!(
        repo.load_all().await.unwrap(),
        vec![temp("10.0.0.1", 6), temp("10.0.0.2", 5), perm.clone()]
    );
    // Upsert replaces by IP.
    let escalated = BlockRow {
        failure_count: 10,
        blocked_until: Some(t + Duration::hours(24)),
        ..temp("10.0.0.1", 0)
    };
    repo.upsert_many(std::slice::from_ref(&escalated))
        .await
        .unwrap();
    assert_eq!(repo.load_all().await.unwrap()[0], escalated);
    // One bad row refuses the whole batch.
    let err = repo
        .upsert_many(&[temp("10.0.0.9", 1), temp(" ", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Validation(_)), "{err:?}");
    assert_eq!(repo.load_all().await.unwrap().len(), 3);

    assert!(repo.remove("10.0.0.2").await.unwrap());
    assert!(!repo.remove("10.0.0.2").await.unwrap());
    assert_eq!(repo.clear_temporary().await.unwrap(), 1);
    assert_eq!(repo.load_all().await.unwrap(), vec![perm.clone()]);

    // Survives a restart; the permanent block goes only by explicit removal.
    store.close().await;
    let store = Store::open(&paths).await.unwrap();
    let repo = store.blocklist();
    assert_eq!(repo.load_all().await.unwrap(), vec![perm]);
    assert_eq!(repo.clear_temporary().await.unwrap(), 0);
    assert!(repo.remove("2001:db8::1").await.unwrap());
    assert_eq!(repo.load_all().await.unwrap(), vec![]);
    store.close().await;
}

#[tokio::test]
async fn security_events_insert_filter_page_and_prune() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.security_events();
    let t0 = now_ms() - Duration::days(10);
    let mut ids = Vec::new();
    for (i, (ip, pattern, score)) in [
        ("10.0.0.1", "sql_injection", 20),
        ("10.0.0.2", "path_traversal", 20),
        ("10.0.0.1", "empty_user_agent", 10),
        ("10.0.0.1", "honeypot_access", 10),
    ]
    .into_iter()
    .enumerate()
    {
        let id = repo
            .insert_intrusion(&NewIntrusion {
                ip: ip.into(),
                pattern: pattern.into(),
                score,
                request_path: Some(format!("/p{i}")),
                user_agent: (i != 2).then(|| "curl/8".to_owned()),
                method: Some("GET".into()),
                created_at: t0 + Duration::days(i as i64 * 3),
            })
            .await
            .unwrap();
        assert!(id.starts_with("int_") && id.len() == 20, "{id}");
        ids.push(id);
    }
    let all = repo
        .list_intrusions(&IntrusionFilter::default())
        .await
        .unwrap();
    // Newest first.
    assert_eq!(
        all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(all[1].user_agent, None);
    assert_eq!(all[1].created_at, t0 + Duration::days(6));
    let f = IntrusionFilter {
        ip: Some("10.0.0.1".into()),
        min_score: Some(15),
        ..Default::default()
    };
    let hits = repo.list_intrusions(&f).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].pattern, "sql_injection");
    let page = repo
        .list_intrusions(&IntrusionFilter {
            limit: 2,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );

    for (i, kind) in ["request_flood", "oversized_body", "request_flood"]
        .into_iter()
        .enumerate()
    {
        let id = repo
            .insert_anomaly(&NewAnomaly {
                ip: format!("10.0.1.{i}"),
                anomaly_type: kind.into(),
                score: 30,
                details: Some(r#"{"rps":150}"#.into()),
                created_at: t0 + Duration::days(i as i64 * 5),
            })
            .await
            .unwrap();
        assert!(id.starts_with("ano_"), "{id}");
    }
    let floods = repo
        .list_anomalies(&AnomalyFilter {
            anomaly_type: Some("request_flood".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(floods.len(), 2);
    assert_eq!(floods[0].ip, "10.0.1.2");
    assert_eq!(floods[0].details.as_deref(), Some(r#"{"rps":150}"#));
    let by_ip = repo
        .list_anomalies(&AnomalyFilter {
            ip: Some("10.0.1.1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_ip.len(), 1);
    assert_eq!(by_ip[0].anomaly_type, "oversized_body");

    let alert = NewResourceAlert {
        alert_type: ResourceAlertKind::Memory,
        value: 93.5,
        threshold: 90.0,
        created_at: t0,
    };
    let id = repo.insert_resource_alert(&alert).await.unwrap();
    assert!(id.starts_with("res_"), "{id}");
    let bad = NewResourceAlert {
        value: f64::NAN,
        ..alert.clone()
    };
    assert!(matches!(
        repo.insert_resource_alert(&bad).await,
        Err(RepoError::Validation(_))
    ));
    let alerts = repo.list_resource_alerts(10, 0).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0].alert_type,
            alerts[0].value,
            alerts[0].threshold,
            alerts[0].created_at
        ),
        (ResourceAlertKind::Memory, 93.5, 90.0, t0)
    );

    // Prune: everything created before t0 + 4 days (2 intrusions, 1 anomaly, 1 alert).
    assert_eq!(
        repo.prune_older_than(t0 + Duration::days(4)).await.unwrap(),
        4
    );
    assert_eq!(
        repo.list_intrusions(&IntrusionFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        repo.list_anomalies(&AnomalyFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(repo.list_resource_alerts(10, 0).await.unwrap(), vec![]);
    store.close().await;
}

#[tokio::test]
async fn rate_limit_states_and_certificates_round_trip() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let rl = store.rate_limit_states();
    let t = now_ms();
    let rows = vec![
        RateLimitStateRow {
            key: "key_0123456789abcdef".into(),
            requests_count: 12,
            reset_at: t + Duration::seconds(40),
        },
        RateLimitStateRow {
            key: "ip:10.0.0.1".into(),
            requests_count: 3,
            reset_at: t - Duration::seconds(5),
        },
    ];
    rl.upsert_many(&rows).await.unwrap();
    let mut updated = rows[0].clone();
    updated.requests_count = 13;
    rl.upsert_many(std::slice::from_ref(&updated))
        .await
        .unwrap();
    assert_eq!(
        rl.load_all().await.unwrap(),
        vec![rows[1].clone(), updated.clone()]
    );
    assert_eq!(
        serde_json::to_value(&updated).unwrap()["api_key_id"],
        "key_0123456789abcdef"
    );
    assert_eq!(rl.delete_expired(t).await.unwrap(), 1);
    assert_eq!(rl.load_all().await.unwrap(), vec![updated.clone()]);

    let certs = store.certificates();
    let mut acme = CertificateRow {
        id: "example.com".into(),
        cert_path: "/certs/example.com.pem".into(),
        key_path: "/certs/example.com.key".into(),
        mode: CertificateMode::Acme,
        domain: Some("example.com".into()),
        expires_at: Some(t + Duration::days(90)),
        updated_at: t,
    };
    let dev = CertificateRow {
        id: "dev".into(),
        cert_path: "/certs/dev.pem".into(),
        key_path: "/certs/dev.key".into(),
        mode: CertificateMode::SelfSigned,
        domain: None,
        expires_at: None,
        updated_at: t,
    };
    certs.upsert(&acme).await.unwrap();
    certs.upsert(&dev).await.unwrap();
    acme.expires_at = Some(t + Duration::days(180));
    acme.updated_at = t + Duration::days(60);
    certs.upsert(&acme).await.unwrap();
    assert!(matches!(
        certs
            .upsert(&CertificateRow {
                key_path: String::new(),
                ..dev.clone()
            })
            .await,
        Err(RepoError::Validation(_))
    ));

    store.close().await;
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.certificates().list().await.unwrap(), vec![dev, acme]);
    assert_eq!(
        store.rate_limit_states().load_all().await.unwrap(),
        vec![updated]
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Audit chain
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn audit_batches_chain_list_export_and_an_edited_row_is_named() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let audit = store.audit();
    let empty = audit.verify().await.unwrap();
    assert!(empty.ok && empty.rows_checked == 0, "{empty:?}");

    let t = now_ms();
    audit.append_batch(&events(0..4, t)).await.unwrap();
    audit.append_batch(&[]).await.unwrap();
    audit
        .append_batch(&events(4..7, t + Duration::seconds(1)))
        .await
        .unwrap();
    audit
        .append_batch(&events(7..10, t + Duration::seconds(2)))
        .await
        .unwrap();
    let report = audit.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, 10);

    // Export: oldest first, ids 1..=10, every hash re-computable from the row alone.
    let rows = audit.export(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(rows[0].prev_hash, AUDIT_GENESIS_HASH);
    for pair in rows.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for r in &rows {
        assert_eq!(r.compute_hash(), r.hash);
    }
    assert_eq!(rows[3].request_id, "req-3");
    assert_eq!(rows[3].api_key_id, None);
    assert_eq!(rows[0].created_at, flm_store::format_ts(&t));
    assert_eq!(rows[5].severity, "medium");
    // The JSON export can be parsed back and re-verified.
    let json = serde_json::to_string(&rows).unwrap();
    let back: Vec<AuditRow> = serde_json::from_str(&json).unwrap();
    assert!(back.iter().all(|r| r.compute_hash() == r.hash));

    // List: newest first, filtered, paged.
    let page = audit
        .list(&AuditFilter {
            limit: Some(3),
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![9, 8, 7]);
    let failures = audit
        .list(&AuditFilter {
            severity: Some(AuditSeverity::Medium),
            event_type: Some("auth_failure".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        failures.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![6, 1]
    );
    let by_ip_since = audit
        .list(&AuditFilter {
            ip: Some("10.0.0.1".into()),
            since: Some(t + Duration::seconds(1)),
            until: Some(t + Duration::seconds(2)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_ip_since.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![5]
    );

    // Stray SQL cannot edit or delete rows: triggers refuse it.
    let mut conn = raw(&paths.security_db).await;
    for sql in [
        "UPDATE audit_logs SET details = '{}' WHERE id = 5",
        "DELETE FROM audit_logs WHERE id = 5",
        "DELETE FROM audit_chain_head",
        "UPDATE audit_chain_head SET last_id = 3",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("audit"), "{sql}: {err}");
    }
    // Someone who drops the trigger first is caught by the chain.
    sqlx::raw_sql(
        "DROP TRIGGER audit_logs_no_update; UPDATE audit_logs SET details = '{\"n\":999}' WHERE id = 5",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let report = audit.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_bad_id, Some(5));
    assert_eq!(report.rows_checked, 5);
    let problem = report.problem.unwrap();
    assert!(
        problem.contains("row 5") && problem.contains("modified"),
        "{problem}"
    );
    // check() reports both the broken chain and the missing trigger.
    let check = flm_store::check(&store).await;
    assert_eq!(check.status, CheckStatus::Error);
    let chain = check.get("security_db.audit_chain").unwrap();
    assert_eq!(chain.status, CheckStatus::Error);
    assert!(chain.message.contains("row 5"), "{}", chain.message);
    let tables = check.get("security_db.tables").unwrap();
    assert_eq!(tables.status, CheckStatus::Error);
    assert!(
        tables.message.contains("audit_logs_no_update"),
        "{}",
        tables.message
    );

    // Appending keeps working on a broken chain (audit is never refused).
    audit.append_batch(&events(10..11, t)).await.unwrap();
    assert_eq!(audit.verify().await.unwrap().first_bad_id, Some(5));
    store.close().await;
}

#[tokio::test]
async fn audit_deleted_middle_row_and_truncated_tail_are_detected() {
    for (victim, expect_problem) in [(5, "row 5 is missing"), (9, "truncated")] {
        let tmp = TempDir::new().unwrap();
        let (paths, store) = open(tmp.path()).await;
        let audit = store.audit();
        let t = now_ms();
        audit.append_batch(&events(0..3, t)).await.unwrap();
        audit.append_batch(&events(3..6, t)).await.unwrap();
        audit.append_batch(&events(6..9, t)).await.unwrap();
        assert!(audit.verify().await.unwrap().ok);
        exec(
            &paths.security_db,
            &format!(
                "DROP TRIGGER audit_logs_delete_only_archived; DELETE FROM audit_logs WHERE id = {victim}"
            ),
        )
        .await;
        let report = audit.verify().await.unwrap();
        assert!(!report.ok, "{report:?}");
        assert_eq!(report.first_bad_id, Some(victim), "{report:?}");
        let problem = report.problem.unwrap();
        assert!(problem.contains(expect_problem), "{problem}");
        store.close().await;
    }

    // Without the head, deleting the last row would go unnoticed; deleting the head row
    // itself is reported too.
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    store
        .audit()
        .append_batch(&events(0..3, now_ms()))
        .await
        .unwrap();
    exec(
        &paths.security_db,
        "DROP TRIGGER audit_chain_head_no_delete; DELETE FROM audit_chain_head",
    )
    .await;
    let report = store.audit().verify().await.unwrap();
    assert!(!report.ok);
    assert!(report.problem.unwrap().contains("head"));
    store.close().await;
}

#[tokio::test]
async fn audit_append_of_1000_events_is_fast() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let audit = store.audit();
    audit.append_batch(&events(0..10, now_ms())).await.unwrap(); // warm up
    let batch = events(10..1010, now_ms());
    let started = Instant::now();
    audit.append_batch(&batch).await.unwrap();
    let elapsed = started.elapsed();
    println!("append_batch of 1000 audit events took {elapsed:?}");
    let started = Instant::now();
    let report = audit.verify().await.unwrap();
    println!(
        "verify of {} audit rows took {:?}",
        report.rows_checked,
        started.elapsed()
    );
    assert!(report.ok && report.rows_checked == 1010, "{report:?}");
    store.close().await;
}

fn sel(older_than: DateTime<Utc>) -> ArchiveSelection {
    ArchiveSelection {
        older_than: Some(older_than),
        max_db_bytes: None,
    }
}

/// The rows of a compressed archive file.
fn read_archive(path: &Path) -> Vec<AuditRow> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).unwrap();
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

fn write_archive(path: &Path, rows: &[AuditRow]) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for r in rows {
        serde_json::to_writer(&mut gz, r).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

fn segments_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl.gz"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn archive_moves_old_rows_into_compressed_files_that_verify_still_checks() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(&tmp.path().join("data")).await;
    let audit = store.audit();
    let now = now_ms();
    let old = now - Duration::days(10);
    audit.append_batch(&events(0..5, old)).await.unwrap();
    audit
        .append_batch(&events(5..8, now - Duration::days(8)))
        .await
        .unwrap();
    audit.append_batch(&events(8..12, now)).await.unwrap();
    let before = audit.export(&AuditFilter::default()).await.unwrap();
    let dir = tmp.path().join("archive");

    // Nothing is old enough: no file is written.
    let none = audit
        .archive(&sel(now - Duration::days(30)), &dir)
        .await
        .unwrap();
    assert_eq!((none.rows_archived, none.archived_through_id), (0, None));
    assert_eq!(none.boundary_hash, AUDIT_GENESIS_HASH);
    assert!(none.files.is_empty() && segments_in(&dir).is_empty());

    let moved = audit
        .archive(&sel(now - Duration::days(7)), &dir)
        .await
        .unwrap();
    assert_eq!(moved.rows_archived, 8);
    assert_eq!(moved.archived_through_id, Some(8));
    assert_eq!(moved.boundary_hash, before[7].hash);
    let first = dir.join("audit-000000000001-000000000008.jsonl.gz");
    assert_eq!(moved.files, vec![first.clone()]);
    #[cfg(unix)]
    {
        assert_eq!(mode(&first), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    // The file holds exactly the moved rows, hashes included; the live table the rest.
    assert_eq!(read_archive(&first), before[..8].to_vec());
    let live = audit.export(&AuditFilter::default()).await.unwrap();
    assert_eq!(live, before[8..].to_vec());
    // verify walks the archive, then the live table.
    let report = audit.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, 12);

    // Appends continue the chain; a second run writes a second file.
    audit
        .append_batch(&events(12..14, now + Duration::seconds(1)))
        .await
        .unwrap();
    let moved = audit
        .archive(&sel(now + Duration::milliseconds(500)), &dir)
        .await
        .unwrap();
    assert_eq!(
        (moved.rows_archived, moved.archived_through_id),
        (4, Some(12))
    );
    let second = dir.join("audit-000000000009-000000000012.jsonl.gz");
    assert_eq!(moved.files, vec![second.clone()]);
    let report = audit.verify().await.unwrap();
    assert!(report.ok && report.rows_checked == 14, "{report:?}");

    // Archiving everything leaves an empty live table; the chain goes on from the
    // last archived row.
    let all = audit
        .archive(&sel(now + Duration::days(1)), &dir)
        .await
        .unwrap();
    assert_eq!(all.rows_archived, 2);
    assert!(audit
        .export(&AuditFilter::default())
        .await
        .unwrap()
        .is_empty());
    let report = audit.verify().await.unwrap();
    assert!(report.ok && report.rows_checked == 14, "{report:?}");
    audit.append_batch(&events(14..15, now)).await.unwrap();
    let next = audit.export(&AuditFilter::default()).await.unwrap();
    assert_eq!(next[0].id, 15);
    assert_eq!(next[0].prev_hash, all.boundary_hash);
    assert!(audit.verify().await.unwrap().ok);
    let st = audit.storage().await.unwrap();
    assert_eq!(
        (st.live_rows, st.archived_through_id, st.archive_files),
        (1, 14, 3)
    );
    assert!(
        st.disk_free_bytes.is_some() && st.db_used_bytes > 0,
        "{st:?}"
    );

    // Tampering with an archive file is detected and named: an edited row…
    let original = std::fs::read(&first).unwrap();
    let mut rows = read_archive(&first);
    rows[2].status = 500;
    write_archive(&first, &rows);
    let r = audit.verify().await.unwrap();
    assert!(!r.ok && r.first_bad_id == Some(3), "{r:?}");
    let problem = r.problem.unwrap();
    assert!(
        problem.contains("hash mismatch") && problem.contains("audit-000000000001"),
        "{problem}"
    );
    // …a row removed with the next relinked (its hash recomputed)…
    std::fs::write(&first, &original).unwrap();
    let mut rows = read_archive(&first);
    rows.remove(4);
    rows[4].prev_hash = rows[3].hash.clone();
    rows[4].hash = rows[4].compute_hash();
    write_archive(&first, &rows);
    let r = audit.verify().await.unwrap();
    assert!(!r.ok && r.first_bad_id == Some(5), "{r:?}");
    // …a consistent but rewritten file (every hash recomputed) no longer ends at the
    // boundary the store recorded…
    std::fs::write(&first, &original).unwrap();
    let mut rows = read_archive(&first);
    rows[7].details = Some("{\"rewritten\":true}".into());
    rows[7].hash = rows[7].compute_hash();
    write_archive(&first, &rows);
    let r = audit.verify().await.unwrap();
    assert!(!r.ok, "{r:?}");
    assert!(r.problem.unwrap().contains("truncated or replaced"));
    // …a truncated file, a damaged file and a missing file too.
    std::fs::write(&first, &original).unwrap();
    let mut rows = read_archive(&first);
    rows.truncate(6);
    write_archive(&first, &rows);
    let r = audit.verify().await.unwrap();
    assert!(!r.ok && r.first_bad_id == Some(7), "{r:?}");
    std::fs::write(&first, &original[..original.len() / 2]).unwrap();
    assert!(!audit.verify().await.unwrap().ok);
    std::fs::remove_file(&first).unwrap();
    let r = audit.verify().await.unwrap();
    assert!(!r.ok && r.first_bad_id == Some(1), "{r:?}");
    assert!(r.problem.unwrap().contains("cannot be read"));
    // The original file verifies again.
    std::fs::write(&first, &original).unwrap();
    let report = audit.verify().await.unwrap();
    assert!(report.ok && report.rows_checked == 15, "{report:?}");

    // A file left by a run that crashed before its marker was committed (its rows are
    // still live) is removed by the next run.
    let orphan = dir.join("audit-000000000015-000000000015.jsonl.gz");
    std::fs::write(&orphan, b"partial").unwrap();
    audit
        .archive(&sel(now - Duration::days(30)), &dir)
        .await
        .unwrap();
    assert!(!orphan.exists());
    assert!(audit.verify().await.unwrap().ok);
    store.close().await;
}

#[tokio::test]
async fn the_size_cap_archives_the_oldest_rows_early() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(&tmp.path().join("data")).await;
    let audit = store.audit();
    let now = now_ms();
    for chunk in 0..6 {
        audit
            .append_batch(&events(chunk * 1000..(chunk + 1) * 1000, now))
            .await
            .unwrap();
    }
    let before = audit.storage().await.unwrap();
    assert_eq!(before.live_rows, 6000);
    let dir = tmp.path().join("archive");
    // Under the cap: nothing moves, even though no row is old.
    let cap = ArchiveSelection {
        older_than: Some(now - Duration::days(7)),
        max_db_bytes: Some(before.db_used_bytes * 2),
    };
    assert_eq!(audit.archive(&cap, &dir).await.unwrap().rows_archived, 0);
    // Over the cap: the oldest rows move, newest stay.
    let cap = ArchiveSelection {
        older_than: Some(now - Duration::days(7)),
        max_db_bytes: Some(before.db_used_bytes / 2),
    };
    let moved = audit.archive(&cap, &dir).await.unwrap();
    assert!(
        (3000..6000).contains(&moved.rows_archived),
        "{moved:?} of {before:?}"
    );
    let after = audit.storage().await.unwrap();
    assert_eq!(after.live_rows, 6000 - moved.rows_archived);
    assert!(after.db_used_bytes < before.db_used_bytes, "{after:?}");
    let live = audit.export(&AuditFilter::default()).await.unwrap();
    assert_eq!(live.last().unwrap().id, 6000);
    let report = audit.verify().await.unwrap();
    assert!(report.ok && report.rows_checked == 6000, "{report:?}");
    store.close().await;
}

#[tokio::test]
async fn archive_is_refused_while_the_chain_is_broken() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let audit = store.audit();
    let old = now_ms() - Duration::days(30);
    audit.append_batch(&events(0..4, old)).await.unwrap();
    exec(
        &paths.security_db,
        "DROP TRIGGER audit_logs_no_update; UPDATE audit_logs SET ip = '6.6.6.6' WHERE id = 2",
    )
    .await;
    let dir = tmp.path().join("archive");
    let err = audit.archive(&sel(now_ms()), &dir).await.unwrap_err();
    assert!(
        matches!(&err, RepoError::Database(m) if m.contains("row 2") && m.contains("refused")),
        "{err:?}"
    );
    assert!(segments_in(&dir).is_empty());
    assert_eq!(
        audit.export(&AuditFilter::default()).await.unwrap().len(),
        4
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Backup and restore
// ---------------------------------------------------------------------------------------

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap()
}

fn backups_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn backups_keep_three_generations_private_and_restore_round_trips() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(&tmp.path().join("data")).await;
    let out = tmp.path().join("backups");
    store.policy().save(r#"{"generation":1}"#).await.unwrap();
    let (key, _) = keys::generate("ci", now_ms()).unwrap();
    store.api_keys().insert(&key).await.unwrap();
    store
        .audit()
        .append_batch(&events(0..5, now_ms()))
        .await
        .unwrap();

    let first = store.backup_security(&out, at(10, 0, 0)).await.unwrap();
    assert_eq!(first.path, out.join("security.db.bak.20261125T100000Z"));
    assert_eq!(first.total_backups, 1);
    #[cfg(unix)]
    {
        assert_eq!(mode(&first.path), 0o600);
        assert_eq!(mode(&out), 0o700);
    }
    // A file that merely resembles a backup is never touched by rotation.
    std::fs::write(out.join("security.db.bak.notes"), "keep me").unwrap();
    // Same second twice: refused, the first one stays.
    assert!(matches!(
        store.backup_security(&out, at(10, 0, 0)).await,
        Err(RepoError::Validation(_))
    ));

    store.policy().save(r#"{"generation":2}"#).await.unwrap();
    for (i, t) in [at(11, 0, 0), at(12, 0, 0)].into_iter().enumerate() {
        let b = store.backup_security(&out, t).await.unwrap();
        assert_eq!(b.total_backups, i + 2);
    }
    let fourth = store.backup_security(&out, at(13, 0, 0)).await.unwrap();
    assert_eq!(fourth.total_backups, 3);
    assert_eq!(
        backups_in(&out),
        vec![
            "security.db.bak.20261125T110000Z",
            "security.db.bak.20261125T120000Z",
            "security.db.bak.20261125T130000Z",
            "security.db.bak.notes",
        ]
    );
    #[cfg(unix)]
    for name in backups_in(&out).iter().filter(|n| !n.ends_with("notes")) {
        assert_eq!(mode(&out.join(name)), 0o600, "{name}");
    }
    // A clock that went backwards never deletes the backup just made.
    let past = store.backup_security(&out, at(9, 0, 0)).await.unwrap();
    assert!(past.path.is_file());
    assert_eq!(past.total_backups, 3);
    assert!(!out.join("security.db.bak.20261125T110000Z").exists());

    // Change everything, then restore the 13:00 backup (generation 2, one key, 5 rows).
    store.policy().save(r#"{"generation":3}"#).await.unwrap();
    store.api_keys().revoke(&key.id, now_ms()).await.unwrap();
    store
        .audit()
        .append_batch(&events(5..8, now_ms()))
        .await
        .unwrap();
    store.close().await;

    let restored = Store::restore_security(&paths, &fourth.path).await.unwrap();
    assert_eq!(restored.restored_path, paths.security_db);
    assert_eq!(restored.migrations_applied, 0);
    assert!(!tmp.path().join("data/security.db.restore.tmp").exists());
    #[cfg(unix)]
    assert_eq!(mode(&paths.security_db), 0o600);
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    assert_eq!(
        store.policy().load().await.unwrap().unwrap().policy_json,
        r#"{"generation":2}"#
    );
    let keys = store.api_keys().list().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].revoked_at, None);
    let report = store.audit().verify().await.unwrap();
    assert!(report.ok && report.rows_checked == 5, "{report:?}");
    assert_eq!(flm_store::check(&store).await.status, CheckStatus::Ok);
    store.close().await;
}

#[tokio::test]
async fn restore_applies_missing_migrations_and_refuses_future_or_foreign_backups() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(&tmp.path().join("data")).await;
    let out = tmp.path().join("backups");
    let b1 = store
        .backup_security(&out, at(10, 0, 0))
        .await
        .unwrap()
        .path;
    let b2 = store
        .backup_security(&out, at(10, 0, 1))
        .await
        .unwrap()
        .path;
    store.policy().save(r#"{"live":true}"#).await.unwrap();
    store.close().await;

    // An older schema: the backup predates the audit migration.
    exec(
        &b1,
        "DROP TABLE audit_logs; DROP TABLE audit_chain_head; DROP TABLE audit_archive_marker; \
         DELETE FROM _sqlx_migrations WHERE version = 20261125000400",
    )
    .await;
    // A newer FLM wrote this one.
    exec(
        &b2,
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00112233', 1)",
    )
    .await;

    let live_before = std::fs::read(&paths.security_db).unwrap();
    let err = Store::restore_security(&paths, &b2).await.unwrap_err();
    let RepoError::Validation(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("newer FLM") && msg.contains("99990101000000"),
        "{msg}"
    );
    let newest = flm_store::SECURITY_MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    assert!(msg.contains(&newest.to_string()), "{msg}");
    assert_eq!(std::fs::read(&paths.security_db).unwrap(), live_before);
    assert!(!tmp.path().join("data/security.db.restore.tmp").exists());

    // Not a security.db, not a database at all, not there.
    for (bad, path) in [
        ("config", paths.config_db.clone()),
        ("garbage", {
            let p = tmp.path().join("garbage.bak");
            std::fs::write(&p, vec![7u8; 8192]).unwrap();
            p
        }),
    ] {
        let err = Store::restore_security(&paths, &path).await.unwrap_err();
        assert!(
            matches!(err, RepoError::Validation(_) | RepoError::Database(_)),
            "{bad}: {err:?}"
        );
        assert_eq!(
            std::fs::read(&paths.security_db).unwrap(),
            live_before,
            "{bad}"
        );
    }
    assert!(matches!(
        Store::restore_security(&paths, &tmp.path().join("nope")).await,
        Err(RepoError::NotFound(_))
    ));

    // The old-schema backup restores and is migrated forward.
    let restored = Store::restore_security(&paths, &b1).await.unwrap();
    assert_eq!(restored.migrations_applied, 1);
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    assert_ne!(
        store.policy().load().await.unwrap().unwrap().policy_json,
        r#"{"live":true}"#
    );
    store
        .audit()
        .append_batch(&events(0..2, now_ms()))
        .await
        .unwrap();
    assert!(store.audit().verify().await.unwrap().ok);
    store.close().await;
}

#[tokio::test]
async fn restore_discards_a_stale_wal_of_the_replaced_database() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let out = tmp.path().join("backups");
    let backup = store
        .backup_security(&out, at(10, 0, 0))
        .await
        .unwrap()
        .path;
    store.close().await;
    let wal: PathBuf = {
        let mut s = paths.security_db.as_os_str().to_owned();
        s.push("-wal");
        s.into()
    };
    std::fs::write(&wal, b"stale wal of the old file").unwrap();
    Store::restore_security(&paths, &backup).await.unwrap();
    assert!(!wal.exists());
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(flm_store::check(&store).await.status, CheckStatus::Ok);
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// flm check
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn check_reports_ok_then_names_each_problem() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let (key, _) = keys::generate("ci", now_ms()).unwrap();
    store.api_keys().insert(&key).await.unwrap();
    store
        .audit()
        .append_batch(&events(0..3, now_ms()))
        .await
        .unwrap();

    let report = flm_store::check(&store).await;
    assert_eq!(report.status, CheckStatus::Ok, "{report:#?}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "config_db.file",
        "config_db.migrations",
        "config_db.integrity",
        "config_db.tables",
        "config_db.foreign_keys",
        "config_db.counts",
        "security_db.file",
        "security_db.migrations",
        "security_db.integrity",
        "security_db.tables",
        "security_db.foreign_keys",
        "security_db.policy",
        "security_db.api_keys",
        "security_db.audit_chain",
        "security_db.disk_space",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert_eq!(
        report.get("security_db.api_keys").unwrap().message,
        "1 active, 0 revoked"
    );
    assert!(report
        .get("security_db.audit_chain")
        .unwrap()
        .message
        .starts_with("3 audit row(s)"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["checks"][0]["status"], "ok");

    // A broken policy document: error, named.
    sqlx::query("UPDATE security_policies SET policy_json = '{broken' WHERE id = 'default'")
        .execute(store.security_pool())
        .await
        .unwrap();
    let report = flm_store::check(&store).await;
    assert_eq!(report.status, CheckStatus::Error);
    let errors: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Error)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(errors, vec!["security_db.policy"]);
    assert!(report
        .get("security_db.policy")
        .unwrap()
        .message
        .contains("not valid JSON"));
    store.policy().save("{}").await.unwrap();

    // A legacy (non-digest) hash is a warning; a plaintext key is an error.
    sqlx::query(
        "INSERT INTO api_keys (id, label, hash) VALUES ('key_legacy', 'old', '$argon2id$v=19$x')",
    )
    .execute(store.security_pool())
    .await
    .unwrap();
    let report = flm_store::check(&store).await;
    assert_eq!(report.status, CheckStatus::Warning, "{report:#?}");
    sqlx::query(
        "INSERT INTO api_keys (id, label, hash) VALUES ('key_plain', 'oops', 'flm_0123_secret')",
    )
    .execute(store.security_pool())
    .await
    .unwrap();
    let report = flm_store::check(&store).await;
    let keys_check = report.get("security_db.api_keys").unwrap();
    assert_eq!(keys_check.status, CheckStatus::Error);
    assert!(
        keys_check.message.contains("key_plain"),
        "{}",
        keys_check.message
    );
    assert!(
        !keys_check.message.contains("secret"),
        "{}",
        keys_check.message
    );
    store.close().await;

    // Read-only safe mode is an error carrying the reason.
    exec(
        &paths.security_db,
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00112233', 1)",
    )
    .await;
    let store = Store::open(&paths).await.unwrap();
    assert!(store.read_only_reason().is_some());
    let report = flm_store::check(&store).await;
    let migrations = report.get("security_db.migrations").unwrap();
    assert_eq!(migrations.status, CheckStatus::Error);
    assert!(
        migrations.message.contains("read-only"),
        "{}",
        migrations.message
    );
    assert!(
        migrations.message.contains("99990101000000"),
        "{}",
        migrations.message
    );
    // Writes are refused in safe mode, by every new repository.
    let ro = |r: Result<(), RepoError>| assert!(matches!(r, Err(RepoError::ReadOnlyMode(_))));
    ro(store.audit().append_batch(&events(0..1, now_ms())).await);
    ro(store.policy().save("{}").await.map(drop));
    ro(store.blocklist().clear_temporary().await.map(drop));
    ro(store.rate_limit_states().upsert_many(&[]).await);
    // Backups still work in safe mode.
    let b = store
        .backup_security(&tmp.path().join("backups"), at(10, 0, 0))
        .await
        .unwrap();
    assert!(b.path.is_file());
    store.close().await;
    let prefix_ok = b
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(BACKUP_PREFIX);
    assert!(prefix_ok);
}
