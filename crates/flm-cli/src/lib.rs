//! The `flm` command-line tool and the `flm-proxy` daemon: both binaries are thin
//! shims over this library, so they share one composition root ([`app`]).
//!
//! - `flm` parses arguments (clap, [`cli`]), wires the adapters ([`app`]), calls one
//!   core service per command ([`commands`]) and prints the result ([`output`]). Exit
//!   codes: 0 success, 1 user error, 2 internal error (spec 20-cli §3.2).
//! - `flm-proxy --daemon` ([`daemon`]) hosts proxy instances behind the loopback
//!   admin API; `flm proxy …`, `flm chat` and `flm api-keys` find it through the
//!   state file and talk to it with [`client`].

pub mod app;
pub mod build_info;
pub mod cli;
pub mod cli_profiles;
pub mod cli_security;
pub mod cli_service;
pub mod client;
mod commands;
pub mod daemon;
mod log_file;
pub mod output;
pub mod process;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::{Cli, Command, Format, ProxyCmd};
use crate::output::{CliError, Printer};

/// Entry point of the `flm` binary.
pub fn flm_main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == cli_service::GENERATE_DOCS) {
        return commands::service::generate_docs_main(&args[1..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e, &args),
    };
    let format = cli.format.unwrap_or_else(default_format);
    let printer = Printer { format };
    // A proxy served in the foreground gets every core; everything else is one
    // short request/response sequence and needs no worker threads.
    let serves = matches!(&cli.command, Command::Proxy(ProxyCmd::Start(a)) if a.no_daemon);
    let foreground_log = serves
        .then(|| {
            app::resolve_data_dir(cli.data_dir.clone(), &flm_engines::discovery::process_env()).ok()
        })
        .flatten();
    match foreground_log {
        // Logs like the daemon (file, rotation, live settings) and on stderr.
        Some(dir) => {
            if let Err(e) = daemon::init_foreground_logging(&dir) {
                init_tracing();
                tracing::warn!(error = %e.message, "cannot open the proxy log; logging to stderr only");
            }
        }
        None => init_tracing(),
    }
    let runtime = if serves {
        crate::app::proxy_runtime_builder().build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&CliError::internal(
                "INTERNAL",
                format!("cannot start the async runtime: {e}"),
            ));
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(commands::run(cli, &printer));
    // Background tasks (key polling of a foreground proxy…) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            ExitCode::from(u8::try_from(e.exit).unwrap_or(2))
        }
    }
}

fn default_format() -> Format {
    if std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Json
    }
}

/// Usage errors exit 1 (a user error), in the chosen format; help and version exit 0.
fn clap_error(e: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let wants_json = args
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
        || (!args
            .iter()
            .any(|a| a == "--format" || a.to_string_lossy().starts_with("--format="))
            && !std::io::stdout().is_terminal());
    if wants_json {
        let rendered = e.render().to_string();
        let message = rendered
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_owned();
        Printer {
            format: Format::Json,
        }
        .error(&CliError::user("INVALID_ARGUMENT", message));
    } else {
        let _ = e.print();
    }
    ExitCode::from(1)
}

/// Logs go to stderr as JSON lines (spec 20-cli §1.2); WARN by default, `RUST_LOG`
/// to change.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}
