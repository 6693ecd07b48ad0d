//! `flm security install-ca|uninstall-ca`: the local root CA of `--mode packaged-ca`
//! in the operating system's trust store.

use flm_tls::trust::{self, TrustOptions, TrustOutcome};
use serde_json::json;

use crate::app::{certs_dir, App};
use crate::cli::SecurityCmd;
use crate::output::{CliError, Printer};

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
