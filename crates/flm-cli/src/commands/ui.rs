//! `flm ui`: makes sure the daemon runs (it serves the app on loopback), asks it for
//! a one-time login link, prints the link and opens it in the browser.
//!
//! The daemon stays up while a browser session is live, even with no proxy running,
//! so the dashboard can start and stop the proxy.

use std::process::Stdio;

use serde_json::json;

use crate::app::App;
use crate::cli::UiArgs;
use crate::client;
use crate::commands::proxy::running_daemon;
use crate::output::{CliError, Printer};

pub(crate) async fn run(app: &App, args: UiArgs, printer: &Printer) -> Result<(), CliError> {
    let daemon = match running_daemon(app, printer).await? {
        Some(d) => d,
        None => client::start_daemon(&app.data_dir).await?,
    };
    let url = daemon.ui_login_url().await?;
    let opened = if args.no_open { None } else { open(&url) };
    printer.success(
        &json!({"url": url, "app_url": daemon.state.ui_url, "opened_with": opened}),
        || {
            let mut out = format!("FLM app: {url}\n");
            out.push_str("This login link works once, within 60 seconds.");
            match &opened {
                Some(cmd) => out.push_str(&format!("\nOpened with {cmd}.")),
                None if !args.no_open => {
                    out.push_str("\nNo browser found ($BROWSER, xdg-open): open the link yourself.")
                }
                None => {}
            }
            out
        },
    )
}

/// Starts `$BROWSER <url>`, else the platform opener; returns the program used.
/// The browser is not waited for.
fn open(url: &str) -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(b) = std::env::var("BROWSER") {
        candidates.extend(b.split(':').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    candidates.push(
        if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        }
        .to_owned(),
    );
    for prog in candidates {
        let spawned = std::process::Command::new(&prog)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(_child) => return Some(prog),
            Err(e) => tracing::debug!(program = %prog, error = %e, "cannot start a browser"),
        }
    }
    None
}
