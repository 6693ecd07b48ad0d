//! `flm api-keys create|list|revoke|rotate|update`.

use chrono::{DateTime, Utc};
use flm_core::keys::{ApiKeyMetadata, NewApiKey};
use flm_core::services::{KeyLimits, KeyLimitsChange, LimitChange};
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

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `MODELS`, `ROUTES`, `EXPIRES` and `BUDGET` cells of a key.
fn limit_cells(k: &ApiKeyMetadata) -> [String; 4] {
    let models = k.models.as_ref().map_or("all".to_owned(), |m| m.join(","));
    let routes = k.routes.as_ref().map_or("all".to_owned(), |r| {
        r.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    });
    let expires = k.expires_at.as_ref().map_or("never".to_owned(), when);
    let budget = match (k.tpm, k.monthly_tokens) {
        (None, None) => "none".to_owned(),
        (t, m) => [
            t.map(|t| format!("{t}/min")),
            m.map(|m| format!("{m}/month")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(","),
    };
    [models, routes, expires, budget]
}

/// One line describing a key's limits, for the text output of create/rotate/update.
fn limits_line(k: &ApiKeyMetadata) -> String {
    let [models, routes, expires, budget] = limit_cells(k);
    format!("Models: {models}; routes: {routes}; expires: {expires}; token budget: {budget}.")
}

fn shown_once(k: &NewApiKey) -> String {
    format!(
        "{}\n\nThis key is shown once: store it now. FLM keeps only its hash.\nClients send it as `Authorization: Bearer <key>`.",
        k.key
    )
}

pub(crate) async fn run(app: &App, cmd: ApiKeysCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        ApiKeysCmd::Create {
            label,
            limits,
            expires_in,
        } => {
            let limits = KeyLimits {
                models: limits.models,
                routes: limits.routes,
                expires_in,
                tpm: limits.tpm,
                monthly_tokens: limits.monthly_tokens,
            };
            let k = app.keys.create_limited(&label, &limits).await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Created API key {} ({}):\n{}\n{}",
                    k.metadata.id,
                    k.metadata.label,
                    limits_line(&k.metadata),
                    shown_once(&k)
                )
            })
        }
        ApiKeysCmd::Update {
            id,
            limits,
            all_models,
            all_routes,
            expires_in,
            no_expiry,
            no_tpm,
            no_monthly_tokens,
        } => {
            fn pick<T>(set: Option<T>, clear: bool) -> LimitChange<T> {
                match (set, clear) {
                    (Some(v), _) => LimitChange::Set(v),
                    (None, true) => LimitChange::Clear,
                    (None, false) => LimitChange::Keep,
                }
            }
            let change = KeyLimitsChange {
                models: pick(limits.models, all_models),
                routes: pick(limits.routes, all_routes),
                expires_in: pick(expires_in, no_expiry),
                tpm: pick(limits.tpm, no_tpm),
                monthly_tokens: pick(limits.monthly_tokens, no_monthly_tokens),
            };
            let k = app.keys.update_limits(id.trim(), &change).await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Updated {} ({}): {}\nA running proxy applies the change at once.",
                    k.id,
                    k.label,
                    limits_line(&k)
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
                        let [models, routes, expires, budget] = limit_cells(k);
                        vec![
                            k.id.clone(),
                            k.label.clone(),
                            when(&k.created_at),
                            match k.revoked_at {
                                Some(t) => format!("revoked {}", when(&t)),
                                None if k.expired => "expired".to_owned(),
                                None => "active".to_owned(),
                            },
                            models,
                            routes,
                            expires,
                            budget,
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID", "LABEL", "CREATED", "STATUS", "MODELS", "ROUTES", "EXPIRES", "BUDGET",
                    ],
                    &rows,
                )
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
        ApiKeysCmd::Rotate {
            id,
            label,
            expires_in,
        } => {
            let k = app
                .keys
                .rotate_with(id.trim(), label.as_deref(), expires_in.as_deref())
                .await?;
            notify_daemon(app).await;
            printer.success(&k, || {
                format!(
                    "Revoked {} and created {} ({}):\n{}\n{}",
                    k.old_key_id.as_deref().unwrap_or("-"),
                    k.metadata.id,
                    k.metadata.label,
                    limits_line(&k.metadata),
                    shown_once(&k)
                )
            })
        }
    }
}
