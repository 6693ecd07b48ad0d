//! `flm api-keys create|list|revoke|rotate`.

use flm_core::keys::NewApiKey;
use serde_json::json;

use crate::app::App;
use crate::cli::ApiKeysCmd;
use crate::client::{self, Lookup};
use crate::output::{table, CliError, Printer};

/// Makes a running daemon reload its key table now. A daemon that does not run or
/// answer is no error: every proxy (daemon or `--no-daemon`) follows the store's
/// change markers and applies the change within a second anyway.
async fn notify_daemon(app: &App) {
    if let Ok(Lookup::Running(d)) = client::find(&app.data_dir).await {
        if let Err(e) = d.reload_keys().await {
            tracing::warn!(error = %e.message, "the proxy daemon could not reload the keys");
        }
    }
}

fn shown_once(k: &NewApiKey) -> String {
    format!(
        "{}\n\nThis key is shown once: store it now. FLM keeps only its hash.\nClients send it as `Authorization: Bearer <key>`.",
        k.key
    )
}

pub(crate) async fn run(app: &App, cmd: ApiKeysCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        ApiKeysCmd::Create { label } => {
            let k = app.keys.create(&label).await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Created API key {} ({}):\n{}",
                    k.metadata.id,
                    k.metadata.label,
                    shown_once(&k)
                )
            })
        }
        ApiKeysCmd::List => {
            let keys = app.keys.list().await?;
            printer.success(&json!({ "keys": keys }), || {
                if keys.is_empty() {
                    return "No API keys. Create one with `flm api-keys create --label <name>` (`flm proxy start` creates one on first use).".to_owned();
                }
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.label.clone(),
                            k.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                            match k.revoked_at {
                                Some(t) => format!("revoked {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
                                None => "active".to_owned(),
                            },
                        ]
                    })
                    .collect();
                table(&["ID", "LABEL", "CREATED", "STATUS"], &rows)
            })
        }
        ApiKeysCmd::Revoke { id } => {
            let k = app.keys.revoke(id.trim()).await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Revoked {} ({}): clients using it are refused from now on.",
                    k.id, k.label
                )
            })
        }
        ApiKeysCmd::Rotate { id, label } => {
            let k = app.keys.rotate(id.trim(), label.as_deref()).await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Revoked {} and created {} ({}):\n{}",
                    k.old_key_id.as_deref().unwrap_or("-"),
                    k.metadata.id,
                    k.metadata.label,
                    shown_once(&k)
                )
            })
        }
    }
}
