//! `flm proxy reload` (spec 20-cli §4.6, 30-proxy §13): the running proxies re-read
//! API keys, the security policy (with the IP blocklist and `media_fetch`) and their
//! TLS certificate files, without a restart and without dropping connections.

use flm_proxy::{ReloadOutcome, StopTarget};
use serde_json::json;

use crate::app::App;
use crate::cli::ReloadArgs;
use crate::commands::proxy::{not_running, running_daemon};
use crate::output::{table, CliError, Printer};

pub(crate) async fn run(app: &App, args: ReloadArgs, printer: &Printer) -> Result<(), CliError> {
    let Some(daemon) = running_daemon(app, printer).await? else {
        return Err(not_running());
    };
    let target = StopTarget {
        port: args.port,
        handle_id: args.handle_id,
    };
    let outcomes: Vec<ReloadOutcome> = daemon.reload(&target).await?;
    let failed: Vec<&ReloadOutcome> = outcomes.iter().filter(|o| !o.errors.is_empty()).collect();
    let data = json!({
        "reloaded": outcomes,
        "total": outcomes.len(),
        "errors": failed
            .iter()
            .map(|o| (o.handle_id.clone(), json!(o.errors)))
            .collect::<serde_json::Map<_, _>>(),
    });
    if !failed.is_empty() {
        let what: Vec<String> = failed
            .iter()
            .map(|o| format!("{}: {}", o.handle_id, o.errors.join("; ")))
            .collect();
        return Err(CliError::user(
            "PROXY_RELOAD_FAILED",
            format!(
                "the reload failed in part; what failed keeps its previous state ({})",
                what.join(" | ")
            ),
        )
        .with_details(data));
    }
    printer.success(&data, || {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|o| {
                let mut what = o.reloaded.join(", ");
                if o.certificate_changed {
                    what.push_str(" (new certificate)");
                }
                vec![o.handle_id.clone(), o.port.to_string(), what]
            })
            .collect();
        table(&["HANDLE", "PORT", "RELOADED"], &rows)
    })
}
