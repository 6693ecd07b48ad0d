//! End-to-end tests of `flm security …` and `flm check`: the real binary on real
//! SQLite files, tampered with through the `sqlite3` CLI where the test needs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::Env;
use flm_core::security::{AuditEvent, AuditSeverity};
use flm_store::{Store, StorePaths};
use serde_json::{json, Value};

fn sqlite(db: &Path, sql: &str) {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 CLI is installed");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn security_db(env: &Env) -> std::path::PathBuf {
    env.data_dir().join("security.db")
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn stored_policy(env: &Env) -> Value {
    env.flm(&["security", "policy", "show"]).await.ok()["policy_json"].clone()
}

/// Appends `n` audit events through the store, as the proxy would.
async fn append_audit(env: &Env, n: usize) {
    let store = Store::open(&StorePaths::in_dir(env.data_dir()))
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..n)
        .map(|i| AuditEvent {
            request_id: format!("req-{i}"),
            api_key_id: None,
            endpoint: "/v1/chat/completions".into(),
            status: if i % 2 == 0 { 200 } else { 401 },
            latency_ms: Some(5),
            created_at: Utc::now(),
            event_type: Some(
                if i % 2 == 0 {
                    "auth_success"
                } else {
                    "auth_failure"
                }
                .into(),
            ),
            severity: if i % 2 == 0 {
                AuditSeverity::Low
            } else {
                AuditSeverity::Medium
            },
            ip: Some("127.0.0.1".into()),
            details: Some(format!(r#"{{"note":"a, \"quoted\" value {i}"}}"#)),
        })
        .collect();
    store.audit().append_batch(&events).await.unwrap();
    store.close().await;
}

#[test]
fn the_grammar_is_consistent() {
    use clap::CommandFactory;
    flm_cli::cli::Cli::command().debug_assert();
}

#[tokio::test]
async fn policy_set_validates_every_field_and_never_half_writes() {
    let env = Env::new();
    let before = stored_policy(&env).await;

    // Valid inline policy: stored normalised.
    let data = env
        .flm(&[
            "security",
            "policy",
            "set",
            "--json",
            r#"{"cors":{"allowed_origins":["https://app.example.com"]},"ip_rate_limit":{"rpm":60,"burst":10}}"#,
        ])
        .await
        .ok();
    assert_eq!(
        data["policy_json"]["cors"]["allowed_origins"],
        json!(["https://app.example.com"])
    );
    let good = stored_policy(&env).await;
    assert_ne!(good, before);
    assert_eq!(good["ip_rate_limit"]["rpm"], 60);

    // Invalid: every field error reported, nothing stored.
    let out = env
        .flm(&[
            "security",
            "policy",
            "set",
            "--json",
            r#"{"ip_whitelist":["nope"],"rate_limit":{"rpm":-1,"burst":"x"},"cors":{"allowed_origins":[1]}}"#,
        ])
        .await;
    let details = out.json["error"]["details"].clone();
    let msg = out.err("POLICY_INVALID", 1);
    let fields: Vec<&str> = details
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for f in [
        "ip_whitelist[0]",
        "rate_limit.rpm",
        "rate_limit.burst",
        "cors.allowed_origins[0]",
    ] {
        assert!(fields.contains(&f), "{f} in {details}");
        assert!(msg.contains(f), "{f} in {msg}");
    }
    assert!(details
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["message"].as_str().is_some_and(|m| !m.is_empty())));
    assert_eq!(
        stored_policy(&env).await,
        good,
        "an invalid set changes nothing"
    );

    // Not JSON at all.
    env.flm(&["security", "policy", "set", "--json", "{"])
        .await
        .err("POLICY_INVALID", 1);
    assert_eq!(stored_policy(&env).await, good);

    // Text mode says when the proxy picks it up.
    let out = env
        .flm(&[
            "--format", "text", "security", "policy", "set", "--json", "{}",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("applies it within a second"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn policy_set_from_files_names_the_path_on_errors() {
    let env = Env::new();
    let file = env.dir.path().join("policy.json");
    std::fs::write(&file, r#"{"ip_whitelist":["10.0.0.0/8"]}"#).unwrap();
    let data = env
        .flm(&[
            "security",
            "policy",
            "set",
            "--file",
            file.to_str().unwrap(),
        ])
        .await
        .ok();
    assert_eq!(data["policy_json"]["ip_whitelist"], json!(["10.0.0.0/8"]));

    let missing = env.dir.path().join("missing.json");
    let msg = env
        .flm(&[
            "security",
            "policy",
            "set",
            "--file",
            missing.to_str().unwrap(),
        ])
        .await
        .err("IO_ERROR", 1);
    assert!(msg.contains(missing.to_str().unwrap()), "{msg}");

    let dir = env.dir.path().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let msg = env
        .flm(&["security", "policy", "set", "--file", dir.to_str().unwrap()])
        .await
        .err("IO_ERROR", 1);
    assert!(msg.contains("a-dir"), "{msg}");

    // Neither --json nor --file.
    env.flm(&["security", "policy", "set"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert_eq!(
        stored_policy(&env).await["ip_whitelist"],
        json!(["10.0.0.0/8"])
    );
}

#[tokio::test]
async fn blocklist_add_list_unblock_and_clear_keeps_permanent_blocks() {
    let env = Env::new();
    let data = env
        .flm(&["security", "ip-blocklist", "add", "203.0.113.7"])
        .await
        .ok();
    assert_eq!(data["permanent_block"], false);
    assert!(data["blocked_until"].is_string());
    env.flm(&[
        "security",
        "ip-blocklist",
        "add",
        "203.0.113.8",
        "--minutes",
        "5",
    ])
    .await
    .ok();
    let data = env
        .flm(&[
            "security",
            "ip-blocklist",
            "add",
            "::ffff:198.51.100.1",
            "--permanent",
        ])
        .await
        .ok();
    assert_eq!(data["ip"], "198.51.100.1", "canonical form");
    assert!(data["blocked_until"].is_null());
    env.flm(&["security", "ip-blocklist", "add", "not-an-ip"])
        .await
        .err("INVALID_ARGUMENT", 1);
    // Ranges are accepted (tests/trust_and_ranges.rs); an invalid one is not.
    env.flm(&["security", "ip-blocklist", "add", "10.0.0.0/33"])
        .await
        .err("INVALID_ARGUMENT", 1);

    let list = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    let ips: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["198.51.100.1", "203.0.113.7", "203.0.113.8"]);
    for r in list.as_array().unwrap() {
        for k in [
            "failure_count",
            "first_failure_at",
            "blocked_until",
            "permanent_block",
            "last_attempt",
        ] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
    }

    env.flm(&["security", "ip-blocklist", "unblock", "203.0.113.8"])
        .await
        .ok();
    let msg = env
        .flm(&["security", "ip-blocklist", "unblock", "192.0.2.99"])
        .await
        .err("NOT_FOUND", 1);
    assert!(msg.contains("192.0.2.99"), "{msg}");

    let data = env.flm(&["security", "ip-blocklist", "clear"]).await.ok();
    assert_eq!(data["removed"], 1);
    assert_eq!(data["remaining_permanent"], 1);
    let list = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["ip"], "198.51.100.1");
    assert_eq!(list[0]["permanent_block"], true);

    // Only unblock lifts a permanent block.
    env.flm(&["security", "ip-blocklist", "unblock", "198.51.100.1"])
        .await
        .ok();
    let list = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn audit_verify_detects_tampering_with_the_first_bad_id() {
    let env = Env::new();
    let data = env.flm(&["security", "audit-logs", "verify"]).await.ok();
    assert_eq!(data["ok"], true);
    assert_eq!(data["rows_checked"], 0);

    append_audit(&env, 4).await;
    let data = env.flm(&["security", "audit-logs", "verify"]).await.ok();
    assert_eq!(data["rows_checked"], 4);
    let rows = env
        .flm(&["security", "audit-logs", "list", "--severity", "medium"])
        .await
        .ok();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let rows = env
        .flm(&[
            "security",
            "audit-logs",
            "list",
            "--limit",
            "1",
            "--offset",
            "1",
        ])
        .await
        .ok();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    env.flm(&["security", "audit-logs", "list", "--since", "yesterday"])
        .await
        .err("INVALID_ARGUMENT", 1);

    sqlite(
        &security_db(&env),
        "DROP TRIGGER audit_logs_no_update; UPDATE audit_logs SET status = 201 WHERE id = 2;",
    );
    let out = env.flm(&["security", "audit-logs", "verify"]).await;
    let first_bad = out.json["error"]["details"]["first_bad_id"].clone();
    let msg = out.err("AUDIT_TAMPERED", 1);
    assert_eq!(first_bad, 2);
    assert!(msg.contains("row id 2"), "{msg}");
    let out = env.flm(&["check"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.json["data"]["status"], "error");
}

#[tokio::test]
async fn audit_export_writes_private_json_and_csv() {
    let env = Env::new();
    append_audit(&env, 3).await;
    let json_path = env.dir.path().join("audit.json");
    let data = env
        .flm(&[
            "security",
            "audit-logs",
            "export",
            "--output",
            json_path.to_str().unwrap(),
        ])
        .await
        .ok();
    assert_eq!(data["rows"], 3);
    assert_eq!(data["format"], "json");
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["id"], 1, "oldest first");
    assert_eq!(rows[0]["hash"].as_str().unwrap().len(), 64);
    #[cfg(unix)]
    assert_eq!(mode(&json_path), 0o600);

    let csv_path = env.dir.path().join("audit.csv");
    let data = env
        .flm(&[
            "security",
            "audit-logs",
            "export",
            "--output-format",
            "csv",
            "--output",
            csv_path.to_str().unwrap(),
            "--severity",
            "low",
        ])
        .await
        .ok();
    assert_eq!(data["rows"], 2);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,request_id,api_key_id,endpoint,status"));
    assert!(lines[0].ends_with("prev_hash,hash"));
    // The details JSON holds a comma and quotes: quoted, quotes doubled.
    assert!(
        lines[1].contains(r#""{""note"":""a, \""quoted\"" value 0""}""#),
        "{}",
        lines[1]
    );
    #[cfg(unix)]
    assert_eq!(mode(&csv_path), 0o600);

    let bad = env.dir.path().join("no-such-dir").join("x.csv");
    let msg = env
        .flm(&[
            "security",
            "audit-logs",
            "export",
            "--output",
            bad.to_str().unwrap(),
        ])
        .await
        .err("IO_ERROR", 1);
    assert!(msg.contains("no-such-dir"), "{msg}");
}

#[tokio::test]
async fn audit_archive_defaults_to_the_data_dir() {
    let env = Env::new();
    append_audit(&env, 2).await;
    let data = env
        .flm(&[
            "security",
            "audit-logs",
            "archive",
            "--older-than-days",
            "1",
        ])
        .await
        .ok();
    assert_eq!(data["rows_archived"], 0, "nothing is a day old");
    let dir = env.data_dir().join("archive");
    assert_eq!(data["archive_dir"], dir.display().to_string());
}

#[tokio::test]
async fn archived_audit_rows_are_compressed_and_still_verified() {
    let env = Env::new();
    let dir = env.data_dir().join("archive");
    env.flm(&["check"]).await;
    let store = Store::open(&StorePaths::in_dir(env.data_dir()))
        .await
        .unwrap();
    let event = |i: i64, days: i64| AuditEvent {
        request_id: format!("r{i}"),
        api_key_id: None,
        endpoint: "/v1/models".into(),
        status: if i == 2 { 401 } else { 200 },
        latency_ms: None,
        created_at: Utc::now() - chrono::Duration::days(days),
        event_type: Some("auth_success".into()),
        severity: AuditSeverity::Low,
        ip: Some("127.0.0.1".into()),
        details: None,
    };
    let events = [event(1, 9), event(2, 9), event(3, 8), event(4, 0)];
    store.audit().append_batch(&events).await.unwrap();
    store.close().await;
    let data = env.flm(&["security", "audit-logs", "archive"]).await.ok();
    assert_eq!(data["rows_archived"], 3, "{data}");
    let file = dir.join("audit-000000000001-000000000003.jsonl.gz");
    assert_eq!(data["files"][0], file.display().to_string());
    let v = env.flm(&["security", "audit-logs", "verify"]).await.ok();
    assert_eq!(v["rows_checked"], 4, "{v}");
    // Edit row 2 inside the archive (decompress, change, recompress).
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{0}' | sed '2s/\"status\":401/\"status\":200/' | gzip -c > '{0}.new' && mv '{0}.new' '{0}'",
            file.display()
        ))
        .status()
        .unwrap();
    assert!(out.success());
    let msg = env
        .flm(&["security", "audit-logs", "verify"])
        .await
        .err("AUDIT_TAMPERED", 1);
    assert!(
        msg.contains("first bad row id 2") && msg.contains("audit-000000000001"),
        "{msg}"
    );
}

#[tokio::test]
async fn check_warns_when_the_disk_of_security_db_runs_low() {
    let env = Env::new();
    env.flm(&["config", "set", "audit.min_free_disk_mb", "1048576"])
        .await
        .ok();
    let out = env.flm(&["check"]).await;
    let disk = out.json["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "security_db.disk_space")
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .clone();
    assert_eq!(disk["status"], "warning", "{disk}");
    assert!(
        disk["message"]
            .as_str()
            .unwrap()
            .contains("audit.min_free_disk_mb"),
        "{disk}"
    );
}

#[tokio::test]
async fn backups_rotate_and_restore_round_trips() {
    let env = Env::new();
    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"ip_whitelist":["10.1.0.0/16"]}"#,
    ])
    .await
    .ok();
    let dir = env.dir.path().join("bk");
    let mut paths = Vec::new();
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let out = env
            .flm(&[
                "security",
                "backup",
                "create",
                "--output",
                dir.to_str().unwrap(),
            ])
            .await;
        let stderr = out.stderr.clone();
        let data = out.ok();
        let p = data["backup_path"].as_str().unwrap().to_owned();
        assert!(stderr.contains(&p), "path on stderr: {stderr}");
        assert_eq!(data["total_backups"], (i + 1).min(3));
        paths.push(p);
    }
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    left.sort();
    assert_eq!(left, paths[1..], "the 3 newest are kept");
    #[cfg(unix)]
    for p in &left {
        assert_eq!(mode(Path::new(p)), 0o600, "{p}");
    }

    // Change the policy, then restore the backup: the old policy is back.
    env.flm(&["security", "policy", "set", "--json", "{}"])
        .await
        .ok();
    let data = env
        .flm(&["security", "backup", "restore", "--file", &paths[3]])
        .await
        .ok();
    assert_eq!(
        data["restored_path"],
        security_db(&env).display().to_string()
    );
    assert_eq!(data["migrations_applied"], 0);
    assert_eq!(
        stored_policy(&env).await["ip_whitelist"],
        json!(["10.1.0.0/16"])
    );
    env.flm(&["check"]).await.ok();

    // Default directory.
    let data = env.flm(&["security", "backup", "create"]).await.ok();
    assert!(data["backup_path"]
        .as_str()
        .unwrap()
        .starts_with(&env.data_dir().join("backups").display().to_string()));

    // Unknown file.
    env.flm(&["security", "backup", "restore", "--file", "/nonexistent/x"])
        .await
        .err("NOT_FOUND", 1);
}

#[tokio::test]
async fn restore_is_refused_while_the_daemon_runs() {
    let env = Env::new();
    let data = env.flm(&["security", "backup", "create"]).await.ok();
    let backup = data["backup_path"].as_str().unwrap().to_owned();
    let run = env.data_dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // This test process stands in for a live daemon.
    std::fs::write(
        run.join("proxy-daemon.json"),
        json!({"pid": std::process::id(), "port": 1, "token": "t", "cli_key": "k",
               "started_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"})
        .to_string(),
    )
    .unwrap();
    let msg = env
        .flm(&["security", "backup", "restore", "--file", &backup])
        .await
        .err("PROXY_ALREADY_RUNNING", 1);
    assert!(msg.contains("flm proxy stop"), "{msg}");
}

#[tokio::test]
async fn check_is_ok_on_a_fresh_store_and_fails_on_a_broken_policy() {
    let env = Env::new();
    let out = env.flm(&["check"]).await;
    let data = out.ok();
    assert_eq!(data["status"], "ok");
    let names: Vec<&str> = data["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"security_db.policy_semantics"), "{names:?}");
    let out = env.flm(&["--format", "text", "check"]).await;
    assert_eq!(out.code, 0);
    assert!(!out.stdout.contains('✓'), "only failures without --verbose");
    let out = env.flm(&["--format", "text", "check", "--verbose"]).await;
    assert!(
        out.stdout.contains("✓ security_db.policy_semantics"),
        "{}",
        out.stdout
    );

    // Valid JSON, invalid meaning.
    sqlite(
        &security_db(&env),
        r#"UPDATE security_policies SET policy_json = '{"rate_limit":{"rpm":-5}}' WHERE id = 'default';"#,
    );
    let out = env.flm(&["check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(out.json["data"]["status"], "error");
    let sem = out.json["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "security_db.policy_semantics")
        .unwrap()
        .clone();
    assert_eq!(sem["status"], "error");
    assert!(sem["message"].as_str().unwrap().contains("rate_limit.rpm"));

    // Not JSON.
    sqlite(
        &security_db(&env),
        "UPDATE security_policies SET policy_json = '{not json' WHERE id = 'default';",
    );
    let out = env.flm(&["--format", "text", "check"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("✗ security_db.policy"),
        "{}",
        out.stdout
    );
    // `policy show` still shows what is stored, with the problem.
    let data = env.flm(&["security", "policy", "show"]).await.ok();
    assert_eq!(data["policy_json"], "{not json");
    assert!(data["problem"].is_string());
}

#[tokio::test]
async fn writes_are_refused_in_read_only_mode_but_reads_and_backups_work() {
    let env = Env::new();
    let before = stored_policy(&env).await;
    // Pretend a newer FLM migrated security.db: it opens read-only.
    sqlite(
        &security_db(&env),
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'from the future', '2099-01-01', 1, x'00', 0);",
    );
    env.flm(&["security", "policy", "set", "--json", "{}"])
        .await
        .err("READ_ONLY_MODE", 1);
    env.flm(&["security", "ip-blocklist", "add", "192.0.2.1"])
        .await
        .err("READ_ONLY_MODE", 1);
    assert_eq!(stored_policy(&env).await, before);
    env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    env.flm(&["security", "audit-logs", "verify"]).await.ok();
    env.flm(&["security", "backup", "create"]).await.ok();
}

#[tokio::test]
async fn intrusions_and_anomalies_are_listed_with_filters() {
    use flm_core::security::{NewAnomaly, NewIntrusion};
    let env = Env::new();
    let store = Store::open(&StorePaths::in_dir(env.data_dir()))
        .await
        .unwrap();
    let events = store.security_events();
    for (ip, score) in [("192.0.2.1", 30), ("192.0.2.2", 120)] {
        events
            .insert_intrusion(&NewIntrusion {
                ip: ip.into(),
                pattern: "sql_injection".into(),
                score,
                request_path: Some("/v1/models?q=' OR 1=1--".into()),
                user_agent: None,
                method: Some("GET".into()),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        events
            .insert_anomaly(&NewAnomaly {
                ip: ip.into(),
                anomaly_type: if score > 100 {
                    "path_scan"
                } else {
                    "request_flood"
                }
                .into(),
                score,
                details: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    store.close().await;

    let all = env.flm(&["security", "intrusion"]).await.ok();
    assert_eq!(all.as_array().unwrap().len(), 2);
    // `intrusion list` (the issue's wording) is the same command.
    assert_eq!(env.flm(&["security", "intrusion", "list"]).await.ok(), all);
    let high = env
        .flm(&["security", "intrusion", "--min-score", "100"])
        .await
        .ok();
    assert_eq!(high.as_array().unwrap().len(), 1);
    assert_eq!(high[0]["ip"], "192.0.2.2");
    for k in [
        "id",
        "pattern",
        "score",
        "request_path",
        "user_agent",
        "method",
        "created_at",
    ] {
        assert!(high[0].get(k).is_some(), "{k} in {}", high[0]);
    }
    let one = env
        .flm(&["security", "intrusion", "--ip", "192.0.2.1", "--limit", "5"])
        .await
        .ok();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let scans = env
        .flm(&["security", "anomaly", "--anomaly-type", "path_scan"])
        .await
        .ok();
    assert_eq!(scans.as_array().unwrap().len(), 1);
    assert_eq!(scans[0]["ip"], "192.0.2.2");
    let page = env
        .flm(&["security", "anomaly", "--limit", "1", "--offset", "1"])
        .await
        .ok();
    assert_eq!(page.as_array().unwrap().len(), 1);
    env.flm(&["security", "anomaly", "--ip", "nope"])
        .await
        .err("INVALID_ARGUMENT", 1);
}
