//! `flm security …` (spec 20-cli §4.9): the security policy, the IP blocklist, the
//! audit log, backups of security.db, recorded intrusions and anomalies, and the local
//! root CA of `--mode packaged-ca` in the operating system's trust store.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flm_core::security::{
    audit_csv_header, AnomalyFilter, ArchiveSelection, AuditFilter, AuditRow, AuditSeverity,
    BlockRow, IntrusionFilter,
};
use flm_core::CoreError;
use flm_store::{format_ts, parse_ts, Store};
use flm_tls::trust::{self, TrustOptions, TrustOutcome};
use serde_json::{json, Value};

use crate::app::{certs_dir, state_file_path, App};
use crate::cli::Format;
use crate::cli::SecurityCmd;
use crate::cli_security::{
    AnomalyArgs, AuditCmd, AuditFilterArgs, BackupCmd, BlocklistCmd, ExportFormat, IntrusionArgs,
    PolicyCmd, RateLimitsArgs, SeverityArg,
};
use crate::client::{self, Lookup};
use crate::output::{table, CliError, Printer};

fn outcome(o: TrustOutcome) -> &'static str {
    match o {
        TrustOutcome::Installed => "installed",
        TrustOutcome::Replaced => "replaced",
        TrustOutcome::AlreadyInstalled => "already_installed",
        TrustOutcome::Removed => "removed",
        TrustOutcome::NotInstalled => "not_installed",
    }
}

fn tls_error(e: &flm_tls::TlsError) -> CliError {
    let msg = e.to_string();
    if msg.contains("Permission denied") || msg.contains("os error 13") {
        CliError::user("PERMISSION_DENIED", format!("{msg}; run it as root (sudo)"))
    } else {
        CliError::user("PROXY_CERT_FAILED", msg)
    }
}

pub(crate) async fn run(app: &App, cmd: SecurityCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        SecurityCmd::Policy(c) => policy(app, c, printer).await,
        SecurityCmd::IpBlocklist(c) => blocklist(app, c, printer).await,
        SecurityCmd::AuditLogs(c) => audit(app, c, printer).await,
        SecurityCmd::Backup(c) => backup(app, c, printer).await,
        SecurityCmd::Intrusion(a) => intrusion(app, a, printer).await,
        SecurityCmd::Anomaly(a) => anomaly(app, a, printer).await,
        SecurityCmd::RateLimits(a) => rate_limits(app, a, printer).await,
        ca @ (SecurityCmd::InstallCa { .. } | SecurityCmd::UninstallCa { .. }) => {
            trust_ca(app, ca, printer).await
        }
        SecurityCmd::FirewallScript(a) => super::firewall::run(app, a, printer).await,
        SecurityCmd::Certificates(crate::cli_security::CertificatesCmd::List) => {
            super::certificates::list(app, printer).await
        }
    }
}

