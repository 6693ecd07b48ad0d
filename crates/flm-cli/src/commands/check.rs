//! `flm check` (spec 20-cli §4.15): both databases, the security policy (syntax and
//! meaning) and the audit chain.

use flm_core::security::CheckStatus;
use serde_json::Value;

use crate::app::App;
use crate::cli::CheckArgs;
use crate::output::{CliError, Printer};

/// Name of the semantic policy check added to the store's report.
const POLICY_SEMANTICS: &str = "security_db.policy_semantics";

pub(crate) async fn run(app: &App, args: CheckArgs, printer: &Printer) -> Result<(), CliError> {
    let mut report = flm_store::check(&app.store).await;
    match app.store.policy().load().await {
        Ok(Some(p)) if serde_json::from_str::<Value>(&p.policy_json).is_ok_and(|v| v.is_object()) => {
            match flm_guard::policy::SecurityPolicy::from_json_str(&p.policy_json) {
                Ok(_) => report.push(POLICY_SEMANTICS, CheckStatus::Ok, "every policy field is valid"),
                Err(errs) => report.push(
                    POLICY_SEMANTICS,
                    CheckStatus::Error,
                    format!("{errs}; the proxy refuses every request but /health; fix it with `flm security policy set`"),
                ),
            }
        }
        Ok(_) => report.push(
            POLICY_SEMANTICS,
            CheckStatus::Warning,
            "not checked: the policy is missing or not a JSON object (see security_db.policy)",
        ),
        Err(e) => report.push(
            POLICY_SEMANTICS,
            CheckStatus::Error,
            format!("cannot read the security policy: {e}"),
        ),
    }
    let failed = report.status == CheckStatus::Error;
    printer.success(&report, || {
        let mut out = String::new();
        let mut hidden = 0usize;
        for c in &report.checks {
            let mark = match c.status {
                CheckStatus::Ok => "✓",
                CheckStatus::Warning => "⚠",
                CheckStatus::Error => "✗",
            };
            if c.status == CheckStatus::Ok && !args.verbose {
                hidden += 1;
                continue;
            }
            out.push_str(&format!("{mark} {}: {}\n", c.name, c.message));
        }
        let overall = match report.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Error => "error",
        };
        out.push_str(&format!(
            "status: {overall} ({} checks",
            report.checks.len()
        ));
        if hidden > 0 {
            out.push_str(&format!(", {hidden} passing hidden; --verbose shows them"));
        }
        out.push_str(")\n");
        out
    })?;
    if failed {
        // The report is the output; the exit code alone says "error" (no second
        // error envelope on stdout).
        app.store.close().await;
        std::process::exit(1);
    }
    Ok(())
}
