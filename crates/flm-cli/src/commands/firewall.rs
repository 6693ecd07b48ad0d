//! `flm security firewall-script`: the setup wizard's firewall script for headless
//! machines. The ports default to the running proxies' (else `proxy.port`), the allow
//! list is the stored policy's; the text comes from `flm_core::firewall`.

use flm_core::firewall::{self, FirewallRequest, FirewallScript, FirewallTarget};
use serde_json::json;

use crate::app::App;
use crate::cli_security::{FirewallScriptArgs, FirewallTargetArg};
use crate::client::{self, Lookup};
use crate::output::{CliError, Printer};

fn target_of(arg: FirewallTargetArg) -> FirewallTarget {
    match arg {
        FirewallTargetArg::Ufw => FirewallTarget::Ufw,
        FirewallTargetArg::Firewalld => FirewallTarget::Firewalld,
        FirewallTargetArg::Nftables => FirewallTarget::Nftables,
        FirewallTargetArg::Pf => FirewallTarget::Pf,
        FirewallTargetArg::Powershell => FirewallTarget::Powershell,
    }
}

/// The ports the proxies listen on now (HTTP and HTTPS), else the configured default.
async fn default_ports(app: &App) -> Result<Vec<i64>, CliError> {
    let mut ports = Vec::new();
    if let Lookup::Running(d) = client::find(&app.data_dir).await? {
        for h in d.status().await?.proxies {
            ports.push(i64::from(h.port));
            if let Some(p) = h.https_port {
                ports.push(i64::from(p));
            }
        }
    }
    if ports.is_empty() {
        let entry = app.config.get("proxy.port").await?;
        let port = entry.value.parse::<i64>().map_err(|_| {
            CliError::user(
                "INVALID_ARGUMENT",
                format!("proxy.port is `{}`, not a port; pass --port", entry.value),
            )
        })?;
        ports.push(port);
    }
    Ok(ports)
}

pub(crate) async fn run(
    app: &App,
    args: FirewallScriptArgs,
    printer: &Printer,
) -> Result<(), CliError> {
    let ports = if args.ports.is_empty() {
        default_ports(app).await?
    } else {
        args.ports.iter().map(|p| i64::from(*p)).collect()
    };
    let allow = app.security.allowlist().await?;
    let script: FirewallScript = firewall::generate(&FirewallRequest {
        target: target_of(args.target).as_str().to_owned(),
        ports,
        allow,
    })
    .map_err(|e| CliError::from(flm_core::CoreError::from(e)))?;
    let (name, text) = if args.rollback {
        (script.rollback_filename.clone(), script.rollback.clone())
    } else {
        (script.filename.clone(), script.script.clone())
    };
    // On stderr, so that the script on stdout stays a script.
    if matches!(printer.format, crate::cli::Format::Text) && !args.rollback {
        for w in &script.warnings {
            eprintln!("warning: {}", w.message);
        }
    }
    match &args.output {
        Some(path) => {
            super::security::write_private(path, text.as_bytes())?;
            let data = json!({
                "target": script.target,
                "shell": script.shell,
                "path": path.display().to_string(),
                "rollback": args.rollback,
                "ports": script.ports,
                "allow": script.allow,
                "warnings": script.warnings,
            });
            printer.success(&data, || {
                format!(
                    "wrote {} ({} script for {}); suggested name {name}; read it, then run it as root / administrator",
                    path.display(),
                    if args.rollback { "rollback" } else { "firewall" },
                    script.target
                )
            })
        }
        None => printer.success(&script, || text),
    }
}