async fn trust_ca(app: &App, cmd: SecurityCmd, printer: &Printer) -> Result<(), CliError> {
    let dry = matches!(
        cmd,
        SecurityCmd::InstallCa { dry_run: true, .. } | SecurityCmd::UninstallCa { dry_run: true }
    );
    let (report, ca_path) = match cmd {
        SecurityCmd::InstallCa { cert_path, dry_run } => {
            let path = match cert_path {
                Some(p) => p,
                None => {
                    let dir = certs_dir(&app.data_dir);
                    let ca = tokio::task::spawn_blocking(move || {
                        flm_tls::ensure_local_ca(&dir, chrono::Utc::now())
                    })
                    .await
                    .map_err(|e| CliError::internal("INTERNAL", e.to_string()))?
                    .map_err(|e| tls_error(&e))?;
                    ca.cert_path().to_path_buf()
                }
            };
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || {
                trust::install_ca(
                    &p,
                    TrustOptions {
                        dry_run,
                        root: None,
                    },
                )
            })
            .await
            .map_err(|e| CliError::internal("INTERNAL", e.to_string()))?
            .map_err(|e| tls_error(&e))?;
            (r, path)
        }
        SecurityCmd::UninstallCa { dry_run } => {
            let path = certs_dir(&app.data_dir).join("flm-ca.crt");
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || {
                trust::uninstall_ca(
                    &p,
                    TrustOptions {
                        dry_run,
                        root: None,
                    },
                )
            })
            .await
            .map_err(|e| CliError::internal("INTERNAL", e.to_string()))?
            .map_err(|e| tls_error(&e))?;
            (r, path)
        }
        _ => return Err(CliError::internal("INTERNAL", "not a CA command")),
    };
    let steps = report.steps();
    let data = json!({
        "outcome": outcome(report.outcome),
        "ca_cert_path": ca_path.display().to_string(),
        "steps": steps,
        "dry_run": dry,
    });
    printer.success(&data, || {
        let prefix = if dry {
            "dry run, nothing changed; the real run would report: "
        } else {
            ""
        };
        let mut out = format!(
            "{prefix}{}: {}\n",
            outcome(report.outcome).replace('_', " "),
            ca_path.display()
        );
        for s in &steps {
            out.push_str(&format!("  {s}\n"));
        }
        out
    })
}

// ---------------------------------------------------------------------------------------
// telling a running daemon
// ---------------------------------------------------------------------------------------

/// What became of telling the proxy daemon about a change of security.db.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Notified {
    /// No daemon runs on this data directory: it reads the change when it starts.
    NoDaemon,
    /// The daemon reloaded the policy and the blocklist.
    Applied,
    /// A daemon runs but could not be told (why). The change is stored all the same.
    Failed(String),
}

/// What changed in security.db.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// The security policy.
    Policy,
    /// The IP blocklist.
    Blocklist,
}

/// Asks a running proxy daemon to reload the security policy and reconcile its IP
/// blocklist with security.db (`POST /admin/reload-security`) at once. Every proxy
/// (daemon, `--no-daemon`, embedded) also follows the store's change markers and
/// applies the change within a second without being told, so this is a shortcut and
/// never an error: a failure is a warning (stderr in text mode, the log otherwise).
async fn notify_daemon(app: &App, printer: &Printer, what: Change) -> Notified {
    let outcome = match client::find(&app.data_dir).await {
        Ok(Lookup::NotRunning { .. }) => Notified::NoDaemon,
        Ok(Lookup::Running(d)) => match d.reload_security().await {
            Ok(()) => Notified::Applied,
            Err(e) => Notified::Failed(e.message),
        },
        Err(e) => Notified::Failed(e.message),
    };
    if let Notified::Failed(why) = &outcome {
        let then = match what {
            Change::Policy => "it reads the new policy from the store within a second",
            Change::Blocklist => "it reads the blocklist from the store within a second",
        };
        let msg = format!(
            "the change is saved, but the running proxy daemon could not be told to reload it ({why}); {then}"
        );
        if printer.format == Format::Text {
            eprintln!("warning: {msg}");
        } else {
            tracing::warn!("{msg}");
        }
    }
    outcome
}

// ---------------------------------------------------------------------------------------
// policy
// ---------------------------------------------------------------------------------------

/// `POLICY_INVALID` listing every field error (message and `error.details`); other
/// errors unchanged.
fn policy_error(e: CoreError) -> CliError {
    match e {
        CoreError::InvalidPolicy(problems) => {
            let details = serde_json::to_value(&problems).unwrap_or(Value::Null);
            let listed = CoreError::InvalidPolicy(problems.clone()).to_string();
            CliError::user(
                "POLICY_INVALID",
                format!(
                    "{listed} ({} problem(s); nothing was changed)",
                    problems.len()
                ),
            )
            .with_details(details)
        }
        other => other.into(),
    }
}

