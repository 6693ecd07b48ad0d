//! One function per command: call the core service, print the result.

mod api_keys;
mod certificates;
mod chat;
mod chat_audio;
mod chat_inputs;
mod chat_responses;
mod check;
mod config;
mod engines;
mod firewall;
mod models;
mod profiles;
mod proxy;
mod proxy_reload;
mod security;
pub(crate) mod service;
mod ui;
mod usage;

use std::io::{IsTerminal, Write};

use flm_engines::discovery::process_env;

use crate::app::{resolve_data_dir, App};
use crate::cli::{Cli, Command, Format};
use crate::output::{CliError, Printer};

/// Runs the parsed command.
pub async fn run(cli: Cli, printer: &Printer) -> Result<(), CliError> {
    // Needs no database: must not create a data directory.
    let command = match cli.command {
        Command::Service(cmd) => return service::run(cmd, cli.data_dir, printer).await,
        other => other,
    };
    let data_dir = resolve_data_dir(cli.data_dir, &process_env())?;
    let app = App::open(data_dir).await?;
    let result = match command {
        Command::Engines(cmd) => engines::run(&app, cmd, printer).await,
        Command::Models(cmd) => models::run(&app, cmd, printer).await,
        Command::Config(cmd) => config::run(&app, cmd, printer).await,
        Command::Proxy(cmd) => proxy::run(&app, cmd, printer).await,
        Command::ApiKeys(cmd) => api_keys::run(&app, cmd, printer).await,
        Command::Chat(args) => chat::run(&app, args, printer).await,
        Command::Security(cmd) => security::run(&app, cmd, printer).await,
        Command::Check(args) => check::run(&app, args, printer).await,
        Command::Usage(args) => usage::run(&app, args, printer).await,
        Command::Ui(args) => ui::run(&app, args, printer).await,
        Command::ModelProfiles(cmd) => profiles::run_profiles(&app, cmd, printer).await,
        Command::Api(cmd) => profiles::run_api(&app, cmd, printer).await,
        Command::Service(_) => Ok(()),
    };
    app.store.close().await;
    result
}

/// A one-line "working…" note on a terminal's stderr, cleared when dropped.
pub(crate) struct Progress {
    shown: bool,
}

impl Progress {
    pub(crate) fn start(printer: &Printer, message: &str) -> Self {
        let shown = printer.format == Format::Text && std::io::stderr().is_terminal();
        if shown {
            let _ = write!(std::io::stderr(), "{message}…");
            let _ = std::io::stderr().flush();
        }
        Self { shown }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// "3 ms" / "-".
pub(crate) fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into())
}
