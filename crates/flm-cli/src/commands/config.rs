//! `flm config get|set|list`.

use flm_core::services::{ConfigEntry, ValueSource};
use serde_json::json;

use crate::app::App;
use crate::cli::ConfigCmd;
use crate::output::{table, CliError, Printer};

fn source(s: ValueSource) -> &'static str {
    match s {
        ValueSource::Set => "set",
        ValueSource::Default => "default",
        ValueSource::Computed => "computed",
    }
}

pub(crate) async fn run(app: &App, cmd: ConfigCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Get { key } => {
            let e = app.config.get(&key).await?;
            printer.success(&e, || e.value.clone())
        }
        ConfigCmd::Set { key, value } => {
            let e = app.config.set(&key, &value).await?;
            printer.success(&e, || format!("{} = {}", e.key, e.value))
        }
        ConfigCmd::List => {
            let entries: Vec<ConfigEntry> = app.config.list().await?;
            printer.success(&json!({ "settings": entries }), || {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| vec![e.key.clone(), e.value.clone(), source(e.source).to_owned()])
                    .collect();
                table(&["KEY", "VALUE", "SOURCE"], &rows)
            })
        }
    }
}