async fn policy(app: &App, cmd: PolicyCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        PolicyCmd::Show => {
            let stored = app.security.policy().await?.ok_or_else(|| {
                CliError::user(
                    "NOT_FOUND",
                    "no security policy is stored (the proxy refuses every request but /health); set one with `flm security policy set`",
                )
            })?;
            let note = stored
                .problem
                .as_ref()
                .map(|p| format!("{p}; fix it with `flm security policy set`"));
            let policy = stored.policy;
            let updated_at = format_ts(&stored.updated_at);
            let mut data = json!({
                "id": "default",
                "policy_json": policy,
                "updated_at": updated_at,
            });
            if let Some(n) = &note {
                data["problem"] = json!(n);
            }
            printer.success(&data, || {
                let body = match &policy {
                    Value::String(raw) => raw.clone(),
                    v => serde_json::to_string_pretty(v).unwrap_or_default(),
                };
                let mut out = format!("policy `default`, updated {updated_at}\n{body}\n");
                if let Some(n) = &note {
                    out.push_str(&format!("warning: {n}\n"));
                }
                out
            })
        }
        PolicyCmd::Set { json, file } => {
            let (text, source) = match (json, file) {
                (Some(j), _) => (j, "--json".to_owned()),
                (None, Some(path)) => (read_text_file(&path)?, path.display().to_string()),
                (None, None) => {
                    return Err(CliError::user(
                        "INVALID_ARGUMENT",
                        "pass the policy with --json <JSON> or --file <PATH>",
                    ))
                }
            };
            let saved = app.security.set_policy(&text).await.map_err(policy_error)?;
            let updated_at = format_ts(&saved.updated_at);
            let stored = saved.policy;
            let notified = notify_daemon(app, printer, Change::Policy).await;
            let applied = notified == Notified::Applied;
            let data = json!({
                "id": "default",
                "policy_json": stored,
                "updated_at": updated_at,
                "source": source,
                "applied_to_running_proxy": applied,
            });
            printer.success(&data, || {
                let how = match notified {
                    Notified::Applied => "Applied to the running proxy now.",
                    Notified::NoDaemon => "No proxy daemon runs: a proxy started with `--no-daemon` applies it within a second; otherwise it is applied when the proxy starts (`flm proxy start`).",
                    Notified::Failed(_) => "The running proxy could not be told (see the warning): it reads the change from the store within a second.",
                };
                format!("security policy `default` saved ({updated_at}).\n{how}\n")
            })
        }
    }
}

/// Reads a UTF-8 text file the user named; errors name the path.
fn read_text_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
            _ => e.to_string(),
        };
        CliError::user("IO_ERROR", format!("cannot read {}: {why}", path.display()))
    })
}

// ---------------------------------------------------------------------------------------
// ip-blocklist
// ---------------------------------------------------------------------------------------

/// Minutes of a block added without `--minutes` / `--permanent`.
const DEFAULT_BLOCK_MINUTES: u32 = 30;

fn block_json(r: &BlockRow) -> Value {
    json!({
        "ip": r.ip,
        "failure_count": r.failure_count,
        "first_failure_at": format_ts(&r.first_failure_at),
        "blocked_until": r.blocked_until.as_ref().map(format_ts),
        "permanent_block": r.permanent,
        "last_attempt": format_ts(&r.last_attempt),
    })
}

/// The canonical text of an IP address (IPv4-mapped IPv6 folded to IPv4) or of a
/// range (`2001:db8:1::/48`, host bits cleared): the form the proxy stores, so that
/// `unblock` finds the IPv6 aggregates the proxy creates.
fn canonical_ip(app: &App, raw: &str) -> Result<String, CliError> {
    app.security.canonical_address(raw).map_err(CliError::from)
}

