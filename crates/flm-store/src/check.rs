//! `flm check` (spec 20-cli §4.15): the storage side of the health report.

use std::path::Path;

use flm_core::security::{CheckReport, CheckStatus};
use sqlx::{Row, SqlitePool};

use crate::{DbFile, Store, CONFIG_MIGRATOR, SECURITY_MIGRATOR};

/// Tables every `config.db` must have.
const CONFIG_TABLES: &[&str] = &[
    "settings",
    "engines_cache",
    "engines_cache_meta",
    "engine_endpoints",
    "engine_health_logs",
];

/// Tables every `security.db` must have.
const SECURITY_TABLES: &[&str] = &[
    "security_policies",
    "api_keys",
    "ip_blocklist",
    "intrusion_attempts",
    "anomaly_detections",
    "resource_alerts",
    "rate_limit_states",
    "certificates",
    "audit_logs",
    "audit_chain_head",
    "audit_archive_marker",
    "change_markers",
    "model_profiles",
    "api_prompts",
];

/// Triggers that keep the audit log append-only, and those that tell a running
/// proxy about changes to keys, policy and blocklist (without them, changes made
/// outside the proxy wait for its restart).
const SECURITY_TRIGGERS: &[&str] = &[
    "audit_logs_no_update",
    "audit_logs_delete_only_archived",
    "audit_chain_head_forward_only",
    "audit_chain_head_no_delete",
    "audit_archive_marker_no_update",
    "audit_archive_marker_no_delete",
    "api_keys_changed_insert",
    "api_keys_changed_update",
    "api_keys_changed_delete",
    "security_policies_changed_insert",
    "security_policies_changed_update",
    "security_policies_changed_delete",
    "ip_blocklist_changed_insert",
    "ip_blocklist_changed_update",
    "ip_blocklist_changed_delete",
    "model_profiles_changed_insert",
    "model_profiles_changed_update",
    "model_profiles_changed_delete",
    "api_prompts_changed_insert",
    "api_prompts_changed_update",
    "api_prompts_changed_delete",
];

/// Runs every storage check on an open store. Never fails: each problem becomes an
/// `error` (or `warning`) item, and the report's status is the worst of them.
///
/// Check names: `<file>.file`, `<file>.migrations`, `<file>.integrity`,
/// `<file>.tables`, `<file>.foreign_keys` for `config_db` and `security_db`, then
/// `config_db.counts`, `security_db.policy` (JSON syntax only — the caller adds the
/// semantic validation), `security_db.api_keys`, `security_db.audit_chain` (archive
/// files and live table) and `security_db.disk_space`.
pub async fn check(store: &Store) -> CheckReport {
    let mut report = CheckReport::default();
    let files = [
        (
            "config_db",
            DbFile::Config,
            &store.paths().config_db,
            store.config_pool(),
            CONFIG_TABLES,
            &[][..],
            CONFIG_MIGRATOR.iter().count(),
        ),
        (
            "security_db",
            DbFile::Security,
            &store.paths().security_db,
            store.security_pool(),
            SECURITY_TABLES,
            SECURITY_TRIGGERS,
            SECURITY_MIGRATOR.iter().count(),
        ),
    ];
    for (label, file, path, pool, tables, triggers, known) in files {
        check_file(&mut report, label, path);
        check_migrations(
            &mut report,
            label,
            pool,
            known,
            store.read_only_reason_of(file),
        )
        .await;
        check_integrity(&mut report, label, pool).await;
        check_schema(&mut report, label, pool, tables, triggers).await;
        check_foreign_keys(&mut report, label, pool).await;
    }
    check_config_counts(&mut report, store.config_pool()).await;
    check_policy(&mut report, store).await;
    check_api_keys(&mut report, store.security_pool()).await;
    match store.audit().verify().await {
        Ok(v) if v.ok => report.push(
            "security_db.audit_chain",
            CheckStatus::Ok,
            format!("{} audit row(s) verified", v.rows_checked),
        ),
        Ok(v) => report.push(
            "security_db.audit_chain",
            CheckStatus::Error,
            format!(
                "the audit log was tampered with: {}",
                v.problem.unwrap_or_default()
            ),
        ),
        Err(e) => report.push(
            "security_db.audit_chain",
            CheckStatus::Error,
            format!("cannot verify the audit log: {e}"),
        ),
    }
    check_disk_space(&mut report, store).await;
    report
}

/// Free space on the file system of `security.db` against `audit.min_free_disk_mb`
/// (the threshold the running proxy warns at; when it is exhausted the proxy refuses
/// requests rather than serve them unaudited).
async fn check_disk_space(report: &mut CheckReport, store: &Store) {
    const NAME: &str = "security_db.disk_space";
    const MIB: u64 = 1024 * 1024;
    let threshold_mb: u64 = match store.settings().get("audit.min_free_disk_mb").await {
        Ok(Some(row)) => row.value.parse().unwrap_or(1024),
        _ => 1024,
    };
    let db = &store.paths().security_db;
    let Some((free, total)) = db.parent().and_then(crate::disk_space) else {
        report.push(
            NAME,
            CheckStatus::Warning,
            format!("cannot measure the free space for `{}`", db.display()),
        );
        return;
    };
    let (free_mb, total_mb) = (free / MIB, total / MIB);
    if free < threshold_mb.saturating_mul(MIB) {
        report.push(
            NAME,
            CheckStatus::Warning,
            format!(
                "only {free_mb} MiB of {total_mb} MiB free for `{}` (warning below {threshold_mb} MiB, audit.min_free_disk_mb): when it runs out the proxy refuses requests (503 audit_unavailable); free space, or lower audit.retention_days / audit.max_db_mb",
                db.display()
            ),
        );
    } else {
        report.push(
            NAME,
            CheckStatus::Ok,
            format!("{free_mb} MiB of {total_mb} MiB free (warning below {threshold_mb} MiB)"),
        );
    }
}

fn check_file(report: &mut CheckReport, label: &str, path: &Path) {
    let name = format!("{label}.file");
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    report.push(
                        name,
                        CheckStatus::Warning,
                        format!(
                            "`{}` is readable by other users (mode {mode:o}); run `chmod 600` on it",
                            path.display()
                        ),
                    );
                    return;
                }
            }
            report.push(
                name,
                CheckStatus::Ok,
                format!("`{}` ({} bytes)", path.display(), m.len()),
            );
        }
        Ok(_) => report.push(
            name,
            CheckStatus::Error,
            format!("`{}` is not a regular file", path.display()),
        ),
        Err(e) => report.push(
            name,
            CheckStatus::Error,
            format!("`{}` is missing or unreadable: {e}", path.display()),
        ),
    }
}

async fn check_migrations(
    report: &mut CheckReport,
    label: &str,
    pool: &SqlitePool,
    known: usize,
    read_only: Option<&str>,
) {
    let name = format!("{label}.migrations");
    if let Some(reason) = read_only {
        report.push(
            name,
            CheckStatus::Error,
            format!("read-only safe mode: {reason}"),
        );
        return;
    }
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(pool)
        .await
    {
        Ok(n) => report.push(
            name,
            CheckStatus::Ok,
            format!("{n} of {known} migration(s) applied; writable"),
        ),
        Err(e) => report.push(
            name,
            CheckStatus::Error,
            format!("cannot read the migration table: {e}"),
        ),
    }
}

async fn check_integrity(report: &mut CheckReport, label: &str, pool: &SqlitePool) {
    let name = format!("{label}.integrity");
    match sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
        .fetch_all(pool)
        .await
    {
        Ok(lines) if lines == ["ok"] => {
            report.push(name, CheckStatus::Ok, "PRAGMA integrity_check: ok")
        }
        Ok(lines) => report.push(
            name,
            CheckStatus::Error,
            format!(
                "PRAGMA integrity_check found problems: {}; restore a backup",
                lines.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
        ),
        Err(e) => report.push(
            name,
            CheckStatus::Error,
            format!("cannot run PRAGMA integrity_check: {e}"),
        ),
    }
}

async fn check_schema(
    report: &mut CheckReport,
    label: &str,
    pool: &SqlitePool,
    tables: &[&str],
    triggers: &[&str],
) {
    let name = format!("{label}.tables");
    let rows = match sqlx::query(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'trigger')",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            report.push(
                name,
                CheckStatus::Error,
                format!("cannot read the schema: {e}"),
            );
            return;
        }
    };
    let present: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
        .collect();
    let has = |kind: &str, n: &str| present.iter().any(|(k, p)| k == kind && p == n);
    let missing: Vec<String> = tables
        .iter()
        .filter(|t| !has("table", t))
        .map(|t| format!("table {t}"))
        .chain(
            triggers
                .iter()
                .filter(|t| !has("trigger", t))
                .map(|t| format!("trigger {t}")),
        )
        .collect();
    if missing.is_empty() {
        report.push(
            name,
            CheckStatus::Ok,
            format!(
                "{} required table(s) and {} trigger(s) present",
                tables.len(),
                triggers.len()
            ),
        );
    } else {
        report.push(
            name,
            CheckStatus::Error,
            format!("missing: {}", missing.join(", ")),
        );
    }
}