async fn blocklist(app: &App, cmd: BlocklistCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        BlocklistCmd::List => {
            let rows = app.security.blocklist().await?;
            let now = Utc::now();
            let data: Vec<Value> = rows.iter().map(block_json).collect();
            printer.success(&data, || {
                if rows.is_empty() {
                    return "no blocked IPs".into();
                }
                let body: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let state = if r.permanent {
                            "permanent".to_owned()
                        } else {
                            match r.blocked_until {
                                Some(u) if u > now => format!("until {}", format_ts(&u)),
                                Some(_) => "expired".to_owned(),
                                None => "not blocked".to_owned(),
                            }
                        };
                        vec![
                            r.ip.clone(),
                            state,
                            r.failure_count.to_string(),
                            format_ts(&r.last_attempt),
                        ]
                    })
                    .collect();
                table(&["IP", "BLOCK", "FAILURES", "LAST ATTEMPT"], &body)
            })
        }
        BlocklistCmd::Add {
            ip,
            minutes,
            permanent,
        } => {
            let duration = (!permanent).then(|| {
                chrono::Duration::minutes(i64::from(minutes.unwrap_or(DEFAULT_BLOCK_MINUTES)))
            });
            let row = app.security.block(&ip, duration).await?;
            let (ip, until) = (row.ip.clone(), row.blocked_until);
            notify_daemon(app, printer, Change::Blocklist).await;
            let data = block_json(&row);
            printer.success(&data, || match until {
                None => format!("{ip} blocked permanently (lift it with `flm security ip-blocklist unblock {ip}`)"),
                Some(u) => format!("{ip} blocked until {}", format_ts(&u)),
            })
        }
        BlocklistCmd::Unblock { ip: raw } => {
            let Some(ip) = app.security.unblock(&raw).await? else {
                let ip = canonical_ip(app, &raw).unwrap_or_else(|_| raw.trim().to_owned());
                return Err(CliError::user(
                    "NOT_FOUND",
                    format!("{ip} is not in the blocklist; see `flm security ip-blocklist list`"),
                ));
            };
            notify_daemon(app, printer, Change::Blocklist).await;
            printer.success(&json!({"ip": ip, "removed": true}), || {
                format!("{ip} removed from the blocklist")
            })
        }
        BlocklistCmd::Clear => {
            let cleared = app.security.clear_temporary().await?;
            let (removed, remaining) = (cleared.removed, cleared.remaining);
            notify_daemon(app, printer, Change::Blocklist).await;
            printer.success(
                &json!({"removed": removed, "remaining_permanent": remaining}),
                || {
                    format!(
                        "{removed} temporary entr{} removed; {remaining} permanent block(s) kept (lift them with `unblock`)",
                        if removed == 1 { "y" } else { "ies" }
                    )
                },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// audit-logs
// ---------------------------------------------------------------------------------------

fn audit_filter(app: &App, f: AuditFilterArgs) -> Result<AuditFilter, CliError> {
    let since = match f.since {
        None => None,
        Some(raw) => Some(parse_ts(&raw).ok_or_else(|| {
            CliError::user(
                "INVALID_ARGUMENT",
                format!("--since `{raw}` is not an RFC 3339 time (e.g. 2026-11-25T00:00:00Z)"),
            )
        })?),
    };
    let ip = match f.ip {
        Some(raw) => Some(canonical_ip(app, &raw)?),
        None => None,
    };
    Ok(AuditFilter {
        severity: f.severity.map(|s| match s {
            SeverityArg::Low => AuditSeverity::Low,
            SeverityArg::Medium => AuditSeverity::Medium,
            SeverityArg::High => AuditSeverity::High,
            SeverityArg::Critical => AuditSeverity::Critical,
        }),
        event_type: f.event_type,
        ip,
        since,
        until: None,
        limit: None,
        offset: 0,
    })
}

fn audit_csv(rows: &[AuditRow]) -> String {
    let mut out = audit_csv_header();
    for r in rows {
        out.push_str(&r.csv_record());
    }
    out
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then
/// rename), mode 0600.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CliError::user("IO_ERROR", format!("cannot {what} {}: {e}", p.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.is_dir() {
        return Err(CliError::user(
            "IO_ERROR",
            format!("{} is a directory; pass a file name", path.display()),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let mut f = opts.open(&tmp).map_err(|e| io("create", path, e))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", path, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io("write", path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

async fn audit(app: &App, cmd: AuditCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        AuditCmd::List {
            filter,
            limit,
            offset,
        } => {
            let mut f = audit_filter(app, filter)?;
            f.limit = Some(limit);
            f.offset = offset;
            let rows = app.security.audit_list(&f).await?;
            printer.success(&rows, || {
                if rows.is_empty() {
                    return "no audit events".into();
                }
                let body: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.created_at.clone(),
                            r.severity.clone(),
                            r.event_type.clone().unwrap_or_else(|| "-".into()),
                            r.ip.clone().unwrap_or_else(|| "-".into()),
                            r.status.to_string(),
                            r.endpoint.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID", "TIME", "SEVERITY", "EVENT", "IP", "STATUS", "ENDPOINT",
                    ],
                    &body,
                )
            })
        }
        AuditCmd::Verify => {
            let report = app.security.verify_audit().await?;
            if !report.ok {
                let id = report
                    .first_bad_id
                    .map_or_else(|| "unknown".to_owned(), |i| i.to_string());
                return Err(CliError::user(
                    "AUDIT_TAMPERED",
                    format!(
                        "the audit log was tampered with: first bad row id {id}: {}",
                        report.problem.clone().unwrap_or_default()
                    ),
                )
                .with_details(json!({
                    "first_bad_id": report.first_bad_id,
                    "rows_checked": report.rows_checked,
                    "problem": report.problem,
                })));
            }
            printer.success(&report, || {
                format!(
                    "audit chain intact: {} row(s) verified",
                    report.rows_checked
                )
            })
        }
        AuditCmd::Export {
            output_format,
            output,
            filter,
        } => {
            let format = output_format.unwrap_or_else(|| {
                let csv = output
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                if csv {
                    ExportFormat::Csv
                } else {
                    ExportFormat::Json
                }
            });
            let f = audit_filter(app, filter)?;
            let rows = app.security.audit_export(&f).await?;
            let bytes = match format {
                ExportFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&rows).map_err(|e| {
                        CliError::internal("INTERNAL", format!("cannot encode the rows: {e}"))
                    })?;
                    s.push('\n');
                    s.into_bytes()
                }
                ExportFormat::Csv => audit_csv(&rows).into_bytes(),
            };
            write_private(&output, &bytes)?;
            let fmt = match format {
                ExportFormat::Json => "json",
                ExportFormat::Csv => "csv",
            };
            let shown = output.display().to_string();
            let data = json!({"output": shown, "format": fmt, "rows": rows.len()});
            printer.success(&data, || {
                format!(
                    "{} audit row(s) written to {shown} ({fmt}, 0600)",
                    rows.len()
                )
            })
        }
        AuditCmd::Archive {
            older_than_days,
            archive_dir,
        } => {
            let dir = archive_dir.unwrap_or_else(|| app.data_dir.join("archive"));
            create_private_dir(&dir)?;
            let cutoff = Utc::now() - chrono::Duration::days(i64::from(older_than_days));
            let selection = ArchiveSelection {
                older_than: Some(cutoff),
                max_db_bytes: None,
            };
            let report = app.security.archive_audit(&selection, &dir).await?;
            printer.success(&report, || {
                format!(
                    "{} audit row(s) older than {older_than_days} day(s) moved to {} ({} new file(s))",
                    report.rows_archived,
                    report.archive_dir.display(),
                    report.files.len()
                )
            })
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| {
        CliError::user(
            "IO_ERROR",
            format!("cannot create the directory {}: {e}", dir.display()),
        )
    })
}

// ---------------------------------------------------------------------------------------
// backup
// ---------------------------------------------------------------------------------------

/// The pid of a live proxy daemon of this data directory, if one runs.
fn live_daemon(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(state_file_path(data_dir)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let pid = u32::try_from(v.get("pid")?.as_u64()?).ok()?;
    crate::process::pid_alive(pid).then_some(pid)
}

async fn backup(app: &App, cmd: BackupCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        BackupCmd::Create { output } => {
            let dir = output.unwrap_or_else(|| app.data_dir.join("backups"));
            let info = app.store.backup_security(&dir, Utc::now()).await?;
            let _ = writeln!(std::io::stderr(), "{}", info.path.display());
            printer.success(&info, || {
                format!(
                    "backup written: {}\n{} backup(s) in {}",
                    info.path.display(),
                    info.total_backups,
                    dir.display()
                )
            })
        }
        BackupCmd::Restore { file } => {
            if let Some(pid) = live_daemon(&app.data_dir) {
                return Err(CliError::user(
                    "PROXY_ALREADY_RUNNING",
                    format!("the proxy daemon (pid {pid}) is running on this data directory; stop it with `flm proxy stop` before restoring"),
                ));
            }
            app.store.close().await;
            let info = Store::restore_security(app.store.paths(), &file).await?;
            printer.success(&info, || {
                format!(
                    "restored {} from {} ({} migration(s) applied).\nIf FLM was in read-only safe mode, start it again to leave it.",
                    info.restored_path.display(),
                    file.display(),
                    info.migrations_applied
                )
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// intrusion, anomaly
// ---------------------------------------------------------------------------------------

fn opt_ip(app: &App, ip: Option<String>) -> Result<Option<String>, CliError> {
    ip.map(|raw| canonical_ip(app, &raw)).transpose()
}

fn ts(t: &DateTime<Utc>) -> String {
    format_ts(t)
}

async fn intrusion(app: &App, a: IntrusionArgs, printer: &Printer) -> Result<(), CliError> {
    let filter = IntrusionFilter {
        ip: opt_ip(app, a.ip)?,
        min_score: a.min_score,
        limit: a.limit,
        offset: a.offset,
    };
    let rows = app.security.intrusions(&filter).await?;
    printer.success(&rows, || {
        if rows.is_empty() {
            return "no intrusion attempts recorded".into();
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    ts(&r.created_at),
                    r.ip.clone(),
                    r.pattern.clone(),
                    r.score.to_string(),
                    r.method.clone().unwrap_or_else(|| "-".into()),
                    r.request_path.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(&["TIME", "IP", "PATTERN", "SCORE", "METHOD", "PATH"], &body)
    })
}

async fn anomaly(app: &App, a: AnomalyArgs, printer: &Printer) -> Result<(), CliError> {
    let filter = AnomalyFilter {
        ip: opt_ip(app, a.ip)?,
        anomaly_type: a.anomaly_type,
        limit: a.limit,
        offset: a.offset,
    };
    let rows = app.security.anomalies(&filter).await?;
    printer.success(&rows, || {
        if rows.is_empty() {
            return "no anomalies recorded".into();
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    ts(&r.created_at),
                    r.ip.clone(),
                    r.anomaly_type.clone(),
                    r.score.to_string(),
                    r.details.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(&["TIME", "IP", "TYPE", "SCORE", "DETAILS"], &body)
    })
}

// ---------------------------------------------------------------------------------------
// rate-limits
// ---------------------------------------------------------------------------------------

async fn rate_limits(app: &App, a: RateLimitsArgs, printer: &Printer) -> Result<(), CliError> {
    let wanted = a.api_key_id.as_deref().map(str::trim);
    let rows = app.security.rate_limit_windows(wanted).await?;
    let now = Utc::now();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "api_key_id": r.key,
                "requests_count": r.requests_count,
                "reset_at": format_ts(&r.reset_at),
                "expired": r.reset_at <= now,
            })
        })
        .collect();
    printer.success(&data, || {
        if rows.is_empty() {
            return match wanted {
                Some(id) => format!("no rate-limit window for `{id}`"),
                None => "no rate-limit windows recorded".into(),
            };
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let reset = if r.reset_at <= now {
                    format!("{} (expired)", format_ts(&r.reset_at))
                } else {
                    format_ts(&r.reset_at)
                };
                vec![r.key.clone(), r.requests_count.to_string(), reset]
            })
            .collect();
        table(&["KEY", "REQUESTS", "RESET AT"], &body)
    })
}