async fn check_foreign_keys(report: &mut CheckReport, label: &str, pool: &SqlitePool) {
    let name = format!("{label}.foreign_keys");
    match sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(pool)
        .await
    {
        Ok(rows) if rows.is_empty() => {
            report.push(name, CheckStatus::Ok, "no foreign key violations")
        }
        Ok(rows) => {
            let first: Vec<String> = rows
                .iter()
                .take(5)
                .map(|r| {
                    let table: String = r.try_get(0).unwrap_or_default();
                    let rowid: Option<i64> = r.try_get(1).ok().flatten();
                    let parent: String = r.try_get(2).unwrap_or_default();
                    format!(
                        "{table} row {} → {parent}",
                        rowid.map_or_else(|| "?".to_owned(), |v| v.to_string())
                    )
                })
                .collect();
            report.push(
                name,
                CheckStatus::Error,
                format!(
                    "{} foreign key violation(s): {}",
                    rows.len(),
                    first.join("; ")
                ),
            );
        }
        Err(e) => report.push(
            name,
            CheckStatus::Error,
            format!("cannot run PRAGMA foreign_key_check: {e}"),
        ),
    }
}

async fn check_config_counts(report: &mut CheckReport, pool: &SqlitePool) {
    let count = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
    };
    match (count("settings").await, count("engine_endpoints").await) {
        (Ok(s), Ok(e)) => report.push(
            "config_db.counts",
            CheckStatus::Ok,
            format!("{s} setting(s), {e} engine endpoint(s)"),
        ),
        (Err(err), _) | (_, Err(err)) => report.push(
            "config_db.counts",
            CheckStatus::Error,
            format!("cannot count rows: {err}"),
        ),
    }
}

async fn check_policy(report: &mut CheckReport, store: &Store) {
    const NAME: &str = "security_db.policy";
    match store.policy().load().await {
        Ok(None) => report.push(
            NAME,
            CheckStatus::Error,
            "the security policy row `default` is missing: the proxy refuses every request but /health; set one with `flm security policy set`",
        ),
        Ok(Some(p)) => match serde_json::from_str::<serde_json::Value>(&p.policy_json) {
            Ok(v) if v.is_object() => report.push(
                NAME,
                CheckStatus::Ok,
                format!("valid JSON object (updated {})", crate::format_ts(&p.updated_at)),
            ),
            Ok(_) => report.push(
                NAME,
                CheckStatus::Error,
                "the security policy is not a JSON object: the proxy refuses every request but /health; fix it with `flm security policy set`",
            ),
            Err(e) => report.push(
                NAME,
                CheckStatus::Error,
                format!("the security policy is not valid JSON ({e}): the proxy refuses every request but /health; fix it with `flm security policy set`"),
            ),
        },
        Err(e) => report.push(NAME, CheckStatus::Error, format!("cannot read the security policy: {e}")),
    }
}

async fn check_api_keys(report: &mut CheckReport, pool: &SqlitePool) {
    const NAME: &str = "security_db.api_keys";
    let rows: Vec<(String, String, Option<String>)> =
        match sqlx::query_as("SELECT id, hash, revoked_at FROM api_keys ORDER BY id")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                report.push(
                    NAME,
                    CheckStatus::Error,
                    format!("cannot read API keys: {e}"),
                );
                return;
            }
        };
    let revoked = rows.iter().filter(|(_, _, r)| r.is_some()).count();
    let active = rows.len() - revoked;
    let is_digest = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let plaintext: Vec<&str> = rows
        .iter()
        .filter(|(_, h, _)| h.starts_with(flm_core::keys::KEY_PREFIX))
        .map(|(id, ..)| id.as_str())
        .collect();
    let other: Vec<&str> = rows
        .iter()
        .filter(|(_, h, _)| !is_digest(h) && !h.starts_with(flm_core::keys::KEY_PREFIX))
        .map(|(id, ..)| id.as_str())
        .collect();
    let counts = format!("{active} active, {revoked} revoked");
    if !plaintext.is_empty() {
        report.push(
            NAME,
            CheckStatus::Error,
            format!(
                "{counts}; key(s) {} store what looks like a plaintext key instead of its digest: revoke them and create new keys",
                plaintext.join(", ")
            ),
        );
    } else if !other.is_empty() {
        report.push(
            NAME,
            CheckStatus::Warning,
            format!(
                "{counts}; key(s) {} have a hash that is not a SHA-256 digest (legacy?) and are never accepted: revoke them and create new keys",
                other.join(", ")
            ),
        );
    } else {
        report.push(NAME, CheckStatus::Ok, counts);
    }
}
